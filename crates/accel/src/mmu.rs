//! The matrix unit, computing for real on this CPU: `y = W x` on one tile of `W`.
//!
//! A tile is `rows x cols` weights read in one of three forms ([`TileWeights`]): dense
//! values as stored (bf16, f16 or f32 bytes), a fast-profile sparse tile (a bitmask and the
//! packed kept values, zero-filled) or a rebuilt f32 tile from the reconstruction buffer.
//! The input `x` is `batch` rows of `n` columns (row-major f32); the tile reads columns
//! `col0..col0 + cols` of it. The output is the tile's `[batch, rows]` block (row-major),
//! accumulated in f32 and *added* to what `out` holds.
//!
//! Paths, chosen per tile shape and batch ([`tile_mmo`]):
//! - batch 1, stored form: one pass over the stored bytes, decoding in registers
//!   (AVX-512: a masked load of the next `popcount` values and `vpexpandw` to their
//!   columns). Sparse tiles skip zeros without ever writing them;
//! - batch > 1: the tile is expanded once to f32 ([`expand_tile`]) and multiplied by faer's
//!   GEMM, so expansion costs one pass over the tile for the whole batch.
//!
//! [`reference`] is the scalar definition every path is tested against.

use sparsewire_metadata::Dtype;

/// One tile's weights as the MMU reads them.
#[derive(Debug, Clone, Copy)]
pub enum TileWeights<'a> {
    /// Every value, little-endian bytes of `dtype`.
    Dense(&'a [u8]),
    /// One bit per element (LSB first, 1 = kept) and the kept values' bytes in order.
    Sparse { bits: &'a [u8], values: &'a [u8] },
    /// A rebuilt tile.
    Rebuilt(&'a [f32]),
}

/// Shape of one tile multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileShape {
    pub rows: usize,
    pub cols: usize,
    /// First input column the tile reads.
    pub col0: usize,
    /// Columns of the whole input (`x` is `batch x n`).
    pub n: usize,
    pub batch: usize,
}

/// Errors of the MMU.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MmuError {
    #[error("{what} holds {got} values, the tile needs {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("dtype {0} has no float kernel")]
    Dtype(Dtype),
    #[error("the bitmask and the {values} kept values given disagree")]
    KeptCount { values: usize },
}

fn value_bytes(dtype: Dtype) -> Result<usize, MmuError> {
    match dtype {
        Dtype::BF16 | Dtype::F16 => Ok(2),
        Dtype::F32 => Ok(4),
        d => Err(MmuError::Dtype(d)),
    }
}

#[inline]
fn value_at(dtype: Dtype, v: &[u8], i: usize) -> f32 {
    match dtype {
        Dtype::BF16 => f32::from_bits((u16::from_le_bytes([v[2 * i], v[2 * i + 1]]) as u32) << 16),
        Dtype::F16 => half::f16::from_bits(u16::from_le_bytes([v[2 * i], v[2 * i + 1]])).to_f32(),
        _ => f32::from_le_bytes(v[4 * i..4 * i + 4].try_into().expect("4 bytes")),
    }
}

/// Checks the lengths of a tile multiply's operands; returns the number of kept values.
fn check(
    w: &TileWeights,
    dtype: Dtype,
    s: TileShape,
    x: &[f32],
    out: &[f32],
) -> Result<(), MmuError> {
    let numel = s.rows * s.cols;
    let len = |what, expected, got| {
        if expected == got {
            Ok(())
        } else {
            Err(MmuError::Length {
                what,
                expected,
                got,
            })
        }
    };
    len("the input", s.batch * s.n, x.len())?;
    if s.col0 + s.cols > s.n {
        return Err(MmuError::Length {
            what: "the input row",
            expected: s.col0 + s.cols,
            got: s.n,
        });
    }
    len("the output", s.batch * s.rows, out.len())?;
    match *w {
        TileWeights::Dense(v) => len("the dense tile", numel * value_bytes(dtype)?, v.len()),
        TileWeights::Rebuilt(v) => len("the rebuilt tile", numel, v.len()),
        // The kernels check the kept count against the bitmask as they read it.
        TileWeights::Sparse { bits, values } => {
            len("the bitmask", numel.div_ceil(8), bits.len())?;
            let vb = value_bytes(dtype)?;
            len(
                "the kept values' bytes",
                values.len() / vb * vb,
                values.len(),
            )
        }
    }
}

/// The scalar definition: `out[b, r] += sum_c W[r, c] x[b, col0 + c]`, in column order.
pub fn reference(
    w: TileWeights,
    dtype: Dtype,
    s: TileShape,
    x: &[f32],
    out: &mut [f32],
) -> Result<(), MmuError> {
    check(&w, dtype, s, x, out)?;
    let mut dense = vec![0f32; s.rows * s.cols];
    expand_scalar(&w, dtype, &mut dense)?;
    for b in 0..s.batch {
        let xb = &x[b * s.n + s.col0..b * s.n + s.col0 + s.cols];
        for r in 0..s.rows {
            let mut acc = 0f32;
            for (w, x) in dense[r * s.cols..(r + 1) * s.cols].iter().zip(xb) {
                acc += w * x;
            }
            out[b * s.rows + r] += acc;
        }
    }
    Ok(())
}

fn expand_scalar(w: &TileWeights, dtype: Dtype, out: &mut [f32]) -> Result<(), MmuError> {
    match *w {
        TileWeights::Dense(v) => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = value_at(dtype, v, i);
            }
        }
        TileWeights::Rebuilt(v) => out.copy_from_slice(v),
        TileWeights::Sparse { bits, values } => {
            let n = values.len() / value_bytes(dtype)?;
            let mut k = 0;
            for (i, o) in out.iter_mut().enumerate() {
                if bits[i / 8] >> (i % 8) & 1 != 0 {
                    if k == n {
                        return Err(MmuError::KeptCount { values: n });
                    }
                    *o = value_at(dtype, values, k);
                    k += 1;
                } else {
                    *o = 0.0;
                }
            }
            if k != n {
                return Err(MmuError::KeptCount { values: n });
            }
        }
    }
    Ok(())
}

/// Expands a tile to dense f32 (`rows * cols` values, zero where the mask drops). On an
/// error `out` is unspecified.
pub fn expand_tile(
    w: TileWeights,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    out: &mut [f32],
) -> Result<(), MmuError> {
    let s = TileShape {
        rows,
        cols,
        col0: 0,
        n: cols,
        batch: 0,
    };
    check(&w, dtype, s, &[], &[])?;
    if out.len() != rows * cols {
        return Err(MmuError::Length {
            what: "the expanded tile",
            expected: rows * cols,
            got: out.len(),
        });
    }
    #[cfg(target_arch = "x86_64")]
    if simd::available() && simd::expand(&w, dtype, out)? {
        return Ok(());
    }
    expand_scalar(&w, dtype, out)
}

/// Multiplies one tile: `out[b, r] += sum_c W[r, c] x[b, col0 + c]` (module docs).
/// `scratch` is reused between calls to hold expanded tiles. On an error (shapes, or a
/// bitmask that disagrees with the number of kept values) `out` is unspecified.
pub fn tile_mmo(
    w: TileWeights,
    dtype: Dtype,
    s: TileShape,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) -> Result<(), MmuError> {
    check(&w, dtype, s, x, out)?;
    if s.batch == 1 {
        #[cfg(target_arch = "x86_64")]
        if simd::available() && simd::gemv(&w, dtype, s, &x[s.col0..s.col0 + s.cols], out)? {
            return Ok(());
        }
        if let TileWeights::Rebuilt(v) = w {
            gemm_f32(v, s, x, out);
            return Ok(());
        }
    }
    let dense: &[f32] = match w {
        TileWeights::Rebuilt(v) => v,
        _ => {
            scratch.resize(s.rows * s.cols, 0.0);
            expand_tile(w, dtype, s.rows, s.cols, scratch)?;
            scratch
        }
    };
    gemm_f32(dense, s, x, out);
    Ok(())
}

/// `out^T += W X^T` with faer (one thread: the executor parallelises over tiles).
fn gemm_f32(w: &[f32], s: TileShape, x: &[f32], out: &mut [f32]) {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let lhs = MatRef::from_row_major_slice(w, s.rows, s.cols);
    let xt = MatRef::from_row_major_slice(x, s.batch, s.n).transpose();
    let rhs = xt.subrows(s.col0, s.cols);
    let dst = MatMut::from_column_major_slice_mut(out, s.rows, s.batch);
    matmul(dst, Accum::Add, lhs, rhs, 1.0f32, Par::Seq);
}

/// A whole dense matrix (`rows x cols` values of `dtype`) times one vector, rows split
/// over `threads`: the dense baseline, with the same kernel the tiles use.
pub fn dense_gemv(
    w: &[u8],
    dtype: Dtype,
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
    threads: usize,
) -> Result<(), MmuError> {
    let vb = value_bytes(dtype)?;
    let s = TileShape {
        rows,
        cols,
        col0: 0,
        n: cols,
        batch: 1,
    };
    check(&TileWeights::Dense(w), dtype, s, x, y)?;
    let chunk = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (i, yc) in y.chunks_mut(chunk).enumerate() {
            let r0 = i * chunk;
            let wc = &w[r0 * cols * vb..(r0 + yc.len()) * cols * vb];
            scope.spawn(move || {
                yc.fill(0.0);
                let s = TileShape {
                    rows: yc.len(),
                    ..s
                };
                let mut scratch = Vec::new();
                tile_mmo(TileWeights::Dense(wc), dtype, s, x, yc, &mut scratch)
                    .expect("checked shapes");
            });
        }
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    //! AVX-512 (F, BW, VBMI2) kernels. Every function checks its CPU features at run time
    //! ([`available`]) and returns `false` for a form it does not handle, so the caller
    //! falls back to the portable code.
    use super::{MmuError, TileShape, TileWeights};
    use sparsewire_metadata::Dtype;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("popcnt")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vbmi2")
    }

    /// 32 mask bits starting at bit `off` (fewer near the end: the rest read as 0).
    #[inline(always)]
    fn bits32(bits: &[u8], off: usize) -> u32 {
        let b = off / 8;
        let word = if b + 8 <= bits.len() {
            u64::from_le_bytes(bits[b..b + 8].try_into().expect("8 bytes"))
        } else {
            let mut w = [0u8; 8];
            w[..bits.len() - b].copy_from_slice(&bits[b..]);
            u64::from_le_bytes(w)
        };
        (word >> (off % 8)) as u32
    }

    #[inline(always)]
    fn low_mask(n: usize) -> u32 {
        if n >= 32 {
            u32::MAX
        } else {
            (1u32 << n) - 1
        }
    }

    /// 32 bf16 (as u16 lanes) to two f32 vectors.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn bf16_to_f32(v: __m512i) -> (__m512, __m512) {
        let lo = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)));
        let hi = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(v)));
        (_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi))
    }

    /// The next 32 weights of a bf16 row as two f32 vectors: `m` says which columns are
    /// kept (sparse) and `p` is the index of the next kept value, advanced past those read.
    #[inline]
    #[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
    fn bf16_chunk(
        values: &[u8],
        p: &mut usize,
        m: u32,
        sparse: bool,
    ) -> Result<(__m512, __m512), MmuError> {
        let cnt = m.count_ones() as usize;
        if 2 * (*p + cnt) > values.len() {
            return Err(MmuError::KeptCount {
                values: values.len() / 2,
            });
        }
        // SAFETY: the masked load touches only the `cnt` lanes the mask enables, which
        // lie inside `values` (checked just above).
        let v = unsafe {
            _mm512_maskz_loadu_epi16(low_mask(cnt), values.as_ptr().add(2 * *p) as *const i16)
        };
        *p += cnt;
        // Dense chunks are contiguous already: no expand.
        Ok(bf16_to_f32(if sparse {
            _mm512_maskz_expand_epi16(m, v)
        } else {
            v
        }))
    }

    /// The next `m`-selected f32 weights (16 columns).
    #[inline]
    #[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
    fn f32_chunk(values: &[u8], p: &mut usize, m: u16) -> Result<__m512, MmuError> {
        let cnt = m.count_ones() as usize;
        if 4 * (*p + cnt) > values.len() {
            return Err(MmuError::KeptCount {
                values: values.len() / 4,
            });
        }
        // SAFETY: as in `bf16_chunk`: only the `cnt` enabled lanes are read, checked above.
        let v = unsafe {
            _mm512_maskz_loadu_ps(
                low_mask(cnt) as u16,
                values.as_ptr().add(4 * *p) as *const f32,
            )
        };
        *p += cnt;
        Ok(_mm512_maskz_expand_ps(m, v))
    }

    /// Every kept value was read: the bitmask and the values agree.
    fn all_read(p: usize, values: &[u8], vb: usize) -> Result<bool, MmuError> {
        if p * vb == values.len() {
            Ok(true)
        } else {
            Err(MmuError::KeptCount {
                values: values.len() / vb,
            })
        }
    }

    /// `len` (<= 16) f32 of `x` from `at`, zero beyond.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_x(x: &[f32], at: usize, len: usize) -> __m512 {
        let n = len.min(16).min(x.len().saturating_sub(at));
        // SAFETY: the masked load reads only lanes `at..at + n`, all inside `x`.
        unsafe { _mm512_maskz_loadu_ps(low_mask(n) as u16, x.as_ptr().add(at.min(x.len()))) }
    }

    /// Batch-1 tile multiply from the stored form; `x` is the tile's slice of the input.
    pub fn gemv(
        w: &TileWeights,
        dtype: Dtype,
        s: TileShape,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<bool, MmuError> {
        // SAFETY: `available()` was checked by the caller.
        unsafe {
            match (w, dtype) {
                (TileWeights::Sparse { bits, values }, Dtype::BF16) => {
                    gemv_bf16::<true>(bits, values, s, x, out)
                }
                (TileWeights::Dense(values), Dtype::BF16) => {
                    gemv_bf16::<false>(&[], values, s, x, out)
                }
                (TileWeights::Sparse { bits, values }, Dtype::F32) => {
                    gemv_f32(bits, values, true, s, x, out)
                }
                (TileWeights::Dense(values), Dtype::F32) => gemv_f32(&[], values, false, s, x, out),
                _ => Ok(false),
            }
        }
    }

    #[target_feature(enable = "popcnt,bmi2,avx512f,avx512bw,avx512vbmi2")]
    fn gemv_bf16<const SPARSE: bool>(
        bits: &[u8],
        values: &[u8],
        s: TileShape,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<bool, MmuError> {
        let sparse = SPARSE;
        let mut p = 0;
        let full = s.cols / 32 * 32;
        let nvals = values.len() / 2;
        for (r, o) in out.iter_mut().enumerate() {
            let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let row = r * s.cols;
            // Whole 32-column chunks: unmasked x loads, mask words read straight (the
            // 8-byte read stays inside `bits` when the row's bits end 8 bytes before).
            let straight = !sparse || (row + s.cols) / 8 + 8 <= bits.len();
            let mut c = 0;
            if straight {
                while c < full {
                    let m = if sparse {
                        let b = (row + c) / 8;
                        let w = u64::from_le_bytes(bits[b..b + 8].try_into().expect("8 bytes"));
                        (w >> ((row + c) % 8)) as u32
                    } else {
                        u32::MAX
                    };
                    let cnt = m.count_ones() as usize;
                    if p + cnt > nvals {
                        return Err(MmuError::KeptCount { values: nvals });
                    }
                    // SAFETY: lanes `p..p + cnt` of `values` exist (checked above); x holds
                    // `cols >= c + 32` values.
                    let (v, x0, x1) = unsafe {
                        (
                            _mm512_maskz_loadu_epi16(
                                _bzhi_u32(u32::MAX, cnt as u32),
                                values.as_ptr().add(2 * p) as *const i16,
                            ),
                            _mm512_loadu_ps(x.as_ptr().add(c)),
                            _mm512_loadu_ps(x.as_ptr().add(c + 16)),
                        )
                    };
                    p += cnt;
                    let (w0, w1) = bf16_to_f32(if sparse {
                        _mm512_maskz_expand_epi16(m, v)
                    } else {
                        v
                    });
                    a0 = _mm512_fmadd_ps(w0, x0, a0);
                    a1 = _mm512_fmadd_ps(w1, x1, a1);
                    c += 32;
                }
            }
            // The rest (or every chunk near the end of the bits): bounds-checked reads.
            while c < s.cols {
                let valid = low_mask(s.cols - c);
                let m = if sparse {
                    bits32(bits, row + c) & valid
                } else {
                    valid
                };
                let (w0, w1) = bf16_chunk(values, &mut p, m, sparse)?;
                a0 = _mm512_fmadd_ps(w0, load_x(x, c, s.cols - c), a0);
                if s.cols - c > 16 {
                    a1 = _mm512_fmadd_ps(w1, load_x(x, c + 16, s.cols - c - 16), a1);
                }
                c += 32;
            }
            *o += _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        }
        all_read(p, values, 2)
    }

    #[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
    fn gemv_f32(
        bits: &[u8],
        values: &[u8],
        sparse: bool,
        s: TileShape,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<bool, MmuError> {
        let mut p = 0;
        for (r, o) in out.iter_mut().enumerate() {
            let mut a = _mm512_setzero_ps();
            let mut c = 0;
            while c < s.cols {
                let valid = low_mask(s.cols - c) as u16;
                let m = if sparse {
                    bits32(bits, r * s.cols + c) as u16 & valid
                } else {
                    valid
                };
                let w = f32_chunk(values, &mut p, m)?;
                a = _mm512_fmadd_ps(w, load_x(x, c, s.cols - c), a);
                c += 16;
            }
            *o += _mm512_reduce_add_ps(a);
        }
        all_read(p, values, 4)
    }

    /// Expands a stored bf16 or f32 tile to f32.
    pub fn expand(w: &TileWeights, dtype: Dtype, out: &mut [f32]) -> Result<bool, MmuError> {
        let (bits, values, sparse): (&[u8], &[u8], bool) = match *w {
            TileWeights::Sparse { bits, values } => (bits, values, true),
            TileWeights::Dense(values) => (&[], values, false),
            TileWeights::Rebuilt(_) => return Ok(false),
        };
        // SAFETY: `available()` was checked by the caller.
        unsafe {
            match dtype {
                Dtype::BF16 => expand_bf16(bits, values, sparse, out),
                Dtype::F32 => expand_f32(bits, values, sparse, out),
                _ => Ok(false),
            }
        }
    }

    #[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
    fn expand_bf16(
        bits: &[u8],
        values: &[u8],
        sparse: bool,
        out: &mut [f32],
    ) -> Result<bool, MmuError> {
        let mut p = 0;
        for (i, chunk) in out.chunks_mut(32).enumerate() {
            let valid = low_mask(chunk.len());
            let m = if sparse {
                bits32(bits, 32 * i) & valid
            } else {
                valid
            };
            let (w0, w1) = bf16_chunk(values, &mut p, m, sparse)?;
            let n0 = chunk.len().min(16);
            // SAFETY: masked stores write only the chunk's own lanes.
            unsafe {
                _mm512_mask_storeu_ps(chunk.as_mut_ptr(), low_mask(n0) as u16, w0);
                if chunk.len() > 16 {
                    let n1 = chunk.len() - 16;
                    _mm512_mask_storeu_ps(chunk.as_mut_ptr().add(16), low_mask(n1) as u16, w1);
                }
            }
        }
        all_read(p, values, 2)
    }

    #[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
    fn expand_f32(
        bits: &[u8],
        values: &[u8],
        sparse: bool,
        out: &mut [f32],
    ) -> Result<bool, MmuError> {
        let mut p = 0;
        for (i, chunk) in out.chunks_mut(16).enumerate() {
            let valid = low_mask(chunk.len()) as u16;
            let m = if sparse {
                bits32(bits, 16 * i) as u16 & valid
            } else {
                valid
            };
            let w = f32_chunk(values, &mut p, m)?;
            // SAFETY: the masked store writes only the chunk's own lanes.
            unsafe { _mm512_mask_storeu_ps(chunk.as_mut_ptr(), valid, w) };
        }
        all_read(p, values, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store(dtype: Dtype, v: &[f32]) -> Vec<u8> {
        match dtype {
            Dtype::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// A tile in all three forms: dense bytes, sparse (bits + kept), rebuilt f32.
    fn forms(dtype: Dtype, w: &[f32], keep: &[bool]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<f32>) {
        let zeroed: Vec<f32> = w
            .iter()
            .zip(keep)
            .map(|(&v, &k)| if k { v } else { 0.0 })
            .collect();
        let dense = store(dtype, &zeroed);
        let mut bits = vec![0u8; w.len().div_ceil(8)];
        let mut kept = Vec::new();
        for (i, (&v, &k)) in w.iter().zip(keep).enumerate() {
            if k {
                bits[i / 8] |= 1 << (i % 8);
                kept.push(v);
            }
        }
        let rebuilt = {
            let mut r = vec![0f32; w.len()];
            expand_scalar(&TileWeights::Dense(&dense), dtype, &mut r).unwrap();
            r
        };
        (dense, bits, store(dtype, &kept), rebuilt)
    }

    proptest! {
        #[test]
        fn every_path_matches_the_reference(
            rows in 1usize..9,
            cols in 1usize..80,
            extra in 0usize..20,
            batch in 1usize..5,
            density in 0.0f64..1.0,
            seed in any::<u64>(),
            dt in 0usize..3,
        ) {
            let dtype = [Dtype::BF16, Dtype::F32, Dtype::F16][dt];
            let mut state = seed | 1;
            let mut rnd = || {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            let w: Vec<f32> = (0..rows * cols).map(|_| (rnd() as f32 - 0.5) * 2.0).collect();
            let keep: Vec<bool> = (0..rows * cols).map(|_| rnd() < density).collect();
            let n = cols + extra;
            let col0 = extra / 2;
            let x: Vec<f32> = (0..batch * n).map(|_| rnd() as f32 - 0.5).collect();
            let s = TileShape { rows, cols, col0, n, batch };
            let (dense, bits, kept, rebuilt) = forms(dtype, &w, &keep);
            let mut want = vec![0.5f32; batch * rows];
            reference(TileWeights::Dense(&dense), dtype, s, &x, &mut want).unwrap();
            let mut scratch = Vec::new();
            for form in [
                TileWeights::Dense(&dense),
                TileWeights::Sparse { bits: &bits, values: &kept },
                TileWeights::Rebuilt(&rebuilt),
            ] {
                let mut got = vec![0.5f32; batch * rows];
                tile_mmo(form, dtype, s, &x, &mut got, &mut scratch).unwrap();
                // Sums of at most 80 products of |w| <= 1, |x| <= .5 in different orders.
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!((g - w).abs() <= 1e-4, "{form:?}: {g} vs {w}");
                }
                let mut e = vec![0f32; rows * cols];
                expand_tile(form, dtype, rows, cols, &mut e).unwrap();
                prop_assert_eq!(&e, &rebuilt);
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let s = TileShape {
            rows: 2,
            cols: 3,
            col0: 0,
            n: 3,
            batch: 1,
        };
        let mut out = vec![0f32; 2];
        let mut scratch = Vec::new();
        let x = [1f32; 3];
        let err = tile_mmo(
            TileWeights::Dense(&[0; 10]),
            Dtype::BF16,
            s,
            &x,
            &mut out,
            &mut scratch,
        );
        assert!(matches!(err, Err(MmuError::Length { expected: 12, .. })));
        // Bitmasks keeping 3 and 1 values, with 2 values given.
        for bits in [0b111u8, 0b100] {
            let w = TileWeights::Sparse {
                bits: &[bits],
                values: &[0; 4],
            };
            let err = tile_mmo(w, Dtype::BF16, s, &x, &mut out, &mut scratch);
            assert_eq!(err, Err(MmuError::KeptCount { values: 2 }), "{bits:#b}");
        }
        assert!(tile_mmo(
            TileWeights::Rebuilt(&[0.0; 6]),
            Dtype::F32,
            s,
            &x[..2],
            &mut out,
            &mut scratch
        )
        .is_err());
    }

    #[test]
    fn dense_gemv_splits_rows_over_threads() {
        let (rows, cols) = (37, 50);
        let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.1).sin()).collect();
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.3).cos()).collect();
        let b = store(Dtype::BF16, &w);
        let s = TileShape {
            rows,
            cols,
            col0: 0,
            n: cols,
            batch: 1,
        };
        let mut want = vec![0f32; rows];
        reference(TileWeights::Dense(&b), Dtype::BF16, s, &x, &mut want).unwrap();
        for threads in [1, 2, 5] {
            let mut y = vec![9f32; rows];
            dense_gemv(&b, Dtype::BF16, rows, cols, &x, &mut y, threads).unwrap();
            for (g, w) in y.iter().zip(&want) {
                assert!((g - w).abs() < 1e-3);
            }
        }
    }
}
