//! AVX-512 (F, BW, VBMI2) decoding of stored tiles: this crate's only `unsafe` code.
//!
//! A sparse tile's values are read 32 (bf16) or 16 (f32) columns at a time: the mask bits
//! of the chunk say how many values to load (a masked load of `popcount` values, which
//! touches only those) and `vpexpand` moves them to their columns, zero elsewhere. The
//! chunk decoders are public so the matrix unit's fused multiply (`sparsewire-accel`)
//! reads tiles with the same code. Every kernel is a `#[target_feature]` function, callable
//! only where [`available`] was checked; [`expand`] is the checked entry point.
//!
//! Built only on x86-64 without the `portable` feature; everything here has a scalar
//! reference in [`crate::expand`], and tests compare the two.
#![allow(unsafe_code)]

use crate::expand::Values;
use crate::SparseError;
use sparsewire_metadata::Dtype;
use std::arch::x86_64::*;

/// Whether this CPU runs the kernels (AVX-512 F, BW, VBMI2, with POPCNT and BMI2).
pub fn available() -> bool {
    is_x86_feature_detected!("popcnt")
        && is_x86_feature_detected!("bmi2")
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vbmi2")
}

/// 32 mask bits starting at bit `off` (fewer near the end: the rest read as 0).
#[inline(always)]
pub fn bits32(bits: &[u8], off: usize) -> u32 {
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

/// The low `n` bits set (all 32 for `n >= 32`).
#[inline(always)]
pub fn low_mask(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// 32 bf16 (as u16 lanes) to two f32 vectors.
///
/// # Safety
/// Call only where [`available`] holds: the CPU must have the enabled features.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub fn bf16_to_f32(v: __m512i) -> (__m512, __m512) {
    let lo = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)));
    let hi = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(v)));
    (_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi))
}

fn short(p: usize, cnt: usize, values: usize) -> SparseError {
    SparseError::KeptCount {
        kept: p + cnt,
        values,
    }
}

/// The next 32 weights of a bf16 row as two f32 vectors: `m` says which columns are kept
/// (`sparse`) and `p` is the index of the next kept value, advanced past those read.
///
/// # Safety
/// Call only where [`available`] holds. The values read are bounds-checked.
#[inline]
#[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
pub fn bf16_chunk(
    values: &[u8],
    p: &mut usize,
    m: u32,
    sparse: bool,
) -> Result<(__m512, __m512), SparseError> {
    let cnt = m.count_ones() as usize;
    if 2 * (*p + cnt) > values.len() {
        return Err(short(*p, cnt, values.len() / 2));
    }
    let at = values.as_ptr().wrapping_add(2 * *p) as *const i16;
    // SAFETY: either load touches only `cnt` values from `at` (the expand-load reads one
    // per set bit of `m`, the masked load the `cnt` lanes it enables), which lie inside
    // `values` (checked just above).
    let v = unsafe {
        if sparse {
            // One expand-load: the kept values straight to their columns.
            _mm512_maskz_expandloadu_epi16(m, at)
        } else {
            // Dense chunks are contiguous already: no expand.
            _mm512_maskz_loadu_epi16(low_mask(cnt), at)
        }
    };
    *p += cnt;
    Ok(bf16_to_f32(v))
}

/// The next `m`-selected f32 weights (16 columns).
///
/// # Safety
/// Call only where [`available`] holds. The values read are bounds-checked.
#[inline]
#[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
pub fn f32_chunk(values: &[u8], p: &mut usize, m: u16) -> Result<__m512, SparseError> {
    let cnt = m.count_ones() as usize;
    if 4 * (*p + cnt) > values.len() {
        return Err(short(*p, cnt, values.len() / 4));
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
pub fn all_read(p: usize, values: &[u8], vb: usize) -> Result<(), SparseError> {
    if p * vb == values.len() {
        Ok(())
    } else {
        Err(SparseError::KeptCount {
            kept: p,
            values: values.len() / vb,
        })
    }
}

/// Expands BF16 or F32 values to f32; `Ok(false)` for a dtype it does not handle.
/// `out` has the tile's element count (checked by the caller).
pub fn expand(v: &Values<'_>, out: &mut [f32]) -> Result<bool, SparseError> {
    if !available() {
        return Ok(false);
    }
    let (bits, values, sparse): (&[u8], &[u8], bool) = match v {
        Values::Sparse(t) => (t.mask().as_bytes(), t.values(), true),
        Values::Dense { bytes, .. } => (&[], bytes, false),
    };
    // SAFETY: the CPU features were checked just above.
    unsafe {
        match v.dtype() {
            Dtype::BF16 => expand_bf16(bits, values, sparse, out).map(|()| true),
            Dtype::F32 => expand_f32(bits, values, sparse, out).map(|()| true),
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
) -> Result<(), SparseError> {
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
) -> Result<(), SparseError> {
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

/// The kept values of `n` dense little-endian values of `vb` bytes (2 or 4; `None` for
/// other widths or without the CPU features), in order: `vpcompress` on 32 (2-byte) or 16
/// (4-byte) values per step, stored whole into slack behind the write position. `kept` is
/// the mask's popcount over its first `n` bits (as [`crate::MaskRef::kept`] counts it);
/// a mask with more set bits than that gives `None` (the caller's scalar path), never a
/// write out of bounds. The scalar reference is `tile::pack_kept_n`; a test compares the
/// two.
///
/// Panics if `dense` holds fewer than `n` values or `bits` fewer than `n` bits.
pub fn pack_kept(dense: &[u8], bits: &[u8], n: usize, kept: usize, vb: usize) -> Option<Vec<u8>> {
    if !available() || !(vb == 2 || vb == 4) {
        return None;
    }
    assert!(dense.len() >= n * vb && bits.len() >= n.div_ceil(8));
    // SAFETY: features checked above; lengths asserted.
    unsafe { pack_kept_compress(dense, bits, n, kept, vb) }
}

#[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
fn pack_kept_compress(
    dense: &[u8],
    bits: &[u8],
    n: usize,
    kept: usize,
    vb: usize,
) -> Option<Vec<u8>> {
    // Each step stores 64 bytes at the write position, which never passes `kept * vb`
    // (it counts set bits among the first `n`, all of which `kept` counts).
    let mut out: Vec<u8> = Vec::with_capacity(kept * vb + 64);
    let per = 64 / vb;
    let mut at = 0usize;
    let src = dense.as_ptr();
    let dst = out.as_mut_ptr();
    let mut i = 0;
    while i < n {
        let valid = low_mask(n - i) & if per == 32 { u32::MAX } else { 0xffff };
        let m = bits32(bits, i) & valid;
        let cnt = m.count_ones() as usize * vb;
        if at + cnt > kept * vb {
            // More set bits than `kept` says: stop before writing out of bounds and leave
            // it to the scalar path.
            return None;
        }
        // SAFETY: the loads are masked to the `valid` values at `i`, inside `dense`; the
        // store writes 64 bytes at `at <= kept * vb`, inside the capacity.
        unsafe {
            let p = src.add(i * vb);
            let packed = if vb == 2 {
                let v = _mm512_maskz_loadu_epi16(valid, p as *const i16);
                _mm512_maskz_compress_epi16(m, v)
            } else {
                let v = _mm512_maskz_loadu_epi32(valid as u16, p as *const i32);
                _mm512_maskz_compress_epi32(m as u16, v)
            };
            _mm512_storeu_si512(dst.add(at) as *mut __m512i, packed);
        }
        at += cnt;
        i += per;
    }
    // SAFETY: bytes 0..at were written by the stores above (each wrote at least its own
    // `cnt` bytes at its position).
    unsafe { out.set_len(at) };
    Some(out)
}

/// The magnitude mask of little-endian bf16 values, 32 a step: bit `i` of `out` set where
/// `|values[i]| > thr` (the sign bit ignored), for every whole block of 32 values; blocks
/// holding a magnitude equal to `thr` are written as the others and their indices pushed
/// to `tie_blocks`, for the caller to redo in order (ties are dropped in index order).
/// Returns `false`, writing nothing, without the CPU features. The scalar reference is
/// the caller's loop (`sparsewire-se`'s magnitude select); a test there compares the two.
///
/// Panics if `out` holds fewer than `4 * (values.len() / 64)` bytes.
pub fn bf16_mask_above(
    values: &[u8],
    thr: u16,
    out: &mut [u8],
    tie_blocks: &mut Vec<usize>,
) -> bool {
    if !available() {
        return false;
    }
    let blocks = values.len() / 64;
    assert!(out.len() >= 4 * blocks, "mask buffer too short");
    // SAFETY: features checked above; lengths asserted.
    unsafe { bf16_mask_above_kernel(values, thr, &mut out[..4 * blocks], tie_blocks) };
    true
}

#[target_feature(enable = "avx512f,avx512bw")]
fn bf16_mask_above_kernel(values: &[u8], thr: u16, out: &mut [u8], tie_blocks: &mut Vec<usize>) {
    let abs = _mm512_set1_epi16(0x7fff);
    let t = _mm512_set1_epi16(thr as i16);
    for (b, (o, v)) in out
        .chunks_exact_mut(4)
        .zip(values.chunks_exact(64))
        .enumerate()
    {
        // SAFETY: a 64-byte unaligned load from a 64-byte chunk.
        let m = _mm512_and_si512(
            unsafe { _mm512_loadu_si512(v.as_ptr() as *const __m512i) },
            abs,
        );
        let gt = _mm512_cmpgt_epu16_mask(m, t);
        if _mm512_cmpeq_epu16_mask(m, t) != 0 {
            tie_blocks.push(b);
        }
        o.copy_from_slice(&gt.to_le_bytes());
    }
}
