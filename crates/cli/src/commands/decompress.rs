//! `sparsewire decompress`.

use crate::args::{self, Result};
use crate::output::{bytes_bar, count_bar, print_json, WithPeakMemory};
use sparsewire_formats::layout::IndexType;
use sparsewire_pipeline::checkpoint::decompress_dir;
use sparsewire_pipeline::{decompress_file, DecompressOptions};
use sparsewire_sparse::LayoutKind;
use sparsewire_stream::DecodeLimits;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Input .swire stream, or a folder of them (as `compress DIR` writes).
    input: PathBuf,
    /// Output: .safetensors, or .npy when the stream holds one tensor; `-` for standard
    /// output (safetensors). For a folder input, a folder: the model's layout back
    /// (NAME.swire -> NAME.safetensors, the other files copied).
    #[arg(short, long)]
    output: PathBuf,
    /// Overwrite an existing output file.
    #[arg(short, long)]
    force: bool,
    /// Refuse to decode more than this many bytes (checked before anything is written).
    #[arg(long, default_value_t = DecodeLimits::default().max_output_bytes, value_parser = args::at_least_one)]
    max_output_bytes: u64,
    /// Largest buffer decoding may allocate at once (a row block of tiles; a whole tensor
    /// for channel reconstruction); a stream that needs more is refused before anything is
    /// allocated. Default: a quarter of physical memory.
    #[arg(long, default_value_t = sparsewire_stream::default_memory_budget(), value_parser = args::at_least_one)]
    max_memory: u64,
    /// dense: the tensors as they were (dropped values zero or rebuilt). csr, csc, coo:
    /// each sparsified tensor NAME as arrays NAME.row_ptr/col_idx/values (csr),
    /// NAME.col_ptr/row_idx/values (csc) or NAME.row/col/values (coo), plus NAME.shape;
    /// tensors that are dense or rebuilt beyond zero-fill stay dense.
    #[arg(long, default_value = "dense")]
    layout: LayoutKind,
    /// Index dtype of the sparse layouts: i64 or u32.
    #[arg(long, default_value = "i64")]
    index: IndexType,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let opts = DecompressOptions {
        force: a.force,
        limits: DecodeLimits {
            max_output_bytes: a.max_output_bytes,
            max_memory_bytes: a.max_memory,
        },
        layout: Some(a.layout),
        index: a.index,
    };
    if let Some(dir) = sparsewire_pipeline::checkpoint::model_dir(&a.input) {
        let bar = count_bar("decompress", "shards");
        let r = decompress_dir(&dir, &a.output, &opts, &mut |done, total, _| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        if a.json {
            return print_json(&WithPeakMemory::now(&r));
        }
        println!(
            "{} -> {}: {} shards, {} tensors, {} other files copied, {} bytes, in {:.2} s",
            r.input.display(),
            r.output.display(),
            r.shards.len(),
            r.shards.iter().map(|s| s.tensors.len()).sum::<usize>(),
            r.copied.len(),
            r.output_bytes,
            r.seconds
        );
        return Ok(());
    }
    let pb = bytes_bar("decompress");
    let r = decompress_file(&a.input, &a.output, &opts, &mut |done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })?;
    pb.finish_and_clear();
    if a.json {
        return print_json(&WithPeakMemory::now(&r));
    }
    let sparse = r
        .tensors
        .iter()
        .filter(|t| t.layout != LayoutKind::Dense)
        .count();
    let line = format!(
        "{} -> {}: {} tensors{}, {} bytes, in {:.2} s",
        r.input.display(),
        r.output.display(),
        r.tensors.len(),
        if sparse > 0 {
            format!(" ({sparse} as {})", a.layout)
        } else {
            String::new()
        },
        r.output_bytes,
        r.seconds
    );
    if a.output == std::path::Path::new("-") {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(())
}
