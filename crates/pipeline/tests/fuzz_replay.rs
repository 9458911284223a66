//! Replays the committed fuzz corpus and regression files through the fuzz target bodies.

use sparsewire_pipeline::fuzz_targets;
use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
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
    assert!(replay("open_stream", fuzz_targets::open_stream) > 0);
    assert!(replay("decode_corrupt_tile", fuzz_targets::decode_corrupt_tile) > 0);
    assert!(replay("round_trip", fuzz_targets::round_trip) > 0);
}
