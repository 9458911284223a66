#![no_main]
//! cargo fuzz run link_frames — body in sparsewire_link::fuzzing::frames.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sparsewire_link::fuzzing::frames(data);
});
