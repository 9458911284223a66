//! `sparsewire`: the command-line front end. It parses arguments (clap), shows progress on
//! stderr (indicatif, hidden when stderr is not a terminal), installs the tracing
//! subscriber (`-v`, `-vv`), prints tables or `--json` reports on stdout, and turns errors
//! into one message and a non-zero exit. The work is in the library crates; each
//! subcommand is a file in `commands/`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod args;
mod commands;
mod output;
mod plot;

#[derive(Parser)]
#[command(
    name = "sparsewire",
    version,
    about = "Make neural-network tensors small before they cross a slow link, and rebuild them on the other side.",
    long_about = "Make neural-network tensors small before they cross a slow link, and rebuild them on the other side.\n\n\
    sparsewire compresses safetensors and .npy files into .swire streams whose tiles each decode on their own. \
    By default the codec is lossless and bit-exact; `compress --sparsity 0.5` (and friends) \
    drops the least important weights first and stores only what is kept, with a compact mask.\n\n\
    Start with `sparsewire demo`, which needs no files.",
    after_help = "Examples:\n  sparsewire demo\n  sparsewire compress model.safetensors -o model.swire\n  sparsewire compress model.safetensors -o model.swire --sparsity 0.5 --criterion wanda --calibration acts.safetensors\n  sparsewire inspect model.swire\n  sparsewire decompress model.swire -o restored.safetensors\n  sparsewire decompress model.swire -o sparse.safetensors --layout csr\n  sparsewire bench model.safetensors --json\n  sparsewire serve model.safetensors --link-gbps 0.1 &  sparsewire run --policy adaptive --period-ms 200"
)]
struct Cli {
    /// More logging on stderr (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress a .safetensors or .npy file into a .swire stream: lossless and bit-exact by
    /// default; sparsified with --sparsity, --pattern N:M, --target-ratio/--target-bytes or
    /// --max-error.
    Compress(commands::compress::Args),
    /// Decode a .swire stream back to .safetensors (or .npy for a single tensor): bit for bit
    /// for lossless streams; zero-filled or rebuilt for sparsified ones; or sparse tensors
    /// as CSR/CSC/COO arrays (--layout).
    Decompress(commands::decompress::Args),
    /// Show what a .swire stream holds: per tensor sizes, codecs per plane, entropy bounds.
    Inspect(commands::inspect::Args),
    /// Measure encode/decode speed and ratio on a .safetensors/.npy file.
    Bench(commands::bench::Args),
    /// Multiply by a compressed weight, tile by tile: y = W x, rebuilding W's tiles on
    /// demand into a bounded buffer, decoding overlapped with the multiply; with
    /// --compare-dense, against dense baselines on the original weights.
    Matmul(commands::matmul::Args),
    /// Model an accelerator (bus, local memory, reconstruction engine, matrix unit) running
    /// the real scheduler on a stream's tensors: time, stalls, bus bytes, buffer use and
    /// speedup over sending dense weights; sweeps; --calibrate for this machine.
    Simulate(commands::simulate::Args),
    /// Host side of the link: hold a model and answer tile requests over TCP, each tile at
    /// the sparsity level asked for (ranked once, coded once at start-up); --link-gbps or
    /// --link-trace emulate a slower or varying link.
    Serve(commands::serve::Args),
    /// Accelerator side of the link: run passes of a schedule of multiplies, fetching
    /// tiles from `serve` ahead of use, each at the level the policy picks (adaptive: to
    /// meet each pass's deadline on the measured link), multiplying each as it arrives.
    Run(commands::run::Args),
    /// Run the whole job on a built-in set of weight-like tensors: compress, inspect,
    /// decompress, verify; then sparsify 50% and show what it costs.
    Demo(commands::demo::Args),
    /// Train the digits CNN with sparsity in the loop (masks in the forward pass, gradual
    /// pruning, activation sparsity, regularizers) from a TOML config; compare it with the
    /// dense model and with post-hoc pruning in the same run; write the model as a .swire.
    Train(commands::train::Args),
}

fn main() -> ExitCode {
    // SIGINT/SIGTERM/SIGHUP: remove any named temporary output before dying (unnamed ones,
    // the usual case on Linux, vanish with the process, even on SIGKILL).
    let _ = ctrlc::set_handler(|| {
        sparsewire_formats::output::remove_pending();
        std::process::exit(130);
    });
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    let res = match cli.command {
        Command::Compress(a) => commands::compress::run(a),
        Command::Decompress(a) => commands::decompress::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Demo(a) => commands::demo::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Matmul(a) => commands::matmul::run(a),
        Command::Simulate(a) => commands::simulate::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Run(a) => commands::run::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
