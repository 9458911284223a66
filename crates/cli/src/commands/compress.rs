//! `sparsewire compress`.

use crate::args::{self, CodecArgs, Result};
use crate::output::{bytes_bar, count_bar, print_json, truncate, WithPeakMemory};
use sparsewire_formats::input::InputFile;
use sparsewire_metadata::{Criterion, Pattern};
use sparsewire_pipeline::checkpoint::compress_dir;
use sparsewire_pipeline::{compress_file, CompressOptions, CompressReport, Progress};
use sparsewire_re::Rebuild;
use sparsewire_se::scorer::Scorers;
use sparsewire_se::{Budget, SparsifyOptions};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Input: .safetensors or .npy, or a model folder (Hugging Face layout:
    /// model.safetensors, or shards listed in model.safetensors.index.json, beside
    /// config.json and friends).
    input: PathBuf,
    /// Output .swire file (default: INPUT with .swire appended); `-` for standard output.
    /// For a model folder, a folder: one .swire per shard, model.swire.index.json mapping
    /// each tensor to its stream, and every other file copied.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(short, long)]
    force: bool,
    /// Print a JSON report on stdout (one schema for every path: docs/compress.schema.json).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    codec: CodecArgs,
    #[command(flatten)]
    sparsify: SparsifyArgs,
}

/// Lossy options: any of --sparsity (> 0), --pattern N:M, --target-ratio, --target-bytes
/// or --max-error turns sparsification on (float tensors of rank >= 2). The others only
/// apply then, and are refused without one.
#[derive(clap::Args)]
struct SparsifyArgs {
    /// Fraction of elements to drop from each sparsified tensor, in [0, 1).
    #[arg(long, value_parser = args::sparsity)]
    sparsity: Option<f32>,
    /// Importance criterion: magnitude (default), taylor, wanda, sparsegpt, correlation,
    /// predictable (drop what row interpolation rebuilds best; implies --reconstruct
    /// linear unless another method is given), or scorer (a trained MLP's score, Wanda's
    /// plus a learned residual; needs --calibration, reads --scorer).
    #[arg(long)]
    criterion: Option<Criterion>,
    /// Trained scorer for --criterion scorer: one scorer's parameters as JSON, or the
    /// output of `cargo xtask scorer` (one scorer per layer family, matched by the end of
    /// the tensor name). Default: the built-in scorers, fitted per MiniLM layer family at
    /// 50% kept (docs/scorer.json, docs/SCORER.md).
    #[arg(long, value_name = "FILE")]
    scorer: Option<PathBuf>,
    /// Pattern: unstructured (default), row (unstructured per row), N:M (e.g. 2:4),
    /// block:RxC, channel.
    #[arg(long)]
    pattern: Option<Pattern>,
    /// Calibration activations ([tokens, in] tensors) for wanda, sparsegpt and the output
    /// error.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// JSON {"weight name": "activation name"} tried before the built-in matching rules.
    #[arg(long, requires = "calibration")]
    calibration_map: Option<PathBuf>,
    /// Gradients with the weights' names and shapes (for --criterion taylor).
    #[arg(long)]
    gradients: Option<PathBuf>,
    /// How dropped weights are rebuilt on decompress: zero (default), linear (row
    /// interpolation), learned (ridge predictor fitted per tensor on the dropped values),
    /// dictionary (per column mean of the dropped values), spatial (conv kernels: kept
    /// neighbours), mlp (a 16-unit MLP on the row context, fitted per tensor, run by the
    /// receiver; slower to fit and rebuild, so auto leaves it out) or auto (the lowest
    /// error per tensor among the others, zero-fill included).
    #[arg(long)]
    reconstruct: Option<Rebuild>,
    /// Whole stream at most this fraction (0, 1] of the input's tensor bytes (adaptive per
    /// tensor).
    #[arg(long, value_parser = args::ratio, conflicts_with_all = ["sparsity", "target_bytes", "max_error"])]
    target_ratio: Option<f64>,
    /// Whole stream at most this many bytes (adaptive per tensor).
    #[arg(long, value_parser = args::at_least_one, conflicts_with_all = ["sparsity", "max_error"])]
    target_bytes: Option<u64>,
    /// Per tensor, the sparsest setting within this relative error (output error when
    /// calibrated, else Frobenius).
    #[arg(long, value_parser = args::positive, conflicts_with = "sparsity")]
    max_error: Option<f64>,
    /// NaN and infinite weights, which no criterion can rank: error (refuse the tensor,
    /// naming the element), keep (store them exactly, rank the rest), drop (drop them).
    #[arg(long, value_name = "POLICY")]
    nonfinite: Option<sparsewire_se::NonFinite>,
}

impl SparsifyArgs {
    /// The sparsification asked for, `None` for lossless; refuses options that would be
    /// ignored.
    fn options(&self) -> Result<Option<SparsifyOptions>> {
        let pattern = self.pattern.unwrap_or(Pattern::Unstructured);
        let budget = if let Some(r) = self.target_ratio {
            Some(Budget::TargetRatio(r))
        } else if let Some(b) = self.target_bytes {
            Some(Budget::TargetBytes(b))
        } else if let Some(e) = self.max_error {
            Some(Budget::MaxError(e))
        } else {
            match (self.sparsity, pattern) {
                (Some(s), _) if s > 0.0 => Some(Budget::Sparsity(s)),
                (_, Pattern::NM { .. }) => Some(Budget::Sparsity(0.0)),
                _ => None,
            }
        };
        let criterion = self.criterion.unwrap_or(Criterion::Magnitude);
        if self.gradients.is_some() && criterion != Criterion::Taylor {
            return Err("--gradients is only read by --criterion taylor".into());
        }
        if self.scorer.is_some() && criterion != Criterion::Scorer {
            return Err("--scorer is only read by --criterion scorer".into());
        }
        let Some(budget) = budget else {
            let given: Vec<&str> = [
                ("--criterion", self.criterion.is_some()),
                ("--pattern", self.pattern.is_some()),
                ("--calibration", self.calibration.is_some()),
                ("--gradients", self.gradients.is_some()),
                ("--scorer", self.scorer.is_some()),
                ("--reconstruct", self.reconstruct.is_some()),
                ("--nonfinite", self.nonfinite.is_some()),
            ]
            .into_iter()
            .filter_map(|(n, set)| set.then_some(n))
            .collect();
            if !given.is_empty() {
                return Err(format!(
                    "{} only apply when sparsifying: add --sparsity S (S > 0), --pattern N:M, --target-ratio, --target-bytes or --max-error; without one the stream is lossless",
                    given.join(", ")
                )
                .into());
            }
            return Ok(None);
        };
        let calibration_map = match &self.calibration_map {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let map: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(&text)
                        .map_err(|e| format!("{}: not a JSON object of names: {e}", p.display()))?;
                map.into_iter().collect()
            }
            None => vec![],
        };
        let load = |p: &Option<PathBuf>| -> Result<_> {
            Ok(match p {
                Some(p) => Some(
                    InputFile::open(p)
                        .and_then(|f| f.read_all())
                        .map_err(|e| format!("{}: {e}", p.display()))?,
                ),
                None => None,
            })
        };
        Ok(Some(SparsifyOptions {
            rebuild: self.reconstruct.unwrap_or_default(),
            criterion,
            pattern,
            budget,
            calibration: load(&self.calibration)?,
            calibration_map,
            gradients: load(&self.gradients)?,
            nonfinite: self.nonfinite.unwrap_or_default(),
            scorers: if criterion == Criterion::Scorer {
                Some(self.scorers()?)
            } else {
                None
            },
        }))
    }

    /// The scorers of --scorer, or the built-in ones.
    fn scorers(&self) -> Result<Scorers> {
        match &self.scorer {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Ok(Scorers::from_json(&text).map_err(|e| format!("{}: {e}", p.display()))?)
            }
            None => Ok(Scorers::from_json(BUILTIN_SCORERS)
                .map_err(|e| format!("the built-in scorers: {e}"))?),
        }
    }
}

/// `cargo xtask scorer --per-family`'s output: one scorer per MiniLM layer family and one
/// fitted to the digits CNN (the fallback for every other tensor).
const BUILTIN_SCORERS: &str = include_str!("../../../../docs/scorer.json");

fn default_output(input: &Path) -> PathBuf {
    let mut s = input.as_os_str().to_owned();
    s.push(".swire");
    PathBuf::from(s)
}

pub fn run(a: Args) -> Result<()> {
    let dir = sparsewire_pipeline::checkpoint::model_dir(&a.input);
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| default_output(dir.as_deref().unwrap_or(&a.input)));
    let opts = CompressOptions {
        encode: a.codec.options(),
        sparsify: a.sparsify.options()?,
        force: a.force,
    };
    if let Some(dir) = dir {
        return run_dir(&a, &dir, &output, &opts);
    }
    let analyse = count_bar("analyse", "tensors");
    let write = bytes_bar(if opts.sparsify.is_some() {
        "sparsify+compress"
    } else {
        "compress"
    });
    let report = compress_file(&a.input, &output, &opts, &mut |p| match p {
        Progress::Analyse { done, total } => {
            analyse.set_length(total as u64);
            analyse.set_position(done as u64);
        }
        Progress::Write {
            done_bytes,
            total_bytes,
        } => {
            analyse.finish_and_clear();
            write.set_length(total_bytes);
            write.set_position(done_bytes);
        }
    })?;
    analyse.finish_and_clear();
    write.finish_and_clear();
    if a.json {
        return print_json(&WithPeakMemory::now(&report));
    }
    print_report(&report, output == Path::new("-"));
    Ok(())
}

/// A model folder: shard by shard.
fn run_dir(a: &Args, input: &Path, output: &Path, opts: &CompressOptions) -> Result<()> {
    if output == Path::new("-") {
        return Err(
            "a model folder compresses to a folder, not standard output: give -o DIR".into(),
        );
    }
    let bar = count_bar("compress", "shards");
    let r = compress_dir(input, output, opts, &mut |done, total, _| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if a.json {
        return print_json(&WithPeakMemory::now(&r));
    }
    for s in &r.shards {
        print_report(s, false);
    }
    println!(
        "{} -> {}: {} shards, {} other files copied; tensors {} -> {} bytes (ratio {:.4}) in {:.2} s",
        r.input.display(),
        r.output.display(),
        r.shards.len(),
        r.copied.len(),
        r.input_bytes,
        r.output_bytes,
        r.ratio,
        r.seconds
    );
    Ok(())
}

fn print_report(r: &CompressReport, stdout: bool) {
    // With the stream on standard output, the summary goes to stderr.
    let say = |s: String| {
        if stdout {
            eprintln!("{s}")
        } else {
            println!("{s}")
        }
    };
    let lossy: Vec<_> = r
        .tensors
        .iter()
        .filter_map(|t| t.sparsify.as_ref().map(|s| (t, s)))
        .collect();
    if !lossy.is_empty() && !stdout {
        println!(
            "{:<48} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "tensor",
            "criterion",
            "sparsity",
            "bits/el",
            "mask b/el",
            "H(dens.)",
            "rel.err",
            "out.err"
        );
        for (t, s) in &lossy {
            println!(
                "{:<48} {:>10} {:>9.4} {:>8.3} {:>9.3} {:>9.3} {:>9.4} {:>9}",
                truncate(&t.stream.name, 48),
                s.criterion.to_string(),
                s.sparsity,
                s.bits_per_element,
                s.mask_bits_per_element,
                s.mask_entropy_bits_per_element,
                s.rel_frobenius,
                s.rel_output
                    .map(|e| format!("{e:.4}"))
                    .unwrap_or_else(|| "-".into())
            );
            if s.reconstruction != sparsewire_metadata::ReconstructionMethod::Zero {
                let g = s.reconstruction_gain;
                let how = if g >= 1.0 {
                    format!("{g:.3}x less error than zero-fill")
                } else {
                    format!("{:.3}x more error than zero-fill", 1.0 / g)
                };
                println!("    rebuilt by {}: {how}", s.reconstruction);
            }
            if let Some(n) = &s.note {
                println!("    note: {n}");
            }
        }
        if let Some(al) = &r.allocation {
            println!(
                "adaptive allocation: cost {:.4e} vs uniform (sparsity {:.2}) {:.4e}: {:.2}x better",
                al.adaptive_cost, al.uniform_cost, al.uniform_sparsity, al.gain
            );
        }
    }
    say(format!(
        "{} -> {}: {} -> {} bytes ({:.2}%) in {:.2} s, {} tensors{}",
        r.input.display(),
        r.output.display(),
        r.input_bytes,
        r.output_bytes,
        r.ratio * 100.0,
        r.seconds,
        r.tensors.len(),
        if lossy.is_empty() {
            String::new()
        } else {
            format!(", {} sparsified", lossy.len())
        }
    ));
}
