//! Fixed-width bit packing of the tail bits (docs/SPEC.md §4.3).
//!
//! Values of `width` bits (1..=8) are packed little-endian: value `i` occupies bits
//! `i*width .. (i+1)*width` of the byte string read as one little-endian integer. Groups of
//! eight values fill exactly `width` bytes, which is how both directions work.

/// Bytes needed for `n` values of `width` bits.
pub fn packed_len(n: usize, width: u32) -> usize {
    (n * width as usize).div_ceil(8)
}

/// Packs the low `width` bits of each value; appends to `out`.
pub fn pack(values: &[u8], width: u32, out: &mut Vec<u8>) {
    debug_assert!((1..=8).contains(&width));
    match width {
        1 => pack_w::<1>(values, out),
        2 => pack_w::<2>(values, out),
        3 => pack_w::<3>(values, out),
        4 => pack_w::<4>(values, out),
        5 => pack_w::<5>(values, out),
        6 => pack_w::<6>(values, out),
        7 => pack_w::<7>(values, out),
        _ => pack_w::<8>(values, out),
    }
}

/// [`pack`] for one width: each group of eight values read as one `u64` and written as
/// `W` bytes into the output, sized once (a copy of a run-time length per group was a
/// twentieth of a BF16 encode).
fn pack_w<const W: usize>(values: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + packed_len(values.len(), W as u32), 0);
    let dst = &mut out[start..];
    // Eight `W`-bit fields, one per byte, pulled together in three halving steps: in
    // each 16-bit lane the upper byte's field moves down onto the lower one's (2W bits),
    // then in each 32-bit lane the upper half's onto the lower (4W bits), then the upper
    // 32 bits' onto the lower (8W bits). Each half is masked before it moves.
    let fields = |bits: usize, stride: usize, offset: usize| {
        let field = (1u64 << bits) - 1;
        (0..64 / stride).fold(0u64, |m, j| m | field << (stride * j + offset))
    };
    let (lo1, hi1) = (fields(W, 16, 0), fields(W, 16, 8));
    let (lo2, hi2) = (fields(2 * W, 32, 0), fields(2 * W, 32, 16));
    let (lo3, hi3) = (fields(4 * W, 64, 0), fields(4 * W, 64, 32));
    let squeeze = |a: u64| {
        let a = (a & lo1) | (a & hi1) >> (8 - W);
        let a = (a & lo2) | (a & hi2) >> (16 - 2 * W);
        (a & lo3) | (a & hi3) >> (32 - 4 * W)
    };
    let full = values.len() / 8;
    let (body, tail) = dst.split_at_mut(full * W);
    let mut groups = values.chunks_exact(8);
    for (g, d) in (&mut groups).zip(body.chunks_exact_mut(W)) {
        let acc = u64::from_le_bytes(g.try_into().expect("eight values"));
        d.copy_from_slice(&squeeze(acc).to_le_bytes()[..W]);
    }
    let rest = groups.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        let len = tail.len();
        tail.copy_from_slice(&squeeze(u64::from_le_bytes(b)).to_le_bytes()[..len]);
    }
}

/// Unpacks `out.len()` values of `width` bits from `packed`, which must be exactly
/// [`packed_len`] bytes (checked by the caller).
pub fn unpack(packed: &[u8], width: u32, out: &mut [u8]) {
    debug_assert_eq!(packed.len(), packed_len(out.len(), width));
    match width {
        1 => unpack_w::<1>(packed, out),
        2 => unpack_w::<2>(packed, out),
        3 => unpack_w::<3>(packed, out),
        4 => unpack_w::<4>(packed, out),
        5 => unpack_w::<5>(packed, out),
        6 => unpack_w::<6>(packed, out),
        7 => unpack_w::<7>(packed, out),
        _ => unpack_w::<8>(packed, out),
    }
}

/// Eight values of `W` bits from the `W` bytes of one group.
#[inline(always)]
pub fn group<const W: usize>(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..W].copy_from_slice(&bytes[..W]);
    u64::from_le_bytes(b)
}

fn unpack_w<const W: usize>(packed: &[u8], out: &mut [u8]) {
    let mask = (1u64 << W) - 1;
    let mut groups = out.chunks_exact_mut(8);
    for (g, s) in (&mut groups).zip(packed.chunks_exact(W)) {
        let acc = group::<W>(s);
        for (k, v) in g.iter_mut().enumerate() {
            *v = ((acc >> (k * W)) & mask) as u8;
        }
    }
    let rest = groups.into_remainder();
    if !rest.is_empty() {
        let tail = &packed[packed.len() - packed_len(rest.len(), W as u32)..];
        let mut b = [0u8; 8];
        b[..tail.len()].copy_from_slice(tail);
        let acc = u64::from_le_bytes(b);
        for (k, v) in rest.iter_mut().enumerate() {
            *v = ((acc >> (k * W)) & mask) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_width_and_length() {
        for width in 1..=8u32 {
            for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 100] {
                let vals: Vec<u8> = (0..n)
                    .map(|i| (i as u8).wrapping_mul(37) & ((1u16 << width) - 1) as u8)
                    .collect();
                let mut packed = Vec::new();
                pack(&vals, width, &mut packed);
                assert_eq!(packed.len(), packed_len(n, width));
                let mut back = vec![0u8; n];
                unpack(&packed, width, &mut back);
                assert_eq!(back, vals, "width {width} n {n}");
                // Bit by bit, as SPEC §4.3 words it.
                let mut bitwise = vec![0u8; packed.len()];
                for (i, &v) in vals.iter().enumerate() {
                    for b in 0..width as usize {
                        let bit = i * width as usize + b;
                        bitwise[bit / 8] |= ((v >> b) & 1) << (bit % 8);
                    }
                }
                assert_eq!(packed, bitwise, "width {width} n {n}");
            }
        }
    }
}
