//! `sparsewire train`: sparsification-aware training of the digits CNN from a TOML config
//! (`sparsewire_train::run`), with the dense and post-hoc baselines in the same run.

use crate::args::Result;
use crate::output::print_json;
use indicatif::{ProgressBar, ProgressStyle};
use sparsewire_train::TrainConfig;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    after_help = "Config (TOML; every key but [sparsity].target has a default):\n  \
seed = 0\n  data = \"../shared/data/sklearn_digits.safetensors\"   # or $SPARSEWIRE_DATA\n  epochs = 30\n  batch = 64\n  lr = 0.003\n  activation_keep = 0.5      # crossing activations kept (absent: dense)\n  \
init = \"scratch\"           # or \"dense\": start from the trained dense baseline\n  \
validation = 0             # training digits held out and scored instead of the test set\n  \
[sparsity]\n  target = 0.9\n  pattern = \"unstructured\"   # or \"2:4\", \"block:4x4\", \"channel\"\n  \
criterion = \"magnitude\"   # or \"taylor\", \"movement\"\n  scope = \"layer\"           # or \"global\": the params' weights ranked together (unstructured)\n  params = [\"conv2.weight\", \"conv3.weight\", \"fc.weight\"]\n  schedule = { kind = \"gradual\", start = 138, end = 483, every = 10 }   # or one_shot (at), iterative (steps)\n  rebuild = \"zero\"           # or \"dictionary\" (trained with the model)\n  rebuild_weight = 1.0\n  \
[regularize]\n  l1 = 0.0\n  group_lasso = 0.0\n  byte_aware = false\n  \
[distill]                  # the dense baseline as teacher (absent: labels only)\n  weight = 0.5\n  temperature = 4.0\n\n\
Examples:\n  sparsewire train --config examples/train/digits_90.toml\n  \
sparsewire train --config examples/train/digits_90.toml -o digits.swire --json"
)]
pub struct Args {
    /// The run's TOML config (examples/train/*.toml).
    #[arg(long)]
    config: PathBuf,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Hold out the last N training digits and score on them instead of the test set
    /// (overrides the config's `validation`): compare configurations this way, then
    /// score the chosen one on the test set once.
    #[arg(long, value_name = "N")]
    validation: Option<usize>,
    /// Write the trained model here as a .swire (its masks folded in: the small,
    /// transferable file).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write the accumulated gradient criterion here (safetensors), as
    /// `compress --criterion taylor --gradients` reads it.
    #[arg(long)]
    gradients_out: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let text =
        std::fs::read_to_string(&a.config).map_err(|e| format!("{}: {e}", a.config.display()))?;
    let mut cfg =
        TrainConfig::from_toml(&text).map_err(|e| format!("{}: {e}", a.config.display()))?;
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(v) = a.validation {
        cfg.validation = v;
        cfg.check().map_err(|e| format!("--validation: {e}"))?;
    }
    for p in [&a.output, &a.gradients_out].into_iter().flatten() {
        sparsewire_formats::output::check_output(None, p, a.force)?;
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let r = sparsewire_train::train(&cfg, &mut |p| {
        pb.set_length(p.steps);
        pb.set_position(p.step);
        pb.set_message(format!(
            "{} loss {:.4} sparsity {:.3} train acc {:.1}%",
            p.phase,
            p.loss,
            p.sparsity,
            100.0 * p.train_accuracy
        ));
    })
    .map_err(|e| format!("{}: {e}", a.config.display()))?;
    pb.finish_and_clear();
    if let Some(p) = &a.output {
        sparsewire_formats::output::write_file(p, &r.model, a.force)?;
    }
    if let Some(p) = &a.gradients_out {
        let g = r.gradients.as_ref().ok_or(
            "--gradients-out: the run scored nothing by gradient (criterion taylor or movement)",
        )?;
        let bytes = sparsewire_formats::write_safetensors(g)?;
        sparsewire_formats::output::write_file(p, &bytes, a.force)?;
    }
    if a.json {
        return print_json(&r);
    }
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    println!(
        "trained {} steps in {:.1} s (seed {})",
        r.steps, r.seconds, r.seed
    );
    println!(
        "weights: {} dropped; activations: {} kept",
        pct(r.weight_sparsity),
        pct(r.activation_keep as f64)
    );
    let split = if r.validation > 0 {
        format!(
            "validation accuracy      {} (the last {} training digits; the test set unused)",
            pct(r.test_accuracy),
            r.validation
        )
    } else {
        format!("test accuracy            {}", pct(r.test_accuracy))
    };
    println!("{split}");
    if let (Some(d), Some(p)) = (r.dense_test_accuracy, r.posthoc_test_accuracy) {
        println!("  dense, same run        {}", pct(d));
        println!(
            "  post-hoc magnitude     {} (dense model pruned the same, not retrained)",
            pct(p)
        );
    }
    println!(
        "bytes per image          {:.0} (dense {:.0}): weights {} B as .swire over 64 images, plus activations",
        r.bytes_per_image, r.dense_bytes_per_image, r.weight_bytes
    );
    if let Some(p) = &a.output {
        println!("model written to {}", p.display());
    }
    Ok(())
}
