//! What a sparsified tensor will cost, without coding it: for a budget search that tries
//! many sparsities per tensor (the sparsification engine's allocator) before the real
//! encode checks the result.

use sparsewire_codec::PlaneLayout;
use sparsewire_metadata::Pattern;
use sparsewire_sparse::{binary_entropy, SparseTileRef};

/// Estimated stored bytes of a sparse tensor: the order-0 entropy of its kept values'
/// heads, the rest of each kept value raw, and the mask at its bound (H(density) bits per
/// element; for N:M, log2 C(M, N) bits per group of M). Dense bytes for a dtype the float
/// codec does not take.
pub fn sparse_bytes(tile: SparseTileRef<'_>, pattern: Pattern) -> f64 {
    let n = (tile.rows() * tile.cols()) as f64;
    let Some(layout) = PlaneLayout::for_dtype(tile.dtype()) else {
        return n * tile.value_bytes() as f64;
    };
    let vb = layout.value_bytes;
    let mut hist = vec![0u64; 1 << layout.head_bits];
    let values = tile.values();
    for v in values.chunks_exact(vb) {
        hist[layout.head_of(v) as usize] += 1;
    }
    let kept = (values.len() / vb) as f64;
    let head_bits = sparsewire_codec::entropy_bits(&hist);
    let other = kept * (vb as f64 * 8.0 - layout.head_bits as f64);
    let mask_bits = match pattern {
        Pattern::NM { n: kn, m } => {
            let combos = (0..kn as u64).fold(1u64, |a, i| a * (m as u64 - i) / (i + 1));
            n / m as f64 * (combos as f64).log2()
        }
        _ => n * binary_entropy(kept / n.max(1.0)),
    };
    (head_bits + other + mask_bits) / 8.0
}
