#![no_main]
//! cargo fuzz run decode_corrupt_tile — body in sparsewire_pipeline::fuzz_targets::decode_corrupt_tile.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_pipeline::fuzz_targets::decode_corrupt_tile(data);
});
