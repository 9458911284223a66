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

/// The digits CNN trained with 90% weight sparsity in the loop (`cargo xtask demo-assets`
/// from examples/train/digits_90.toml), as the `.swire` a host would send.
const DIGITS_MODEL: &[u8] = include_bytes!("../../../../assets/digits_90.swire");
/// 16 test digits (pixels 0..16) and their labels.
const DIGITS_SAMPLE: &[u8] = include_bytes!("../../../../assets/digits_sample.safetensors");

/// What the demo's trained network did.
#[derive(serde::Serialize)]
pub struct NetworkReport {
    /// The model's `.swire` bytes (what crosses the link).
    pub swire_bytes: usize,
    /// Its parameters as dense f32.
    pub dense_bytes: usize,
    pub weight_sparsity: f64,
    /// Recorded at training time on the 360 test digits.
    pub test_accuracy: Option<f64>,
    pub dense_test_accuracy: Option<f64>,
    pub posthoc_test_accuracy: Option<f64>,
    pub labels: Vec<u32>,
    pub predicted: Vec<u32>,
    pub decode_seconds: f64,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    demo: &'a demo::DemoReport,
    network: &'a NetworkReport,
}

fn network() -> Result<NetworkReport> {
    let t0 = std::time::Instant::now();
    let reader = sparsewire_stream::Reader::new(DIGITS_MODEL)?;
    let file = reader.decode_all()?;
    let decode_seconds = t0.elapsed().as_secs_f64();
    let cnn = sparsewire_train::digits::Cnn::from_file(&file)?;
    let meta = |k: &str| {
        file.metadata
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let sample = sparsewire_formats::read_safetensors(DIGITS_SAMPLE)?;
    let pixels = &sample.tensors[0].data;
    let labels: Vec<u32> = sample.tensors[1]
        .data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as u32)
        .collect();
    let predicted = cnn.predict(&sparsewire_train::digits::images(pixels)?)?;
    let all: usize = file.tensors.iter().map(|t| t.data.len()).sum();
    let zeros = file
        .tensors
        .iter()
        .filter(|t| t.name.ends_with("weight"))
        .flat_map(|t| t.to_f32_vec().unwrap_or_default())
        .filter(|v| *v == 0.0)
        .count();
    let weights: usize = file
        .tensors
        .iter()
        .filter(|t| t.name.ends_with("weight"))
        .map(|t| t.data.len() / 4)
        .sum();
    Ok(NetworkReport {
        swire_bytes: DIGITS_MODEL.len(),
        dense_bytes: all,
        weight_sparsity: zeros as f64 / weights.max(1) as f64,
        test_accuracy: meta("sparsewire.train.test_accuracy"),
        dense_test_accuracy: meta("sparsewire.train.dense_test_accuracy"),
        posthoc_test_accuracy: meta("sparsewire.train.posthoc_test_accuracy"),
        labels,
        predicted,
        decode_seconds,
    })
}

fn print_network(n: &NetworkReport) {
    let pct = |x: Option<f64>| x.map_or("?".into(), |v| format!("{:.2}%", 100.0 * v));
    println!(
        "\n8. a trained network: the digits CNN (3 conv layers of 3x3 filters, a classifier) \
         trained with {:.0}% of its weights dropped in the loop (`sparsewire train --config \
         examples/train/digits_90.toml`), sent as {} bytes of .swire instead of {} dense \
         ({:.1}%), decoded in {:.2} ms",
        100.0 * n.weight_sparsity,
        n.swire_bytes,
        n.dense_bytes,
        100.0 * n.swire_bytes as f64 / n.dense_bytes as f64,
        n.decode_seconds * 1e3
    );
    println!(
        "   test accuracy on 360 digits, recorded at training: {} (dense {}; the dense model \
         pruned the same after training: {})",
        pct(n.test_accuracy),
        pct(n.dense_test_accuracy),
        pct(n.posthoc_test_accuracy)
    );
    let right = n
        .labels
        .iter()
        .zip(&n.predicted)
        .filter(|(a, b)| a == b)
        .count();
    let show = |v: &[u32]| {
        v.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "   the {} test digits it carries, run here on the decoded weights:\n     labels     {}\n     predicted  {}   ({right}/{} right)",
        n.labels.len(),
        show(&n.labels),
        show(&n.predicted),
        n.labels.len()
    );
}

pub fn run(a: Args) -> Result<()> {
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let r = demo::run(a.out.as_deref())?;
    let n = network()?;
    if a.json {
        print_json(&Report {
            demo: &r,
            network: &n,
        })?;
    } else {
        print(&r);
        print_network(&n);
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
