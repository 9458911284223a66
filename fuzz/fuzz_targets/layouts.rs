#![no_main]
//! cargo fuzz run layouts — body in sparsewire_sparse::fuzzing::layouts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_sparse::fuzzing::layouts(data);
});
