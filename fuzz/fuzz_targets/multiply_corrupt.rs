#![no_main]
//! cargo fuzz run multiply_corrupt — body in sparsewire_accel::fuzzing::multiply_corrupt.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_accel::fuzzing::multiply_corrupt(data);
});
