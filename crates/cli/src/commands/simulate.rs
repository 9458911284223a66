//! `sparsewire simulate`.

use crate::args::{self, Result};
use crate::output::print_json;
use crate::plot;
use sparsewire_accel::calibrate::calibrate;
use sparsewire_accel::sim::{HardwareSpec, SimReport, Sweep, SweepParam};
use sparsewire_accel::workload::{matrices, simulate_stream, simulate_timeline};
use sparsewire_formats::output::write_file;
use sparsewire_stream::Reader;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A .swire stream.
    file: PathBuf,
    /// Hardware: a preset (edge-npu, pcie-gpu; this-cpu after --calibrate wrote it to
    /// --preset-out) or a JSON file in the preset format (see docs/SIMULATOR.md).
    #[arg(long, default_value = "edge-npu")]
    hw: String,
    /// Tensors multiplied, in order (repeatable; default: every 2-D float tensor).
    #[arg(long)]
    tensor: Vec<String>,
    /// Input vectors per multiply.
    #[arg(long, default_value_t = 1, value_parser = args::count)]
    batch: usize,
    /// Multiplies of each tensor (later ones hit the buffer when it holds the tensor).
    #[arg(long, default_value_t = 1, value_parser = args::count)]
    passes: usize,
    /// How many tiles rebuilding may run ahead of the multiply.
    #[arg(long, default_value_t = 4)]
    lookahead: usize,
    /// Vary one parameter: bus.gbps, lmd.capacity_bytes, engine.scale (all engine rates
    /// times the value), mmu.scale or batch, e.g. --sweep bus.gbps=1,2,4,8.
    #[arg(long)]
    sweep: Option<Sweep>,
    /// The bus's rate over time instead of the preset's constant bus.gbps: a trace file
    /// of `seconds gbps` lines (the format `sparsewire serve --link-trace` emulates on a
    /// socket), its clock starting with the workload.
    #[arg(long, value_name = "FILE", conflicts_with = "calibrate")]
    link_trace: Option<PathBuf>,
    /// Measure this machine's rates with the real code, write the this-cpu preset (to
    /// --preset-out), and compare predicted with measured pipelined multiplies.
    #[arg(long, conflicts_with_all = ["sweep", "plot", "hw"])]
    calibrate: bool,
    /// Where --calibrate writes the this-cpu preset, and where --hw this-cpu reads it.
    #[arg(long, default_value = "this-cpu.json")]
    preset_out: PathBuf,
    /// Timed runs per measurement (--calibrate).
    #[arg(long, default_value_t = 5, value_parser = args::count)]
    runs: usize,
    /// Write a chart: the timeline of bus, rebuild and MMU per tile, or with --sweep the
    /// time against the swept value (SVG; PNG when OUT ends in .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

fn load_hw(name: &str, preset_out: &Path) -> Result<HardwareSpec> {
    let from_file = |p: &Path| -> Result<HardwareSpec> {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let hw: HardwareSpec = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a hardware description: {e}", p.display()))?;
        hw.validate().map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(hw)
    };
    match name {
        "this-cpu" => from_file(preset_out).map_err(|e| {
            format!(
                "this-cpu: run `sparsewire simulate FILE --calibrate --preset-out {}` first ({e})",
                preset_out.display()
            )
            .into()
        }),
        n if n.ends_with(".json") => from_file(Path::new(n)),
        n => Ok(HardwareSpec::preset(n)?),
    }
}

pub fn run(a: Args) -> Result<()> {
    let map = sparsewire_formats::mmap::map_file(&a.file)
        .map_err(|e| format!("{}: {e}", a.file.display()))?;
    let reader = Reader::new(map).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let header = reader.header();
    let tensors: Vec<usize> = if a.tensor.is_empty() {
        matrices(header)
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
        let c = calibrate(&reader, &tensors, a.runs)?;
        let text = serde_json::to_string_pretty(&c.preset)?;
        write_file(&a.preset_out, text.as_bytes(), true)?;
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
    let mut hw = load_hw(&a.hw, &a.preset_out)?;
    if let Some(f) = &a.link_trace {
        if a.sweep
            .as_ref()
            .is_some_and(|s| matches!(s.param, SweepParam::BusGbps))
        {
            return Err(
                "--link-trace sets the bus's rate; it cannot be swept with bus.gbps".into(),
            );
        }
        // The same reading (and errors) as `serve --link-trace`.
        hw.bus.trace = super::serve::trace(None, Some(f))?;
        hw.name = format!("{} with the bus of {}", hw.name, f.display());
    }
    let mut reports: Vec<(Option<f64>, SimReport)> = Vec::new();
    match &a.sweep {
        None => {
            let (r, tl) = simulate_timeline(header, &tensors, a.batch, a.passes, a.lookahead, &hw)?;
            if let Some(p) = &a.plot {
                plot::timeline(p, &format!("{} on {}", a.file.display(), hw.name), &tl)?;
            }
            reports.push((None, r));
        }
        Some(sweep) => {
            for &x in &sweep.values {
                let (h, batch) = sweep.param.apply(&hw, a.batch, x);
                let r = simulate_stream(header, &tensors, batch, a.passes, a.lookahead, &h)?;
                reports.push((Some(x), r));
            }
            if let Some(p) = &a.plot {
                let pts: Vec<(f64, SimReport)> = reports
                    .iter()
                    .map(|(v, r)| (v.unwrap_or(0.0), r.clone()))
                    .collect();
                plot::sweep(p, &sweep.param.to_string(), &pts)?;
            }
        }
    }
    if a.json {
        #[derive(serde::Serialize)]
        struct Point<'a> {
            value: Option<f64>,
            #[serde(flatten)]
            report: &'a SimReport,
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
        "{} on {} (modelled): {} tensors, batch {}, {} passes",
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
