#![no_main]
//! cargo fuzz run open_stream — body in sparsewire_pipeline::fuzz_targets::open_stream.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_pipeline::fuzz_targets::open_stream(data);
});
