//! `cargo xtask`: project chores that are programs, not shell scripts.
//!
//! - `cargo xtask golden [--bless]`: check the committed golden `.swire` files (or rewrite
//!   them after a deliberate format change).
//! - `cargo xtask bench [--data DIR] [--runs N] [--criterion]`: the side-by-side table:
//!   sparsewire's `bench` on each target file of the shared data, next to the peers
//!   (zstd, ZipNN, lmzip, measured by scripts/peers.py on the same machine in the same
//!   run); writes docs/BENCH.md and docs/bench.json. `--criterion` also runs the criterion
//!   benches under benches/.

use sparsewire_pipeline::{bench, read_tensors, EncodeOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The files the targets name, with their targets: (stem, ratio below, decode
/// at least this multiple of ZipNN's single-thread decode in the same run).
const TARGETS: &[(&str, f64, f64)] = &[
    ("minilm_l6_v2.bf16", 0.663, 2.0),
    ("minilm_l6_v2.f32", 0.819, 2.0),
    ("ppocrv4_det.f32", 0.845, 1.0),
    ("minilm_l6_v2_activations.f32", 0.826, 2.0),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("golden") => golden(args.iter().any(|a| a == "--bless")),
        Some("bench") => run_bench(&args[1..]),
        _ => Err("usage: cargo xtask golden [--bless] | cargo xtask bench [--data DIR] [--runs N] [--criterion]".into()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn golden(bless: bool) -> Result<(), String> {
    let dir = root().join("crates/pipeline/tests/golden");
    for line in sparsewire_pipeline::golden::check(&dir, bless)? {
        println!("{line}");
    }
    Ok(())
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn run_bench(args: &[String]) -> Result<(), String> {
    let data = flag(args, "--data")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"));
    let runs: usize = flag(args, "--runs")
        .unwrap_or("5")
        .parse()
        .map_err(|_| "bad --runs")?;
    if args.iter().any(|a| a == "--criterion") {
        let st = Command::new("cargo")
            .args(["bench", "-p", "sparsewire-benches"])
            .current_dir(root())
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("criterion benches failed".into());
        }
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l[l.find(':').map_or(0, |i| i + 2)..].to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for &(stem, ratio_target, speed_multiple) in TARGETS {
        let path = data.join(format!("{stem}.safetensors"));
        eprintln!("bench {}", path.display());
        let file = read_tensors(&path).map_err(|e| e.to_string())?;
        let file_bytes = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        let r = bench(&file, &EncodeOptions::default(), cores, runs).map_err(|e| e.to_string())?;
        // Same denominator as the peers: the whole original file.
        let ratio = r.output_bytes as f64 / file_bytes as f64;
        let peers = Command::new("python3")
            .arg(root().join("scripts/peers.py"))
            .arg(&path)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
        let peer =
            |name: &str, key: &str| -> Option<f64> { peers.as_ref()?["peers"][name][key].as_f64() };
        let fmt = |v: Option<f64>, pct: bool| match v {
            Some(x) if pct => format!("{:.2}%", x * 100.0),
            Some(x) => format!("{x:.2}"),
            None => "n/a".into(),
        };
        let zipnn_dec = peer("zipnn", "decode_gbps");
        let speed_ok = zipnn_dec.map(|z| r.decode_gbps >= speed_multiple * z);
        rows.push(format!(
            "| {stem} | **{:.2}%** (< {:.1}%: {}) | {} | {} | {} | **{:.2}** | {:.2} | {} | {} (>= {speed_multiple}x ZipNN: {}) | {:.2} |",
            ratio * 100.0,
            ratio_target * 100.0,
            if ratio < ratio_target { "met" } else { "missed" },
            fmt(peer("zstd-3", "ratio"), true),
            fmt(peer("zipnn", "ratio"), true),
            fmt(peer("lmzip", "ratio"), true),
            r.decode_gbps,
            r.decode_gbps_all_threads,
            fmt(zipnn_dec, false),
            fmt(peer("lmzip", "decode_gbps"), false),
            match speed_ok { Some(true) => "met", Some(false) => "missed", None => "n/a" },
            r.encode_gbps,
        ));
        json.push(serde_json::json!({
            "file": stem,
            "file_bytes": file_bytes,
            "sparsewire": r,
            "ratio_of_file": ratio,
            "peers": peers,
        }));
    }
    let table = format!(
        "# Benchmarks\n\nMade by `cargo xtask bench --runs {runs}` on {cpu} ({cores} cores). Single-thread unless the column says otherwise; \
decode speeds are GB (1e9 bytes) of original data per second, median of {runs} runs; ratios are compressed bytes / original file bytes. \
Peers measured by `scripts/peers.py` in the same run (lmzip through its CLI, so its speed includes process start-up).\n\n\
| file | sparsewire size | zstd -3 | ZipNN | lmzip | sparsewire decode GB/s | decode, {cores} threads | ZipNN decode | lmzip decode | sparsewire encode GB/s |\n\
|---|---|---|---|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    std::fs::write(root().join("docs/BENCH.md"), &table).map_err(|e| e.to_string())?;
    std::fs::write(
        root().join("docs/bench.json"),
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("{table}");
    Ok(())
}
