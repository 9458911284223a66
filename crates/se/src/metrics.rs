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
    let rel = rel_frobenius(original, changed);
    Errors {
        rel_frobenius: rel,
        snr_db: if rel == 0.0 {
            f64::INFINITY
        } else {
            -20.0 * rel.log10()
        },
        rel_output: inputs.map(|(x, t)| rel_output(original, changed, cols, x, t)),
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
