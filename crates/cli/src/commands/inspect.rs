//! `sparsewire inspect`.

use crate::args::Result;
use crate::output::{print_inspect, print_json};
use sparsewire_stream::report::inspect;
use sparsewire_stream::{FileSource, Reader};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A .swire stream.
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

pub fn run(a: Args) -> Result<()> {
    let src = FileSource::open(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let reader = Reader::new(src).map_err(|e| format!("{}: {e}", a.file.display()))?;
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
