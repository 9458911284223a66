//! `cargo xtask`: project chores that are programs, not shell scripts.
//!
//! - `cargo xtask golden [--bless]`: check the committed golden `.swire` files (or rewrite
//!   them after a deliberate format change).
//! - `cargo xtask bench [--data DIR] [--runs N] [--processes P] [--criterion]`: the side-by-side table:
//!   sparsewire's `bench` on each target file of the shared data, next to the peers
//!   (zstd, ZipNN, lmzip, measured by scripts/peers.py on the same machine in the same
//!   run); writes docs/BENCH.md and docs/bench.json. `--criterion` also runs the criterion
//!   benches under benches/.
//! - `cargo xtask sparsity [--data DIR]`: the sparsification figures on MiniLM bf16 with its
//!   real activations (whole-file sizes, mask bits against H(density), per-layer output
//!   error by criterion, adaptive against uniform budgets, timings); writes
//!   docs/SPARSITY.md and docs/sparsity.json.
//! - `cargo xtask sim [--data DIR] [--runs N]`: the accelerator model's answers (where the
//!   MMU stops stalling, the smallest buffer, model speed, calibration error); writes
//!   docs/SIMULATOR.md and docs/simulator.json.
//! - `cargo xtask train [--data DIR] [--only NAME] [--jobs N]`: every config of
//!   examples/train (the digits grid of sparsification-aware training) into
//!   docs/train.json, docs/TRAIN.md and docs/train_pareto.{svg,png}, N cells at a time on
//!   a thread each (default: one per core); `--render` redraws the last two from the JSON.
//! - `cargo xtask demo-assets [--data DIR]`: retrains the demo's digits model
//!   (examples/train/digits_90.toml) into assets/digits_90.swire, with 16 test digits.
//! - `cargo xtask link [--data DIR] [--seconds S]`: the link on loopback: MiniLM served
//!   over TCP with an alternating 2 / 0.1 GB/s link trace, passes due every 200 ms, once
//!   per policy (adaptive, lossless, fixed levels), then adaptive on a constant 2 GB/s
//!   link; writes docs/LINK.md and docs/link.json.
//! - `cargo xtask soak [--seconds S]`: the link's soak test (crates/link/tests/soak.rs):
//!   S seconds (default 600) of runs through a proxy injecting random faults, every
//!   output checked bit for bit.
//! - `cargo xtask vs-torch [--data DIR] [--scale F]`: sparsewire's recovery against a
//!   plain PyTorch one (scripts/torch_recover.py; `PEERS_PYTHON` with torch and
//!   transformers) from the same magnitude-pruned MiniLM in the same training time (15
//!   minutes at 50% unstructured, 10 at 2:4, times F); writes docs/recover/VS_TORCH.md,
//!   vs_torch.json and vs_torch.{svg,png}.
//! - `cargo xtask fuzz-seeds`: (re)writes the format-version-2 seeds of the `open_stream`
//!   fuzz corpus: the golden streams, sample streams of both profiles, and truncations.
//! - `cargo xtask memory [--dir DIR]`: compress and decompress a synthetic 4.5 GiB
//!   safetensors file with the release binary and check that neither passes 512 MiB of
//!   resident memory (crates/cli/tests/memory.rs; needs about 13.5 GB free in DIR,
//!   default the temporary folder).

mod link;
mod scorer;
mod sim;
mod train;
mod vs_torch;

use sparsewire_formats::TensorFile;
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
        Some("sparsity") => run_sparsity(&args[1..]),
        Some("sim") => run_sim(&args[1..]),
        Some("memory") => memory(flag(&args[1..], "--dir")),
        Some("fuzz-seeds") => fuzz_seeds(),
        Some("link") => match flag(&args[1..], "--seconds").map_or(Ok(60.0), str::parse::<f64>) {
            Ok(s) if s > 0.0 && s.is_finite() => {
                link::run_link(&root(), flag(&args[1..], "--data"), s).map_err(|e| e.to_string())
            }
            _ => Err("--seconds: expected a positive number".into()),
        },
        Some("vs-torch") => vs_torch::run(
            &root(),
            flag(&args[1..], "--data"),
            flag(&args[1..], "--scale"),
        ),
        Some("soak") => soak(flag(&args[1..], "--seconds").unwrap_or("600")),
        Some("demo-assets") => train::demo_assets(&root(), flag(&args[1..], "--data")),
        Some("scorer") if args.iter().any(|a| a == "--activations") => scorer::run_activations(
            &root(),
            flag(&args[1..], "--data"),
            flag(&args[1..], "--steps"),
        ),
        Some("scorer") => scorer::run(
            &root(),
            flag(&args[1..], "--data"),
            flag(&args[1..], "--steps"),
            flag(&args[1..], "--shrink"),
            args.iter().any(|a| a == "--per-family"),
        ),
        Some("train") if args.iter().any(|a| a == "--render") => train::render(&root()),
        Some("train") => train::run(
            &root(),
            flag(&args[1..], "--data"),
            flag(&args[1..], "--only"),
            flag(&args[1..], "--jobs"),
        ),
        _ => Err("usage: cargo xtask golden [--bless] | cargo xtask bench [--data DIR] [--runs N] [--processes P] [--criterion] | cargo xtask sparsity [--data DIR] | cargo xtask sim [--data DIR] [--runs N] | cargo xtask memory [--dir DIR] | cargo xtask fuzz-seeds | cargo xtask scorer [--data DIR] [--steps N] [--shrink A] [--per-family] [--activations] | cargo xtask train [--data DIR] [--only NAME] [--jobs N] [--render] | cargo xtask demo-assets [--data DIR] | cargo xtask link [--data DIR] [--seconds S] | cargo xtask soak [--seconds S] | cargo xtask vs-torch [--data DIR] [--scale F]".into()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a tensor file whole.
fn read_tensors(p: &Path) -> Result<TensorFile, String> {
    sparsewire_formats::input::InputFile::open(p)
        .and_then(|f| f.read_all())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Runs the golden test (crates/pipeline/tests/golden.rs), which rewrites the committed
/// streams when SPARSEWIRE_BLESS is set.
fn golden(bless: bool) -> Result<(), String> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "test",
        "--release",
        "-p",
        "sparsewire-pipeline",
        "--test",
        "golden",
        "--",
        "--nocapture",
    ])
    .current_dir(root());
    if bless {
        cmd.env("SPARSEWIRE_BLESS", "1");
    }
    let st = cmd.status().map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err("the golden test failed".into())
    }
}

/// Writes the current-format seeds of fuzz/corpus/open_stream (named `v2-*`, replacing
/// earlier ones of that name): the golden streams, sample streams, and each cut short.
fn fuzz_seeds() -> Result<(), String> {
    use sparsewire_stream::{fuzzing::sample_stream, Profile};
    let dir = root().join("fuzz/corpus/open_stream");
    let v = sparsewire_stream::FORMAT_VERSION;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let golden = root().join("crates/pipeline/tests/golden");
    let mut names: Vec<_> = std::fs::read_dir(&golden)
        .map_err(|e| format!("{}: {e}", golden.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "swire"))
        .collect();
    names.sort();
    for p in names {
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        seeds.push((format!("v{v}-golden-{stem}"), bytes));
    }
    for seed in [0u8, 7, 100] {
        for (profile, name) in [(Profile::Small, "small"), (Profile::Fast, "fast")] {
            seeds.push((
                format!("v{v}-sample-{name}-{seed}"),
                sample_stream(seed, profile),
            ));
        }
    }
    let cuts: Vec<(String, Vec<u8>)> = seeds
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("v{v}-sample")))
        .flat_map(|(n, b)| {
            [b.len() / 2, b.len() - 1].map(|at| (format!("{n}-cut{at}"), b[..at].to_vec()))
        })
        .collect();
    seeds.extend(cuts);
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"))?;
    }
    eprintln!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}

/// Runs the ignored bounded-memory test (crates/cli/tests/memory.rs).
fn memory(dir: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "test",
        "--release",
        "-p",
        "sparsewire-cli",
        "--test",
        "memory",
        "--",
        "--ignored",
        "--nocapture",
    ])
    .current_dir(root());
    if let Some(d) = dir {
        cmd.env("SPARSEWIRE_MEMORY_DIR", d);
    }
    let st = cmd.status().map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err("the bounded-memory test failed".into())
    }
}

fn soak(seconds: &str) -> Result<(), String> {
    match seconds.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => {}
        _ => return Err("--seconds: expected a positive number".into()),
    }
    let st = Command::new("cargo")
        .args([
            "test",
            "--release",
            "-p",
            "sparsewire-link",
            "--test",
            "soak",
            "--",
            "--ignored",
            "--nocapture",
        ])
        .env("SPARSEWIRE_SOAK_SECONDS", seconds)
        .current_dir(root())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err("the soak test failed".into())
    }
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
    let processes: usize = flag(args, "--processes")
        .unwrap_or("3")
        .parse()
        .ok()
        .filter(|&p| p >= 1)
        .ok_or("bad --processes: expected a count of 1 or more")?;
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
    // sparsewire runs as `sparsewire bench --json` in fresh processes: on the project's
    // VMs decode speed differs by up to 1.5x from one process to the next (stable inside
    // each), so one process would report whichever mode it drew.
    let st = Command::new("cargo")
        .args(["build", "--release", "-q", "-p", "sparsewire-cli"])
        .current_dir(root())
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("building sparsewire-cli failed".into());
    }
    let exe = root().join("target/release/sparsewire");
    let python = std::env::var("PEERS_PYTHON").unwrap_or_else(|_| "python3".into());
    let cpu = sparsewire_benches::cpu_model();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut kernels = std::collections::BTreeSet::new();
    for &(stem, ratio_target, speed_multiple) in TARGETS {
        let path = data.join(format!("{stem}.safetensors"));
        eprintln!("bench {}", path.display());
        let file_bytes = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let mut reports = Vec::new();
        for _ in 0..processes {
            let out = Command::new(&exe)
                .arg("bench")
                .arg(&path)
                .args(["--json", "--runs", &runs.to_string()])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "sparsewire bench {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            reports.push(v);
        }
        let field = |key: &str| -> Vec<f64> {
            let mut v: Vec<f64> = reports.iter().filter_map(|r| r[key].as_f64()).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
        let decode = field("decode_gbps");
        let (dec, dec2, enc) = (
            median(&decode),
            median(&field("decode_gbps_all_threads")),
            median(&field("encode_gbps")),
        );
        for r in &reports {
            kernels.insert(format!(
                "{}/{}",
                r["kernel"].as_str().unwrap_or("?"),
                r["encode_kernel"].as_str().unwrap_or("?")
            ));
        }
        let output_bytes = reports[0]["output_bytes"].as_u64().unwrap_or(0);
        // Same denominator as the peers: the whole original file.
        let ratio = output_bytes as f64 / file_bytes as f64;
        let peers = Command::new(&python)
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
        let speed_ok = zipnn_dec.map(|z| dec >= speed_multiple * z);
        let smallest_peer = ["zstd-3", "zipnn", "lmzip"]
            .iter()
            .filter_map(|p| peer(p, "ratio"))
            .fold(f64::INFINITY, f64::min);
        rows.push(format!(
            "| {stem} | **{:.2}%** ({}) | {} | {} | {} | **{:.2}** ({:.2}-{:.2}; >= {speed_multiple}x ZipNN: {}) | {:.2} ({:.2}x) | {} | {} | {:.2} |",
            ratio * 100.0,
            if smallest_peer.is_finite() {
                if ratio < smallest_peer { "below every peer".to_string() } else { "not below every peer".to_string() }
            } else {
                format!("< {:.1}%: {}", ratio_target * 100.0, if ratio < ratio_target { "met" } else { "missed" })
            },
            fmt(peer("zstd-3", "ratio"), true),
            fmt(peer("zipnn", "ratio"), true),
            fmt(peer("lmzip", "ratio"), true),
            dec,
            decode.first().copied().unwrap_or(f64::NAN),
            decode.last().copied().unwrap_or(f64::NAN),
            match speed_ok { Some(true) => "met", Some(false) => "missed", None => "n/a" },
            dec2,
            dec2 / dec,
            fmt(zipnn_dec, false),
            fmt(peer("lmzip", "decode_gbps"), false),
            enc,
        ));
        json.push(serde_json::json!({
            "file": stem,
            "file_bytes": file_bytes,
            "sparsewire": reports,
            "ratio_of_file": ratio,
            "decode_gbps_median": dec,
            "decode_gbps_all_threads_median": dec2,
            "encode_gbps_median": enc,
            "peers": peers,
        }));
    }
    let kernels: Vec<String> = kernels.into_iter().collect();
    let table = format!(
        "# Benchmarks\n\nMade by `cargo xtask bench --runs {runs} --processes {processes}` on {cpu} ({cores} cores); sparsewire decode/encode kernels {}. \
Single-thread unless the column says otherwise; speeds are GB (1e9 bytes) of original data per second. Each sparsewire figure is the median over {processes} \
fresh `sparsewire bench --json` processes of each one's median of at least {runs} runs and at least 0.2 s of runs, after at least 0.1 s of untimed warm-up runs (encode and decode into output buffers reused across runs, as a sender or receiver that works repeatedly does); the decode column also gives the \
range over the processes, since decode speed on this VM differs by up to 1.5x between processes and is stable within one. Ratios are compressed bytes / \
original file bytes. Peers measured by `scripts/peers.py` in the same run, one thread, by the same rule (median of at least 3 runs and 0.2 s, after 0.1 s of warm-up runs): zstd -3 (`zstandard`), ZipNN, and lmzip through its \
Python API (`lmz.api`, so its time is decoding, not interpreter start-up; it writes its output to a file).\n\n\
| file | sparsewire size | zstd -3 | ZipNN | lmzip | sparsewire decode GB/s | decode, {cores} threads (x one) | ZipNN decode | lmzip decode | sparsewire encode GB/s |\n\
|---|---|---|---|---|---|---|---|---|---|\n{}\n",
        kernels.join(", "),
        rows.join("\n")
    );
    write_report("BENCH.md", &table, "bench.json", &json)
}

/// Writes a report's Markdown and JSON under docs/ and prints the Markdown.
fn write_report(
    md_name: &str,
    md: &str,
    json_name: &str,
    json: &impl serde::Serialize,
) -> Result<(), String> {
    std::fs::write(root().join("docs").join(md_name), md).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(json).map_err(|e| e.to_string())?;
    std::fs::write(root().join("docs").join(json_name), text).map_err(|e| e.to_string())?;
    println!("{md}");
    Ok(())
}

fn run_sim(args: &[String]) -> Result<(), String> {
    let data = flag(args, "--data")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"));
    let runs = flag(args, "--runs")
        .map_or(Ok(5), str::parse)
        .map_err(|e| format!("--runs: {e}"))?;
    let (md, json) = sim::run(&data, runs)?;
    write_report("SIMULATOR.md", &md, "simulator.json", &json)
}

fn run_sparsity(args: &[String]) -> Result<(), String> {
    use sparsewire_metadata::{Criterion, Pattern};
    use sparsewire_pipeline::{compress, CompressOptions, CompressReport, CompressedTensor};
    use sparsewire_se::report::TensorSparsity;
    use sparsewire_se::{Budget, SparsifyOptions};
    let data = flag(args, "--data")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"));
    let model = read_tensors(&data.join("minilm_l6_v2.bf16.safetensors"))?;
    let acts = read_tensors(&data.join("minilm_l6_v2_activations.f32.safetensors"))?;
    let total = model.byte_len() as f64;
    let run = |criterion, pattern, budget, calibrated: bool, threads: usize| {
        let o = CompressOptions {
            sparsify: Some(SparsifyOptions {
                criterion,
                pattern,
                calibration: calibrated.then(|| acts.clone()),
                ..SparsifyOptions::new(budget)
            }),
            ..CompressOptions::default()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let t0 = std::time::Instant::now();
        let r = pool
            .install(|| compress(&model, &o))
            .map_err(|e| e.to_string());
        r.map(|(s, rep)| (s.len() as f64, rep, t0.elapsed().as_secs_f64()))
    };
    let lossy = |r: &CompressReport| -> Vec<(CompressedTensor, TensorSparsity)> {
        r.tensors
            .iter()
            .filter_map(|t| t.sparsify.clone().map(|s| (t.clone(), s)))
            .collect()
    };
    let mut md = String::from("# Sparsification on MiniLM-L6 bf16\n\nMade by `cargo xtask sparsity` (../shared/data: minilm_l6_v2.bf16 and its real activations). Sizes are whole-stream bytes / bf16 tensor bytes; all float tensors of rank >= 2 are sparsified, biases and norms stay lossless.\n\n");
    let mut json = serde_json::Map::new();

    md.push_str("## Whole-file size (magnitude)\n\n| setting | size | target | encode, 1 thread (median of 5, in memory) |\n|---|---|---|---|\n");
    for (label, pattern, target) in [
        ("50% unstructured", Pattern::Unstructured, 0.365),
        ("2:4", Pattern::NM { n: 2, m: 4 }, 0.37),
    ] {
        // The median of five runs: one run's time moved by 2x between runs on a shared VM.
        let mut times = Vec::new();
        let mut bytes = 0.0;
        for _ in 0..5 {
            let (b, _, secs) = run(
                Criterion::Magnitude,
                pattern,
                Budget::Sparsity(0.5),
                false,
                1,
            )?;
            bytes = b;
            times.push(secs);
        }
        times.sort_by(f64::total_cmp);
        let secs = times[2];
        md.push_str(&format!(
            "| {label} | {:.2}% | <= {:.1}% ({}) | {:.0} MB/s |\n",
            bytes / total * 100.0,
            target * 100.0,
            if bytes / total <= target {
                "met"
            } else {
                "missed"
            },
            total / secs / 1e6
        ));
        json.insert(
            format!("magnitude {label}"),
            serde_json::json!({"ratio": bytes / total, "encode_mb_s_1_thread": total / secs / 1e6}),
        );
    }

    md.push_str("\n## Mask bits per element against H(density) (magnitude, unstructured)\n\n| sparsity | mask bits | H(density) | over |\n|---|---|---|---|\n");
    for s in [0.5f32, 0.7, 0.9] {
        let (_, r, _) = run(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::Sparsity(s),
            false,
            2,
        )?;
        let l = lossy(&r);
        let w = |t: &CompressedTensor| t.stream.input_bytes as f64 / 2.0;
        let n: f64 = l.iter().map(|(t, _)| w(t)).sum();
        let m: f64 = l
            .iter()
            .map(|(t, s)| s.mask_bits_per_element * w(t))
            .sum::<f64>()
            / n;
        let h: f64 = l
            .iter()
            .map(|(t, s)| s.mask_entropy_bits_per_element * w(t))
            .sum::<f64>()
            / n;
        md.push_str(&format!(
            "| {s} | {m:.4} | {h:.4} | {:+.2}% |\n",
            (m / h - 1.0) * 100.0
        ));
    }

    md.push_str("\n## Relative output error per linear layer, 50% unstructured (real activations)\n\n| layer | magnitude | wanda | sparsegpt | bytes (mag / wanda / sgpt) |\n|---|---|---|---|---|\n");
    let mut per = Vec::new();
    let mut times = Vec::new();
    for c in [Criterion::Magnitude, Criterion::Wanda, Criterion::SparseGpt] {
        let (bytes, r, secs) = run(c, Pattern::Unstructured, Budget::Sparsity(0.5), true, 2)?;
        times.push((c.to_string(), secs, bytes / total));
        per.push(lossy(&r));
    }
    let mut ordered = 0;
    let mut rows = 0;
    for (t, s) in &per[0] {
        let Some(e0) = s.rel_output else { continue };
        let find = |k: usize| {
            per[k]
                .iter()
                .find(|(x, _)| x.stream.name == t.stream.name)
                .expect("the same tensors")
        };
        let (w, g) = (find(1), find(2));
        let (e1, e2) = (
            w.1.rel_output.unwrap_or(f64::NAN),
            g.1.rel_output.unwrap_or(f64::NAN),
        );
        rows += 1;
        ordered += (e2 < e1 && e1 < e0) as usize;
        md.push_str(&format!(
            "| {} | {e0:.4} | {e1:.4} | {e2:.4} | {} / {} / {} |\n",
            t.stream.name, t.stream.output_bytes, w.0.stream.output_bytes, g.0.stream.output_bytes
        ));
    }
    md.push_str(&format!("\nsparsegpt < wanda < magnitude on {ordered} of {rows} calibrated layers. Whole-run wall time on 2 threads and size:\n\n| criterion | seconds | size |\n|---|---|---|\n"));
    for (c, secs, ratio) in &times {
        md.push_str(&format!("| {c} | {secs:.1} | {:.2}% |\n", ratio * 100.0));
    }
    json.insert("ordered_layers".into(), serde_json::json!([ordered, rows]));
    json.insert("criteria_seconds".into(), serde_json::json!(times));

    md.push_str("\n## Adaptive against uniform allocation, budget 45% of the bf16 bytes\n\nCost = sum over tensors of numel x rel_error^2 (output error where calibrated); uniform is interpolated to exactly the same bytes.\n\n| criterion | size | adaptive cost | uniform cost | uniform sparsity | gain |\n|---|---|---|---|---|---|\n");
    for (c, cal) in [(Criterion::Wanda, true), (Criterion::Magnitude, false)] {
        let (bytes, r, _) = run(c, Pattern::Unstructured, Budget::TargetRatio(0.45), cal, 2)?;
        let a = r.allocation.ok_or("no allocation report")?;
        md.push_str(&format!(
            "| {c}{} | {:.2}% | {:.4e} | {:.4e} | {:.3} | {:.2}x |\n",
            if cal { " (calibrated)" } else { "" },
            bytes / total * 100.0,
            a.adaptive_cost,
            a.uniform_cost,
            a.uniform_sparsity,
            a.gain
        ));
        json.insert(
            format!("budget {c}"),
            serde_json::json!({"ratio": bytes / total, "gain": a.gain}),
        );
    }
    write_report("SPARSITY.md", &md, "sparsity.json", &json)
}
