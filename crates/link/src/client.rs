//! The accelerator side's connection: `Hello`, the manifest, then pipelined `GetTile`
//! requests answered in order.
//!
//! [`Client::send`] queues a request (the caller bounds how many are in flight: its
//! window) and [`Client::receive`] returns the oldest one's tile, checked: a frame that is
//! malformed, a checksum that fails, an `Error` from the host, a payload that is not the
//! requested tile's stream, or silence past the timeout are typed errors naming the tile.
//! On any of them the connection is dropped; [`Client::reconnect`] dials again (bounded
//! attempts with backoff) and re-sends what was in flight, so a restarted host is picked
//! up where the run was. Memory is bounded by the window: nothing is read ahead of a
//! request, and each frame's length is checked against the cap before it is allocated.

use crate::frame::{Frame, Kind, TileRequest, MAX_PAYLOAD, PROTOCOL_VERSION};
use crate::host::Manifest;
use crate::transport::{Endpoint, Stream};
use crate::LinkError;
use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

/// How a client talks to its host.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a tile may take before the host is deemed silent.
    pub timeout: Duration,
    /// Largest frame accepted.
    pub cap: u32,
    /// Dial attempts per (re)connect, with doubling backoff from 50 ms.
    pub connect_attempts: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            cap: MAX_PAYLOAD,
            connect_attempts: 8,
        }
    }
}

/// A tile as it arrived.
#[derive(Debug)]
pub struct Received {
    pub request: TileRequest,
    pub payload: Vec<u8>,
    /// When the request was sent and when its tile had arrived.
    pub sent: Instant,
    pub arrived: Instant,
}

struct Conn {
    reader: BufReader<Stream>,
    writer: BufWriter<Stream>,
}

/// A connection to a host.
pub struct Client {
    addr: Endpoint,
    opts: ClientOptions,
    manifest: Manifest,
    conn: Option<Conn>,
    next_id: u32,
    in_flight: VecDeque<(u32, TileRequest, Instant)>,
    /// Reconnections made.
    pub reconnects: u32,
}

/// Dials until a host answers `Hello` with a manifest that `accept` takes (bounded
/// attempts, doubling backoff from 50 ms).
fn dial(
    addr: &Endpoint,
    opts: &ClientOptions,
    accept: &dyn Fn(&Manifest) -> bool,
) -> Result<(Conn, Manifest), LinkError> {
    let mut wait = Duration::from_millis(50);
    let mut last = None;
    for attempt in 0..opts.connect_attempts.max(1) {
        if attempt > 0 {
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        let e = match Stream::connect(addr, opts.timeout) {
            Ok(sock) => match hello(sock, opts) {
                // A host that is going down or coming up may accept and then drop the
                // connection, and a damaged manifest is no answer: dial again. A host
                // that answers and refuses is final.
                Ok((c, m)) if accept(&m) => return Ok((c, m)),
                Ok(_) => LinkError::Protocol("the host is serving a different model".into()),
                Err(e @ LinkError::Host(_)) => return Err(e),
                Err(e) => e,
            },
            Err(e) => LinkError::Io {
                what: format!("connecting to {addr}"),
                source: e,
            },
        };
        last = Some(e);
    }
    Err(LinkError::GaveUp {
        attempts: opts.connect_attempts.max(1),
        last: Box::new(last.expect("at least one attempt")),
    })
}

fn hello(sock: Stream, opts: &ClientOptions) -> Result<(Conn, Manifest), LinkError> {
    let io = |what: &'static str| {
        move |source| LinkError::Io {
            what: what.into(),
            source,
        }
    };
    sock.set_read_timeout(Some(opts.timeout))
        .map_err(io("configuring the socket"))?;
    let mut conn = Conn {
        reader: BufReader::new(sock.try_clone().map_err(io("cloning the socket"))?),
        writer: BufWriter::new(sock),
    };
    Frame::new(Kind::Hello, 0, PROTOCOL_VERSION.to_le_bytes().to_vec())
        .write_to(&mut conn.writer)
        .and_then(|()| conn.writer.flush())
        .map_err(io("sending Hello"))?;
    let f = Frame::read_from(&mut conn.reader, opts.cap).map_err(LinkError::Frame)?;
    match f.kind {
        Kind::Manifest => {
            let m: Manifest = serde_json::from_slice(&f.payload)
                .map_err(|e| LinkError::Protocol(format!("the manifest is not valid: {e}")))?;
            Ok((conn, m))
        }
        Kind::Error => Err(LinkError::Host(
            String::from_utf8_lossy(&f.payload).into_owned(),
        )),
        k => Err(LinkError::Protocol(format!(
            "expected the manifest, got {k:?}"
        ))),
    }
}

impl Client {
    /// Connects to the host at the TCP address `addr` and reads its manifest.
    pub fn connect(addr: impl ToSocketAddrs, opts: ClientOptions) -> Result<Client, LinkError> {
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| LinkError::Io {
                what: "resolving the address".into(),
                source: e,
            })?
            .next()
            .ok_or_else(|| LinkError::Options("the address resolves to nothing".into()))?;
        Self::connect_to(Endpoint::Tcp(addr), opts)
    }

    /// Connects to the host at `ep` (TCP or a Unix socket) and reads its manifest.
    pub fn connect_to(ep: Endpoint, opts: ClientOptions) -> Result<Client, LinkError> {
        let (conn, manifest) = dial(&ep, &opts, &|_| true)?;
        Ok(Client {
            addr: ep,
            opts,
            manifest,
            conn: Some(conn),
            next_id: 1,
            in_flight: VecDeque::new(),
            reconnects: 0,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends a request (answered by a later [`Self::receive`], in order).
    pub fn send(&mut self, r: TileRequest) -> Result<(), LinkError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.in_flight.push_back((id, r, Instant::now()));
        let conn = self.conn.as_mut().ok_or(LinkError::Disconnected)?;
        let res = Frame::new(Kind::GetTile, id, r.to_payload())
            .write_to(&mut conn.writer)
            .and_then(|()| conn.writer.flush());
        if let Err(e) = res {
            self.conn = None;
            return Err(LinkError::Io {
                what: format!("requesting {}", self.describe(r)),
                source: e,
            });
        }
        Ok(())
    }

    fn describe(&self, r: TileRequest) -> String {
        let name = self
            .manifest
            .tensors
            .get(r.tensor as usize)
            .map_or("?", |t| t.name.as_str());
        format!("tensor {name:?} tile {} level {}", r.tile, r.level)
    }

    /// The oldest request's tile. On error the connection is dropped (the request stays
    /// in flight for [`Self::reconnect`] to re-send).
    pub fn receive(&mut self) -> Result<Received, LinkError> {
        let &(id, r, sent) = self.in_flight.front().ok_or(LinkError::NothingInFlight)?;
        let what = self.describe(r);
        let conn = self.conn.as_mut().ok_or(LinkError::Disconnected)?;
        let res = Frame::read_from(&mut conn.reader, self.opts.cap);
        let fail = |e: LinkError| LinkError::Tile {
            tile: what.clone(),
            source: Box::new(e),
        };
        let f = match res {
            Ok(f) => f,
            Err(e) => {
                self.conn = None;
                let e = if e.is_timeout() {
                    LinkError::Timeout(self.opts.timeout)
                } else {
                    LinkError::Frame(e)
                };
                return Err(fail(e));
            }
        };
        let bad = match f.kind {
            _ if f.id != id => Some(LinkError::Protocol(format!(
                "answer {} to request {id}",
                f.id
            ))),
            Kind::Tile => None,
            Kind::Error => Some(LinkError::Host(
                String::from_utf8_lossy(&f.payload).into_owned(),
            )),
            k => Some(LinkError::Protocol(format!("expected a tile, got {k:?}"))),
        };
        if let Some(e) = bad {
            self.conn = None;
            return Err(fail(e));
        }
        self.in_flight.pop_front();
        Ok(Received {
            request: r,
            payload: f.payload,
            sent,
            arrived: Instant::now(),
        })
    }

    /// Puts `r` back at the head of the requests in flight (a tile that arrived but could
    /// not be used), for [`Self::reconnect`] to send again first.
    pub fn requeue_front(&mut self, r: TileRequest) {
        self.in_flight.push_front((0, r, Instant::now()));
    }

    /// Dials again and re-sends every request in flight.
    pub fn reconnect(&mut self) -> Result<(), LinkError> {
        self.conn = None;
        let want = &self.manifest;
        let (conn, _) = dial(&self.addr, &self.opts, &|m| m == want)?;
        self.conn = Some(conn);
        self.reconnects += 1;
        let pending: Vec<TileRequest> = self.in_flight.drain(..).map(|(_, r, _)| r).collect();
        for r in pending {
            self.send(r)?;
        }
        Ok(())
    }
}
