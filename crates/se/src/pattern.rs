//! Keeping the highest scores in a pattern (docs/SPEC.md §6).
//!
//! Scores are one per element of the tensor's 2-D view `[rows, cols]`, row-major, higher =
//! keep. Every pattern drops exactly the number its target gives (ties broken by position,
//! lowest index dropped first), so achieved sparsity is within one element (unstructured,
//! per row), one group (N:M partial groups), one block or one row of the target.

use crate::metrics::{Energy, Errors};
use crate::SparsifyError;
use sparsewire_metadata::Pattern;
use sparsewire_sparse::Mask;

/// Indices of the `k` lowest scores among `idx` (ties: lower index first).
fn lowest(scores: &[f32], mut idx: Vec<u32>, k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    if k >= idx.len() {
        return idx;
    }
    let key = |&i: &u32| (scores[i as usize], i);
    idx.select_nth_unstable_by(k - 1, |a, b| {
        let (sa, ia) = key(a);
        let (sb, ib) = key(b);
        sa.total_cmp(&sb).then(ia.cmp(&ib))
    });
    idx.truncate(k);
    idx
}

/// `f32::total_cmp`'s order as an unsigned key: negative values' magnitude bits flipped,
/// then the sign bit flipped, so keys compare as the scores do (NaNs included).
#[inline]
fn order_key(s: f32) -> u32 {
    let b = s.to_bits();
    let flip = (((b as i32) >> 31) as u32) >> 1;
    (b ^ flip) ^ 0x8000_0000
}

/// The `k`-th lowest key (1-based, `1 <= k <= keys`) of `scores` and how many keys are
/// below it: a two-pass radix select (the high 16 bits, then the low 16 bits inside the
/// bucket that holds it), two streaming passes instead of a copy and a quickselect.
fn kth_key<T: Copy>(scores: &[T], k: usize, key_of: impl Fn(T) -> u32) -> (u32, usize) {
    debug_assert!(k >= 1 && k <= scores.len());
    let mut hist = vec![0usize; 1 << 16];
    let mut low_bits = 0u32;
    for &s in scores {
        let key = key_of(s);
        hist[(key >> 16) as usize] += 1;
        low_bits |= key & 0xffff;
    }
    let (hi, below_hi) = bucket_of(&hist, k);
    if low_bits == 0 {
        // Every key's low half is zero (scores widened from BF16, say): the high half
        // decides, and the second pass would find them all in bucket 0.
        return (hi << 16, below_hi);
    }
    hist.fill(0);
    for &s in scores {
        let key = key_of(s);
        if key >> 16 == hi {
            hist[(key & 0xffff) as usize] += 1;
        }
    }
    let (lo, below_lo) = bucket_of(&hist, k - below_hi);
    ((hi << 16) | lo, below_hi + below_lo)
}

/// The bucket holding the `k`-th (1-based) counted key and how many are in lower buckets.
fn bucket_of(hist: &[usize], k: usize) -> (u32, usize) {
    let mut below = 0;
    for (b, &c) in hist.iter().enumerate() {
        if below + c >= k {
            return (b as u32, below);
        }
        below += c;
    }
    unreachable!("k is at most the number of keys counted")
}

/// Unstructured selection: drops the `k` lowest scores (ties: lowest index first),
/// written straight into the packed mask, eight elements a byte.
fn unstructured(scores: &[f32], k: usize) -> Mask {
    unstructured_by(scores, k, order_key)
}

/// Unstructured magnitude selection straight from the weights: what [`select`] gives for
/// the scores `|w|` ([`crate::criteria::magnitude`]) at `sparsity`, with no score vector
/// (the keys are computed from `w` as they are read).
pub fn unstructured_magnitude(w: &[f32], sparsity: f64) -> Mask {
    unstructured_by(w, drop_count(w.len(), sparsity), |v| order_key(v.abs()))
}

/// The first 15-bit BF16 magnitude (`|w|`'s bits) that is not finite: the exponent all
/// ones, infinity at it and NaN above.
pub(crate) const BF16_NONFINITE: u16 = 0x7f80;

/// Whether any of these BF16 values (little-endian bytes) is infinite or NaN. Fixed blocks
/// of 32 with no exit inside, so the test vectorises.
pub(crate) fn bf16_any_nonfinite(values: &[[u8; 2]]) -> bool {
    let (blocks, rest) = values.as_chunks::<32>();
    let bad = |b: &[u8; 2]| u16::from_le_bytes(*b) & BF16_NONFINITE == BF16_NONFINITE;
    blocks
        .iter()
        .any(|blk| blk.iter().fold(false, |a, b| a | bad(b)))
        || rest.iter().any(bad)
}

/// [`unstructured_magnitude`] of BF16 weights read as their little-endian bytes, with the
/// dropped energy of the mask, or `None` if a value is infinite or NaN: the same mask
/// as the f32 path, with no f32 copy of the tensor. `|w|` of a finite BF16 value is its
/// low 15 bits shifted up 16, so the select runs on those 15 bits: one histogram pass into
/// 2^15 `u32` counters (128 KiB, not the generic pass's 512 KiB), then the mask sixteen
/// 16-bit lanes a step. The energy comes from the histogram (every magnitude below the
/// threshold dropped, `ties` at it), not from a second walk over the values: each bucket's
/// `count * w^2` is exact in f64, so the sums differ from the per-value ones only in
/// their last bits (and are the more accurate).
pub(crate) fn unstructured_magnitude_bf16(bytes: &[u8], sparsity: f64) -> Option<(Mask, Errors)> {
    unstructured_magnitude_bf16_with(bytes, sparsity, true)
}

/// [`unstructured_magnitude_bf16`], the mask written 32 values a step by the AVX-512
/// kernel (`sparsewire_sparse::bf16_mask_above`) where `simd` and the CPU allow, else by
/// the scalar loop, its reference: the same mask either way (tested).
fn unstructured_magnitude_bf16_with(
    bytes: &[u8],
    sparsity: f64,
    simd: bool,
) -> Option<(Mask, Errors)> {
    let (values, _) = bytes.as_chunks::<2>();
    let n = values.len();
    let k = drop_count(n, sparsity);
    let mag = |b: &[u8; 2]| u16::from_le_bytes(*b) & 0x7fff;
    if n > u32::MAX as usize || k == 0 {
        if bf16_any_nonfinite(values) {
            return None;
        }
        let mut energy = Energy::default();
        let mask = if k == 0 {
            Mask::from_fn(n, |_| true)
        } else {
            unstructured_by(values, k, |b| {
                ((u16::from_le_bytes(b) & 0x7fff) as u32) << 16 | 0x8000_0000
            })
        };
        energy.add_bf16(values, mask.as_bytes());
        return Some((mask, energy.errors()));
    }
    let mut hist = vec![0u32; 1 << 15];
    for b in values {
        hist[mag(b) as usize] += 1;
    }
    // The histogram is the finiteness check: no separate pass over the values.
    if hist[BF16_NONFINITE as usize..].iter().any(|&c| c != 0) {
        return None;
    }
    // The bucket (magnitude) holding the k-th lowest and how many are below it.
    let (mut thr, mut below) = (0u16, 0usize);
    for (m, &c) in hist.iter().enumerate() {
        if below + c as usize >= k {
            thr = m as u16;
            break;
        }
        below += c as usize;
    }
    // Equal magnitudes are dropped in index order until `k` are dropped.
    let mut ties = k - below;
    let energy = Energy::from_bf16_histogram(&hist, thr, ties);
    let mut out = vec![0u8; n.div_ceil(8)];
    let mut one = |m: u16| {
        if m == thr && ties > 0 {
            ties -= 1;
            false
        } else {
            m >= thr
        }
    };
    // Whole blocks of 32 by the kernel, those holding a magnitude at the threshold redone
    // here in index order (ties are dropped in index order); the rest by the scalar loop.
    let mut tie_blocks = Vec::new();
    let simd_values = if simd
        && sparsewire_sparse::bf16_mask_above(&bytes[..2 * n], thr, &mut out, &mut tie_blocks)
    {
        n / 32 * 32
    } else {
        0
    };
    for &b in &tie_blocks {
        let bits = (0..32).fold(0u32, |bits, j| {
            bits | (one(mag(&values[32 * b + j])) as u32) << j
        });
        out[4 * b..4 * b + 4].copy_from_slice(&bits.to_le_bytes());
    }
    let (blocks, rest) = values[simd_values..].as_chunks::<16>();
    for (o, blk) in out[simd_values / 8..].chunks_exact_mut(2).zip(blocks) {
        let m: [u16; 16] = std::array::from_fn(|j| mag(&blk[j]));
        // Most blocks hold no value at the threshold: one comparison a lane, no branch.
        let at_thr = m.iter().fold(false, |a, &x| a | (x == thr));
        let bits = if at_thr {
            (0..16).fold(0u16, |bits, j| bits | (one(m[j]) as u16) << j)
        } else {
            (0..16).fold(0u16, |bits, j| bits | ((m[j] > thr) as u16) << j)
        };
        o.copy_from_slice(&bits.to_le_bytes());
    }
    let first = simd_values + 16 * blocks.len();
    for (i, b) in rest.iter().enumerate() {
        let at = first + i;
        out[at / 8] |= (one(mag(b)) as u8) << (at % 8);
    }
    Some((
        Mask::from_packed(out, n).expect("packed to its length"),
        energy.errors(),
    ))
}

/// [`unstructured`] over `scores` ranked by `key_of(score)`.
#[inline(always)]
fn unstructured_by<T: Copy>(scores: &[T], k: usize, key_of: impl Fn(T) -> u32 + Copy) -> Mask {
    let n = scores.len();
    if k == 0 {
        return Mask::from_fn(n, |_| true);
    }
    let mut bytes = vec![0u8; n.div_ceil(8)];
    let (thr, below) = kth_key(scores, k, key_of);
    // Equal keys are dropped in index order until `k` are dropped.
    let mut ties = k - below;
    for (b, chunk) in bytes.iter_mut().zip(scores.chunks(8)) {
        // Most groups of eight hold no key equal to the threshold: one comparison each,
        // unrolled (no branch per element).
        if let Ok(g) = <&[T; 8]>::try_from(chunk) {
            let keys = g.map(key_of);
            if !keys.contains(&thr) {
                *b = (0..8).fold(0u8, |byte, j| byte | ((keys[j] > thr) as u8) << j);
                continue;
            }
        }
        let mut byte = 0u8;
        for (j, &s) in chunk.iter().enumerate() {
            let key = key_of(s);
            let kept = if key == thr {
                if ties > 0 {
                    ties -= 1;
                    false
                } else {
                    true
                }
            } else {
                key > thr
            };
            byte |= (kept as u8) << j;
        }
        *b = byte;
    }
    Mask::from_packed(bytes, n).expect("packed to its length")
}

/// The `drop` lowest of a group of `L` scores by (score, index), as bits (bit `j` set:
/// element `j` dropped): each element's rank counted over all pairs, unrolled for the
/// group sizes N:M patterns use most.
#[inline(always)]
fn dropped_in_group<const L: usize>(g: &[f32], drop: usize) -> u32 {
    let k: [u32; L] = std::array::from_fn(|j| order_key(g[j]));
    let mut bits = 0u32;
    for i in 0..L {
        let mut rank = 0usize;
        for j in 0..L {
            rank += (k[j] < k[i] || (k[j] == k[i] && j < i)) as usize;
        }
        bits |= ((rank < drop) as u32) << i;
    }
    bits
}

/// How many of `n` to drop at sparsity `s`.
fn drop_count(n: usize, s: f64) -> usize {
    ((n as f64 * s).round() as usize).min(n)
}

/// Chooses the kept elements of a `[rows, cols]` score matrix.
pub fn select(
    scores: &[f32],
    rows: usize,
    cols: usize,
    pattern: Pattern,
    sparsity: f64,
) -> Result<Mask, SparsifyError> {
    debug_assert_eq!(scores.len(), rows * cols);
    let n = rows * cols;
    if pattern == Pattern::Unstructured {
        return Ok(unstructured(scores, drop_count(n, sparsity)));
    }
    let mut keep = vec![true; n];
    match pattern {
        Pattern::Unstructured => unreachable!("returned above"),
        Pattern::UnstructuredPerRow => {
            let k = drop_count(cols, sparsity);
            for r in 0..rows {
                let idx = ((r * cols) as u32..((r + 1) * cols) as u32).collect();
                for i in lowest(scores, idx, k) {
                    keep[i as usize] = false;
                }
            }
        }
        Pattern::NM { n: keep_n, m } => {
            let (kn, m) = (keep_n as usize, m as usize);
            for r in 0..rows {
                for start in (0..cols).step_by(m) {
                    let len = m.min(cols - start);
                    // A partial group at the row's end keeps its share, rounded.
                    let keep_here = if len == m {
                        kn
                    } else {
                        ((len * kn) as f64 / m as f64).round() as usize
                    };
                    let base = r * cols + start;
                    let drop = len - keep_here;
                    if len == 4 || len == 8 {
                        let g = &scores[base..base + len];
                        let dropped = if len == 4 {
                            dropped_in_group::<4>(g, drop)
                        } else {
                            dropped_in_group::<8>(g, drop)
                        };
                        for (j, k) in keep[base..base + len].iter_mut().enumerate() {
                            *k &= dropped >> j & 1 == 0;
                        }
                    } else if len <= 32 {
                        // A small group ranked on the stack, by (score, index) as `lowest`
                        // ranks: no allocation per group.
                        let mut g = [(0u32, 0u32); 32];
                        for (j, e) in g[..len].iter_mut().enumerate() {
                            *e = (order_key(scores[base + j]), (base + j) as u32);
                        }
                        g[..len].sort_unstable();
                        for &(_, i) in &g[..drop] {
                            keep[i as usize] = false;
                        }
                    } else {
                        let idx = (base as u32..(base + len) as u32).collect();
                        for i in lowest(scores, idx, drop) {
                            keep[i as usize] = false;
                        }
                    }
                }
            }
        }
        Pattern::Block { rows: br, cols: bc } => {
            let (br, bc) = (br as usize, bc as usize);
            if br > rows || bc > cols {
                return Err(SparsifyError::BlockTooLarge {
                    block: (br, bc),
                    shape: (rows, cols),
                });
            }
            let (gr, gc) = (rows.div_ceil(br), cols.div_ceil(bc));
            // Mean score per block, so edge blocks are not favoured for being small.
            let block_scores: Vec<f32> = (0..gr * gc)
                .map(|b| {
                    let (bi, bj) = (b / gc, b % gc);
                    let (mut sum, mut cnt) = (0f64, 0usize);
                    for r in bi * br..((bi + 1) * br).min(rows) {
                        for c in bj * bc..((bj + 1) * bc).min(cols) {
                            sum += scores[r * cols + c] as f64;
                            cnt += 1;
                        }
                    }
                    (sum / cnt as f64) as f32
                })
                .collect();
            let nb = gr * gc;
            for b in lowest(
                &block_scores,
                (0..nb as u32).collect(),
                drop_count(nb, sparsity),
            ) {
                let (bi, bj) = (b as usize / gc, b as usize % gc);
                for r in bi * br..((bi + 1) * br).min(rows) {
                    for c in bj * bc..((bj + 1) * bc).min(cols) {
                        keep[r * cols + c] = false;
                    }
                }
            }
        }
        Pattern::Channel => {
            let row_scores: Vec<f32> = (0..rows)
                .map(|r| {
                    scores[r * cols..(r + 1) * cols]
                        .iter()
                        .map(|&s| s as f64)
                        .sum::<f64>() as f32
                })
                .collect();
            for r in lowest(
                &row_scores,
                (0..rows as u32).collect(),
                drop_count(rows, sparsity),
            ) {
                keep[r as usize * cols..(r as usize + 1) * cols].fill(false);
            }
        }
    }
    Ok(Mask::from_bools(&keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The AVX-512 mask kernel and the scalar loop give the same mask and errors: lengths
    /// around the 32-value blocks, both signs, few distinct magnitudes (so many values tie
    /// at the threshold, in blocks the kernel hands back) and many.
    #[test]
    fn bf16_magnitude_kernel_matches_the_scalar_loop() {
        let mut probe = vec![0u8; 4];
        if !sparsewire_sparse::bf16_mask_above(&[0u8; 64], 0, &mut probe, &mut Vec::new()) {
            assert!(
                std::env::var_os("SPARSEWIRE_ALLOW_NO_SIMD").is_some(),
                "cannot test the bf16 mask kernel here (no AVX-512 F/BW/VBMI2, or a portable \
                 build); set SPARSEWIRE_ALLOW_NO_SIMD=1 to skip"
            );
            eprintln!(
                "SKIPPED bf16_magnitude_kernel_matches_the_scalar_loop: no bf16 mask kernel \
                 on this build or CPU"
            );
            return;
        }
        let mut next = crate::tests::xorshift(0x9e37_79b9_7f4a_7c15);
        for case in 0..400 {
            let n = [1usize, 31, 32, 33, 64, 100, 1000, 4099][case % 8];
            let distinct = [2u64, 5, 50, 1 << 15][(case / 8) % 4];
            let bytes: Vec<u8> = (0..n)
                .flat_map(|_| {
                    // Finite magnitudes: 0x3c00 (1.0) up to 0x6c00.
                    let m = 0x3c00 + ((next() % distinct) * 3 % 0x3000) as u16;
                    let sign = if next().is_multiple_of(2) { 0x8000 } else { 0 };
                    (m | sign).to_le_bytes()
                })
                .collect();
            let sparsity = [0.1, 0.5, 0.7, 0.93][(case / 32) % 4];
            let simd = unstructured_magnitude_bf16_with(&bytes, sparsity, true).unwrap();
            let scalar = unstructured_magnitude_bf16_with(&bytes, sparsity, false).unwrap();
            assert_eq!(simd.0.as_bytes(), scalar.0.as_bytes(), "case {case} n={n}");
            assert_eq!(
                format!("{:?}", simd.1),
                format!("{:?}", scalar.1),
                "case {case}"
            );
        }
    }

    proptest! {
        #[test]
        fn invariants(rows in 1usize..20, cols in 1usize..40, s in 0.0f64..0.95, seed in any::<u32>()) {
            let scores: Vec<f32> = (0..rows * cols).map(|i| ((i as u32).wrapping_mul(2654435761) ^ seed) as f32).collect();
            let n = rows * cols;
            let bools = |m: Mask| -> Vec<bool> { (0..m.len()).map(|i| m.is_kept(i)).collect() };
            let k = bools(select(&scores, rows, cols, Pattern::Unstructured, s).unwrap());
            let dropped = k.iter().filter(|&&x| !x).count();
            prop_assert!((dropped as f64 - n as f64 * s).abs() <= 1.0);
            // Every kept score is at least every dropped one.
            let min_kept = scores.iter().zip(&k).filter(|(_, &x)| x).map(|(s, _)| *s).fold(f32::INFINITY, f32::min);
            let max_drop = scores.iter().zip(&k).filter(|(_, &x)| !x).map(|(s, _)| *s).fold(f32::NEG_INFINITY, f32::max);
            prop_assert!(min_kept >= max_drop);

            let k = bools(select(&scores, rows, cols, Pattern::NM { n: 2, m: 4 }, 0.5).unwrap());
            for r in 0..rows {
                for start in (0..cols).step_by(4) {
                    if start + 4 <= cols {
                        let kept = k[r * cols + start..r * cols + start + 4].iter().filter(|&&x| x).count();
                        prop_assert_eq!(kept, 2);
                    }
                }
            }
            let k = bools(select(&scores, rows, cols, Pattern::Channel, s).unwrap());
            for r in 0..rows {
                let row = &k[r * cols..(r + 1) * cols];
                prop_assert!(row.iter().all(|&x| x) || row.iter().all(|&x| !x));
            }
            let k = bools(select(&scores, rows, cols, Pattern::UnstructuredPerRow, s).unwrap());
            for r in 0..rows {
                let dropped = k[r * cols..(r + 1) * cols].iter().filter(|&&x| !x).count();
                prop_assert!((dropped as f64 - cols as f64 * s).abs() <= 0.5 + 1e-9);
            }
        }
    }

    /// The radix selection drops what the quickselect reference drops: the `k` lowest
    /// scores by `total_cmp`, ties from the lowest index, on scores with heavy ties,
    /// negatives, zeros of both signs, infinities and NaNs.
    #[test]
    fn unstructured_matches_the_quickselect_reference() {
        let reference = |scores: &[f32], k: usize| -> Vec<bool> {
            let mut keep = vec![true; scores.len()];
            for i in lowest(scores, (0..scores.len() as u32).collect(), k) {
                keep[i as usize] = false;
            }
            keep
        };
        let mut next = crate::tests::xorshift(0x1234_5678_9abc_def1);
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            1e-40,
        ];
        for case in 0..200 {
            let n = 1 + case * 7 % 500;
            let scores: Vec<f32> = (0..n)
                .map(|_| {
                    let rng = next();
                    match case % 5 {
                        0 => specials[(rng % specials.len() as u64) as usize],
                        1 => (rng % 5) as f32,
                        2 => f32::from_bits(rng as u32),
                        // Widened from BF16: the low half of every key is zero.
                        3 => f32::from_bits((rng as u32) & 0xffff_0000),
                        _ => (rng as u32 as f32 / 1e9) - 2.0,
                    }
                })
                .collect();
            // N:M groups against `lowest` per group.
            for (keep_n, m) in [(2u8, 4u8), (1, 8), (3, 7), (5, 40)] {
                let cols = n;
                let got = select(&scores, 1, cols, Pattern::NM { n: keep_n, m }, 0.5).unwrap();
                let mut want = vec![true; cols];
                for start in (0..cols).step_by(m as usize) {
                    let len = (m as usize).min(cols - start);
                    let kh = if len == m as usize {
                        keep_n as usize
                    } else {
                        ((len * keep_n as usize) as f64 / m as f64).round() as usize
                    };
                    let idx = (start as u32..(start + len) as u32).collect();
                    for i in lowest(&scores, idx, len - kh) {
                        want[i as usize] = false;
                    }
                }
                let got: Vec<bool> = (0..cols).map(|i| got.is_kept(i)).collect();
                assert_eq!(got, want, "case {case} {keep_n}:{m}");
            }
            // Magnitude straight from the weights, against the scores |w|.
            for sp in [0.0, 0.3, 0.5, 0.9] {
                let abs: Vec<f32> = scores.iter().map(|v| v.abs()).collect();
                let want = select(&abs, 1, n, Pattern::Unstructured, sp).unwrap();
                assert_eq!(
                    unstructured_magnitude(&scores, sp),
                    want,
                    "case {case} sparsity {sp}"
                );
            }
            for k in [0, 1, n / 3, n / 2, n - 1, n] {
                let m = unstructured(&scores, k);
                let got: Vec<bool> = (0..n).map(|i| m.is_kept(i)).collect();
                assert_eq!(got, reference(&scores, k), "case {case} n {n} k {k}");
            }
        }
    }

    #[test]
    fn block_pattern_and_errors() {
        let scores: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let k = select(&scores, 4, 4, Pattern::Block { rows: 2, cols: 2 }, 0.25).unwrap();
        // The top-left block has the lowest scores.
        assert_eq!(k.len() - k.kept(), 4);
        assert!(!k.is_kept(0) && !k.is_kept(1) && !k.is_kept(4) && !k.is_kept(5));
        assert!(select(&scores, 4, 4, Pattern::Block { rows: 8, cols: 1 }, 0.5).is_err());
    }
}
