//! The tile grid of docs/SPEC.md §2.
//!
//! A tensor is viewed as a matrix `[rows, cols]` ([`sparsewire_metadata::view_2d`]) and cut
//! into tiles of `tile.rows x tile.cols` elements, row-major over the grid; tiles on the
//! right and bottom edges are smaller. Inside a tile, elements are row-major. A tile as
//! wide as the tensor is one contiguous byte range, which [`TileGrid::contiguous`] reports
//! so callers can skip the gather and scatter.

use sparsewire_metadata::TileShape;
use std::borrow::Cow;

/// Elements per tile the default tile shape aims at: 64 Ki values, 128 KiB in bf16,
/// small enough for thousands of independent tiles per GPU launch and large enough that
/// per-tile costs (lane states, the index entry) stay under 0.1%.
pub const DEFAULT_TILE_ELEMS: u64 = 1 << 16;
/// Widest default tile; rows wider than this are split into column tiles.
pub const DEFAULT_MAX_TILE_COLS: u64 = 1 << 14;

/// The default tile shape for a `[rows, cols]` view: whole rows when they fit, as many
/// as make about [`DEFAULT_TILE_ELEMS`] elements.
pub fn default_tile_shape(rows: u64, cols: u64, target_elems: u64) -> TileShape {
    let tc = cols.clamp(1, DEFAULT_MAX_TILE_COLS);
    let tr = (target_elems / tc).clamp(1, rows.max(1));
    TileShape { rows: tr, cols: tc }
}

/// Rectangle of one tile in the 2-D view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRect {
    pub row: u64,
    pub col: u64,
    pub rows: u64,
    pub cols: u64,
}

impl TileRect {
    pub fn numel(&self) -> u64 {
        self.rows * self.cols
    }
}

/// A tensor's tile grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    pub rows: u64,
    pub cols: u64,
    pub tile: TileShape,
}

impl TileGrid {
    /// The grid of a `[rows, cols]` view (tile sides must be non-zero).
    pub fn new(rows: u64, cols: u64, tile: TileShape) -> Self {
        debug_assert!(tile.rows > 0 && tile.cols > 0);
        TileGrid { rows, cols, tile }
    }

    fn col_tiles(&self) -> u64 {
        self.cols.div_ceil(self.tile.cols)
    }

    /// Number of tiles.
    pub fn len(&self) -> u64 {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            self.rows.div_ceil(self.tile.rows) * self.col_tiles()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rectangle of tile `k` (`k < len()`).
    pub fn rect(&self, k: u64) -> TileRect {
        let (i, j) = (k / self.col_tiles(), k % self.col_tiles());
        let row = i * self.tile.rows;
        let col = j * self.tile.cols;
        TileRect {
            row,
            col,
            rows: self.tile.rows.min(self.rows - row),
            cols: self.tile.cols.min(self.cols - col),
        }
    }

    /// Whether every tile is a contiguous byte range of the tensor.
    pub fn contiguous(&self) -> bool {
        self.tile.cols >= self.cols
    }

    /// Bytes of tile `k`, row-major, from the tensor's bytes (`elem` bytes per element).
    pub fn gather<'a>(&self, data: &'a [u8], k: u64, elem: usize) -> Cow<'a, [u8]> {
        let r = self.rect(k);
        let row_bytes = self.cols as usize * elem;
        if self.contiguous() {
            let start = r.row as usize * row_bytes;
            return Cow::Borrowed(&data[start..start + r.numel() as usize * elem]);
        }
        let mut out = Vec::with_capacity(r.numel() as usize * elem);
        for i in r.row..r.row + r.rows {
            let s = i as usize * row_bytes + r.col as usize * elem;
            out.extend_from_slice(&data[s..s + r.cols as usize * elem]);
        }
        Cow::Owned(out)
    }

    /// Bytes of tile `k`, row-major, read from `src` (one read for a tile of whole rows,
    /// one per row otherwise): only the tile is read.
    pub fn read_tile<'a>(
        &self,
        src: &'a dyn crate::TensorBytes,
        k: u64,
        elem: usize,
    ) -> std::io::Result<Cow<'a, [u8]>> {
        let r = self.rect(k);
        let row_bytes = self.cols * elem as u64;
        if self.contiguous() {
            return src.read(r.row * row_bytes, r.numel() as usize * elem);
        }
        let w = r.cols as usize * elem;
        let mut out = Vec::with_capacity(r.numel() as usize * elem);
        for i in r.row..r.row + r.rows {
            out.extend_from_slice(&src.read(i * row_bytes + r.col * elem as u64, w)?);
        }
        Ok(Cow::Owned(out))
    }

    /// The tiles covering rows `rows.start..rows.end` of the view (tile rows are whole
    /// blocks: a row block is the tiles of one grid row).
    pub fn row_block(&self, block: u64) -> std::ops::Range<u64> {
        let per = self.col_tiles();
        block * per..((block + 1) * per).min(self.len())
    }

    /// Number of row blocks (grid rows).
    pub fn row_blocks(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.rows.div_ceil(self.tile.rows)
        }
    }

    /// Writes a tile's row-major bytes into the tensor's bytes.
    pub fn scatter(&self, tile: &[u8], k: u64, elem: usize, data: &mut [u8]) {
        let r = self.rect(k);
        let row_bytes = self.cols as usize * elem;
        let w = r.cols as usize * elem;
        for (n, i) in (r.row..r.row + r.rows).enumerate() {
            let s = i as usize * row_bytes + r.col as usize * elem;
            data[s..s + w].copy_from_slice(&tile[n * w..(n + 1) * w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_scatter_cover_the_tensor_once() {
        for (rows, cols, tr, tc) in [
            (5u64, 7u64, 2u64, 3u64),
            (4, 4, 4, 4),
            (1, 9, 1, 4),
            (3, 2, 8, 8),
        ] {
            let g = TileGrid::new(rows, cols, TileShape { rows: tr, cols: tc });
            let data: Vec<u8> = (0..rows * cols * 2).map(|i| i as u8).collect();
            let mut back = vec![0u8; data.len()];
            let mut seen = 0;
            for k in 0..g.len() {
                let t = g.gather(&data, k, 2);
                assert_eq!(g.read_tile(&data, k, 2).unwrap(), t);
                seen += t.len();
                g.scatter(&t, k, 2, &mut back);
            }
            let blocks: u64 = (0..g.row_blocks())
                .map(|b| g.row_block(b).count() as u64)
                .sum();
            assert_eq!(blocks, g.len());
            assert_eq!(seen, data.len());
            assert_eq!(back, data);
        }
        assert_eq!(
            default_tile_shape(30522, 384, DEFAULT_TILE_ELEMS),
            TileShape {
                rows: 170,
                cols: 384
            }
        );
        assert_eq!(
            default_tile_shape(1, 10, DEFAULT_TILE_ELEMS),
            TileShape { rows: 1, cols: 10 }
        );
    }
}
