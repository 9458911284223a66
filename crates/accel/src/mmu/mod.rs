//! The matrix unit, computing for real on this CPU: `y = W x` on one tile of `W`.
//!
//! A tile is `rows x cols` weights read in one of two forms ([`Weights`]): the stored
//! values (dense bytes of bf16, f16 or f32, or a fast-profile sparse tile, zero where
//! dropped) or a rebuilt f32 tile from the reconstruction buffer. The input `x` is `batch`
//! rows of `n` columns (row-major f32); the tile reads columns `col0..col0 + cols` of it.
//! The output is the tile's `[batch, rows]` block (row-major), accumulated in f32 and
//! *added* to what `out` holds.
//!
//! Paths, chosen per tile shape and batch ([`tile_mmo`]):
//! - batch 1, stored form: one pass over the stored bytes, decoding in registers
//!   (`avx512`: the sparse crate's chunk decoders, then FMAs). Sparse tiles skip zeros
//!   without ever writing them;
//! - batch > 1: the tile is expanded once to f32 ([`sparsewire_sparse::expand_f32`]) and
//!   multiplied by faer's GEMM, so expansion costs one pass over the tile for the batch.
//!
//! [`reference()`] is the scalar definition every path is tested against.

use sparsewire_metadata::Dtype;
use sparsewire_sparse::{expand_f32, expand_f32_ref, SparseError, Values};

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx512;

/// One tile's weights as the MMU reads them.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// As stored: dense bytes, or a sparse tile.
    Stored(Values<'a>),
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
    #[error("the tile's stored values: {0}")]
    Tile(#[from] SparseError),
}

fn value_bytes(dtype: Dtype) -> Result<usize, MmuError> {
    match dtype {
        Dtype::BF16 | Dtype::F16 => Ok(2),
        Dtype::F32 => Ok(4),
        d => Err(MmuError::Dtype(d)),
    }
}

/// Checks the lengths of a tile multiply's operands.
fn check(w: &Weights, s: TileShape, x: &[f32], out: &[f32]) -> Result<(), MmuError> {
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
        Weights::Stored(Values::Dense { dtype, bytes }) => {
            len("the dense tile", numel * value_bytes(dtype)?, bytes.len())
        }
        // The kernels check the kept count against the bitmask as they read it.
        Weights::Stored(Values::Sparse(t)) => {
            value_bytes(t.dtype())?;
            len("the sparse tile's rows", s.rows, t.rows())?;
            len("the sparse tile's columns", s.cols, t.cols())
        }
        Weights::Rebuilt(v) => len("the rebuilt tile", numel, v.len()),
    }
}

/// The scalar definition: `out[b, r] += sum_c W[r, c] x[b, col0 + c]`, in column order.
pub fn reference(w: Weights, s: TileShape, x: &[f32], out: &mut [f32]) -> Result<(), MmuError> {
    check(&w, s, x, out)?;
    let mut dense = vec![0f32; s.rows * s.cols];
    match w {
        Weights::Stored(v) => expand_f32_ref(v, &mut dense)?,
        Weights::Rebuilt(v) => dense.copy_from_slice(v),
    }
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

/// Multiplies one tile: `out[b, r] += sum_c W[r, c] x[b, col0 + c]` (module docs).
/// `scratch` is reused between calls to hold expanded tiles. On an error (shapes, or a
/// bitmask that disagrees with the number of kept values) `out` is unspecified.
pub fn tile_mmo(
    w: Weights,
    s: TileShape,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) -> Result<(), MmuError> {
    check(&w, s, x, out)?;
    if s.batch == 1 {
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        if let Weights::Stored(v) = w {
            if avx512::gemv(&v, s, &x[s.col0..s.col0 + s.cols], out)? {
                return Ok(());
            }
        }
        if let Weights::Rebuilt(v) = w {
            gemm_f32(v, s, x, out);
            return Ok(());
        }
    }
    let dense: &[f32] = match w {
        Weights::Rebuilt(v) => v,
        Weights::Stored(v) => {
            scratch.resize(s.rows * s.cols, 0.0);
            expand_f32(v, scratch)?;
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
    check(&Weights::Stored(Values::Dense { dtype, bytes: w }), s, x, y)?;
    let chunk = rows.div_ceil(threads.max(1)).max(1);
    // Rows `r0..` into `yc`, from zero.
    let block = |r0: usize, yc: &mut [f32]| {
        yc.fill(0.0);
        let s = TileShape {
            rows: yc.len(),
            ..s
        };
        let bytes = &w[r0 * cols * vb..(r0 + yc.len()) * cols * vb];
        tile_mmo(
            Weights::Stored(Values::Dense { dtype, bytes }),
            s,
            x,
            yc,
            &mut Vec::new(),
        )
        .expect("checked shapes");
    };
    if chunk >= rows {
        // One thread: on the calling one, as the fused sparse path does.
        block(0, y);
        return Ok(());
    }
    std::thread::scope(|scope| {
        for (i, yc) in y.chunks_mut(chunk).enumerate() {
            scope.spawn(move || block(i * chunk, yc));
        }
    });
    Ok(())
}

/// Evicts `data` from every cache level (x86-64 `clflush` by cache line, then a fence), so
/// that the next read of them comes from memory: what a benchmark of a multiply "with the
/// weights from memory" needs. Writing a buffer larger than the cache instead leaves part
/// of a last-level cache of hundreds of MB warm, and its dirty lines then compete with the
/// measured reads for the memory bus. Returns `false` where it cannot (other
/// architectures, or the `portable` build), so the caller falls back to such a buffer.
pub fn evict_from_caches<T>(data: &[T]) -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        avx512::evict(data.as_ptr() as usize, std::mem::size_of_val(data));
        true
    }
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    {
        let _ = data;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sparsewire_sparse::{Mask, SparseTile};

    /// Largest |fast - reference| for sums of at most 160 products of |w| <= 1, |x| <= 0.5
    /// taken in different orders (f32).
    const SUM_ORDER_TOLERANCE: f32 = 1e-4;

    fn store(dtype: Dtype, v: &[f32]) -> Vec<u8> {
        sparsewire_formats::from_f32(dtype, v).expect("a float dtype")
    }

    proptest! {
        #[test]
        fn every_path_matches_the_reference(
            rows in 1usize..40,
            cols in 1usize..160,
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
            let mask = Mask::from_fn(rows * cols, |_| rnd() < density);
            let n = cols + extra;
            let col0 = extra / 2;
            let x: Vec<f32> = (0..batch * n).map(|_| rnd() as f32 - 0.5).collect();
            let s = TileShape { rows, cols, col0, n, batch };
            let bytes = store(dtype, &w);
            let sparse = SparseTile::from_dense(rows, cols, dtype, &bytes, mask).unwrap();
            let zeroed = sparse.to_dense();
            let mut rebuilt = vec![0f32; rows * cols];
            expand_f32_ref(Values::Dense { dtype, bytes: &zeroed }, &mut rebuilt).unwrap();
            let mut want = vec![0.5f32; batch * rows];
            reference(Weights::Rebuilt(&rebuilt), s, &x, &mut want).unwrap();
            let mut scratch = Vec::new();
            for form in [
                Weights::Stored(Values::Dense { dtype, bytes: &zeroed }),
                Weights::Stored(Values::Sparse(sparse.as_ref())),
                Weights::Rebuilt(&rebuilt),
            ] {
                let mut got = vec![0.5f32; batch * rows];
                tile_mmo(form, s, &x, &mut got, &mut scratch).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!((g - w).abs() <= SUM_ORDER_TOLERANCE, "{form:?}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn the_simd_path_runs_where_it_is_tested() {
        // The property test above compares whatever `tile_mmo` dispatches to: on a CPU
        // without AVX-512 that is the scalar path, so it must say so rather than pass.
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        {
            if sparsewire_sparse::avx512::available() {
                return;
            }
            assert!(
                std::env::var_os("SPARSEWIRE_ALLOW_NO_SIMD").is_some(),
                "this CPU lacks AVX-512 F/BW/VBMI2: the MMU's SIMD path is untested here; set SPARSEWIRE_ALLOW_NO_SIMD=1 to skip"
            );
            eprintln!("SKIPPED MMU SIMD path: no AVX-512 on this CPU");
        }
    }

    #[test]
    fn eviction_keeps_the_data_and_says_where_it_works() {
        // Unaligned starts and odd lengths, dirty lines included: clflush writes them back.
        let mut data: Vec<u32> = (0..10_000).collect();
        for (at, len) in [(0usize, 0usize), (1, 1), (3, 17), (5, 9_990)] {
            data[at] ^= 0xdead_beef;
            let done = evict_from_caches(&data[at..at + len]);
            assert_eq!(
                done,
                cfg!(all(target_arch = "x86_64", not(feature = "portable")))
            );
            data[at] ^= 0xdead_beef;
            assert!(data.iter().enumerate().all(|(i, &v)| v == i as u32));
        }
        // An empty Vec's dangling pointer is not touched.
        let empty: Vec<u64> = Vec::new();
        evict_from_caches(&empty);
    }

    #[test]
    fn wrong_lengths_and_counts_are_errors() {
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
        let dense = Weights::Stored(Values::Dense {
            dtype: Dtype::BF16,
            bytes: &[0; 10],
        });
        let err = tile_mmo(dense, s, &x, &mut out, &mut scratch);
        assert!(matches!(err, Err(MmuError::Length { expected: 12, .. })));
        // Bitmasks keeping 3 and 1 values, with 2 values given.
        for bits in [0b111u8, 0b100] {
            let m = sparsewire_sparse::MaskRef::new(std::slice::from_ref(&bits), 6).unwrap();
            let t = sparsewire_sparse::SparseTileRef::new_uncounted(2, 3, Dtype::BF16, m, &[0; 4])
                .unwrap();
            for batch in [1, 2] {
                let s = TileShape { batch, ..s };
                let mut out = vec![0f32; 2 * batch];
                let x = vec![1f32; 3 * batch];
                let err = tile_mmo(
                    Weights::Stored(Values::Sparse(t)),
                    s,
                    &x,
                    &mut out,
                    &mut scratch,
                );
                assert!(
                    matches!(err, Err(MmuError::Tile(SparseError::KeptCount { .. }))),
                    "{bits:#b} batch {batch}: {err:?}"
                );
            }
        }
        assert!(tile_mmo(
            Weights::Rebuilt(&[0.0; 6]),
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
        let dense = Weights::Stored(Values::Dense {
            dtype: Dtype::BF16,
            bytes: &b,
        });
        reference(dense, s, &x, &mut want).unwrap();
        for threads in [1, 2, 5] {
            let mut y = vec![9f32; rows];
            dense_gemv(&b, Dtype::BF16, rows, cols, &x, &mut y, threads).unwrap();
            for (g, w) in y.iter().zip(&want) {
                assert!((g - w).abs() < SUM_ORDER_TOLERANCE * 10.0);
            }
        }
    }
}
