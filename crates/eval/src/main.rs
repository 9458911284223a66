//! `sparsewire-eval`: MiniLM end to end on sparsified and reconstructed weights and
//! activations; writes `results.json`, `results.md` and plots.

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sparsewire_eval::grid::{self, CellResult, Setup};
use sparsewire_eval::report;
use sparsewire_metadata::Criterion;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sparsewire-eval",
    version,
    about = "Run all-MiniLM-L6-v2 on sparsewire-compressed weights and activations and measure bytes against quality.",
    after_help = "Example:\n  sparsewire-eval --model minilm --data ../shared/data --grid quick --out eval-quick"
)]
struct Args {
    /// The model (only minilm: all-MiniLM-L6-v2).
    #[arg(long, default_value = "minilm")]
    model: String,
    /// Folder with minilm_l6_v2.bf16.safetensors, minilm_l6_v2_activations.f32.safetensors
    /// (calibration), minilm_l6_v2_tokenizer/tokenizer.json and ppocrv4_det.f32.safetensors
    /// (conv filters).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// quick (6 cells, under a minute), default (the sweep, under 10 minutes on 2 cores)
    /// or full (adds SparseGPT under a per-layer byte budget, a few minutes more).
    #[arg(long, default_value = "quick")]
    grid: String,
    /// Only these weight criteria in the default grid (comma-separated: magnitude, wanda,
    /// sparsegpt, predictable).
    #[arg(long, value_delimiter = ',')]
    criteria: Option<Vec<Criterion>>,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn need(p: &Path, what: &str) -> Result<()> {
    if p.exists() {
        Ok(())
    } else {
        Err(format!("{what} not found: {}", p.display()).into())
    }
}

fn read(p: &Path) -> Result<sparsewire_formats::TensorFile> {
    Ok(sparsewire_formats::input::InputFile::open(p)
        .and_then(|f| f.read_all())
        .map_err(|e| format!("{}: {e}", p.display()))?)
}

fn run(a: Args) -> Result<()> {
    if a.model != "minilm" {
        return Err(format!("unknown model {:?} (minilm)", a.model).into());
    }
    let cells = sparsewire_eval::cells::cells(&a.grid, a.criteria.as_deref())?;
    let weights = a.data.join("minilm_l6_v2.bf16.safetensors");
    let calib = a.data.join("minilm_l6_v2_activations.f32.safetensors");
    let tok = a.data.join("minilm_l6_v2_tokenizer").join("tokenizer.json");
    let convs = a.data.join("ppocrv4_det.f32.safetensors");
    need(&weights, "model weights")?;
    need(&convs, "conv filters")?;
    need(&calib, "calibration activations")?;
    need(&tok, "tokenizer")?;
    let sentences = sparsewire_eval::sentences::tokenize(&tok)?;
    eprintln!(
        "{} sentences; embedding them with the original model...",
        sentences.len()
    );
    let setup = Setup::new(read(&weights)?, read(&calib)?, sentences)?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let pb = ProgressBar::new(cells.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} cells ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(format!("grid {}", a.grid));
    let mut results: Vec<CellResult> = Vec::with_capacity(cells.len());
    for c in &cells {
        results.push(grid::run(&setup, c)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    eprintln!("conv filters (PP-OCRv4 detection), per layer type...");
    let filters = sparsewire_eval::filters::run(&read(&convs)?, a.grid == "quick")?;
    let written = report::write(&a.out, &a.grid, setup.sentences.len(), &results, &filters)?;
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
