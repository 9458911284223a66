//! The `portable` build: no SIMD code. Every kernel but the scalar one reports itself
//! unavailable, so nothing here is ever called; the functions do no steps.

pub(crate) fn avx2_available() -> bool {
    false
}

pub(crate) fn avx512_available() -> bool {
    false
}

pub(crate) fn fill_entries(_: &mut Vec<u32>, _: &[(u32, u32)]) -> bool {
    false
}

pub(crate) fn merge_bf16(_: &[u8], _: Option<&[u16; 256]>, _: &[u8], _: &mut [u8]) -> usize {
    0
}

pub(crate) fn map_symbols(_: &[u8], _: &[u16; 256], _: &mut [u16]) -> usize {
    0
}

pub(crate) fn unpack5(_: &[u8], _: &mut [u8]) -> usize {
    0
}

pub(crate) fn merge_f32(_: &[u16], _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> usize {
    0
}

pub(crate) fn split_avx512(
    layout: crate::PlaneLayout,
    values: &[u8],
    head: &mut [u16],
    tail: &mut [u8],
    byte0: &mut [u8],
    byte1: &mut [u8],
) {
    crate::planes::split_scalar(layout, values, head, tail, byte0, byte1)
}
