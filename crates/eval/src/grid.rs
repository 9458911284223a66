//! The settings swept and how one is measured. The model is any BERT-family encoder
//! ([`crate::model::ModelDir`]); the figures below are all-MiniLM-L6-v2's, the default.
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
//! activations, never on the evaluated sentences: MiniLM's recorded ones in
//! ../shared/data, or for another model ones [`record_calibration`] takes from training
//! text). Each block is encoded as a real tile (mask and kept bf16 values through the
//! codec, with its header) and decoded again: the next layer gets the decoded bf16 values,
//! and `bytes_fraction` is the encoded tiles' size over the dense bf16 bytes.
//!
//! Quality is always against the original bf16 model on the same sentences.

use crate::metrics::{quality, Quality};
use crate::model::{Bert, BertConfig, Site};
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::{display, Criterion, Pattern};
use sparsewire_pipeline::{compress, decompress, CompressOptions};
use sparsewire_se::activations::{
    sparsify_activations, sparsify_activations_scaled, ActivationPolicy,
};
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

impl std::fmt::Display for ActRebuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActRebuild::Zero => "zero",
            ActRebuild::Dictionary => "dictionary",
        })
    }
}

/// How a cell's weights come back: bit for bit, or sparsified and rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsBack {
    Lossless,
    Rebuilt(Rebuild),
}

impl std::fmt::Display for WeightsBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightsBack::Lossless => f.write_str("lossless"),
            WeightsBack::Rebuilt(r) => r.fmt(f),
        }
    }
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

impl std::fmt::Display for ActPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActPolicy::KeepFraction(k) => write!(f, "{k} of each token's values kept"),
            ActPolicy::Threshold(t) => write!(f, "values with |a| > {t} kept"),
            ActPolicy::PerFamily {
                hidden,
                ffn_in,
                ffn_act,
            } => write!(
                f,
                "{hidden} / {ffn_in} / {ffn_act} of each token's values kept in hidden / ffn_in / ffn_act"
            ),
        }
    }
}

impl std::str::FromStr for ActPolicy {
    type Err = String;
    /// `K` (a keep fraction everywhere), `H,F,A` (per family: hidden, ffn_in, ffn_act)
    /// or `>T` (a threshold on |a|); every value range-checked.
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |x: &str| {
            x.trim()
                .parse::<f32>()
                .map_err(|_| format!("{x:?} is not a number"))
        };
        let p = if let Some(t) = s.strip_prefix('>') {
            ActPolicy::Threshold(num(t)?)
        } else {
            let v: Vec<f32> = s.split(',').map(num).collect::<Result<_, _>>()?;
            match v[..] {
                [k] => ActPolicy::KeepFraction(k),
                [hidden, ffn_in, ffn_act] => ActPolicy::PerFamily {
                    hidden,
                    ffn_in,
                    ffn_act,
                },
                _ => return Err(format!("{s:?}: expected K, H,F,A or >T")),
            }
        };
        p.check()?;
        Ok(p)
    }
}

impl ActPolicy {
    /// Keep fractions in (0, 1], a threshold finite and >= 0.
    pub fn check(&self) -> Result<(), String> {
        let frac = |k: f32| {
            if k > 0.0 && k <= 1.0 {
                Ok(())
            } else {
                Err(format!("activation keep fraction {k} is outside (0, 1]"))
            }
        };
        match *self {
            ActPolicy::KeepFraction(k) => frac(k),
            ActPolicy::PerFamily {
                hidden,
                ffn_in,
                ffn_act,
            } => frac(hidden).and(frac(ffn_in)).and(frac(ffn_act)),
            ActPolicy::Threshold(t) if t.is_finite() && t >= 0.0 => Ok(()),
            ActPolicy::Threshold(t) => {
                Err(format!("activation threshold {t} must be finite and >= 0"))
            }
        }
    }

    /// The runtime sparsifier's policy at `site`.
    pub fn at(&self, site: Site) -> ActivationPolicy {
        match (*self, self.keep(site)) {
            (ActPolicy::Threshold(t), _) => ActivationPolicy::Threshold(t),
            (_, Some(f)) => ActivationPolicy::KeepFraction(f),
            (_, None) => unreachable!("fraction policies have a fraction per site"),
        }
    }

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
    #[serde(serialize_with = "display::serialize")]
    pub reconstruct: Rebuild,
}

/// Which transferred tensors an activations cell sparsifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Sites {
    /// Every one: layer inputs, FFN inputs, post-GELU.
    All,
    Hidden,
    FfnIn,
    FfnAct,
}

impl std::fmt::Display for Sites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sites::All => "all",
            Sites::Hidden => "hidden",
            Sites::FfnIn => "ffn_in",
            Sites::FfnAct => "ffn_act",
        })
    }
}

impl Sites {
    /// Whether `site` of a model with `layers` layers is sparsified: one of these sites,
    /// and not the model output (pooled on the host side, not sent on to another layer).
    pub fn sends(&self, site: Site, layers: usize) -> bool {
        self.has(site) && site != Site::Hidden(layers)
    }

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

/// How the runtime activation sparsifier ranks a token's values at a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ActScore {
    /// |a|.
    #[default]
    Magnitude,
    /// |a_j| times the norm of column j of the weights that multiply the site next (query,
    /// key and value for a layer input, the FFN's first matrix for its input, its second
    /// for the post-GELU values): what dropping a_j moves those products by, were the
    /// columns orthogonal (WINA). The residual path is not counted.
    Weighted,
    /// As `weighted`, with the residual connection counted as an identity column of norm 1
    /// beside the weights (layer inputs and FFN inputs also feed an addition).
    WeightedResidual,
    /// The trained activation scorer (`cargo xtask scorer --activations`, loaded into
    /// [`Setup::act_scorers`]) on the features of each token's values and `WᵀW` of the
    /// weights that multiply the site next: the query family's scorer for a layer input,
    /// the FFN input and output families' for theirs. Its features are standardised over
    /// the sentence's tokens. Needs a keep fraction.
    Scorer,
}

/// A site's column scale for an [`ActScore`] (`None`: plain magnitude).
type ColumnScale = Option<Vec<f32>>;

/// One activations setting.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ActSetting {
    pub policy: ActPolicy,
    pub reconstruct: ActRebuild,
    pub sites: Sites,
    pub score: ActScore,
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
    #[serde(serialize_with = "display::serialize_opt")]
    pub criterion: Option<Criterion>,
    #[serde(serialize_with = "display::serialize_opt")]
    pub pattern: Option<Pattern>,
    /// Weights' reconstruction (`lossless` when they are not sparsified).
    #[serde(serialize_with = "display::serialize_opt")]
    pub reconstruct: Option<WeightsBack>,
    /// Activations' reconstruction (`zero`, `dictionary`).
    pub activation_reconstruct: Option<ActRebuild>,
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

/// The names of the encoder's linear weights (with or without a `bert.` prefix).
pub fn encoder_linear(name: &str) -> bool {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    name.starts_with("encoder.layer.")
        && name.ends_with(".weight")
        && (name.contains(".attention.self.") || name.contains(".dense."))
}

/// What every cell shares: the model files, the sentences, the reference embeddings.
pub struct Setup {
    pub config: BertConfig,
    pub weights: TensorFile,
    pub calibration: TensorFile,
    pub sentences: Vec<Vec<u32>>,
    pub reference: Vec<Vec<f32>>,
    /// Per site, per keep fraction (as thousandths), each channel's mean dropped value.
    dictionaries: std::sync::Mutex<HashMap<(Site, u32), Vec<f32>>>,
    /// Per site and score, the column scale of [`ActScore`] (`None`: magnitude).
    scales: std::sync::Mutex<HashMap<(Site, ActScore), ColumnScale>>,
    /// The activation scorers by layer family (`attention.self.query.weight`, ...), for
    /// [`ActScore::Scorer`].
    pub act_scorers: Vec<(String, sparsewire_se::scorer::Scorer)>,
    /// Per site, `WᵀW / rows` of the weights that multiply it next (`None`: none do).
    grams: std::sync::Mutex<HashMap<Site, Option<std::sync::Arc<Vec<f32>>>>>,
}

impl Setup {
    /// Loads the model, calibration activations and tokenized sentences, and embeds
    /// the sentences with the original model. f32 weights are cast to bf16 first (what
    /// crosses the link, and what bytes are counted against); bf16 and f16 stay as they are.
    pub fn new(
        config: BertConfig,
        mut weights: TensorFile,
        calibration: TensorFile,
        sentences: Vec<Vec<u32>>,
    ) -> Result<Self, GridError> {
        for t in weights.tensors.iter_mut().filter(|t| t.dtype == Dtype::F32) {
            let v = t.to_f32_vec().expect("f32 tensors read as f32");
            let data = sparsewire_formats::from_f32(Dtype::BF16, &v).expect("bf16 is a float");
            *t = Tensor::new(t.name.clone(), Dtype::BF16, t.shape.clone(), data)
                .map_err(|e| GridError::Other(e.to_string()))?;
        }
        let model = Bert::load(&config, &weights)?;
        let reference = embed_all(&model, &sentences, None)?;
        Ok(Setup {
            config,
            weights,
            calibration,
            sentences,
            reference,
            dictionaries: Default::default(),
            scales: Default::default(),
            act_scorers: Vec::new(),
            grams: Default::default(),
        })
    }

    /// The weights that multiply `site` next (a layer input: query, key and value; the FFN
    /// input: its first matrix; the post-GELU values: its second), and whether the site also
    /// feeds the residual addition.
    fn consumers(&self, site: Site) -> (Vec<String>, bool) {
        match site {
            Site::Hidden(i) if i < self.config.layers => (
                [
                    "attention.self.query",
                    "attention.self.key",
                    "attention.self.value",
                ]
                .iter()
                .map(|m| format!("encoder.layer.{i}.{m}.weight"))
                .collect(),
                true,
            ),
            Site::Hidden(_) => (vec![], false),
            Site::FfnIn(i) => (
                vec![format!("encoder.layer.{i}.intermediate.dense.weight")],
                true,
            ),
            Site::FfnAct(i) => (
                vec![format!("encoder.layer.{i}.output.dense.weight")],
                false,
            ),
        }
    }

    /// The dense f32 weights that multiply `site` next, stacked as rows of the site's width
    /// (`None`: none do), and whether the site also feeds the residual addition.
    fn consumer_rows(&self, site: Site) -> Result<(Option<Vec<f32>>, bool), GridError> {
        let (consumers, residual) = self.consumers(site);
        if consumers.is_empty() {
            return Ok((None, residual));
        }
        let cols = self.config.width(site);
        let mut rows = Vec::new();
        for name in &consumers {
            let t = self
                .weights
                .tensors
                .iter()
                .find(|t| t.name.ends_with(name.as_str()))
                .ok_or_else(|| GridError::Other(format!("the model lacks {name}")))?;
            let w = t
                .to_f32_vec()
                .ok_or_else(|| GridError::Other(format!("{name} is not float")))?;
            if cols == 0 || w.len() % cols != 0 {
                return Err(GridError::Other(format!(
                    "{name} has {} values, not rows of {cols}",
                    w.len()
                )));
            }
            rows.extend(w);
        }
        Ok((Some(rows), residual))
    }

    /// `WᵀW / rows` of the weights that multiply `site` next, stacked (`None`: none do).
    fn act_gram(&self, site: Site) -> Result<Option<std::sync::Arc<Vec<f32>>>, GridError> {
        if let Some(g) = self.grams.lock().expect("no panics").get(&site) {
            return Ok(g.clone());
        }
        let cols = self.config.width(site);
        let g = self
            .consumer_rows(site)?
            .0
            .map(|w| std::sync::Arc::new(sparsewire_se::scorer::gram(&w, w.len() / cols, cols)));
        self.grams
            .lock()
            .expect("no panics")
            .insert(site, g.clone());
        Ok(g)
    }

    /// The mask [`ActScore::Scorer`] keeps of `site`'s block `v` (`[rows, cols]`), `keep` of
    /// each token; `None` where no weights multiply the site (magnitude then).
    fn scorer_mask(
        &self,
        site: Site,
        v: &[f32],
        rows: usize,
        cols: usize,
        keep: f32,
    ) -> Result<Option<sparsewire_sparse::Mask>, GridError> {
        let Some(g) = self.act_gram(site)? else {
            return Ok(None);
        };
        let family = match site {
            Site::Hidden(_) => "attention.self.query.weight",
            Site::FfnIn(_) => "intermediate.dense.weight",
            Site::FfnAct(_) => "output.dense.weight",
        };
        let scorer = self
            .act_scorers
            .iter()
            .find(|(f, _)| f == family)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                GridError::Other(format!(
                    "--activation-score scorer: no scorer for the {family} family (pass --activation-scorer FILE)"
                ))
            })?;
        let scores = scorer.scores(v, rows, cols, &g, keep);
        let m = sparsewire_se::scorer::top_k_rows(&scores, rows, cols, keep);
        Ok(Some(sparsewire_sparse::Mask::from_fn(rows * cols, |i| {
            m[i] > 0.5
        })))
    }

    /// The column scale `score` ranks `site`'s values by (`None`: plain magnitude): the
    /// root of the summed squared column norms of the dense weights that multiply the site
    /// next (+1 for the residual, with [`ActScore::WeightedResidual`]).
    fn act_scale(&self, site: Site, score: ActScore) -> Result<Option<Vec<f32>>, GridError> {
        // The default, on every block of every cell: no lock, no lookup.
        if matches!(score, ActScore::Magnitude | ActScore::Scorer) {
            return Ok(None);
        }
        if let Some(v) = self.scales.lock().expect("no panics").get(&(site, score)) {
            return Ok(v.clone());
        }
        let cols = self.config.width(site);
        let v = match self.consumer_rows(site)? {
            (None, _) => None,
            (Some(w), residual) => {
                let mut sq = vec![0f64; cols];
                for row in w.chunks_exact(cols) {
                    for (s, &x) in sq.iter_mut().zip(row) {
                        *s += f64::from(x) * f64::from(x);
                    }
                }
                let extra = if residual && score == ActScore::WeightedResidual {
                    1.0
                } else {
                    0.0
                };
                Some(sq.iter().map(|s| (s + extra).sqrt() as f32).collect())
            }
        };
        self.scales
            .lock()
            .expect("no panics")
            .insert((site, score), v.clone());
        Ok(v)
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

/// Records calibration activations of `model`: every site's rows (`hidden.i`, `ffn_in.i`,
/// `ffn_act.i`, named as in the reference file) over whole `sentences` in order, until at
/// least `max_tokens` tokens are in.
pub fn record_calibration(
    model: &Bert,
    sentences: &[Vec<u32>],
    max_tokens: usize,
) -> Result<TensorFile, GridError> {
    let c = model.config();
    let mut rows: HashMap<Site, Vec<f32>> = HashMap::new();
    let mut tokens = 0usize;
    for s in sentences {
        if tokens >= max_tokens {
            break;
        }
        let mut hook =
            |site: Site, v: &mut Vec<f32>| rows.entry(site).or_default().extend_from_slice(v);
        model.forward(s, Some(&mut hook))?;
        tokens += s.len();
    }
    if tokens == 0 {
        return Err(GridError::Other(
            "no calibration text: give sentences to record activations from".into(),
        ));
    }
    let tensors = c
        .sites()
        .into_iter()
        .map(|site| {
            let v = rows.remove(&site).unwrap_or_default();
            Tensor::from_f32(site.name(), vec![tokens as u64, c.width(site) as u64], &v)
        })
        .collect();
    Ok(TensorFile {
        tensors,
        metadata: vec![],
    })
}

/// Activation bytes (dense bf16, sent) and tokens seen, summed over a cell's sentences.
type ByteCount = std::sync::Mutex<(f64, f64, usize)>;

pub(crate) fn embed_all(
    model: &Bert,
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
        bytes.lock().expect("no panics").2 += v.len() / setup.config.hidden;
    }
    if !a.sites.sends(site, setup.config.layers) {
        return Ok(());
    }
    let cols = setup.config.width(site);
    let rows = v.len() / cols;
    let policy = a.policy.at(site);
    let scored = match (a.score, policy) {
        (ActScore::Scorer, ActivationPolicy::KeepFraction(keep)) => {
            setup.scorer_mask(site, v, rows, cols, keep)?
        }
        (ActScore::Scorer, _) => {
            return Err(GridError::Other(
                "--activation-score scorer needs a keep fraction".into(),
            ))
        }
        _ => None,
    };
    let s = match (scored, setup.act_scale(site, a.score)?) {
        (Some(mask), _) => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            sparsewire_sparse::SparseTile::from_dense(
                rows,
                cols,
                sparsewire_formats::Dtype::F32,
                &bytes,
                mask,
            )
            .map_err(|e| GridError::Other(e.to_string()))
        }
        (None, None) => {
            sparsify_activations(v, rows, cols, policy).map_err(|e| GridError::Other(e.to_string()))
        }
        (None, Some(scale)) => sparsify_activations_scaled(v, rows, cols, policy, &scale)
            .map_err(|e| GridError::Other(e.to_string())),
    }?;
    // What is sent: the block as a real one-tensor stream (mask and kept values through
    // the codec, bf16, with its header), as `sparsewire_pipeline` writes it for the link;
    // its length is the byte count and its decoded values are what the next layer gets.
    let stream = sparsewire_pipeline::encode_activation_tile(
        v,
        &s,
        policy,
        sparsewire_formats::Dtype::BF16,
        &CompressOptions::default().encode,
    )
    .map_err(|e| GridError::Other(e.to_string()))?;
    let sent = stream.len();
    let received = sparsewire_pipeline::decompress(&stream)?
        .tensors
        .first()
        .and_then(|t| t.to_f32_vec())
        .filter(|r| r.len() == v.len())
        .ok_or_else(|| GridError::Other("an activation tile decoded to another size".into()))?;
    let fill = match (a.reconstruct, a.policy.keep(site)) {
        (ActRebuild::Dictionary, Some(f)) => Some(setup.dictionary(site, f)?),
        _ => None,
    };
    for (i, (x, d)) in v.iter_mut().zip(received).enumerate() {
        let kept = s.mask().is_kept(i);
        *x = match (&fill, kept) {
            (_, true) => d,
            (Some(f), false) => f[i % cols],
            (None, false) => 0.0,
        };
    }
    let mut b = bytes.lock().expect("no panics");
    b.0 += (v.len() * 2) as f64;
    b.1 += sent as f64;
    Ok(())
}

/// Compresses the encoder's linear weights by `w`, decodes and rebuilds them, and returns
/// the whole model's tensors with them replaced, and the stream's size and weight count.
fn compressed_weights(
    setup: &Setup,
    w: &WeightSetting,
) -> Result<(TensorFile, u64, u64, u64), GridError> {
    let (stream, dense_bytes, weights) = linear_stream(setup, w)?;
    let restored = decompress(&stream)?;
    let mut full = setup.weights.clone();
    for t in restored.tensors {
        if let Some(slot) = full.tensors.iter_mut().find(|x| x.name == t.name) {
            *slot = Tensor { ..t };
        }
    }
    Ok((full, stream.len() as u64, dense_bytes, weights))
}

/// The encoder's linear weights compressed by `w` as one stream; with their bf16 bytes and
/// their weight count.
pub fn linear_stream(setup: &Setup, w: &WeightSetting) -> Result<(Vec<u8>, u64, u64), GridError> {
    weight_stream(setup, w, false)
}

/// [`linear_stream`], with the word-embedding table sparsified and coded beside the linear
/// weights when `embeddings` is set (magnitude only: the calibration has no inputs for a
/// lookup table, so Wanda and SparseGPT cannot score it).
pub fn weight_stream(
    setup: &Setup,
    w: &WeightSetting,
    embeddings: bool,
) -> Result<(Vec<u8>, u64, u64), GridError> {
    if embeddings && w.criterion != Criterion::Magnitude {
        return Err(GridError::Other(format!(
            "the word embeddings are sparsified by magnitude only, not {}",
            w.criterion
        )));
    }
    let word = |n: &str| n.strip_prefix("bert.").unwrap_or(n) == crate::model::WORD_EMBEDDINGS;
    let subset = TensorFile {
        tensors: setup
            .weights
            .tensors
            .iter()
            .filter(|t| encoder_linear(&t.name) || (embeddings && word(&t.name)))
            .cloned()
            .collect(),
        metadata: vec![],
    };
    if subset.tensors.is_empty() {
        return Err(GridError::Other(
            "the model has no encoder linear weights (encoder.layer.N.*.weight)".into(),
        ));
    }
    let dense_bytes: u64 = subset.tensors.iter().map(|t| 2 * t.numel()).sum();
    let weights: u64 = subset.tensors.iter().map(|t| t.numel()).sum();
    let budget = match (w.sparsity, w.target_ratio) {
        (_, Some(r)) => Some(Budget::TargetRatio(r)),
        (Some(s), None) => Some(Budget::Sparsity(s)),
        (None, None) => None,
    };
    let sparsify = budget.map(|budget| SparsifyOptions {
        rebuild: w.reconstruct,
        criterion: w.criterion,
        pattern: w.pattern,
        budget,
        calibration: match w.criterion {
            Criterion::Wanda | Criterion::SparseGpt => Some(setup.calibration.clone()),
            _ => None,
        },
        calibration_map: vec![],
        gradients: None,
        nonfinite: Default::default(),
        scorers: None,
    });
    let opts = CompressOptions {
        sparsify,
        ..CompressOptions::default()
    };
    let stream = compress(&subset, &opts)?.0;
    Ok((stream, dense_bytes, weights))
}

/// Measures one cell.
pub fn run(setup: &Setup, cell: &Cell) -> Result<CellResult, GridError> {
    let t0 = std::time::Instant::now();
    let (model, w_bytes, w_dense, w_count) = match &cell.weights {
        Some(w) => {
            let (file, bytes, dense, count) = compressed_weights(setup, w)?;
            (
                Bert::load(&setup.config, &file)?,
                bytes as f64,
                dense as f64,
                count as f64,
            )
        }
        None => (Bert::load(&setup.config, &setup.weights)?, 0.0, 0.0, 0.0),
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
        criterion: w.filter(|w| w.lossy()).map(|w| w.criterion),
        pattern: w.filter(|w| w.lossy()).map(|w| w.pattern),
        reconstruct: w.map(|w| match w.lossy() {
            true => WeightsBack::Rebuilt(w.reconstruct),
            false => WeightsBack::Lossless,
        }),
        activation_reconstruct: a.map(|a| a.reconstruct),
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

/// What `sparsewire-eval score` measures: a weight file against the dense model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoreResult {
    pub sentences: usize,
    /// The model tensors the file replaced.
    pub tensors_replaced: usize,
    /// The weight file's size on disk.
    pub file_bytes: u64,
    /// The bf16 bytes of the tensors it replaced (2 bytes a value, whatever dtype the
    /// model folder holds), as docs/EVAL.md counts them.
    pub dense_bf16_bytes: u64,
    /// Activations: the keep fraction per token at every transferred site, if any.
    pub activation_keep: Option<f32>,
    /// Activations: encoded tile bytes over their dense bf16 bytes.
    pub activation_bytes_fraction: Option<f64>,
    /// (file bytes + activation bytes sent) / (dense bf16 bytes of both).
    pub bytes_fraction: f64,
    #[serde(flatten)]
    pub quality: Quality,
}

/// Scores `weights` (a decoded `.swire` or a safetensors file of `file_bytes` bytes; any
/// subset of the model's tensors, same names and shapes) against the dense model on the
/// setup's sentences, optionally with every transferred activation kept at
/// `activation_keep` per token (zero-filled), ranked by `activation_score`.
pub fn score(
    setup: &Setup,
    weights: &TensorFile,
    file_bytes: u64,
    activation_keep: Option<f32>,
    activation_score: ActScore,
) -> Result<ScoreResult, GridError> {
    if let Some(k) = activation_keep {
        if !(k > 0.0 && k <= 1.0) {
            return Err(GridError::Other(format!(
                "activation keep fraction {k} is outside (0, 1]"
            )));
        }
    }
    let mut full = setup.weights.clone();
    let mut dense_bf16 = 0u64;
    for t in &weights.tensors {
        let slot = full
            .tensors
            .iter_mut()
            .find(|x| x.name == t.name)
            .ok_or_else(|| {
                GridError::Other(format!(
                    "the weights' tensor {:?} is not in the model",
                    t.name
                ))
            })?;
        if slot.shape != t.shape {
            return Err(GridError::Other(format!(
                "the weights' tensor {:?} has shape {:?}, the model's {:?}",
                t.name, t.shape, slot.shape
            )));
        }
        dense_bf16 += 2 * t.numel();
        *slot = t.clone();
    }
    if weights.tensors.is_empty() {
        return Err(GridError::Other("the weight file holds no tensors".into()));
    }
    let model = Bert::load(&setup.config, &full)?;
    let act = activation_keep.map(|k| ActSetting {
        policy: ActPolicy::KeepFraction(k),
        reconstruct: ActRebuild::Zero,
        sites: Sites::All,
        score: activation_score,
    });
    let counts = std::sync::Mutex::new((0f64, 0f64, 0usize));
    let emb = embed_all(
        &model,
        &setup.sentences,
        act.as_ref().map(|a| (a, setup, &counts)),
    )?;
    let (a_dense, a_sent, _) = counts.into_inner().expect("no panics");
    Ok(ScoreResult {
        sentences: setup.sentences.len(),
        tensors_replaced: weights.tensors.len(),
        file_bytes,
        dense_bf16_bytes: dense_bf16,
        activation_keep,
        activation_bytes_fraction: act.map(|_| a_sent / a_dense.max(1.0)),
        bytes_fraction: (file_bytes as f64 + a_sent) / (dense_bf16 as f64 + a_dense).max(1.0),
        quality: quality(&setup.reference, &emb),
    })
}
