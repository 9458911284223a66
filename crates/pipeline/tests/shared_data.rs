//! Every tensor file in ../shared/data round-trips bit-exact through a .swire stream.
//!
//! The data lives beside the project (never copied into it); set SPARSEWIRE_DATA to
//! point elsewhere. Without it the test says so and checks nothing.

use sparsewire_pipeline::{compress, read_tensors, EncodeOptions, Reader};
mod common;
use common::data_dir;

#[test]
fn every_shared_file_round_trips_bit_exact() {
    let Some(dir) = data_dir() else {
        eprintln!("shared data not found (set SPARSEWIRE_DATA); skipping");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected the shared tensor files in {}",
        dir.display()
    );
    for path in files {
        let file = read_tensors(&path).unwrap();
        let stream = compress(&file, &EncodeOptions::default()).unwrap();
        let reader = Reader::new(&stream[..]).unwrap();
        let back = reader.decode_all().unwrap();
        assert_eq!(back.metadata, file.metadata, "{}", path.display());
        assert_eq!(back.tensors.len(), file.tensors.len());
        for (a, b) in file.tensors.iter().zip(&back.tensors) {
            assert!(a == b, "{}: tensor {} differs", path.display(), a.name);
        }
        // Random access: the last tile of every tensor decodes alone.
        for t in 0..reader.header().tensors.len() {
            let tiles = reader.header().tensors[t].tiles.len();
            if tiles > 0 {
                reader.decode_tile(t, tiles - 1).unwrap();
            }
        }
        if file.tensors.iter().any(|t| t.dtype.is_compressible_float()) && file.byte_len() > 1 << 20
        {
            assert!(
                stream.len() < file.byte_len() as usize,
                "{} did not shrink",
                path.display()
            );
        }
    }
}
