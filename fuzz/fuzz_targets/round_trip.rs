#![no_main]
//! cargo fuzz run round_trip — body in sparsewire_stream::fuzzing::round_trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_stream::fuzzing::round_trip(data);
});
