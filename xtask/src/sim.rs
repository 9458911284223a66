//! `cargo xtask sim`: the accelerator model's answers on MiniLM bf16, written to
//! docs/SIMULATOR.md and docs/simulator.json.
//!
//! 1. Where the MMU stops stalling: every 2-D tensor multiplied once (batch 1) from streams
//!    sparsified by magnitude at 0-90%, rebuilt by zero-fill or the learned predictor, on
//!    `edge-npu` and `pcie-gpu`.
//! 2. The smallest reconstruction buffer within 95% of an unlimited one: the same workload
//!    twice (the second pass can hit), LMD sizes swept.
//! 3. Model speed: a workload of more than 10 000 tiles, timed.
//! 4. Calibration: `this-cpu` measured and checked against pipelined multiplies at 0%, 50%
//!    and 2:4 sparsity.

use sparsewire_accel::calibrate::calibrate;
use sparsewire_accel::sim::HardwareSpec;
use sparsewire_accel::workload::{matrices, simulate_stream};
use sparsewire_formats::TensorFile;
use sparsewire_metadata::Pattern;
use sparsewire_pipeline::{compress, CompressOptions};
use sparsewire_se::{Budget, Rebuild, SparsifyOptions};
use sparsewire_stream::{EncodeOptions, Reader};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

fn stream(
    file: &TensorFile,
    sparsity: f32,
    pattern: Pattern,
    rebuild: Rebuild,
    eopts: &EncodeOptions,
) -> Result<Vec<u8>, String> {
    let lossless = sparsity == 0.0 && pattern == Pattern::Unstructured;
    let opts = CompressOptions {
        encode: eopts.clone(),
        sparsify: (!lossless).then(|| SparsifyOptions {
            rebuild,
            pattern,
            ..SparsifyOptions::new(Budget::Sparsity(sparsity))
        }),
        force: false,
    };
    compress(file, &opts)
        .map(|r| r.0)
        .map_err(|e| e.to_string())
}

pub fn run(data: &Path, runs: usize) -> Result<(String, serde_json::Value), String> {
    let file = crate::read_tensors(&data.join("minilm_l6_v2.bf16.safetensors"))?;
    let presets = ["edge-npu", "pcie-gpu"];
    let hws: Vec<HardwareSpec> = presets
        .iter()
        .map(|p| HardwareSpec::preset(p).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut md = String::from("# The accelerator model on MiniLM bf16\n\nMade by `cargo xtask sim`. Every 2-D tensor of the model (the 36 encoder matrices, the embeddings, the pooler) multiplied at batch 1, from streams sparsified by magnitude; the dense baseline sends the bf16 weights over the same bus.\n\n");
    let mut json = serde_json::Map::new();

    // 1. Sparsity x method x batch on both presets.
    let _ = writeln!(md, "## Where the MMU stops stalling\n\n| sparsity | rebuild | stored | preset | batch | time ms | dense ms | speedup | MMU stall | bus busy | engine busy |\n|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let mut stop: Vec<String> = Vec::new();
    let mut streams = Vec::new();
    for rebuild in [Rebuild::Zero, Rebuild::Learned] {
        for s in [0.0f32, 0.3, 0.5, 0.7, 0.9, 0.95] {
            if s == 0.0 && rebuild != Rebuild::Zero {
                continue;
            }
            let b = stream(
                &file,
                s,
                Pattern::Unstructured,
                rebuild,
                &EncodeOptions::default(),
            )?;
            streams.push((rebuild, s, b));
        }
    }
    for (hw_i, hw) in hws.iter().enumerate() {
        for batch in [1usize, 64] {
            for rebuild in [Rebuild::Zero, Rebuild::Learned] {
                let mut found = None;
                for (_, s, b) in streams.iter().filter(|x| x.0 == rebuild) {
                    let r = Reader::new(&b[..]).map_err(|e| e.to_string())?;
                    let t = matrices(r.header());
                    let rep = simulate_stream(r.header(), &t, batch, 1, 4, hw)
                        .map_err(|e| e.to_string())?;
                    let _ = writeln!(
                        md,
                        "| {s} | {rebuild} | {:.1}% | {} | {batch} | {:.3} | {:.3} | {:.2}x | {:.0}% | {:.0}% | {:.0}% |",
                        b.len() as f64 / file.byte_len() as f64 * 100.0,
                        presets[hw_i],
                        rep.total_seconds * 1e3,
                        rep.dense_total_seconds * 1e3,
                        rep.speedup,
                        rep.mmu_stall_fraction * 100.0,
                        rep.bus_utilisation * 100.0,
                        rep.engine_utilisation * 100.0
                    );
                    if found.is_none() && rep.mmu_stall_fraction < 0.05 {
                        found = Some(*s);
                    }
                    rows.push(serde_json::json!({"sparsity": s, "rebuild": format!("{rebuild}"), "preset": presets[hw_i], "batch": batch, "report": rep}));
                }
                stop.push(format!(
                    "- `{}`, batch {batch}, {rebuild}: {}",
                    presets[hw_i],
                    match found {
                        Some(s) => format!("the MMU stalls under 5% of the time from {s} sparsity"),
                        None =>
                            "the MMU still stalls more than 5% of the time at 95% sparsity".into(),
                    }
                ));
            }
        }
    }
    let _ = writeln!(md, "\n{}\n", stop.join("\n"));
    json.insert("sparsity_sweep".into(), rows.into());

    // 2. Smallest buffer within 95% of unlimited, two passes over each tensor.
    let _ = writeln!(md, "## Smallest reconstruction buffer within 95% of an unlimited one\n\nEach tensor multiplied twice in a row (micro-batches), 50% magnitude, zero-fill. Buffer = LMD less staging.\n\n| preset | unlimited ms | smallest buffer | its time ms | share of unlimited speed |\n|---|---|---|---|---|");
    let b = stream(
        &file,
        0.5,
        Pattern::Unstructured,
        Rebuild::Zero,
        &EncodeOptions::default(),
    )?;
    let r = Reader::new(&b[..]).map_err(|e| e.to_string())?;
    let t = matrices(r.header());
    let mut lmd = Vec::new();
    for (hw_i, hw) in hws.iter().enumerate() {
        let mut big = hw.clone();
        big.lmd.capacity_bytes = 1 << 40;
        let unlimited =
            simulate_stream(r.header(), &t, 1, 2, 4, &big).map_err(|e| e.to_string())?;
        let mut best = None;
        for mib in [1u64, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128] {
            let mut h = hw.clone();
            h.lmd.capacity_bytes = h.lmd.staging_bytes + (mib << 20);
            let Ok(rep) = simulate_stream(r.header(), &t, 1, 2, 4, &h) else {
                continue;
            };
            let share = unlimited.total_seconds / rep.total_seconds;
            if share >= 0.95 {
                best = Some((mib, rep.total_seconds, share));
                break;
            }
        }
        let _ = match best {
            Some((mib, s, share)) => writeln!(
                md,
                "| {} | {:.3} | {mib} MiB | {:.3} | {:.1}% |",
                presets[hw_i],
                unlimited.total_seconds * 1e3,
                s * 1e3,
                share * 100.0
            ),
            None => writeln!(
                md,
                "| {} | {:.3} | over 128 MiB | - | - |",
                presets[hw_i],
                unlimited.total_seconds * 1e3
            ),
        };
        lmd.push(serde_json::json!({"preset": presets[hw_i], "unlimited_seconds": unlimited.total_seconds, "smallest_buffer_mib": best.map(|b| b.0)}));
    }
    json.insert("buffer_sweep".into(), lmd.into());

    // 3. Model speed on a many-tile workload.
    let small_tiles = EncodeOptions {
        tile_elems: 1024,
        ..EncodeOptions::default()
    };
    let b = stream(
        &file,
        0.5,
        Pattern::Unstructured,
        Rebuild::Zero,
        &small_tiles,
    )?;
    let r = Reader::new(&b[..]).map_err(|e| e.to_string())?;
    let t = matrices(r.header());
    let tiles: usize = t.iter().map(|&i| r.header().tensors[i].tiles.len()).sum();
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        simulate_stream(r.header(), &t, 1, 1, 4, &hws[0]).map_err(|e| e.to_string())?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let _ = writeln!(md, "\n## Model speed\n\n{tiles} tiles (1024-element tiles) planned and simulated in {:.1} ms (median of {}; target under 1 s).\n", secs * 1e3, times.len());
    json.insert(
        "model_speed".into(),
        serde_json::json!({"tiles": tiles, "seconds": secs}),
    );

    // 4. Calibration against measured pipelined multiplies.
    let _ = writeln!(md, "## Calibration (`this-cpu`)\n\n`simulate --calibrate` on each stream: rates measured with the real code, then every 2-D tensor's pipelined multiply (all cores) timed and predicted.\n\n| stream | tensors | median error | max error |\n|---|---|---|---|");
    let mut cal = Vec::new();
    for (name, s, p) in [
        ("0%", 0.0f32, Pattern::Unstructured),
        ("50%", 0.5, Pattern::Unstructured),
        ("2:4", 0.5, Pattern::NM { n: 2, m: 4 }),
    ] {
        let b = stream(&file, s, p, Rebuild::Zero, &EncodeOptions::default())?;
        let r = Reader::new(&b[..]).map_err(|e| e.to_string())?;
        let t = matrices(r.header());
        let c = calibrate(&r, &t, runs).map_err(|e| e.to_string())?;
        let mut errs: Vec<f64> = c.runs.iter().map(|r| r.relative_error).collect();
        errs.sort_by(f64::total_cmp);
        let _ = writeln!(
            md,
            "| {name} | {} | {:.1}% | {:.1}% |",
            errs.len(),
            errs[errs.len() / 2] * 100.0,
            c.max_relative_error * 100.0
        );
        cal.push(serde_json::json!({"stream": name, "calibration": c}));
    }
    json.insert("calibration".into(), cal.into());
    Ok((md, json.into()))
}
