//! `cargo xtask train`: every config of examples/train (one grid cell each) through
//! `sparsewire_train::train`, written to docs/TRAIN.md and docs/train.json.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

pub fn run(root: &Path, data: Option<&str>, only: Option<&str>) -> Result<(), String> {
    let dir = root.join("examples/train");
    let mut configs: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| only.is_none_or(|o| p.to_string_lossy().contains(o)))
        .collect();
    configs.sort();
    let data = data
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data"))
        .join("sklearn_digits.safetensors");
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for p in &configs {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut cfg = sparsewire_train::TrainConfig::from_toml(&text)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        cfg.data = Some(data.clone());
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let mut last = 0;
        let r = sparsewire_train::train(&cfg, &mut |s| {
            if s.step * 10 / s.steps != last {
                last = s.step * 10 / s.steps;
                eprint!(
                    "\r{name}: {} {}/{} loss {:.4}   ",
                    s.phase, s.step, s.steps, s.loss
                );
            }
        })
        .map_err(|e| format!("{}: {e}", p.display()))?;
        eprintln!(
            "\r{name}: test {:.2}% (dense {:?}, post-hoc {:?}), {:.0} B/image, {:.1} s",
            100.0 * r.test_accuracy,
            r.dense_test_accuracy,
            r.posthoc_test_accuracy,
            r.bytes_per_image,
            r.seconds
        );
        rows.push((name, r));
    }
    let cpu = sparsewire_benches::cpu_model();
    let json = serde_json::json!({
        "cpu": cpu,
        "command": "cargo xtask train",
        "seconds": t0.elapsed().as_secs_f64(),
        "cells": rows.iter().map(|(n, r)| serde_json::json!({"config": n, "report": r})).collect::<Vec<_>>(),
    });
    let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.2}", 100.0 * v));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Sparsification-aware training: the digits grid\n\n\
         Written by `cargo xtask train` ({:.0} s on {cpu}; 2 threads, one of them shared with \
         other work). Each row is one config of `examples/train/` (seed 0, 30 epochs of the \
         1,437 training digits, test on the fixed 360). `dense` and `post-hoc` are trained in \
         the same run with the same seed: the dense model, and the dense model pruned by \
         magnitude at the row's sparsity and pattern, with the row's activation keep, not \
         retrained. Bytes per image: the model as a real `.swire` amortised over 64 images, \
         plus the three crossing activations as the activation sparsifier sends them (dense: \
         f32 weights and activations).\n",
        t0.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| config | weight sparsity | act. keep | test acc. % | dense % | post-hoc % | bytes/image | dense bytes/image | .swire bytes | s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (n, r) in &rows {
        let _ = writeln!(
            md,
            "| {n} | {:.3} | {:.2} | {:.2} | {} | {} | {:.0} | {:.0} | {} | {:.1} |",
            r.weight_sparsity,
            r.activation_keep,
            100.0 * r.test_accuracy,
            pct(r.dense_test_accuracy),
            pct(r.posthoc_test_accuracy),
            r.bytes_per_image,
            r.dense_bytes_per_image,
            r.weight_bytes,
            r.seconds
        );
    }
    let _ = writeln!(
        md,
        "\nLoss curves (mean training loss per epoch) are in docs/train.json."
    );
    if only.is_some() {
        println!("{md}");
        return Ok(());
    }
    let write = |name: &str, body: &str| {
        let p = root.join("docs").join(name);
        std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("TRAIN.md", &md)?;
    write(
        "train.json",
        &serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )?;
    println!("{md}");
    Ok(())
}

/// `cargo xtask demo-assets`: trains examples/train/digits_90.toml and writes the model
/// the demo carries (assets/digits_90.swire) and 16 test digits (assets/digits_sample.
/// safetensors: `pixels` U8 [16, 64] in 0..16, `labels` I32 [16]).
pub fn demo_assets(root: &Path, data: Option<&str>) -> Result<(), String> {
    let data = data
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data"))
        .join("sklearn_digits.safetensors");
    let p = root.join("examples/train/digits_90.toml");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut cfg = sparsewire_train::TrainConfig::from_toml(&text)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    cfg.data = Some(data.clone());
    let r = sparsewire_train::train(&cfg, &mut |_| {}).map_err(|e| e.to_string())?;
    let digits = sparsewire_train::digits::Digits::load(&data).map_err(|e| e.to_string())?;
    let (pixels, labels) = digits.test_sample(16).map_err(|e| e.to_string())?;
    let sample = sparsewire_formats::TensorFile {
        tensors: vec![
            sparsewire_formats::Tensor::new("pixels", sparsewire_formats::Dtype::U8, vec![16, 64], pixels)
                .map_err(|e| e.to_string())?,
            sparsewire_formats::Tensor::new(
                "labels",
                sparsewire_formats::Dtype::I32,
                vec![16],
                labels.iter().flat_map(|&l| (l as i32).to_le_bytes()).collect(),
            )
            .map_err(|e| e.to_string())?,
        ],
        metadata: vec![(
            "source".into(),
            "sklearn digits (UCI optdigits, BSD-3-Clause via scikit-learn): the first 16 of the fixed test split".into(),
        )],
    };
    let sample = sparsewire_formats::write_safetensors(&sample).map_err(|e| e.to_string())?;
    std::fs::write(root.join("assets/digits_90.swire"), &r.model).map_err(|e| e.to_string())?;
    std::fs::write(root.join("assets/digits_sample.safetensors"), &sample)
        .map_err(|e| e.to_string())?;
    println!(
        "assets/digits_90.swire: {} bytes (test accuracy {:.2}%, dense {:?}); assets/digits_sample.safetensors: {} bytes",
        r.model.len(),
        100.0 * r.test_accuracy,
        r.dense_test_accuracy,
        sample.len()
    );
    Ok(())
}
