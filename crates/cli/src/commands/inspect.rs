//! `sparsewire inspect`.

use crate::args::Result;
use crate::output::{print_inspect, print_json};
use sparsewire_pipeline::checkpoint::swire_shards;
use sparsewire_stream::report::{inspect, InspectReport};
use sparsewire_stream::{FileSource, Reader};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A .swire stream, or a folder of them (as `compress DIR` writes): each shard in turn.
    file: PathBuf,
    /// Also decode every tensor for the order-0 entropy bound of each plane (reads the
    /// whole stream; without it only the header is read).
    #[arg(long)]
    entropy: bool,
    /// Print a JSON report on stdout.
    #[arg(long, conflicts_with = "header_json")]
    json: bool,
    /// Print the stream's header as JSON (every field, every tile; reads back to the same
    /// header: sparsewire_metadata::Header::from_json).
    #[arg(long)]
    header_json: bool,
}

fn open(path: &Path) -> Result<Reader<FileSource>> {
    let src = FileSource::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Reader::new(src).map_err(|e| format!("{}: {e}", path.display()))?)
}

pub fn run(a: Args) -> Result<()> {
    if let Some(dir) = sparsewire_pipeline::checkpoint::model_dir(&a.file) {
        return run_dir(&a, &dir);
    }
    let reader = open(&a.file)?;
    if a.header_json {
        println!("{}", reader.header().to_json());
        return Ok(());
    }
    let report = inspect(&reader, a.entropy)?;
    if a.json {
        print_json(&report)
    } else {
        print_inspect(&report);
        Ok(())
    }
}

/// One shard of a folder's `--json` report.
#[derive(serde::Serialize)]
struct Shard {
    file: String,
    #[serde(flatten)]
    report: InspectReport,
}

fn run_dir(a: &Args, dir: &Path) -> Result<()> {
    if a.header_json {
        return Err("--header-json reads one stream: give one of the folder's .swire files".into());
    }
    let (shards, _) = swire_shards(dir)?;
    let mut reports = Vec::with_capacity(shards.len());
    for s in &shards {
        let path = dir.join(s);
        let report =
            inspect(&open(&path)?, a.entropy).map_err(|e| format!("{}: {e}", path.display()))?;
        reports.push(Shard {
            file: s.clone(),
            report,
        });
    }
    if a.json {
        return print_json(&serde_json::json!({ "folder": dir, "shards": reports }));
    }
    for s in &reports {
        println!("== {}", s.file);
        print_inspect(&s.report);
    }
    Ok(())
}
