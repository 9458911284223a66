//! `sparsewire run`.

use crate::args::Result;
use crate::output::print_json;
use sparsewire_link::client::{Client, ClientOptions};
use sparsewire_link::run::{run as run_link, PassReport, Policy, RunOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The host (`sparsewire serve`) to fetch tiles from: HOST:PORT, or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:7878")]
    connect: String,
    /// The multiplies of one pass, in order: `all` (every float matrix the host serves, in
    /// its order) or a file with one tensor name per line.
    #[arg(long, default_value = "all")]
    schedule: String,
    /// lossless, fixed:S (one of the host's levels), or `adaptive[:MAX]` (the controller,
    /// never sparser than MAX: against each pass's deadline with --period-ms, else within
    /// --stall-budget).
    #[arg(long, default_value = "adaptive")]
    policy: Policy,
    /// A pass is due every P ms (its deadline); without it passes run back to back.
    #[arg(long, value_parser = crate::args::positive)]
    period_ms: Option<f64>,
    /// How adaptive spends what a pass can afford: uniform (one level for every tile
    /// left) or by-error (a level per tensor, where the host's measured error per byte
    /// saved is lowest).
    #[arg(long, default_value = "uniform")]
    spend: sparsewire_link::controller::Spend,
    /// Without --period-ms: the share of each pass adaptive may spend waiting for tiles.
    #[arg(long, default_value_t = 0.1, value_parser = stall_budget)]
    stall_budget: f64,
    /// Stop after N passes (default 10 when --duration is not given).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    passes: Option<u32>,
    /// Stop after S seconds.
    #[arg(long, value_parser = crate::args::positive)]
    duration: Option<f64>,
    /// Tiles requested ahead of the multiply.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    window: u32,
    /// A tile not arrived after this many ms is a silent host (retried).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Retries of one tile, each after a reconnect.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,
    /// The dense model (.safetensors), to measure each layer's output against.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Draw the run's timeline (link rate, sparsity sent, waiting and missed deadlines per
    /// pass): SVG, or PNG when the name ends in .png.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

fn stall_budget(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected a share in [0, 1)")),
    }
}

pub fn run(a: Args) -> Result<()> {
    let schedule = if a.schedule == "all" {
        vec![]
    } else {
        std::fs::read_to_string(&a.schedule)
            .map_err(|e| format!("{}: {e}", a.schedule))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    let reference = match &a.reference {
        Some(p) => Some(
            sparsewire_formats::input::InputFile::open(p)
                .and_then(|f| f.read_all())
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let copts = ClientOptions {
        timeout: Duration::from_millis(a.timeout_ms),
        ..ClientOptions::default()
    };
    let mut client = Client::connect_to(a.connect.parse()?, copts)?;
    let opts = RunOptions {
        policy: a.policy,
        period: a.period_ms.map(|p| Duration::from_secs_f64(p / 1e3)),
        passes: a.passes,
        duration: a.duration.map(Duration::from_secs_f64),
        schedule,
        window: a.window as usize,
        retries: a.retries,
        reference,
        stall_budget: a.stall_budget,
        spend: a.spend,
    };
    let json = a.json;
    let mut show = |p: &PassReport| {
        if json {
            return;
        }
        let mean = p.levels.iter().sum::<f32>() / p.levels.len().max(1) as f32;
        eprintln!(
            "pass {:>4} {:>8.3}-{:>8.3} s {} {:>10} bytes, stall {:>7.1} ms, compute {:>6.1} ms, mean sparsity {:.2}{}{}",
            p.pass,
            p.start,
            p.end,
            match p.hit {
                Some(true) => "hit ",
                Some(false) => "MISS",
                None => "    ",
            },
            p.bytes,
            p.stall_seconds * 1e3,
            p.compute_seconds * 1e3,
            mean,
            p.bandwidth_gbps
                .map_or(String::new(), |b| format!(", link {b:.3} GB/s")),
            p.cosine.as_ref().map_or(String::new(), |c| format!(
                ", cosine {:.5}",
                c.iter().sum::<f64>() / c.len().max(1) as f64
            )),
        );
    };
    let r = run_link(&mut client, &opts, &mut show)?;
    if let Some(p) = &a.plot {
        crate::plot::link_timeline(p, &r)?;
    }
    if json {
        return print_json(&r);
    }
    println!(
        "{} passes in {:.2} s ({}): {} bytes sent of {} dense ({:.1}%), stall {:.1}% of the time{}{}, mean rel. error {:.4}, {} retries, {} reconnects",
        r.passes,
        r.seconds,
        r.policy,
        r.bytes_sent,
        r.dense_bytes,
        100.0 * r.bytes_sent as f64 / r.dense_bytes.max(1) as f64,
        100.0 * r.stall_fraction,
        r.deadline_hit_fraction
            .map_or(String::new(), |h| format!(", deadlines met {:.1}%", 100.0 * h)),
        r.mean_cosine
            .map_or(String::new(), |c| format!(", mean cosine {c:.5}")),
        r.mean_rel_error,
        r.retries,
        r.reconnects
    );
    Ok(())
}
