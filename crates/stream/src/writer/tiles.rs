//! Coding one tensor's tiles: dense float tensors (float planes or zstd), sparse float
//! tensors (a mask stream and the kept values per tile), and whole-tile tensors (other
//! dtypes: raw or zstd, streamed in chunks when large).

use super::{Profile, SparseTensor, Writer};
use crate::StreamError;
use rayon::prelude::*;
use sparsewire_codec::rans::Model;
use sparsewire_codec::{
    encode_planes_counted, encode_planes_len_lower_bound, encode_symbol_stream, encode_whole,
    CodecError, EncodedStream, PlaneHistograms, PlaneLayout, TensorModels,
};
use sparsewire_formats::tiling::{default_tile_shape, TileGrid};
use sparsewire_formats::TensorRef;
use sparsewire_metadata::{
    view_2d, Layout, MaskEncoding, Pattern, Plane, StreamCodec, StreamEntry, TensorMeta, TileEntry,
    TileShape, ValueCodec,
};
use sparsewire_sparse::{codes, MaskRef, NMTable, SparseTile, SparseTileRef};
use std::io::Write;

/// The zstd pass is kept only when it beats the alternative by this factor.
const LZ_MIN_GAIN: f64 = 0.98;
/// A float tile larger than this gets zstd's trial only when [`repeated_words`] finds
/// repeats: without them zstd's literals alone do not beat the planes (on the shared
/// files zstd won on a 3 KiB tensor by its smaller header, and on two large ones with
/// 5% and 100% of their words repeated); with it the trial no longer costs a quarter of
/// a float model's encode.
const LZ_SCREEN_BYTES: usize = 16 << 10;
/// The share of repeated words below which a large tile skips zstd's trial.
const LZ_MIN_REPEATS: f64 = 0.01;
/// A lone tile up to this size is checked against the planes' lower bound before their
/// models are fitted; beyond it the bound is below the raw size (on the shared files it
/// decides tiles of up to 144 values).
const PLANES_FLOOR_BYTES: usize = 1024;
/// Tiles coded at once per thread: enough to keep every thread busy, few enough that the
/// tiles in flight stay a few MiB.
const BATCH_PER_THREAD: usize = 4;
/// Whole tiles larger than this are read, hashed and written in chunks of this size (and
/// zstd's trial uses a sample of this size), so a multi-GiB integer tensor needs no
/// tensor-sized buffer.
const CHUNK: usize = 4 << 20;

/// The share of `bytes`' 4-byte words equal to the last word that hashed to the same
/// slot of a 4096-slot table (zeros count from the start): a cheap sign of the repeats an
/// LZ coder finds, at several GB/s.
fn repeated_words(bytes: &[u8]) -> f64 {
    let mut table = [0u32; 4096];
    let mut hits = 0usize;
    let words = bytes.chunks_exact(4);
    let n = words.len();
    for w in words {
        let v = u32::from_le_bytes(w.try_into().expect("4 bytes"));
        let slot = &mut table[(v.wrapping_mul(0x9E37_79B1) >> 20) as usize];
        hits += usize::from(*slot == v);
        *slot = v;
    }
    hits as f64 / n.max(1) as f64
}

/// A float tile smaller than this gets zstd's trial only when [`repeated_words`] finds
/// repeats, as a large one: zstd's frame and literal headers leave it nothing to win on a
/// few hundred bytes without matches (it won no such tile on the shared files), and the
/// trial was a quarter of such a tile's encode.
const LZ_TINY_BYTES: usize = 1024;

/// Whether zstd's trial may pay on this float tile (see [`LZ_SCREEN_BYTES`] and
/// [`LZ_TINY_BYTES`]).
fn lz_may_pay(tile: &[u8]) -> bool {
    (LZ_TINY_BYTES..=LZ_SCREEN_BYTES).contains(&tile.len())
        || repeated_words(tile) >= LZ_MIN_REPEATS
}

fn streams_len(s: &[EncodedStream]) -> usize {
    s.iter().map(|s| s.bytes.len()).sum()
}

/// What is built while a tensor's tiles are written.
struct Tiles {
    index: usize,
    entries: Vec<TileEntry>,
    /// Which shared models some tile used.
    used: Vec<bool>,
}

impl Tiles {
    fn new<W: Write>(w: &Writer<W>, models: usize) -> Tiles {
        Tiles {
            index: w.tensors.len(),
            entries: Vec::new(),
            used: vec![false; models],
        }
    }

    /// Writes tile `k`'s streams and records its index entry.
    fn put<W: Write>(
        &mut self,
        w: &mut Writer<W>,
        streams: &[EncodedStream],
    ) -> Result<(), StreamError> {
        for s in streams {
            if let StreamCodec::RansShared { model } = s.codec {
                if let Some(u) = self.used.get_mut(model as usize) {
                    *u = true;
                }
            }
        }
        self.put_pieces(
            w,
            streams.iter().map(|s| (s.plane, s.codec, [&s.bytes[..]])),
        )
    }

    /// Writes a tile whose streams are given as borrowed pieces (each stream's bytes the
    /// concatenation of its pieces) and records its index entry: the same bytes, hash and
    /// entry as [`Tiles::put`] of streams holding those bytes, without copying them first.
    fn put_pieces<'a, W: Write, P: IntoIterator<Item = &'a [u8]>>(
        &mut self,
        w: &mut Writer<W>,
        streams: impl IntoIterator<Item = (Plane, StreamCodec, P)>,
    ) -> Result<(), StreamError> {
        let k = self.entries.len();
        let mut h = xxhash_rust::xxh3::Xxh3::with_seed(sparsewire_metadata::tile_seed(
            self.index as u64,
            k as u64,
        ));
        let mut len = 0u64;
        let mut entries = Vec::new();
        for (plane, codec, pieces) in streams {
            let mut stream_len = 0u64;
            for piece in pieces {
                h.update(piece);
                w.out.write_all(piece).map_err(StreamError::Write)?;
                stream_len += piece.len() as u64;
            }
            entries.push(StreamEntry {
                plane,
                codec,
                len: stream_len,
            });
            len += stream_len;
        }
        self.entries.push(TileEntry {
            offset: w.data_len,
            len,
            checksum: h.digest(),
            streams: entries,
        });
        w.data_len += len;
        Ok(())
    }

    /// The shared models' bytes, empty where no tile used one.
    fn model_bytes(&self, models: &TensorModels) -> Vec<Vec<u8>> {
        models
            .to_bytes()
            .into_iter()
            .zip(&self.used)
            .map(|(b, &u)| if u { b } else { Vec::new() })
            .collect()
    }
}

/// Codes tiles `0..n` with `code` in parallel batches and writes them in order.
fn write_batched<W: Write>(
    w: &mut Writer<W>,
    tiles: &mut Tiles,
    n: u64,
    tile_bytes: impl Fn(u64) -> u64,
    code: impl Fn(u64) -> Result<Vec<EncodedStream>, StreamError> + Sync,
    progress: &mut dyn FnMut(u64),
) -> Result<(), StreamError> {
    let batch = (rayon::current_num_threads() * BATCH_PER_THREAD).max(1) as u64;
    let mut done = 0u64;
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let coded: Vec<_> = (start..end).into_par_iter().map(&code).collect();
        for (k, c) in (start..end).zip(coded) {
            tiles.put(w, &c?)?;
            done += tile_bytes(k);
        }
        progress(done);
        start = end;
    }
    Ok(())
}

fn read_err(tensor: &str) -> impl Fn(std::io::Error) -> StreamError + '_ {
    move |source| StreamError::Read {
        what: format!("tensor {tensor:?}"),
        source,
    }
}

/// Tiles of a lossless tensor whose plane histograms, counted to fit the shared models,
/// are kept for their own encode: 256 of about 20 KiB (F32) at most.
const KEEP_COUNTED: u64 = 256;

/// A lossless tensor.
pub(super) fn dense<W: Write>(
    w: &mut Writer<W>,
    t: TensorRef<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<TensorMeta, StreamError> {
    let numel = sparsewire_metadata::numel(t.name, t.shape)?;
    let (rows, cols) = view_2d(t.shape, numel);
    let expected = sparsewire_formats::byte_len(t.name, t.dtype, t.shape)?;
    if t.bytes.size() != expected {
        return Err(StreamError::Format(
            sparsewire_formats::FormatError::ByteLength {
                name: t.name.to_string(),
                dtype: t.dtype,
                shape: t.shape.to_vec(),
                expected,
                got: t.bytes.size(),
            },
        ));
    }
    let err = |source| StreamError::Encode {
        tensor: t.name.to_string(),
        source,
    };
    let Some(layout) = PlaneLayout::for_dtype(t.dtype) else {
        return whole(w, t, rows, cols, progress);
    };
    let opts = w.opts.clone();
    let tile_shape = opts
        .tile_shape
        .unwrap_or_else(|| default_tile_shape(rows, cols, opts.tile_elems.max(1)));
    let grid = TileGrid::new(rows, cols, tile_shape);
    let vb = layout.value_bytes;
    let n = grid.len();
    let read = |k: u64| grid.read_tile(t.bytes, k, vb).map_err(read_err(t.name));
    let tile_bytes = |k: u64| grid.rect(k).numel() * vb as u64;
    let meta = |codec, models, tiles: Tiles| TensorMeta {
        name: t.name.to_string(),
        dtype: t.dtype,
        shape: t.shape.to_vec(),
        layout: Layout::guess(t.shape),
        tile_shape,
        codec,
        models,
        sparsification: None,
        reconstruction: Default::default(),
        tiles: tiles.entries,
    };
    if opts.profile == Profile::Fast {
        let mut tiles = Tiles::new(w, 0);
        let code = |k| {
            Ok(vec![
                encode_whole(ValueCodec::Raw, &read(k)?, 0).map_err(err)?
            ])
        };
        write_batched(w, &mut tiles, n, tile_bytes, code, progress)?;
        return Ok(meta(ValueCodec::Raw, vec![], tiles));
    }
    // Shared models pay only when several tiles use them; a lone tile's own model is the
    // same table stored once.
    //
    // Counting a tile for the models is also the count its own streams need: the first
    // KEEP_COUNTED tiles' histograms are kept for the encode (at most a few MiB, whatever
    // the tensor's size; a 12M-value tensor at the default tile size fits).
    let count = |k: u64| {
        let mut h = PlaneHistograms::new(layout);
        h.add(&read(k)?);
        Ok::<_, StreamError>(h)
    };
    let (models, counted) = if n >= 2 {
        let kept = n.min(KEEP_COUNTED);
        let counted: Vec<PlaneHistograms> = (0..kept)
            .into_par_iter()
            .map(count)
            .collect::<Result<_, _>>()?;
        let rest = (kept..n)
            .into_par_iter()
            .map(count)
            .try_reduce_with(|a, b| Ok(a.merge(&b)))
            .transpose()?;
        let h = counted
            .iter()
            .chain(&rest)
            .fold(PlaneHistograms::new(layout), |a, b| a.merge(b));
        (TensorModels::fit(&h), counted)
    } else {
        let models = TensorModels {
            models: vec![None; 1 + layout.byte_planes],
        };
        (models, Vec::new())
    };
    let planes = |k: u64, tile: &[u8]| {
        encode_planes_counted(layout, tile, &models, counted.get(k as usize)).map_err(err)
    };
    // The trial on the first tile: planes, zstd (when allowed) or, when neither pays (a
    // tensor of a few hundred bytes, noise), raw. The first tile's planes are kept.
    let (codec, first_planes) = if n == 0 {
        (ValueCodec::FloatPlanes, None)
    } else {
        let first = read(0)?;
        let z = if opts.try_lz && lz_may_pay(&first) {
            let z = encode_whole(ValueCodec::Zstd, &first, opts.zstd_level).map_err(err)?;
            Some(z.bytes.len())
        } else {
            None
        };
        let choose = |p: usize| match z {
            Some(z) if (z as f64) < p as f64 * LZ_MIN_GAIN && z < first.len() => ValueCodec::Zstd,
            _ if p >= first.len() => ValueCodec::Raw,
            _ => ValueCodec::FloatPlanes,
        };
        // A lone tile (no shared models) of a few dozen values cannot be smaller as planes
        // than raw: when the planes' lower bound already decides the choice as their size
        // would, their models are not fitted (half the encode of PP-OCR's 135 tensors
        // went to tensors of at most 1 KiB).
        let floor = if n == 1 && first.len() <= PLANES_FLOOR_BYTES {
            encode_planes_len_lower_bound(layout, &first)
        } else {
            0
        };
        let decided = (floor >= first.len())
            .then(|| choose(floor))
            .filter(|&c| match c {
                // zstd beats the planes' floor, so any size they can have.
                ValueCodec::Zstd => true,
                // Raw, unless zstd is smaller than raw: then larger planes may let it win.
                _ => z.is_none_or(|z| z >= first.len()),
            });
        match decided {
            Some(codec) => (codec, None),
            None => {
                let first_planes = planes(0, &first)?;
                (choose(streams_len(&first_planes)), Some(first_planes))
            }
        }
    };
    let first_planes = std::sync::Mutex::new(first_planes);
    let plane_models = if codec == ValueCodec::FloatPlanes {
        models.models.len()
    } else {
        0
    };
    let mut tiles = Tiles::new(w, plane_models);
    let code = |k| {
        if codec == ValueCodec::FloatPlanes {
            if k == 0 {
                if let Some(p) = first_planes.lock().expect("not poisoned").take() {
                    return Ok(p);
                }
            }
            return planes(k, &read(k)?);
        }
        Ok(vec![
            encode_whole(codec, &read(k)?, opts.zstd_level).map_err(err)?
        ])
    };
    write_batched(w, &mut tiles, n, tile_bytes, code, progress)?;
    if codec != ValueCodec::FloatPlanes {
        return Ok(meta(codec, vec![], tiles));
    }
    let models = tiles.model_bytes(&models);
    Ok(meta(codec, models, tiles))
}

/// A tensor of any other dtype: one tile holding the whole tensor, raw or zstd.
fn whole<W: Write>(
    w: &mut Writer<W>,
    t: TensorRef<'_>,
    rows: u64,
    cols: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<TensorMeta, StreamError> {
    let tile_shape = TileShape {
        rows: rows.max(1),
        cols: cols.max(1),
    };
    let len = t.bytes.size();
    let err = |source| StreamError::Encode {
        tensor: t.name.to_string(),
        source,
    };
    let read = |off: u64, n: usize| t.bytes.read(off, n).map_err(read_err(t.name));
    let mut codec = ValueCodec::Raw;
    let mut tiles = Tiles::new(w, 0);
    if len > 0 {
        let opts = w.opts.clone();
        // The trial codes a sample: the whole tensor when it is small.
        let sample = read(0, (len as usize).min(CHUNK))?;
        if opts.try_lz {
            let z = encode_whole(ValueCodec::Zstd, &sample, opts.zstd_level).map_err(err)?;
            if (z.bytes.len() as f64) < sample.len() as f64 * LZ_MIN_GAIN {
                codec = ValueCodec::Zstd;
            }
        }
        if len as usize <= CHUNK {
            tiles.put(
                w,
                &[encode_whole(codec, &sample, opts.zstd_level).map_err(err)?],
            )?;
        } else {
            streamed(w, &mut tiles, t, codec, opts.zstd_level)?;
        }
        progress(len);
    }
    Ok(TensorMeta {
        name: t.name.to_string(),
        dtype: t.dtype,
        shape: t.shape.to_vec(),
        layout: Layout::guess(t.shape),
        tile_shape,
        codec,
        models: vec![],
        sparsification: None,
        reconstruction: Default::default(),
        tiles: tiles.entries,
    })
}

/// Counts and hashes what passes through to the output.
struct Tee<'a, W: Write> {
    out: &'a mut W,
    hash: xxhash_rust::xxh3::Xxh3,
    len: u64,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A whole tile larger than [`CHUNK`]: read, (zstd-)coded, hashed and written in chunks.
fn streamed<W: Write>(
    w: &mut Writer<W>,
    tiles: &mut Tiles,
    t: TensorRef<'_>,
    codec: ValueCodec,
    level: i32,
) -> Result<(), StreamError> {
    let k = tiles.entries.len();
    let mut tee = Tee {
        out: &mut w.out,
        hash: xxhash_rust::xxh3::Xxh3::with_seed(sparsewire_metadata::tile_seed(
            tiles.index as u64,
            k as u64,
        )),
        len: 0,
    };
    let len = t.bytes.size();
    let zerr = |e: std::io::Error| StreamError::Encode {
        tensor: t.name.to_string(),
        source: CodecError::Zstd {
            reason: e.to_string(),
        },
    };
    let mut off = 0u64;
    match codec {
        ValueCodec::Zstd => {
            let mut z = zstd::stream::Encoder::new(&mut tee, level).map_err(zerr)?;
            z.set_pledged_src_size(Some(len)).map_err(zerr)?;
            while off < len {
                let n = (len - off).min(CHUNK as u64) as usize;
                let chunk = t.bytes.read(off, n).map_err(read_err(t.name))?;
                z.write_all(&chunk).map_err(zerr)?;
                off += n as u64;
            }
            z.finish().map_err(zerr)?;
        }
        _ => {
            while off < len {
                let n = (len - off).min(CHUNK as u64) as usize;
                let chunk = t.bytes.read(off, n).map_err(read_err(t.name))?;
                tee.write_all(&chunk).map_err(StreamError::Write)?;
                off += n as u64;
            }
        }
    }
    let (checksum, stored) = (tee.hash.digest(), tee.len);
    tiles.entries.push(TileEntry {
        offset: w.data_len,
        len: stored,
        checksum,
        streams: vec![StreamEntry {
            plane: Plane::Whole,
            codec: if codec == ValueCodec::Zstd {
                StreamCodec::Zstd
            } else {
                StreamCodec::Raw
            },
            len: stored,
        }],
    });
    w.data_len += stored;
    Ok(())
}

/// A sparsified float tensor.
pub(super) fn sparse<W: Write>(
    w: &mut Writer<W>,
    name: &str,
    shape: &[u64],
    s: &SparseTensor,
    progress: &mut dyn FnMut(u64),
) -> Result<TensorMeta, StreamError> {
    let dtype = s.tile.dtype();
    let Some(layout) = PlaneLayout::for_dtype(dtype) else {
        return Err(StreamError::SparseDtype {
            tensor: name.to_string(),
            dtype,
        });
    };
    let numel = sparsewire_metadata::numel(name, shape)?;
    let (rows, cols) = view_2d(shape, numel);
    if (s.tile.rows() as u64, s.tile.cols() as u64) != (rows, cols) {
        return Err(StreamError::SparseShape {
            tensor: name.to_string(),
            expected: (rows, cols),
            got: (s.tile.rows(), s.tile.cols()),
        });
    }
    let err = |source| StreamError::Encode {
        tensor: name.to_string(),
        source,
    };
    let opts = w.opts.clone();
    let tile_shape = opts
        .tile_shape
        .unwrap_or_else(|| default_tile_shape(rows, cols, opts.tile_elems.max(1)));
    let grid = TileGrid::new(rows, cols, tile_shape);
    let n = grid.len();
    let offsets = s.tile.row_offsets();
    // Each tile borrowed where it is whole rows on mask byte boundaries (the default tile
    // shape), else copied out: copies were a tenth of a sparse encode.
    let crop = |k: u64| -> Result<Piece<'_>, StreamError> {
        let r = grid.rect(k);
        let (row, rows) = (r.row as usize, r.rows as usize);
        if r.col == 0 && r.cols == cols {
            if let Some(v) = s.tile.rows_view(&offsets, row, rows) {
                return Ok(Piece::View(v));
            }
        }
        s.tile
            .crop(&offsets, row, r.col as usize, rows, r.cols as usize)
            .map(Piece::Copy)
            .map_err(|source| StreamError::Sparse {
                tensor: name.to_string(),
                tile: Some(k as usize),
                source,
            })
    };
    let nm = match s.info.pattern {
        Pattern::NM { n, m } if NMTable::new(n, m).is_ok() => Some((n, m)),
        _ => None,
    };
    let vb = layout.value_bytes as u64;
    let tile_bytes = |k: u64| grid.rect(k).numel() * vb;
    // Shared models (small profile, two tiles or more): the kept values' planes, and one
    // bitmask-byte model for the tensor (a local model per tile would cost ~6% of an
    // 8 KiB mask).
    // As for a lossless tensor, the first KEEP_COUNTED tiles' value histograms are kept for
    // their own encode.
    let count = |k: u64| {
        let t = crop(k)?;
        let t = t.get();
        let mut h = PlaneHistograms::new(layout);
        h.add(t.values());
        let mut m = vec![0u64; 256];
        for &b in t.mask().as_bytes() {
            m[b as usize] += 1;
        }
        Ok::<_, StreamError>((h, m))
    };
    let merge = |(ha, mut ma): (PlaneHistograms, Vec<u64>),
                 (hb, mb): (&PlaneHistograms, &[u64])| {
        for (a, b) in ma.iter_mut().zip(mb) {
            *a += b;
        }
        (ha.merge(hb), ma)
    };
    let (mut models, mask_hist, counted) = if opts.profile == Profile::Small && n >= 2 {
        let kept = n.min(KEEP_COUNTED);
        let counted: Vec<(PlaneHistograms, Vec<u64>)> = (0..kept)
            .into_par_iter()
            .map(count)
            .collect::<Result<_, _>>()?;
        let rest = (kept..n)
            .into_par_iter()
            .map(count)
            .try_reduce_with(|a, b| Ok(merge(a, (&b.0, &b.1))))
            .transpose()?;
        let (h, m) = counted
            .iter()
            .chain(&rest)
            .fold((PlaneHistograms::new(layout), vec![0u64; 256]), |a, b| {
                merge(a, (&b.0, &b.1))
            });
        let counted: Vec<PlaneHistograms> = counted.into_iter().map(|(h, _)| h).collect();
        (TensorModels::fit(&h), m, counted)
    } else {
        (
            TensorModels {
                models: vec![None; 1 + layout.byte_planes],
            },
            vec![0u64; 256],
            Vec::new(),
        )
    };
    let mask_model_id = models.models.len() as u16;
    models.models.push(Model::from_counts(&mask_hist));
    let shared = models.get(mask_model_id).map(|m| (m, mask_model_id));
    let mut tiles = Tiles::new(w, models.models.len());
    let fast = opts.profile == Profile::Fast;
    if fast {
        // The fast profile stores the mask's bits and the kept values as they are: each
        // tile goes straight from the sparse tensor to the output, in order (coding them
        // into streams first copied every byte twice: a sixth of a 50% encode of MiniLM).
        let mut done = 0u64;
        let mut count = Vec::with_capacity(10);
        for k in 0..n {
            let piece = crop(k)?;
            let t = piece.get();
            let bits = t.mask().as_bytes();
            // The mask stream: the byte count (varint), then the packed bits as they are.
            count.clear();
            sparsewire_metadata::varint::put(&mut count, bits.len() as u64);
            let none: &[u8] = &[];
            tiles.put_pieces(
                w,
                [
                    (
                        Plane::Mask(MaskEncoding::Bitmask),
                        StreamCodec::Raw,
                        [&count[..], bits],
                    ),
                    (Plane::Whole, StreamCodec::Raw, [t.values(), none]),
                ],
            )?;
            done += tile_bytes(k);
            progress(done);
        }
    } else {
        let code = |k| {
            let t = crop(k)?;
            let t = t.get();
            let mask =
                best_mask_stream(t.mask(), grid.rect(k).cols as usize, nm, shared).map_err(err)?;
            let values =
                encode_planes_counted(layout, t.values(), &models, counted.get(k as usize))
                    .map_err(err)?;
            Ok(std::iter::once(mask).chain(values).collect())
        };
        write_batched(w, &mut tiles, n, tile_bytes, code, progress)?;
    }
    let model_bytes = tiles.model_bytes(&models);
    Ok(TensorMeta {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        layout: Layout::guess(shape),
        tile_shape,
        codec: if fast {
            ValueCodec::Raw
        } else {
            ValueCodec::FloatPlanes
        },
        models: model_bytes,
        sparsification: Some(s.info.clone()),
        reconstruction: s.reconstruction.clone(),
        tiles: tiles.entries,
    })
}

/// The mask in the encoding whose coded stream is smallest.
fn best_mask_stream(
    mask: MaskRef<'_>,
    row_len: usize,
    nm: Option<(u8, u8)>,
    bitmask_model: Option<(&Model, u16)>,
) -> Result<EncodedStream, CodecError> {
    let mut best: Option<EncodedStream> = None;
    let bitmask_bytes = mask.len().div_ceil(8);
    for enc in codes::candidates(nm) {
        // Run-length and delta codes spend at least a byte per run or kept element: skip
        // them where that alone is more than the plain bitmask.
        let floor = match enc {
            MaskEncoding::RunLength => mask.runs(),
            MaskEncoding::DeltaIndices => mask.kept(),
            _ => 0,
        };
        if floor > bitmask_bytes {
            continue;
        }
        // An N:M code only exists for masks that keep N of every M.
        let Ok(sym) = codes::to_symbols(mask, enc, row_len, nm) else {
            continue;
        };
        let s = encode_symbol_stream(
            Plane::Mask(enc),
            &sym.symbols,
            sym.alphabet,
            bitmask_model.filter(|_| enc == MaskEncoding::Bitmask),
        )?;
        if best.as_ref().is_none_or(|b| s.bytes.len() < b.bytes.len()) {
            best = Some(s);
        }
    }
    Ok(best.expect("the bitmask encoding always applies"))
}

/// One tile of a sparse tensor: borrowed from the tensor's tile, or copied out of it.
enum Piece<'a> {
    View(SparseTileRef<'a>),
    Copy(SparseTile),
}

impl Piece<'_> {
    fn get(&self) -> SparseTileRef<'_> {
        match self {
            Piece::View(v) => *v,
            Piece::Copy(t) => t.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn the_lz_screen_sees_repeats_and_lets_noise_skip_the_trial() {
        let random = bytes(&noise(16384, 3));
        assert!(repeated_words(&random) < 0.001);
        assert!(!lz_may_pay(&random));
        // A row of 300 values repeated: every word after the first row repeats.
        let row = noise(300, 5);
        let rows: Vec<f32> = (0..60).flat_map(|_| row.iter().copied()).collect();
        assert!(repeated_words(&bytes(&rows)) > 0.9);
        assert!(lz_may_pay(&bytes(&rows)));
        // Zeros count as repeats; small tiles always get the trial, tiny ones with repeats.
        assert_eq!(repeated_words(&[0u8; 64]), 1.0);
        assert!(lz_may_pay(&[0u8; 64]));
        assert!(!lz_may_pay(&random[..LZ_TINY_BYTES - 4]));
        assert!(lz_may_pay(&random[..LZ_TINY_BYTES]));
        assert!(lz_may_pay(&random[..LZ_SCREEN_BYTES]));
        assert_eq!(repeated_words(&[]), 0.0);
    }

    #[test]
    fn a_large_float_tensor_with_repeats_still_chooses_zstd() {
        use sparsewire_formats::{Tensor, TensorFile};
        let row = noise(256, 9);
        let rows: Vec<f32> = (0..256).flat_map(|_| row.iter().copied()).collect();
        let file = TensorFile {
            tensors: vec![
                Tensor::from_f32("rows", vec![256, 256], &rows),
                Tensor::from_f32("noise", vec![256, 256], &noise(65536, 11)),
            ],
            metadata: vec![],
        };
        let b = crate::encode(&file, &crate::EncodeOptions::default()).unwrap();
        let r = crate::Reader::new(&b[..]).unwrap();
        assert_eq!(r.header().tensors[0].codec, ValueCodec::Zstd);
        assert_eq!(r.header().tensors[1].codec, ValueCodec::FloatPlanes);
        assert_eq!(r.decode_all().unwrap(), file);
    }
}
