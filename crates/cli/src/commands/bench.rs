//! `sparsewire bench`.

use crate::args::{self, CodecArgs, Result};
use crate::output::print_json;
use sparsewire_benches::{bench, BenchReport};
use sparsewire_formats::input::InputFile;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Input: .safetensors or .npy.
    file: PathBuf,
    /// Threads for the all-threads figures (default: all cores).
    #[arg(long, value_parser = args::count)]
    threads: Option<usize>,
    /// Timed runs per figure; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = args::count)]
    runs: usize,
    /// Also model the stream crossing a link of this many GB/s while it is decoded tile by
    /// tile (decode times measured, the link modelled), and report the delivered bandwidth.
    #[arg(long, value_parser = args::positive)]
    link_gbps: Option<f64>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    codec: CodecArgs,
}

pub fn run(a: Args) -> Result<()> {
    let file = InputFile::open(&a.file)
        .and_then(|f| f.read_all())
        .map_err(|e| format!("{}: {e}", a.file.display()))?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(format!(
        "benchmarking {} ({} runs per figure)",
        a.file.display(),
        a.runs
    ));
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = bench(&file, &a.codec.options(), threads, a.runs, a.link_gbps)?;
    pb.finish_and_clear();
    if a.json {
        print_json(&report)
    } else {
        print_bench(&report);
        Ok(())
    }
}

fn print_bench(r: &BenchReport) {
    println!(
        "ratio {:.2}% ({} -> {} bytes)",
        r.ratio * 100.0,
        r.input_bytes,
        r.output_bytes
    );
    println!(
        "encode {:.3} GB/s (1 thread), {:.3} GB/s ({} threads)",
        r.encode_gbps, r.encode_gbps_all_threads, r.threads
    );
    println!(
        "decode {:.3} GB/s (1 thread), {:.3} GB/s ({} threads)",
        r.decode_gbps, r.decode_gbps_all_threads, r.threads
    );
    println!(
        "median of {} runs on {} (decode kernel {}, encode kernel {}); GB = 1e9 bytes of original tensor data",
        r.runs, r.cpu, r.kernel, r.encode_kernel
    );
    println!(
        "{:<10} {:>12} {:>16} {:>10}",
        "plane", "bytes", "order-0 bound", "over bound"
    );
    for p in &r.planes {
        println!(
            "{:<10} {:>12} {:>16.0} {:>9.2}%",
            p.plane, p.bytes, p.entropy_bound_bytes, p.over_bound_percent
        );
    }
    if let Some(l) = &r.link {
        println!(
            "over a {} GB/s link (modelled, decode times measured): transfer {:.3} ms, last tile decoded at {:.3} ms ({:.3} ms of decode not hidden)",
            l.link_gbps,
            l.transfer_seconds * 1e3,
            l.delivered_seconds * 1e3,
            l.unhidden_decode_seconds * 1e3
        );
        println!(
            "effective delivered bandwidth {:.2} GB/s = {:.0}% of the ideal {:.2} GB/s (link / compressed fraction); uncompressed: {:.2} GB/s",
            l.effective_gbps,
            l.efficiency * 100.0,
            l.ideal_gbps,
            l.uncompressed_gbps
        );
    }
}
