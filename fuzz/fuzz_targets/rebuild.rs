#![no_main]
//! cargo fuzz run rebuild — body in sparsewire_re::fuzzing::rebuild.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_re::fuzzing::rebuild(data);
});
