//! The host side: a listener (TCP, or a Unix socket: [`crate::transport`]) that answers
//! `Hello` with the manifest and each `GetTile` with its payload, paced by the emulated
//! link.
//!
//! Plain threads, one per connection, not an async runtime: a host serves a handful of
//! accelerator clients, each a pipelined stream of small requests answered in order, and
//! the sends are paced by sleeping; blocking I/O says that directly and adds no
//! dependency. Requests on one connection are answered in order (the client pipelines
//! them, so several are in flight); TCP's flow control is the back-pressure. A connection
//! that sends anything malformed is closed, and only that one; others go on.

use crate::frame::{
    write_frame, Frame, FrameError, Kind, TileRequest, MAX_PAYLOAD, OVERHEAD, PROTOCOL_VERSION,
};
use crate::host::HostModel;
use crate::pace::Pacer;
use crate::transport::{Endpoint, Listener, Stream};
use crate::LinkError;
use std::io::{BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters a host keeps (for tests and the CLI's summary).
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub tiles: AtomicU64,
    pub bytes: AtomicU64,
    pub bad_frames: AtomicU64,
}

/// A bound host, not yet serving.
pub struct Server {
    listener: Listener,
    model: Arc<HostModel>,
    pacer: Arc<Pacer>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

/// A host serving on its own thread; dropping it (or [`Handle::stop`]) stops it and
/// closes its connections.
pub struct Handle {
    endpoint: Endpoint,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Where the host listens; dials like a TCP address (`Client::connect`,
    /// `TcpStream::connect`) when it is one.
    pub fn addr(&self) -> Endpoint {
        self.endpoint.clone()
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Stops accepting, closes every connection, and waits for the accept loop.
    pub fn stop(mut self) {
        self.halt();
    }
    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Server {
    /// Binds the TCP address `addr`. A non-loopback address needs `allow_remote`.
    pub fn bind(
        addr: SocketAddr,
        allow_remote: bool,
        model: Arc<HostModel>,
        pacer: Pacer,
    ) -> Result<Server, LinkError> {
        Self::bind_endpoint(&Endpoint::Tcp(addr), allow_remote, model, pacer)
    }

    /// Binds `ep`: a TCP address (a non-loopback one needs `allow_remote`) or a Unix socket.
    pub fn bind_endpoint(
        ep: &Endpoint,
        allow_remote: bool,
        model: Arc<HostModel>,
        pacer: Pacer,
    ) -> Result<Server, LinkError> {
        Ok(Server {
            listener: Listener::bind(ep, allow_remote)?,
            model,
            pacer: Arc::new(pacer),
            stats: Arc::default(),
            stop: Arc::default(),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Endpoint {
        self.listener.endpoint()
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves on this thread until the process ends.
    pub fn serve(self) -> Result<(), LinkError> {
        self.accept_loop();
        Ok(())
    }

    /// Serves on a new thread.
    pub fn spawn(self) -> Handle {
        let endpoint = self.local_addr();
        let (stop, stats) = (self.stop.clone(), self.stats.clone());
        let thread = std::thread::spawn(move || self.accept_loop());
        Handle {
            endpoint,
            stop,
            stats,
            thread: Some(thread),
        }
    }

    fn accept_loop(self) {
        self.listener
            .set_nonblocking(true)
            .expect("a listener can be non-blocking");
        let mut conns = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((sock, peer)) => {
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    let (model, pacer, stats, stop) = (
                        self.model.clone(),
                        self.pacer.clone(),
                        self.stats.clone(),
                        self.stop.clone(),
                    );
                    conns.push(std::thread::spawn(move || {
                        if let Err(e) = connection(sock, &model, &pacer, &stats, &stop) {
                            tracing::info!(%peer, "connection closed: {e}");
                        }
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => tracing::warn!("accept: {e}"),
            }
            conns.retain(|c| !c.is_finished());
        }
        for c in conns {
            let _ = c.join();
        }
    }
}

/// Maps an I/O error to [`LinkError::Io`], saying what was being done.
fn io(what: &str) -> impl FnOnce(std::io::Error) -> LinkError {
    let what = what.to_string();
    move |source| LinkError::Io { what, source }
}

/// Requests read ahead of their answers on one connection: the client's window bounds
/// them in practice; past this the reader stops reading and TCP pushes back.
const READ_AHEAD: usize = 256;

/// Answers one client until it leaves, sends garbage, or the host stops.
///
/// A reader thread takes requests off the socket as they arrive and stamps them with the
/// pacer's clock; this thread answers them in order. The stamp is when the answer could
/// start on the emulated link: read here, after the previous answer's sleep and write, a
/// queued request would be stamped late by that sleep's overshoot and the write, and the
/// link would idle for both between back-to-back frames (at 0.1 GB/s and ~36 kB frames,
/// a fifth of its rate).
fn connection(
    sock: Stream,
    model: &HostModel,
    pacer: &Pacer,
    stats: &Stats,
    stop: &AtomicBool,
) -> Result<(), LinkError> {
    // A short timeout so that a stopped host notices; an idle client is not an error.
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(io("configuring the socket"))?;
    let mut reader = BufReader::new(sock.try_clone().map_err(io("cloning the socket"))?);
    let writer = BufWriter::new(sock);
    let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| loop {
            if stop.load(Ordering::SeqCst) || done.load(Ordering::SeqCst) {
                return;
            }
            match Frame::read_from(&mut reader, 1024) {
                Err(e) if e.is_timeout() => continue,
                r => {
                    let last = r.is_err();
                    if tx.send((pacer.now(), r)).is_err() || last {
                        return;
                    }
                }
            }
        });
        // `rx` is dropped when `answer` returns, so a reader blocked on a full queue
        // wakes and ends; one blocked on the socket ends at its read timeout.
        let r = answer(rx, writer, model, pacer, stats, stop);
        done.store(true, Ordering::SeqCst);
        r
    })
}

/// The answering half of [`connection`]: each request, stamped with the time it was read,
/// paced from that time and answered.
fn answer(
    requests: std::sync::mpsc::Receiver<(f64, Result<Frame, FrameError>)>,
    mut writer: BufWriter<Stream>,
    model: &HostModel,
    pacer: &Pacer,
    stats: &Stats,
    stop: &AtomicBool,
) -> Result<(), LinkError> {
    let mut hello = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (ready, f) = match requests.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            // The reader ended without a word: the host is stopping.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let f = match f {
            Ok(f) => f,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => {
                stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let reply = match (f.kind, hello) {
            (Kind::Hello, _) => {
                let v = f.payload.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
                if v != Some(PROTOCOL_VERSION) {
                    let msg = format!(
                        "protocol version {v:?} is not supported (this host speaks {PROTOCOL_VERSION})"
                    );
                    Frame::new(Kind::Error, f.id, msg.clone().into_bytes())
                        .write_to(&mut writer)
                        .ok();
                    writer.flush().ok();
                    return Err(LinkError::Protocol(msg));
                }
                hello = true;
                (Kind::Manifest, model.manifest_json())
            }
            (Kind::GetTile, true) => match TileRequest::from_payload(&f.payload) {
                Some(r) => match model.payload(r.tensor, r.tile, r.level) {
                    Ok(p) => {
                        stats.tiles.fetch_add(1, Ordering::Relaxed);
                        stats.bytes.fetch_add(p.len() as u64, Ordering::Relaxed);
                        (Kind::Tile, p)
                    }
                    Err(msg) => (Kind::Error, Arc::from(msg.into_bytes())),
                },
                None => {
                    stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                    return Err(LinkError::Protocol("a GetTile payload is 10 bytes".into()));
                }
            },
            (kind, _) => {
                stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                return Err(LinkError::Protocol(format!(
                    "unexpected {kind:?} frame{}",
                    if hello { "" } else { " before Hello" }
                )));
            }
        };
        let (kind, payload): (Kind, Arc<[u8]>) = reply;
        pacer.pace_from(ready, (OVERHEAD + payload.len()) as u64);
        write_frame(&mut writer, kind, f.id, &payload).map_err(io("sending"))?;
        writer.flush().map_err(io("sending"))?;
    }
}

/// The payload cap a client should read with: the largest payload plus slack.
pub fn payload_cap(model: &HostModel) -> u32 {
    let max = model
        .manifest
        .tensors
        .iter()
        .flat_map(|t| t.bytes.iter().flatten())
        .max()
        .copied()
        .unwrap_or(0);
    (max + 4096).min(u64::from(MAX_PAYLOAD)) as u32
}
