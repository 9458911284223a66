#![no_main]
//! cargo fuzz run round_trip — body in sparsewire_pipeline::fuzz_targets::round_trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_pipeline::fuzz_targets::round_trip(data);
});
