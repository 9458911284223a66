//! Writing a stream (SPEC §1): the preamble, then every tensor's tiles as they are coded,
//! then the header (the tile index) and the trailer.
//!
//! Memory stays bounded whatever the input's size: a tensor's bytes are read a tile at a
//! time from wherever they are ([`TensorRef`]: memory or a file range), tiles are coded in
//! batches of a few per thread and written in order, and only the header (a few dozen bytes
//! per tile) is held until the end. Because the index comes after the tiles, nothing is
//! written twice and the output may be a pipe. The bytes written do not depend on the
//! number of threads.

mod tiles;

use crate::{StreamError, END_MAGIC, FORMAT_VERSION, MAGIC, PREAMBLE_BYTES};
use sparsewire_formats::tiling::DEFAULT_TILE_ELEMS;
use sparsewire_formats::{TensorFile, TensorRef};
use sparsewire_metadata::{Header, TensorMeta, TileShape};
pub use sparsewire_sparse::SparseTensor;
use std::collections::HashSet;
use std::io::Write;

/// How to write a stream. `Default` is the recommended configuration.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Elements per tile the default tile shape aims at (at least 1).
    pub tile_elems: u64,
    /// A fixed tile shape for every float tensor (overrides `tile_elems`).
    pub tile_shape: Option<TileShape>,
    /// Try zstd per tensor and keep it where it is smaller than the float planes
    /// (structured tensors) or than raw bytes (non-float tensors).
    pub try_lz: bool,
    /// zstd level for that trial (1..=22).
    pub zstd_level: i32,
    /// Entropy-coded (`Small`) or memory-speed (`Fast`) values and masks.
    pub profile: Profile,
}

impl EncodeOptions {
    /// The ranges the fields document: a typed error, not a division by zero later.
    pub fn check(&self) -> Result<(), StreamError> {
        let bad = |reason| Err(StreamError::InvalidOptions { reason });
        if self.tile_elems == 0 {
            return bad("tile_elems must be at least 1");
        }
        if matches!(self.tile_shape, Some(t) if t.rows == 0 || t.cols == 0) {
            return bad("a tile shape needs at least one row and one column");
        }
        if !(1..=22).contains(&self.zstd_level) {
            return bad("zstd_level must be in 1..=22");
        }
        Ok(())
    }
}

/// How values and masks are coded (SPEC §3.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profile {
    /// Float planes through rANS, the smallest mask encoding: for a slow link.
    #[default]
    Small,
    /// No entropy stage: values stored raw (`ValueCodec::Raw`), sparse tiles as a raw
    /// bitmask then the packed kept values, so the accelerator multiplies straight from the
    /// stored bytes at memory speed.
    Fast,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "small" => Ok(Profile::Small),
            "fast" => Ok(Profile::Fast),
            _ => Err(format!("unknown profile {s:?} (small, fast)")),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Small => "small",
            Profile::Fast => "fast",
        })
    }
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            tile_elems: DEFAULT_TILE_ELEMS,
            tile_shape: None,
            try_lz: true,
            zstd_level: 3,
            profile: Profile::Small,
        }
    }
}

/// Writes a stream to `W`: [`Writer::add`] each tensor, then [`Writer::finish`].
pub struct Writer<W: Write> {
    out: W,
    opts: EncodeOptions,
    tensors: Vec<TensorMeta>,
    names: HashSet<String>,
    data_len: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a stream: writes the preamble.
    pub fn new(mut out: W, opts: EncodeOptions) -> Result<Self, StreamError> {
        opts.check()?;
        let mut pre = [0u8; PREAMBLE_BYTES];
        pre[..8].copy_from_slice(&MAGIC);
        pre[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.write_all(&pre).map_err(StreamError::Write)?;
        Ok(Writer {
            out,
            opts,
            tensors: Vec::new(),
            names: HashSet::new(),
            data_len: 0,
        })
    }

    /// Bytes of tiles written so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    fn claim(&mut self, name: &str) -> Result<(), StreamError> {
        if !self.names.insert(name.to_string()) {
            return Err(StreamError::DuplicateName {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Codes and writes one tensor, losslessly. Returns its header entry.
    pub fn add(&mut self, t: TensorRef<'_>) -> Result<&TensorMeta, StreamError> {
        self.add_with(t, &mut |_| {})
    }

    /// [`Self::add`], calling `progress` with the tensor's bytes consumed so far as its
    /// tiles are written (a batch at a time).
    pub fn add_with(
        &mut self,
        t: TensorRef<'_>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<&TensorMeta, StreamError> {
        let _span = tracing::debug_span!("encode_tensor", name = %t.name).entered();
        self.claim(t.name)?;
        let meta = tiles::dense(self, t, progress)?;
        self.tensors.push(meta);
        Ok(self.tensors.last().expect("pushed"))
    }

    /// Codes and writes one sparsified float tensor: per tile, its mask and its kept
    /// values (SPEC §6). `shape` is the tensor's shape; `s.tile` covers its 2-D view.
    pub fn add_sparse(
        &mut self,
        name: &str,
        shape: &[u64],
        s: &SparseTensor,
    ) -> Result<&TensorMeta, StreamError> {
        self.add_sparse_with(name, shape, s, &mut |_| {})
    }

    /// [`Self::add_sparse`] with progress, as [`Self::add_with`].
    pub fn add_sparse_with(
        &mut self,
        name: &str,
        shape: &[u64],
        s: &SparseTensor,
        progress: &mut dyn FnMut(u64),
    ) -> Result<&TensorMeta, StreamError> {
        let _span = tracing::debug_span!("encode_sparse_tensor", name = %name).entered();
        self.claim(name)?;
        let meta = tiles::sparse(self, name, shape, s, progress)?;
        self.tensors.push(meta);
        Ok(self.tensors.last().expect("pushed"))
    }

    /// Writes the header and the trailer; gives the output back with the header.
    pub fn finish(
        mut self,
        user_metadata: Vec<(String, String)>,
    ) -> Result<(W, Header), StreamError> {
        let header = Header {
            tensors: std::mem::take(&mut self.tensors),
            user_metadata,
            data_len: self.data_len,
        };
        header.validate()?;
        let hbytes = header.to_postcard()?;
        let w = |out: &mut W, b: &[u8]| out.write_all(b).map_err(StreamError::Write);
        w(&mut self.out, &hbytes)?;
        w(&mut self.out, &(hbytes.len() as u64).to_le_bytes())?;
        w(
            &mut self.out,
            &xxhash_rust::xxh3::xxh3_64(&hbytes).to_le_bytes(),
        )?;
        w(&mut self.out, &END_MAGIC)?;
        self.out.flush().map_err(StreamError::Write)?;
        tracing::debug!(
            tensors = header.tensors.len(),
            header_bytes = hbytes.len(),
            data_bytes = self.data_len,
            "stream written"
        );
        Ok((self.out, header))
    }
}

/// Encodes a tensor file held in memory as stream bytes.
pub fn encode(file: &TensorFile, opts: &EncodeOptions) -> Result<Vec<u8>, StreamError> {
    let mut out = Vec::new();
    encode_into(file, opts, &mut out)?;
    Ok(out)
}

/// [`encode`] into `out`, which is cleared first and keeps its allocation: a sender that
/// encodes again and again (a host serving tiles, a benchmark) writes into pages it has
/// already touched instead of faulting in a fresh buffer each time (on MiniLM bf16 the
/// kernel zeroing those pages was 13% of an encode's samples). On an error `out` is
/// empty.
pub fn encode_into(
    file: &TensorFile,
    opts: &EncodeOptions,
    out: &mut Vec<u8>,
) -> Result<(), StreamError> {
    let mut buf = std::mem::take(out);
    buf.clear();
    buf.reserve(out_capacity(file));
    let mut w = Writer::new(buf, opts.clone())?;
    for t in &file.tensors {
        w.add(t.as_ref())?;
    }
    *out = w.finish(file.metadata.clone())?.0;
    Ok(())
}

/// Room for the stream of `file` at up to its raw size (the usual case, since every codec
/// falls back to raw): growing the output by doubling instead copies the stream several
/// times and faults in fresh pages at every step.
pub fn out_capacity(file: &TensorFile) -> usize {
    let raw: usize = file.tensors.iter().map(|t| t.data.len()).sum();
    raw.saturating_add(raw / 64).saturating_add(1 << 16)
}

/// Encodes a tensor file some of whose tensors are sparsified (`sparse[i]`, when present,
/// replaces tensor `i`'s values).
pub fn encode_sparse(
    file: &TensorFile,
    sparse: &[Option<SparseTensor>],
    opts: &EncodeOptions,
) -> Result<Vec<u8>, StreamError> {
    let mut w = Writer::new(Vec::with_capacity(out_capacity(file)), opts.clone())?;
    for (i, t) in file.tensors.iter().enumerate() {
        match sparse.get(i).and_then(Option::as_ref) {
            Some(s) => w.add_sparse(&t.name, &t.shape, s)?,
            None => w.add(t.as_ref())?,
        };
    }
    Ok(w.finish(file.metadata.clone())?.0)
}
