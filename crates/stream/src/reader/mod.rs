//! Reading a stream: validate once (SPEC §5), then hand out tiles.
//!
//! Opening reads the preamble, the trailer and the header, nothing else; validating the
//! index needs no tile. Each tile is read and checksummed when it is asked for.

mod extract;
mod tile;

pub use tile::RawTile;

use crate::source::Source;
use crate::{StreamError, END_MAGIC, FORMAT_VERSION, MAGIC, PREAMBLE_BYTES, TRAILER_BYTES};
use sparsewire_codec::{Kernel, TensorDecoder, TensorModels};
use sparsewire_formats::tiling::TileGrid;
use sparsewire_metadata::{view_2d, Header, TensorMeta, MAX_HEADER_BYTES};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Bounds on what decoding may produce and allocate.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most bytes one decode call (a tensor, or all of them) may output.
    pub max_output_bytes: u64,
    /// Largest buffer one decode step may allocate (a tile, a row block, or a tensor for a
    /// method that needs it whole): a hostile stream can claim a huge tile in a few bytes,
    /// and is refused before anything is allocated.
    pub max_memory_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // Output: enough for a 7B-parameter model in bf16; raise it for larger ones.
        DecodeLimits {
            max_output_bytes: 16 << 30,
            max_memory_bytes: default_memory_budget(),
        }
    }
}

/// A quarter of physical memory (from /proc/meminfo), or 4 GiB where it cannot be read.
pub fn default_memory_budget() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    total_kib.map_or(4 << 30, |k| k * 1024 / 4)
}

/// A validated stream over a [`Source`]: `Vec<u8>`, `&[u8]`, a memory map, or a
/// [`crate::FileSource`]. `Send + Sync`, so many threads can decode tiles of one reader.
#[derive(Debug)]
pub struct Reader<S> {
    src: S,
    header: Header,
    header_len: u64,
    models: Vec<TensorModels>,
    decoders: Vec<OnceLock<TensorDecoder>>,
    /// The decode kernel; `None`: the one [`Kernel::chosen`] picks.
    kernel: Option<Kernel>,
    /// Per tensor, per tile: checksum already verified (for sources that cannot change).
    verified: Vec<Vec<AtomicBool>>,
    limits: DecodeLimits,
}

fn need(what: &'static str, needed: u64, available: u64) -> Result<(), StreamError> {
    if needed > available {
        return Err(StreamError::Truncated {
            what,
            needed,
            available,
        });
    }
    Ok(())
}

impl<S: Source> Reader<S> {
    /// Validates a stream with the default limits.
    pub fn new(src: S) -> Result<Self, StreamError> {
        Self::with_limits(src, DecodeLimits::default())
    }

    /// Decodes with `kernel` instead of the one [`Kernel::chosen`] picks (the scalar
    /// reference where the CPU lacks it): every kernel gives the same bytes, so this is
    /// for tests and benchmarks.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self.decoders = self.decoders.iter().map(|_| OnceLock::new()).collect();
        self
    }

    /// The kernel this reader decodes with.
    pub fn kernel(&self) -> Kernel {
        match self.kernel {
            Some(k) if k.available() => k,
            Some(_) => Kernel::Scalar,
            None => Kernel::chosen(),
        }
    }

    fn read(&self, offset: u64, len: usize, what: &str) -> Result<Cow<'_, [u8]>, StreamError> {
        read_src(&self.src, offset, len, what)
    }

    /// Validates a stream: preamble, trailer, header checksum and contents, and that the
    /// tiles tile the data section exactly (no holes, no overlaps, no trailing bytes).
    pub fn with_limits(src: S, limits: DecodeLimits) -> Result<Self, StreamError> {
        let len = src.size();
        need(
            "the preamble and trailer",
            (PREAMBLE_BYTES + TRAILER_BYTES) as u64,
            len,
        )?;
        let pre = read_src(&src, 0, PREAMBLE_BYTES, "the preamble")?;
        if pre[..8] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
        let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
        let version = u32_at(&pre, 8);
        if version != FORMAT_VERSION {
            return Err(StreamError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let flags = u32_at(&pre, 12);
        if flags != 0 {
            return Err(StreamError::ReservedFlags { flags });
        }
        if pre[16..].iter().any(|&x| x != 0) {
            return Err(StreamError::BadPadding);
        }
        drop(pre);
        let tr = read_src(
            &src,
            len - TRAILER_BYTES as u64,
            TRAILER_BYTES,
            "the trailer",
        )?;
        if tr[16..24] != END_MAGIC {
            return Err(StreamError::NoTrailer);
        }
        let header_len = u64_at(&tr, 0);
        let expected = u64_at(&tr, 8);
        drop(tr);
        if header_len > MAX_HEADER_BYTES {
            return Err(StreamError::HeaderTooLarge {
                len: header_len,
                cap: MAX_HEADER_BYTES,
            });
        }
        let room = len - (PREAMBLE_BYTES + TRAILER_BYTES) as u64;
        need("the header", header_len, room)?;
        let header_start = len - TRAILER_BYTES as u64 - header_len;
        let hbytes = read_src(&src, header_start, header_len as usize, "the header")?;
        let got = xxhash_rust::xxh3::xxh3_64(&hbytes);
        if got != expected {
            return Err(StreamError::HeaderChecksum { expected, got });
        }
        let header = Header::from_postcard(&hbytes)?;
        drop(hbytes);
        let present = header_start - PREAMBLE_BYTES as u64;
        if header.data_len != present {
            return Err(StreamError::DataLength {
                declared: header.data_len,
                present,
            });
        }
        check_index(&header)?;
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
            src,
            header,
            header_len,
            models,
            decoders,
            kernel: None,
            verified,
            limits,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes of the postcard header.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// The source of the bytes.
    pub fn source(&self) -> &S {
        &self.src
    }

    /// The decode limits.
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Index of the tensor called `name`.
    pub fn tensor_index(&self, name: &str) -> Result<usize, StreamError> {
        self.header
            .tensor(name)
            .map(|(i, _)| i)
            .ok_or_else(|| StreamError::NoSuchTensor { name: name.into() })
    }

    /// Tensor `t`'s header entry.
    pub fn meta(&self, t: usize) -> Result<&TensorMeta, StreamError> {
        self.header
            .tensors
            .get(t)
            .ok_or_else(|| StreamError::NoSuchTensor {
                name: format!("#{t}"),
            })
    }

    /// The tile grid of tensor `t` (a single tile for non-float dtypes).
    pub fn grid(&self, t: usize) -> TileGrid {
        let m = &self.header.tensors[t];
        let n = m.numel().expect("validated");
        let (rows, cols) = view_2d(&m.shape, n);
        TileGrid::new(rows, cols, m.tile_shape)
    }

    fn check_tile(&self, t: usize, k: usize) -> Result<&TensorMeta, StreamError> {
        let m = self.meta(t)?;
        if k >= m.tiles.len() {
            return Err(StreamError::NoSuchTile {
                tensor: m.name.clone(),
                tile: k,
                tiles: m.tiles.len(),
            });
        }
        Ok(m)
    }

    /// The stored bytes of a tile, after checking its checksum (once for a source that
    /// cannot change; on every read of a file).
    pub fn tile_stored(&self, t: usize, k: usize) -> Result<Cow<'_, [u8]>, StreamError> {
        let m = self.check_tile(t, k)?;
        let e = &m.tiles[k];
        let stored = self.read(PREAMBLE_BYTES as u64 + e.offset, e.len as usize, "a tile")?;
        let immutable = self.src.immutable();
        if immutable && self.verified[t][k].load(Ordering::Relaxed) {
            return Ok(stored);
        }
        let got = crate::tile_checksum(&stored, t, k);
        if got != e.checksum {
            return Err(StreamError::ChecksumMismatch {
                tensor: m.name.clone(),
                tile: k,
                expected: e.checksum,
                got,
            });
        }
        if immutable {
            self.verified[t][k].store(true, Ordering::Relaxed);
        }
        Ok(stored)
    }

    fn decoder(&self, t: usize) -> &TensorDecoder {
        self.decoders[t].get_or_init(|| match self.kernel {
            Some(k) => self.models[t].decoder_with(k),
            None => self.models[t].decoder(),
        })
    }

    /// Refuses a buffer of `needed` bytes for tensor `t` over the memory budget
    /// ([`DecodeLimits::max_memory_bytes`]); for callers that allocate per tile or block.
    pub fn check_memory(&self, t: usize, needed: u64) -> Result<(), StreamError> {
        if needed > self.limits.max_memory_bytes {
            return Err(StreamError::MemoryLimit {
                tensor: self
                    .header
                    .tensors
                    .get(t)
                    .map_or_else(String::new, |m| m.name.clone()),
                needed,
                limit: self.limits.max_memory_bytes,
            });
        }
        Ok(())
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

    /// Bytes every tensor decodes to, checked against the decode limit: for a consumer
    /// that streams tensors out and must refuse an oversized claim before writing anything.
    pub fn check_decoded_len(&self) -> Result<u64, StreamError> {
        let mut total = 0u64;
        for t in &self.header.tensors {
            total = total.saturating_add(t.byte_len()?);
        }
        self.check_limit(total)?;
        Ok(total)
    }

    /// Total stored bytes (the whole stream).
    pub fn stored_len(&self) -> u64 {
        self.src.size()
    }
}

fn read_src<'a, S: Source>(
    src: &'a S,
    offset: u64,
    len: usize,
    what: &str,
) -> Result<Cow<'a, [u8]>, StreamError> {
    src.read_at(offset, len)
        .map_err(|source| StreamError::Read {
            what: what.to_string(),
            source,
        })
}

/// Tiles are back to back in tensor order, each inside the data section, lengths add up.
fn check_index(header: &Header) -> Result<(), StreamError> {
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
    Ok(())
}
