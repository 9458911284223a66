//! `cargo xtask link [--data DIR] [--seconds S]`: the link's targets on loopback.
//!
//! MiniLM bf16 served by a host in this process with the link trace (2 GB/s and
//! 0.1 GB/s alternating every 2 s), a client running a pass of every weight matrix due
//! every 200 ms for S seconds (default 60), once per policy: adaptive, lossless and the
//! fixed levels; then adaptive on a constant 2 GB/s link. Quality: MiniLM's sentence
//! embeddings (every fifth pass's weights as received, run on that pass's four evaluation
//! sentences) against the dense model's, and each layer's output against the dense
//! weights'. Writes docs/LINK.md and docs/link.json.

use sparsewire_accel::calibrate::median;
use sparsewire_link::client::{Client, ClientOptions};
use sparsewire_link::controller::Spend;
use sparsewire_link::host::{HostModel, HostOptions};
use sparsewire_link::model::{simulate, Compute, ModelOptions, ModelReport};
use sparsewire_link::pace::{Pacer, Trace};
use sparsewire_link::run::{run, Policy, RunOptions, RunReport};
use sparsewire_link::server::Server;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The socket's round trip the model assumes (loopback), seconds.
const ROUND_TRIP: f64 = 100e-6;
/// Seconds between pass deadlines, in every periodic run.
const PERIOD: f64 = 0.2;

/// The rate the timing model takes for the calibration's unpaced link, GB/s (loopback
/// moves a few GB/s; the model then waits only for what it charges the client).
const UNLIMITED_GBPS: f64 = 1000.0;

/// The timing model's calibration: runs a setting, interleaved, whose median is each cost.
const ROUNDS: usize = 5;
/// Passes a calibration run (the first left out).
const PASSES: u32 = 8;

/// Every how many passes the sentence embeddings are measured.
const EVERY: usize = 5;

fn alternating(seconds: f64) -> Trace {
    let points = (0..=(seconds / 2.0).ceil() as usize)
        .map(|i| (i as f64 * 2.0, if i % 2 == 0 { 2.0 } else { 0.1 }))
        .collect();
    Trace::new(points).expect("a valid trace")
}

struct Row {
    label: String,
    link: String,
    report: RunReport,
    /// The timing model's prediction of the same run.
    model: ModelReport,
    /// MiniLM's sentence embeddings of the sampled passes against the dense model's.
    embedding: Embedding,
    /// The stall share of every repeat of the case (the row is the median one).
    repeats: Vec<f64>,
}

#[derive(Clone, Copy, Default)]
struct Embedding {
    mean_cosine: f64,
    min_cosine: f64,
    passes: usize,
    sentences: usize,
}

/// Rebuilds MiniLM as every `every`-th pass received it (each tile at the level it was
/// sent at, decoded from the host's own payload) and embeds that pass's four sentences
/// (pass `p`: sentences `4p..4p+4`, cycling); cosine against the dense model's embeddings.
fn embedding_quality(
    host: &HostModel,
    dense: &sparsewire_formats::TensorFile,
    tokens: &[Vec<u32>],
    reference: &[Vec<f32>],
    report: &RunReport,
    every: usize,
) -> Result<Embedding, Box<dyn std::error::Error>> {
    let m = &host.manifest;
    let mut cosines = Vec::new();
    for p in report.pass_reports.iter().step_by(every.max(1)) {
        let mut file = dense.clone();
        let mut item = 0usize;
        for name in &report.layers {
            let t = m
                .tensor_index(name)
                .ok_or("a scheduled tensor the host lacks")?;
            let mut data = Vec::new();
            for k in 0..m.tensors[t].tiles {
                let level = u16::from(p.tile_levels[item]);
                item += 1;
                let payload = host.payload(t as u32, k, level)?;
                let tile = sparsewire_pipeline::decompress(&payload)?;
                data.extend_from_slice(&tile.tensors[0].data);
            }
            let w = file
                .tensors
                .iter_mut()
                .find(|w| &w.name == name)
                .ok_or("a scheduled tensor the model lacks")?;
            if data.len() != w.data.len() {
                return Err(format!(
                    "{name}: {} bytes rebuilt, {} expected",
                    data.len(),
                    w.data.len()
                )
                .into());
            }
            w.data = data;
        }
        let model = sparsewire_eval::model::Bert::minilm(&file)?;
        for j in 0..4 {
            let s = (4 * p.pass as usize + j) % tokens.len();
            let e = model.embed(&tokens[s], None)?;
            cosines.push(sparsewire_eval::metrics::cosine(&e, &reference[s]));
        }
    }
    Ok(Embedding {
        mean_cosine: cosines.iter().sum::<f64>() / cosines.len().max(1) as f64,
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
        passes: cosines.len() / 4,
        sentences: cosines.len(),
    })
}

/// Per-pass means of a calibration run, its first pass left out: dense bytes,
/// and seconds decoding and multiplying, waiting, and running in all; and the pass's
/// schedule (manifest indices).
struct Calibration {
    dense: f64,
    compute: f64,
    waiting: f64,
    running: f64,
    schedule: Vec<usize>,
}

/// Runs `passes` passes of `policy` against a host of its own, paced by `trace` (`None`:
/// unpaced), one every `period` (`None`: back to back), for the timing model's client
/// costs.
fn calibrate(
    host: &Arc<HostModel>,
    trace: Option<Trace>,
    policy: Policy,
    period: Option<Duration>,
    passes: u32,
) -> Result<Calibration, Box<dyn std::error::Error>> {
    let server = Server::bind(
        "127.0.0.1:0".parse()?,
        false,
        host.clone(),
        Pacer::new(trace),
    )?
    .spawn();
    let mut client = Client::connect(server.addr(), ClientOptions::default())?;
    let o = RunOptions {
        policy,
        period,
        passes: Some(passes),
        ..RunOptions::default()
    };
    let r = run(&mut client, &o, &mut |_| {})?;
    server.stop();
    let ps = &r.pass_reports[1..];
    let mean = |f: &dyn Fn(&sparsewire_link::run::PassReport) -> f64| {
        ps.iter().map(f).sum::<f64>() / ps.len() as f64
    };
    Ok(Calibration {
        dense: r.dense_bytes as f64 / f64::from(r.passes),
        compute: mean(&|p| p.compute_seconds),
        waiting: mean(&|p| p.stall_seconds),
        running: mean(&|p| p.end - p.start),
        schedule: schedule_of(host, &r),
    })
}

/// A run's multiply order as manifest indices (the timing model's schedule).
fn schedule_of(host: &HostModel, r: &RunReport) -> Vec<usize> {
    r.layers
        .iter()
        .filter_map(|n| host.manifest.tensor_index(n))
        .collect()
}

pub fn run_link(
    root: &Path,
    data: Option<&str>,
    seconds: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = data
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data"));
    let path = dir.join("minilm_l6_v2.bf16.safetensors");
    let model = sparsewire_formats::input::InputFile::open(&path)
        .and_then(|f| f.read_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let opts = HostOptions::default();
    let host = Arc::new(HostModel::new(&model, &opts)?);
    eprintln!(
        "host: {} tiles x {} levels, {} bytes held, prepared in {:.2} s",
        host.manifest.tensors.iter().map(|t| t.tiles).sum::<u32>(),
        host.manifest.levels.len(),
        host.held_bytes(),
        host.prepare_seconds
    );
    let tokens = sparsewire_eval::sentences::tokenize(
        &dir.join("minilm_l6_v2_tokenizer/tokenizer.json"),
        &sparsewire_eval::sentences::sentences(),
        512,
    )?;
    let dense_model = sparsewire_eval::model::Bert::minilm(&model)?;
    let reference: Vec<Vec<f32>> = tokens
        .iter()
        .map(|t| dense_model.embed(t, None))
        .collect::<Result<_, _>>()?;
    drop(dense_model);
    // The timing model's client, measured the way the cases run: a pass every PERIOD, so
    // the client idles between passes as it does there (back to back, it computes up to a
    // quarter faster: caches and clocks stay warm). Decode-and-multiply time per dense
    // byte at each ladder level, from runs at that level on an unlimited link. This VM
    // changes speed for seconds at a time (a lossless pass's waiting was 8 ms in most runs
    // of 30 passes and 11-15 ms in some, at any link rate), so every cost comes from
    // ROUNDS short runs a setting, the settings interleaved, and the median of the runs is
    // taken: one slow stretch moves no cost. Each run leaves its first pass out (means
    // over passes, as the model predicts them). The result is the model's options with
    // those costs; each case sets its policy, spend and schedule on top.
    let costs = {
        let period = Some(Duration::from_secs_f64(PERIOD));
        let policy_of = |i: usize| {
            if i == 0 {
                Policy::Lossless
            } else {
                Policy::Fixed(opts.levels[i])
            }
        };
        // runs[level][round] periodic on an unlimited link; back[round] lossless back to back.
        let mut runs: Vec<Vec<Calibration>> = opts.levels.iter().map(|_| Vec::new()).collect();
        let mut back = Vec::new();
        for _ in 0..ROUNDS {
            for (i, r) in runs.iter_mut().enumerate() {
                r.push(calibrate(&host, None, policy_of(i), period, PASSES)?);
            }
            back.push(calibrate(&host, None, Policy::Lossless, None, PASSES)?);
        }
        let c = Compute {
            per_dense_byte: runs
                .iter()
                .map(|r| median(r.iter().map(|r| r.compute / r.dense.max(1.0)).collect()))
                .collect(),
        };
        // Tiles a pass (the schedule's: every weight matrix multiplied).
        let tiles: u32 = runs[0][0]
            .schedule
            .iter()
            .map(|&t| host.manifest.tensors[t].tiles)
            .sum();
        let per_tile = |x: f64| x / f64::from(tiles.max(1));
        // The rest of a pass is the client's own time per tile outside waiting and
        // computing (each level's median, averaged over the levels).
        let other = runs
            .iter()
            .map(|r| {
                median(
                    r.iter()
                        .map(|r| per_tile((r.running - r.waiting - r.compute).max(0.0)))
                        .collect(),
                )
            })
            .sum::<f64>()
            / runs.len() as f64;
        let lossless_compute = median(runs[0].iter().map(|r| r.compute).collect());
        eprintln!(
            "model: decode-and-multiply ns per dense byte at levels {:?}: {:?} (lossless pass {:.1} ms; medians of {ROUNDS} runs of {PASSES} passes)",
            opts.levels,
            c.per_dense_byte
                .iter()
                .map(|x| (x * 1e12).round() / 1e3)
                .collect::<Vec<_>>(),
            lossless_compute * 1e3
        );
        eprintln!(
            "model: {:.1} µs a tile neither waiting nor computing",
            other * 1e6,
        );
        // Paced: the sparsest level but one on a constant 0.1 GB/s link, where the client
        // waits for every tile; what its decode-and-multiply takes beyond the unlimited
        // link's is the cost of being woken for each tile.
        let li = opts.levels.len().saturating_sub(2);
        let level = opts.levels[li];
        let w = calibrate(
            &host,
            Some(Trace::constant(0.1)?),
            Policy::Fixed(level),
            period,
            6,
        )?;
        let fitted = c.per_dense_byte[li] * w.dense;
        let wake = per_tile(w.compute - fitted).max(0.0);
        eprintln!(
            "model: {:.1} µs more decode-and-multiply a tile when woken for it (fixed {level} at a constant 0.1 GB/s: {:.1} ms a pass against {:.1} on an unlimited link)",
            wake * 1e6,
            w.compute * 1e3,
            fitted * 1e3
        );
        let mut costs = ModelOptions {
            policy: Policy::Lossless,
            period: PERIOD,
            duration: PERIOD * f64::from(PASSES - 1),
            window: RunOptions::default().window,
            round_trip: ROUND_TRIP,
            frame_seconds: vec![0.0; opts.levels.len()],
            other_seconds: other,
            wake_seconds: wake,
            pass_seconds: 0.0,
            compute: c,
            schedule: runs[0][0].schedule.clone(),
            spend: Spend::Uniform,
        };
        // What the client waits on an unlimited link beyond the model without receive
        // costs is its receiving: at each level, the median over the periodic runs of
        // what a pass waits there. Back to back the same client waits less (no idle to
        // wake from): what a lossless pass waits periodically beyond what it waits back to
        // back is charged once a pass after an idle (`pass_seconds`, at most the least any
        // level waits), the rest a tile at the tile's level (`frame_seconds`). A line in
        // the payload bytes, fitted over the levels, was tried instead and was 15% high at
        // lossless (waiting per byte falls as tiles grow sparser, and not linearly).
        let unlimited = Trace::constant(UNLIMITED_GBPS)?;
        let excess = |r: &Calibration, policy: Policy, period: f64| {
            let o = ModelOptions {
                policy,
                period,
                ..costs.clone()
            };
            simulate(&host.manifest, &unlimited, &o)
                .map(|p| r.waiting - p.stall_seconds / f64::from(p.passes.max(1)))
        };
        let mut waits = Vec::new(); // a pass's receiving at each level
        for (i, rs) in runs.iter().enumerate() {
            let v = rs
                .iter()
                .map(|r| excess(r, policy_of(i), PERIOD))
                .collect::<Result<Vec<_>, _>>()?;
            waits.push(median(v).max(0.0));
        }
        // Back to back: a period far shorter than a pass makes every modelled pass start
        // late, as the runs' passes do.
        let back_wait = median(
            back.iter()
                .map(|r| excess(r, Policy::Lossless, 1e-6))
                .collect::<Result<_, _>>()?,
        )
        .max(0.0);
        let least = waits.iter().copied().fold(f64::INFINITY, f64::min);
        let pass = (waits[0] - back_wait).clamp(0.0, least);
        eprintln!(
            "model: receiving {:?} ms a pass at levels {:?} on an unlimited link (medians of {ROUNDS} periodic runs), lossless back to back {:.2} ms ({:?}): {:.2} ms at the start of a pass after an idle, the rest a tile",
            waits.iter().map(|x| (x * 1e5).round() / 100.0).collect::<Vec<_>>(),
            opts.levels,
            back_wait * 1e3,
            back.iter().map(|r| (r.waiting * 1e5).round() / 100.0).collect::<Vec<_>>(),
            pass * 1e3
        );
        costs.frame_seconds = waits.iter().map(|w| per_tile(w - pass)).collect();
        costs.pass_seconds = pass;
        costs
    };
    let alt = "2 GB/s and 0.1 GB/s, alternating every 2 s";
    // (label, link, trace, policy, spend, repeats). The constant link's stall share is a
    // few ms of a 50 ms pass, which the VM's slow stretches move by half between identical
    // runs: it is run three times and the median run is its row.
    let cases: Vec<(String, &str, Trace, Policy, Spend, usize)> = vec![
        (
            "adaptive".into(),
            alt,
            alternating(seconds),
            Policy::Adaptive { max: None },
            Spend::Uniform,
            1,
        ),
        (
            "adaptive, by error".into(),
            alt,
            alternating(seconds),
            Policy::Adaptive { max: None },
            Spend::ByError,
            1,
        ),
        (
            "lossless".into(),
            alt,
            alternating(seconds),
            Policy::Lossless,
            Spend::Uniform,
            1,
        ),
        (
            "fixed:0.25".into(),
            alt,
            alternating(seconds),
            Policy::Fixed(0.25),
            Spend::Uniform,
            1,
        ),
        (
            "fixed:0.5".into(),
            alt,
            alternating(seconds),
            Policy::Fixed(0.5),
            Spend::Uniform,
            1,
        ),
        (
            "fixed:0.7".into(),
            alt,
            alternating(seconds),
            Policy::Fixed(0.7),
            Spend::Uniform,
            1,
        ),
        (
            "adaptive".into(),
            "constant 2 GB/s",
            Trace::constant(2.0)?,
            Policy::Adaptive { max: None },
            Spend::Uniform,
            3,
        ),
    ];
    let mut rows = Vec::new();
    for (label, link, trace, policy, spend, repeats) in cases {
        let mut runs = Vec::new();
        for _ in 0..repeats {
            let server = Server::bind(
                "127.0.0.1:0".parse()?,
                false,
                host.clone(),
                Pacer::new(Some(trace.clone())),
            )?
            .spawn();
            let mut client = Client::connect(server.addr(), ClientOptions::default())?;
            let o = RunOptions {
                policy,
                period: Some(Duration::from_secs_f64(PERIOD)),
                duration: Some(Duration::from_secs_f64(seconds)),
                reference: Some(model.clone()),
                spend,
                ..RunOptions::default()
            };
            let r = run(&mut client, &o, &mut |_| {})?;
            server.stop();
            eprintln!(
                "{label:<10} {link:<45} passes {:>4} deadlines {:>6.1}% stall {:>5.1}% bytes/pass {:>10} cosine {:.5}",
                r.passes,
                100.0 * r.deadline_hit_fraction.unwrap_or(0.0),
                100.0 * r.stall_fraction,
                r.bytes_sent / u64::from(r.passes.max(1)),
                r.mean_cosine.unwrap_or(f64::NAN)
            );
            runs.push(r);
        }
        let stalls: Vec<f64> = runs.iter().map(|r| r.stall_fraction).collect();
        runs.sort_by(|a, b| a.stall_fraction.total_cmp(&b.stall_fraction));
        let r = runs.swap_remove(runs.len() / 2);
        let model_opts = ModelOptions {
            policy,
            duration: seconds,
            spend,
            schedule: schedule_of(&host, &r),
            ..costs.clone()
        };
        let predicted = simulate(&host.manifest, &trace, &model_opts)?;
        let per_pass = |x: f64, n: u32| 1e3 * x / f64::from(n.max(1));
        let busy: f64 = r.pass_reports.iter().map(|p| p.end - p.start).sum();
        let compute: f64 = r.pass_reports.iter().map(|p| p.compute_seconds).sum();
        eprintln!(
            "           model: passes {:>4} deadlines {:>6.1}% stall {:>5.1}%; ms a pass, measured / model: running {:.1} / {:.1}, waiting {:.1} / {:.1}, compute {:.1} / {:.1}",
            predicted.passes,
            100.0 * predicted.deadline_hit_fraction,
            100.0 * predicted.stall_fraction,
            per_pass(busy, r.passes),
            per_pass(predicted.busy_seconds, predicted.passes),
            per_pass(r.stall_seconds, r.passes),
            per_pass(predicted.stall_seconds, predicted.passes),
            per_pass(compute, r.passes),
            per_pass(predicted.compute_seconds, predicted.passes),
        );
        let embedding = embedding_quality(&host, &model, &tokens, &reference, &r, EVERY)?;
        eprintln!(
            "           MiniLM embeddings of {} sampled passes ({} sentences): mean cosine {:.5}, min {:.5}",
            embedding.passes, embedding.sentences, embedding.mean_cosine, embedding.min_cosine
        );
        rows.push(Row {
            label,
            link: link.to_string(),
            report: r,
            model: predicted,
            embedding,
            repeats: stalls,
        });
    }
    let cpu = sparsewire_benches::cpu_model();
    let mut md = String::new();
    md.push_str("# The link on loopback (`cargo xtask link`)\n\n");
    md.push_str(&format!(
        "Generated by `cargo xtask link --seconds {seconds}` on {cpu} (2 cores; host and client in one process, \
         each pass's tiles over one TCP connection on loopback, the link emulated by the host's pacer). \
         MiniLM-L6 bf16 ({} bytes dense a pass), {} tiles, ladder {:?} (magnitude, unstructured, per tile), \
         coded once at start-up in {:.2} s ({} bytes held). A pass multiplies every weight matrix once \
         (`W x`, the executor's fixed input) and is due 200 ms after it starts. Embedding cosine: every {EVERY}th pass's \
         weights as received (each tile at the level it was sent at) run as MiniLM on that pass's four evaluation \
         sentences (pass p: sentences 4p..4p+4 of sparsewire-eval's 218, cycling), against the dense model's \
         embeddings; mean and worst sentence. Layer-output cosine: each layer's `W x` against the dense weights', \
         averaged over layers and passes.\n\n",
        rows[0].report.dense_bytes / u64::from(rows[0].report.passes.max(1)),
        host.manifest.tensors.iter().filter(|t| t.sparsifiable).map(|t| t.tiles).sum::<u32>(),
        host.manifest.levels,
        host.prepare_seconds,
        host.held_bytes(),
    ));
    md.push_str("| policy | link | passes | deadlines met | stall | bytes a pass | mean sparsity | embedding cosine (mean / min) | layer-output cosine | rel. error | model: deadlines met | model: stall |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        let p = &r.report;
        let lv: Vec<f32> = p.levels.iter().flatten().copied().collect();
        md.push_str(&format!(
            "| {} | {} | {} | {:.1}% | {:.1}% | {} | {:.3} | {:.5} / {:.5} | {:.5} | {:.4} | {:.1}% | {:.1}% |\n",
            r.label,
            r.link,
            p.passes,
            100.0 * p.deadline_hit_fraction.unwrap_or(0.0),
            100.0 * p.stall_fraction,
            p.bytes_sent / u64::from(p.passes.max(1)),
            lv.iter().sum::<f32>() / lv.len().max(1) as f32,
            r.embedding.mean_cosine,
            r.embedding.min_cosine,
            p.mean_cosine.unwrap_or(f64::NAN),
            p.mean_rel_error,
            100.0 * r.model.deadline_hit_fraction,
            100.0 * r.model.stall_fraction,
        ));
    }
    let adaptive = &rows[0].report;
    let hit = |r: &RunReport| r.deadline_hit_fraction.unwrap_or(0.0);
    let best_fixed = rows[2..6]
        .iter()
        .filter(|r| hit(&r.report) >= 0.95)
        .max_by(|a, b| a.embedding.mean_cosine.total_cmp(&b.embedding.mean_cosine));
    let constant = &rows[6].report;
    let const_level = {
        let lv: Vec<f32> = constant.levels.iter().flatten().copied().collect();
        lv.iter().sum::<f32>() / lv.len().max(1) as f32
    };
    let yes = |b: bool| if b { "met" } else { "missed" };
    md.push_str("\n## Targets\n\n");
    md.push_str(&format!(
        "- Adaptive meets >= 95% of the deadlines on the alternating link: {:.1}%, {}.\n",
        100.0 * hit(adaptive),
        yes(hit(adaptive) >= 0.95)
    ));
    match best_fixed {
        Some(b) => md.push_str(&format!(
            "- Its mean embedding cosine is >= that of the best fixed level meeting >= 95% ({}: {:.5}): {:.5}, {}.\n",
            b.label,
            b.embedding.mean_cosine,
            rows[0].embedding.mean_cosine,
            yes(rows[0].embedding.mean_cosine >= b.embedding.mean_cosine)
        )),
        None => md.push_str("- No fixed level met >= 95% of the deadlines.\n"),
    }
    md.push_str(&format!(
        "- Spending the budget by error (`run --spend by-error`: a level per tensor where the host's measured error per byte saved is lowest) instead of uniformly: {:.1}% of the deadlines, embedding cosine {:.5} against {:.5}.\n",
        100.0 * hit(&rows[1].report),
        rows[1].embedding.mean_cosine,
        rows[0].embedding.mean_cosine
    ));
    md.push_str(&format!(
        "- On a constant 2 GB/s link adaptive sends lossless or within one ladder step (mean sparsity {const_level:.3}) and meets its deadlines ({:.1}%): {}.\n",
        100.0 * hit(constant),
        yes(const_level <= 0.25 && hit(constant) >= 0.95)
    ));
    // Model against measured: relative error of deadline hits and of stall time.
    let rel = |m: f64, x: f64| {
        if x.abs() > 1e-9 {
            (m - x).abs() / x.abs()
        } else {
            m.abs()
        }
    };
    let worst_hit = rows
        .iter()
        .map(|r| rel(r.model.deadline_hit_fraction, hit(&r.report)))
        .fold(0f64, f64::max);
    let worst_stall = rows
        .iter()
        .map(|r| rel(r.model.stall_fraction, r.report.stall_fraction))
        .fold(0f64, f64::max);
    md.push_str(&format!(
        "- The timing model (`sparsewire_link::model`: the same controller and meter on modelled clocks; client decode-and-multiply time {} ns per dense byte at levels {:?}, from runs at each level on an unlimited link with the cases' period; {} µs to take an answer off the socket at those levels, from what the same runs wait, less the wake-up below; {:.1} µs a tile neither waiting nor computing, from the runs at each level; {:.1} µs more decode-and-multiply for a tile the client was woken for, from a short run at a constant 0.1 GB/s; {:.2} ms more waiting at the start of a pass after an idle, what the lossless runs wait beyond lossless runs back to back; each cost the median of {ROUNDS} interleaved runs of {PASSES} passes, the first left out, as the machine's speed changes for seconds at a time; {} µs round trip) predicts deadline hits within 15% of `run` on every case (worst {:.1}%) and the stall share within 15% (worst {:.1}%): {}.\n",
        costs
            .compute
            .per_dense_byte
            .iter()
            .map(|x| format!("{:.3}", x * 1e9))
            .collect::<Vec<_>>()
            .join(" / "),
        host.manifest.levels,
        costs
            .frame_seconds
            .iter()
            .map(|x| format!("{:.1}", x * 1e6))
            .collect::<Vec<_>>()
            .join(" / "),
        costs.other_seconds * 1e6,
        costs.wake_seconds * 1e6,
        costs.pass_seconds * 1e3,
        ROUND_TRIP * 1e6,
        100.0 * worst_hit,
        100.0 * worst_stall,
        yes(worst_hit <= 0.15 && worst_stall <= 0.15)
    ));
    for r in rows.iter().filter(|r| r.repeats.len() > 1) {
        md.push_str(&format!(
            "- {} on the {} link ran {} times (stall share {}), the median run is its row: a stall of a few ms a pass moves by as much between identical runs when the VM slows for seconds at a time.\n",
            r.label,
            r.link,
            r.repeats.len(),
            r.repeats
                .iter()
                .map(|x| format!("{:.1}%", 100.0 * x))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    std::fs::write(root.join("docs/LINK.md"), md)?;
    // Per run: the report's totals, and per pass one compact row (not every layer).
    let runs: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let p = &r.report;
            let passes: Vec<serde_json::Value> = p
                .pass_reports
                .iter()
                .map(|q| {
                    let n = q.levels.len().max(1) as f64;
                    serde_json::json!([
                        q.start,
                        q.end,
                        q.hit,
                        q.bytes,
                        q.levels.iter().map(|l| f64::from(*l)).sum::<f64>() / n,
                        q.cosine.as_ref().map(|c| c.iter().sum::<f64>() / c.len().max(1) as f64),
                        q.bandwidth_gbps,
                    ])
                })
                .collect();
            serde_json::json!({
                "label": r.label,
                "link": r.link,
                "policy": p.policy,
                "seconds": p.seconds,
                "passes": p.passes,
                "period_ms": p.period_ms,
                "deadline_hit_fraction": p.deadline_hit_fraction,
                "stall_fraction": p.stall_fraction,
                "bytes_sent": p.bytes_sent,
                "dense_bytes": p.dense_bytes,
                "layer_output_cosine": p.mean_cosine,
                "model": r.model,
                "embedding_cosine": { "mean": r.embedding.mean_cosine, "min": r.embedding.min_cosine, "passes": r.embedding.passes, "sentences": r.embedding.sentences },
                "mean_rel_error": p.mean_rel_error,
                "retries": p.retries,
                "reconnects": p.reconnects,
                "pass_columns": ["start_s", "end_s", "hit", "bytes", "mean_sparsity", "mean_cosine", "bandwidth_gbps"],
                "pass_rows": passes,
            })
        })
        .collect();
    std::fs::write(
        root.join("docs/link.json"),
        serde_json::to_string(
            &serde_json::json!({ "cpu": cpu, "seconds": seconds, "runs": runs }),
        )?,
    )?;
    eprintln!("wrote docs/LINK.md and docs/link.json");
    Ok(())
}
