//! What a stream holds ([`inspect`]): per tensor its sizes, codecs per plane, sparsity,
//! and, on request, the order-0 entropy bound of each plane. Field names are stable: the
//! README documents them for `--json` users. Without entropy bounds nothing is decoded:
//! only the header is read.

use crate::source::Source;
use crate::{Reader, StreamError, FORMAT_VERSION};
use serde::Serialize;
use sparsewire_codec::PlaneLayout;
use sparsewire_metadata::{display, Criterion, Dtype, Pattern, Plane, TensorMeta, ValueCodec};
use std::collections::BTreeMap;

/// One plane of one tensor, summed over its tiles.
#[derive(Debug, Clone, Serialize)]
pub struct PlaneReport {
    /// `head`, `tail_bits`, `byte1`, `byte0`, `whole` or `mask`.
    #[serde(serialize_with = "display::serialize")]
    pub plane: Plane,
    /// Stored bytes, over all tiles (shared models counted in the tensor, not here).
    pub bytes: u64,
    /// How many tiles used each stream codec.
    pub codecs: BTreeMap<String, usize>,
    /// Order-0 entropy of the plane's symbols over the whole tensor, in bytes; `None`
    /// when not computed (`inspect --entropy`).
    pub entropy_bound_bytes: Option<f64>,
}

/// One tensor of a stream.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    pub name: String,
    #[serde(serialize_with = "display::serialize")]
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub input_bytes: u64,
    /// Stored bytes: tiles plus shared entropy models.
    pub output_bytes: u64,
    pub ratio: f64,
    #[serde(serialize_with = "display::serialize")]
    pub codec: ValueCodec,
    pub tiles: usize,
    pub tile_shape: [u64; 2],
    pub model_bytes: u64,
    pub planes: Vec<PlaneReport>,
    /// For sparsified tensors: how, and what it cost.
    pub sparsification: Option<SparsityInfo>,
}

/// The sparsification record of a tensor.
#[derive(Debug, Clone, Serialize)]
pub struct SparsityInfo {
    #[serde(serialize_with = "display::serialize")]
    pub criterion: Criterion,
    #[serde(serialize_with = "display::serialize")]
    pub pattern: Pattern,
    pub sparsity: f64,
    /// The method's name (`zero`, `learned`, ...).
    pub reconstruction: sparsewire_metadata::ReconstructionMethod,
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
    /// Bytes of the whole stream.
    pub output_bytes: u64,
    pub ratio: f64,
    /// Bytes that are not tiles: preamble, header, trailer.
    pub header_bytes: u64,
    pub tensors: Vec<TensorReport>,
}

/// `compressed / original`, 0 for an empty original.
pub fn ratio(compressed: u64, original: u64) -> f64 {
    if original == 0 {
        0.0
    } else {
        compressed as f64 / original as f64
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

/// A tensor's report from its header entry alone.
pub fn tensor_report(t: &TensorMeta) -> Result<TensorReport, StreamError> {
    let input_bytes = t.byte_len()?;
    let model_bytes: u64 = t.models.iter().map(|m| m.len() as u64).sum();
    let mut planes: Vec<PlaneReport> = Vec::new();
    for tile in &t.tiles {
        for (j, s) in tile.streams.iter().enumerate() {
            if planes.len() <= j {
                planes.push(PlaneReport {
                    plane: s.plane,
                    bytes: 0,
                    codecs: BTreeMap::new(),
                    entropy_bound_bytes: None,
                });
            }
            planes[j].bytes += s.len;
            *planes[j].codecs.entry(s.codec.to_string()).or_default() += 1;
        }
    }
    let stored: u64 = t.tiles.iter().map(|x| x.len).sum::<u64>() + model_bytes;
    let sparsification = t.sparsification.as_ref().map(|sp| {
        let n = t.numel().unwrap_or(0).max(1) as f64;
        let mut encodings = BTreeMap::new();
        let mut mask_bytes = 0u64;
        for s in t.tiles.iter().flat_map(|x| &x.streams) {
            if let Plane::Mask(enc) = s.plane {
                *encodings.entry(enc.to_string()).or_default() += 1;
                mask_bytes += s.len;
            }
        }
        SparsityInfo {
            criterion: sp.criterion,
            pattern: sp.pattern,
            sparsity: sp.sparsity as f64,
            reconstruction: t.reconstruction.method(),
            rel_error: sp.rel_error as f64,
            output_error: sp.output_error.map(|e| e as f64),
            mask_bits_per_element: mask_bytes as f64 * 8.0 / n,
            mask_entropy_bits_per_element: sparsewire_sparse::binary_entropy(
                1.0 - sp.sparsity as f64,
            ),
            mask_encodings: encodings,
        }
    });
    Ok(TensorReport {
        name: t.name.clone(),
        dtype: t.dtype,
        shape: t.shape.clone(),
        input_bytes,
        output_bytes: stored,
        ratio: ratio(stored, input_bytes),
        codec: t.codec,
        tiles: t.tiles.len(),
        tile_shape: [t.tile_shape.rows, t.tile_shape.cols],
        model_bytes,
        planes,
        sparsification,
    })
}

/// Describes every tensor of a stream from its header. With `entropy`, also decodes each
/// tensor, one tile at a time, for the order-0 entropy bound of its planes.
pub fn inspect<S: Source + Sync>(
    reader: &Reader<S>,
    entropy: bool,
) -> Result<InspectReport, StreamError> {
    let h = reader.header();
    let mut tensors = Vec::with_capacity(h.tensors.len());
    for (i, t) in h.tensors.iter().enumerate() {
        let mut report = tensor_report(t)?;
        if entropy && !t.tiles.is_empty() {
            let bounds = entropy_bounds(reader, i)?;
            for (p, b) in report.planes.iter_mut().zip(bounds) {
                p.entropy_bound_bytes = Some(b);
            }
        }
        tensors.push(report);
    }
    let input_bytes = tensors.iter().map(|t| t.input_bytes).sum();
    let output_bytes = reader.stored_len();
    Ok(InspectReport {
        format_version: FORMAT_VERSION,
        input_bytes,
        output_bytes,
        ratio: ratio(output_bytes, input_bytes),
        header_bytes: output_bytes - h.data_len,
        tensors,
    })
}

/// Order-0 bounds of tensor `i`'s planes, in stream order. A sparse tensor's first plane
/// is its mask, bounded by H(density); the others are its kept values' planes.
fn entropy_bounds<S: Source + Sync>(reader: &Reader<S>, i: usize) -> Result<Vec<f64>, StreamError> {
    let t = &reader.header().tensors[i];
    let layout = PlaneLayout::for_dtype(t.dtype);
    let mut bounds = Vec::new();
    let mut data = Vec::new();
    match &t.sparsification {
        Some(sp) => {
            let n = t.numel().unwrap_or(0) as f64;
            bounds.push(n * sparsewire_sparse::binary_entropy(1.0 - sp.sparsity as f64) / 8.0);
            for k in 0..t.tiles.len() {
                match reader.tile_sparse(i, k)? {
                    Some(tile) => data.extend_from_slice(tile.values()),
                    None => data.extend_from_slice(&reader.decode_tile(i, k)?),
                }
            }
        }
        None => {
            for k in 0..t.tiles.len() {
                data.extend_from_slice(&reader.decode_tile(i, k)?);
            }
        }
    }
    bounds.extend(plane_bounds(t.codec, layout, &data));
    Ok(bounds)
}
