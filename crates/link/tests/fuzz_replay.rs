//! Replays the committed `link_frames` fuzz corpus (fuzz/corpus/link_frames, grown by
//! `scripts/fuzz-all.sh` and minimised) and the seeds, with every truncation and byte
//! flip of them, through the fuzz target's body on stable Rust
//! (`SPARSEWIRE_WRITE_SEEDS=1` writes the seeds into the corpus).

use std::path::Path;

#[test]
fn the_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/link_frames");
    let seeds = sparsewire_link::fuzzing::seeds();
    if std::env::var_os("SPARSEWIRE_WRITE_SEEDS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz/corpus/link_frames is committed") {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        sparsewire_link::fuzzing::frames(&data);
        n += 1;
    }
    assert!(n >= seeds.len(), "{n} corpus files");
    for s in &seeds {
        sparsewire_link::fuzzing::frames(s);
        // Every truncation and every single-byte flip is an error or a shorter run of frames.
        for cut in 0..s.len() {
            sparsewire_link::fuzzing::frames(&s[..cut]);
        }
        for i in 0..s.len() {
            let mut b = s.clone();
            b[i] ^= 0xA5;
            sparsewire_link::fuzzing::frames(&b);
        }
    }
}
