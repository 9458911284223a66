//! Cutting a stream without re-coding: a row block of one tensor as a stream of its own.
//!
//! The block's tiles are copied as stored (each checksum verified on the way out and
//! re-seeded for its new place), the tensor's shared entropy models and metadata carried
//! over, and the shape cut to the block's rows, so the result decodes on its own to
//! exactly those rows of the original. This is what a host serving a `.swire` over a link
//! sends: the stored bytes, not a second encode.

use super::Reader;
use crate::source::Source;
use crate::{StreamError, END_MAGIC, FORMAT_VERSION, MAGIC, PREAMBLE_BYTES};
use sparsewire_metadata::{Header, Reconstruction, TileEntry};

impl<S: Source> Reader<S> {
    /// Rows of row block `block` of tensor `t` (the grid rows of its tile shape;
    /// [`Self::grid`]`.row_blocks()` of them, one for a tensor with no elements) as a
    /// one-tensor stream: same name, dtype, layout, codec, models, sparsification and
    /// reconstruction; the shape's first dimension cut to the block's rows (a tensor of
    /// rank 0 or 1 is one block, unchanged). A tensor rebuilt from other rows
    /// (`Reconstruction::Channels`) cannot be cut and is refused.
    pub fn row_block_stream(&self, t: usize, block: u64) -> Result<Vec<u8>, StreamError> {
        let m = self.meta(t)?;
        let grid = self.grid(t);
        let blocks = grid.row_blocks().max(1);
        if block >= blocks {
            return Err(StreamError::NoSuchTile {
                tensor: m.name.clone(),
                tile: usize::try_from(block).unwrap_or(usize::MAX),
                tiles: blocks as usize,
            });
        }
        if matches!(m.reconstruction, Reconstruction::Channels { .. }) && blocks > 1 {
            return Err(StreamError::NotCuttable {
                tensor: m.name.clone(),
                reason: "its dropped rows are rebuilt from other rows (channels): it cannot be cut into row blocks",
            });
        }
        let mut meta = m.clone();
        let mut data = Vec::new();
        meta.tiles.clear();
        if !grid.is_empty() {
            let first = grid.rect(grid.row_block(block).start);
            if m.shape.len() >= 2 {
                meta.shape[0] = first.rows;
            }
            for (j, k) in grid.row_block(block).enumerate() {
                let k = k as usize;
                let stored = self.tile_stored(t, k)?;
                let e = &m.tiles[k];
                meta.tiles.push(TileEntry {
                    offset: data.len() as u64,
                    len: e.len,
                    checksum: crate::tile_checksum(&stored, 0, j),
                    streams: e.streams.clone(),
                });
                data.extend_from_slice(&stored);
            }
        }
        let header = Header {
            tensors: vec![meta],
            user_metadata: vec![],
            data_len: data.len() as u64,
        };
        header.validate()?;
        let h = header.to_postcard()?;
        let mut out = Vec::with_capacity(PREAMBLE_BYTES + data.len() + h.len() + 24);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.resize(PREAMBLE_BYTES, 0);
        out.extend_from_slice(&data);
        out.extend_from_slice(&h);
        out.extend_from_slice(&(h.len() as u64).to_le_bytes());
        out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&h).to_le_bytes());
        out.extend_from_slice(&END_MAGIC);
        Ok(out)
    }
}
