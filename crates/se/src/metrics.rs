//! What sparsification lost: relative Frobenius error, SNR, and relative output error on
//! calibration inputs.

use faer::Mat;
use serde::Serialize;

/// Error metrics of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Errors {
    /// ‖W − W'‖_F / ‖W‖_F.
    pub rel_frobenius: f64,
    /// 20·log10(‖W‖ / ‖W − W'‖), in dB (infinite when nothing changed).
    pub snr_db: f64,
    /// ‖X Wᵀ − X W'ᵀ‖_F / ‖X Wᵀ‖_F on the calibration inputs, when there are some.
    pub rel_output: Option<f64>,
}

/// ‖a − b‖ and ‖a‖.
fn norms(a: &[f32], b: &[f32]) -> (f64, f64) {
    let (mut d, mut n) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += (x as f64 - y as f64).powi(2);
        n += (x as f64).powi(2);
    }
    (d.sqrt(), n.sqrt())
}

/// Relative Frobenius error (0 for an all-zero original that stayed zero).
pub fn rel_frobenius(original: &[f32], changed: &[f32]) -> f64 {
    let (d, n) = norms(original, changed);
    if n == 0.0 {
        if d == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        d / n
    }
}

/// Relative output error of `[rows, cols]` weights on `tokens` inputs `x` (`[tokens, cols]`).
pub fn rel_output(original: &[f32], changed: &[f32], cols: usize, x: &[f32], tokens: usize) -> f64 {
    let rows = original.len() / cols.max(1);
    let xm = Mat::<f64>::from_fn(tokens, cols, |i, j| x[i * cols + j] as f64);
    let w = Mat::<f64>::from_fn(cols, rows, |j, i| original[i * cols + j] as f64);
    let d = Mat::<f64>::from_fn(cols, rows, |j, i| {
        original[i * cols + j] as f64 - changed[i * cols + j] as f64
    });
    let y = &xm * &w;
    let e = &xm * &d;
    let ny = y.norm_l2();
    if ny == 0.0 {
        0.0
    } else {
        e.norm_l2() / ny
    }
}

/// All metrics at once.
pub fn errors(
    original: &[f32],
    changed: &[f32],
    cols: usize,
    inputs: Option<(&[f32], usize)>,
) -> Errors {
    Errors::from_rel(
        rel_frobenius(original, changed),
        inputs.map(|(x, t)| rel_output(original, changed, cols, x, t)),
    )
}

impl Errors {
    /// The metrics of relative Frobenius error `rel` (its SNR derived from it) and, when
    /// measured, the relative output error.
    pub(crate) fn from_rel(rel: f64, rel_output: Option<f64>) -> Errors {
        Errors {
            rel_frobenius: rel,
            snr_db: if rel == 0.0 {
                f64::INFINITY
            } else {
                -20.0 * rel.log10()
            },
            rel_output,
        }
    }
}

/// Squared values, all and dropped, in eight running sums, one per position in a mask
/// byte, over whole groups of eight (unrolled and vectorised), added up at the end: one
/// sequential f64 sum was a latency chain that took a quarter of a sparse encode. Blocks
/// added one after another (each a whole number of groups but the last) give the sums one
/// call over all of them gives.
#[derive(Default)]
pub(crate) struct Energy {
    dropped: [f64; 8],
    total: [f64; 8],
}

impl Energy {
    /// Adds `values` whose mask bits start at bit 0 of `bytes`.
    pub(crate) fn add(&mut self, values: &[f32], bytes: &[u8]) {
        let Energy { dropped, total } = self;
        let mut groups = values.chunks_exact(8);
        for (&byte, v) in bytes.iter().zip(&mut groups) {
            // A fixed-size group, so the eight lanes unroll.
            group(dropped, total, v.try_into().expect("eight values"), byte);
        }
        if let Some(&byte) = bytes.get(values.len() / 8) {
            for (j, &x) in groups.remainder().iter().enumerate() {
                let e = (x as f64) * (x as f64);
                total[j] += e;
                dropped[j] += e * ((!byte >> j) & 1) as f64;
            }
        }
    }

    /// The energy of finite BF16 values counted by magnitude (`hist[m]`: how many have
    /// `|w|`'s bits `m`; no count at infinity's or NaN's bits), every magnitude below
    /// `thr` dropped and `ties` of those at `thr`. `count * w^2` is exact in f64 (an 8-bit
    /// significand squared, times a count below 2^32), so only the adding up of the 2^15
    /// terms rounds.
    pub(crate) fn from_bf16_histogram(hist: &[u32], thr: u16, ties: usize) -> Energy {
        let mut e = Energy::default();
        let square = |m: usize| {
            let w = f64::from(f32::from_bits((m as u32) << 16));
            w * w
        };
        // Buckets from infinity's up: none is counted (all finite), and their squares would
        // turn 0 * inf into NaN.
        let finite = &hist[..hist.len().min(crate::pattern::BF16_NONFINITE as usize)];
        for (g, counts) in finite.chunks(8).enumerate() {
            for (j, &c) in counts.iter().enumerate() {
                let m = 8 * g + j;
                let x = f64::from(c) * square(m);
                e.total[j] += x;
                if m < usize::from(thr) {
                    e.dropped[j] += x;
                }
            }
        }
        e.dropped[0] += ties as f64 * square(usize::from(thr));
        e
    }

    pub(crate) fn errors(&self) -> Errors {
        let (dropped, total): (f64, f64) = (self.dropped.iter().sum(), self.total.iter().sum());
        let rel = if total == 0.0 {
            0.0
        } else {
            (dropped / total).sqrt()
        };
        Errors::from_rel(rel, None)
    }

    /// Adds BF16 weights (little-endian bytes) whose mask bits start at bit 0 of `bytes`,
    /// widened a few thousand at a time on the stack: the sums [`Energy::add`] gives on
    /// the widened values, with no f32 copy of the tensor.
    pub(crate) fn add_bf16(&mut self, values: &[[u8; 2]], bytes: &[u8]) {
        const BLOCK: usize = 4096;
        let mut buf = [0f32; BLOCK];
        for (v, bits) in values.chunks(BLOCK).zip(bytes.chunks(BLOCK / 8)) {
            let w = &mut buf[..v.len()];
            sparsewire_formats::bf16_to_f32_into(v.as_flattened(), w);
            self.add(w, bits);
        }
    }
}

/// One group of eight into the running sums: e * 1.0 or e * 0.0 (e is finite), the same
/// sums as a branch would give. The factors come by nibble from a table, so that the eight
/// lanes vectorise (a per-lane shift of the mask byte kept them scalar).
#[inline(always)]
fn group(dropped: &mut [f64; 8], total: &mut [f64; 8], v: &[f32; 8], byte: u8) {
    const DROP: [[f64; 4]; 16] = {
        let mut t = [[0.0; 4]; 16];
        let mut n = 0;
        while n < 16 {
            let mut j = 0;
            while j < 4 {
                t[n][j] = ((!n >> j) & 1) as f64;
                j += 1;
            }
            n += 1;
        }
        t
    };
    let (lo, hi) = (&DROP[(byte & 15) as usize], &DROP[(byte >> 4) as usize]);
    for j in 0..4 {
        let e = (v[j] as f64) * (v[j] as f64);
        total[j] += e;
        dropped[j] += e * lo[j];
    }
    for j in 0..4 {
        let e = (v[4 + j] as f64) * (v[4 + j] as f64);
        total[4 + j] += e;
        dropped[4 + j] += e * hi[j];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_cases() {
        let a = [3.0f32, 4.0];
        assert_eq!(rel_frobenius(&a, &a), 0.0);
        assert!((rel_frobenius(&a, &[3.0, 0.0]) - 0.8).abs() < 1e-12);
        let e = errors(&a, &[0.0, 0.0], 2, None);
        assert!((e.snr_db - 0.0).abs() < 1e-9);
        // One output, x = [1, 0]: dropping the second weight changes nothing at the output.
        let r = rel_output(&a, &[3.0, 0.0], 2, &[1.0, 0.0], 1);
        assert_eq!(r, 0.0);
        let r = rel_output(&a, &[0.0, 4.0], 2, &[1.0, 0.0], 1);
        assert!((r - 1.0).abs() < 1e-12);
    }
}
