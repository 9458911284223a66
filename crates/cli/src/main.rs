//! `sparsewire`: the command-line front end over `sparsewire-pipeline`.
//!
//! Parses arguments (clap), shows progress on stderr (indicatif, hidden when stderr is not
//! a terminal), installs the tracing subscriber (`-v`, `-vv`), prints tables or `--json`
//! reports on stdout, and turns errors into one message and a non-zero exit.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sparsewire_pipeline::{
    self as sw, demo, BenchReport, DecodeLimits, EncodeOptions, InspectReport, PipelineError,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod plot;

#[derive(Parser)]
#[command(
    name = "sparsewire",
    version,
    about = "Make neural-network tensors small before they cross a slow link, and rebuild them on the other side.",
    long_about = "Make neural-network tensors small before they cross a slow link, and rebuild them on the other side.\n\n\
    sparsewire compresses safetensors and .npy files into .swire streams whose tiles each decode on their own. \
    By default the codec is lossless and bit-exact; `compress --sparsity 0.5` (and friends) \
    drops the least important weights first and stores only what is kept, with a compact mask.\n\n\
    Start with `sparsewire demo`, which needs no files.",
    after_help = "Examples:\n  sparsewire demo\n  sparsewire compress model.safetensors -o model.swire\n  sparsewire compress model.safetensors -o model.swire --sparsity 0.5 --criterion wanda --calibration acts.safetensors\n  sparsewire inspect model.swire\n  sparsewire decompress model.swire -o restored.safetensors\n  sparsewire bench model.safetensors --json"
)]
struct Cli {
    /// More logging on stderr (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress a .safetensors or .npy file into a .swire stream: lossless and bit-exact by
    /// default; sparsified with --sparsity, --pattern N:M, --target-ratio/--target-bytes or
    /// --max-error.
    Compress(CompressArgs),
    /// Decode a .swire stream back to .safetensors (or .npy for a single tensor): bit for bit
    /// for lossless streams; zero-filled or rebuilt (--reconstruct) for sparsified ones.
    Decompress(DecompressArgs),
    /// Show what a .swire stream holds: per tensor sizes, codecs per plane, entropy bounds.
    Inspect(InspectArgs),
    /// Measure encode/decode speed and ratio on a .safetensors/.npy file.
    Bench(BenchArgs),
    /// Multiply by a compressed weight, tile by tile: y = W x, rebuilding W's tiles on
    /// demand into a bounded buffer, decoding overlapped with the multiply; with
    /// --compare-dense, against dense baselines on the original weights.
    Matmul(MatmulArgs),
    /// Model an accelerator (bus, local memory, reconstruction engine, matrix unit) running
    /// the real scheduler on a stream's tensors: time, stalls, bus bytes, buffer use and
    /// speedup over sending dense weights; sweeps; --calibrate for this machine.
    Simulate(SimulateArgs),
    /// Run the whole job on a built-in set of weight-like tensors: compress, inspect,
    /// decompress, verify; then sparsify 50% and show what it costs.
    Demo(DemoArgs),
}

#[derive(Args)]
struct CodecArgs {
    /// Elements per tile the default tile shape aims at (whole rows when they fit).
    #[arg(long, default_value_t = sw::formats::tiling::DEFAULT_TILE_ELEMS)]
    tile_elems: u64,
    /// Fixed tile shape ROWSxCOLS for every float tensor (overrides --tile-elems).
    #[arg(long, value_parser = parse_tile)]
    tile: Option<sw::metadata::TileShape>,
    /// Do not try zstd per tensor (it is kept only where it beats the float planes).
    #[arg(long)]
    no_lz: bool,
    /// zstd level for that trial.
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
    /// small: entropy-coded values and masks, for a slow link (storage, network, PCIe).
    /// fast: raw bitmask + packed values, no entropy stage, so `matmul` multiplies straight
    /// from the stored bytes at memory speed.
    #[arg(long, default_value = "small", value_parser = parse_profile)]
    profile: sw::Profile,
}

fn parse_profile(s: &str) -> std::result::Result<sw::Profile, String> {
    match s {
        "small" => Ok(sw::Profile::Small),
        "fast" => Ok(sw::Profile::Fast),
        _ => Err(format!("unknown profile {s:?}: expected small or fast")),
    }
}

impl CodecArgs {
    fn options(&self) -> EncodeOptions {
        EncodeOptions {
            tile_elems: self.tile_elems.max(1),
            tile_shape: self.tile,
            try_lz: !self.no_lz,
            zstd_level: self.zstd_level,
            profile: self.profile,
        }
    }
}

fn parse_tile(s: &str) -> std::result::Result<sw::metadata::TileShape, String> {
    let (r, c) = s
        .split_once(['x', 'X'])
        .ok_or("expected ROWSxCOLS, for example 64x384")?;
    let rows: u64 = r.parse().map_err(|_| format!("bad row count {r:?}"))?;
    let cols: u64 = c.parse().map_err(|_| format!("bad column count {c:?}"))?;
    if rows == 0 || cols == 0 {
        return Err("tile sides must be at least 1".into());
    }
    Ok(sw::metadata::TileShape { rows, cols })
}

#[derive(Args)]
struct CompressArgs {
    /// Input: .safetensors or .npy.
    input: PathBuf,
    /// Output .swire file (default: INPUT with .swire appended).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Overwrite an existing output.
    #[arg(short, long)]
    force: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    codec: CodecArgs,
    #[command(flatten)]
    sparsify: SparsifyArgs,
}

/// Lossy options: any of these turns sparsification on (float tensors of rank >= 2).
#[derive(Args)]
struct SparsifyArgs {
    /// Fraction of elements to drop from each sparsified tensor, in [0, 1).
    #[arg(long)]
    sparsity: Option<f32>,
    /// Importance criterion: magnitude, taylor, wanda, sparsegpt, correlation, or
    /// predictable (drop what row interpolation rebuilds best; implies --reconstruct
    /// linear unless another method is given).
    #[arg(long, default_value = "magnitude", value_parser = parse_criterion)]
    criterion: sw::metadata::Criterion,
    /// Pattern: unstructured, row (unstructured per row), N:M (e.g. 2:4), block:RxC, channel.
    #[arg(long, default_value = "unstructured", value_parser = parse_pattern)]
    pattern: sw::metadata::Pattern,
    /// Calibration activations ([tokens, in] tensors) for wanda, sparsegpt and output error.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// JSON {"weight name": "activation name"} tried before the built-in matching rules.
    #[arg(long)]
    calibration_map: Option<PathBuf>,
    /// Gradients with the weights' names and shapes (taylor).
    #[arg(long)]
    gradients: Option<PathBuf>,
    /// How dropped weights are rebuilt on decompress: zero, linear (row interpolation),
    /// learned (ridge predictor fitted per tensor on the dropped values), dictionary (per
    /// column mean of the dropped values), spatial (conv kernels: kept neighbours) or auto
    /// (the lowest error per tensor, zero-fill included).
    #[arg(long, default_value = "zero", value_parser = parse_rebuild)]
    reconstruct: sw::sparsify::Rebuild,
    /// Whole stream at most this fraction of the input's tensor bytes (adaptive per tensor).
    #[arg(long, conflicts_with_all = ["sparsity", "target_bytes", "max_error"])]
    target_ratio: Option<f64>,
    /// Whole stream at most this many bytes (adaptive per tensor).
    #[arg(long, conflicts_with_all = ["sparsity", "max_error"])]
    target_bytes: Option<u64>,
    /// Per tensor, the sparsest setting within this relative error (output error when
    /// calibrated, else Frobenius).
    #[arg(long, conflicts_with = "sparsity")]
    max_error: Option<f64>,
}

fn parse_criterion(s: &str) -> std::result::Result<sw::metadata::Criterion, String> {
    use sw::metadata::Criterion::*;
    Ok(match s.to_ascii_lowercase().as_str() {
        "magnitude" => Magnitude,
        "taylor" | "gradient" => Taylor,
        "wanda" => Wanda,
        "sparsegpt" => SparseGpt,
        "correlation" => Correlation,
        "predictable" => Predictable,
        _ => {
            return Err(format!(
                "unknown criterion {s:?} (magnitude, taylor, wanda, sparsegpt, correlation, predictable)"
            ))
        }
    })
}

fn parse_rebuild(s: &str) -> std::result::Result<sw::sparsify::Rebuild, String> {
    use sw::sparsify::Rebuild::*;
    Ok(match s.to_ascii_lowercase().as_str() {
        "zero" => Zero,
        "linear" => Linear,
        "learned" => Learned,
        "dictionary" => Dictionary,
        "spatial" => Spatial,
        "auto" => Auto,
        _ => {
            return Err(format!(
                "unknown reconstruction {s:?} (zero, linear, learned, dictionary, spatial, auto)"
            ))
        }
    })
}

fn parse_pattern(s: &str) -> std::result::Result<sw::metadata::Pattern, String> {
    use sw::metadata::Pattern::*;
    let s = s.to_ascii_lowercase();
    if let Some((n, m)) = s.split_once(':').filter(|_| !s.starts_with("block")) {
        let (n, m): (u8, u8) = (
            n.parse().map_err(|_| format!("bad N in {s:?}"))?,
            m.parse().map_err(|_| format!("bad M in {s:?}"))?,
        );
        if !(n > 0 && n < m && m <= 16) {
            return Err(format!("N:M needs 0 < N < M <= 16, got {n}:{m}"));
        }
        return Ok(NM { n, m });
    }
    if let Some(b) = s.strip_prefix("block:") {
        let t = parse_tile(b)?;
        return Ok(Block {
            rows: t.rows as u32,
            cols: t.cols as u32,
        });
    }
    Ok(match s.as_str() {
        "unstructured" => Unstructured,
        "row" | "per-row" => UnstructuredPerRow,
        "channel" => Channel,
        _ => {
            return Err(format!(
                "unknown pattern {s:?} (unstructured, row, N:M, block:RxC, channel)"
            ))
        }
    })
}

impl SparsifyArgs {
    fn lossy(&self) -> bool {
        self.sparsity.is_some_and(|s| s > 0.0)
            || matches!(self.pattern, sw::metadata::Pattern::NM { .. })
            || self.target_ratio.is_some()
            || self.target_bytes.is_some()
            || self.max_error.is_some()
    }

    fn options(&self) -> Result<sw::sparsify::SparsifyOptions> {
        use sw::sparsify::Budget;
        let budget = if let Some(r) = self.target_ratio {
            Budget::TargetRatio(r)
        } else if let Some(b) = self.target_bytes {
            Budget::TargetBytes(b)
        } else if let Some(e) = self.max_error {
            Budget::MaxError(e)
        } else {
            Budget::Sparsity(self.sparsity.unwrap_or(0.0))
        };
        let calibration_map = match &self.calibration_map {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| PipelineError::Io {
                    path: p.clone(),
                    source,
                })?;
                let map: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(&text)
                        .map_err(|e| format!("{}: not a JSON object of names: {e}", p.display()))?;
                map.into_iter().collect()
            }
            None => vec![],
        };
        Ok(sw::sparsify::SparsifyOptions {
            rebuild: self.reconstruct,
            criterion: self.criterion,
            pattern: self.pattern,
            budget,
            calibration: self
                .calibration
                .as_deref()
                .map(sw::read_tensors)
                .transpose()?,
            calibration_map,
            gradients: self
                .gradients
                .as_deref()
                .map(sw::read_tensors)
                .transpose()?,
        })
    }
}

#[derive(Args)]
struct DecompressArgs {
    /// Input .swire stream.
    input: PathBuf,
    /// Output: .safetensors, or .npy when the stream holds one tensor.
    #[arg(short, long)]
    output: PathBuf,
    /// Overwrite an existing output.
    #[arg(short, long)]
    force: bool,
    /// Refuse to decode more than this many bytes.
    #[arg(long, default_value_t = DecodeLimits::default().max_output_bytes)]
    max_output_bytes: u64,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// A .swire stream.
    file: PathBuf,
    /// Skip decoding, so no entropy bounds (fast on large files).
    #[arg(long)]
    no_entropy: bool,
    /// Print a JSON report on stdout (with every tile's codecs per plane).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Input: .safetensors or .npy.
    file: PathBuf,
    /// Threads for the all-threads figures (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Timed runs per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also model the stream crossing a link of this many GB/s while it is decoded tile by
    /// tile, and report the effective delivered bandwidth.
    #[arg(long)]
    link_gbps: Option<f64>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    codec: CodecArgs,
}

#[derive(Args)]
struct MatmulArgs {
    /// A .swire stream.
    file: PathBuf,
    /// The weight tensor W (its 2-D view, rows x cols): computes y = W x.
    #[arg(long)]
    tensor: String,
    /// Input vectors per multiply (1: GEMV).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Reconstruction buffer capacity in bytes of rebuilt f32 tiles (default: the tensor).
    #[arg(long)]
    buffer_bytes: Option<u64>,
    /// How many tiles decoding may run ahead of the multiply.
    #[arg(long, default_value_t = 4)]
    lookahead: usize,
    /// Input x: .npy or .safetensors holding batch x cols f32 values (default: a fixed
    /// deterministic input).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Also run dense baselines on the uncompressed weights in this .safetensors file
    /// (same tensor name) and print the speedup.
    #[arg(long)]
    compare_dense: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Multiplies of the same weight per run (micro-batches): later passes hit the buffer.
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// auto (fused when the tensor allows it), fused or pipelined.
    #[arg(long, default_value = "auto", value_parser = ["auto", "fused", "pipelined"])]
    path: String,
    /// Buffer eviction: belady (uses the known schedule) or lru.
    #[arg(long, default_value = "belady", value_parser = ["belady", "lru"])]
    policy: String,
    /// Timed runs; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Flush the last-level cache (write 64 MiB) before every timed run, compressed and
    /// dense alike: weights then stream from memory, as for a model larger than the cache.
    #[arg(long)]
    cold: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SimulateArgs {
    /// A .swire stream.
    file: PathBuf,
    /// Hardware: a preset (edge-npu, pcie-gpu, this-cpu after --calibrate wrote it) or a
    /// JSON file in the preset format (see docs/SIMULATOR.md).
    #[arg(long, default_value = "edge-npu")]
    hw: String,
    /// Tensors multiplied, in order (repeatable; default: every 2-D float tensor).
    #[arg(long)]
    tensor: Vec<String>,
    /// Input vectors per multiply.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Multiplies of each tensor (later ones hit the buffer when it holds the tensor).
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// How many tiles rebuilding may run ahead of the multiply.
    #[arg(long, default_value_t = 4)]
    lookahead: usize,
    /// Vary one parameter: bus.gbps, lmd.capacity_bytes, engine.scale (all engine rates
    /// times the value), mmu.scale or batch, e.g. --sweep bus.gbps=1,2,4,8.
    #[arg(long)]
    sweep: Option<String>,
    /// Measure this machine's rates with the real code, write the this-cpu preset (to
    /// --preset-out), and compare predicted with measured pipelined multiplies.
    #[arg(long)]
    calibrate: bool,
    /// Where --calibrate writes the preset.
    #[arg(long, default_value = "this-cpu.json")]
    preset_out: PathBuf,
    /// Timed runs per measurement (--calibrate).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Write a chart: the timeline of bus, rebuild and MMU per tile, or with --sweep the
    /// time against the swept value (SVG; PNG when OUT ends in .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Also write demo.safetensors and demo.swire into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    let res = match cli.command {
        Command::Compress(a) => compress(a),
        Command::Decompress(a) => decompress(a),
        Command::Inspect(a) => inspect(a),
        Command::Bench(a) => bench(a),
        Command::Demo(a) => run_demo(a),
        Command::Matmul(a) => matmul(a),
        Command::Simulate(a) => simulate(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn default_output(input: &Path) -> PathBuf {
    let mut s = input.as_os_str().to_owned();
    s.push(".swire");
    PathBuf::from(s)
}

fn compress_lossy(a: &CompressArgs, output: &Path) -> Result<()> {
    let opts = a.sparsify.options()?;
    sw::check_output(&a.input, output, a.force)?;
    let file = sw::read_tensors(&a.input)?;
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message("sparsify");
    let t0 = std::time::Instant::now();
    let (stream, report) =
        sw::sparsify::sparsify_and_compress(&file, &opts, &a.codec.options(), &|done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        })?;
    pb.finish_and_clear();
    sw::write_atomic(output, &stream, a.force)?;
    if a.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            input: &'a Path,
            output: &'a Path,
            seconds: f64,
            #[serde(flatten)]
            report: &'a sw::sparsify::SparsifyReport,
        }
        return print_json(&Out {
            input: &a.input,
            output,
            seconds: t0.elapsed().as_secs_f64(),
            report: &report,
        });
    }
    println!(
        "{:<48} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "tensor", "criterion", "sparsity", "bits/el", "mask b/el", "H(dens.)", "rel.err", "out.err"
    );
    let rebuilt = report.tensors.iter().any(|t| t.reconstruction != "zero");
    for t in &report.tensors {
        println!(
            "{:<48} {:>10} {:>9.4} {:>8.3} {:>9.3} {:>9.3} {:>9.4} {:>9}",
            truncate(&t.name, 48),
            t.criterion,
            t.sparsity,
            t.bits_per_element,
            t.mask_bits_per_element,
            t.mask_entropy_bits_per_element,
            t.rel_frobenius,
            t.rel_output
                .map(|e| format!("{e:.4}"))
                .unwrap_or_else(|| "-".into())
        );
        if rebuilt {
            println!(
                "    rebuilt by {}: {:.3}x less error than zero-fill",
                t.reconstruction, t.reconstruction_gain
            );
        }
        if let Some(n) = &t.note {
            println!("    note: {n}");
        }
    }
    if let Some(al) = &report.allocation {
        println!(
            "adaptive allocation: cost {:.4e} vs uniform (sparsity {:.2}) {:.4e}: {:.2}x better",
            al.adaptive_cost, al.uniform_cost, al.uniform_sparsity, al.gain
        );
    }
    println!(
        "{} -> {}: {} -> {} bytes ({:.2}%) in {:.1} s",
        a.input.display(),
        output.display(),
        report.input_bytes,
        report.output_bytes,
        report.ratio * 100.0,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn compress(a: CompressArgs) -> Result<()> {
    let output = a.output.clone().unwrap_or_else(|| default_output(&a.input));
    if a.sparsify.lossy() {
        return compress_lossy(&a, &output);
    }
    let size = std::fs::metadata(&a.input)
        .map_err(|source| PipelineError::Io {
            path: a.input.clone(),
            source,
        })?
        .len();
    let pb = progress_bar(size, "compress");
    let (stream, summary) =
        sw::compress_file(&a.input, &output, &a.codec.options(), a.force, &|p| {
            pb.set_length(p.total_bytes);
            pb.set_position(p.done_bytes)
        })?;
    pb.finish_and_clear();
    let reader = sw::Reader::new(&stream[..])?;
    let report = sw::inspect(&reader, false)?;
    if a.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            input: &'a Path,
            output: &'a Path,
            input_bytes: u64,
            output_bytes: u64,
            ratio: f64,
            seconds: f64,
            tensors: &'a [sw::TensorReport],
        }
        print_json(&Out {
            input: &a.input,
            output: &output,
            input_bytes: summary.input_bytes,
            output_bytes: summary.output_bytes,
            ratio: summary.ratio,
            seconds: summary.seconds,
            tensors: &report.tensors,
        })
    } else {
        println!(
            "{} -> {}: {} -> {} bytes ({:.2}%) in {:.2} s, {} tensors",
            a.input.display(),
            output.display(),
            summary.input_bytes,
            summary.output_bytes,
            summary.ratio * 100.0,
            summary.seconds,
            report.tensors.len()
        );
        Ok(())
    }
}

fn decompress(a: DecompressArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let limits = DecodeLimits {
        max_output_bytes: a.max_output_bytes,
    };
    let file = sw::decompress_file(&a.input, &a.output, a.force, limits)?;
    let input_bytes = std::fs::metadata(&a.input).map(|m| m.len()).unwrap_or(0);
    let output_bytes = file.byte_len();
    if a.json {
        #[derive(serde::Serialize)]
        struct T<'a> {
            name: &'a str,
            dtype: String,
            shape: &'a [u64],
            input_bytes: u64,
            output_bytes: u64,
        }
        #[derive(serde::Serialize)]
        struct Out<'a> {
            input_bytes: u64,
            output_bytes: u64,
            ratio: f64,
            seconds: f64,
            tensors: Vec<T<'a>>,
        }
        // Per tensor, input_bytes is the compressed size; read it from the stream index.
        let reader = sw::open_stream(&a.input, limits)?;
        let report = sw::inspect(&reader, false)?;
        print_json(&Out {
            input_bytes,
            output_bytes,
            ratio: sw::ratio(input_bytes, output_bytes),
            seconds: t0.elapsed().as_secs_f64(),
            tensors: file
                .tensors
                .iter()
                .zip(&report.tensors)
                .map(|(t, r)| T {
                    name: &t.name,
                    dtype: t.dtype.to_string(),
                    shape: &t.shape,
                    input_bytes: r.output_bytes,
                    output_bytes: t.data.len() as u64,
                })
                .collect(),
        })
    } else {
        println!(
            "{} -> {}: {} tensors, {} bytes, in {:.2} s",
            a.input.display(),
            a.output.display(),
            file.tensors.len(),
            output_bytes,
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

fn print_inspect(r: &InspectReport) {
    println!(
        "{:<48} {:>6} {:>16} {:>11} {:>11} {:>7}  planes: codec bytes (order-0 bound)",
        "tensor", "dtype", "shape", "bytes", "stored", "ratio"
    );
    for t in &r.tensors {
        let planes: Vec<String> = t
            .planes
            .iter()
            .map(|p| {
                let codecs: Vec<String> =
                    p.codecs.iter().map(|(c, n)| format!("{c}x{n}")).collect();
                format!(
                    "{}: {} {} ({:.0})",
                    p.plane,
                    codecs.join("+"),
                    p.bytes,
                    p.entropy_bound_bytes
                )
            })
            .collect();
        println!(
            "{:<48} {:>6} {:>16} {:>11} {:>11} {:>6.2}%  {}",
            truncate(&t.name, 48),
            t.dtype,
            format!("{:?}", t.shape),
            t.input_bytes,
            t.output_bytes,
            t.ratio * 100.0,
            planes.join("; ")
        );
        if let Some(sp) = &t.sparsification {
            let encs: Vec<String> = sp
                .mask_encodings
                .iter()
                .map(|(e, n)| format!("{e}x{n}"))
                .collect();
            println!(
                "    sparsified: {} {} sparsity {:.4}, rebuild {}, mask {:.3} bits/el (H = {:.3}, {}), rel. error {:.4}{}",
                sp.criterion,
                sp.pattern,
                sp.sparsity,
                sp.reconstruction,
                sp.mask_bits_per_element,
                sp.mask_entropy_bits_per_element,
                encs.join("+"),
                sp.rel_error,
                sp.output_error.map(|e| format!(", output error {e:.4}")).unwrap_or_default()
            );
        }
    }
    println!(
        "total: {} -> {} bytes ({:.2}%), header {} bytes, format version {}",
        r.input_bytes,
        r.output_bytes,
        r.ratio * 100.0,
        r.header_bytes,
        r.format_version
    );
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}

fn inspect(a: InspectArgs) -> Result<()> {
    let reader = sw::open_stream(&a.file, DecodeLimits::default())?;
    let report = sw::inspect(&reader, !a.no_entropy)?;
    if a.json {
        print_json(&report)
    } else {
        print_inspect(&report);
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
        "median of {} runs; GB = 1e9 bytes of original tensor data",
        r.runs
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
            "over a {} GB/s link: transfer {:.3} ms, last tile decoded at {:.3} ms ({:.3} ms of decode not hidden)",
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

fn matmul(a: MatmulArgs) -> Result<()> {
    use sw::mmo::{MmoOptions, MmoPath};
    let reader = sw::open_stream(&a.file, DecodeLimits::default())?;
    let t = reader.tensor_index(&a.tensor)?;
    let meta = &reader.header().tensors[t];
    let numel = meta.numel()?;
    let (_, cols) = sw::metadata::view_2d(&meta.shape, numel);
    let cols = cols as usize;
    if a.batch == 0 || a.passes == 0 {
        return Err("--batch and --passes must be at least 1".into());
    }
    let x = match &a.input {
        Some(p) => {
            let f = sw::read_tensors(p)?;
            let [x] = &f.tensors[..] else {
                return Err(format!(
                    "{}: expected one tensor, found {}",
                    p.display(),
                    f.tensors.len()
                )
                .into());
            };
            let v = x
                .to_f32_vec()
                .ok_or_else(|| format!("{}: {} is not a float tensor", p.display(), x.dtype))?;
            if v.len() != a.batch * cols {
                return Err(format!(
                    "{}: holds {} values; --batch {} x {} columns of {} needs {}",
                    p.display(),
                    v.len(),
                    a.batch,
                    cols,
                    a.tensor,
                    a.batch * cols
                )
                .into());
            }
            v
        }
        None => sw::mmo::default_input(a.batch, cols),
    };
    let dense = match &a.compare_dense {
        Some(p) => {
            let f = sw::read_tensors(p)?;
            let d = f
                .tensors
                .into_iter()
                .find(|d| d.name == a.tensor)
                .ok_or_else(|| format!("{}: no tensor named {:?}", p.display(), a.tensor))?;
            Some(d)
        }
        None => None,
    };
    let opts = MmoOptions {
        batch: a.batch,
        threads: a.threads.unwrap_or(MmoOptions::default().threads).max(1),
        buffer_bytes: a.buffer_bytes,
        lookahead: a.lookahead,
        policy: match a.policy.as_str() {
            "lru" => sw::accel::buffer::Policy::Lru,
            _ => sw::accel::buffer::Policy::Belady,
        },
        passes: a.passes,
        path: match a.path.as_str() {
            "fused" => MmoPath::Fused,
            "pipelined" => MmoPath::Pipelined,
            _ => MmoPath::Auto,
        },
    };
    let r = sw::mmo::bench_matmul(&reader, t, &x, &opts, dense.as_ref(), a.runs, a.cold)?;
    if a.json {
        return print_json(&r);
    }
    let rep = &r.report;
    println!(
        "{} [{} x {}] x batch {} ({} passes): {} path, {} tiles, {} threads",
        rep.tensor,
        rep.rows,
        rep.cols,
        rep.batch,
        rep.passes,
        serde_json::to_value(rep.path)?.as_str().unwrap_or("?"),
        rep.tiles,
        rep.threads
    );
    println!(
        "time {:.3} ms (median of {}{}), weights consumed at {:.2} GB/s (dense bytes), {} bytes stored",
        r.seconds * 1e3,
        r.runs,
        if r.cold { ", cache flushed before each" } else { "" },
        rep.weight_gbps,
        rep.stored_bytes
    );
    if let Some(o) = r.overlap_efficiency {
        println!(
            "decode {:.3} ms, multiply {:.3} ms, stalled {:.3} ms: overlap efficiency {:.0}%",
            rep.decode_seconds * 1e3,
            rep.compute_seconds * 1e3,
            rep.stall_seconds * 1e3,
            o * 100.0
        );
        println!(
            "buffer: {} of {} bytes at peak, {} hits, {} misses, lookahead {}",
            r.buffer.peak_bytes,
            r.buffer.capacity_bytes,
            r.buffer.hits,
            r.buffer.misses,
            rep.lookahead
        );
    }
    if let (Some(d), Some(s)) = (&r.dense, r.speedup) {
        if let Some(n) = d.native_seconds {
            println!("dense {} kernel: {:.3} ms", d.dtype, n * 1e3);
        }
        println!("dense faer f32: {:.3} ms", d.faer_f32_seconds * 1e3);
        println!(
            "speedup over the faster dense baseline: {s:.2}x; max |y - y_dense| = {:.3e}",
            r.max_abs_error.unwrap_or(0.0)
        );
    }
    println!(
        "max |y - y_reference| = {:.3e} (scalar reference on the rebuilt weights)",
        r.max_abs_error_vs_reference
    );
    Ok(())
}

fn load_hw(name: &str) -> Result<sw::accel::sim::HardwareSpec> {
    use sw::accel::sim::HardwareSpec;
    let from_file = |p: &Path| -> Result<HardwareSpec> {
        let text = std::fs::read_to_string(p).map_err(|source| PipelineError::Io {
            path: p.to_path_buf(),
            source,
        })?;
        let hw: HardwareSpec = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a hardware description: {e}", p.display()))?;
        hw.validate().map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(hw)
    };
    match name {
        "this-cpu" => from_file(Path::new("this-cpu.json")).map_err(|e| {
            format!("this-cpu: run `sparsewire simulate FILE --calibrate` first ({e})").into()
        }),
        n if n.ends_with(".json") => from_file(Path::new(n)),
        n => Ok(HardwareSpec::preset(n)?),
    }
}

fn simulate(a: SimulateArgs) -> Result<()> {
    let reader = sw::open_stream(&a.file, DecodeLimits::default())?;
    let tensors: Vec<usize> = if a.tensor.is_empty() {
        sw::simulate::matrices(&reader)
    } else {
        a.tensor
            .iter()
            .map(|n| reader.tensor_index(n))
            .collect::<std::result::Result<_, _>>()?
    };
    if tensors.is_empty() {
        return Err("the stream has no 2-D float tensor to multiply".into());
    }
    if a.calibrate {
        let c = sw::simulate::calibrate(&reader, &tensors, a.runs)?;
        let text = serde_json::to_string_pretty(&c.preset)?;
        sw::write_atomic(&a.preset_out, text.as_bytes(), true)?;
        if a.json {
            return print_json(&c);
        }
        println!("wrote {}", a.preset_out.display());
        for r in &c.runs {
            println!(
                "{:<48} measured {:>9.3} ms  predicted {:>9.3} ms  error {:>5.1}%",
                r.tensor,
                r.measured_seconds * 1e3,
                r.predicted_seconds * 1e3,
                r.relative_error * 100.0
            );
        }
        println!("max relative error {:.1}%", c.max_relative_error * 100.0);
        return Ok(());
    }
    let hw = load_hw(&a.hw)?;
    let run = |hw: &sw::accel::sim::HardwareSpec, batch: usize| {
        sw::simulate::simulate_stream(&reader, &tensors, batch, a.passes, a.lookahead, hw)
    };
    let mut reports = Vec::new();
    match &a.sweep {
        None => {
            let (r, tl) = sw::simulate::simulate_timeline(
                &reader,
                &tensors,
                a.batch,
                a.passes,
                a.lookahead,
                &hw,
            )?;
            if let Some(p) = &a.plot {
                let title = format!("{} on {}", a.file.display(), hw.name);
                plot::timeline(p, &title, &tl)?;
            }
            reports.push((None, r));
        }
        Some(spec) => {
            let (param, values) = spec.split_once('=').ok_or("--sweep expects PARAM=a,b,c")?;
            for v in values.split(',') {
                let x: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("--sweep: {v:?} is not a number"))?;
                let mut h = hw.clone();
                let mut batch = a.batch;
                match param {
                    "bus.gbps" => h.bus.gbps = x,
                    "lmd.capacity_bytes" => h.lmd.capacity_bytes = x as u64,
                    "engine.scale" => {
                        let e = &mut h.engine;
                        e.dense_elems_per_s *= x;
                        e.zero_elems_per_s *= x;
                        e.linear_elems_per_s *= x;
                        e.learned_elems_per_s *= x;
                        e.dictionary_elems_per_s *= x;
                    }
                    "mmu.scale" => {
                        h.mmu.gemv_macs_per_s *= x;
                        h.mmu.gemm_macs_per_s *= x;
                    }
                    "batch" => batch = x as usize,
                    p => {
                        return Err(format!(
                            "--sweep: unknown parameter {p:?} (bus.gbps, lmd.capacity_bytes, engine.scale, mmu.scale, batch)"
                        )
                        .into())
                    }
                }
                reports.push((Some(x), run(&h, batch)?));
            }
            if let Some(p) = &a.plot {
                let pts: Vec<(f64, sw::accel::sim::SimReport)> = reports
                    .iter()
                    .map(|(v, r)| (v.unwrap_or(0.0), r.clone()))
                    .collect();
                plot::sweep(p, param, &pts)?;
            }
        }
    }
    if a.json {
        #[derive(serde::Serialize)]
        struct Point<'a> {
            value: Option<f64>,
            #[serde(flatten)]
            report: &'a sw::accel::sim::SimReport,
        }
        let pts: Vec<Point> = reports
            .iter()
            .map(|(v, r)| Point {
                value: *v,
                report: r,
            })
            .collect();
        return if a.sweep.is_none() {
            print_json(&pts[0])
        } else {
            print_json(&pts)
        };
    }
    println!(
        "{} on {}: {} tensors, batch {}, {} passes",
        a.file.display(),
        hw.name,
        tensors.len(),
        a.batch,
        a.passes
    );
    println!(
        "{:>12} {:>12} {:>12} {:>8} {:>8} {:>8} {:>8} {:>12} {:>8}",
        "value", "time ms", "dense ms", "speedup", "stall", "bus", "engine", "bus bytes", "misses"
    );
    for (v, r) in &reports {
        println!(
            "{:>12} {:>12.4} {:>12.4} {:>8.2} {:>7.0}% {:>7.0}% {:>7.0}% {:>12} {:>8}",
            v.map(|v| format!("{v}")).unwrap_or_else(|| "-".into()),
            r.total_seconds * 1e3,
            r.dense_total_seconds * 1e3,
            r.speedup,
            r.mmu_stall_fraction * 100.0,
            r.bus_utilisation * 100.0,
            r.engine_utilisation * 100.0,
            r.bus_bytes,
            r.buffer.misses
        );
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    let file = sw::read_tensors(&a.file)?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let pb = ProgressBar::new_spinner();
    pb.set_message(format!(
        "benchmarking {} ({} runs per figure)",
        a.file.display(),
        a.runs
    ));
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    if let Some(g) = a.link_gbps {
        if !(g > 0.0 && g.is_finite()) {
            return Err(format!("--link-gbps must be positive, got {g}").into());
        }
    }
    let report = sw::bench(&file, &a.codec.options(), threads, a.runs, a.link_gbps)?;
    pb.finish_and_clear();
    if a.json {
        print_json(&report)
    } else {
        print_bench(&report);
        Ok(())
    }
}

fn run_demo(a: DemoArgs) -> Result<()> {
    let file = demo::tensors();
    if !a.json {
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
            match demo::stats(t) {
                Some([m, s, lo, hi]) => println!(
                    "{:<22} {:>6} {:>14} {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
                    t.name,
                    t.dtype,
                    format!("{:?}", t.shape),
                    m,
                    s,
                    lo,
                    hi
                ),
                None => println!(
                    "{:<22} {:>6} {:>14} (not float: carried through)",
                    t.name,
                    t.dtype,
                    format!("{:?}", t.shape)
                ),
            }
        }
        println!("\n1. compress");
    }
    let t0 = std::time::Instant::now();
    let stream = sw::compress(&file, &EncodeOptions::default())?;
    let enc_s = t0.elapsed().as_secs_f64();
    let reader = sw::Reader::new(&stream[..])?;
    let report = sw::inspect(&reader, true)?;
    if !a.json {
        println!("2. inspect");
        print_inspect(&report);
        println!("3. decompress");
    }
    let t1 = std::time::Instant::now();
    let back = reader.decode_all()?;
    let dec_s = t1.elapsed().as_secs_f64();
    let identical = back == file;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|source| PipelineError::Io {
            path: dir.clone(),
            source,
        })?;
        sw::write_tensors(&dir.join("demo.safetensors"), &file, true)?;
        sw::write_atomic(&dir.join("demo.swire"), &stream, true)?;
    }
    // 5. The lossy path: 50% magnitude pruning of the weight matrices.
    let sparse_opts = sw::sparsify::SparsifyOptions {
        rebuild: sw::sparsify::Rebuild::Zero,
        criterion: sw::metadata::Criterion::Magnitude,
        pattern: sw::metadata::Pattern::Unstructured,
        budget: sw::sparsify::Budget::Sparsity(0.5),
        calibration: None,
        calibration_map: vec![],
        gradients: None,
    };
    let (sparse_stream, sparse) = sw::sparsify::sparsify_and_compress(
        &file,
        &sparse_opts,
        &EncodeOptions::default(),
        &|_, _| {},
    )?;
    let n: f64 = sparse.tensors.iter().map(|t| t.input_bytes as f64).sum();
    let mean_err = sparse
        .tensors
        .iter()
        .map(|t| t.rel_frobenius * t.input_bytes as f64)
        .sum::<f64>()
        / n.max(1.0);
    // Every decoded value is either the original, bit for bit, or a dropped zero.
    let sparse_back = sw::decompress(&sparse_stream)?;
    let sparse_ok = file.tensors.iter().zip(&sparse_back.tensors).all(|(a, b)| {
        match (a.to_f32_vec(), b.to_f32_vec()) {
            (Some(x), Some(y)) => x
                .iter()
                .zip(&y)
                .all(|(p, q)| *q == 0.0 || p.to_bits() == q.to_bits()),
            _ => a == b,
        }
    });
    // 6. Multiply from the stream: the FFN weight, 50% sparse, fast profile (fused), against
    // the dense f32 GEMV on the original; and the accelerator model on the sparse stream.
    let fast_stream = sw::sparsify::sparsify_and_compress(
        &file,
        &sparse_opts,
        &EncodeOptions {
            profile: sw::Profile::Fast,
            ..EncodeOptions::default()
        },
        &|_, _| {},
    )?
    .0;
    let fast = sw::Reader::new(&fast_stream[..])?;
    let ffn = fast.tensor_index("encoder.ffn.weight")?;
    let dense_ffn = &file.tensors[fast.tensor_index("encoder.ffn.weight")?];
    let x = sw::mmo::default_input(1, 384);
    let mm = sw::mmo::bench_matmul(
        &fast,
        ffn,
        &x,
        &sw::mmo::MmoOptions::default(),
        Some(dense_ffn),
        21,
        false,
    )?;
    let sparse_reader = sw::Reader::new(&sparse_stream[..])?;
    let matrices: Vec<usize> = (0..sparse_reader.header().tensors.len())
        .filter(|&i| sparse_reader.header().tensors[i].sparsification.is_some())
        .collect();
    let npu = sw::accel::sim::HardwareSpec::preset("edge-npu")?;
    let sim = sw::simulate::simulate_stream(&sparse_reader, &matrices, 1, 1, 4, &npu)?;
    if a.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            input_bytes: u64,
            output_bytes: u64,
            ratio: f64,
            encode_seconds: f64,
            decode_seconds: f64,
            bit_exact: bool,
            tensors: &'a [sw::TensorReport],
            sparsified_output_bytes: u64,
            sparsified_ratio: f64,
            sparsified_mean_rel_error: f64,
            sparsified_decodes_exactly: bool,
            matmul: &'a sw::mmo::MatmulBench,
            simulated_edge_npu: &'a sw::accel::sim::SimReport,
        }
        print_json(&Out {
            input_bytes: report.input_bytes,
            output_bytes: report.output_bytes,
            ratio: report.ratio,
            encode_seconds: enc_s,
            decode_seconds: dec_s,
            bit_exact: identical,
            tensors: &report.tensors,
            sparsified_output_bytes: sparse.output_bytes,
            sparsified_ratio: sparse.ratio,
            sparsified_mean_rel_error: mean_err,
            sparsified_decodes_exactly: sparse_ok,
            matmul: &mm,
            simulated_edge_npu: &sim,
        })?;
    } else {
        println!(
            "4. verify: {}",
            if identical {
                "every tensor identical, bit for bit"
            } else {
                "MISMATCH"
            }
        );
        println!(
            "\nsummary: {} -> {} bytes ({:.2}% of the original), encode {:.1} ms, decode {:.1} ms",
            report.input_bytes,
            report.output_bytes,
            report.ratio * 100.0,
            enc_s * 1e3,
            dec_s * 1e3
        );
        println!(
            "\n5. sparsify 50% (magnitude; {} weight matrices, while biases, norms and ids stay \
             lossless): {} bytes ({:.2}% of the original), mean relative error {:.3}; decoded: {}",
            sparse.tensors.len(),
            sparse.output_bytes,
            sparse.ratio * 100.0,
            mean_err,
            if sparse_ok {
                "kept values exact, dropped ones zero"
            } else {
                "MISMATCH"
            }
        );
        println!(
            "\n6. multiply y = W x from the stream (encoder.ffn.weight, 1536 x 384, 50% sparse, \
             fast profile): {:.3} ms; dense f32 GEMV on the original {:.3} ms ({:.2}x; this small \
             tensor sits in cache: see the README for weights streamed from memory); \
             max |y - y_reference| = {:.1e}",
            mm.seconds * 1e3,
            mm.dense_seconds.unwrap_or(f64::NAN) * 1e3,
            mm.speedup.unwrap_or(f64::NAN),
            mm.max_abs_error_vs_reference
        );
        println!(
            "7. model: the sparse stream's {} matrices over edge-npu's 4 GB/s link: {:.3} ms \
             against {:.3} ms for dense weights ({:.2}x), MMU stalled {:.0}% of the time",
            matrices.len(),
            sim.total_seconds * 1e3,
            sim.dense_total_seconds * 1e3,
            sim.speedup,
            sim.mmu_stall_fraction * 100.0
        );
        if let Some(dir) = &a.out {
            println!(
                "wrote {}/demo.safetensors and {}/demo.swire",
                dir.display(),
                dir.display()
            );
        }
    }
    if !sparse_ok {
        return Err("demo: sparsified stream did not decode to kept values and zeros".into());
    }
    if identical {
        Ok(())
    } else {
        Err("demo round trip was not bit-exact".into())
    }
}
