//! Writing a grid's results: `results.json`, `results.md` (every cell, the weights' Pareto
//! front, the conv filters) and plots (SVG and PNG): bits per weight against mean cosine,
//! one curve per criterion and reconstruction; the same for activations; bits per weight
//! against relative error per conv layer type.

use crate::filters::FilterCell;
use crate::grid::{CellResult, Path as CellPath};
use plotters::prelude::*;
use sparsewire_metadata::{Criterion, Pattern};
use sparsewire_se::Rebuild;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// DejaVu Sans Mono (Bitstream Vera licence, assets/fonts/DejaVu-LICENSE.txt at the
/// workspace root): plots render the same everywhere, with no system font library.
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

/// The weights cells no cheaper cell beats on mean cosine, cheapest first.
pub fn pareto(cells: &[CellResult]) -> Vec<&CellResult> {
    let mut w: Vec<&CellResult> = cells
        .iter()
        .filter(|c| c.path == CellPath::Weights)
        .collect();
    w.sort_by(|a, b| {
        a.bytes_fraction
            .total_cmp(&b.bytes_fraction)
            .then(b.quality.mean_cosine.total_cmp(&a.quality.mean_cosine))
    });
    let mut best = f64::NEG_INFINITY;
    w.into_iter()
        .filter(|c| {
            let keep = c.quality.mean_cosine > best;
            best = best.max(c.quality.mean_cosine);
            keep
        })
        .collect()
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), |v| v.to_string())
}

fn row(c: &CellResult) -> String {
    format!(
        "| {:?} | {} | {} | {} | {} | {} | {} | {:.2}% | {:.2} | {:.4} | {:.4} | {:.1}% | {:.4} |",
        c.path,
        opt(&c
            .sparsity
            .map(|s| s.to_string())
            .or(c.target_ratio.map(|r| format!("bytes <= {r}")))),
        opt(&c.criterion),
        opt(&c.pattern),
        opt(&c.reconstruct),
        opt(&c
            .keep_fraction
            .map(|k| format!("keep {k}"))
            .or(c.threshold.map(|t| format!("|a| > {t}")))
            .or(c
                .keep_per_family
                .map(|[h, i, g]| format!("keep {h}/{i}/{g} (hidden/ffn_in/ffn_act)")))
            .map(|p| match c.activation_sites {
                Some(s) => format!("{p} of {s:?}"),
                None => p,
            })),
        opt(&c.activation_reconstruct),
        c.bytes_fraction * 100.0,
        c.bits_per_weight,
        c.quality.mean_cosine,
        c.quality.min_cosine,
        c.quality.top1_agreement * 100.0,
        c.quality.spearman
    )
}

const HEAD: &str = "| path | sparsity | criterion | pattern | reconstruct | activations | act. rebuild | bytes | bits/value | mean cos | min cos | top-1 | Spearman |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// Writes every output into `dir`; returns the paths written.
pub fn write(
    dir: &Path,
    model: &str,
    grid: &str,
    sentences: usize,
    cells: &[CellResult],
    filters: &[FilterCell],
) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let json = dir.join("results.json");
    let body = serde_json::json!({
        "model": model,
        "grid": grid,
        "sentences": sentences,
        "cells": cells,
        "filters": filters,
    });
    let text = serde_json::to_string_pretty(&body).map_err(|e| e.to_string())?;
    sparsewire_formats::output::write_file(&json, text.as_bytes(), true)
        .map_err(|e| e.to_string())?;
    written.push(json);

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# {model} on compressed weights and activations (grid `{grid}`, {sentences} sentences)\n"
    );
    let _ = writeln!(md, "Quality against the original bf16 model; bytes against the bf16 bytes of what was compressed.\n");
    let _ = write!(md, "## Pareto front (weights)\n\n{HEAD}");
    for c in pareto(cells) {
        let _ = writeln!(md, "{}", row(c));
    }
    let _ = write!(md, "\n## Every cell\n\n{HEAD}");
    for c in cells {
        let _ = writeln!(md, "{}", row(c));
    }
    let _ = write!(md, "\n## Conv filters (PP-OCRv4 detection, tensor level)\n\nRelative error of the rebuilt filters, and error(zero-fill) / error(method), size-weighted per layer type.\n\n| layer type | tensors | sparsity | criterion | reconstruct | bits/weight | rel. error | gain | chosen |\n|---|---|---|---|---|---|---|---|---|\n");
    for f in filters {
        let chosen: Vec<String> = f.methods.iter().map(|(m, n)| format!("{m} {n}")).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2} | {:.4} | {:.3} | {} |",
            f.layer_type,
            f.tensors,
            f.sparsity,
            f.criterion,
            f.reconstruct,
            f.bits_per_weight,
            f.rel_error,
            f.reconstruction_gain,
            chosen.join(", ")
        );
    }
    let mdp = dir.join("results.md");
    sparsewire_formats::output::write_file(&mdp, md.as_bytes(), true).map_err(|e| e.to_string())?;
    written.push(mdp);

    fonts()?;
    let weights: Vec<&CellResult> = cells
        .iter()
        .filter(|c| {
            c.path == CellPath::Weights
                && c.sparsity.is_some()
                && c.pattern == Some(Pattern::Unstructured)
        })
        .collect();
    let curves = |cs: &[&CellResult], key: &dyn Fn(&CellResult) -> String| {
        let mut m: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for c in cs {
            m.entry(key(c))
                .or_default()
                .push((c.bits_per_weight, c.quality.mean_cosine));
        }
        for v in m.values_mut() {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        m
    };
    let wc = curves(&weights, &|c| {
        format!("{} / {}", opt(&c.criterion), opt(&c.reconstruct))
    });
    let acts: Vec<&CellResult> = cells
        .iter()
        .filter(|c| c.path == CellPath::Activations && c.keep_fraction.is_some())
        .collect();
    let ac = curves(&acts, &|c| {
        format!("rebuild {}", opt(&c.activation_reconstruct))
    });
    let mut fc: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for f in filters.iter().filter(|f| {
        f.criterion == Criterion::Magnitude
            && matches!(f.reconstruct, Rebuild::Zero | Rebuild::Auto)
    }) {
        fc.entry(format!("{} / {}", f.layer_type, f.reconstruct))
            .or_default()
            .push((f.bits_per_weight, f.rel_error));
    }
    for v in fc.values_mut() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let plots = [
        (
            "weights",
            "Encoder weights: bits per weight vs mean cosine",
            "bits per weight",
            COSINE,
            &wc,
        ),
        (
            "activations",
            "Activations: bits per value vs mean cosine",
            "bits per value",
            COSINE,
            &ac,
        ),
        (
            "filters",
            "PP-OCR conv filters: bits per weight vs relative error",
            "bits per weight",
            ERROR,
            &fc,
        ),
    ];
    for (name, title, xlabel, ylabel, data) in plots {
        if data.is_empty() {
            continue;
        }
        let svg = dir.join(format!("{name}.svg"));
        let png = dir.join(format!("{name}.png"));
        let labels = (title, xlabel, ylabel);
        chart(
            SVGBackend::new(&svg, (900, 600)).into_drawing_area(),
            labels,
            data,
        )
        .map_err(|e| format!("{}: {e}", svg.display()))?;
        chart(
            BitMapBackend::new(&png, (900, 600)).into_drawing_area(),
            labels,
            data,
        )
        .map_err(|e| format!("{}: {e}", png.display()))?;
        written.extend([svg, png]);
    }
    // Make sure the files are really there (the backends write on drop).
    for p in &written {
        std::fs::metadata(p).map_err(io(p))?;
    }
    Ok(written)
}

/// Registers the compiled-in font the charts draw with.
fn fonts() -> Result<(), String> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the compiled-in font does not load".to_string())
}

const COSINE: &str = "mean cosine to the original";
const ERROR: &str = "relative error (Frobenius)";

fn chart<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    (title, xlabel, ylabel): (&str, &str, &str),
    data: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let pts = data.values().flatten();
    let (x0, x1) = pts
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (ylo, yhi) = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    // Cosine charts end at 1; error charts start at 0.
    let yrange = if ylabel == COSINE {
        (ylo.min(1.0) - 0.02).max(-1.0)..1.005
    } else {
        0.0..yhi * 1.05 + 1e-9
    };
    let mut c = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 * 0.95)..(x1 * 1.05 + 1e-9), yrange)
        .map_err(e)?;
    c.configure_mesh()
        .x_desc(xlabel)
        .y_desc(ylabel)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    for (i, (name, v)) in data.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(v.iter().copied(), color.stroke_width(2)))
            .map_err(e)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        c.draw_series(v.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    area.present().map_err(e)?;
    Ok(())
}

/// The recovery loss curve (and the held-out cosine where it was measured) as an SVG.
pub fn loss_plot(path: &Path, curve: &[crate::recover::Step]) -> Result<(), String> {
    fonts()?;
    let mut data: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    data.insert(
        "training loss".into(),
        curve.iter().map(|s| (s.step as f64, s.loss)).collect(),
    );
    let held: Vec<(f64, f64)> = curve
        .iter()
        .filter_map(|s| Some((s.step as f64, 1.0 - s.heldout_cosine?)))
        .collect();
    if !held.is_empty() {
        data.insert("held-out 1 - cosine".into(), held);
    }
    chart(
        SVGBackend::new(path, (900, 600)).into_drawing_area(),
        ("Recovery: loss per step", "step", "loss"),
        &data,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::metadata(path).map_err(io(path))?;
    Ok(())
}

/// One recovery run's points, read from its `results.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryPoint {
    /// `weights` (sparsity > 0, activations dense) or `activations` (weights intact).
    pub chart: &'static str,
    /// The series it belongs to (pattern, or the activation sites).
    pub series: String,
    /// Bits per weight (or per activation value), post hoc and recovered.
    pub bits: (f64, f64),
    /// Mean cosine to the dense model on the evaluation sentences, post hoc and recovered.
    pub cosine: (f64, f64),
}

/// Reads a `sparsewire-eval recover` results.json into its chart point; runs that
/// sparsify both weights and activations have no chart (their bytes mix two kinds).
pub fn recovery_point(path: &Path) -> Result<Option<RecoveryPoint>, String> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let num = |p: &str| -> Result<f64, String> {
        v.pointer(p).and_then(|x| x.as_f64()).ok_or_else(|| {
            format!(
                "{}: no number at {p}: not a `sparsewire-eval recover` results.json",
                path.display()
            )
        })
    };
    let sparsity = num("/options/sparsity")?;
    let pattern = v
        .pointer("/options/pattern")
        .and_then(|x| x.as_str())
        .unwrap_or("?")
        .to_string();
    match v.get("with_activations").filter(|w| !w.is_null()) {
        None => Ok(Some(RecoveryPoint {
            chart: "weights",
            series: pattern,
            bits: (
                16.0 * num("/bytes_fraction_post_hoc")?,
                16.0 * num("/bytes_fraction")?,
            ),
            cosine: (
                num("/post_hoc/mean_cosine")?,
                num("/recovered/mean_cosine")?,
            ),
        })),
        Some(_) if sparsity == 0.0 => {
            let bits = 16.0 * num("/with_activations/activation_bytes_fraction")?;
            let sites = v
                .pointer("/options/activation_sites")
                .and_then(|x| x.as_str())
                .unwrap_or("all");
            Ok(Some(RecoveryPoint {
                chart: "activations",
                series: format!("sites {sites}"),
                bits: (bits, bits),
                cosine: (
                    num("/with_activations/dense_weights/mean_cosine")?,
                    num("/with_activations/recovered/mean_cosine")?,
                ),
            }))
        }
        Some(_) => Ok(None),
    }
}

/// Cosine against bits for post-hoc and recovered models, on the axes of the grid's
/// charts (`weights`, `activations`), with the grid's zero-fill curves from `grid` (the
/// cells of its results.json) for reference. Writes `dir/recovery_{chart}.svg` and `.png`
/// for each chart that has a point; returns the files written.
pub fn recovery_plots(
    dir: &Path,
    points: &[RecoveryPoint],
    grid: &[serde_json::Value],
) -> Result<Vec<PathBuf>, String> {
    fonts()?;
    let mut written = Vec::new();
    for (chart_name, title, xlabel) in [
        (
            "weights",
            "Encoder weights: recovery training against post hoc",
            "bits per weight",
        ),
        (
            "activations",
            "Activations in the loop: recovery training against post hoc",
            "bits per value",
        ),
    ] {
        let mine: Vec<&RecoveryPoint> = points.iter().filter(|p| p.chart == chart_name).collect();
        if mine.is_empty() {
            continue;
        }
        let mut data: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for p in &mine {
            data.entry(format!("{} post hoc", p.series))
                .or_default()
                .push((p.bits.0, p.cosine.0));
            data.entry(format!("{} recovered", p.series))
                .or_default()
                .push((p.bits.1, p.cosine.1));
        }
        for c in grid {
            let field = |k: &str| c.get(k).and_then(|x| x.as_str()).unwrap_or("");
            let key = match (chart_name, field("path")) {
                ("weights", "weights")
                    if c.get("sparsity").is_some_and(|x| !x.is_null())
                        && field("pattern") == "unstructured"
                        && field("criterion") == "sparsegpt"
                        && field("reconstruct") == "zero" =>
                {
                    "grid: sparsegpt / zero"
                }
                ("activations", "activations")
                    if c.get("keep_fraction").is_some_and(|x| !x.is_null())
                        && field("activation_sites") == "all"
                        && field("activation_reconstruct") == "zero" =>
                {
                    "grid: keep fraction / zero"
                }
                _ => continue,
            };
            let num = |k: &str| c.get(k).and_then(|x| x.as_f64());
            if let (Some(x), Some(y)) = (num("bits_per_weight"), num("mean_cosine")) {
                data.entry(key.into()).or_default().push((x, y));
            }
        }
        for v in data.values_mut() {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        written.extend(svg_and_png(
            dir,
            &format!("recovery_{chart_name}"),
            (title, xlabel, COSINE),
            &data,
        )?);
    }
    Ok(written)
}

/// Draws one chart as `dir/name.svg` and `dir/name.png`, each written whole or not at
/// all (the SVG atomically, the PNG drawn to a temporary name beside it and renamed into
/// place).
fn svg_and_png(
    dir: &Path,
    name: &str,
    labels: (&str, &str, &str),
    data: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<[std::path::PathBuf; 2], String> {
    let mut svg = String::new();
    chart(
        SVGBackend::with_string(&mut svg, (900, 600)).into_drawing_area(),
        labels,
        data,
    )?;
    let p = dir.join(format!("{name}.svg"));
    sparsewire_formats::output::write_file(&p, svg.as_bytes(), true).map_err(|e| e.to_string())?;
    let png = dir.join(format!("{name}.png"));
    let tmp = dir.join(format!(".{name}.{}.png", std::process::id()));
    let drawn = chart(
        BitMapBackend::new(&tmp, (900, 600)).into_drawing_area(),
        labels,
        data,
    )
    .and_then(|()| std::fs::rename(&tmp, &png).map_err(io(&png)));
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok([p, png])
}

/// Held-out cosine against training seconds, one line a series, as `dir/name.svg` and
/// `dir/name.png` (each written whole or not at all): the side-by-side of recoveries at
/// equal wall time (`cargo xtask vs-torch`).
pub fn time_curves(
    dir: &Path,
    name: &str,
    title: &str,
    data: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<[std::path::PathBuf; 2], String> {
    fonts()?;
    svg_and_png(
        dir,
        name,
        (title, "training seconds (scoring excluded)", COSINE),
        data,
    )
}
