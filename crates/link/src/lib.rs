//! The link between the host and the accelerator, made real.
//!
//! Host side ([`server`]): a [`host::HostModel`] holds every tile of a model at every
//! level of a sparsity ladder (ranked once by an `se` criterion, coded once by `stream`),
//! and a [`server::Server`] (TCP or a Unix socket: [`transport`]) answers tile requests, paced by [`pace::Pacer`] to emulate
//! a slower or varying link ([`pace::Trace`]). Accelerator side ([`client`], [`run`]): a
//! [`client::Client`] pipelines requests over one connection; [`run::run`] executes a
//! schedule of multiplies pass after pass, asking for tiles ahead of use, choosing each
//! tile's level by policy (the [`controller::Controller`] for adaptive sparsity), and
//! multiplying each tile as it arrives through `accel`'s executor. The wire format is in
//! [`frame`].
//!
//! ```no_run
//! use sparsewire_link::{client::{Client, ClientOptions}, host::{HostModel, HostOptions},
//!     pace::{Pacer, Trace}, run::{run, RunOptions, Policy}, server::Server};
//! use std::{sync::Arc, time::Duration};
//! let model = sparsewire_formats::input::InputFile::open("model.safetensors".as_ref())?.read_all()?;
//! let host = Arc::new(HostModel::new(&model, &HostOptions::default())?);
//! let pacer = Pacer::new(Some(Trace::constant(0.1)?));          // a 0.1 GB/s link
//! let server = Server::bind("127.0.0.1:0".parse()?, false, host, pacer)?.spawn();
//! let mut client = Client::connect(server.addr(), ClientOptions::default())?;
//! let opts = RunOptions { policy: Policy::Adaptive { max: None },
//!     period: Some(Duration::from_millis(200)), passes: Some(5), ..RunOptions::default() };
//! let report = run(&mut client, &opts, &mut |_| {})?;
//! println!("deadlines met: {:?}", report.deadline_hit_fraction);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod controller;
pub mod frame;
pub mod fuzzing;
pub mod host;
pub mod model;
pub mod pace;
pub mod run;
pub mod server;
pub mod transport;

use std::time::Duration;

/// Everything that can go wrong on the link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("{0}")]
    Options(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("frame: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the host answered: {0}")]
    Host(String),
    #[error("no answer within {0:?}: the host went silent")]
    Timeout(Duration),
    #[error("{tile}: {source}")]
    Tile {
        tile: String,
        source: Box<LinkError>,
    },
    #[error("corrupt tile: {0}")]
    Corrupt(String),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: Box<LinkError> },
    #[error("not connected")]
    Disconnected,
    #[error("no request in flight")]
    NothingInFlight,
    #[error("coding a tile: {0}")]
    Stream(#[from] sparsewire_stream::StreamError),
    #[error("sparsifying a tile: {0}")]
    Sparsify(#[from] sparsewire_se::SparsifyError),
    #[error("tile: {0}")]
    Sparse(#[from] sparsewire_sparse::SparseError),
    #[error("tensor: {0}")]
    Format(#[from] sparsewire_formats::FormatError),
}
