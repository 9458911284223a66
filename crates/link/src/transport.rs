//! Where a host listens and a client dials: TCP, or a Unix socket on the same machine.
//!
//! [`Endpoint`] names either (`127.0.0.1:7878`, `localhost:7878`, `unix:/run/sw.sock`);
//! [`Stream`] and [`Listener`] are the two kinds behind one type, so the server and client
//! code (blocking reads and writes, a read timeout, non-blocking accept) is the same for
//! both. A Unix socket skips the TCP stack: for a host and an accelerator runtime on one
//! machine it is the cheaper pipe, and nothing outside the machine can reach it.
//!
//! Binding a Unix socket never replaces what is not a socket; a socket file that no one
//! listens on (a host that died) is replaced, one a live host holds is refused; the file
//! is removed when the listener is dropped.

use crate::LinkError;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// A host's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// A Unix socket's path (`unix:PATH`).
    Unix(PathBuf),
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Endpoint::Tcp(a)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => a.fmt(f),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = LinkError;
    /// `unix:PATH`, or `HOST:PORT` (resolved; the first address is taken).
    fn from_str(s: &str) -> Result<Self, LinkError> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(LinkError::Options(
                    "unix: needs a socket path (unix:/run/sparsewire.sock)".into(),
                ));
            }
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        let a = s
            .to_socket_addrs()
            .map_err(|e| {
                LinkError::Options(format!(
                    "{s:?} is not an address (HOST:PORT, or unix:PATH): {e}"
                ))
            })?
            .next()
            .ok_or_else(|| LinkError::Options(format!("{s:?} resolves to no address")))?;
        Ok(Endpoint::Tcp(a))
    }
}

/// So an [`Endpoint`] dials like a TCP address where one is expected (a Unix endpoint is
/// an error there: dial it with `Client::connect_to`).
impl ToSocketAddrs for Endpoint {
    type Iter = std::option::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        match self {
            Endpoint::Tcp(a) => Ok(Some(*a).into_iter()),
            Endpoint::Unix(p) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unix:{} is a Unix socket, not a TCP address", p.display()),
            )),
        }
    }
}

/// A connected socket of either kind.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    /// Dials `ep`, giving up after `timeout` (TCP; a Unix socket answers or refuses at
    /// once).
    pub fn connect(ep: &Endpoint, timeout: Duration) -> io::Result<Stream> {
        match ep {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            #[cfg(unix)]
            Endpoint::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p)?)),
            #[cfg(not(unix))]
            Endpoint::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "Unix sockets need a Unix system",
            )),
        }
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            #[cfg(unix)]
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_read_timeout(d),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            #[cfg(unix)]
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A bound listener of either kind.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl Listener {
    /// Binds `ep`. A TCP address that is not loopback needs `allow_remote`; a Unix socket
    /// is local by nature.
    pub fn bind(ep: &Endpoint, allow_remote: bool) -> Result<Listener, LinkError> {
        let io = |source| LinkError::Io {
            what: format!("binding {ep}"),
            source,
        };
        match ep {
            Endpoint::Tcp(addr) => {
                if !addr.ip().is_loopback() && !allow_remote {
                    return Err(LinkError::Options(format!(
                        "{addr} is not a loopback address: pass --allow-remote to serve the model to other machines"
                    )));
                }
                Ok(Listener::Tcp(TcpListener::bind(addr).map_err(io)?))
            }
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(m) = std::fs::symlink_metadata(path) {
                    if !m.file_type().is_socket() {
                        return Err(LinkError::Options(format!(
                            "{} exists and is not a socket: refusing to replace it",
                            path.display()
                        )));
                    }
                    if UnixStream::connect(path).is_ok() {
                        return Err(LinkError::Options(format!(
                            "{} is in use: another host listens on it",
                            path.display()
                        )));
                    }
                    // A socket no one listens on: a host that died. Replace it.
                    std::fs::remove_file(path).map_err(io)?;
                }
                Ok(Listener::Unix {
                    listener: UnixListener::bind(path).map_err(io)?,
                    path: path.clone(),
                })
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => Err(LinkError::Options("Unix sockets need a Unix system".into())),
        }
    }

    /// Where it listens (a TCP port 0 resolved to the port given).
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Listener::Tcp(l) => Endpoint::Tcp(l.local_addr().expect("a bound socket")),
            #[cfg(unix)]
            Listener::Unix { path, .. } => Endpoint::Unix(path.clone()),
        }
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            #[cfg(unix)]
            Listener::Unix { listener, .. } => listener.set_nonblocking(on),
        }
    }

    /// Accepts a connection (blocking, in blocking mode, whatever the listener's mode);
    /// returns it with a name for the peer, for logs.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            #[cfg(unix)]
            Listener::Unix { listener, path } => {
                let (s, _) = listener.accept()?;
                s.set_nonblocking(false)?;
                Ok((Stream::Unix(s), format!("unix:{}", path.display())))
            }
        }
    }
}

#[cfg(unix)]
impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print() {
        let e: Endpoint = "127.0.0.1:7878".parse().unwrap();
        assert_eq!(e, Endpoint::Tcp("127.0.0.1:7878".parse().unwrap()));
        assert_eq!(e.to_string(), "127.0.0.1:7878");
        let u: Endpoint = "unix:/tmp/x.sock".parse().unwrap();
        assert_eq!(u.to_string(), "unix:/tmp/x.sock");
        assert!(u.to_socket_addrs().is_err());
        for bad in ["unix:", "nonsense", "1.2.3.4"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_unix_socket_never_replaces_a_file_or_a_live_host() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"keep").unwrap();
        let e = Listener::bind(&Endpoint::Unix(file.clone()), false).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        let sock = Endpoint::Unix(d.path().join("s.sock"));
        let live = Listener::bind(&sock, false).unwrap();
        let e = Listener::bind(&sock, false).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(live);
        assert!(!d.path().join("s.sock").exists(), "removed on drop");
        // A socket file left by a host that died is replaced.
        drop(std::os::unix::net::UnixListener::bind(d.path().join("s.sock")).unwrap());
        assert!(d.path().join("s.sock").exists());
        let _l = Listener::bind(&sock, false).unwrap();
    }
}
