//! Reading a stream: validate once (SPEC §5), then hand out tiles.

use crate::{data_start, tile_checksum, StreamError, FORMAT_VERSION, MAGIC, PREAMBLE_BYTES};
use rayon::prelude::*;
use sparsewire_codec::decode_symbol_stream;
use sparsewire_codec::{decode_planes, decode_whole, PlaneLayout, TensorDecoder, TensorModels};
use sparsewire_formats::tiling::{TileGrid, TileRect};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_masks::{decode as decode_mask, Mask, MaskEncoding, NMTable};
use sparsewire_metadata::{
    view_2d, Header, Pattern, Plane, StreamCodec, StreamEntry, TensorMeta, ValueCodec,
    MAX_HEADER_BYTES,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Bounds on what decoding may produce.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most bytes one decode call (a tensor, or all of them) may output.
    pub max_output_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // Enough for a 7B-parameter model in bf16; raise it for larger ones.
        DecodeLimits {
            max_output_bytes: 16 << 30,
        }
    }
}

/// A fast-profile tile, borrowed from the stream ([`Reader::raw_tile`]). Values are
/// little-endian in the tensor's dtype, row-major within the tile.
#[derive(Debug, Clone, Copy)]
pub enum RawTile<'a> {
    /// Every value.
    Dense(&'a [u8]),
    /// `bits`: one bit per element of the tile, LSB first (1 = kept); `values`: the kept
    /// values in order.
    Sparse { bits: &'a [u8], values: &'a [u8] },
}

/// A validated stream. `B` is anything holding the bytes: `Vec<u8>`, `&[u8]`, an mmap.
/// `Send + Sync` when `B` is, so many threads can decode tiles of one reader.
#[derive(Debug)]
pub struct Reader<B> {
    bytes: B,
    header: Header,
    data_start: usize,
    models: Vec<TensorModels>,
    decoders: Vec<OnceLock<TensorDecoder>>,
    /// Per tensor, per tile: checksum already verified (the bytes cannot change under a
    /// shared borrow, and a mapped file must not be modified while mapped).
    verified: Vec<Vec<AtomicBool>>,
    limits: DecodeLimits,
}

fn need(what: &'static str, needed: u64, available: usize) -> Result<(), StreamError> {
    if needed > available as u64 {
        return Err(StreamError::Truncated {
            what,
            needed,
            available: available as u64,
        });
    }
    Ok(())
}

impl<B: AsRef<[u8]>> Reader<B> {
    /// Validates a stream with the default limits.
    pub fn new(bytes: B) -> Result<Self, StreamError> {
        Self::with_limits(bytes, DecodeLimits::default())
    }

    /// Validates a stream: preamble, header checksum and contents, padding, and that the
    /// tiles tile the data section exactly (no holes, no overlaps, no trailing bytes).
    pub fn with_limits(bytes: B, limits: DecodeLimits) -> Result<Self, StreamError> {
        let b = bytes.as_ref();
        need("the preamble", PREAMBLE_BYTES as u64, b.len())?;
        if b[..8] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(StreamError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let flags = u32_at(12);
        if flags != 0 {
            return Err(StreamError::ReservedFlags { flags });
        }
        let header_len = u64_at(16);
        if header_len > MAX_HEADER_BYTES {
            return Err(StreamError::HeaderTooLarge {
                len: header_len,
                cap: MAX_HEADER_BYTES,
            });
        }
        need("the header", PREAMBLE_BYTES as u64 + header_len, b.len())?;
        let hbytes = &b[PREAMBLE_BYTES..PREAMBLE_BYTES + header_len as usize];
        let expected = u64_at(24);
        let got = xxhash_rust::xxh3::xxh3_64(hbytes);
        if got != expected {
            return Err(StreamError::HeaderChecksum { expected, got });
        }
        let header = Header::from_postcard(hbytes)?;
        let start = data_start(header_len).expect("capped header") as usize;
        need(
            "the data section's alignment padding",
            start as u64,
            b.len(),
        )?;
        if b[PREAMBLE_BYTES + header_len as usize..start]
            .iter()
            .any(|&x| x != 0)
        {
            return Err(StreamError::BadPadding);
        }
        let present = (b.len() - start) as u64;
        if header.data_len != present {
            return Err(StreamError::DataLength {
                declared: header.data_len,
                present,
            });
        }
        let mut expected_offset = 0u64;
        for t in &header.tensors {
            for (k, tile) in t.tiles.iter().enumerate() {
                if tile.offset != expected_offset {
                    return Err(StreamError::TileOffset {
                        tensor: t.name.clone(),
                        tile: k,
                        expected: expected_offset,
                        got: tile.offset,
                        kind: if tile.offset < expected_offset {
                            "overlaps the previous tile"
                        } else {
                            "leaves a hole after the previous tile"
                        },
                    });
                }
                let streams = tile
                    .streams
                    .iter()
                    .try_fold(0u64, |a, s| a.checked_add(s.len));
                if streams != Some(tile.len) {
                    return Err(StreamError::TileLength {
                        tensor: t.name.clone(),
                        tile: k,
                        len: tile.len,
                        streams: streams.unwrap_or(u64::MAX),
                    });
                }
                let end = tile.offset.saturating_add(tile.len);
                if end > header.data_len {
                    return Err(StreamError::TileOutOfRange {
                        tensor: t.name.clone(),
                        tile: k,
                        end,
                        data_len: header.data_len,
                    });
                }
                expected_offset = end;
            }
        }
        if expected_offset != header.data_len {
            return Err(StreamError::TrailingBytes {
                bytes: header.data_len - expected_offset,
            });
        }
        let models = header
            .tensors
            .iter()
            .map(|t| {
                TensorModels::from_bytes(&t.models).map_err(|source| StreamError::Models {
                    tensor: t.name.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let decoders = header.tensors.iter().map(|_| OnceLock::new()).collect();
        // One flag per tile: bounded by the header size, which is capped.
        let verified = header
            .tensors
            .iter()
            .map(|t| t.tiles.iter().map(|_| AtomicBool::new(false)).collect())
            .collect();
        Ok(Reader {
            bytes,
            header,
            data_start: start,
            models,
            decoders,
            verified,
            limits,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Index of the tensor called `name`.
    pub fn tensor_index(&self, name: &str) -> Result<usize, StreamError> {
        self.header
            .tensor(name)
            .map(|(i, _)| i)
            .ok_or_else(|| StreamError::NoSuchTensor { name: name.into() })
    }

    fn meta(&self, t: usize) -> &TensorMeta {
        &self.header.tensors[t]
    }

    /// The tile grid of tensor `t` (a single tile for non-float dtypes).
    pub fn grid(&self, t: usize) -> TileGrid {
        let m = self.meta(t);
        let n = m.numel().expect("validated");
        let (rows, cols) = view_2d(&m.shape, n);
        TileGrid::new(rows, cols, m.tile_shape)
    }

    fn check_tile(&self, t: usize, k: usize) -> Result<(), StreamError> {
        let m = self
            .header
            .tensors
            .get(t)
            .ok_or_else(|| StreamError::NoSuchTensor {
                name: format!("#{t}"),
            })?;
        if k >= m.tiles.len() {
            return Err(StreamError::NoSuchTile {
                tensor: m.name.clone(),
                tile: k,
                tiles: m.tiles.len(),
            });
        }
        Ok(())
    }

    /// Bytes tile `k` of tensor `t` decodes to.
    pub fn tile_decoded_len(&self, t: usize, k: usize) -> Result<u64, StreamError> {
        self.check_tile(t, k)?;
        let m = self.meta(t);
        if PlaneLayout::for_dtype(m.dtype).is_none() {
            return Ok(m.byte_len()?);
        }
        let r: TileRect = self.grid(t).rect(k as u64);
        Ok(r.numel() * m.dtype.bits() / 8)
    }

    /// The stored bytes of a tile, after checking its checksum (on the tile's first read;
    /// later reads of a verified tile skip it).
    pub fn tile_stored(&self, t: usize, k: usize) -> Result<&[u8], StreamError> {
        self.check_tile(t, k)?;
        let m = self.meta(t);
        let e = &m.tiles[k];
        let s = self.data_start + e.offset as usize;
        let stored = &self.bytes.as_ref()[s..s + e.len as usize];
        if self.verified[t][k].load(Ordering::Relaxed) {
            return Ok(stored);
        }
        let got = tile_checksum(stored, t, k);
        if got != e.checksum {
            return Err(StreamError::ChecksumMismatch {
                tensor: m.name.clone(),
                tile: k,
                expected: e.checksum,
                got,
            });
        }
        self.verified[t][k].store(true, Ordering::Relaxed);
        Ok(stored)
    }

    /// Decodes tile `k` of tensor `t` into `out` (exactly [`Self::tile_decoded_len`]
    /// bytes), row-major within the tile. Reads no other tile.
    pub fn decode_tile_into(&self, t: usize, k: usize, out: &mut [u8]) -> Result<(), StreamError> {
        let need = self.tile_decoded_len(t, k)?;
        if need != out.len() as u64 {
            return Err(StreamError::OutputSize {
                expected: need,
                got: out.len() as u64,
            });
        }
        let stored = self.tile_stored(t, k)?;
        let m = self.meta(t);
        let entries = &m.tiles[k].streams;
        if let Some(StreamEntry {
            plane: Plane::Mask(enc),
            ..
        }) = entries.first()
        {
            return self.decode_sparse_tile(t, k, *enc, stored, out);
        }
        let res = match (m.codec, PlaneLayout::for_dtype(m.dtype)) {
            (ValueCodec::FloatPlanes, Some(layout)) => {
                let dec = self.decoders[t].get_or_init(|| self.models[t].decoder());
                decode_planes(layout, entries, stored, dec, out)
            }
            _ => decode_whole(entries, stored, out),
        };
        res.map_err(|source| StreamError::Codec {
            tensor: m.name.clone(),
            tile: k,
            source,
        })
    }

    /// The mask of a sparse tile, and the tile's other streams and their bytes.
    pub fn tile_mask(&self, t: usize, k: usize) -> Result<Option<Mask>, StreamError> {
        let stored = self.tile_stored(t, k)?;
        let entries = &self.meta(t).tiles[k].streams;
        match entries.first() {
            Some(StreamEntry {
                plane: Plane::Mask(enc),
                ..
            }) => Ok(Some(self.read_mask(t, k, *enc, stored)?)),
            _ => Ok(None),
        }
    }

    fn read_mask(
        &self,
        t: usize,
        k: usize,
        enc: MaskEncoding,
        stored: &[u8],
    ) -> Result<Mask, StreamError> {
        let m = self.meta(t);
        let e = &m.tiles[k].streams[0];
        let rect = self.grid(t).rect(k as u64);
        let n = rect.numel() as usize;
        let nm = match m.sparsification.as_ref().map(|s| s.pattern) {
            Some(Pattern::NM { n, m }) => Some((n, m)),
            _ => None,
        };
        let alphabet = match (enc, nm) {
            (MaskEncoding::NMCodes, Some((n, m))) => NMTable::new(n, m)
                .map(|t| t.len().max(1 << (m - 1)))
                .map_err(|source| StreamError::Mask {
                    tensor: self.meta(t).name.clone(),
                    tile: k,
                    source,
                })?,
            _ => 256,
        };
        let codec_err = |source| StreamError::Codec {
            tensor: m.name.clone(),
            tile: k,
            source,
        };
        let len = usize::try_from(e.len)
            .unwrap_or(usize::MAX)
            .min(stored.len());
        // RLE and delta symbols are varint bytes: at most 10 per element (and one more).
        let dec = self.decoders[t].get_or_init(|| self.models[t].decoder());
        let symbols = decode_symbol_stream(e, &stored[..len], alphabet, 10 * (n + 1), dec)
            .map_err(codec_err)?;
        decode_mask(enc, &symbols, n, rect.cols as usize, nm).map_err(|source| StreamError::Mask {
            tensor: m.name.clone(),
            tile: k,
            source,
        })
    }

    /// A sparse tile: its mask, then its kept values, zero-filled to the dense tile.
    fn decode_sparse_tile(
        &self,
        t: usize,
        k: usize,
        enc: MaskEncoding,
        stored: &[u8],
        out: &mut [u8],
    ) -> Result<(), StreamError> {
        let (mask, kept) = self.sparse_parts(t, k, enc, stored)?;
        let vb = kept.len() / mask.kept().max(1);
        out.fill(0);
        // Scatter byte by byte of the mask: one step per kept value.
        let mut at = 0;
        for (j, &byte) in mask.as_bytes().iter().enumerate() {
            let mut b = byte;
            while b != 0 {
                let i = j * 8 + b.trailing_zeros() as usize;
                out[i * vb..(i + 1) * vb].copy_from_slice(&kept[at..at + vb]);
                at += vb;
                b &= b - 1;
            }
        }
        Ok(())
    }

    /// A sparse tile's mask and its kept values (decoded, packed), or `None` for a dense
    /// tile: what a consumer that skips or expands zeros itself needs.
    pub fn tile_sparse_parts(
        &self,
        t: usize,
        k: usize,
    ) -> Result<Option<(Mask, Vec<u8>)>, StreamError> {
        let stored = self.tile_stored(t, k)?;
        match self.meta(t).tiles[k].streams.first() {
            Some(StreamEntry {
                plane: Plane::Mask(enc),
                ..
            }) => Ok(Some(self.sparse_parts(t, k, *enc, stored)?)),
            _ => Ok(None),
        }
    }

    fn sparse_parts(
        &self,
        t: usize,
        k: usize,
        enc: MaskEncoding,
        stored: &[u8],
    ) -> Result<(Mask, Vec<u8>), StreamError> {
        let m = self.meta(t);
        let mask = self.read_mask(t, k, enc, stored)?;
        let entries = &m.tiles[k].streams;
        let mlen = entries[0].len as usize;
        let codec_err = |source| StreamError::Codec {
            tensor: m.name.clone(),
            tile: k,
            source,
        };
        let layout = PlaneLayout::for_dtype(m.dtype).ok_or_else(|| {
            codec_err(sparsewire_codec::CodecError::StreamLayout {
                reason: format!("a mask on a {} tensor", m.dtype),
            })
        })?;
        let vb = layout.value_bytes;
        let mut kept = vec![0u8; mask.kept() * vb];
        let dec = self.decoders[t].get_or_init(|| self.models[t].decoder());
        match entries.get(1).map(|e| e.plane) {
            // The fast profile: the kept values as they are.
            Some(Plane::Whole) => decode_whole(&entries[1..], &stored[mlen..], &mut kept),
            _ => decode_planes(layout, &entries[1..], &stored[mlen..], dec, &mut kept),
        }
        .map_err(codec_err)?;
        Ok((mask, kept))
    }

    /// Tile `k` of tensor `t` as stored by the fast profile, borrowed from the stream, or
    /// `None` when the tile is entropy-coded and must be decoded. Its checksum, its
    /// bitmask's length and padding, and the values' length (whole values, at most one per
    /// element) are checked; that the values number exactly the bitmask's ones is left to
    /// the reader of the bits, which counts them as it goes (`sparsewire_accel::mmu` does),
    /// so the tile is read once, not twice.
    pub fn raw_tile(&self, t: usize, k: usize) -> Result<Option<RawTile<'_>>, StreamError> {
        let stored = self.tile_stored(t, k)?;
        let m = self.meta(t);
        let Some(layout) = PlaneLayout::for_dtype(m.dtype) else {
            return Ok(None);
        };
        let n = self.grid(t).rect(k as u64).numel() as usize;
        let vb = layout.value_bytes;
        let entries = &m.tiles[k].streams;
        let corrupt = |reason: &'static str| StreamError::Codec {
            tensor: m.name.clone(),
            tile: k,
            source: sparsewire_codec::CodecError::Corrupt { reason },
        };
        let raw_whole = |e: &StreamEntry| e.plane == Plane::Whole && e.codec == StreamCodec::Raw;
        match entries.as_slice() {
            [e] if raw_whole(e) => {
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
                let count = sparsewire_codec::rans::get_varint(&stored[..mlen], &mut pos);
                let bits = &stored[pos..mlen];
                if count != Some(n.div_ceil(8) as u64) || bits.len() != n.div_ceil(8) {
                    return Err(corrupt("raw bitmask of the wrong length"));
                }
                let tail = n % 8;
                if tail != 0 && bits[bits.len() - 1] >> tail != 0 {
                    return Err(corrupt("bitmask padding bits set"));
                }
                let values = &stored[mlen..];
                if values.len() % vb != 0 || values.len() > n * vb {
                    return Err(corrupt("kept values of the wrong length"));
                }
                Ok(Some(RawTile::Sparse { bits, values }))
            }
            _ => Ok(None),
        }
    }

    /// Decodes one tile into a new buffer.
    pub fn decode_tile(&self, t: usize, k: usize) -> Result<Vec<u8>, StreamError> {
        let n = self.tile_decoded_len(t, k)?;
        self.check_limit(n)?;
        let mut out = vec![0u8; n as usize];
        self.decode_tile_into(t, k, &mut out)?;
        Ok(out)
    }

    fn check_limit(&self, needed: u64) -> Result<(), StreamError> {
        if needed > self.limits.max_output_bytes {
            return Err(StreamError::OutputLimit {
                needed,
                limit: self.limits.max_output_bytes,
            });
        }
        Ok(())
    }

    /// Decodes a whole tensor, tiles in parallel.
    pub fn decode_tensor(&self, t: usize) -> Result<Tensor, StreamError>
    where
        B: Sync,
    {
        let m = self.meta(t);
        let len = m.byte_len()?;
        self.check_limit(len)?;
        let mut data = vec![0u8; len as usize];
        let tiles = m.tiles.len();
        if PlaneLayout::for_dtype(m.dtype).is_none() || tiles <= 1 {
            if tiles == 1 {
                self.decode_tile_into(t, 0, &mut data)?;
            }
        } else {
            let grid = self.grid(t);
            let elem = (m.dtype.bits() / 8) as usize;
            if grid.contiguous() {
                let chunk = (grid.tile.rows * grid.cols) as usize * elem;
                data.par_chunks_mut(chunk)
                    .enumerate()
                    .try_for_each(|(k, out)| self.decode_tile_into(t, k, out))?;
            } else {
                let decoded = (0..tiles)
                    .into_par_iter()
                    .map(|k| self.decode_tile(t, k))
                    .collect::<Result<Vec<_>, _>>()?;
                for (k, tile) in decoded.iter().enumerate() {
                    grid.scatter(tile, k as u64, elem, &mut data);
                }
            }
        }
        Ok(Tensor {
            name: m.name.clone(),
            dtype: m.dtype,
            shape: m.shape.clone(),
            data,
        })
    }

    /// Decodes every tensor, with the stream's metadata.
    pub fn decode_all(&self) -> Result<TensorFile, StreamError>
    where
        B: Sync,
    {
        let mut total = 0u64;
        for t in &self.header.tensors {
            total = total.saturating_add(t.byte_len()?);
        }
        self.check_limit(total)?;
        let tensors = (0..self.header.tensors.len())
            .map(|t| self.decode_tensor(t))
            .collect::<Result<_, _>>()?;
        Ok(TensorFile {
            tensors,
            metadata: self.header.user_metadata.clone(),
        })
    }

    /// Total stored bytes (the whole stream).
    pub fn stored_len(&self) -> usize {
        self.bytes.as_ref().len()
    }
}
