//! `sparsewire demo`: prints what `sparsewire_pipeline::demo::run` found.

use crate::args::Result;
use crate::output::{print_inspect, print_json};
use sparsewire_pipeline::demo;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Also write demo.safetensors and demo.swire into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let r = demo::run(a.out.as_deref())?;
    if a.json {
        print_json(&r)?;
    } else {
        print(&r);
    }
    if !r.bit_exact {
        return Err("demo: the round trip was not bit-exact".into());
    }
    if !r.sparsified_decodes_exactly {
        return Err("demo: the sparsified stream did not decode to kept values and zeros".into());
    }
    Ok(())
}

fn print(r: &demo::DemoReport) {
    let file = demo::tensors();
    println!(
        "sparsewire demo: {} built-in tensors (fixed seed), {} bytes",
        file.tensors.len(),
        file.byte_len()
    );
    println!(
        "{:<22} {:>6} {:>14} {:>10} {:>10} {:>10} {:>10}",
        "tensor", "dtype", "shape", "mean", "std", "min", "max"
    );
    for t in &file.tensors {
        let shape = format!("{:?}", t.shape);
        match demo::stats(t) {
            Some([m, s, lo, hi]) => println!(
                "{:<22} {:>6} {:>14} {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
                t.name,
                t.dtype.to_string(),
                shape,
                m,
                s,
                lo,
                hi
            ),
            None => println!(
                "{:<22} {:>6} {:>14} (not float: carried through)",
                t.name,
                t.dtype.to_string(),
                shape
            ),
        }
    }
    println!("\n1. compress\n2. inspect");
    print_inspect(&r.inspect);
    println!("3. decompress");
    println!(
        "4. verify: {}",
        if r.bit_exact {
            "every tensor identical, bit for bit"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "\nsummary: {} -> {} bytes ({:.2}% of the original), encode {:.1} ms, decode {:.1} ms",
        r.input_bytes,
        r.output_bytes,
        r.ratio * 100.0,
        r.encode_seconds * 1e3,
        r.decode_seconds * 1e3
    );
    println!(
        "\n5. sparsify 50% (magnitude; {} weight matrices, while biases, norms and ids stay \
         lossless): {} bytes ({:.2}% of the original), mean relative error {:.3}; decoded: {}",
        r.sparsified_tensors,
        r.sparsified_output_bytes,
        r.sparsified_ratio * 100.0,
        r.sparsified_mean_rel_error,
        if r.sparsified_decodes_exactly {
            "kept values exact, dropped ones zero"
        } else {
            "MISMATCH"
        }
    );
    let m = &r.matmul;
    println!(
        "\n6. multiply y = W x from the stream ({}, 50% sparse, fast profile): {:.3} ms; the \
         dense kernel on the original {:.3} ms ({:.2}x; this small tensor sits in cache: see \
         the README for weights streamed from memory); max |y - y_reference| = {:.1e}",
        m.tensor,
        m.seconds * 1e3,
        m.dense_seconds * 1e3,
        m.speedup,
        m.max_abs_error_vs_reference
    );
    let s = &r.simulated_edge_npu;
    println!(
        "7. model: the sparse stream's {} matrices over edge-npu's 4 GB/s link (modelled): \
         {:.3} ms against {:.3} ms for dense weights ({:.2}x), MMU stalled {:.0}% of the time",
        r.sparsified_tensors,
        s.total_seconds * 1e3,
        s.dense_total_seconds * 1e3,
        s.speedup,
        s.mmu_stall_fraction * 100.0
    );
}
