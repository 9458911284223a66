#![no_main]
//! cargo fuzz run raw_tile — body in sparsewire_stream::fuzzing::raw_tile.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_stream::fuzzing::raw_tile(data);
});
