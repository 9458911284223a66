//! Writing a stream: tile, code and index every tensor, then lay out preamble, header and
//! data section (SPEC §1).

use crate::{data_start, tile_checksum, StreamError, FORMAT_VERSION, MAGIC};
use rayon::prelude::*;
use sparsewire_codec::{
    encode_planes, encode_whole, EncodedStream, PlaneHistograms, PlaneLayout, TensorModels,
};
use sparsewire_formats::tiling::{default_tile_shape, TileGrid, DEFAULT_TILE_ELEMS};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_masks::{candidates, Mask, MaskEncoding, NMTable};
use sparsewire_metadata::{
    view_2d, Header, Layout, Pattern, Plane, Reconstruction, Sparsification, StreamCodec,
    TensorMeta, TileEntry, TileShape, ValueCodec,
};

/// How to write a stream. `Default` is the recommended configuration.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Elements per tile the default tile shape aims at.
    pub tile_elems: u64,
    /// A fixed tile shape for every float tensor (overrides `tile_elems`).
    pub tile_shape: Option<TileShape>,
    /// Try a zstd pass per tensor and keep it where it is smaller than the float planes
    /// (structured tensors) or than raw bytes (non-float tensors).
    pub try_lz: bool,
    /// zstd level for that pass.
    pub zstd_level: i32,
    /// Entropy-coded (`Small`) or memory-speed (`Fast`) values and masks.
    pub profile: Profile,
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

/// Progress of a long encode, reported after each tensor.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// A sparsified tensor's mask, for [`encode_sparse`].
#[derive(Debug, Clone)]
pub struct TensorMask {
    /// Kept flags, one per element of the tensor's 2-D view, row-major.
    pub keep: Vec<bool>,
    /// What the sparsification engine did (stored in the header).
    pub info: Sparsification,
    /// How the dropped elements are rebuilt (stored in the header).
    pub reconstruction: Reconstruction,
}

struct EncodedTensor {
    meta: TensorMeta,
    tiles: Vec<Vec<u8>>,
}

/// The zstd pass is kept only when it beats the alternative by this factor.
const LZ_MIN_GAIN: f64 = 0.98;

fn streams_len(s: &[EncodedStream]) -> usize {
    s.iter().map(|s| s.bytes.len()).sum()
}

fn encode_tensor(
    index: usize,
    t: &Tensor,
    mask: Option<&TensorMask>,
    opts: &EncodeOptions,
) -> Result<EncodedTensor, StreamError> {
    let numel = sparsewire_metadata::numel(&t.name, &t.shape)?;
    let (rows, cols) = view_2d(&t.shape, numel);
    let err = |source| StreamError::Encode {
        tensor: t.name.clone(),
        source,
    };
    let layout = PlaneLayout::for_dtype(t.dtype);
    // Float tensors are tiled; other dtypes (any bit width) are one tile, carried through.
    let tile_shape = match layout {
        Some(_) => opts
            .tile_shape
            .unwrap_or_else(|| default_tile_shape(rows, cols, opts.tile_elems)),
        None => TileShape {
            rows: rows.max(1),
            cols: cols.max(1),
        },
    };
    let grid = TileGrid::new(rows, cols, tile_shape);
    let elem = (t.dtype.bits() / 8).max(1) as usize;
    let tiles: Vec<std::borrow::Cow<[u8]>> = match layout {
        Some(_) => (0..grid.len())
            .map(|k| grid.gather(&t.data, k, elem))
            .collect(),
        None if grid.is_empty() => vec![],
        None => vec![std::borrow::Cow::Borrowed(&t.data[..])],
    };
    // Sparse float tensors: each tile's mask, and its kept values only.
    let (tiles, tile_masks): (Vec<std::borrow::Cow<[u8]>>, Vec<Mask>) = match (mask, layout) {
        (Some(m), Some(_)) => {
            if m.keep.len() as u64 != numel {
                return Err(StreamError::MaskLength {
                    tensor: t.name.clone(),
                    expected: numel,
                    got: m.keep.len() as u64,
                });
            }
            let flags: Vec<u8> = m.keep.iter().map(|&k| k as u8).collect();
            let mut kept_tiles = Vec::with_capacity(tiles.len());
            let mut masks = Vec::with_capacity(tiles.len());
            for (k, tile) in tiles.iter().enumerate() {
                let f = grid.gather(&flags, k as u64, 1);
                let mask = Mask::from_flags(&f);
                // Kept values: write every value, advance only past kept ones.
                let mut kept = vec![0u8; tile.len() + elem];
                let mut at = 0;
                for (v, &keep) in tile.chunks_exact(elem).zip(f.iter()) {
                    kept[at..at + elem].copy_from_slice(v);
                    at += elem * (keep != 0) as usize;
                }
                kept.truncate(at);
                kept_tiles.push(std::borrow::Cow::Owned(kept));
                masks.push(mask);
            }
            (kept_tiles, masks)
        }
        _ => (tiles, Vec::new()),
    };
    let sparse = !tile_masks.is_empty();

    let (codec, models, streams): (ValueCodec, TensorModels, Vec<Vec<EncodedStream>>) = match layout
    {
        Some(layout) if opts.profile == Profile::Fast => {
            let streams = tiles
                .iter()
                .map(|tile| Ok(vec![encode_whole(ValueCodec::Raw, tile, 0).map_err(err)?]))
                .collect::<Result<Vec<_>, StreamError>>()?;
            let models = TensorModels {
                models: vec![None; 1 + layout.byte_planes],
            };
            (ValueCodec::Raw, models, streams)
        }
        Some(layout) => {
            // Shared models pay only when several tiles use them; a lone tile's own
            // model is the same table stored once.
            let models = if tiles.len() >= 2 {
                let h = tiles
                    .par_iter()
                    .map(|tile| {
                        let mut h = PlaneHistograms::new(layout);
                        h.add(tile);
                        h
                    })
                    .reduce_with(|a, b| a.merge(&b))
                    .expect("two or more tiles");
                TensorModels::fit(&h)
            } else {
                TensorModels {
                    models: vec![None; 1 + layout.byte_planes],
                }
            };
            let planes = |tile: &[u8]| encode_planes(layout, tile, &models).map_err(err);
            let mut lz = false;
            if opts.try_lz && !tiles.is_empty() && !sparse {
                let p = streams_len(&planes(&tiles[0])?);
                let z = encode_whole(ValueCodec::Zstd, &tiles[0], opts.zstd_level).map_err(err)?;
                lz = (z.bytes.len() as f64) < p as f64 * LZ_MIN_GAIN;
            }
            let streams = tiles
                .par_iter()
                .map(|tile| {
                    if lz {
                        Ok(vec![
                            encode_whole(ValueCodec::Zstd, tile, opts.zstd_level).map_err(err)?
                        ])
                    } else {
                        planes(tile)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let codec = if lz {
                ValueCodec::Zstd
            } else {
                ValueCodec::FloatPlanes
            };
            (codec, models, streams)
        }
        None => {
            let mut codec = ValueCodec::Raw;
            if opts.try_lz && !tiles.is_empty() {
                let z = encode_whole(ValueCodec::Zstd, &tiles[0], opts.zstd_level).map_err(err)?;
                if (z.bytes.len() as f64) < tiles[0].len() as f64 * LZ_MIN_GAIN {
                    codec = ValueCodec::Zstd;
                }
            }
            let streams = tiles
                .iter()
                .map(|tile| {
                    Ok(vec![
                        encode_whole(codec, tile, opts.zstd_level).map_err(err)?
                    ])
                })
                .collect::<Result<Vec<_>, StreamError>>()?;
            (codec, TensorModels { models: vec![] }, streams)
        }
    };

    let mut models = models;
    let streams = if sparse {
        let nm = match mask.map(|m| m.info.pattern) {
            Some(Pattern::NM { n, m }) if NMTable::new(n, m).is_ok() => Some((n, m)),
            _ => None,
        };
        // One bitmask-byte model for the tensor: a local model per tile would cost ~6% of
        // an 8 KiB mask.
        let mut hist = vec![0u64; 256];
        if tile_masks.len() >= 2 {
            for m in &tile_masks {
                for &b in m.as_bytes() {
                    hist[b as usize] += 1;
                }
            }
        }
        let mask_model_id = models.models.len() as u16;
        models
            .models
            .push(sparsewire_codec::rans::Model::from_counts(&hist));
        let shared = models.get(mask_model_id).map(|m| (m, mask_model_id));
        let coded_masks = tile_masks
            .par_iter()
            .enumerate()
            .map(|(k, m)| match opts.profile {
                Profile::Fast => Ok(raw_bitmask_stream(m)),
                Profile::Small => {
                    best_mask_stream(m, grid.rect(k as u64).cols as usize, nm, shared).map_err(err)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        coded_masks
            .into_iter()
            .zip(streams)
            .map(|(m, s)| std::iter::once(m).chain(s).collect())
            .collect()
    } else {
        streams
    };

    // Keep only the shared models some tile uses.
    let mut used = vec![false; models.models.len()];
    for s in streams.iter().flatten() {
        if let StreamCodec::RansShared { model } = s.codec {
            used[model as usize] = true;
        }
    }
    let model_bytes = models
        .to_bytes()
        .into_iter()
        .zip(&used)
        .map(|(b, &u)| if u { b } else { Vec::new() })
        .collect();

    let mut entries = Vec::with_capacity(streams.len());
    let mut tile_bytes = Vec::with_capacity(streams.len());
    for (k, s) in streams.into_iter().enumerate() {
        let bytes: Vec<u8> = s.iter().map(|s| &s.bytes[..]).collect::<Vec<_>>().concat();
        entries.push(TileEntry {
            offset: 0,
            len: bytes.len() as u64,
            checksum: tile_checksum(&bytes, index, k),
            streams: s.iter().map(EncodedStream::entry).collect(),
        });
        tile_bytes.push(bytes);
    }
    Ok(EncodedTensor {
        meta: TensorMeta {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            layout: Layout::guess(&t.shape),
            tile_shape,
            codec,
            models: model_bytes,
            sparsification: mask.filter(|_| sparse).map(|m| m.info.clone()),
            mask_encoding: None,
            reconstruction: mask
                .filter(|_| sparse)
                .map(|m| m.reconstruction.clone())
                .unwrap_or_default(),
            tiles: entries,
        },
        tiles: tile_bytes,
    })
}

/// The fast profile's mask: the element count (varint), then the packed bits as they are.
fn raw_bitmask_stream(mask: &Mask) -> EncodedStream {
    let bits = mask.as_bytes();
    let mut bytes = Vec::with_capacity(bits.len() + 10);
    sparsewire_codec::rans::put_varint(&mut bytes, bits.len() as u64);
    bytes.extend_from_slice(bits);
    EncodedStream {
        plane: Plane::Mask(MaskEncoding::Bitmask),
        codec: StreamCodec::Raw,
        bytes,
    }
}

/// The mask in the encoding whose coded stream is smallest.
fn best_mask_stream(
    mask: &Mask,
    row_len: usize,
    nm: Option<(u8, u8)>,
    bitmask_model: Option<(&sparsewire_codec::rans::Model, u16)>,
) -> Result<EncodedStream, sparsewire_codec::CodecError> {
    let mut best: Option<EncodedStream> = None;
    let bitmask_bytes = mask.len().div_ceil(8);
    for enc in candidates(nm) {
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
        let Ok(sym) = mask.to_symbols(enc, row_len, nm) else {
            continue;
        };
        let s = sparsewire_codec::encode_symbol_stream(
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

/// Encodes a tensor file as a `.swire` stream. `progress` is called after each tensor.
pub fn encode(
    file: &TensorFile,
    opts: &EncodeOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<u8>, StreamError> {
    encode_sparse(file, &[], opts, progress)
}

/// Encodes tensors some of which are sparsified: `masks[i]` (when present and `Some`) is
/// tensor `i`'s mask; its tiles store the mask and the kept values only.
pub fn encode_sparse(
    file: &TensorFile,
    masks: &[Option<TensorMask>],
    opts: &EncodeOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<u8>, StreamError> {
    let total_bytes = file.byte_len();
    let mut done_bytes = 0;
    let mut encoded = Vec::with_capacity(file.tensors.len());
    for (i, t) in file.tensors.iter().enumerate() {
        let _span = tracing::debug_span!("encode_tensor", name = %t.name).entered();
        let mask = masks.get(i).and_then(Option::as_ref);
        encoded.push(encode_tensor(i, t, mask, opts)?);
        done_bytes += t.data.len() as u64;
        progress(Progress {
            done_bytes,
            total_bytes,
        });
    }
    let mut offset = 0u64;
    for e in &mut encoded {
        for (entry, bytes) in e.meta.tiles.iter_mut().zip(&e.tiles) {
            entry.offset = offset;
            offset += bytes.len() as u64;
        }
    }
    let header = Header {
        tensors: encoded.iter().map(|e| e.meta.clone()).collect(),
        user_metadata: file.metadata.clone(),
        data_len: offset,
    };
    header.validate()?;
    let hbytes = header.to_postcard()?;
    let start = data_start(hbytes.len() as u64).expect("header under the cap") as usize;
    let mut out = Vec::with_capacity(start + offset as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(hbytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&hbytes).to_le_bytes());
    out.extend_from_slice(&hbytes);
    out.resize(start, 0);
    for e in &encoded {
        for t in &e.tiles {
            out.extend_from_slice(t);
        }
    }
    tracing::debug!(
        tensors = header.tensors.len(),
        header_bytes = hbytes.len(),
        data_bytes = offset,
        "stream written"
    );
    Ok(out)
}
