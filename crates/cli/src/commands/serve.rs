//! `sparsewire serve`.

use crate::args::Result;
use sparsewire_link::host::{HostModel, HostOptions};
use sparsewire_link::pace::{Pacer, Trace};
use sparsewire_link::server::Server;
use sparsewire_link::transport::Endpoint;
use sparsewire_metadata::{Criterion, Pattern};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The model: .safetensors or .npy (every tile ranked and coded at every level), or a
    /// .swire, served from its stored tiles: each row block of the stream as stored is the
    /// tile's lossless level (no second encode), the sparser levels coded from the decoded
    /// values; a tensor stored sparsified is sent as stored at every level.
    model: PathBuf,
    /// Where to listen: HOST:PORT (TCP; a non-loopback address needs --allow-remote), or
    /// unix:PATH, a Unix socket for a client on the same machine (never replaces a file
    /// that is not a socket; one left by a host that was killed is replaced).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Serve on a non-loopback address (the model is then readable by other machines).
    #[arg(long)]
    allow_remote: bool,
    /// Emulate a link of this many GB/s (1e9 bytes) on the sender (a token bucket).
    #[arg(long, conflicts_with = "link_trace", value_parser = crate::args::positive)]
    link_gbps: Option<f64>,
    /// Emulate a varying link: a file of `seconds gbps` lines (the rate from that second
    /// on; the last holds).
    #[arg(long)]
    link_trace: Option<PathBuf>,
    /// The sparsity ladder, comma-separated, starting with 0 (lossless).
    #[arg(long, default_value = "0,0.25,0.5,0.7,0.85", value_delimiter = ',')]
    levels: Vec<f32>,
    /// How each tile's elements are ranked: magnitude or predictable.
    #[arg(long, default_value = "magnitude")]
    criterion: Criterion,
    /// Pattern of what is kept: unstructured, row, N:M, block:RxC.
    #[arg(long, default_value = "unstructured")]
    pattern: Pattern,
}

/// The link emulation of `--link-gbps` / `--link-trace`.
pub fn trace(gbps: Option<f64>, file: Option<&PathBuf>) -> Result<Option<Trace>> {
    Ok(match (gbps, file) {
        (Some(g), _) => Some(Trace::constant(g)?),
        (_, Some(f)) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            Some(Trace::parse(&text).map_err(|e| format!("{}: {e}", f.display()))?)
        }
        _ => None,
    })
}

pub fn run(a: Args) -> Result<()> {
    let pacer = Pacer::new(trace(a.link_gbps, a.link_trace.as_ref())?);
    let opts = HostOptions {
        levels: a.levels,
        criterion: a.criterion,
        pattern: a.pattern,
        ..HostOptions::default()
    };
    let swire = a
        .model
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("swire"));
    let model = if swire {
        let bytes = std::fs::read(&a.model).map_err(|e| format!("{}: {e}", a.model.display()))?;
        let reader = sparsewire_stream::Reader::new(&bytes[..])
            .map_err(|e| format!("{}: {e}", a.model.display()))?;
        eprintln!(
            "serving the stored tiles; ranking and coding the {} sparser levels ...",
            opts.levels.len().saturating_sub(1)
        );
        Arc::new(HostModel::from_stream(&reader, &opts)?)
    } else {
        let file = sparsewire_formats::input::InputFile::open(&a.model)
            .and_then(|f| f.read_all())
            .map_err(|e| format!("{}: {e}", a.model.display()))?;
        eprintln!(
            "ranking and coding every tile at {} levels ...",
            opts.levels.len()
        );
        Arc::new(HostModel::new(&file, &opts)?)
    };
    let tiles: u32 = model.manifest.tensors.iter().map(|t| t.tiles).sum();
    let listen: Endpoint = a.listen.parse()?;
    let server = Server::bind_endpoint(&listen, a.allow_remote, model.clone(), pacer)?;
    let link = match (a.link_gbps, &a.link_trace) {
        (Some(g), _) => format!("{g} GB/s"),
        (_, Some(f)) => format!("trace {}", f.display()),
        _ => "unlimited".into(),
    };
    println!(
        "serving {} ({} tensors, {tiles} tiles x {} levels, {} bytes held, prepared in {:.2} s) on {}; link: {link}",
        a.model.display(),
        model.manifest.tensors.len(),
        model.manifest.levels.len(),
        model.held_bytes(),
        model.prepare_seconds,
        server.local_addr(),
    );
    server.serve()?;
    Ok(())
}
