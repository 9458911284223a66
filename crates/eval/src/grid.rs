//! The settings swept and how one is measured.
//!
//! **Weights** cells sparsify the encoder's linear layers (36 matrices, 10.6 M weights:
//! what the pruning papers and the peers' figures prune) of the bf16 model with sparsewire's
//! host engine, write them as a `.swire` stream, decode and rebuild that stream as the
//! accelerator would, and run the model on the result. `bytes_fraction` is the stream's
//! size over those matrices' bf16 bytes.
//!
//! **Activations** cells sparsify, inside the forward pass, every tensor an accelerator
//! would receive (each layer's input `hidden.0..5`, `ffn_in.i`, `ffn_act.i`; not the
//! model's output `hidden.6`, which is pooled), per token, with the runtime API
//! (`sparsewire_se::activations`), then rebuild: zero-fill, or the one-entry-per-channel
//! dictionary (each channel's mean dropped value, estimated offline on the calibration
//! activations of ../shared/data, never on the evaluated sentences). `bytes_fraction` is
//! bitmask + kept bf16 values over the dense bf16 bytes.
//!
//! Quality is always against the original bf16 model on the same sentences.

use crate::metrics::{quality, Quality};
use crate::model::{MiniLm, Site};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::{Criterion, Pattern};
use sparsewire_pipeline::{compress, decompress, CompressOptions};
use sparsewire_se::activations::{densify, sparsify_activations, ActivationPolicy};
use sparsewire_se::{Budget, Rebuild, SparsifyOptions};
use std::collections::HashMap;

/// Which tensors a cell compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    Weights,
    Activations,
    Both,
}

/// How activations are rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActRebuild {
    Zero,
    Dictionary,
}

/// How activations are chosen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActPolicy {
    /// Keep this fraction of each token's values (largest |a|).
    KeepFraction(f32),
    /// Keep |a| above this.
    Threshold(f32),
    /// A keep fraction per family: layer inputs, FFN inputs, post-GELU.
    PerFamily {
        hidden: f32,
        ffn_in: f32,
        ffn_act: f32,
    },
}

impl ActPolicy {
    /// The keep fraction at `site`, for fraction policies.
    fn keep(&self, site: Site) -> Option<f32> {
        match (*self, site) {
            (ActPolicy::KeepFraction(f), _) => Some(f),
            (ActPolicy::PerFamily { hidden, .. }, Site::Hidden(_)) => Some(hidden),
            (ActPolicy::PerFamily { ffn_in, .. }, Site::FfnIn(_)) => Some(ffn_in),
            (ActPolicy::PerFamily { ffn_act, .. }, Site::FfnAct(_)) => Some(ffn_act),
            (ActPolicy::Threshold(_), _) => None,
        }
    }
}

/// One weights setting.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WeightSetting {
    /// `None`: lossless (unless `target_ratio` is set).
    pub sparsity: Option<f32>,
    /// Instead of one sparsity: the whole stream at most this fraction of the bf16 bytes,
    /// sparsity allocated per layer by the budget (`--target-ratio`).
    pub target_ratio: Option<f64>,
    pub criterion: Criterion,
    pub pattern: Pattern,
    pub reconstruct: &'static str,
}

/// Which transferred tensors an activations cell sparsifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sites {
    /// Every one: layer inputs, FFN inputs, post-GELU.
    All,
    Hidden,
    FfnIn,
    FfnAct,
}

impl Sites {
    fn has(&self, site: Site) -> bool {
        matches!(
            (self, site),
            (Sites::All, _)
                | (Sites::Hidden, Site::Hidden(_))
                | (Sites::FfnIn, Site::FfnIn(_))
                | (Sites::FfnAct, Site::FfnAct(_))
        )
    }
}

impl WeightSetting {
    fn lossy(&self) -> bool {
        self.sparsity.is_some() || self.target_ratio.is_some()
    }
}

/// One activations setting.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ActSetting {
    pub policy: ActPolicy,
    pub reconstruct: ActRebuild,
    pub sites: Sites,
}

/// A cell of the grid.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cell {
    pub path: Path,
    pub weights: Option<WeightSetting>,
    pub activations: Option<ActSetting>,
}

/// A measured cell.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CellResult {
    pub path: Path,
    /// Weights: the sparsity asked for (`null`: lossless or a byte budget).
    pub sparsity: Option<f32>,
    /// Weights: the byte budget asked for, as a fraction of the bf16 bytes.
    pub target_ratio: Option<f64>,
    pub criterion: Option<String>,
    pub pattern: Option<String>,
    /// Weights' reconstruction, or activations' (`zero`, `dictionary`).
    pub reconstruct: Option<String>,
    pub activation_reconstruct: Option<String>,
    /// Which activations were sparsified (`all`, `hidden`, `ffn_in`, `ffn_act`).
    pub activation_sites: Option<Sites>,
    pub keep_fraction: Option<f32>,
    /// Keep fractions of `hidden`, `ffn_in` and `ffn_act` (a per-family policy).
    pub keep_per_family: Option<[f32; 3]>,
    pub threshold: Option<f32>,
    /// Compressed bytes / bf16 bytes of what was compressed (weights and activations
    /// together for `both`).
    pub bytes_fraction: f64,
    /// Compressed bits per weight (weights) or per activation value.
    pub bits_per_weight: f64,
    /// Activation bytes saved per token (bf16 dense minus sent), summed over the sites.
    pub activation_bytes_saved_per_token: Option<f64>,
    #[serde(flatten)]
    pub quality: Quality,
    pub seconds: f64,
}

/// Errors of a grid run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    #[error("{0}")]
    Model(#[from] crate::model::ModelError),
    /// Boxed: the pipeline's error is large and grid results are returned on every cell.
    #[error("{0}")]
    Pipeline(Box<sparsewire_pipeline::PipelineError>),
    #[error("{0}")]
    Other(String),
}

impl From<sparsewire_pipeline::PipelineError> for GridError {
    fn from(e: sparsewire_pipeline::PipelineError) -> Self {
        GridError::Pipeline(Box::new(e))
    }
}

/// The names of the encoder's linear weights.
pub fn encoder_linear(name: &str) -> bool {
    name.starts_with("encoder.layer.")
        && name.ends_with(".weight")
        && (name.contains(".attention.self.") || name.contains(".dense."))
}

/// What every cell shares: the model files, the sentences, the reference embeddings.
pub struct Setup {
    pub weights: TensorFile,
    pub calibration: TensorFile,
    pub sentences: Vec<Vec<u32>>,
    pub reference: Vec<Vec<f32>>,
    /// Per site, per keep fraction (as thousandths), each channel's mean dropped value.
    dictionaries: std::sync::Mutex<HashMap<(Site, u32), Vec<f32>>>,
}

impl Setup {
    /// Loads the bf16 model, calibration activations and tokenized sentences, and embeds
    /// the sentences with the original model.
    pub fn new(
        weights: TensorFile,
        calibration: TensorFile,
        sentences: Vec<Vec<u32>>,
    ) -> Result<Self, GridError> {
        let model = MiniLm::load(&weights)?;
        let reference = embed_all(&model, &sentences, None)?;
        Ok(Setup {
            weights,
            calibration,
            sentences,
            reference,
            dictionaries: Default::default(),
        })
    }

    /// The mean dropped value per channel of `site` at keep fraction `keep`, from the
    /// calibration activations.
    fn dictionary(&self, site: Site, keep: f32) -> Result<Vec<f32>, GridError> {
        let key = (site, (keep * 1000.0).round() as u32);
        if let Some(d) = self.dictionaries.lock().expect("no panics").get(&key) {
            return Ok(d.clone());
        }
        let t = self
            .calibration
            .tensors
            .iter()
            .find(|t| t.name == site.name())
            .ok_or_else(|| GridError::Other(format!("calibration lacks {}", site.name())))?;
        let (rows, cols) = (t.shape[0] as usize, t.shape[1] as usize);
        let v = t
            .to_f32_vec()
            .ok_or_else(|| GridError::Other("calibration is not float".into()))?;
        let s = sparsify_activations(&v, rows, cols, ActivationPolicy::KeepFraction(keep))
            .map_err(|e| GridError::Other(e.to_string()))?;
        let (mut sum, mut n) = (vec![0f64; cols], vec![0usize; cols]);
        for (i, &x) in v.iter().enumerate() {
            if !s.mask().is_kept(i) {
                sum[i % cols] += x as f64;
                n[i % cols] += 1;
            }
        }
        let d: Vec<f32> = sum
            .iter()
            .zip(&n)
            .map(|(&s, &n)| if n > 0 { (s / n as f64) as f32 } else { 0.0 })
            .collect();
        self.dictionaries
            .lock()
            .expect("no panics")
            .insert(key, d.clone());
        Ok(d)
    }
}

/// Activation bytes (dense bf16, sent) and tokens seen, summed over a cell's sentences.
type ByteCount = std::sync::Mutex<(f64, f64, usize)>;

fn embed_all(
    model: &MiniLm,
    sentences: &[Vec<u32>],
    act: Option<(&ActSetting, &Setup, &ByteCount)>,
) -> Result<Vec<Vec<f32>>, GridError> {
    use rayon::prelude::*;
    sentences
        .par_iter()
        .map(|s| {
            let Some((a, setup, bytes)) = act else {
                return Ok(model.embed(s, None)?);
            };
            let mut err = None;
            let mut hook = |site: Site, v: &mut Vec<f32>| {
                if let Err(e) = sparsify_site(site, v, a, setup, bytes) {
                    err.get_or_insert(e);
                }
            };
            let e = model.embed(s, Some(&mut hook))?;
            match err {
                Some(e) => Err(e),
                None => Ok(e),
            }
        })
        .collect()
}

/// Sparsifies one site's values in place and counts bytes (dense, sent, tokens).
fn sparsify_site(
    site: Site,
    v: &mut [f32],
    a: &ActSetting,
    setup: &Setup,
    bytes: &ByteCount,
) -> Result<(), GridError> {
    if site == Site::Hidden(0) {
        // Every sentence passes here once: count its tokens.
        bytes.lock().expect("no panics").2 += v.len() / crate::model::HIDDEN;
    }
    if !a.sites.has(site) {
        return Ok(());
    }
    let cols = match site {
        Site::FfnAct(_) => crate::model::FFN,
        // The model's output is pooled on the host side, not sent on to another layer.
        Site::Hidden(i) if i == crate::model::LAYERS => return Ok(()),
        _ => crate::model::HIDDEN,
    };
    let rows = v.len() / cols;
    let policy = match (a.policy, a.policy.keep(site)) {
        (ActPolicy::Threshold(t), _) => ActivationPolicy::Threshold(t),
        (_, Some(f)) => ActivationPolicy::KeepFraction(f),
        (_, None) => unreachable!("fraction policies have a fraction per site"),
    };
    let s =
        sparsify_activations(v, rows, cols, policy).map_err(|e| GridError::Other(e.to_string()))?;
    let fill = match (a.reconstruct, a.policy.keep(site)) {
        (ActRebuild::Dictionary, Some(f)) => Some(setup.dictionary(site, f)?),
        _ => None,
    };
    let dense = densify(&s);
    for (i, (x, d)) in v.iter_mut().zip(dense).enumerate() {
        let kept = s.mask().is_kept(i);
        *x = match (&fill, kept) {
            (_, true) => d,
            (Some(f), false) => f[i % cols],
            (None, false) => 0.0,
        };
    }
    let mut b = bytes.lock().expect("no panics");
    b.0 += (v.len() * 2) as f64;
    b.1 += (v.len().div_ceil(8) + s.mask().kept() * 2) as f64;
    Ok(())
}

fn criterion_name(c: Criterion) -> String {
    c.to_string()
}

fn pattern_name(p: Pattern) -> String {
    p.to_string()
}

fn rebuild_of(name: &str) -> Result<Rebuild, GridError> {
    name.parse().map_err(GridError::Other)
}

/// Compresses the encoder's linear weights by `w`, decodes and rebuilds them, and returns
/// the whole model's tensors with them replaced, and the stream's size and weight count.
fn compressed_weights(
    setup: &Setup,
    w: &WeightSetting,
) -> Result<(TensorFile, u64, u64, u64), GridError> {
    let subset = TensorFile {
        tensors: setup
            .weights
            .tensors
            .iter()
            .filter(|t| encoder_linear(&t.name))
            .cloned()
            .collect(),
        metadata: vec![],
    };
    let dense_bytes: u64 = subset.tensors.iter().map(|t| t.data.len() as u64).sum();
    let weights: u64 = subset.tensors.iter().map(|t| t.numel()).sum();
    let budget = match (w.sparsity, w.target_ratio) {
        (_, Some(r)) => Some(Budget::TargetRatio(r)),
        (Some(s), None) => Some(Budget::Sparsity(s)),
        (None, None) => None,
    };
    let sparsify = match budget {
        None => None,
        Some(budget) => Some(SparsifyOptions {
            rebuild: rebuild_of(w.reconstruct)?,
            criterion: w.criterion,
            pattern: w.pattern,
            budget,
            calibration: match w.criterion {
                Criterion::Wanda | Criterion::SparseGpt => Some(setup.calibration.clone()),
                _ => None,
            },
            calibration_map: vec![],
            gradients: None,
        }),
    };
    let opts = CompressOptions {
        sparsify,
        ..CompressOptions::default()
    };
    let stream = compress(&subset, &opts)?.0;
    let restored = decompress(&stream)?;
    let mut full = setup.weights.clone();
    for t in restored.tensors {
        if let Some(slot) = full.tensors.iter_mut().find(|x| x.name == t.name) {
            *slot = Tensor { ..t };
        }
    }
    Ok((full, stream.len() as u64, dense_bytes, weights))
}

/// Measures one cell.
pub fn run(setup: &Setup, cell: &Cell) -> Result<CellResult, GridError> {
    let t0 = std::time::Instant::now();
    let (model, w_bytes, w_dense, w_count) = match &cell.weights {
        Some(w) => {
            let (file, bytes, dense, count) = compressed_weights(setup, w)?;
            (
                MiniLm::load(&file)?,
                bytes as f64,
                dense as f64,
                count as f64,
            )
        }
        None => (MiniLm::load(&setup.weights)?, 0.0, 0.0, 0.0),
    };
    let counts = std::sync::Mutex::new((0f64, 0f64, 0usize));
    let act = cell.activations.as_ref().map(|a| (a, setup, &counts));
    let emb = embed_all(&model, &setup.sentences, act)?;
    let q = quality(&setup.reference, &emb);
    let (a_dense, a_sent, tokens) = counts.into_inner().expect("no panics");
    let bytes_fraction = (w_bytes + a_sent) / (w_dense + a_dense).max(1.0);
    let bits = if w_count > 0.0 && cell.activations.is_none() {
        8.0 * w_bytes / w_count
    } else if cell.weights.is_none() {
        8.0 * a_sent / (a_dense / 2.0).max(1.0)
    } else {
        8.0 * (w_bytes + a_sent) / (w_count + a_dense / 2.0).max(1.0)
    };
    let w = cell.weights.as_ref();
    let a = cell.activations.as_ref();
    Ok(CellResult {
        path: cell.path,
        sparsity: w.and_then(|w| w.sparsity),
        target_ratio: w.and_then(|w| w.target_ratio),
        criterion: w.filter(|w| w.lossy()).map(|w| criterion_name(w.criterion)),
        pattern: w.filter(|w| w.lossy()).map(|w| pattern_name(w.pattern)),
        reconstruct: w.map(|w| {
            if w.lossy() {
                w.reconstruct.to_string()
            } else {
                "lossless".into()
            }
        }),
        activation_reconstruct: a.map(|a| format!("{:?}", a.reconstruct).to_lowercase()),
        activation_sites: a.map(|a| a.sites),
        keep_fraction: a.and_then(|a| match a.policy {
            ActPolicy::KeepFraction(f) => Some(f),
            _ => None,
        }),
        threshold: a.and_then(|a| match a.policy {
            ActPolicy::Threshold(t) => Some(t),
            _ => None,
        }),
        keep_per_family: a.and_then(|a| match a.policy {
            ActPolicy::PerFamily {
                hidden,
                ffn_in,
                ffn_act,
            } => Some([hidden, ffn_in, ffn_act]),
            _ => None,
        }),
        bytes_fraction,
        bits_per_weight: bits,
        activation_bytes_saved_per_token: a.map(|_| (a_dense - a_sent) / tokens.max(1) as f64),
        quality: q,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The grids. `quick` runs in well under a minute; `default` is the sweep (under 10
/// minutes on 2 cores); `full` adds SparseGPT's per-layer byte budget (2-3 minutes more).
pub fn cells(grid: &str, criteria: Option<&[Criterion]>) -> Result<Vec<Cell>, GridError> {
    const GRID_CRITERIA: [Criterion; 4] = [
        Criterion::Magnitude,
        Criterion::Wanda,
        Criterion::SparseGpt,
        Criterion::Predictable,
    ];
    if let Some(c) = criteria
        .unwrap_or_default()
        .iter()
        .find(|c| !GRID_CRITERIA.contains(c))
    {
        return Err(GridError::Other(format!(
            "criterion {c} is not in the eval grid (the grid has no gradients): choose from \
             magnitude, wanda, sparsegpt, predictable"
        )));
    }
    let w = |sparsity, criterion, pattern, reconstruct| Cell {
        path: Path::Weights,
        weights: Some(WeightSetting {
            sparsity,
            target_ratio: None,
            criterion,
            pattern,
            reconstruct,
        }),
        activations: None,
    };
    let budget = |ratio, criterion, reconstruct| Cell {
        path: Path::Weights,
        weights: Some(WeightSetting {
            sparsity: None,
            target_ratio: Some(ratio),
            criterion,
            pattern: Pattern::Unstructured,
            reconstruct,
        }),
        activations: None,
    };
    let act_on = |policy, reconstruct, sites| Cell {
        path: Path::Activations,
        weights: None,
        activations: Some(ActSetting {
            policy,
            reconstruct,
            sites,
        }),
    };
    let act = |policy, reconstruct| act_on(policy, reconstruct, Sites::All);
    let lossless = w(None, Criterion::Magnitude, Pattern::Unstructured, "zero");
    let mut out = vec![lossless];
    match grid {
        "quick" => {
            out.push(w(
                Some(0.5),
                Criterion::Magnitude,
                Pattern::Unstructured,
                "zero",
            ));
            out.push(w(
                Some(0.5),
                Criterion::Wanda,
                Pattern::Unstructured,
                "auto",
            ));
            out.push(act(ActPolicy::KeepFraction(0.5), ActRebuild::Zero));
            out.push(act(ActPolicy::KeepFraction(0.5), ActRebuild::Dictionary));
            out.push(Cell {
                path: Path::Both,
                weights: Some(WeightSetting {
                    sparsity: Some(0.3),
                    target_ratio: None,
                    criterion: Criterion::Wanda,
                    pattern: Pattern::Unstructured,
                    reconstruct: "auto",
                }),
                activations: Some(ActSetting {
                    policy: ActPolicy::KeepFraction(0.7),
                    reconstruct: ActRebuild::Dictionary,
                    sites: Sites::All,
                }),
            });
        }
        "default" | "full" => {
            let crits = criteria.map(|c| c.to_vec()).unwrap_or_else(|| {
                vec![
                    Criterion::Magnitude,
                    Criterion::Wanda,
                    Criterion::SparseGpt,
                    Criterion::Predictable,
                ]
            });
            for &c in &crits {
                for s in [0.3, 0.5, 0.7, 0.9] {
                    for r in ["zero", "linear", "learned", "auto"] {
                        out.push(w(Some(s), c, Pattern::Unstructured, r));
                    }
                }
                for r in ["zero", "linear", "learned", "auto"] {
                    out.push(w(Some(0.5), c, Pattern::NM { n: 2, m: 4 }, r));
                }
            }
            // Around 45% of the bf16 bytes: uniform sparsity just above 0.3, and per-layer
            // allocation under a byte budget (for SparseGPT only in the full grid: its
            // allocation runs it at every level of every layer, over two minutes).
            for c in [Criterion::SparseGpt, Criterion::Wanda] {
                if crits.contains(&c) {
                    out.push(w(Some(0.36), c, Pattern::Unstructured, "auto"));
                    if c != Criterion::SparseGpt || grid == "full" {
                        out.push(budget(0.45, c, "auto"));
                    }
                }
            }
            if crits.contains(&Criterion::SparseGpt) {
                out.push(w(
                    Some(0.4),
                    Criterion::SparseGpt,
                    Pattern::Unstructured,
                    "auto",
                ));
            }
            for k in [0.9, 0.7, 0.5, 0.3] {
                for r in [ActRebuild::Zero, ActRebuild::Dictionary] {
                    out.push(act(ActPolicy::KeepFraction(k), r));
                }
            }
            for t in [0.01, 0.05, 0.1] {
                out.push(act(ActPolicy::Threshold(t), ActRebuild::Zero));
            }
            // Spending the bytes where they matter: most of the LayerNorm outputs, little
            // of the post-GELU activations (two thirds of the bytes, the most tolerant).
            for (h, f, g) in [(0.9, 0.9, 0.35), (0.8, 0.8, 0.3), (0.9, 0.9, 0.2)] {
                let policy = ActPolicy::PerFamily {
                    hidden: h,
                    ffn_in: f,
                    ffn_act: g,
                };
                out.push(act(policy, ActRebuild::Dictionary));
            }
            // Which family tolerates it: one family at a time, half kept.
            for sites in [Sites::Hidden, Sites::FfnIn, Sites::FfnAct] {
                for r in [ActRebuild::Zero, ActRebuild::Dictionary] {
                    out.push(act_on(ActPolicy::KeepFraction(0.5), r, sites));
                }
            }
            for (s, k) in [(0.3, 0.7), (0.5, 0.5)] {
                out.push(Cell {
                    path: Path::Both,
                    weights: Some(WeightSetting {
                        sparsity: Some(s),
                        target_ratio: None,
                        criterion: Criterion::SparseGpt,
                        pattern: Pattern::Unstructured,
                        reconstruct: "auto",
                    }),
                    activations: Some(ActSetting {
                        policy: ActPolicy::KeepFraction(k),
                        reconstruct: ActRebuild::Dictionary,
                        sites: Sites::All,
                    }),
                });
            }
        }
        g => {
            return Err(GridError::Other(format!(
                "unknown grid {g:?} (quick, default, full)"
            )))
        }
    }
    Ok(out)
}
