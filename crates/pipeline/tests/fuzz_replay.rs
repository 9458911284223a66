//! Replays the committed fuzz corpus and regression files (`fuzz/corpus/<target>`,
//! `fuzz/regressions/<target>`) through the fuzz target bodies on stable Rust: every input
//! that once ran, or once crashed, must still run without a panic.

use std::path::Path;

/// A fuzz target's body.
type Target = fn(&[u8]);

fn replay(target: &str, f: Target) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            f(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn corpus_and_regressions_do_not_panic() {
    use sparsewire_stream::fuzzing as stream;
    let targets: [(&str, Target); 8] = [
        ("open_stream", stream::open_stream),
        ("decode_corrupt_tile", stream::decode_corrupt_tile),
        ("decode_large_tiles", stream::decode_large_tiles),
        ("round_trip", stream::round_trip),
        ("raw_tile", stream::raw_tile),
        ("layouts", sparsewire_sparse::fuzzing::layouts),
        ("rebuild", sparsewire_re::fuzzing::rebuild),
        (
            "multiply_corrupt",
            sparsewire_accel::fuzzing::multiply_corrupt,
        ),
    ];
    for (name, f) in targets {
        assert!(replay(name, f) > 0, "no corpus for {name}");
    }
}
