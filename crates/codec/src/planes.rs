//! The float-plane codec of a tile: split values into head, tail and byte planes, code
//! each plane as the smallest of raw, constant, shared or local rANS, and merge them back.

use crate::models::{entropy_bits, histogram};
use crate::rans::{self, DecodeTable, Model};
use crate::{
    bits, simd, CodecError, Kernel, Plane, PlaneHistograms, PlaneLayout, StreamCodec, StreamEntry,
    TensorDecoder, TensorModels,
};

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
#[derive(Default)]
struct Split {
    head: Vec<u16>,
    tail: Vec<u8>,
    bytes: Vec<Vec<u8>>,
}

thread_local! {
    /// The last tile's plane buffers, reused by the next tile on this thread: fresh
    /// tile-sized buffers were page faults on every tile.
    static SPLIT_POOL: std::cell::RefCell<Split> = std::cell::RefCell::default();
}

/// Splits little-endian values into planes (plain streaming loops; counting comes after),
/// in buffers from this thread's pool ([`Split::recycle`] gives them back).
fn split(layout: PlaneLayout, values: &[u8]) -> Split {
    let n = values.len() / layout.value_bytes;
    let mut s = SPLIT_POOL.with(|p| std::mem::take(&mut *p.borrow_mut()));
    set_len_for_overwrite(&mut s.head, n);
    set_len_for_overwrite(&mut s.tail, if layout.tail_bits > 0 { n } else { 0 });
    s.bytes.resize_with(layout.byte_planes, Vec::new);
    for b in &mut s.bytes {
        set_len_for_overwrite(b, n);
    }
    let Split { head, tail, bytes } = &mut s;
    let (b0, b1) = match bytes.as_mut_slice() {
        [b0, b1] => (&mut b0[..], &mut b1[..]),
        [b0] => (&mut b0[..], &mut [][..]),
        _ => (&mut [][..], &mut [][..]),
    };
    split_into(layout, values, head, tail, b0, b1);
    s
}

/// Makes a reused buffer `n` long for a writer that overwrites all of it: what it held
/// stays (zeroing it first was 1% of an encode), only growth is zero-filled.
pub(crate) fn set_len_for_overwrite<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    } else {
        v.truncate(n);
    }
}

impl Split {
    /// Hands the buffers back to this thread's pool.
    fn recycle(self) {
        SPLIT_POOL.with(|p| *p.borrow_mut() = self);
    }
}

/// Splits `head.len()` values into the given planes (`tail`, `byte0`, `byte1` as long as
/// `head` where the layout has them, else empty), with the encode kernel's instructions:
/// [`split_scalar`] compiled for AVX-512 on that kernel (the baseline build vectorises
/// its byte planes with SSE2 unpacks; AVX-512 narrows 16 values per instruction), else
/// as built.
pub(crate) fn split_into(
    layout: PlaneLayout,
    values: &[u8],
    head: &mut [u16],
    tail: &mut [u8],
    byte0: &mut [u8],
    byte1: &mut [u8],
) {
    if Kernel::for_encode() == Kernel::Avx512 {
        simd::split_avx512(layout, values, head, tail, byte0, byte1)
    } else {
        split_scalar(layout, values, head, tail, byte0, byte1)
    }
}

/// The scalar reference of [`split_into`]: one typed pass per plane.
#[inline(always)]
pub(crate) fn split_scalar(
    layout: PlaneLayout,
    values: &[u8],
    head: &mut [u16],
    tail: &mut [u8],
    byte0: &mut [u8],
    byte1: &mut [u8],
) {
    let hs = layout.head_shift();
    let ts = layout.tail_shift();
    let tail_mask = (1u32 << layout.tail_bits) - 1;
    let n = head.len();
    match layout.value_bytes {
        2 => {
            let v = values[..2 * n]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32);
            for (h, x) in head.iter_mut().zip(v.clone()) {
                *h = (x >> hs) as u16;
            }
            for (t, x) in tail.iter_mut().zip(v.clone()) {
                *t = ((x >> ts) & tail_mask) as u8;
            }
            for (b, x) in byte0.iter_mut().zip(v) {
                *b = x as u8;
            }
        }
        _ => {
            let v = values[..4 * n]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            for (h, x) in head.iter_mut().zip(v.clone()) {
                *h = (x >> hs) as u16;
            }
            for (t, x) in tail.iter_mut().zip(v.clone()) {
                *t = ((x >> ts) & tail_mask) as u8;
            }
            for (b, x) in byte0.iter_mut().zip(v.clone()) {
                *b = x as u8;
            }
            for (b, x) in byte1.iter_mut().zip(v) {
                *b = (x >> 8) as u8;
            }
        }
    }
}

/// Splits float values (little-endian, `layout.value_bytes` each) into planes and codes
/// each plane the cheapest way.
pub fn encode_planes(
    layout: PlaneLayout,
    values: &[u8],
    models: &TensorModels,
) -> Result<Vec<EncodedStream>, CodecError> {
    encode_planes_counted(layout, values, models, None)
}

/// A lower bound on the bytes [`encode_planes`] writes for `values` with no shared models
/// (the sum of its streams' lengths), found without fitting a model: a plane is empty
/// when constant, else raw or rANS, and a rANS plane holds at least its own model's
/// symbol list (a gap and a frequency byte per present symbol), the stream's lane byte
/// and states, and the words `rans_words_lower_bound` allows.
///
/// A tile of a few dozen values has about as many distinct symbols in each plane, so its
/// planes cannot beat its raw bytes; the writer then skips fitting their models.
pub fn encode_planes_len_lower_bound(layout: PlaneLayout, values: &[u8]) -> usize {
    let n = values.len() / layout.value_bytes;
    let planes = split(layout, values);
    let Split { head, tail, bytes } = &planes;
    let rans_floor = |hist: &[u64]| {
        let present = rans::SymbolCounts::of(hist);
        (present.len() > 1).then(|| {
            present.model_bytes_lower_bound()
                + rans::overhead_bytes(n)
                + rans_words_lower_bound(present.entropy_bits(), n)
        })
    };
    let mut len = match rans_floor(&histogram(head, 1 << layout.head_bits)) {
        None => 0,
        Some(floor) => floor.min(n * 2),
    };
    if layout.tail_bits > 0 && tail.iter().any(|&t| t != tail[0]) {
        len += bits::packed_len(n, layout.tail_bits);
    }
    for plane in bytes.iter().take(layout.byte_planes) {
        if let Some(floor) = rans_floor(&histogram(plane, 256)) {
            len += floor.min(n);
        }
    }
    planes.recycle();
    len
}

/// A lower bound on the bytes of the words a rANS stream of `n` symbols with order-0
/// entropy `entropy_bits` emits, under any model.
///
/// Each lane's state starts at 2^15 and ends below 2^31, and a symbol of frequency `f`
/// multiplies it by at least `(2^12 / f) (7 / 8)` (the state is at least `8 f` when it is
/// coded: the division's floor loses at most an eighth) while an emitted word divides it
/// by at most `2^16 (17 / 16)`: so 16 bits a word cover the cross-entropy (never below
/// the entropy) less 0.28 bits a symbol and 16 bits a lane. 0.3 and a byte of float
/// margin are taken.
fn rans_words_lower_bound(entropy_bits: f64, n: usize) -> usize {
    let bits = entropy_bits - 0.3 * n as f64 - 16.0 * rans::lanes_for(n) as f64;
    ((bits / 8.0).floor() - 1.0).max(0.0) as usize
}

/// [`encode_planes`] with the tile's plane histograms when the caller has them already
/// (the writer counts each tile to fit the tensor's shared models), so they are not
/// counted twice. `counts` must be `values`' own histograms ([`PlaneHistograms::add`] of
/// exactly these values, in `layout`): the streams are then the same as without them.
///
/// Panics if `counts` has another layout.
pub fn encode_planes_counted(
    layout: PlaneLayout,
    values: &[u8],
    models: &TensorModels,
    counts: Option<&PlaneHistograms>,
) -> Result<Vec<EncodedStream>, CodecError> {
    if let Some(c) = counts {
        assert_eq!(c.layout(), layout, "histograms of another layout");
    }
    let n = values.len() / layout.value_bytes;
    let planes = split(layout, values);
    let Split { head, tail, bytes } = &planes;
    let head_hist = match counts {
        Some(c) => std::borrow::Cow::Borrowed(c.head()),
        None => std::borrow::Cow::Owned(histogram(head, 1 << layout.head_bits)),
    };

    let mut streams = Vec::with_capacity(2 + layout.byte_planes);
    streams.push(code_symbols(
        Plane::Head,
        head,
        &head_hist,
        models.get(PlaneLayout::HEAD_MODEL),
        PlaneLayout::HEAD_MODEL,
        |out| {
            for h in head {
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
            bits::pack(tail, layout.tail_bits, &mut b);
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
        let hist = match counts {
            Some(c) => std::borrow::Cow::Borrowed(c.byte_plane(k)),
            None => std::borrow::Cow::Owned(histogram(plane, 256)),
        };
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
    planes.recycle();
    Ok(streams)
}

/// A plane is stored raw unless rANS saves at least this share of its raw bytes.
///
/// Raw planes are read where they lie (memory speed); a rANS plane decodes at 1-3 GB/s a
/// core. Coding a plane pays on a link of `L` bytes/s only while the link time it saves
/// exceeds the decode time it adds: `saving / L > 1 / R_decode`, i.e. `L < saving *
/// R_decode`. At a 0.4% saving (the mantissa bytes of PP-OCR's f32 weights) that is
/// links under ~10 MB/s; every link sparsewire targets is faster. 1/128 keeps the byte
/// planes that save 1.5% (MiniLM f32) coded and stores the ones that save a few tenths
/// of a percent raw.
pub(crate) const RAW_UNLESS_SAVES: f64 = 1.0 / 128.0;

/// Codes one plane as the smallest of constant, raw, shared-model and own-model rANS, a
/// rANS plane only where it saves [`RAW_UNLESS_SAVES`] of the raw bytes.
pub(crate) fn code_symbols<S: rans::EncodeSymbol>(
    plane: Plane,
    symbols: &[S],
    hist: &[u64],
    shared: Option<&Model>,
    shared_id: u16,
    raw: impl FnOnce(&mut Vec<u8>),
) -> Result<EncodedStream, CodecError> {
    // The present symbols, read once: every question below looks at them alone (a
    // 2048-symbol head scanned five times was most of a tiny tile's encode).
    let present = rans::SymbolCounts::of(hist);
    if present.len() <= 1 {
        return Ok(EncodedStream {
            plane,
            codec: StreamCodec::Constant {
                symbol: present.first().unwrap_or(0) as u16,
            },
            bytes: Vec::new(),
        });
    }
    let raw_bytes = {
        let width = if hist.len() > 256 { 16 } else { 8 };
        (symbols.len() * width / 8) as f64
    };
    let overhead = rans::overhead_bytes(symbols.len()) as f64 + 1.0;
    let raw_unless = raw_bytes * (1.0 - RAW_UNLESS_SAVES);
    // Every rANS option costs at least the entropy (a model's cross-entropy is never below
    // it) plus the stream overhead: when that already rules rANS out, store the plane raw
    // without fitting a model (near-uniform mantissa bytes spent a third of the encode
    // time in model fits that raw then beat). The margin keeps float rounding from
    // changing a choice the full comparison would make.
    let entropy_bytes = present.entropy_bits() / 8.0;
    if entropy_bytes + overhead >= raw_unless * (1.0 + 1e-9) {
        return Ok(raw_stream(plane, raw));
    }
    let shared_bytes = shared
        .and_then(|m| m.cost_bits_of(&present))
        .map(|b| b / 8.0 + overhead);
    // An own model costs at least the entropy plus a byte per symbol it lists; skip
    // fitting it when the shared model is already within that.
    let local = match shared_bytes {
        Some(s) if s <= entropy_bytes + overhead + present.len() as f64 => None,
        _ => {
            let fit = present.best_fit().expect("two symbols are present");
            let cost = fit.bits / 8.0 + overhead + fit.len as f64;
            Some((fit, cost))
        }
    };
    let best_rans = match (shared_bytes, &local) {
        (Some(s), Some((_, l))) if s <= *l => (s, shared),
        (Some(s), None) => (s, shared),
        (_, Some((_, l))) => (*l, None),
        (None, None) => unreachable!("no shared model means an own model was fitted"),
    };
    if best_rans.0 >= raw_unless {
        return Ok(raw_stream(plane, raw));
    }
    let mut bytes = Vec::new();
    let codec = if let Some(m) = best_rans.1 {
        rans::encode(symbols, m, &mut bytes)?;
        StreamCodec::RansShared { model: shared_id }
    } else {
        let (fit, _) = local.expect("chosen, so fitted");
        bytes.extend_from_slice(&fit.to_bytes(&present));
        rans::encode(symbols, &fit.model(&present), &mut bytes)?;
        StreamCodec::RansLocal
    };
    Ok(EncodedStream {
        plane,
        codec,
        bytes,
    })
}

/// The plane stored raw, its bytes written by `raw`.
fn raw_stream(plane: Plane, raw: impl FnOnce(&mut Vec<u8>)) -> EncodedStream {
    let mut bytes = Vec::new();
    raw(&mut bytes);
    EncodedStream {
        plane,
        codec: StreamCodec::Raw,
        bytes,
    }
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
pub(crate) fn expect_len(plane: Plane, s: &[u8], expected: usize) -> Result<(), CodecError> {
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

/// The chunk buffers of one tile decode.
#[repr(C, align(64))]
struct Buffers {
    vbuf: [u8; CHUNK],
    hbuf: [u16; CHUNK],
    tbuf: [u8; CHUNK],
    bbuf: [[u8; CHUNK]; 2],
}

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
                let (table, used) = DecodeTable::from_model_bytes(s)?;
                Source::Local(rans::Decoder::new(&s[used..])?, Box::new(table))
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
    fn fill<S: Symbol>(
        &mut self,
        first: usize,
        out: &mut [S],
        kernel: Kernel,
    ) -> Result<(), CodecError> {
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
            Source::Shared(d, t) => d.decode_with(t, out, kernel)?,
            Source::Local(d, t) => d.decode_with(t, out, kernel)?,
        }
        Ok(())
    }

    /// For rANS with a compact table: fills `out` with the next symbols' 8-bit table
    /// values ([`Source::value_symbols`] maps them) and returns true. Otherwise false,
    /// with nothing decoded.
    fn fill_values(&mut self, out: &mut [u8], kernel: Kernel) -> Result<bool, CodecError> {
        let (d, t) = match self {
            Source::Shared(d, t) => (d, &**t),
            Source::Local(d, t) => (d, &**t),
            _ => return Ok(false),
        };
        if t.value_symbols().is_none() {
            return Ok(false);
        }
        d.decode_values(t, out, kernel)?;
        Ok(true)
    }

    /// For rANS on the AVX-512 kernel: BF16 values from the next heads and their packed
    /// tails straight into `out`, as many as the fused rounds take (see
    /// [`rans::Decoder::decode_bf16`]); returns how many.
    fn fill_bf16(&mut self, packed: &[u8], out: &mut [u8], kernel: Kernel) -> usize {
        match self {
            Source::Shared(d, t) => d.decode_bf16(t, packed, out, kernel),
            Source::Local(d, t) => d.decode_bf16(t, packed, out, kernel),
            _ => 0,
        }
    }

    /// For rANS on the AVX-512 kernel: F32 values from the next heads, their packed tails
    /// and raw low bytes straight into `out`, as many as the fused rounds take (see
    /// [`rans::Decoder::decode_f32`]); returns how many.
    fn fill_f32(&mut self, tails: &[u8], low: [&[u8]; 2], out: &mut [u8], kernel: Kernel) -> usize {
        match self {
            Source::Shared(d, t) => d.decode_f32(t, tails, low, out, kernel),
            Source::Local(d, t) => d.decode_f32(t, tails, low, out, kernel),
            _ => 0,
        }
    }

    /// How [`Source::fill_values`] output maps to symbols (`None`: they are the symbols).
    fn value_symbols(&self) -> Option<&[u16; 256]> {
        match self {
            Source::Shared(_, t) => t.value_symbols().flatten(),
            Source::Local(_, t) => t.value_symbols().flatten(),
            _ => None,
        }
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
    decode_into(layout, entries, data, decoder, n, &mut InPlace(out))
}

/// Decodes the `n` values of a float-plane tile a few thousand at a time, handing each
/// chunk of little-endian bytes to `emit` in order: a tile of any size decodes in a few KiB
/// of memory (for a writer that streams to a file). An error from `emit` stops the decode
/// and is returned as is.
pub fn decode_planes_chunked<E: From<CodecError>>(
    layout: PlaneLayout,
    entries: &[StreamEntry],
    data: &[u8],
    decoder: &TensorDecoder,
    n: usize,
    emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut sink = Chunked {
        buf: vec![0u8; CHUNK * layout.value_bytes],
        emit,
        err: None,
    };
    match decode_into(layout, entries, data, decoder, n, &mut sink) {
        Ok(()) => Ok(()),
        Err(e) => Err(sink.err.take().unwrap_or_else(|| e.into())),
    }
}

/// Where decoded chunks go: straight into the caller's buffer, or through a small buffer
/// to a callback.
trait Sink {
    /// The `bytes` output bytes that start at byte `at`.
    fn slot(&mut self, at: usize, bytes: usize) -> &mut [u8];
    /// The slot just returned is complete.
    fn done(&mut self, bytes: usize) -> Result<(), CodecError>;
}

struct InPlace<'a>(&'a mut [u8]);

impl Sink for InPlace<'_> {
    #[inline]
    fn slot(&mut self, at: usize, bytes: usize) -> &mut [u8] {
        &mut self.0[at..at + bytes]
    }
    #[inline]
    fn done(&mut self, _: usize) -> Result<(), CodecError> {
        Ok(())
    }
}

struct Chunked<F, E> {
    buf: Vec<u8>,
    emit: F,
    /// The callback's error, kept while the decoder unwinds with a placeholder.
    err: Option<E>,
}

impl<F: FnMut(&[u8]) -> Result<(), E>, E> Sink for Chunked<F, E> {
    #[inline]
    fn slot(&mut self, _: usize, bytes: usize) -> &mut [u8] {
        &mut self.buf[..bytes]
    }
    fn done(&mut self, bytes: usize) -> Result<(), CodecError> {
        (self.emit)(&self.buf[..bytes]).map_err(|e| {
            self.err = Some(e);
            CodecError::Corrupt {
                reason: "output refused",
            }
        })
    }
}

fn decode_into(
    layout: PlaneLayout,
    entries: &[StreamEntry],
    data: &[u8],
    decoder: &TensorDecoder,
    n: usize,
    sink: &mut impl Sink,
) -> Result<(), CodecError> {
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

    let kernel = decoder.kernel;
    // The thread's buffers from its last tile: zeroing 12 KiB afresh was 2% of a PP-OCR
    // decode (135 tensors, most of them small). Every chunk writes what it reads.
    let mut bufs = BUFFERS.with(|b| b.take()).unwrap_or_else(|| {
        Box::new(Buffers {
            vbuf: [0; CHUNK],
            hbuf: [0; CHUNK],
            tbuf: [0; CHUNK],
            bbuf: [[0; CHUNK]; 2],
        })
    });
    let result = decode_chunks(
        layout, n, sink, &mut head, tail, &mut bytes, kernel, &mut bufs,
    );
    BUFFERS.with(|b| b.set(Some(bufs)));
    result?;
    head.finish()?;
    for b in bytes {
        b.finish()?;
    }
    Ok(())
}

thread_local! {
    /// Chunk buffers kept for the thread's next tile decode.
    static BUFFERS: std::cell::Cell<Option<Box<Buffers>>> = const { std::cell::Cell::new(None) };
}

/// The chunk loop of [`decode_into`]: every value of the tile, `CHUNK` at a time, through
/// the fused rounds where they apply and the plane buffers elsewhere.
#[allow(clippy::too_many_arguments)]
fn decode_chunks(
    layout: PlaneLayout,
    n: usize,
    sink: &mut impl Sink,
    head: &mut Source,
    tail: Option<Source>,
    bytes: &mut [Source],
    kernel: Kernel,
    bufs: &mut Buffers,
) -> Result<(), CodecError> {
    let wide = kernel == Kernel::Avx512;
    let Buffers {
        vbuf,
        hbuf,
        tbuf,
        bbuf,
    } = bufs;
    let hs = layout.head_shift();
    // F32 with packed 5-bit tails and raw low bytes: heads, tails and bytes merged in the
    // rANS rounds where the head has 32 lanes (the AVX-512 kernel).
    let f32_raw = match (&tail, &bytes[..]) {
        (Some(Source::Raw(tails)), [Source::Raw(b0), Source::Raw(b1)])
            if wide && hs == 21 && layout.tail_shift() == 16 && layout.tail_bits == 5 =>
        {
            Some((*tails, [*b1, *b0]))
        }
        _ => None,
    };
    let mut first = 0;
    while first < n {
        let c = CHUNK.min(n - first);
        let len = c * layout.value_bytes;
        if let Some((tails, [b1, b0])) = f32_raw {
            let o = sink.slot(first * 4, len);
            let k = head.fill_f32(
                &tails[first * 5 / 8..],
                [&b1[first..], &b0[first..]],
                o,
                kernel,
            );
            if k > 0 {
                sink.done(4 * k)?;
                first += k;
                continue;
            }
        }
        // Heads through 8-bit table values where the table has them: the AVX-512 steps
        // map 32 at a time (and, for BF16, merge straight into the output).
        let bf16_tails = match (
            layout.value_bytes,
            layout.byte_planes,
            layout.tail_bits,
            &tail,
        ) {
            (2, 0, 5, Some(Source::Raw(packed))) => Some(*packed),
            _ => None,
        };
        if let (true, Some(packed)) = (wide, bf16_tails) {
            // BF16: heads and tails merged in the rANS rounds themselves where the stream
            // has 32 lanes; the rest through table values and the merge steps.
            let o = sink.slot(first * layout.value_bytes, len);
            let k = head.fill_bf16(&packed[first * 5 / 8..], o, kernel);
            if head.fill_values(&mut vbuf[k..c], kernel)? {
                let symbols = head.value_symbols();
                let at = first + k;
                let k2 = k + simd::merge_bf16(
                    &vbuf[k..c],
                    symbols,
                    &packed[at * 5 / 8..],
                    &mut o[2 * k..],
                );
                map_values(&vbuf[k2..c], symbols, &mut hbuf[k2..c]);
                let rest = &packed[(first + k2) * 5 / 8..][..bits::packed_len(c - k2, 5)];
                merge_bf16_packed(&hbuf[k2..c], rest, &mut o[2 * k2..]);
                sink.done(len)?;
                first += c;
                continue;
            }
            debug_assert_eq!(k, 0, "only rANS heads take the fused rounds");
        }
        if wide && head.fill_values(&mut vbuf[..c], kernel)? {
            let symbols = head.value_symbols();
            let mapped = match symbols {
                Some(table) => simd::map_symbols(&vbuf[..c], table, &mut hbuf[..c]),
                None => 0,
            };
            map_values(&vbuf[mapped..c], symbols, &mut hbuf[mapped..c]);
        } else {
            head.fill(first, &mut hbuf[..c], kernel)?;
        }
        if matches!(head, Source::Raw(_))
            && hbuf[..c]
                .iter()
                .any(|&h| (h as u32) >> layout.head_bits != 0)
        {
            return Err(CodecError::Corrupt {
                reason: "head symbol wider than the layout",
            });
        }
        let o = sink.slot(first * layout.value_bytes, len);
        // BF16 with packed tails: unpack and merge in one pass.
        if let (2, 0, 5, Some(Source::Raw(packed))) = (
            layout.value_bytes,
            layout.byte_planes,
            layout.tail_bits,
            &tail,
        ) {
            let start = first * 5 / 8;
            let packed = &packed[start..start + bits::packed_len(c, 5)];
            merge_bf16_packed(&hbuf[..c], packed, o);
            sink.done(len)?;
            first += c;
            continue;
        }
        match &tail {
            Some(Source::Constant(sym)) => tbuf[..c].fill(*sym as u8),
            Some(Source::Raw(packed)) => {
                let start = first * layout.tail_bits as usize / 8;
                let k = if wide && layout.tail_bits == 5 {
                    simd::unpack5(&packed[start..], &mut tbuf[..c])
                } else {
                    0
                };
                let from = (first + k) * layout.tail_bits as usize / 8;
                let len = bits::packed_len(c - k, layout.tail_bits);
                bits::unpack(&packed[from..from + len], layout.tail_bits, &mut tbuf[k..c]);
            }
            _ => {}
        }
        // Raw byte planes are read where they lie; the others are decoded into a buffer.
        let [b0, b1] = bbuf;
        let mut planes: [&[u8]; 2] = [&[], &[]];
        for ((src, buf), plane) in bytes.iter_mut().zip([b0, b1]).zip(&mut planes) {
            *plane = match src {
                Source::Raw(raw) => &raw[first..first + c],
                _ => {
                    src.fill(first, &mut buf[..c], kernel)?;
                    &buf[..c]
                }
            };
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
                for ((o, &h), &b) in o.chunks_exact_mut(2).zip(&hbuf[..c]).zip(planes[0]) {
                    o.copy_from_slice(&((h << hs) | b as u16).to_le_bytes());
                }
            }
            // F32: head << 21 | tail << 16 | byte 1 << 8 | byte 0.
            _ => {
                let ts = layout.tail_shift();
                let k = if wide && hs == 21 && ts == 16 {
                    simd::merge_f32(&hbuf[..c], &tbuf[..c], planes[1], planes[0], o)
                } else {
                    0
                };
                for (i, o) in o.chunks_exact_mut(4).enumerate().skip(k) {
                    let v = (hbuf[i] as u32) << hs
                        | (tbuf[i] as u32) << ts
                        | (planes[1][i] as u32) << 8
                        | planes[0][i] as u32;
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        sink.done(len)?;
        first += c;
    }
    Ok(())
}

/// Symbols from 8-bit table values (`symbols[v]`, or `v` itself): the scalar reference of
/// `simd::map_symbols`.
fn map_values(values: &[u8], symbols: Option<&[u16; 256]>, out: &mut [u16]) {
    match symbols {
        Some(table) => {
            for (o, &v) in out.iter_mut().zip(values) {
                *o = table[v as usize];
            }
        }
        None => {
            for (o, &v) in out.iter_mut().zip(values) {
                *o = v as u16;
            }
        }
    }
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

/// A synthetic BF16 tile (64 Ki values shaped like weights) that [`Kernel::chosen`] times
/// each kernel on.
pub(crate) struct Probe {
    layout: PlaneLayout,
    models: TensorModels,
    entries: Vec<StreamEntry>,
    data: Vec<u8>,
}

impl Probe {
    pub(crate) fn new() -> Option<Probe> {
        let layout = PlaneLayout::for_dtype(crate::Dtype::BF16)?;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        // A sum of four uniforms: bell-shaped, like trained weights.
        let values: Vec<u8> = (0..1 << 16)
            .flat_map(|_| {
                let w = 0.05 * (uniform() + uniform() + uniform() + uniform());
                ((w.to_bits() >> 16) as u16).to_le_bytes()
            })
            .collect();
        let mut h = PlaneHistograms::new(layout);
        h.add(&values);
        let models = TensorModels::fit(&h);
        let streams = encode_planes(layout, &values, &models).ok()?;
        Some(Probe {
            layout,
            entries: streams.iter().map(EncodedStream::entry).collect(),
            data: streams
                .iter()
                .flat_map(|s| s.bytes.iter().copied())
                .collect(),
            models,
        })
    }

    /// Decodes the tile with `kernel`.
    pub(crate) fn decode(&self, kernel: Kernel) -> Result<(), CodecError> {
        let mut out = vec![0u8; (1 << 16) * 2];
        let decoder = self.models.decoder_with(kernel);
        decode_planes(self.layout, &self.entries, &self.data, &decoder, &mut out)
    }
}
