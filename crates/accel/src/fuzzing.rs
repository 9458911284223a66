//! Body of the `multiply_corrupt` cargo-fuzz target (`fuzz/`), here so that a normal test
//! replays its corpus on stable Rust: a fast-profile stream whose tiles are corrupted and
//! whose checksums are forged (what an attacker who rewrites the index can produce),
//! multiplied on every path. Every tile must be multiplied or refused with a typed error,
//! never read out of bounds (the kernels count kept values as they read them).

use crate::exec::{self, Options, Path};
use sparsewire_stream::fuzzing::{corrupt_and_reseal, sample_stream};
use sparsewire_stream::{Profile, Reader};

/// See the module docs.
pub fn multiply_corrupt(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let profile = if seed & 0x80 != 0 {
        Profile::Small
    } else {
        Profile::Fast
    };
    let stream = sample_stream(seed, profile);
    let Some(forged) = corrupt_and_reseal(&stream, rest) else {
        return;
    };
    let Ok(r) = Reader::new(&forged[..]) else {
        return;
    };
    for t in 0..r.header().tensors.len() {
        for (path, batch, threads) in [(Path::Auto, 1, 1), (Path::Pipelined, 2, 2)] {
            let x = exec::default_input(batch, 20);
            let opts = Options {
                batch,
                threads,
                path,
                ..Options::default()
            };
            let _ = exec::matmul(&r, t, &x, &opts);
        }
        let _ = exec::reference(&r, t, &exec::default_input(1, 20), 1);
    }
}
