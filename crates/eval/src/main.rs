//! `sparsewire-eval`: a BERT-family sentence encoder (all-MiniLM-L6-v2 by default) end to
//! end on sparsified and reconstructed weights and activations; writes `results.json`,
//! `results.md` and plots. `score` measures one weight file against the dense model.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sparsewire_eval::grid::{self, CellResult, Setup};
use sparsewire_eval::model::{read_tensors, Bert, ModelDir};
use sparsewire_eval::{report, sentences};
use sparsewire_formats::TensorFile;
use sparsewire_metadata::{Criterion, Pattern};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sparsewire-eval",
    version,
    about = "Run a BERT-family sentence encoder (all-MiniLM-L6-v2 by default) on sparsewire-compressed weights and activations and measure bytes against embedding quality.",
    after_help = "Examples:\n  sparsewire-eval --data ../shared/data --grid quick --out eval-quick\n  sparsewire-eval --model my-bert/ --sentences mine.txt --grid quick --out eval-mine\n  sparsewire compress model.safetensors -o m.swire --sparsity 0.5 --criterion wanda ...\n  sparsewire-eval score --weights m.swire --sentences mine.txt --json",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    model: ModelArgs,
    /// quick (6 cells, under a minute), default (the sweep, under 10 minutes on 2 cores)
    /// or full (adds SparseGPT under a per-layer byte budget, a few minutes more).
    #[arg(long, default_value = "quick")]
    grid: String,
    /// Only these weight criteria in the default grid (comma-separated: magnitude, wanda,
    /// sparsegpt, predictable).
    #[arg(long, value_delimiter = ',')]
    criteria: Option<Vec<Criterion>>,
    /// Output folder (created).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// `minilm` (all-MiniLM-L6-v2 from --data), or a model folder in the Hugging Face /
    /// sentence-transformers layout: config.json (a BERT: layers, widths, heads and
    /// activation are read from it), tokenizer.json, the weights (model.safetensors or the
    /// folder's one .safetensors or .swire; f32, f16 or bf16), optionally modules.json and
    /// 1_Pooling/config.json (pooling; default mean) and activations.f32.safetensors
    /// (calibration; default: recorded from --calibration-text).
    #[arg(long, default_value = "minilm")]
    model: String,
    /// Folder with minilm_l6_v2.bf16.safetensors, minilm_l6_v2_activations.f32.safetensors
    /// (calibration), minilm_l6_v2_tokenizer/ (config.json, tokenizer.json, pooling),
    /// ppocrv4_det.f32.safetensors (conv filters) and text/ (calibration text for other
    /// models).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Evaluate on these sentences, one per line (UTF-8, blank lines skipped), instead of
    /// the built-in 218 (109 paraphrase pairs written for the project).
    #[arg(long, value_name = "FILE")]
    sentences: Option<PathBuf>,
    /// Take at most this many sentences from --sentences (1..=100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    max_sentences: u32,
    /// For a model folder without recorded activations: record the calibration (Wanda,
    /// SparseGPT, activation dictionaries) from the first lines of this text, never from
    /// the evaluated sentences [default: DATA/text/wordnet_examples.txt].
    #[arg(long, value_name = "FILE")]
    calibration_text: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Score one weight file (a .swire from `sparsewire compress`, or safetensors; any
    /// subset of the model's tensors) against the dense model: mean cosine of the
    /// embeddings, nearest-neighbour agreement, and bytes over the bf16 bytes.
    Score(ScoreArgs),
    /// Recovery training: sparsify the encoder's linear weights post hoc (--criterion,
    /// --pattern, --sparsity), then distil the sparse student from the dense model with the
    /// masks fixed (embedding cosine + per-layer hidden-state MSE, AdamW) on training text
    /// (never the evaluation sentences); write OUT/model.swire (the linear weights as they
    /// cross the link: masks + kept bf16 values), OUT/model.safetensors (the whole model,
    /// bf16), OUT/results.json, OUT/results.md and OUT/loss.svg. Score OUT/model.swire
    /// later with `sparsewire-eval score --weights OUT/model.swire`.
    Recover(RecoverArgs),
    /// Charts of recovery runs: mean cosine against bits per weight (or per activation
    /// value), post hoc and recovered, on the axes of the grid's charts, with the grid's
    /// zero-fill curve for reference (--grid). Writes OUT/recovery_weights.svg (runs that
    /// sparsify weights) and OUT/recovery_activations.svg (runs with activations in the
    /// loop and weights intact).
    PlotRecovery(PlotArgs),
}

#[derive(clap::Args)]
struct PlotArgs {
    /// `sparsewire-eval recover` output folders (or their results.json).
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// A grid's results.json (`sparsewire-eval --out DIR` writes DIR/results.json), for
    /// the post-hoc reference curves.
    #[arg(long, value_name = "FILE")]
    grid: Option<PathBuf>,
    /// Folder the charts are written to (created if missing; charts replaced atomically).
    #[arg(long)]
    out: PathBuf,
}

fn run_plot(a: PlotArgs) -> Result<()> {
    let mut points = Vec::new();
    for r in &a.runs {
        let file = if r.is_dir() {
            r.join("results.json")
        } else {
            r.clone()
        };
        match sparsewire_eval::report::recovery_point(&file)? {
            Some(p) => points.push(p),
            None => eprintln!(
                "{}: sparsifies weights and activations together; not charted",
                file.display()
            ),
        }
    }
    let grid = match &a.grid {
        None => vec![],
        Some(g) => {
            let text = std::fs::read_to_string(g).map_err(|e| format!("{}: {e}", g.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", g.display()))?;
            v.get("cells")
                .and_then(|c| c.as_array())
                .cloned()
                .ok_or_else(|| {
                    format!("{}: no \"cells\": not a grid's results.json", g.display())
                })?
        }
    };
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let written = sparsewire_eval::report::recovery_plots(&a.out, &points, &grid)?;
    if written.is_empty() {
        return Err("no run could be charted".into());
    }
    for w in written {
        eprintln!("wrote {}", w.display());
    }
    Ok(())
}

#[derive(clap::Args)]
struct RecoverArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// How the masks are chosen: magnitude, wanda or sparsegpt (the last two use the
    /// model's calibration activations).
    #[arg(long, default_value = "sparsegpt")]
    criterion: Criterion,
    /// unstructured, row, N:M (2:4), block:RxC.
    #[arg(long, default_value = "unstructured")]
    pattern: Pattern,
    /// Fraction of each linear weight dropped, in [0, 1) (0: weights intact, train for
    /// activation sparsity alone).
    #[arg(long, default_value_t = 0.5)]
    sparsity: f32,
    /// Activations in the loop: K keeps that fraction of each token's values, in (0, 1],
    /// at every transferred tensor of --activation-sites; H,F,A one fraction per family
    /// (hidden, ffn_in, ffn_act); >T the values with |a| > T. Applied in the training
    /// forward pass (straight-through gradient) and in the scores "with activations"
    /// (encoded tiles, decoded, zero-filled). Off by default.
    #[arg(long, value_name = "K|H,F,A|>T")]
    activation_keep: Option<sparsewire_eval::grid::ActPolicy>,
    /// Which transferred activations --activation-keep sparsifies.
    #[arg(long, value_enum, default_value = "all", requires = "activation_keep")]
    activation_sites: sparsewire_eval::grid::Sites,
    /// Gradual pruning: start from the dense weights and raise the sparsity to --sparsity
    /// on the cubic schedule over the first N steps (masks updated every
    /// --gradual-every steps by --gradual-criterion), then train on with the masks fixed.
    /// Without it the masks are the post-hoc sparsifier's (--criterion), fixed.
    #[arg(long, value_name = "N")]
    gradual_end: Option<usize>,
    /// Steps between mask updates during the ramp.
    #[arg(long, default_value_t = 10, requires = "gradual_end")]
    gradual_every: usize,
    /// magnitude, taylor (moving average of |g w|) or movement (-sum g w).
    #[arg(long, default_value = "magnitude", value_parser = train_criterion, requires = "gradual_end")]
    gradual_criterion: sparsewire_train::TrainCriterion,
    /// Re-choose the masks every N steps during recovery (SR-STE): the student keeps
    /// every weight (the dropped ones starting as --remask-shadow says), the
    /// gradient reaches them straight through, and each mask is chosen again by magnitude
    /// in --pattern at --sparsity every N steps and after the last. Without it (and
    /// without --gradual-end) the post-hoc masks stay fixed.
    #[arg(long, value_name = "N", conflicts_with = "gradual_end")]
    remask_every: Option<usize>,
    /// With --remask-every: each dropped weight's gradient gets this times its value,
    /// pulling what stays dropped toward zero (SR-STE's sparse-refined term).
    #[arg(long, default_value_t = 2e-4, requires = "remask_every")]
    remask_decay: f64,
    /// With --remask-every: where the dropped weights start, `dense` (the dense model's
    /// values, so the first re-choice ranks every weight) or `zero` (the post-hoc mask
    /// holds until training grows a dropped weight past a kept one).
    #[arg(long, value_enum, default_value = "dense", requires = "remask_every")]
    remask_shadow: sparsewire_eval::recover::Shadow,
    /// Training steps.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Stop after this many seconds of training (held-out scoring not counted), even
    /// before --steps; the learning rate still decays over --steps. For comparisons at
    /// equal wall time
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Also sparsify the word-embedding table (by magnitude, at --sparsity and --pattern;
    /// needs --criterion magnitude), train it with its mask fixed, and send it in the
    /// stream with the linear weights
    #[arg(long)]
    embeddings: bool,
    /// Sentences a step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Peak learning rate (AdamW), reached after --warmup steps, then decayed linearly.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Steps of linear warm-up to the peak rate (fewer than --steps).
    #[arg(long, default_value_t = 30)]
    warmup: usize,
    /// Weight of the per-layer hidden-state MSE beside the embedding cosine loss.
    #[arg(long, default_value_t = 1.0)]
    hidden_weight: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Training text, one sentence per line [default: DATA/text/wordnet_examples.txt].
    #[arg(long, value_name = "FILE")]
    train_text: Option<PathBuf>,
    /// Lines of the training text used (its first N; the held-out lines follow them).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    train_lines: u32,
    /// Lines after the training lines kept out of training and scored.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    heldout: u32,
    /// Steps between held-out evaluations shown in the progress bar (0: none).
    #[arg(long, default_value_t = 50)]
    eval_every: usize,
    /// Output folder (written whole, or not at all).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output folder.
    #[arg(long)]
    force: bool,
    /// Steps between checkpoints, written to OUT.checkpoint/ (0: none). The folder is
    /// removed when the run completes; after an interruption (or a NaN loss) it holds the
    /// last good state.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Go on from OUT.checkpoint/ where an interrupted run stopped (same options; the
    /// result is the one the uninterrupted run would have given).
    #[arg(long)]
    resume: bool,
}

#[derive(clap::Args)]
struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The weights to score.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Also sparsify every transferred activation (layer inputs, FFN inputs, FFN
    /// activations) to this kept fraction per token, zero-filled, counting its encoded
    /// tile bytes ((0, 1]).
    #[arg(long, value_name = "K")]
    activation_keep: Option<f32>,
    /// How --activation-keep ranks a token's values: magnitude, weighted (|a_j| times the
    /// norm of column j of the weights that multiply it next) or weighted_residual (the
    /// residual connection counted as well).
    #[arg(
        long,
        value_enum,
        default_value = "magnitude",
        requires = "activation_keep"
    )]
    activation_score: sparsewire_eval::grid::ActScore,
    /// The activation scorers for --activation-score scorer: the JSON `cargo xtask scorer
    /// --activations` writes (docs/scorer_activations.json).
    #[arg(long, value_name = "FILE")]
    activation_scorer: Option<PathBuf>,
    /// Print the result as JSON on stdout (mean_cosine, top1_agreement, bytes_fraction, ...).
    #[arg(long)]
    json: bool,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The calibration sentences recorded for a model folder without recorded activations.
const CALIBRATION_SENTENCES: usize = 64;
const CALIBRATION_TOKENS: usize = 1024;

/// The model, its sentences and what the grid needs; `calibrate` records calibration
/// activations when the model has none.
fn setup(m: &ModelArgs, calibrate: bool) -> Result<(ModelDir, Setup)> {
    let dir = if m.model == "minilm" {
        ModelDir::shared_minilm(&m.data)?
    } else {
        ModelDir::open(std::path::Path::new(&m.model))?
    };
    let max_len = dir.config.max_positions;
    let sents = match &m.sentences {
        None => {
            let s = sentences::sentences();
            sentences::tokenize(&dir.tokenizer, &s, max_len)?
        }
        Some(p) => {
            let limit = m.max_sentences as usize;
            let mut s = sentences::read_lines(p, limit + 1)?;
            if s.len() > limit {
                s.truncate(limit);
                eprintln!(
                    "{}: taking the first {limit} sentences (--max-sentences)",
                    p.display()
                );
            }
            let (ids, cut) = sentences::tokenize_counted(&dir.tokenizer, &s, max_len)?;
            if cut > 0 {
                eprintln!(
                    "{}: {cut} sentence(s) longer than the model's {max_len} positions, truncated",
                    p.display()
                );
            }
            ids
        }
    };
    let weights = read_tensors(&dir.weights)?;
    let calibration = match (&dir.calibration, calibrate) {
        (_, false) => TensorFile {
            tensors: vec![],
            metadata: vec![],
        },
        (Some(p), true) => read_tensors(p)?,
        (None, true) => {
            let text = m
                .calibration_text
                .clone()
                .unwrap_or_else(|| m.data.join("text").join("wordnet_examples.txt"));
            let lines = sentences::read_lines(&text, CALIBRATION_SENTENCES)
                .map_err(|e| format!("calibration text: {e}"))?;
            let ids = sentences::tokenize(&dir.tokenizer, &lines, max_len)?;
            eprintln!(
                "recording calibration activations from {} sentences of {}...",
                ids.len(),
                text.display()
            );
            grid::record_calibration(
                &Bert::load(&dir.config, &weights)?,
                &ids,
                CALIBRATION_TOKENS,
            )?
        }
    };
    eprintln!(
        "{}: {} layers, width {}, {} heads, FFN {}; {} sentences; embedding them with the original model...",
        dir.name,
        dir.config.layers,
        dir.config.hidden,
        dir.config.heads,
        dir.config.ffn,
        sents.len()
    );
    let setup = Setup::new(dir.config.clone(), weights, calibration, sents)?;
    Ok((dir, setup))
}

fn run_grid(a: Args) -> Result<()> {
    let out = a.out.expect("clap requires --out without a subcommand");
    let cells = sparsewire_eval::cells::cells(&a.grid, a.criteria.as_deref())?;
    let (dir, setup) = setup(&a.model, true)?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
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
    let convs = a.model.data.join("ppocrv4_det.f32.safetensors");
    let filters = if convs.is_file() {
        eprintln!("conv filters (PP-OCRv4 detection), per layer type...");
        sparsewire_eval::filters::run(&read_tensors(&convs)?, a.grid == "quick")?
    } else {
        eprintln!(
            "conv filters skipped: {} not found (the --data folder)",
            convs.display()
        );
        vec![]
    };
    let written = report::write(
        &out,
        &dir.name,
        &a.grid,
        setup.sentences.len(),
        &results,
        &filters,
    )?;
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn run_score(a: ScoreArgs) -> Result<()> {
    if let Some(k) = a.activation_keep {
        if !(k > 0.0 && k <= 1.0) {
            return Err(format!("--activation-keep {k} is outside (0, 1]").into());
        }
    }
    let (_, mut setup) = setup(&a.model, false)?;
    match (a.activation_score, &a.activation_scorer) {
        (grid::ActScore::Scorer, Some(path)) => {
            setup.act_scorers = read_act_scorers(path)?;
        }
        (grid::ActScore::Scorer, None) => {
            return Err("--activation-score scorer needs --activation-scorer FILE (cargo xtask scorer --activations writes docs/scorer_activations.json)".into());
        }
        (_, Some(_)) => {
            return Err("--activation-scorer is read only with --activation-score scorer".into());
        }
        _ => {}
    }
    let file_bytes = std::fs::metadata(&a.weights)
        .map_err(|e| format!("{}: {e}", a.weights.display()))?
        .len();
    let weights = read_tensors(&a.weights)?;
    let r = grid::score(
        &setup,
        &weights,
        file_bytes,
        a.activation_keep,
        a.activation_score,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} sentences, {} tensors replaced: mean cosine {:.5} (min {:.5}), top-1 agreement {:.1}%, Spearman {:.4}, bytes {:.4} of bf16",
            r.sentences,
            r.tensors_replaced,
            r.quality.mean_cosine,
            r.quality.min_cosine,
            100.0 * r.quality.top1_agreement,
            r.quality.spearman,
            r.bytes_fraction
        );
    }
    Ok(())
}

fn train_criterion(s: &str) -> std::result::Result<sparsewire_train::TrainCriterion, String> {
    use sparsewire_train::TrainCriterion as C;
    match s {
        "magnitude" => Ok(C::Magnitude),
        "taylor" => Ok(C::Taylor),
        "movement" => Ok(C::Movement),
        _ => Err(format!("{s:?}: expected magnitude, taylor or movement")),
    }
}

fn run_recover(a: RecoverArgs) -> Result<()> {
    use sparsewire_eval::recover::{recover, RecoverOptions};
    let mut o = RecoverOptions {
        criterion: a.criterion,
        pattern: a.pattern,
        sparsity: a.sparsity,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        warmup: a.warmup,
        hidden_weight: a.hidden_weight,
        seed: a.seed,
        eval_every: a.eval_every,
        activations: a.activation_keep,
        activation_sites: a.activation_sites,
        gradual: a.gradual_end.map(|end| sparsewire_eval::recover::Gradual {
            end,
            every: a.gradual_every,
            criterion: a.gradual_criterion,
        }),
        remask: a
            .remask_every
            .map(|every| sparsewire_eval::recover::Remask {
                every,
                decay: a.remask_decay,
                shadow: a.remask_shadow,
            }),
        embeddings: a.embeddings,
        max_seconds: a.max_seconds,
        checkpoint: None,
        ..RecoverOptions::default()
    };
    let ckpt_dir = {
        let mut name = a.out.file_name().unwrap_or_default().to_os_string();
        name.push(".checkpoint");
        a.out.with_file_name(name)
    };
    let has_ckpt = sparsewire_eval::checkpoint::Checkpoint::exists(&ckpt_dir);
    if a.resume && !has_ckpt {
        return Err(format!("--resume: no checkpoint in {}", ckpt_dir.display()).into());
    }
    if !a.resume && has_ckpt {
        return Err(format!(
            "{} holds a checkpoint of an earlier run: --resume to go on from it, or delete it",
            ckpt_dir.display()
        )
        .into());
    }
    // Gradual and re-masked runs are not checkpointed (the sparsifier's scores and the
    // dense shadow are not saved); a --resume of one is refused by the options' check.
    if (a.checkpoint_every > 0 && o.gradual.is_none() && o.remask.is_none()) || a.resume {
        o.checkpoint = Some(sparsewire_eval::checkpoint::Checkpointing {
            dir: ckpt_dir.clone(),
            every: a.checkpoint_every.max(1),
            resume: a.resume,
        });
    }
    o.check()?;
    // Refuse an existing output before hours of training, not after.
    let out = sparsewire_formats::output::OutputDir::create(&a.out, a.force)?;
    let (dir, setup) = setup(&a.model, true)?;
    let text = a
        .train_text
        .clone()
        .unwrap_or_else(|| a.model.data.join("text").join("wordnet_examples.txt"));
    let (n_train, n_held) = (a.train_lines as usize, a.heldout as usize);
    let lines = sentences::read_lines(&text, n_train + n_held)?;
    if lines.len() < n_held + 1 {
        return Err(format!(
            "{}: {} lines; need more than the {n_held} held out",
            text.display(),
            lines.len()
        )
        .into());
    }
    let split = lines.len() - n_held;
    let max_len = dir.config.max_positions.min(128);
    let train = sentences::tokenize(&dir.tokenizer, &lines[..split], max_len)?;
    let heldout = sentences::tokenize(&dir.tokenizer, &lines[split..], max_len)?;
    eprintln!(
        "recovering {} at {} sparsity ({}, {}){}: {} training sentences, {} held out ({}), {} steps of {}",
        dir.name,
        o.sparsity,
        o.criterion,
        o.pattern,
        o.activations
            .map(|p| format!(", activations: {p} at {}", o.activation_sites))
            .unwrap_or_default(),
        train.len(),
        heldout.len(),
        text.display(),
        o.steps,
        o.batch
    );
    let pb = ProgressBar::new(o.steps as u64);
    pb.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} steps ({elapsed}, eta {eta}) {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut held = None;
    let r = recover(&setup, &train, &heldout, &o, &mut |s| {
        if s.heldout_cosine.is_some() {
            held = s.heldout_cosine;
        }
        pb.set_message(format!(
            "loss {:.4}{}",
            s.loss,
            held.map(|c| format!(", held-out cosine {c:.4}"))
                .unwrap_or_default()
        ));
        pb.set_position(s.step as u64);
    })?;
    pb.finish_and_clear();
    let stage = out.staging();
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        std::fs::write(stage.join(name), bytes).map_err(|e| format!("{name}: {e}"))?;
        Ok(())
    };
    write("model.swire", &r.stream)?;
    write(
        "model.safetensors",
        &sparsewire_formats::safetensors::write_safetensors(&r.model)?,
    )?;
    let rep = &r.report;
    write(
        "results.json",
        serde_json::to_string_pretty(rep)?.as_bytes(),
    )?;
    let mut md = format!(
        "# Recovery of {} at {} sparsity ({}, {}){}\n\n{} steps of {} sentences in {:.0} s; {} training sentences, {} held out, {} evaluation sentences.\n\n| | bytes | mean cos | min cos | top-1 | Spearman | held-out mean cos |\n|---|---|---|---|---|---|---|\n| post hoc | {:.4} | {:.5} | {:.5} | {:.1}% | {:.4} | {:.5} |\n| recovered | {:.4} | {:.5} | {:.5} | {:.1}% | {:.4} | {:.5} |\n",
        dir.name,
        o.sparsity,
        o.criterion,
        o.pattern,
        o.gradual
            .map(|g| format!(
                "\n\nGradual pruning by {:?} over the first {} steps (masks every {}); the post-hoc row is the one-shot {} at the same sparsity.",
                g.criterion, g.end, g.every, o.criterion
            ))
            .or(o.remask.map(|r| format!(
                "\n\nMasks re-chosen by magnitude every {} steps from a dense shadow trained straight through (SR-STE, decay {}; dropped weights starting at {}); the post-hoc row is the one-shot {} the run started from.",
                r.every,
                r.decay,
                match r.shadow {
                    sparsewire_eval::recover::Shadow::Dense => "the dense model's values",
                    sparsewire_eval::recover::Shadow::Zero => "zero",
                },
                o.criterion
            )))
            .unwrap_or_default(),
        if rep.steps_done < o.steps {
            format!(
                "{} (of {} planned: the {} s budget ran out)",
                rep.steps_done,
                o.steps,
                o.max_seconds.unwrap_or_default()
            )
        } else {
            o.steps.to_string()
        },
        o.batch,
        rep.train_seconds,
        rep.train_sentences,
        rep.heldout_sentences,
        rep.eval_sentences,
        rep.bytes_fraction_post_hoc,
        rep.post_hoc.mean_cosine,
        rep.post_hoc.min_cosine,
        100.0 * rep.post_hoc.top1_agreement,
        rep.post_hoc.spearman,
        rep.post_hoc_heldout.mean_cosine,
        rep.bytes_fraction,
        rep.recovered.mean_cosine,
        rep.recovered.min_cosine,
        100.0 * rep.recovered.top1_agreement,
        rep.recovered.spearman,
        rep.recovered_heldout.mean_cosine,
    );
    if let Some(w) = &rep.with_activations {
        md += &format!(
            "\nWith {} at the transferred activations ({}; encoded tiles at {:.4} of their bf16 bytes, zero-filled):\n\n| | mean cos | min cos | top-1 | held-out mean cos |\n|---|---|---|---|---|\n| dense weights | {:.5} | {:.5} | {:.1}% | |\n| post hoc | {:.5} | {:.5} | {:.1}% | {:.5} |\n| recovered | {:.5} | {:.5} | {:.1}% | {:.5} |\n",
            o.activations
                .map(|p| p.to_string())
                .unwrap_or_default(),
            o.activation_sites,
            w.activation_bytes_fraction,
            w.dense_weights.mean_cosine,
            w.dense_weights.min_cosine,
            100.0 * w.dense_weights.top1_agreement,
            w.post_hoc.mean_cosine,
            w.post_hoc.min_cosine,
            100.0 * w.post_hoc.top1_agreement,
            w.post_hoc_heldout.mean_cosine,
            w.recovered.mean_cosine,
            w.recovered.min_cosine,
            100.0 * w.recovered.top1_agreement,
            w.recovered_heldout.mean_cosine,
        );
    }
    write("results.md", md.as_bytes())?;
    sparsewire_eval::report::loss_plot(&stage.join("loss.svg"), &rep.curve)?;
    out.commit()?;
    if ckpt_dir.exists() {
        std::fs::remove_dir_all(&ckpt_dir).map_err(|e| {
            format!(
                "{}: {e} (the run is complete; delete it)",
                ckpt_dir.display()
            )
        })?;
    }
    eprint!("{md}");
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

/// Recovery training allocates and frees tensors of tens of MB every step (with
/// `--embeddings`, the 47 MB word-embedding table's gradient, mask product and optimiser
/// temporaries). glibc serves each from a fresh `mmap` and unmaps it when freed, so the
/// kernel faults in and zeroes every page again: on the 2-core EPYC a 50% step with the
/// embeddings took 1.2 s this way and 0.75 s with freed memory kept in the heap (the
/// same tunables set through `MALLOC_*_` variables; 12 s runs, steps counted). The cost is
/// a process that keeps its peak heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes the allocator's tunables, here before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let a = Args::parse();
    let r = match a.cmd {
        Some(Cmd::Score(s)) => run_score(s),
        Some(Cmd::Recover(r)) => run_recover(r),
        Some(Cmd::PlotRecovery(p)) => run_plot(p),
        None => run_grid(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The activation scorers of `cargo xtask scorer --activations`'s JSON, by layer family.
fn read_act_scorers(
    path: &std::path::Path,
) -> Result<Vec<(String, sparsewire_se::scorer::Scorer)>> {
    #[derive(serde::Deserialize)]
    struct Fit {
        family: String,
        scorer: sparsewire_se::scorer::Scorer,
    }
    #[derive(serde::Deserialize)]
    struct File {
        fits: Vec<Fit>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: File = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not an activation scorer file: {e}", path.display()))?;
    let mut out = Vec::new();
    for fit in f.fits {
        fit.scorer
            .check()
            .map_err(|e| format!("{}: {}: {e}", path.display(), fit.family))?;
        out.push((fit.family, fit.scorer));
    }
    if out.is_empty() {
        return Err(format!("{}: no scorers", path.display()).into());
    }
    Ok(out)
}
