//! The wire format: length-prefixed, checksummed frames.
//!
//! ```text
//! magic "SWL1" | kind u8 | 0 u8 | 0 u16 | id u32 | len u32 | payload [len] | xxh3_64(payload) u64
//! ```
//!
//! All integers little-endian. `id` pairs a response with its request. A frame is refused,
//! before anything is allocated, when its magic, kind, reserved bytes or length are wrong
//! (the length cap is the reader's, [`MAX_PAYLOAD`] by default), and after reading when
//! the checksum does not match. Payloads:
//!
//! | kind | direction | payload |
//! |---|---|---|
//! | `Hello` | client -> host | protocol version `u16` |
//! | `Manifest` | host -> client | JSON [`crate::host::Manifest`] |
//! | `GetTile` | client -> host | tensor `u32`, tile `u32`, level `u16` |
//! | `Tile` | host -> client | a one-tensor `.swire` stream: the tile's rows at that level |
//! | `Error` | host -> client | UTF-8 message (the request `id` it answers) |

use std::io::{self, Read, Write};

/// The protocol version a `Hello` carries; a host answers another with an `Error`.
pub const PROTOCOL_VERSION: u16 = 1;
/// Frame magic.
pub const MAGIC: [u8; 4] = *b"SWL1";
/// Default cap on a frame's payload (a tile of 64 Ki f32 values is 256 KiB).
pub const MAX_PAYLOAD: u32 = 64 << 20;
const HEAD: usize = 16;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Manifest = 2,
    GetTile = 3,
    Tile = 4,
    Error = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Manifest,
            3 => Kind::GetTile,
            4 => Kind::Tile,
            5 => Kind::Error,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub id: u32,
    pub payload: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the connection ended inside a frame")]
    Truncated,
    #[error("not a sparsewire link frame (magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("frame of {len} bytes is over the cap of {cap}")]
    TooLong { len: u32, cap: u32 },
    #[error("frame {id} ({kind:?}): checksum mismatch")]
    Checksum { id: u32, kind: Kind },
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// A timeout on the socket (the peer went silent).
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

fn checksum(payload: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(payload)
}

/// Bytes a frame adds to its payload (header and checksum).
pub const OVERHEAD: usize = HEAD + 8;

/// Writes a frame of `kind` answering `id` around `payload`, borrowed (a host sends the
/// payloads it holds without copying them into a frame first).
pub fn write_frame(w: &mut impl Write, kind: Kind, id: u32, payload: &[u8]) -> io::Result<()> {
    let mut head = [0u8; HEAD];
    head[..4].copy_from_slice(&MAGIC);
    head[4] = kind as u8;
    head[8..12].copy_from_slice(&id.to_le_bytes());
    head[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.write_all(&checksum(payload).to_le_bytes())
}

impl Frame {
    pub fn new(kind: Kind, id: u32, payload: Vec<u8>) -> Frame {
        Frame { kind, id, payload }
    }

    /// The frame's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + self.payload.len());
        write_frame(&mut out, self.kind, self.id, &self.payload).expect("a Vec takes every write");
        out
    }

    /// Writes the frame.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        write_frame(w, self.kind, self.id, &self.payload)
    }

    /// Reads one frame, refusing a payload over `cap` bytes before allocating it.
    pub fn read_from(r: &mut impl Read, cap: u32) -> Result<Frame, FrameError> {
        let mut head = [0u8; HEAD];
        // A clean end between frames is `Closed`; inside one, `Truncated`.
        let mut got = 0;
        while got < HEAD {
            match r.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Err(FrameError::Closed),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let magic: [u8; 4] = head[..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let kind = Kind::from_u8(head[4]).ok_or(FrameError::BadKind(head[4]))?;
        if head[5..8] != [0, 0, 0] {
            return Err(FrameError::Reserved);
        }
        let id = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
        if len > cap {
            return Err(FrameError::TooLong { len, cap });
        }
        let mut payload = vec![0u8; len as usize];
        read_all(r, &mut payload)?;
        let mut sum = [0u8; 8];
        read_all(r, &mut sum)?;
        if u64::from_le_bytes(sum) != checksum(&payload) {
            return Err(FrameError::Checksum { id, kind });
        }
        Ok(Frame { kind, id, payload })
    }

    /// Decodes a frame from the start of `bytes` (for the fuzz target): the frame and the
    /// bytes it took.
    pub fn parse(bytes: &[u8], cap: u32) -> Result<(Frame, usize), FrameError> {
        let mut cur = io::Cursor::new(bytes);
        let f = Frame::read_from(&mut cur, cap)?;
        Ok((f, cur.position() as usize))
    }
}

fn read_all(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            e.into()
        }
    })
}

/// A `GetTile` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRequest {
    pub tensor: u32,
    pub tile: u32,
    pub level: u16,
}

impl TileRequest {
    pub fn to_payload(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(10);
        v.extend_from_slice(&self.tensor.to_le_bytes());
        v.extend_from_slice(&self.tile.to_le_bytes());
        v.extend_from_slice(&self.level.to_le_bytes());
        v
    }

    pub fn from_payload(p: &[u8]) -> Option<TileRequest> {
        if p.len() != 10 {
            return None;
        }
        Some(TileRequest {
            tensor: u32::from_le_bytes(p[0..4].try_into().ok()?),
            tile: u32::from_le_bytes(p[4..8].try_into().ok()?),
            level: u16::from_le_bytes(p[8..10].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame::new(Kind::Tile, 7, (0..100u8).collect())
    }

    #[test]
    fn frames_round_trip() {
        for f in [
            frame(),
            Frame::new(Kind::Hello, 0, vec![]),
            Frame::new(Kind::Error, u32::MAX, b"x".to_vec()),
        ] {
            let b = f.to_bytes();
            let (g, n) = Frame::parse(&b, MAX_PAYLOAD).unwrap();
            assert_eq!((g, n), (f, b.len()));
        }
        let r = TileRequest {
            tensor: 3,
            tile: 9,
            level: 2,
        };
        assert_eq!(TileRequest::from_payload(&r.to_payload()), Some(r));
        assert_eq!(TileRequest::from_payload(&[0; 9]), None);
    }

    #[test]
    fn every_malformed_frame_is_its_error() {
        let good = frame().to_bytes();
        assert!(matches!(
            Frame::parse(&[], MAX_PAYLOAD),
            Err(FrameError::Closed)
        ));
        for cut in [1, 15, 16, 50, good.len() - 1] {
            assert!(
                matches!(
                    Frame::parse(&good[..cut], MAX_PAYLOAD),
                    Err(FrameError::Truncated)
                ),
                "{cut}"
            );
        }
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(
            Frame::parse(&b, MAX_PAYLOAD),
            Err(FrameError::BadMagic(_))
        ));
        let mut b = good.clone();
        b[4] = 99;
        assert!(matches!(
            Frame::parse(&b, MAX_PAYLOAD),
            Err(FrameError::BadKind(99))
        ));
        let mut b = good.clone();
        b[6] = 1;
        assert!(matches!(
            Frame::parse(&b, MAX_PAYLOAD),
            Err(FrameError::Reserved)
        ));
        // An oversize length prefix is refused before allocating.
        let mut b = good.clone();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Frame::parse(&b, MAX_PAYLOAD),
            Err(FrameError::TooLong { .. })
        ));
        assert!(matches!(
            Frame::parse(&good, 99),
            Err(FrameError::TooLong { len: 100, cap: 99 })
        ));
        // A flipped payload or checksum byte.
        for i in [16, 60, good.len() - 1] {
            let mut b = good.clone();
            b[i] ^= 1;
            assert!(
                matches!(
                    Frame::parse(&b, MAX_PAYLOAD),
                    Err(FrameError::Checksum { id: 7, .. })
                ),
                "{i}"
            );
        }
    }
}
