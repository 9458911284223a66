#![no_main]
//! cargo fuzz run open_stream — body in sparsewire_stream::fuzzing::open_stream.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_stream::fuzzing::open_stream(data);
});
