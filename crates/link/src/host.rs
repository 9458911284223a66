//! The host's model: every tensor cut into tiles of whole rows, and each tile's bytes at
//! every level of the ladder, coded once at start-up.
//!
//! Per tile, the elements are ranked once by the criterion (magnitude or predictability,
//! from `se`), so a level is a prefix of that ranking: level `s` keeps the top `1 - s` in
//! the pattern (`se::pattern::select`). Each (tile, level) is coded as a one-tensor
//! `.swire` stream (lossless planes at level 0, mask + kept values above; zero-fill
//! rebuild) and kept in memory, so choosing a level at send time costs a lookup and a
//! copy to the socket, never a re-analysis. Tensors that are not float matrices are one
//! tile, lossless at every level. The manifest tells the client each payload's exact size
//! and each level's relative error per tensor, which is what the controller trades.
//!
//! A `.swire` model ([`HostModel::from_stream`]) is served from its stored tiles: each row
//! block of the stream, cut out as a stream of its own without re-coding
//! (`Reader::row_block_stream`), is the tile's payload at level 0 (tiles are the stream's
//! row blocks). A tensor stored lossless is decoded once to rank and code the sparser
//! levels; one stored sparsified (or not a float matrix) is sent as stored at every level,
//! its error counted against what is stored.

use crate::LinkError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::{Criterion, Pattern, Reconstruction, Sparsification};
use sparsewire_sparse::{SparseTensor, SparseTile};
use sparsewire_stream::{EncodeOptions, Reader, Source, Writer};
use std::borrow::Cow;
use std::sync::Arc;

/// Elements a tile aims at (whole rows).
pub const TILE_ELEMS: u64 = 1 << 16;

/// How the host ranks and codes.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The ladder: sparsity of each level, the first 0 (lossless), increasing.
    pub levels: Vec<f32>,
    /// `Magnitude` or `Predictable` (the criteria that need no calibration data).
    pub criterion: Criterion,
    pub pattern: Pattern,
    pub encode: EncodeOptions,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            levels: vec![0.0, 0.25, 0.5, 0.7, 0.85],
            criterion: Criterion::Magnitude,
            pattern: Pattern::Unstructured,
            encode: EncodeOptions::default(),
        }
    }
}

/// One tensor as the client sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// The 2-D view.
    pub rows: u64,
    pub cols: u64,
    pub rows_per_tile: u64,
    pub tiles: u32,
    /// Whether the levels apply (a float matrix); otherwise every level is lossless.
    pub sparsifiable: bool,
    /// Payload bytes, `[tile][level]`.
    pub bytes: Vec<Vec<u64>>,
    /// Relative Frobenius error of the whole tensor at each level (0 at level 0).
    pub rel_error: Vec<f32>,
}

impl TensorInfo {
    /// Dense bytes of the tensor.
    pub fn dense_bytes(&self) -> u64 {
        let bits = self.dtype.parse::<Dtype>().map_or(8, |d| d.bits());
        (self.rows * self.cols * bits).div_ceil(8)
    }

    /// Rows of tile `k`.
    pub fn tile_rows(&self, k: u32) -> std::ops::Range<u64> {
        let r0 = u64::from(k) * self.rows_per_tile;
        r0..(r0 + self.rows_per_tile).min(self.rows)
    }
}

/// What the host serves, sent in answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub protocol: u16,
    pub levels: Vec<f32>,
    pub criterion: String,
    pub pattern: String,
    pub tensors: Vec<TensorInfo>,
}

impl Manifest {
    pub fn tensor_index(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }
}

/// The model the host serves: the manifest and every payload.
#[derive(Debug)]
pub struct HostModel {
    pub manifest: Manifest,
    /// `[tensor][tile][level]`; levels of a tensor that is not sparsifiable share one.
    payloads: Vec<Vec<Vec<Arc<[u8]>>>>,
    /// Seconds spent ranking and coding at start-up.
    pub prepare_seconds: f64,
    /// The manifest as the `Manifest` frame carries it, serialised once.
    manifest_json: Arc<[u8]>,
}

fn check_levels(levels: &[f32]) -> Result<(), LinkError> {
    let ok = !levels.is_empty()
        && levels[0] == 0.0
        && levels.windows(2).all(|w| w[0] < w[1])
        && levels.iter().all(|s| (0.0..1.0).contains(s))
        && levels.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(LinkError::Options(format!(
            "levels {levels:?}: need 1 to 64 increasing sparsities in [0, 1), the first 0 (lossless)"
        )))
    }
}

/// A stream tensor's stored row blocks (the tiles' level-0 payloads).
struct Stored {
    rows_per_tile: u64,
    payloads: Vec<Arc<[u8]>>,
    /// Stored sparsified or rebuilt: sent as stored at every level.
    lossy: bool,
}

/// One tile's payloads at each level, the squared norm each level drops, and the tile's
/// squared norm.
type CodedTile = (Vec<Arc<[u8]>>, Vec<f64>, f64);

/// Codes a tile of tensor `t` (`bytes`, `r x cols`; `values` and `scores` are its values
/// as f32 and their ranking, empty for a tile that is only sent lossless) at sparsity `s`
/// (0: lossless); returns the payload and the dropped squared norm.
#[allow(clippy::too_many_arguments)]
fn code_tile(
    t: &Tensor,
    bytes: &[u8],
    r: usize,
    cols: u64,
    s: f32,
    values: &[f32],
    scores: &[f32],
    opts: &HostOptions,
) -> Result<(Vec<u8>, f64), LinkError> {
    let shape = [r as u64, cols];
    let mut w = Writer::new(Vec::new(), opts.encode.clone())?;
    if s == 0.0 {
        let tile = Tensor::new(t.name.clone(), t.dtype, shape.to_vec(), bytes.to_vec())?;
        w.add(tile.as_ref())?;
        return Ok((w.finish(vec![])?.0, 0.0));
    }
    let mask =
        sparsewire_se::pattern::select(scores, r, cols as usize, opts.pattern, f64::from(s))?;
    let dropped: f64 = values
        .iter()
        .enumerate()
        .filter(|(i, _)| !mask.is_kept(*i))
        .map(|(_, v)| f64::from(*v).powi(2))
        .sum();
    let kept = mask.kept();
    let tile = SparseTile::from_dense(r, cols as usize, t.dtype, bytes, mask)?;
    let n = (r * cols as usize).max(1);
    let sparse = SparseTensor {
        tile,
        info: Sparsification::new(opts.criterion, opts.pattern, 1.0 - kept as f32 / n as f32),
        reconstruction: Reconstruction::Zero,
    };
    w.add_sparse(&t.name, &shape, &sparse)?;
    Ok((w.finish(vec![])?.0, dropped))
}

impl HostModel {
    /// Ranks and codes every tile of `file` at every level (in parallel over tiles).
    pub fn new(file: &TensorFile, opts: &HostOptions) -> Result<HostModel, LinkError> {
        Self::build(
            file.tensors.iter().map(|t| Ok((Cow::Borrowed(t), None))),
            opts,
        )
    }

    /// Serves a `.swire` stream from its stored tiles (see the module docs); the sparser
    /// levels of tensors stored lossless are coded from their decoded values.
    pub fn from_stream<S: Source + Sync>(
        r: &Reader<S>,
        opts: &HostOptions,
    ) -> Result<HostModel, LinkError> {
        let tensors = (0..r.header().tensors.len()).map(|t| {
            let m = &r.header().tensors[t];
            let g = r.grid(t);
            let payloads = (0..g.row_blocks().max(1))
                .map(|b| Ok(Arc::<[u8]>::from(r.row_block_stream(t, b)?)))
                .collect::<Result<Vec<_>, LinkError>>()?;
            let stored = Stored {
                rows_per_tile: if g.is_empty() {
                    g.rows.max(1)
                } else {
                    g.tile.rows
                },
                payloads,
                lossy: m.sparsification.is_some() || m.reconstruction != Reconstruction::Zero,
            };
            Ok((Cow::Owned(r.decode_tensor(t)?), Some(stored)))
        });
        Self::build(tensors, opts)
    }

    fn build<'a>(
        tensors: impl Iterator<Item = Result<(Cow<'a, Tensor>, Option<Stored>), LinkError>>,
        opts: &HostOptions,
    ) -> Result<HostModel, LinkError> {
        check_levels(&opts.levels)?;
        if !matches!(
            opts.criterion,
            Criterion::Magnitude | Criterion::Predictable
        ) {
            return Err(LinkError::Options(format!(
                "criterion {}: the host ranks with magnitude or predictable (the others need calibration data or gradients)",
                opts.criterion
            )));
        }
        let t0 = std::time::Instant::now();
        let mut infos = Vec::new();
        let mut payloads = Vec::new();
        for item in tensors {
            let (t, stored) = item?;
            let t = t.as_ref();
            let numel = t.numel();
            let (rows, cols) = sparsewire_metadata::view_2d(&t.shape, numel);
            let sparsifiable = matches!(t.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
                && t.shape.len() >= 2
                && numel > 0
                && !stored.as_ref().is_some_and(|s| s.lossy);
            let rows_per_tile = match &stored {
                Some(s) => s.rows_per_tile,
                None if sparsifiable => (TILE_ELEMS / cols.max(1)).clamp(1, rows.max(1)),
                None => rows.max(1),
            };
            let tiles = if rows == 0 {
                1
            } else {
                rows.div_ceil(rows_per_tile)
            } as u32;
            let info = TensorInfo {
                name: t.name.clone(),
                dtype: t.dtype.name().to_string(),
                shape: t.shape.clone(),
                rows,
                cols,
                rows_per_tile,
                tiles,
                sparsifiable,
                bytes: vec![],
                rel_error: vec![],
            };
            let levels: &[f32] = if sparsifiable { &opts.levels } else { &[0.0] };
            let coded: Vec<CodedTile> = (0..tiles)
                .into_par_iter()
                .map(|k| {
                    let rr = info.tile_rows(k);
                    let elem = t.dtype.bits() / 8;
                    let b =
                        &t.data[(rr.start * cols * elem) as usize..(rr.end * cols * elem) as usize];
                    let r = (rr.end - rr.start) as usize;
                    // Converted and ranked once per tile, for every level.
                    let (values, scores) = if sparsifiable {
                        let v = sparsewire_formats::to_f32(t.dtype, b).expect("a float tensor");
                        let scores = match opts.criterion {
                            Criterion::Predictable => {
                                sparsewire_se::criteria::predictable(&v, cols as usize)
                            }
                            _ => sparsewire_se::criteria::magnitude(&v),
                        };
                        (v, scores)
                    } else {
                        (vec![], vec![])
                    };
                    let norm = values.iter().map(|x| f64::from(*x).powi(2)).sum();
                    let mut out = Vec::with_capacity(levels.len());
                    let mut dropped = Vec::with_capacity(levels.len());
                    for &s in levels {
                        if let (0.0, Some(st)) = (s, &stored) {
                            // As stored: no second encode.
                            out.push(st.payloads[k as usize].clone());
                            dropped.push(0.0);
                            continue;
                        }
                        let (p, d) = code_tile(t, b, r, cols, s, &values, &scores, opts)?;
                        out.push(Arc::<[u8]>::from(p));
                        dropped.push(d);
                    }
                    Ok((out, dropped, norm))
                })
                .collect::<Result<_, LinkError>>()?;
            // Only sparsifiable tensors drop anything; the others' error is 0 either way.
            let norm: f64 = coded.iter().map(|c| c.2).sum();
            let n_levels = opts.levels.len();
            let mut tiles_payloads = Vec::with_capacity(coded.len());
            let mut bytes = Vec::with_capacity(coded.len());
            let mut dropped_total = vec![0f64; n_levels];
            for (p, d, _) in coded {
                // A tensor that is not sparsifiable sends its one payload at every level.
                let p: Vec<Arc<[u8]>> = (0..n_levels)
                    .map(|l| p[l.min(p.len() - 1)].clone())
                    .collect();
                for (l, x) in dropped_total.iter_mut().enumerate() {
                    *x += d[l.min(d.len() - 1)];
                }
                bytes.push(p.iter().map(|b| b.len() as u64).collect());
                tiles_payloads.push(p);
            }
            infos.push(TensorInfo {
                bytes,
                rel_error: dropped_total
                    .iter()
                    .map(|d| {
                        if norm > 0.0 {
                            (d / norm).sqrt() as f32
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                ..info
            });
            payloads.push(tiles_payloads);
        }
        let manifest = Manifest {
            protocol: crate::frame::PROTOCOL_VERSION,
            levels: opts.levels.clone(),
            criterion: opts.criterion.to_string(),
            pattern: opts.pattern.to_string(),
            tensors: infos,
        };
        let json = serde_json::to_vec(&manifest).expect("a manifest serialises");
        Ok(HostModel {
            manifest,
            payloads,
            prepare_seconds: t0.elapsed().as_secs_f64(),
            manifest_json: Arc::from(json),
        })
    }

    /// The `Manifest` frame's payload.
    pub fn manifest_json(&self) -> Arc<[u8]> {
        self.manifest_json.clone()
    }

    /// The payload of a request, or why there is none.
    pub fn payload(&self, tensor: u32, tile: u32, level: u16) -> Result<Arc<[u8]>, String> {
        let t = self
            .payloads
            .get(tensor as usize)
            .ok_or_else(|| format!("no tensor {tensor} (the model has {})", self.payloads.len()))?;
        let name = &self.manifest.tensors[tensor as usize].name;
        let k = t
            .get(tile as usize)
            .ok_or_else(|| format!("tensor {name:?} has {} tiles; no tile {tile}", t.len()))?;
        k.get(level as usize).cloned().ok_or_else(|| {
            format!(
                "tensor {name:?} tile {tile}: no level {level} (the ladder has {})",
                k.len()
            )
        })
    }

    /// Bytes of every payload held.
    pub fn held_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.payloads
            .iter()
            .flatten()
            .flatten()
            .filter(|p| seen.insert(p.as_ptr()))
            .map(|p| p.len() as u64)
            .sum()
    }
}
