//! The lossless value codec (docs/SPEC.md §4): float tiles in, coded streams out, bit-exact.
//!
//! A float value is split into planes by its [`PlaneLayout`]:
//!
//! | dtype | head (rANS)                 | tail bits (packed) | byte planes (rANS or raw) |
//! |-------|-----------------------------|--------------------|---------------------------|
//! | BF16  | sign, exponent, 2 mantissa  | 5                  | none                      |
//! | F16   | sign, exponent, 2 mantissa  | 0                  | mantissa bits 0..8        |
//! | F32   | sign, exponent, 2 mantissa  | 5                  | mantissa bits 8..16, 0..8 |
//!
//! The head is one symbol per value, so the exponent is coded jointly with the sign and the
//! top two mantissa bits: the mantissa is conditioned on the exponent (inside an octave a
//! bell-shaped weight distribution is not flat), and the sign on the exponent (post-GELU
//! activations are mostly small negatives). On MiniLM bf16 this is 10.55 bits per value
//! against 10.61 for the order-0 sign+exponent byte plus raw mantissa that ZipNN-style byte
//! grouping reaches (docs/ARCHITECTURE.md has the measurements).
//!
//! Each plane of each tile is stored as the smallest of: raw, constant, rANS with the
//! tensor's shared model ([`TensorModels`], fitted on the whole tensor and stored once in
//! the header), or rANS with a model of its own serialised in front of the stream (pays on
//! tensors whose statistics drift, such as an embedding table). Tiles share nothing but the
//! models, so any tile decodes on its own.
//!
//! Non-float tensors, and float tensors where it wins on a sample, go through a whole-tile
//! codec instead: raw or zstd ([`encode_whole`]).
//!
//! The `portable` feature builds without the AVX2 rANS kernel (and without any `unsafe`):
//! the scalar decoder, which the kernel is tested against, runs everywhere.
// `simd.rs` alone uses unsafe (AVX2 intrinsics), each block with a SAFETY note.
#![cfg_attr(not(feature = "portable"), deny(unsafe_code))]
#![cfg_attr(feature = "portable", forbid(unsafe_code))]

pub mod bits;
pub mod rans;
#[cfg(not(feature = "portable"))]
mod simd;

use rans::{DecodeTable, Model};
pub use sparsewire_metadata::{Dtype, Plane, StreamCodec, StreamEntry, ValueCodec};

/// Errors of the value codec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    #[error("corrupt stream: {reason}")]
    Corrupt { reason: &'static str },
    #[error("entropy model does not parse: {reason}")]
    BadModel { reason: &'static str },
    #[error("symbol {symbol} has no probability in the model")]
    SymbolNotInModel { symbol: u32 },
    #[error("stream for plane {plane:?} uses codec {codec:?}, which that plane does not allow")]
    CodecNotAllowed { plane: Plane, codec: StreamCodec },
    #[error("tile streams do not match the plane layout: {reason}")]
    StreamLayout { reason: String },
    #[error("stream for plane {plane:?} is {got} bytes, {expected} expected")]
    StreamLength {
        plane: Plane,
        expected: u64,
        got: u64,
    },
    #[error("shared model {model} is missing or empty")]
    MissingModel { model: u16 },
    #[error("zstd: {reason}")]
    Zstd { reason: String },
}

/// How the bits of one float dtype are split into planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Bytes per value (2 or 4).
    pub value_bytes: usize,
    /// Width of the head symbol: sign, exponent and top mantissa bits.
    pub head_bits: u32,
    /// Width of the packed tail between head and byte planes (0..=8).
    pub tail_bits: u32,
    /// Number of low byte planes.
    pub byte_planes: usize,
}

impl PlaneLayout {
    /// The layout of a float dtype, `None` for dtypes without one.
    pub fn for_dtype(dtype: Dtype) -> Option<PlaneLayout> {
        match dtype {
            Dtype::BF16 => Some(PlaneLayout {
                value_bytes: 2,
                head_bits: 11,
                tail_bits: 5,
                byte_planes: 0,
            }),
            Dtype::F16 => Some(PlaneLayout {
                value_bytes: 2,
                head_bits: 8,
                tail_bits: 0,
                byte_planes: 1,
            }),
            Dtype::F32 => Some(PlaneLayout {
                value_bytes: 4,
                head_bits: 11,
                tail_bits: 5,
                byte_planes: 2,
            }),
            _ => None,
        }
    }

    fn head_shift(&self) -> u32 {
        self.value_bytes as u32 * 8 - self.head_bits
    }

    fn tail_shift(&self) -> u32 {
        self.byte_planes as u32 * 8
    }

    /// The head symbol of one little-endian value (`value_bytes` bytes).
    pub fn head_of(&self, v: &[u8]) -> u16 {
        (load(v) >> self.head_shift()) as u16
    }

    /// Model index of the head in [`TensorModels`]; byte plane `k` is `1 + k`.
    pub const HEAD_MODEL: u16 = 0;

    /// The planes of a tile, in stream order.
    pub fn planes(&self) -> Vec<Plane> {
        let mut p = vec![Plane::Head];
        if self.tail_bits > 0 {
            p.push(Plane::TailBits);
        }
        p.extend((0..self.byte_planes).rev().map(|k| Plane::Byte(k as u8)));
        p
    }
}

/// Symbol histograms of the planes of some values; summed over a tensor to fit its models.
#[derive(Debug, Clone)]
pub struct PlaneHistograms {
    layout: PlaneLayout,
    head: Vec<u64>,
    bytes: Vec<Vec<u64>>,
}

impl PlaneHistograms {
    pub fn new(layout: PlaneLayout) -> Self {
        PlaneHistograms {
            layout,
            head: vec![0; 1 << layout.head_bits],
            bytes: vec![vec![0; 256]; layout.byte_planes],
        }
    }

    /// Adds little-endian values (`values.len()` a multiple of the value size).
    pub fn add(&mut self, values: &[u8]) {
        let l = self.layout;
        let head: Vec<u16> = values
            .chunks_exact(l.value_bytes)
            .map(|v| l.head_of(v))
            .collect();
        for (a, b) in self.head.iter_mut().zip(histogram(&head, 1 << l.head_bits)) {
            *a += b;
        }
        for (k, h) in self.bytes.iter_mut().enumerate() {
            let plane: Vec<u8> = values.chunks_exact(l.value_bytes).map(|v| v[k]).collect();
            for (a, b) in h.iter_mut().zip(histogram(&plane, 256)) {
                *a += b;
            }
        }
    }

    /// Adds another histogram of the same layout.
    pub fn merge(mut self, other: &PlaneHistograms) -> Self {
        for (a, b) in self.head.iter_mut().zip(&other.head) {
            *a += b;
        }
        for (ha, hb) in self.bytes.iter_mut().zip(&other.bytes) {
            for (a, b) in ha.iter_mut().zip(hb) {
                *a += b;
            }
        }
        self
    }
}

/// Symbol counts. Four interleaved sub-histograms: runs of one symbol (common in a head
/// plane) would otherwise serialise on a single counter through memory.
fn histogram<S: Copy + Into<u32>>(symbols: &[S], alphabet: usize) -> Vec<u64> {
    let mut total = vec![0u64; alphabet];
    let mut sub = vec![[0u32; 4]; alphabet];
    // u32 counters: flush before any could overflow.
    for block in symbols.chunks(1 << 30) {
        let mut quads = block.chunks_exact(4);
        for q in &mut quads {
            sub[q[0].into() as usize][0] += 1;
            sub[q[1].into() as usize][1] += 1;
            sub[q[2].into() as usize][2] += 1;
            sub[q[3].into() as usize][3] += 1;
        }
        for &s in quads.remainder() {
            sub[s.into() as usize][0] += 1;
        }
        for (t, s) in total.iter_mut().zip(sub.iter_mut()) {
            *t += s.iter().map(|&c| c as u64).sum::<u64>();
            *s = [0; 4];
        }
    }
    total
}

#[inline]
fn load(v: &[u8]) -> u32 {
    match v.len() {
        2 => u16::from_le_bytes([v[0], v[1]]) as u32,
        _ => u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
    }
}

/// The entropy models a tensor's tiles share: the head's and each byte plane's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorModels {
    /// Index 0 the head, `1 + k` byte plane `k`; `None` where a plane is constant.
    pub models: Vec<Option<Model>>,
}

impl TensorModels {
    /// Fits the models on a tensor's histograms.
    pub fn fit(h: &PlaneHistograms) -> Self {
        let mut models = vec![Model::from_counts(&h.head)];
        models.extend(h.bytes.iter().map(|b| Model::from_counts(b)));
        TensorModels { models }
    }

    /// Serialised form for the header (`TensorMeta::models`); an empty entry is no model.
    pub fn to_bytes(&self) -> Vec<Vec<u8>> {
        self.models
            .iter()
            .map(|m| m.as_ref().map(Model::to_bytes).unwrap_or_default())
            .collect()
    }

    /// Parses models from the header.
    pub fn from_bytes(models: &[Vec<u8>]) -> Result<Self, CodecError> {
        let models = models
            .iter()
            .map(|b| {
                if b.is_empty() {
                    return Ok(None);
                }
                let (m, used) = Model::from_bytes(b)?;
                if used != b.len() {
                    return Err(CodecError::BadModel {
                        reason: "trailing bytes after the model",
                    });
                }
                Ok(Some(m))
            })
            .collect::<Result<_, _>>()?;
        Ok(TensorModels { models })
    }

    /// Builds the decode tables once, for all tiles of the tensor.
    pub fn decoder(&self) -> TensorDecoder {
        TensorDecoder {
            tables: self
                .models
                .iter()
                .map(|m| m.as_ref().map(Model::decode_table))
                .collect(),
        }
    }

    /// The model with this id, if present.
    pub fn get(&self, id: u16) -> Option<&Model> {
        self.models.get(id as usize).and_then(Option::as_ref)
    }
}

/// Decode tables of a tensor's shared models.
#[derive(Debug, Clone)]
pub struct TensorDecoder {
    tables: Vec<Option<DecodeTable>>,
}

impl TensorDecoder {
    /// The table of shared model `model`; an error when the header has no such model.
    fn table(&self, model: u16) -> Result<&DecodeTable, CodecError> {
        self.tables
            .get(model as usize)
            .and_then(Option::as_ref)
            .ok_or(CodecError::MissingModel { model })
    }
}

/// One coded stream of a tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedStream {
    pub plane: Plane,
    pub codec: StreamCodec,
    pub bytes: Vec<u8>,
}

impl EncodedStream {
    /// The header entry of this stream.
    pub fn entry(&self) -> StreamEntry {
        StreamEntry {
            plane: self.plane,
            codec: self.codec,
            len: self.bytes.len() as u64,
        }
    }
}

/// A tile's values split into planes: head symbols, tail bits (empty without a tail), and
/// the low byte planes (index `k` = byte `k`).
struct Split {
    head: Vec<u16>,
    tail: Vec<u8>,
    bytes: Vec<Vec<u8>>,
}

/// Splits little-endian values into planes (plain streaming loops; counting comes after).
fn split(layout: PlaneLayout, values: &[u8]) -> Split {
    let n = values.len() / layout.value_bytes;
    let hs = layout.head_shift();
    let ts = layout.tail_shift();
    let tail_mask = (1u32 << layout.tail_bits) - 1;
    let mut head = vec![0u16; n];
    let mut tail = vec![0u8; if layout.tail_bits > 0 { n } else { 0 }];
    let mut bytes: Vec<Vec<u8>> = vec![vec![0u8; n]; layout.byte_planes];
    for (h, v) in head.iter_mut().zip(values.chunks_exact(layout.value_bytes)) {
        *h = (load(v) >> hs) as u16;
    }
    if layout.tail_bits > 0 {
        for (t, v) in tail.iter_mut().zip(values.chunks_exact(layout.value_bytes)) {
            *t = ((load(v) >> ts) & tail_mask) as u8;
        }
    }
    for (k, b) in bytes.iter_mut().enumerate() {
        for (o, v) in b.iter_mut().zip(values.chunks_exact(layout.value_bytes)) {
            *o = v[k];
        }
    }
    Split { head, tail, bytes }
}

/// Order-0 entropy of a histogram, in bits (total over all its symbols).
pub fn entropy_bits(hist: &[u64]) -> f64 {
    let n: u64 = hist.iter().sum();
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64) * (c as f64 / n as f64).log2())
        .sum()
}

/// The order-0 entropy of each plane of `values`, in bytes, in stream order (head, tail
/// bits when the layout has them, byte planes most significant first): what `inspect`
/// compares stored bytes with.
pub fn plane_entropy_bytes(layout: PlaneLayout, values: &[u8]) -> Vec<f64> {
    let Split { head, tail, bytes } = split(layout, values);
    let mut out = vec![entropy_bits(&histogram(&head, 1 << layout.head_bits)) / 8.0];
    if layout.tail_bits > 0 {
        out.push(entropy_bits(&histogram(&tail, 1 << layout.tail_bits)) / 8.0);
    }
    out.extend(
        bytes
            .iter()
            .rev()
            .map(|b| entropy_bits(&histogram(b, 256)) / 8.0),
    );
    out
}

/// Splits float values (little-endian, `layout.value_bytes` each) into planes and codes
/// each plane the cheapest way.
pub fn encode_planes(
    layout: PlaneLayout,
    values: &[u8],
    models: &TensorModels,
) -> Result<Vec<EncodedStream>, CodecError> {
    let n = values.len() / layout.value_bytes;
    let Split { head, tail, bytes } = split(layout, values);
    let head_hist = histogram(&head, 1 << layout.head_bits);

    let mut streams = Vec::with_capacity(2 + layout.byte_planes);
    streams.push(code_symbols(
        Plane::Head,
        &head,
        &head_hist,
        models.get(PlaneLayout::HEAD_MODEL),
        PlaneLayout::HEAD_MODEL,
        |out| {
            for h in &head {
                out.extend_from_slice(&h.to_le_bytes());
            }
        },
    )?);
    if layout.tail_bits > 0 {
        let first = tail.first().copied().unwrap_or(0);
        let (codec, bytes) = if tail.iter().all(|&t| t == first) {
            (
                StreamCodec::Constant {
                    symbol: first as u16,
                },
                Vec::new(),
            )
        } else {
            let mut b = Vec::with_capacity(bits::packed_len(n, layout.tail_bits));
            bits::pack(&tail, layout.tail_bits, &mut b);
            (StreamCodec::Raw, b)
        };
        streams.push(EncodedStream {
            plane: Plane::TailBits,
            codec,
            bytes,
        });
    }
    for k in (0..layout.byte_planes).rev() {
        let plane = &bytes[k];
        let hist = histogram(plane, 256);
        let id = 1 + k as u16;
        streams.push(code_symbols(
            Plane::Byte(k as u8),
            plane,
            &hist,
            models.get(id),
            id,
            |out| out.extend_from_slice(plane),
        )?);
    }
    Ok(streams)
}

/// Codes one plane as the smallest of constant, raw, shared-model and own-model rANS.
fn code_symbols<S: Copy + Into<u32>>(
    plane: Plane,
    symbols: &[S],
    hist: &[u64],
    shared: Option<&Model>,
    shared_id: u16,
    raw: impl FnOnce(&mut Vec<u8>),
) -> Result<EncodedStream, CodecError> {
    let present: Vec<usize> = hist
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(s, _)| s)
        .take(2)
        .collect();
    if present.len() <= 1 {
        return Ok(EncodedStream {
            plane,
            codec: StreamCodec::Constant {
                symbol: present.first().copied().unwrap_or(0) as u16,
            },
            bytes: Vec::new(),
        });
    }
    let raw_bytes = {
        let width = if hist.len() > 256 { 16 } else { 8 };
        (symbols.len() * width / 8) as f64
    };
    let overhead = rans::overhead_bytes(symbols.len()) as f64 + 1.0;
    let shared_bytes = shared
        .and_then(|m| m.cost_bits(hist))
        .map(|b| b / 8.0 + overhead);
    // An own model costs at least the entropy plus a byte per symbol it lists; skip
    // fitting it when the shared model is already within that.
    let present = hist.iter().filter(|&&c| c > 0).count() as f64;
    let entropy_bytes = entropy_bits(hist) / 8.0;
    let local = match shared_bytes {
        Some(s) if s <= entropy_bytes + overhead + present => None,
        _ => {
            let (m, b) = Model::best_for(hist).expect("two symbols are present");
            let cost = m.cost_bits(hist).expect("own model codes its data") / 8.0
                + overhead
                + b.len() as f64;
            Some((m, b, cost))
        }
    };
    let best_rans = match (shared_bytes, &local) {
        (Some(s), Some((_, _, l))) if s <= *l => (s, shared),
        (Some(s), None) => (s, shared),
        (_, Some((_, _, l))) => (*l, None),
        (None, None) => unreachable!("no shared model means an own model was fitted"),
    };
    let mut bytes = Vec::new();
    let codec = if best_rans.0 >= raw_bytes {
        raw(&mut bytes);
        StreamCodec::Raw
    } else if let Some(m) = best_rans.1 {
        rans::encode(symbols, m, &mut bytes)?;
        StreamCodec::RansShared { model: shared_id }
    } else {
        let (m, b, _) = local.expect("chosen, so fitted");
        bytes.extend_from_slice(&b);
        rans::encode(symbols, &m, &mut bytes)?;
        StreamCodec::RansLocal
    };
    Ok(EncodedStream {
        plane,
        codec,
        bytes,
    })
}

/// A plane symbol type: `u16` heads, `u8` byte planes.
trait Symbol: Copy + TryFrom<u64> + TryFrom<u16> {
    /// Bytes of one symbol in a raw stream (little-endian).
    const BYTES: usize;
    fn read(b: &[u8]) -> Self;
}

impl Symbol for u8 {
    const BYTES: usize = 1;
    fn read(b: &[u8]) -> Self {
        b[0]
    }
}

impl Symbol for u16 {
    const BYTES: usize = 2;
    fn read(b: &[u8]) -> Self {
        u16::from_le_bytes([b[0], b[1]])
    }
}

/// A raw stream must be exactly the size its symbols take.
fn expect_len(plane: Plane, s: &[u8], expected: usize) -> Result<(), CodecError> {
    if s.len() != expected {
        return Err(CodecError::StreamLength {
            plane,
            expected: expected as u64,
            got: s.len() as u64,
        });
    }
    Ok(())
}

/// Values decoded per step: every plane's chunk buffer stays in L1.
const CHUNK: usize = 2048;

/// Where one plane's symbols come from while a tile decodes.
enum Source<'a> {
    Constant(u16),
    Raw(&'a [u8]),
    Shared(rans::Decoder<'a>, &'a DecodeTable),
    Local(rans::Decoder<'a>, Box<DecodeTable>),
}

impl<'a> Source<'a> {
    /// Opens a head or byte-plane stream of `n` symbols of type `S`.
    fn open<S: Symbol>(
        e: &StreamEntry,
        s: &'a [u8],
        decoder: &'a TensorDecoder,
        n: usize,
    ) -> Result<Self, CodecError> {
        Ok(match e.codec {
            StreamCodec::Constant { symbol } => {
                S::try_from(symbol).map_err(|_| CodecError::Corrupt {
                    reason: "constant symbol wider than the plane",
                })?;
                Source::Constant(symbol)
            }
            StreamCodec::Raw => {
                expect_len(e.plane, s, n * S::BYTES)?;
                Source::Raw(s)
            }
            StreamCodec::RansShared { model } => {
                let table = decoder.table(model)?;
                Source::Shared(rans::Decoder::new(s)?, table)
            }
            StreamCodec::RansLocal => {
                let (m, used) = Model::from_bytes(s)?;
                Source::Local(rans::Decoder::new(&s[used..])?, Box::new(m.decode_table()))
            }
            codec => {
                return Err(CodecError::CodecNotAllowed {
                    plane: e.plane,
                    codec,
                })
            }
        })
    }

    /// Fills `out` with the symbols `first..first + out.len()`.
    fn fill<S: Symbol>(&mut self, first: usize, out: &mut [S]) -> Result<(), CodecError> {
        match self {
            Source::Constant(sym) => {
                let v = S::try_from(*sym).unwrap_or_else(|_| unreachable!("checked at open"));
                out.fill(v);
            }
            Source::Raw(bytes) => {
                let b = &bytes[first * S::BYTES..(first + out.len()) * S::BYTES];
                for (o, c) in out.iter_mut().zip(b.chunks_exact(S::BYTES)) {
                    *o = S::read(c);
                }
            }
            Source::Shared(d, t) => d.decode(t, out)?,
            Source::Local(d, t) => d.decode(t, out)?,
        }
        Ok(())
    }

    /// Symbols this source can produce (0 for raw: checked as it is read).
    fn alphabet(&self) -> usize {
        match self {
            Source::Constant(sym) => *sym as usize + 1,
            Source::Raw(_) => 0,
            Source::Shared(_, t) => t.alphabet(),
            Source::Local(_, t) => t.alphabet(),
        }
    }

    fn finish(self) -> Result<(), CodecError> {
        match self {
            Source::Shared(d, _) | Source::Local(d, _) => d.finish(),
            _ => Ok(()),
        }
    }
}

/// Decodes the streams of a float-plane tile into `out` (`n * value_bytes` bytes, little
/// endian). `data` holds the streams back to back as `entries` describe them.
pub fn decode_planes(
    layout: PlaneLayout,
    entries: &[StreamEntry],
    data: &[u8],
    decoder: &TensorDecoder,
    out: &mut [u8],
) -> Result<(), CodecError> {
    let n = out.len() / layout.value_bytes;
    let planes = layout.planes();
    if entries.len() != planes.len() || entries.iter().zip(&planes).any(|(e, p)| e.plane != *p) {
        return Err(CodecError::StreamLayout {
            reason: format!(
                "expected planes {planes:?}, found {:?}",
                entries.iter().map(|e| e.plane).collect::<Vec<_>>()
            ),
        });
    }
    let mut streams = Vec::with_capacity(entries.len());
    let mut pos = 0usize;
    for e in entries {
        let end = usize::try_from(e.len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&end| end <= data.len())
            .ok_or(CodecError::StreamLength {
                plane: e.plane,
                expected: e.len,
                got: (data.len() - pos) as u64,
            })?;
        streams.push(&data[pos..end]);
        pos = end;
    }
    if pos != data.len() {
        return Err(CodecError::StreamLayout {
            reason: format!("{} bytes after the last stream", data.len() - pos),
        });
    }

    let mut head = Source::open::<u16>(&entries[0], streams[0], decoder, n)?;
    if head.alphabet() > 1 << layout.head_bits {
        return Err(CodecError::Corrupt {
            reason: "head symbol wider than the layout",
        });
    }
    let mut idx = 1;
    let mut tail: Option<Source> = None;
    if layout.tail_bits > 0 {
        let (e, s) = (&entries[idx], streams[idx]);
        idx += 1;
        tail = Some(match e.codec {
            StreamCodec::Constant { symbol } if (symbol as u32) >> layout.tail_bits == 0 => {
                Source::Constant(symbol)
            }
            StreamCodec::Raw => {
                expect_len(e.plane, s, bits::packed_len(n, layout.tail_bits))?;
                Source::Raw(s)
            }
            codec => {
                return Err(CodecError::CodecNotAllowed {
                    plane: e.plane,
                    codec,
                })
            }
        });
    }
    // Byte planes come most significant first in the stream; index them by k.
    let mut bytes: Vec<Source> = Vec::with_capacity(layout.byte_planes);
    for i in idx..entries.len() {
        bytes.push(Source::open::<u8>(&entries[i], streams[i], decoder, n)?);
    }
    bytes.reverse();

    let mut hbuf = [0u16; CHUNK];
    let mut tbuf = [0u8; CHUNK];
    let mut bbuf = [[0u8; CHUNK]; 2];
    let hs = layout.head_shift();
    let mut first = 0;
    while first < n {
        let c = CHUNK.min(n - first);
        head.fill(first, &mut hbuf[..c])?;
        if matches!(head, Source::Raw(_))
            && hbuf[..c]
                .iter()
                .any(|&h| (h as u32) >> layout.head_bits != 0)
        {
            return Err(CodecError::Corrupt {
                reason: "head symbol wider than the layout",
            });
        }
        let o = &mut out[first * layout.value_bytes..(first + c) * layout.value_bytes];
        // BF16 with packed tails: unpack and merge in one pass (the hot case).
        if let (2, 0, 5, Some(Source::Raw(packed))) = (
            layout.value_bytes,
            layout.byte_planes,
            layout.tail_bits,
            &tail,
        ) {
            let start = first * 5 / 8;
            let packed = &packed[start..start + bits::packed_len(c, 5)];
            merge_bf16_packed(&hbuf[..c], packed, o);
            first += c;
            continue;
        }
        match &tail {
            Some(Source::Constant(sym)) => tbuf[..c].fill(*sym as u8),
            Some(Source::Raw(packed)) => {
                let start = first * layout.tail_bits as usize / 8;
                let len = bits::packed_len(c, layout.tail_bits);
                bits::unpack(
                    &packed[start..start + len],
                    layout.tail_bits,
                    &mut tbuf[..c],
                );
            }
            _ => {}
        }
        for (src, buf) in bytes.iter_mut().zip(bbuf.iter_mut()) {
            src.fill(first, &mut buf[..c])?;
        }
        match (layout.value_bytes, layout.byte_planes) {
            // BF16: head << 5 | tail.
            (2, 0) => {
                for ((o, &h), &tl) in o.chunks_exact_mut(2).zip(&hbuf[..c]).zip(&tbuf[..c]) {
                    o.copy_from_slice(&((h << hs) | tl as u16).to_le_bytes());
                }
            }
            // F16: head << 8 | byte 0.
            (2, _) => {
                for ((o, &h), &b) in o.chunks_exact_mut(2).zip(&hbuf[..c]).zip(&bbuf[0][..c]) {
                    o.copy_from_slice(&((h << hs) | b as u16).to_le_bytes());
                }
            }
            // F32: head << 21 | tail << 16 | byte 1 << 8 | byte 0.
            _ => {
                let ts = layout.tail_shift();
                for (i, o) in o.chunks_exact_mut(4).enumerate() {
                    let v = (hbuf[i] as u32) << hs
                        | (tbuf[i] as u32) << ts
                        | (bbuf[1][i] as u32) << 8
                        | bbuf[0][i] as u32;
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        first += c;
    }
    head.finish()?;
    for b in bytes {
        b.finish()?;
    }
    Ok(())
}

/// BF16 values from heads and their 5-bit tails, packed 8 per 5 bytes.
fn merge_bf16_packed(head: &[u16], packed: &[u8], out: &mut [u8]) {
    let mut groups = out.chunks_exact_mut(16);
    let mut heads = head.chunks_exact(8);
    for ((o, h), p) in (&mut groups).zip(&mut heads).zip(packed.chunks_exact(5)) {
        let acc = bits::group::<5>(p);
        for k in 0..8 {
            let v = (h[k] << 5) | ((acc >> (5 * k)) & 31) as u16;
            o[2 * k..2 * k + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    let rest = groups.into_remainder();
    if !rest.is_empty() {
        let n = rest.len() / 2;
        let mut t = [0u8; 8];
        bits::unpack(
            &packed[packed.len() - bits::packed_len(n, 5)..],
            5,
            &mut t[..n],
        );
        for ((o, &h), &tl) in rest.chunks_exact_mut(2).zip(heads.remainder()).zip(&t) {
            o.copy_from_slice(&((h << 5) | tl as u16).to_le_bytes());
        }
    }
}

/// Codes a stream of `symbols` (each below `alphabet`, at most [`rans::MAX_ALPHABET`]) for
/// `plane`: a varint symbol count, then the symbols as the smallest of constant, raw (one
/// byte each for alphabets up to 256, else two) and rANS with a model of their own. Masks
/// use this.
pub fn encode_symbol_stream(
    plane: Plane,
    symbols: &[u16],
    alphabet: usize,
    shared: Option<(&Model, u16)>,
) -> Result<EncodedStream, CodecError> {
    assert!(alphabet <= rans::MAX_ALPHABET, "alphabet over the cap");
    let hist = histogram(symbols, alphabet);
    let wide = alphabet > 256;
    let (model, id) = match shared {
        Some((m, id)) => (Some(m), id),
        None => (None, 0),
    };
    let mut s = code_symbols(plane, symbols, &hist, model, id, |out| {
        for &v in symbols {
            if wide {
                out.extend_from_slice(&v.to_le_bytes());
            } else {
                out.push(v as u8);
            }
        }
    })?;
    let mut bytes = Vec::with_capacity(s.bytes.len() + 5);
    rans::put_varint(&mut bytes, symbols.len() as u64);
    bytes.extend_from_slice(&s.bytes);
    s.bytes = bytes;
    Ok(s)
}

/// Decodes a stream written by [`encode_symbol_stream`]. `max_symbols` bounds the count
/// the stream may claim (the caller knows what its tile can hold); `decoder` resolves a
/// shared model.
pub fn decode_symbol_stream(
    e: &StreamEntry,
    data: &[u8],
    alphabet: usize,
    max_symbols: usize,
    decoder: &TensorDecoder,
) -> Result<Vec<u16>, CodecError> {
    let mut pos = 0;
    let n = rans::get_varint(data, &mut pos).ok_or(CodecError::Corrupt {
        reason: "symbol count truncated",
    })?;
    if n > max_symbols as u64 {
        return Err(CodecError::Corrupt {
            reason: "symbol stream claims more symbols than its tile can hold",
        });
    }
    let n = n as usize;
    let s = &data[pos..];
    let check = |v: u16| -> Result<u16, CodecError> {
        if (v as usize) < alphabet.max(1) {
            Ok(v)
        } else {
            Err(CodecError::Corrupt {
                reason: "symbol outside its alphabet",
            })
        }
    };
    match e.codec {
        StreamCodec::Constant { symbol } => {
            if !s.is_empty() {
                return Err(CodecError::StreamLength {
                    plane: e.plane,
                    expected: 0,
                    got: s.len() as u64,
                });
            }
            Ok(vec![check(symbol)?; n])
        }
        StreamCodec::Raw if alphabet > 256 => {
            expect_len(e.plane, s, 2 * n)?;
            s.chunks_exact(2)
                .map(|c| check(u16::from_le_bytes([c[0], c[1]])))
                .collect()
        }
        StreamCodec::Raw => {
            expect_len(e.plane, s, n)?;
            s.iter().map(|&b| check(b as u16)).collect()
        }
        StreamCodec::RansShared { model } => {
            let table = decoder.table(model)?;
            if table.alphabet() > alphabet {
                return Err(CodecError::BadModel {
                    reason: "alphabet wider than the plane",
                });
            }
            let mut out = vec![0u16; n];
            rans::decode(s, table, &mut out)?;
            Ok(out)
        }
        StreamCodec::RansLocal => {
            let (m, used) = Model::from_bytes(s)?;
            if m.alphabet() > alphabet {
                return Err(CodecError::BadModel {
                    reason: "alphabet wider than the plane",
                });
            }
            let mut out = vec![0u16; n];
            rans::decode(&s[used..], &m.decode_table(), &mut out)?;
            Ok(out)
        }
        codec => Err(CodecError::CodecNotAllowed {
            plane: e.plane,
            codec,
        }),
    }
}

/// Codes a whole tile with a byte codec (`Raw` or `Zstd` at `zstd_level`).
pub fn encode_whole(
    codec: ValueCodec,
    bytes: &[u8],
    zstd_level: i32,
) -> Result<EncodedStream, CodecError> {
    let (codec, data) = match codec {
        ValueCodec::Zstd => (
            StreamCodec::Zstd,
            zstd::bulk::compress(bytes, zstd_level).map_err(|e| CodecError::Zstd {
                reason: e.to_string(),
            })?,
        ),
        _ => (StreamCodec::Raw, bytes.to_vec()),
    };
    Ok(EncodedStream {
        plane: Plane::Whole,
        codec,
        bytes: data,
    })
}

/// Decodes a whole-tile stream into `out`, which has the tile's exact decoded size; zstd is
/// never allowed to produce more.
pub fn decode_whole(
    entries: &[StreamEntry],
    data: &[u8],
    out: &mut [u8],
) -> Result<(), CodecError> {
    let [e] = entries else {
        return Err(CodecError::StreamLayout {
            reason: format!("a whole-tile tile has one stream, found {}", entries.len()),
        });
    };
    if e.plane != Plane::Whole || e.len != data.len() as u64 {
        return Err(CodecError::StreamLayout {
            reason: "whole-tile stream entry does not match the tile".into(),
        });
    }
    match e.codec {
        StreamCodec::Raw => {
            expect_len(Plane::Whole, data, out.len())?;
            out.copy_from_slice(data);
        }
        StreamCodec::Zstd => {
            let got =
                zstd::bulk::decompress_to_buffer(data, out).map_err(|e| CodecError::Zstd {
                    reason: e.to_string(),
                })?;
            if got != out.len() {
                return Err(CodecError::Corrupt {
                    reason: "zstd frame decodes to the wrong size",
                });
            }
        }
        codec => {
            return Err(CodecError::CodecNotAllowed {
                plane: Plane::Whole,
                codec,
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
