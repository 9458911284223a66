//! Sparse formats (docs/SPEC.md §6): the one sparse tile type every stage uses, the
//! layouts other libraries take, and the mask codes a stream stores.
//!
//! Takes kept/dropped decisions and values; gives:
//! - [`Mask`] / [`MaskRef`] ([`mask`]): one bit per element, packed LSB first, the only
//!   mask type between crates;
//! - [`SparseTile`] / [`SparseTileRef`] ([`tile`]): a `rows x cols` block of any byte-wide
//!   dtype as a mask and its kept values in row-major order. The sparsification engine
//!   hands a tensor to the stream writer as one; the reader hands stored tiles to the
//!   reconstruction engine and the matrix unit as views; runtime activations are one;
//! - [`layout`]: CSR, CSC and COO (`u32` or `i64` indices, as scipy and torch take them)
//!   and the N:M compressed layout (values + ⌈log2 M⌉-bit in-group indices), to and from a
//!   tile, zero-copy where the order allows, with every external array validated;
//! - [`codes`]: a mask as symbols in one of four encodings (SPEC §6.1: bitmask, run
//!   lengths, delta indices, N:M codes) and back.
//!
//! - [`expand`]: stored values (dense or a sparse tile) to dense f32, zero where dropped:
//!   a scalar reference and an AVX-512 kernel chosen at run time.
//!
//! Nothing here depends on a file format or a codec: `sparsewire-stream` entropy-codes
//! the symbols, `sparsewire-formats` writes layouts to safetensors.
//!
//! `unsafe` lives in [`avx512`] only; the `portable` feature builds without it, and the
//! crate then forbids `unsafe` altogether.
#![cfg_attr(feature = "portable", forbid(unsafe_code))]
#![cfg_attr(not(feature = "portable"), deny(unsafe_code))]

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
pub mod avx512;
pub mod codes;
pub mod expand;
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
pub mod mask;
pub mod tile;

pub use codes::{MaskEncoding, MaskSymbols, NMTable};
pub use expand::{expand_f32, expand_f32_ref, Values};
pub use layout::{Coo, Csc, Csr, LayoutKind, NmTile, SparseIndex};
pub use mask::{binary_entropy, Mask, MaskRef};
pub use tile::{value_bytes, SparseTile, SparseTileRef};

/// [`avx512::bf16_mask_above`] where this build and CPU have it; `false` (nothing
/// written: use the scalar loop) elsewhere, the `portable` build included.
pub fn bf16_mask_above(
    values: &[u8],
    thr: u16,
    out: &mut [u8],
    tie_blocks: &mut Vec<usize>,
) -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    return avx512::bf16_mask_above(values, thr, out, tie_blocks);
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    {
        let _ = (values, thr, out, tie_blocks);
        false
    }
}

/// A sparsified tensor, as the sparsification engine hands it to the stream writer: its
/// 2-D view as one [`SparseTile`] (mask and kept values in the dtype stored), and what the
/// stream's header records about it.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseTensor {
    pub tile: SparseTile,
    /// What the sparsification engine did.
    pub info: sparsewire_metadata::Sparsification,
    /// How the dropped elements are rebuilt.
    pub reconstruction: sparsewire_metadata::Reconstruction,
}

use sparsewire_metadata::Dtype;

/// Everything that can be wrong with a mask, a tile or an external sparse array. Each
/// variant names the array (and position) at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum SparseError {
    #[error("{array}: {got} entries, {expected} expected")]
    Length {
        array: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("mask padding bits (past the last element) are not zero")]
    MaskPadding,
    #[error("dtype {dtype} is narrower than a byte and has no sparse tiles")]
    Dtype { dtype: Dtype },
    #[error("{array}: a size or index overflows its type")]
    Overflow { array: &'static str },
    #[error("{array}[{position}] = {index} is out of range (must be below {bound})")]
    OutOfRange {
        array: &'static str,
        position: usize,
        index: i64,
        bound: usize,
    },
    #[error("{array}[0] is {got}; it must be 0")]
    PtrStart { array: &'static str, got: usize },
    #[error(
        "{array}[{position}] is smaller than the entry before it (pointers must not decrease)"
    )]
    NotMonotone {
        array: &'static str,
        position: usize,
    },
    #[error("{array}[{position}] is smaller than the index before it (indices must be sorted)")]
    Unsorted {
        array: &'static str,
        position: usize,
    },
    #[error("{array}[{position}] repeats the index before it")]
    Duplicate {
        array: &'static str,
        position: usize,
    },
    #[error("the mask keeps {kept} elements but {values} values were given")]
    KeptCount { kept: usize, values: usize },
    #[error("N:M pattern {n}:{m} is not supported here (needs 0 < N < M <= {max})")]
    BadNM { n: u8, m: u8, max: u8 },
    #[error("{cols} columns are not a multiple of M = {m}")]
    NmWidth { cols: usize, m: u8 },
    #[error("group {group} keeps {kept} elements, not the pattern's {n} of {m}")]
    NotNM {
        group: usize,
        kept: usize,
        n: u8,
        m: u8,
    },
    #[error("dtype {dtype} is not a float dtype (F32, F16, BF16) and does not expand to f32")]
    NotFloat { dtype: Dtype },
    #[error("mask symbols describe {got} elements, the tile has {len}")]
    SymbolCount { len: usize, got: usize },
    #[error("mask symbol stream is malformed: {reason}")]
    Malformed { reason: &'static str },
}

/// Whether a test comparing a SIMD kernel with its scalar reference can run here. When the
/// CPU lacks the kernel's features the test fails, saying so, unless
/// `SPARSEWIRE_ALLOW_NO_SIMD=1` is set: then it prints that it skipped. A `portable` build
/// has no kernel to compare, and says so.
#[cfg(test)]
pub(crate) fn simd_test_guard(what: &str) -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if avx512::available() {
        return true;
    }
    let why = if cfg!(feature = "portable") {
        "portable build, no SIMD kernels"
    } else {
        "this CPU lacks AVX-512 F/BW/VBMI2"
    };
    assert!(
        cfg!(feature = "portable") || std::env::var_os("SPARSEWIRE_ALLOW_NO_SIMD").is_some(),
        "{what}: cannot test the SIMD path ({why}); set SPARSEWIRE_ALLOW_NO_SIMD=1 to skip"
    );
    eprintln!("SKIPPED {what}: {why}");
    false
}
