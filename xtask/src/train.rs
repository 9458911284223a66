//! `cargo xtask train`: every config of examples/train (one grid cell each) through
//! `sparsewire_train::train`, written to docs/TRAIN.md and docs/train.json.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// Runs every config (or those whose name contains `only`), `jobs` cells at a time, each in
/// a rayon pool of its own (candle's CPU kernels run in the current pool). The cells are
/// small (8x8 digits, batch 64): two of them on a thread each keep two cores busier than one
/// of them on both. The dense baseline they share is trained first, on every thread.
pub fn run(
    root: &Path,
    data: Option<&str>,
    only: Option<&str>,
    jobs: Option<&str>,
) -> Result<(), String> {
    let dir = root.join("examples/train");
    let mut configs: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| only.is_none_or(|o| p.to_string_lossy().contains(o)))
        .collect();
    configs.sort();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = match jobs {
        None => cores,
        Some(j) => match j.parse::<usize>() {
            Ok(j @ 1..=64) => j,
            _ => {
                return Err(format!(
                    "--jobs {j}: want a whole number of cells at a time, 1 to 64"
                ))
            }
        },
    };
    let data = digits_path(root, data);
    let t0 = Instant::now();
    let mut cells = Vec::new();
    for p in &configs {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut cfg = sparsewire_train::TrainConfig::from_toml(&text)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        cfg.data = Some(data.clone());
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        cells.push((name, cfg));
    }
    // Every cell with the same seed and optimiser settings shares one dense baseline.
    let mut dense = None;
    if let Some((_, cfg)) = cells.iter().find(|(_, c)| c.baselines) {
        let t = Instant::now();
        let mut last = 0;
        dense = Some(
            sparsewire_train::dense_baseline(cfg, &mut |s| {
                if s.step * 10 / s.steps != last {
                    last = s.step * 10 / s.steps;
                    eprint!(
                        "\rdense baseline: {}/{} loss {:.4}   ",
                        s.step, s.steps, s.loss
                    );
                }
            })
            .map_err(|e| format!("dense baseline: {e}"))?,
        );
        eprintln!(
            "\rdense baseline: {:.1} s                         ",
            t.elapsed().as_secs_f64()
        );
    }
    // Longest first (by the last full run's times, when there is one), so that the last
    // cells to start are short ones.
    let last_seconds = previous_seconds(root);
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.sort_by(|&a, &b| {
        let s = |i: usize| last_seconds.get(&cells[i].0).copied().unwrap_or(f64::MAX);
        s(b).total_cmp(&s(a))
    });
    let threads = (cores / jobs).max(1);
    eprintln!(
        "{} cells, {jobs} at a time on {threads} thread(s) each",
        cells.len()
    );
    let pools = (0..jobs.min(cells.len()))
        .map(|_| rayon::ThreadPoolBuilder::new().num_threads(threads).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("thread pool: {e}"))?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![None; cells.len()]);
    std::thread::scope(|scope| {
        for pool in &pools {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let (name, cfg) = &cells[i];
                    eprintln!("{name}: started");
                    let mut cache = dense.clone();
                    let r = pool
                        .install(|| sparsewire_train::train_cached(cfg, &mut cache, &mut |_| {}))
                        .map_err(|e| format!("{name}: {e}"));
                    match &r {
                        Ok(r) => eprintln!(
                            "{name}: test {:.2}% (dense {:?}, post-hoc {:?}), {:.0} B/image, {:.1} s",
                            100.0 * r.test_accuracy,
                            r.dense_test_accuracy,
                            r.posthoc_test_accuracy,
                            r.bytes_per_image,
                            r.seconds
                        ),
                        Err(e) => eprintln!("{e}"),
                    }
                    let failed = r.is_err();
                    results.lock().unwrap()[i] = Some(r);
                    if failed {
                        // Stop handing out cells: the run is lost anyway.
                        next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut rows = Vec::new();
    for ((name, _), r) in cells.iter().zip(results.into_inner().unwrap()) {
        match r {
            Some(Ok(r)) => rows.push((name.clone(), r)),
            Some(Err(e)) => return Err(e),
            None => return Err(format!("{name}: not run (an earlier cell failed)")),
        }
    }
    let cpu = sparsewire_benches::cpu_model();
    let json = serde_json::json!({
        "cpu": cpu,
        "command": "cargo xtask train",
        "jobs": jobs,
        "threads_per_job": threads,
        "seconds": t0.elapsed().as_secs_f64(),
        "cells": rows.iter().map(|(n, r)| serde_json::json!({"config": n, "report": r})).collect::<Vec<_>>(),
    });
    let p = root.join("docs/train.json");
    // `--only`: the matching cells replace (or join) those of the last full run.
    let json = match (only, std::fs::read_to_string(&p)) {
        (Some(_), Ok(text)) => {
            let mut old: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let cells = old["cells"]
                .as_array_mut()
                .ok_or("docs/train.json has no cells")?;
            for new in json["cells"].as_array().expect("built above") {
                match cells.iter_mut().find(|c| c["config"] == new["config"]) {
                    Some(c) => *c = new.clone(),
                    None => cells.push(new.clone()),
                }
            }
            cells.sort_by(|a, b| a["config"].as_str().cmp(&b["config"].as_str()));
            old["command"] = serde_json::json!("cargo xtask train (cells rerun with --only)");
            old
        }
        _ => json,
    };
    std::fs::write(
        &p,
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", p.display()))?;
    render(root)
}

/// The targets, checked against the numbers above.
fn targets(md: &mut String, cells: &[Cell], seconds: f64, root: &Path) {
    let _ = writeln!(md, "## Targets\n");
    let dense = cells.iter().find_map(|c| c.report.dense_test_accuracy);
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    if let Some(d) = dense {
        let best90 = cells
            .iter()
            .filter(|c| c.config.starts_with("digits_90") && c.report.activation_keep >= 1.0)
            .max_by(|a, b| a.report.test_accuracy.total_cmp(&b.report.test_accuracy));
        if let Some(b) = best90 {
            let gap = 100.0 * (d - b.report.test_accuracy);
            let _ = writeln!(
                md,
                "- 90% weight sparsity within 1 point of dense ({:.2}%): best cell `{}` at {:.2}%, {gap:.2} points below: **{}**.",
                100.0 * d,
                b.config,
                100.0 * b.report.test_accuracy,
                verdict(gap <= 1.0)
            );
        }
        let best90_act50 = cells
            .iter()
            .filter(|c| {
                c.config.starts_with("digits_90")
                    && c.report.activation_keep <= 0.5
                    && c.report.weight_sparsity >= 0.89
            })
            .max_by(|a, b| a.report.test_accuracy.total_cmp(&b.report.test_accuracy));
        if let Some(c) = best90_act50 {
            let gap = 100.0 * (d - c.report.test_accuracy);
            let _ = writeln!(
                md,
                "- 90% weights and activations kept at 50%, within 2 points of dense: best cell `{}` at {:.2}%, {gap:.2} points below: **{}**.",
                c.config,
                100.0 * c.report.test_accuracy,
                verdict(gap <= 2.0)
            );
        }
    }
    let with_posthoc: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.report.posthoc_test_accuracy.is_some() && c.report.weight_sparsity > 0.0)
        .collect();
    let worse: Vec<&str> = with_posthoc
        .iter()
        .filter(|c| c.report.test_accuracy < c.report.posthoc_test_accuracy.unwrap())
        .map(|c| c.config.as_str())
        .collect();
    let _ = writeln!(
        md,
        "- At least as accurate as post-hoc magnitude at the same bytes, every cell: {} of {} cells{}: **{}**.",
        with_posthoc.len() - worse.len(),
        with_posthoc.len(),
        if worse.is_empty() { String::new() } else { format!(" (not: {})", worse.join(", ")) },
        verdict(worse.is_empty())
    );
    if let Some(d) = dense {
        let big: Vec<String> = with_posthoc
            .iter()
            .filter(|c| d - c.report.posthoc_test_accuracy.unwrap() >= 0.10)
            .map(|c| {
                let gain =
                    100.0 * (c.report.test_accuracy - c.report.posthoc_test_accuracy.unwrap());
                format!("`{}` +{gain:.1}", c.config)
            })
            .collect();
        let all5 = with_posthoc
            .iter()
            .filter(|c| d - c.report.posthoc_test_accuracy.unwrap() >= 0.10)
            .all(|c| c.report.test_accuracy - c.report.posthoc_test_accuracy.unwrap() >= 0.05);
        let _ = writeln!(
            md,
            "- At least 5 points above post-hoc wherever post-hoc loses 10 points or more: {}: **{}**.",
            if big.is_empty() { "no such cell".to_string() } else { big.join(", ") },
            verdict(all5)
        );
    }
    let _ = writeln!(
        md,
        "- The grid in under 10 minutes on a 2-core machine: {seconds:.0} s: **{}**{}.",
        verdict(seconds < 600.0),
        if seconds < 600.0 {
            ""
        } else {
            " (one dense baseline shared by all cells; every sparse cell is a full 30-epoch run)"
        }
    );
    let rebuilt: Vec<_> = cells
        .iter()
        .filter_map(|c| c.report.rebuild.as_ref().map(|r| (c, r)))
        .collect();
    if rebuilt.is_empty() {
        let _ = writeln!(md, "- The reconstruction loss: no cell trains a rebuild.");
    }
    for (c, r) in rebuilt {
        let layers: Vec<String> = r
            .layers
            .iter()
            .map(|l| {
                format!(
                    "`{}` {:.4}",
                    l.name,
                    l.trained_rel_error / l.posthoc_fit_rel_error
                )
            })
            .collect();
        let below = r
            .layers
            .iter()
            .filter(|l| l.trained_rel_error < l.posthoc_fit_rel_error)
            .count();
        let _ = writeln!(
            md,
            "- The reconstruction loss improves the rebuilt error over the post-hoc fit on the same masks (`{}`, {}): trained {:.4} against post-hoc {:.4} relative error over every pruned layer (ratio {:.4}; per layer {}; below on {below} of {}): **{}**. Test accuracy with the trained rebuild {:.2}%, the post-hoc fit {:.2}%, zero-fill {:.2}%.{}",
            c.config,
            if r.method == "mlp" { "`re`'s MLP predictor" } else { "per-column dictionary" },
            r.trained_rel_error,
            r.posthoc_fit_rel_error,
            r.trained_rel_error / r.posthoc_fit_rel_error,
            layers.join(", "),
            r.layers.len(),
            verdict(r.trained_rel_error < r.posthoc_fit_rel_error),
            100.0 * r.trained_test_accuracy,
            100.0 * r.posthoc_fit_test_accuracy,
            100.0 * r.zero_fill_test_accuracy,
            if r.method == "mlp" {
                ""
            } else {
                " (A dictionary's post-hoc fit, each column's mean dropped value, is the least-squares minimum of this error on the same masks: training can at best equal it.)"
            }
        );
    }
    // The scorer's own benchmark writes docs/scorer.json (`cargo xtask scorer`).
    let scorer = std::fs::read_to_string(root.join("docs/scorer.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            let b = v.get("scorer_below_wanda")?;
            let command = v.get("command")?.as_str()?.to_string();
            Some((b.get(0)?.as_u64()?, b.get(1)?.as_u64()?, command))
        });
    match scorer {
        Some((better, n, command)) => {
            let _ = writeln!(
                md,
                "- The trainable scorer: lower held-out layer output error than Wanda at equal kept fraction on {better} of {n} layers (MiniLM linear layers and digits CNN layers; at least 2/3 wanted): **{}**. Per layer in [SCORER.md](SCORER.md) (`{command}`).",
                verdict(3 * better >= 2 * n)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "- The trainable scorer: no docs/scorer.json; run `cargo xtask scorer`."
            );
        }
    }
}

/// `sklearn_digits.safetensors` in `--data DIR`, else in ../shared/data.
fn digits_path(root: &Path, data: Option<&str>) -> std::path::PathBuf {
    data.map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data"))
        .join("sklearn_digits.safetensors")
}

/// One grid cell as docs/train.json holds it.
#[derive(serde::Deserialize)]
struct Cell {
    config: String,
    report: sparsewire_train::TrainReport,
}

/// docs/TRAIN.md and docs/train_pareto.{svg,png} from docs/train.json (`cargo xtask
/// train --render` redraws them without training).
pub fn render(root: &Path) -> Result<(), String> {
    let p = root.join("docs/train.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let cells: Vec<Cell> =
        serde_json::from_value(v["cells"].clone()).map_err(|e| format!("{}: {e}", p.display()))?;
    let cpu = v["cpu"].as_str().unwrap_or("?");
    let seconds = v["seconds"].as_f64().unwrap_or(0.0);
    let how = match (v["jobs"].as_u64(), v["threads_per_job"].as_u64()) {
        (Some(j), Some(t)) => format!(
            "the dense baseline first on every thread, then {j} cells at a time on {t} thread(s) each; \
             a cell's `s` is its own wall time, so they add up to more than the grid's"
        ),
        _ => "cells one after the other".into(),
    };
    let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.2}", 100.0 * v));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Sparsification-aware training: the digits grid\n\n\
         Written by `cargo xtask train` ({seconds:.0} s on {cpu}; {how}). Each row is one config of `examples/train/` (seed 0, 30 epochs of \
         the 1,437 training digits unless the config sets `epochs` (`digits_90_global`: 60, its dense model too), test on the fixed 360). `dense` and `post-hoc` are trained \
         in the same run with the same seed: the dense model, and the dense model pruned by \
         magnitude at the row's sparsity and pattern, with the row's activation keep, not \
         retrained. Bytes per image: the model as a real `.swire` amortised over 64 images, \
         plus the three crossing activations as the activation sparsifier sends them (dense: \
         f32 weights and activations).\n"
    );
    let _ = writeln!(
        md,
        "| config | weight sparsity | act. keep | test acc. % | dense % | post-hoc % | bytes/image | dense bytes/image | .swire bytes | s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in &cells {
        let r = &c.report;
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.2} | {:.2} | {} | {} | {:.0} | {:.0} | {} | {:.1} |",
            c.config,
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
        "\n![accuracy against bytes per image](train_pareto.svg)\n\nLoss curves (mean training loss per epoch) are in docs/train.json.\n"
    );
    targets(&mut md, &cells, seconds, root);
    for ext in ["svg", "png"] {
        pareto(&root.join(format!("docs/train_pareto.{ext}")), &cells)?;
    }
    let p = root.join("docs/TRAIN.md");
    std::fs::write(&p, &md).map_err(|e| format!("{}: {e}", p.display()))?;
    println!("{md}");
    Ok(())
}

/// `cargo xtask demo-assets`: trains examples/train/digits_90.toml and writes the model
/// the demo carries (assets/digits_90.swire) and 16 test digits (assets/digits_sample.
/// safetensors: `pixels` U8 `[16, 64]` in 0..16, `labels` I32 `[16]`).
pub fn demo_assets(root: &Path, data: Option<&str>) -> Result<(), String> {
    let data = digits_path(root, data);
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

/// Test accuracy against bytes per image: every cell trained with sparsity in the loop,
/// its post-hoc twin (same bytes), and the dense model.
fn pareto(out: &Path, rows: &[Cell]) -> Result<(), String> {
    use plotters::prelude::*;
    const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the compiled-in font does not load".to_string())?;
    if out.extension().is_some_and(|e| e == "png") {
        draw(
            BitMapBackend::new(out, (900, 520)).into_drawing_area(),
            rows,
        )
    } else {
        draw(SVGBackend::new(out, (900, 520)).into_drawing_area(), rows)
    }
    .map_err(|e| format!("{}: {e}", out.display()))
}

fn draw<DB: plotters::prelude::DrawingBackend>(
    area: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Cell],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        area.fill(&WHITE).map_err(e)?;
        let xmax = rows
            .iter()
            .map(|c| c.report.dense_bytes_per_image)
            .fold(0f64, f64::max)
            * 1.05;
        let mut c = ChartBuilder::on(&area)
            .caption(
                "digits CNN: test accuracy against bytes per image",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..xmax, 0f64..100f64)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("bytes per image (weights over 64 images + activations)")
            .y_desc("test accuracy %")
            .draw()
            .map_err(e)?;
        let trained: Vec<(f64, f64)> = rows
            .iter()
            .map(|c| (c.report.bytes_per_image, 100.0 * c.report.test_accuracy))
            .collect();
        let posthoc: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|c| {
                Some((
                    c.report.bytes_per_image,
                    100.0 * c.report.posthoc_test_accuracy?,
                ))
            })
            .collect();
        let dense: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|c| {
                Some((
                    c.report.dense_bytes_per_image,
                    100.0 * c.report.dense_test_accuracy?,
                ))
            })
            .take(1)
            .collect();
        c.draw_series(trained.iter().map(|&p| Circle::new(p, 5, BLUE.filled())))
            .map_err(e)?
            .label("sparsity in the training loop")
            .legend(|p| Circle::new(p, 5, BLUE.filled()));
        c.draw_series(
            posthoc
                .iter()
                .map(|&p| Cross::new(p, 5, RED.stroke_width(2))),
        )
        .map_err(e)?
        .label("post-hoc magnitude, same bytes")
        .legend(|p| Cross::new(p, 5, RED.stroke_width(2)));
        c.draw_series(
            dense
                .iter()
                .map(|&p| TriangleMarker::new(p, 7, BLACK.filled())),
        )
        .map_err(e)?
        .label("dense f32")
        .legend(|p| TriangleMarker::new(p, 7, BLACK.filled()));
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        area.present().map_err(e)?;
        Ok(())
    }
}

/// Each cell's seconds in the last docs/train.json, by config name (empty when there is none).
fn previous_seconds(root: &Path) -> std::collections::HashMap<String, f64> {
    let Ok(text) = std::fs::read_to_string(root.join("docs/train.json")) else {
        return Default::default();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Default::default();
    };
    v["cells"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["config"].as_str()?.to_string(),
                c["report"]["seconds"].as_f64()?,
            ))
        })
        .collect()
}
