#![no_main]
//! cargo fuzz run decode_large_tiles — body in sparsewire_stream::fuzzing::decode_large_tiles.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_stream::fuzzing::decode_large_tiles(data);
});
