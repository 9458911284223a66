#![no_main]
//! cargo fuzz run decode_corrupt_tile — body in sparsewire_stream::fuzzing::decode_corrupt_tile.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_stream::fuzzing::decode_corrupt_tile(data);
});
