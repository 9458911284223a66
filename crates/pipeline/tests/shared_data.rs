//! Every tensor file in ../shared/data round-trips bit-exact through a .swire file, written
//! and read back from disk the way the CLI does it.
//!
//! The data lives beside the project (never copied into it); set SPARSEWIRE_DATA to point
//! elsewhere. Without it the test is reported as ignored.

use sparsewire_formats::input::InputFile;
use sparsewire_pipeline::{compress_file, decompress_file, CompressOptions, DecompressOptions};
use sparsewire_stream::{FileSource, Kernel, Reader};
mod common;

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data (or $SPARSEWIRE_DATA), absent when this crate was built"
)]
fn every_shared_file_round_trips_bit_exact_through_files() {
    let dir = common::data_dir();
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
    let tmp = tempfile::tempdir().unwrap();
    for path in files {
        let swire = tmp.path().join("x.swire");
        let back = tmp.path().join("x.safetensors");
        let opts = CompressOptions {
            force: true,
            ..CompressOptions::default()
        };
        let r = compress_file(&path, &swire, &opts, &mut |_| {}).unwrap();
        assert_eq!(r.output_bytes, std::fs::metadata(&swire).unwrap().len());
        let d = DecompressOptions {
            force: true,
            ..DecompressOptions::default()
        };
        decompress_file(&swire, &back, &d, &mut |_, _| {}).unwrap();
        let a = InputFile::open(&path).unwrap().read_all().unwrap();
        let b = InputFile::open(&back).unwrap().read_all().unwrap();
        assert_eq!(b.metadata, a.metadata, "{}", path.display());
        assert_eq!(b.tensors.len(), a.tensors.len());
        for (x, y) in a.tensors.iter().zip(&b.tensors) {
            assert!(x == y, "{}: tensor {} differs", path.display(), x.name);
        }
        // Every decode kernel this machine has gives the same bytes.
        let stream = std::fs::read(&swire).unwrap();
        for kernel in Kernel::available_kernels() {
            let r = Reader::new(&stream[..]).unwrap().with_kernel(kernel);
            for (t, x) in r.decode_all().unwrap().tensors.iter().zip(&a.tensors) {
                assert!(
                    t.data == x.data,
                    "{}: {} with {kernel:?}",
                    path.display(),
                    x.name
                );
            }
        }
        // Random access from the file: the last tile of every tensor alone.
        let reader = Reader::new(FileSource::open(&swire).unwrap()).unwrap();
        for t in 0..reader.header().tensors.len() {
            let tiles = reader.header().tensors[t].tiles.len();
            if tiles > 0 {
                reader.decode_tile(t, tiles - 1).unwrap();
            }
        }
        let big =
            a.tensors.iter().any(|t| t.dtype.is_compressible_float()) && a.byte_len() > 1 << 20;
        if big {
            assert!(
                r.output_bytes < a.byte_len(),
                "{} did not shrink",
                path.display()
            );
        }
    }
}
