//! The README's library example (`cargo run --release -p sparsewire-pipeline --example
//! library`; tests/examples.rs runs it too): compress with sparsification, read one tile
//! alone, rebuild a sparse stream three ways.

use sparsewire_pipeline::{compress, decompress, CompressOptions};
use sparsewire_re::{rebuild_tensor, Rebuild};
use sparsewire_se::{Budget, SparsifyOptions};
use sparsewire_sparse::layout::Csr;
use sparsewire_stream::Reader;

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A real model: sparsewire_formats::input::InputFile::open(path)?.read_all()?
    let file = sparsewire_formats::builtin::tensors();

    // Drop half of every weight matrix by magnitude; rebuild dropped values per tensor by
    // whichever method has the lowest error. CompressOptions::default() is lossless.
    let opts = CompressOptions {
        sparsify: Some(SparsifyOptions {
            rebuild: Rebuild::Auto,
            ..SparsifyOptions::new(Budget::Sparsity(0.5))
        }),
        ..CompressOptions::default()
    };
    let (stream, report) = compress(&file, &opts)?;
    println!("{} -> {} bytes", report.input_bytes, report.output_bytes);

    // The receiver validates the header once, then reads any tile on its own.
    let reader = Reader::new(&stream[..])?;
    let t = reader.tensor_index("encoder.ffn.weight")?;
    let meta = reader.meta(t)?;
    if let Some(tile) = reader.tile_sparse(t, 0)? {
        // Mask + kept values, never densified; as CSR for a sparse kernel.
        let csr: Csr<'_, i64> = tile.as_ref().to_csr()?;
        let kept = tile.mask().kept();
        println!("tile 0: {kept} kept of {}", tile.rows() * tile.cols());
        assert_eq!(csr.row_ptr.len(), tile.rows() + 1);
    }

    // Three ways back to dense:
    // 1. decode_all: dropped values are zeros (the stored bits, nothing rebuilt).
    let zero_filled = reader.decode_all()?;
    // 2. decompress: rebuilt as the header says (what `sparsewire decompress` writes).
    let rebuilt = decompress(&stream)?;
    // 3. by hand, one tensor: the reconstruction stage on the decoded values and mask.
    let mut values = zero_filled.tensors[t].to_f32_vec().expect("a float tensor");
    if let Some(mask) = reader.tensor_sparse(t)?.map(|s| s.mask().clone()) {
        let cols = *meta.shape.last().expect("a matrix") as usize;
        rebuild_tensor(&mut values, mask.as_ref(), cols, &meta.reconstruction)?;
    }
    assert_eq!(Some(values), rebuilt.tensors[t].to_f32_vec());
    println!("rebuilt by {}", meta.reconstruction.method());
    Ok(())
}
