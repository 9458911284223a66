//! Decoding tiles: dense, sparse (mask + kept values, as a [`SparseTile`]), borrowed as
//! stored (the fast profile's [`RawTile`]), a row block of a tensor, whole tensors, and
//! whole tiles too large to hold (streamed in chunks).

use super::Reader;
use crate::source::Source;
use crate::{StreamError, PREAMBLE_BYTES};
use rayon::prelude::*;
use sparsewire_codec::{
    decode_planes, decode_planes_chunked, decode_symbol_stream, decode_whole, CodecError,
    PlaneLayout,
};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::{MaskEncoding, Pattern, Plane, StreamCodec, StreamEntry, ValueCodec};
use sparsewire_sparse::{codes, Mask, MaskRef, NMTable, SparseTile, SparseTileRef};
use std::io::{Read, Write};

/// A fast-profile tile, borrowed from the stream ([`Reader::raw_tile`]). Values are
/// little-endian in the tensor's dtype, row-major within the tile.
#[derive(Debug, Clone, Copy)]
pub enum RawTile<'a> {
    /// Every value.
    Dense(&'a [u8]),
    /// The bitmask and the kept values as stored. The kept count is not checked against
    /// the values here ([`SparseTileRef::new_uncounted`]): a consumer that reads the tile
    /// once counts as it goes (the matrix unit's kernels do), or calls
    /// [`SparseTileRef::counted`].
    Sparse(SparseTileRef<'a>),
}

/// Chunk for streamed whole tiles.
const CHUNK: usize = 4 << 20;

impl<S: Source> Reader<S> {
    fn codec_err(&self, t: usize, k: usize) -> impl Fn(CodecError) -> StreamError + '_ {
        move |source| StreamError::Codec {
            tensor: self.header.tensors[t].name.clone(),
            tile: k,
            source,
        }
    }

    /// Bytes tile `k` of tensor `t` decodes to.
    pub fn tile_decoded_len(&self, t: usize, k: usize) -> Result<u64, StreamError> {
        let m = self.check_tile(t, k)?;
        if PlaneLayout::for_dtype(m.dtype).is_none() {
            return Ok(m.byte_len()?);
        }
        Ok(self.grid(t).rect(k as u64).numel() * m.dtype.bits() / 8)
    }

    /// Decodes tile `k` of tensor `t` into `out` (exactly [`Self::tile_decoded_len`]
    /// bytes), row-major within the tile, zero where a sparse tile dropped. Reads no other
    /// tile.
    pub fn decode_tile_into(&self, t: usize, k: usize, out: &mut [u8]) -> Result<(), StreamError> {
        let need = self.tile_decoded_len(t, k)?;
        if need != out.len() as u64 {
            return Err(StreamError::OutputSize {
                expected: need,
                got: out.len() as u64,
            });
        }
        let stored = self.tile_stored(t, k)?;
        let m = &self.header.tensors[t];
        let entries = &m.tiles[k].streams;
        if is_sparse(entries) {
            let tile = self.sparse_from(t, k, &stored)?;
            return tile
                .as_ref()
                .write_dense(out)
                .map_err(|source| self.sparse_err(t, k, source));
        }
        match (m.codec, PlaneLayout::for_dtype(m.dtype)) {
            (ValueCodec::FloatPlanes, Some(layout)) => {
                decode_planes(layout, entries, &stored, self.decoder(t), out)
            }
            _ => decode_whole(entries, &stored, out),
        }
        .map_err(self.codec_err(t, k))
    }

    /// Decodes one tile into a new buffer.
    pub fn decode_tile(&self, t: usize, k: usize) -> Result<Vec<u8>, StreamError> {
        let n = self.tile_decoded_len(t, k)?;
        self.check_limit(n)?;
        self.check_memory(t, n)?;
        let mut out = vec![0u8; n as usize];
        self.decode_tile_into(t, k, &mut out)?;
        Ok(out)
    }

    fn sparse_err(
        &self,
        t: usize,
        k: usize,
        source: sparsewire_sparse::SparseError,
    ) -> StreamError {
        StreamError::Sparse {
            tensor: self.header.tensors[t].name.clone(),
            tile: Some(k),
            source,
        }
    }

    /// A sparse tile's mask, or `None` for a dense tile.
    pub fn tile_mask(&self, t: usize, k: usize) -> Result<Option<Mask>, StreamError> {
        let stored = self.tile_stored(t, k)?;
        match self.header.tensors[t].tiles[k].streams.first() {
            Some(StreamEntry {
                plane: Plane::Mask(enc),
                ..
            }) => Ok(Some(self.read_mask(t, k, *enc, &stored)?)),
            _ => Ok(None),
        }
    }

    /// A sparse tile decoded (mask and kept values), or `None` for a dense tile.
    pub fn tile_sparse(&self, t: usize, k: usize) -> Result<Option<SparseTile>, StreamError> {
        let stored = self.tile_stored(t, k)?;
        if is_sparse(&self.header.tensors[t].tiles[k].streams) {
            Ok(Some(self.sparse_from(t, k, &stored)?))
        } else {
            Ok(None)
        }
    }

    fn read_mask(
        &self,
        t: usize,
        k: usize,
        enc: MaskEncoding,
        stored: &[u8],
    ) -> Result<Mask, StreamError> {
        let m = &self.header.tensors[t];
        let e = &m.tiles[k].streams[0];
        let rect = self.grid(t).rect(k as u64);
        let n = rect.numel() as usize;
        let len = usize::try_from(e.len)
            .unwrap_or(usize::MAX)
            .min(stored.len());
        // A raw bitmask (the fast profile): the packed bits are the mask as they are.
        if enc == MaskEncoding::Bitmask && e.codec == StreamCodec::Raw {
            let mut pos = 0;
            let count = sparsewire_metadata::varint::get(&stored[..len], &mut pos);
            if count != Some(n.div_ceil(8) as u64) || len - pos != n.div_ceil(8) {
                return Err(self.codec_err(t, k)(CodecError::Corrupt {
                    reason: "raw bitmask of the wrong length",
                }));
            }
            return MaskRef::new(&stored[pos..len], n)
                .map(|m| m.to_owned())
                .map_err(|source| self.sparse_err(t, k, source));
        }
        let nm = match m.sparsification.as_ref().map(|s| s.pattern) {
            Some(Pattern::NM { n, m }) => Some((n, m)),
            _ => None,
        };
        let alphabet = match (enc, nm) {
            (MaskEncoding::NMCodes, Some((n, m))) => NMTable::new(n, m)
                .map(|t| t.len().max(1 << (m - 1)))
                .map_err(|source| self.sparse_err(t, k, source))?,
            _ => 256,
        };
        // RLE and delta symbols are varint bytes: at most 10 per element (and one more).
        let symbols =
            decode_symbol_stream(e, &stored[..len], alphabet, 10 * (n + 1), self.decoder(t))
                .map_err(self.codec_err(t, k))?;
        codes::decode(enc, &symbols, n, rect.cols as usize, nm)
            .map_err(|source| self.sparse_err(t, k, source))
    }

    /// Mask and kept values of a sparse tile from its stored bytes.
    fn sparse_from(&self, t: usize, k: usize, stored: &[u8]) -> Result<SparseTile, StreamError> {
        // The kept values and the mask of a tile are at most its decoded size.
        self.check_memory(t, self.tile_decoded_len(t, k)?)?;
        let m = &self.header.tensors[t];
        let entries = &m.tiles[k].streams;
        let Some(StreamEntry {
            plane: Plane::Mask(enc),
            ..
        }) = entries.first()
        else {
            unreachable!("callers check the first stream")
        };
        let layout = PlaneLayout::for_dtype(m.dtype).ok_or_else(|| {
            self.codec_err(t, k)(CodecError::StreamLayout {
                reason: format!("a mask on a {} tensor", m.dtype),
            })
        })?;
        let mask = self.read_mask(t, k, *enc, stored)?;
        let mlen = entries[0].len as usize;
        let mut kept = vec![0u8; mask.kept() * layout.value_bytes];
        match entries.get(1).map(|e| e.plane) {
            // The fast profile: the kept values as they are.
            Some(Plane::Whole) => decode_whole(&entries[1..], &stored[mlen..], &mut kept),
            _ => decode_planes(
                layout,
                &entries[1..],
                &stored[mlen..],
                self.decoder(t),
                &mut kept,
            ),
        }
        .map_err(self.codec_err(t, k))?;
        let rect = self.grid(t).rect(k as u64);
        SparseTile::new(rect.rows as usize, rect.cols as usize, m.dtype, mask, kept)
            .map_err(|source| self.sparse_err(t, k, source))
    }

    /// Decodes the tiles of row block `block` (one grid row: `tile.rows` rows of the 2-D
    /// view, every column) into `out`, row-major over the block: for a consumer that
    /// streams a tensor a row block at a time.
    pub fn decode_rows(&self, t: usize, block: u64, out: &mut [u8]) -> Result<(), StreamError>
    where
        S: Sync,
    {
        let m = self.meta(t)?;
        let grid = self.grid(t);
        let tiles = grid.row_block(block);
        if PlaneLayout::for_dtype(m.dtype).is_none() || tiles.end - tiles.start <= 1 {
            if tiles.end > tiles.start {
                return self.decode_tile_into(t, tiles.start as usize, out);
            }
            return Ok(());
        }
        let elem = (m.dtype.bits() / 8) as usize;
        let decoded = tiles
            .clone()
            .into_par_iter()
            .map(|k| self.decode_tile(t, k as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let row0 = grid.rect(tiles.start).row;
        let row_bytes = grid.cols as usize * elem;
        for (k, tile) in tiles.zip(decoded) {
            let r = grid.rect(k);
            let w = r.cols as usize * elem;
            for i in 0..r.rows as usize {
                let at =
                    (r.row - row0) as usize * row_bytes + i * row_bytes + r.col as usize * elem;
                out[at..at + w].copy_from_slice(&tile[i * w..(i + 1) * w]);
            }
        }
        Ok(())
    }

    /// The mask of row block `block` (row-major over the block, as [`Self::decode_rows`]
    /// lays out its values), or `None` for a dense tensor.
    pub fn rows_mask(&self, t: usize, block: u64) -> Result<Option<Mask>, StreamError> {
        let m = self.meta(t)?;
        if m.sparsification.is_none() {
            return Ok(None);
        }
        let grid = self.grid(t);
        let tiles = grid.row_block(block);
        let Some(first) = tiles.clone().next() else {
            return Ok(Some(Mask::default()));
        };
        let rows = grid.rect(first).rows as usize;
        let cols = grid.cols as usize;
        let masks = tiles
            .clone()
            .map(|k| {
                let n = grid.rect(k).numel() as usize;
                Ok(self
                    .tile_mask(t, k as usize)?
                    .unwrap_or_else(|| Mask::dense(n)))
            })
            .collect::<Result<Vec<_>, StreamError>>()?;
        if masks.len() == 1 {
            return Ok(masks.into_iter().next());
        }
        let mut out = Mask::default();
        for r in 0..rows {
            for (k, m) in tiles.clone().zip(&masks) {
                let w = grid.rect(k).cols as usize;
                out.extend_from_bits(&m.bits()[r * w..(r + 1) * w]);
            }
        }
        debug_assert_eq!(out.len(), rows * cols);
        Ok(Some(out))
    }

    /// A sparse tensor as one tile (its 2-D view: mask and kept values), or `None` for a
    /// dense one. Needs the memory of the dense tensor.
    pub fn tensor_sparse(&self, t: usize) -> Result<Option<SparseTile>, StreamError>
    where
        S: Sync,
    {
        let m = self.meta(t)?;
        if m.sparsification.is_none() {
            return Ok(None);
        }
        let grid = self.grid(t);
        let dense = self.decode_tensor(t)?.data;
        let mut mask = Mask::default();
        for b in 0..grid.row_blocks() {
            if let Some(mb) = self.rows_mask(t, b)? {
                mask.extend(mb.as_ref());
            }
        }
        SparseTile::from_dense(
            grid.rows as usize,
            grid.cols as usize,
            m.dtype,
            &dense,
            mask,
        )
        .map(Some)
        .map_err(|source| StreamError::Sparse {
            tensor: m.name.clone(),
            tile: None,
            source,
        })
    }

    /// Kept elements of tensor `t` (all of them for a dense tensor): decodes the masks only.
    pub fn kept(&self, t: usize) -> Result<u64, StreamError> {
        let mut n = 0u64;
        for k in 0..self.meta(t)?.tiles.len() {
            n += match self.tile_mask(t, k)? {
                Some(m) => m.kept() as u64,
                None => self.grid(t).rect(k as u64).numel(),
            };
        }
        Ok(n)
    }

    /// Decodes a whole tensor, tiles in parallel.
    pub fn decode_tensor(&self, t: usize) -> Result<Tensor, StreamError>
    where
        S: Sync,
    {
        let m = self.meta(t)?;
        let len = m.byte_len()?;
        self.check_limit(len)?;
        self.check_memory(t, len)?;
        let mut data = vec![0u8; len as usize];
        self.decode_tensor_into(t, &mut data)?;
        Ok(Tensor {
            name: m.name.clone(),
            dtype: m.dtype,
            shape: m.shape.clone(),
            data,
        })
    }

    /// Decodes a whole tensor into `out` (exactly its byte length), tiles in parallel: for a
    /// caller that reuses its buffers (no allocation, no first-touch page faults).
    pub fn decode_tensor_into(&self, t: usize, out: &mut [u8]) -> Result<(), StreamError>
    where
        S: Sync,
    {
        let m = self.meta(t)?;
        let len = m.byte_len()?;
        if len != out.len() as u64 {
            return Err(StreamError::OutputSize {
                expected: len,
                got: out.len() as u64,
            });
        }
        let grid = self.grid(t);
        if grid.is_empty() {
            return Ok(());
        }
        if PlaneLayout::for_dtype(m.dtype).is_none() {
            return self.decode_tile_into(t, 0, out);
        }
        let elem = (m.dtype.bits() / 8).max(1) as usize;
        let block_bytes = (grid.tile.rows * grid.cols) as usize * elem;
        out.par_chunks_mut(block_bytes)
            .enumerate()
            .try_for_each(|(b, out)| self.decode_rows(t, b as u64, out))
    }

    /// Decodes every tensor, with the stream's metadata: tensors in parallel, and the tiles
    /// of each (a model of many small tensors has few tiles per tensor).
    pub fn decode_all(&self) -> Result<TensorFile, StreamError>
    where
        S: Sync,
    {
        let mut file = TensorFile::default();
        self.decode_all_into(&mut file)?;
        Ok(file)
    }

    /// [`Reader::decode_all`] into `file`, reusing the buffers of the tensors it already
    /// holds (by position: a previous decode of this or a similar stream), so that decoding
    /// again allocates nothing and takes no first-touch page faults where the sizes match.
    /// On error `file` holds what was decoded so far and must not be used.
    pub fn decode_all_into(&self, file: &mut TensorFile) -> Result<(), StreamError>
    where
        S: Sync,
    {
        let mut total = 0u64;
        for t in &self.header.tensors {
            total = total.saturating_add(t.byte_len()?);
        }
        self.check_limit(total)?;
        let n = self.header.tensors.len();
        let mut bufs: Vec<Vec<u8>> = std::mem::take(&mut file.tensors)
            .into_iter()
            .map(|t| t.data)
            .collect();
        bufs.resize_with(n, Vec::new);
        bufs.truncate(n);
        for (t, data) in bufs.iter_mut().enumerate() {
            let len = self.meta(t)?.byte_len()?;
            self.check_memory(t, len)?;
            data.resize(len as usize, 0);
        }
        bufs.par_iter_mut()
            .enumerate()
            .try_for_each(|(t, data)| self.decode_tensor_into(t, data))?;
        file.metadata = self.header.user_metadata.clone();
        file.tensors = bufs
            .into_iter()
            .zip(&self.header.tensors)
            .map(|(data, m)| Tensor {
                name: m.name.clone(),
                dtype: m.dtype,
                shape: m.shape.clone(),
                data,
            })
            .collect();
        Ok(())
    }

    /// Writes the decoded bytes of whole tile `k` of tensor `t` (a raw or zstd tile, as
    /// every non-float tensor has) to `out`, in chunks: a tile of any size needs a few MiB.
    /// The checksum is verified in a first pass over the stored bytes, and again as they
    /// are decoded (a file that changes in between is an error, not wrong output).
    pub fn write_whole_tile(
        &self,
        t: usize,
        k: usize,
        out: &mut dyn Write,
    ) -> Result<u64, StreamError> {
        let m = self.check_tile(t, k)?;
        let e = &m.tiles[k];
        let want = self.tile_decoded_len(t, k)?;
        let [entry] = &e.streams[..] else {
            return Err(self.codec_err(t, k)(CodecError::StreamLayout {
                reason: format!("a whole tile has one stream, found {}", e.streams.len()),
            }));
        };
        if entry.plane != Plane::Whole {
            return Err(self.codec_err(t, k)(CodecError::StreamLayout {
                reason: "whole-tile stream entry does not match the tile".into(),
            }));
        }
        let seed = sparsewire_metadata::tile_seed(t as u64, k as u64);
        let start = PREAMBLE_BYTES as u64 + e.offset;
        let mismatch = |got| StreamError::ChecksumMismatch {
            tensor: m.name.clone(),
            tile: k,
            expected: e.checksum,
            got,
        };
        // Pass 1: the checksum, before anything is decoded.
        let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
        let mut off = 0u64;
        while off < e.len {
            let n = (e.len - off).min(CHUNK as u64) as usize;
            h.update(&self.read(start + off, n, "a tile")?);
            off += n as u64;
        }
        if h.digest() != e.checksum {
            return Err(mismatch(h.digest()));
        }
        // Pass 2: decode.
        let mut reader = SourceRead {
            src: &self.src,
            at: start,
            end: start + e.len,
            hash: xxhash_rust::xxh3::Xxh3::with_seed(seed),
        };
        let io_err = |source: std::io::Error| StreamError::Read {
            what: format!("tensor {:?} tile {k}", m.name),
            source,
        };
        let mut out = WriteTrap { w: out, err: None };
        let out = &mut out;
        let written = match entry.codec {
            StreamCodec::Raw => {
                if e.len != want {
                    return Err(self.codec_err(t, k)(CodecError::Corrupt {
                        reason: "raw tile of the wrong length",
                    }));
                }
                copy_bounded(&mut reader, out, want).map_err(|e| {
                    out.err
                        .take()
                        .map_or_else(|| io_err(e), StreamError::Output)
                })?
            }
            StreamCodec::Zstd => {
                let mut z = zstd::stream::Decoder::new(&mut reader).map_err(io_err)?;
                let n = copy_bounded(&mut z, out, want).map_err(|e| match out.err.take() {
                    Some(w) => StreamError::Output(w),
                    None => self.codec_err(t, k)(CodecError::Zstd {
                        reason: e.to_string(),
                    }),
                })?;
                drop(z);
                // Whatever zstd left unread still counts for the checksum.
                std::io::copy(&mut reader, &mut std::io::sink()).map_err(io_err)?;
                n
            }
            codec => {
                return Err(self.codec_err(t, k)(CodecError::CodecNotAllowed {
                    plane: Plane::Whole,
                    codec,
                }))
            }
        };
        if reader.hash.digest() != e.checksum {
            return Err(mismatch(reader.hash.digest()));
        }
        if written != want {
            return Err(self.codec_err(t, k)(CodecError::Corrupt {
                reason: "a whole tile decodes to the wrong size",
            }));
        }
        Ok(written)
    }

    /// Writes tile `k` of tensor `t` decoded (as [`Self::decode_tile_into`] lays it out) to
    /// `out`, holding only the stored tile and a few KiB of decoded values: for a dense
    /// tile too large to decode into memory. A sparse tile is decoded whole, within the
    /// memory budget. Returns the bytes written.
    pub fn write_tile(&self, t: usize, k: usize, out: &mut dyn Write) -> Result<u64, StreamError> {
        let m = self.check_tile(t, k)?;
        let n = self.tile_decoded_len(t, k)?;
        self.check_limit(n)?;
        let entries = &m.tiles[k].streams;
        if is_sparse(entries) {
            let v = self.decode_tile(t, k)?;
            out.write_all(&v).map_err(StreamError::Output)?;
            return Ok(n);
        }
        let layout = match (m.codec, PlaneLayout::for_dtype(m.dtype)) {
            (ValueCodec::FloatPlanes, Some(layout)) => layout,
            _ => return self.write_whole_tile(t, k, out),
        };
        let stored = self.tile_stored(t, k)?;
        let values = (n / layout.value_bytes as u64) as usize;
        let mut written = 0u64;
        decode_planes_chunked(layout, entries, &stored, self.decoder(t), values, |c| {
            written += c.len() as u64;
            out.write_all(c).map_err(ChunkError::Output)
        })
        .map_err(|e| match e {
            ChunkError::Output(e) => StreamError::Output(e),
            ChunkError::Codec(e) => self.codec_err(t, k)(e),
        })?;
        Ok(written)
    }
}

/// Whether a tile's streams are a sparse tile's (they start with its mask).
fn is_sparse(entries: &[StreamEntry]) -> bool {
    matches!(
        entries.first(),
        Some(StreamEntry {
            plane: Plane::Mask(_),
            ..
        })
    )
}

/// A chunked decode's failure: the output's or the codec's.
enum ChunkError {
    Output(std::io::Error),
    Codec(CodecError),
}

impl From<CodecError> for ChunkError {
    fn from(e: CodecError) -> Self {
        ChunkError::Codec(e)
    }
}

/// A writer that keeps its first error, so that a copy's failure can be told apart: the
/// output's (a full disk) or the input's (a damaged tile).
struct WriteTrap<'a> {
    w: &'a mut dyn Write,
    err: Option<std::io::Error>,
}

impl Write for WriteTrap<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf).map_err(|e| self.trap(e))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.w.write_all(buf).map_err(|e| self.trap(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush().map_err(|e| self.trap(e))
    }
}

impl WriteTrap<'_> {
    fn trap(&mut self, e: std::io::Error) -> std::io::Error {
        let copy = std::io::Error::new(e.kind(), e.to_string());
        self.err.get_or_insert(e);
        copy
    }
}

/// Copies at most `limit` bytes and fails if more are there.
fn copy_bounded(r: &mut dyn Read, w: &mut dyn Write, limit: u64) -> std::io::Result<u64> {
    let n = std::io::copy(&mut r.take(limit), w)?;
    let mut probe = [0u8; 1];
    if r.read(&mut probe)? != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the tile decodes to more bytes than its tensor holds",
        ));
    }
    Ok(n)
}

/// A source range as `io::Read`, hashing what it hands out.
struct SourceRead<'a, S> {
    src: &'a S,
    at: u64,
    end: u64,
    hash: xxhash_rust::xxh3::Xxh3,
}

impl<S: Source> Read for SourceRead<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(CHUNK) as u64;
        let n = (self.end - self.at).min(want) as usize;
        if n == 0 {
            return Ok(0);
        }
        let b = self.src.read_at(self.at, n)?;
        buf[..n].copy_from_slice(&b);
        self.hash.update(&b);
        self.at += n as u64;
        Ok(n)
    }
}

impl<B: AsRef<[u8]> + Send + Sync> Reader<B> {
    /// Tile `k` of tensor `t` as stored by the fast profile, borrowed from the stream, or
    /// `None` when the tile is entropy-coded and must be decoded. Its checksum, its
    /// bitmask's length and padding, and the values' length (whole values, at most one per
    /// element) are checked; that the values number exactly the bitmask's ones is left to
    /// the reader of the bits (see [`RawTile::Sparse`]), so the tile is read once.
    pub fn raw_tile(&self, t: usize, k: usize) -> Result<Option<RawTile<'_>>, StreamError> {
        self.tile_stored(t, k)?;
        let m = &self.header.tensors[t];
        let e = &m.tiles[k];
        let start = PREAMBLE_BYTES + e.offset as usize;
        let stored = &self.source().as_ref()[start..start + e.len as usize];
        let Some(layout) = PlaneLayout::for_dtype(m.dtype) else {
            return Ok(None);
        };
        let rect = self.grid(t).rect(k as u64);
        let n = rect.numel() as usize;
        let vb = layout.value_bytes;
        let corrupt = |reason: &'static str| self.codec_err(t, k)(CodecError::Corrupt { reason });
        let raw_whole = |e: &StreamEntry| e.plane == Plane::Whole && e.codec == StreamCodec::Raw;
        match e.streams.as_slice() {
            [s] if raw_whole(s) => {
                if stored.len() != n * vb {
                    return Err(corrupt("raw tile of the wrong length"));
                }
                Ok(Some(RawTile::Dense(stored)))
            }
            [mask, values]
                if mask.plane == Plane::Mask(MaskEncoding::Bitmask)
                    && mask.codec == StreamCodec::Raw
                    && raw_whole(values) =>
            {
                let mlen = mask.len as usize;
                let mut pos = 0;
                let count = sparsewire_metadata::varint::get(&stored[..mlen], &mut pos);
                if count != Some(n.div_ceil(8) as u64) || mlen - pos != n.div_ceil(8) {
                    return Err(corrupt("raw bitmask of the wrong length"));
                }
                let bits = MaskRef::new(&stored[pos..mlen], n)
                    .map_err(|source| self.sparse_err(t, k, source))?;
                let tile = SparseTileRef::new_uncounted(
                    rect.rows as usize,
                    rect.cols as usize,
                    m.dtype,
                    bits,
                    &stored[mlen..],
                )
                .map_err(|source| self.sparse_err(t, k, source))?;
                Ok(Some(RawTile::Sparse(tile)))
            }
            _ => Ok(None),
        }
    }
}
