//! Reports: what a stream holds ([`inspect`]) and how fast it codes ([`bench`]).
//! Field names are stable: the README documents them for `--json` users.

use crate::{ratio, PipelineError};
use serde::Serialize;
use sparsewire_codec::PlaneLayout;
use sparsewire_formats::TensorFile;
use sparsewire_metadata::{Plane, StreamCodec, ValueCodec};
use sparsewire_stream::{encode, EncodeOptions, Reader};
use std::collections::BTreeMap;
use std::time::Instant;

/// One plane of one tensor, summed over its tiles.
#[derive(Debug, Clone, Serialize)]
pub struct PlaneReport {
    /// `head`, `tail_bits`, `byte1`, `byte0` or `whole`.
    pub plane: String,
    /// Stored bytes, over all tiles (shared models counted in the tensor, not here).
    pub bytes: u64,
    /// How many tiles used each stream codec.
    pub codecs: BTreeMap<String, usize>,
    /// Order-0 entropy of the plane's symbols over the whole tensor, in bytes.
    pub entropy_bound_bytes: f64,
}

/// One tensor of a stream.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub input_bytes: u64,
    /// Stored bytes: tiles plus shared entropy models.
    pub output_bytes: u64,
    pub ratio: f64,
    pub codec: String,
    pub tiles: usize,
    pub tile_shape: [u64; 2],
    pub model_bytes: u64,
    pub planes: Vec<PlaneReport>,
    /// For sparsified tensors: how, and what it cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsification: Option<SparsityInfo>,
}

/// The sparsification record of a tensor, as `inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SparsityInfo {
    pub criterion: String,
    pub pattern: String,
    pub sparsity: f64,
    pub reconstruction: String,
    pub rel_error: f64,
    pub output_error: Option<f64>,
    pub mask_bits_per_element: f64,
    /// H(density), the order-0 bound of an unstructured mask.
    pub mask_entropy_bits_per_element: f64,
    /// How many tiles used each mask encoding.
    pub mask_encodings: BTreeMap<String, usize>,
}

/// `sparsewire inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub format_version: u32,
    /// Dense bytes of all tensors.
    pub input_bytes: u64,
    /// Bytes of the whole stream (preamble, header, data).
    pub output_bytes: u64,
    pub ratio: f64,
    pub header_bytes: u64,
    pub tensors: Vec<TensorReport>,
}

fn plane_name(p: Plane) -> String {
    match p {
        Plane::Whole => "whole".into(),
        Plane::Head => "head".into(),
        Plane::TailBits => "tail_bits".into(),
        Plane::Byte(k) => format!("byte{k}"),
        Plane::Mask(_) => "mask".into(),
    }
}

fn codec_name(c: StreamCodec) -> String {
    match c {
        StreamCodec::Raw => "raw".into(),
        StreamCodec::Constant { .. } => "constant".into(),
        StreamCodec::RansShared { .. } => "rans-shared".into(),
        StreamCodec::RansLocal => "rans-local".into(),
        StreamCodec::Zstd => "zstd".into(),
    }
}

/// Order-0 entropy bound of each plane of a tensor's bytes, in stream order: the float
/// planes, or the bytes of a whole-tile tensor.
fn plane_bounds(codec: ValueCodec, layout: Option<PlaneLayout>, data: &[u8]) -> Vec<f64> {
    match (codec, layout) {
        (ValueCodec::FloatPlanes, Some(l)) => sparsewire_codec::plane_entropy_bytes(l, data),
        _ => {
            let mut h = vec![0u64; 256];
            for &b in data {
                h[b as usize] += 1;
            }
            vec![sparsewire_codec::entropy_bits(&h) / 8.0]
        }
    }
}

/// Describes every tensor of a stream. With `entropy`, decodes each tensor to compute the
/// order-0 entropy bound of its planes.
pub fn inspect<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    entropy: bool,
) -> Result<InspectReport, PipelineError> {
    let h = reader.header();
    let mut tensors = Vec::with_capacity(h.tensors.len());
    for (i, t) in h.tensors.iter().enumerate() {
        let input_bytes = t.byte_len().map_err(sparsewire_stream::StreamError::from)?;
        let model_bytes: u64 = t.models.iter().map(|m| m.len() as u64).sum();
        let mut planes: Vec<PlaneReport> = Vec::new();
        for tile in &t.tiles {
            for (j, s) in tile.streams.iter().enumerate() {
                if planes.len() <= j {
                    planes.push(PlaneReport {
                        plane: plane_name(s.plane),
                        bytes: 0,
                        codecs: BTreeMap::new(),
                        entropy_bound_bytes: 0.0,
                    });
                }
                planes[j].bytes += s.len;
                *planes[j].codecs.entry(codec_name(s.codec)).or_default() += 1;
            }
        }
        if entropy && !t.tiles.is_empty() {
            let layout = PlaneLayout::for_dtype(t.dtype);
            let mut bounds = Vec::new();
            let data = match &t.sparsification {
                // A sparse tensor: the mask's bound H(density), then the planes of the kept
                // values only, as they are stored.
                Some(sp) => {
                    let n = t.numel().unwrap_or(0) as f64;
                    bounds
                        .push(n * sparsewire_masks::binary_entropy(1.0 - sp.sparsity as f64) / 8.0);
                    let vb = (t.dtype.bits() / 8) as usize;
                    let mut kept = Vec::new();
                    for k in 0..t.tiles.len() {
                        if let Some(mask) = reader.tile_mask(i, k)? {
                            let tile = reader.decode_tile(i, k)?;
                            for j in mask.kept_indices() {
                                kept.extend_from_slice(&tile[j * vb..(j + 1) * vb]);
                            }
                        }
                    }
                    kept
                }
                None => reader.decode_tensor(i)?.data,
            };
            bounds.extend(plane_bounds(t.codec, layout, &data));
            for (p, b) in planes.iter_mut().zip(bounds) {
                p.entropy_bound_bytes = b;
            }
        }
        let stored: u64 = t.tiles.iter().map(|x| x.len).sum::<u64>() + model_bytes;
        let sparsification = t.sparsification.as_ref().map(|sp| {
            let n = t.numel().unwrap_or(0).max(1) as f64;
            let mut encodings = BTreeMap::new();
            let mut mask_bytes = 0u64;
            for s in t.tiles.iter().flat_map(|x| &x.streams) {
                if let Plane::Mask(enc) = s.plane {
                    *encodings.entry(format!("{enc:?}")).or_default() += 1;
                    mask_bytes += s.len;
                }
            }
            SparsityInfo {
                criterion: format!("{:?}", sp.criterion),
                pattern: format!("{:?}", sp.pattern),
                sparsity: sp.sparsity as f64,
                reconstruction: match &t.reconstruction {
                    sparsewire_metadata::Reconstruction::Zero => "zero".into(),
                    sparsewire_metadata::Reconstruction::Channels { combinations } => {
                        format!("channels ({} rows rebuilt)", combinations.len())
                    }
                    other => format!("{other:?}"),
                },
                rel_error: sp.rel_error as f64,
                output_error: sp.output_error.map(|e| e as f64),
                mask_bits_per_element: mask_bytes as f64 * 8.0 / n,
                mask_entropy_bits_per_element: sparsewire_masks::binary_entropy(
                    1.0 - sp.sparsity as f64,
                ),
                mask_encodings: encodings,
            }
        });
        tensors.push(TensorReport {
            name: t.name.clone(),
            dtype: t.dtype.to_string(),
            shape: t.shape.clone(),
            input_bytes,
            output_bytes: stored,
            ratio: ratio(stored, input_bytes),
            codec: format!("{:?}", t.codec),
            tiles: t.tiles.len(),
            tile_shape: [t.tile_shape.rows, t.tile_shape.cols],
            model_bytes,
            planes,
            sparsification,
        });
    }
    let input_bytes = tensors.iter().map(|t| t.input_bytes).sum();
    let output_bytes = reader.stored_len() as u64;
    Ok(InspectReport {
        format_version: sparsewire_stream::FORMAT_VERSION,
        input_bytes,
        output_bytes,
        ratio: ratio(output_bytes, input_bytes),
        header_bytes: reader.stored_len() as u64 - h.data_len,
        tensors,
    })
}

/// `sparsewire bench`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub ratio: f64,
    /// Threads used for the all-threads figures.
    pub threads: usize,
    /// GB (1e9 bytes) of original tensor bytes per second, one thread, median of `runs`.
    pub encode_gbps: f64,
    pub decode_gbps: f64,
    pub encode_gbps_all_threads: f64,
    pub decode_gbps_all_threads: f64,
    pub runs: usize,
    /// Per plane kind over all tensors: stored bytes against the order-0 entropy bound.
    pub planes: Vec<PlaneTotal>,
    pub tensors: Vec<TensorReport>,
    /// Delivery over a link of the given speed (`bench --link-gbps`).
    pub link: Option<LinkReport>,
}

/// The stream crossing a link tile by tile while `threads` decoders rebuild each tile as
/// it lands (`sparsewire_accel::Bus::deliver_seconds`; per-tile decode times measured).
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub link_gbps: f64,
    /// Compressed bytes / link speed.
    pub transfer_seconds: f64,
    /// When the last tile is decoded.
    pub delivered_seconds: f64,
    /// Decode time not hidden behind the transfer: `delivered - transfer`.
    pub unhidden_decode_seconds: f64,
    /// Original bytes / `delivered_seconds`, GB/s.
    pub effective_gbps: f64,
    /// `link_gbps / compressed fraction`: what a free decoder would deliver.
    pub ideal_gbps: f64,
    /// `effective / ideal`.
    pub efficiency: f64,
    /// Sending the original bytes uncompressed over the same link, GB/s.
    pub uncompressed_gbps: f64,
}

/// One plane kind summed over a file.
#[derive(Debug, Clone, Serialize)]
pub struct PlaneTotal {
    pub plane: String,
    pub bytes: u64,
    pub entropy_bound_bytes: f64,
    /// `bytes / entropy_bound_bytes - 1`, in percent (negative: below the order-0 bound,
    /// from per-tile models).
    pub over_bound_percent: f64,
}

/// The median of timings (the upper one of an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed<T>(
    pool: &rayon::ThreadPool,
    runs: usize,
    mut f: impl FnMut() -> Result<T, PipelineError> + Send,
) -> Result<f64, PipelineError>
where
    T: Send,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        pool.install(&mut f)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Encodes and decodes `file` `runs` times on one thread and on `threads` threads.
pub fn bench(
    file: &TensorFile,
    opts: &EncodeOptions,
    threads: usize,
    runs: usize,
    link_gbps: Option<f64>,
) -> Result<BenchReport, PipelineError> {
    let runs = runs.max(1);
    let pool = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("thread pool")
    };
    let (one, all) = (pool(1), pool(threads.max(1)));
    let stream = encode(file, opts, &|_| {})?;
    let reader = Reader::new(&stream[..])?;
    let enc1 = timed(&one, runs, || Ok(encode(file, opts, &|_| {})?))?;
    let encn = timed(&all, runs, || Ok(encode(file, opts, &|_| {})?))?;
    let dec1 = timed(&one, runs, || Ok(reader.decode_all()?))?;
    let decn = timed(&all, runs, || Ok(reader.decode_all()?))?;
    let report = inspect(&reader, true)?;
    let mut totals: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for t in &report.tensors {
        for p in &t.planes {
            let e = totals.entry(p.plane.clone()).or_default();
            e.0 += p.bytes;
            e.1 += p.entropy_bound_bytes;
        }
    }
    let gbps = |s: f64| file.byte_len() as f64 / s / 1e9;
    let link = match link_gbps {
        Some(g) => Some(link_report(&reader, g, threads.max(1), runs)?),
        None => None,
    };
    Ok(BenchReport {
        link,
        input_bytes: report.input_bytes,
        output_bytes: report.output_bytes,
        ratio: report.ratio,
        threads: threads.max(1),
        encode_gbps: gbps(enc1),
        decode_gbps: gbps(dec1),
        encode_gbps_all_threads: gbps(encn),
        decode_gbps_all_threads: gbps(decn),
        runs,
        planes: totals
            .into_iter()
            .map(|(plane, (bytes, bound))| PlaneTotal {
                plane,
                bytes,
                entropy_bound_bytes: bound,
                over_bound_percent: if bound > 0.0 {
                    (bytes as f64 / bound - 1.0) * 100.0
                } else {
                    0.0
                },
            })
            .collect(),
        tensors: report.tensors,
    })
}

/// [`LinkReport`] for `reader`'s stream over a `gbps` link: each tile's decode time is the
/// median of `runs` timed decodes on one thread.
fn link_report<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    gbps: f64,
    threads: usize,
    runs: usize,
) -> Result<LinkReport, PipelineError> {
    let bus = sparsewire_accel::Bus::new(gbps, 0.0)
        .map_err(|e| PipelineError::Model(format!("link: {e}")))?;
    let mut tiles = Vec::new();
    let mut original = 0u64;
    let mut out = Vec::new();
    for (t, meta) in reader.header().tensors.iter().enumerate() {
        for (k, e) in meta.tiles.iter().enumerate() {
            let n = reader.tile_decoded_len(t, k)? as usize;
            original += n as u64;
            out.resize(n, 0);
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t0 = std::time::Instant::now();
                reader.decode_tile_into(t, k, &mut out)?;
                times.push(t0.elapsed().as_secs_f64());
            }
            tiles.push((e.len, median(times)));
        }
    }
    let stored: u64 = tiles.iter().map(|t| t.0).sum();
    let transfer = bus.transfer_seconds(stored, 0);
    let delivered = bus.deliver_seconds(&tiles, threads);
    let effective = original as f64 / delivered / 1e9;
    let ideal = gbps * original as f64 / stored.max(1) as f64;
    Ok(LinkReport {
        link_gbps: gbps,
        transfer_seconds: transfer,
        delivered_seconds: delivered,
        unhidden_decode_seconds: delivered - transfer,
        effective_gbps: effective,
        ideal_gbps: ideal,
        efficiency: effective / ideal,
        uncompressed_gbps: gbps,
    })
}
