//! The fuzz target body (`cargo fuzz run link_frames`; the corpus is replayed by this
//! crate's tests): any bytes read as a stream of frames either give frames that encode
//! back to the same bytes, or a typed error; a frame's payload read as a request or a
//! manifest never panics, and nothing is allocated beyond the cap.

use crate::frame::{Frame, TileRequest};
use crate::host::Manifest;

/// Frames cap for fuzzing (a length prefix above it must be refused, not allocated).
const CAP: u32 = 1 << 20;

pub fn frames(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        match Frame::parse(rest, CAP) {
            Ok((f, n)) => {
                assert_eq!(f.to_bytes(), rest[..n], "a frame re-encodes to its bytes");
                let _ = TileRequest::from_payload(&f.payload);
                let _ = serde_json::from_slice::<Manifest>(&f.payload);
                rest = &rest[n..];
            }
            Err(_) => return,
        }
    }
}

/// A few well-formed frames to seed a corpus with.
pub fn seeds() -> Vec<Vec<u8>> {
    use crate::frame::Kind;
    let req = TileRequest {
        tensor: 1,
        tile: 2,
        level: 3,
    }
    .to_payload();
    vec![
        Frame::new(Kind::Hello, 0, 1u16.to_le_bytes().to_vec()).to_bytes(),
        Frame::new(Kind::GetTile, 5, req).to_bytes(),
        [
            Frame::new(Kind::Error, 9, b"no tile 7".to_vec()).to_bytes(),
            Frame::new(Kind::Tile, 10, vec![0x5A; 300]).to_bytes(),
        ]
        .concat(),
        Frame::new(Kind::Manifest, 0, br#"{"protocol":1,"levels":[0.0],"criterion":"magnitude","pattern":"unstructured","tensors":[]}"#.to_vec()).to_bytes(),
    ]
}
