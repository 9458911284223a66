//! Recovery training: distil a sparsified encoder back toward the dense one with its masks
//! fixed, and write what crosses the link.
//!
//! 1. The encoder's linear weights are sparsified post hoc exactly as the eval grid does
//!    (any criterion and pattern of `se`; SparseGPT's updated kept weights included) and
//!    coded; the masks and the decoded weights are the student's start.
//! 2. The student's linear weights are `Var`s multiplied by their fixed masks in the
//!    forward pass, so dropped weights get no gradient and stay dropped. Or, with
//!    [`Gradual`], the student starts dense and `sparsewire_train::Sparsifier` prunes it
//!    during training on the cubic schedule (magnitude, Taylor or movement scores). Or, with
//!    [`Remask`] (SR-STE), the student keeps a dense shadow trained straight through and
//!    its masks are chosen again by magnitude every few steps. The teacher is
//!    the dense model, frozen. Loss per sentence: `1 - cos(student, teacher)` of the pooled
//!    embeddings plus `hidden_weight` times the mean squared error of every layer's output
//!    (the tensors that cross the link pulled toward the teacher's), averaged over a batch.
//!    AdamW, linear warm-up then linear decay, global gradient-norm clipping, a seed. With
//!    [`Checkpointing`], the whole state (weights, masks, moments, data order, curve) is
//!    saved every few steps, and a resumed run ends bit for bit where the uninterrupted one
//!    would have ([`crate::checkpoint`]).
//! 3. With `activations` (a keep fraction, one per family, or a threshold), the tensors that cross the link (`hidden.i`, `ffn_in.i`,
//!    `ffn_act.i`, as the grid defines them; the model output excepted) go through the
//!    runtime activation sparsifier per token in the student's forward pass, the kept values
//!    rounded to bf16 as they are sent ([`activation_hook`]), with a straight-through
//!    gradient (`sparsewire_train::activation::ste`), so the student learns
//!    to live with the activation sparsity inference applies. The hidden-state MSE compares
//!    each layer's output before it is sparsified. The scores "with activations" then run
//!    the inference path: every block sparsified, encoded as a real stream tile (its bytes
//!    counted), decoded, zero-filled.
//! 4. Training text is never the evaluation text: the sentences come from a training file
//!    (WordNet examples by default), its last `heldout` lines kept out for a held-out score.
//! 5. The trained weights are rounded to bf16 (the transfer dtype), written with the same
//!    masks as one stream, decoded again, and scored from those decoded bytes: the figure
//!    is what the accelerator would rebuild.

use crate::checkpoint::{self, Adam, Checkpoint, Checkpointing, Saved, State};
use crate::grid::{
    self, ActPolicy, ActRebuild, ActScore, ActSetting, GridError, Setup, Sites, WeightSetting,
};
use crate::metrics::{quality, Quality};
use crate::model::{Bert, ModelError, Site};
use candle_core::{DType, Device, Tensor, Var};
use sparsewire_formats::{Dtype, TensorFile};
use sparsewire_metadata::{Criterion, Pattern, Reconstruction, Sparsification};
use sparsewire_sparse::{Mask, SparseTensor, SparseTile};
use std::collections::HashMap;

/// How recovery trains.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecoverOptions {
    #[serde(serialize_with = "sparsewire_metadata::display::serialize")]
    pub criterion: Criterion,
    #[serde(serialize_with = "sparsewire_metadata::display::serialize")]
    pub pattern: Pattern,
    /// Fraction of each linear weight dropped, in [0, 1).
    pub sparsity: f32,
    pub steps: usize,
    /// Sentences a step.
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    /// Weight of the per-layer hidden-state MSE against the embedding cosine term.
    pub hidden_weight: f64,
    /// Global gradient-norm clip (0: off).
    pub clip: f64,
    pub seed: u64,
    /// Steps between the running evaluations the progress callback gets (0: none).
    pub eval_every: usize,
    /// Activations in the loop: what each token keeps at every transferred site in
    /// `activation_sites` (`None`: activations dense).
    pub activations: Option<ActPolicy>,
    pub activation_sites: Sites,
    /// Gradual pruning during recovery instead of the post-hoc sparsifier's fixed masks.
    pub gradual: Option<Gradual>,
    /// Masks re-chosen during recovery from a dense shadow of the weights (SR-STE)
    /// instead of fixed.
    pub remask: Option<Remask>,
    /// Sparsify (by magnitude, same sparsity and pattern) and train the word-embedding
    /// table too, as the linear weights; it then crosses the link in the same stream.
    pub embeddings: bool,
    /// Stop after this many seconds of training (held-out scoring not counted), even if
    /// fewer than `steps` steps ran; the learning-rate schedule stays planned on `steps`.
    pub max_seconds: Option<f64>,
    /// Checkpoints to write, and whether to go on from one (not part of the options a
    /// resume must match).
    #[serde(skip)]
    pub checkpoint: Option<Checkpointing>,
}

/// Gradual pruning during recovery (`sparsewire_train::Sparsifier`): the student starts
/// from the dense weights and its masks follow the cubic schedule from 0 to the target
/// sparsity over steps `0..=end`, updated every `every` steps by `criterion` (a weight
/// dropped stays dropped); then training goes on with the masks fixed. The post-hoc row of
/// the report stays the one-shot `criterion` of [`RecoverOptions`], for comparison.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Gradual {
    pub end: usize,
    pub every: usize,
    pub criterion: sparsewire_train::TrainCriterion,
}

/// Masks that move during recovery, as in SR-STE (Zhou et al., "Learning N:M fine-grained
/// structured sparse neural networks from scratch", 2021): the student holds every weight,
/// a dense shadow (the post-hoc sparsifier's values where it kept; where it dropped, the
/// dense model's values or zero, [`Shadow`]). The forward pass multiplies by the mask; the
/// backward pass sends the gradient to every weight straight through (so a dropped weight
/// can grow back), plus `decay` times each dropped weight (the sparse-refined term that
/// pulls what stays dropped toward zero); every `every` steps and after the last, the mask
/// is chosen again by magnitude in the same pattern and at the same sparsity. The post-hoc
/// row of the report stays the one-shot `criterion`; the stream records magnitude.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Remask {
    pub every: usize,
    pub decay: f64,
    /// Where the dropped weights' shadow starts.
    pub shadow: Shadow,
}

/// The start of the dropped weights' dense shadow under [`Remask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Shadow {
    /// The dense model's values: the first re-choice ranks every weight by magnitude.
    Dense,
    /// Zero: the post-hoc mask holds until training grows a dropped weight past a kept one.
    Zero,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            criterion: Criterion::SparseGpt,
            pattern: Pattern::Unstructured,
            sparsity: 0.5,
            steps: 300,
            batch: 8,
            lr: 2e-4,
            warmup: 30,
            weight_decay: 0.0,
            hidden_weight: 1.0,
            clip: 1.0,
            seed: 1,
            eval_every: 50,
            activations: None,
            activation_sites: Sites::All,
            gradual: None,
            remask: None,
            embeddings: false,
            max_seconds: None,
            checkpoint: None,
        }
    }
}

impl RecoverOptions {
    /// Checks every option's range.
    pub fn check(&self) -> Result<(), String> {
        let bad = |m: String| Err(m);
        if !(0.0..1.0).contains(&self.sparsity) {
            return bad(format!("sparsity {} is outside [0, 1)", self.sparsity));
        }
        if !(1..=1_000_000).contains(&self.steps) || !(1..=4096).contains(&self.batch) {
            return bad(format!(
                "steps {} and batch {} must be in 1..=1000000 and 1..=4096",
                self.steps, self.batch
            ));
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return bad(format!("learning rate {} is outside (0, 1)", self.lr));
        }
        if self.warmup >= self.steps {
            return bad(format!(
                "warm-up {} must be shorter than the {} steps",
                self.warmup, self.steps
            ));
        }
        if let Some(g) = self.gradual {
            if g.end == 0 || g.end >= self.steps || g.every == 0 || g.every > g.end {
                return bad(format!(
                    "gradual pruning must end within the {} steps (end {} in 1..steps) and update at least once (every {} in 1..=end)",
                    self.steps, g.end, g.every
                ));
            }
        }
        if let Some(r) = self.remask {
            if r.every == 0 || r.every > self.steps || !(r.decay >= 0.0 && r.decay < 1.0) {
                return bad(format!(
                    "masks re-chosen every {} steps (1..={}) with a decay of {} ([0, 1))",
                    r.every, self.steps, r.decay
                ));
            }
            if self.gradual.is_some() {
                return bad("re-chosen masks and gradual pruning are two ways of moving the masks: pick one".into());
            }
        }
        if let Some(c) = &self.checkpoint {
            if c.every == 0 {
                return bad("checkpoints must be at least 1 step apart".into());
            }
            if self.gradual.is_some() || self.remask.is_some() {
                return bad(
                    "checkpoints are not written with gradual pruning or re-chosen masks (the sparsifier's scores and the dense shadow are not saved)".into(),
                );
            }
        }
        if let Some(p) = self.activations {
            p.check()?;
        }
        if self.embeddings && self.criterion != Criterion::Magnitude {
            return bad(format!(
                "the word embeddings are sparsified by magnitude only (criterion {}): the calibration has no inputs for a lookup table",
                self.criterion
            ));
        }
        if let Some(t) = self.max_seconds {
            if !(t > 0.0 && t.is_finite()) {
                return bad(format!("a time budget of {t} seconds is not positive"));
            }
        }
        if !((0.0..1.0).contains(&self.weight_decay)
            && self.hidden_weight >= 0.0
            && self.hidden_weight.is_finite()
            && self.clip >= 0.0
            && self.clip.is_finite())
        {
            return bad(
                "weight decay must be in [0, 1); hidden weight and clip finite and >= 0".into(),
            );
        }
        Ok(())
    }
}

/// One step's progress.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    /// Mean cosine on the held-out sentences, on the steps that evaluate.
    pub heldout_cosine: Option<f64>,
    /// Training seconds up to the end of this step, held-out scoring not counted (0 in
    /// checkpoints written before it was recorded).
    #[serde(default)]
    pub seconds: f64,
}

/// What recovery measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecoverReport {
    pub options: RecoverOptions,
    pub train_sentences: usize,
    pub heldout_sentences: usize,
    pub eval_sentences: usize,
    /// Stream bytes over the linear weights' bf16 bytes (and the word embeddings' with
    /// `embeddings`), post hoc and recovered.
    pub bytes_fraction_post_hoc: f64,
    pub bytes_fraction: f64,
    pub stream_bytes: u64,
    pub dense_bf16_bytes: u64,
    /// Share of the linear weights dropped (from the masks).
    pub sparsity: f64,
    /// On the evaluation sentences, against the dense model.
    pub post_hoc: Quality,
    pub recovered: Quality,
    /// On the held-out training-text lines.
    pub post_hoc_heldout: Quality,
    pub recovered_heldout: Quality,
    /// With the activations sparsified as inference ships them (`activations`).
    pub with_activations: Option<WithActivations>,
    pub train_seconds: f64,
    /// Steps run: `steps`, or fewer when `max_seconds` ran out first.
    pub steps_done: usize,
    pub curve: Vec<Step>,
}

/// Scores with every transferred activation sparsified, encoded and zero-filled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WithActivations {
    /// The post-hoc student, and the dense model (weights intact: what activation
    /// sparsity alone costs), on the evaluation sentences.
    pub post_hoc: Quality,
    pub dense_weights: Quality,
    pub recovered: Quality,
    pub post_hoc_heldout: Quality,
    pub recovered_heldout: Quality,
    /// Encoded activation tile bytes over their dense bf16 bytes (recovered model,
    /// evaluation sentences).
    pub activation_bytes_fraction: f64,
}

/// The recovered model.
pub struct Recovered {
    pub report: RecoverReport,
    /// The linear weights as one stream (masks and kept bf16 values): what crosses the link.
    pub stream: Vec<u8>,
    /// The whole model with the recovered weights (bf16), as decoded from `stream`.
    pub model: TensorFile,
    /// The linear weights as trained (masked, rounded to bf16), before any coding.
    pub trained: TensorFile,
}

struct Linear {
    name: String,
    var: Var,
    mask: Tensor,
    keep: Vec<bool>,
    shape: (usize, usize),
}

/// The 0/1 mask tensor the forward pass multiplies a weight of `shape` by.
fn mask_of(keep: &[bool], shape: (usize, usize)) -> Result<Tensor, GridError> {
    let f: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(f, shape, &Device::Cpu).map_err(err)
}

impl Linear {
    /// A linear weight of `shape` with `values` and the kept flags `keep`.
    fn new(
        name: String,
        values: Vec<f32>,
        keep: Vec<bool>,
        shape: (usize, usize),
    ) -> Result<Linear, GridError> {
        Ok(Linear {
            name,
            var: Var::from_vec(values, shape, &Device::Cpu).map_err(err)?,
            mask: mask_of(&keep, shape)?,
            keep,
            shape,
        })
    }

    /// Sets the kept flags and the mask tensor with them.
    fn set_keep(&mut self, keep: Vec<bool>) -> Result<(), GridError> {
        self.mask = mask_of(&keep, self.shape)?;
        self.keep = keep;
        Ok(())
    }

    /// Chooses the mask again by the magnitude of the (dense shadow) weights, in
    /// `pattern` at `sparsity` (ignored by N:M, whose pattern fixes it).
    fn remask(&mut self, pattern: Pattern, sparsity: f32) -> Result<(), GridError> {
        let w: Vec<f32> = self
            .var
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(err)?;
        let scores: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        let (r, c) = self.shape;
        let m = sparsewire_se::pattern::select(&scores, r, c, pattern, f64::from(sparsity))
            .map_err(err)?;
        self.set_keep((0..m.len()).map(|i| m.is_kept(i)).collect())
    }
}

/// `teacher` with the student's weights as [`masked`] gives them in the forward pass, but
/// with the gradient reaching every weight, the dropped ones included (straight through):
/// `w - detach(w) * (1 - mask)` is `w * mask` in value and `w` to the backward pass.
fn straight_through(teacher: &Bert, linears: &[Linear]) -> Result<Bert, GridError> {
    let w: HashMap<String, Tensor> = linears
        .iter()
        .map(|l| {
            let v = l.var.as_tensor();
            let dropped = (v.detach() * (1.0 - &l.mask)?)?;
            Ok((l.name.clone(), (v - dropped)?))
        })
        .collect::<Result<_, candle_core::Error>>()
        .map_err(err)?;
    Ok(teacher.with_linear_weights(&w)?)
}

/// splitmix64: a seeded shuffle that needs no dependency.
fn shuffle(v: &mut [usize], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

fn err(e: impl std::fmt::Display) -> GridError {
    GridError::Other(e.to_string())
}

/// The stream of `linears` (values rounded to bf16, the fixed masks), zero-fill rebuild;
/// and those bf16 weights as trained, dense.
fn write_stream(
    linears: &[Linear],
    criterion: Criterion,
    pattern: Pattern,
) -> Result<(Vec<u8>, TensorFile), GridError> {
    let mut trained = Vec::with_capacity(linears.len());
    let mut w = sparsewire_stream::Writer::new(Vec::new(), Default::default()).map_err(err)?;
    for l in linears {
        let mut v: Vec<f32> = l
            .var
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(err)?;
        // Dropped weights are +0 (a shadow's negative value times the mask would be -0,
        // which the stream, rebuilding dropped weights as +0, would not give back).
        for (x, &k) in v.iter_mut().zip(&l.keep) {
            if !k {
                *x = 0.0;
            }
        }
        let bytes = sparsewire_formats::from_f32(Dtype::BF16, &v).expect("bf16 is a float");
        let (r, c) = l.shape;
        trained.push(
            sparsewire_formats::Tensor::new(
                l.name.clone(),
                Dtype::BF16,
                vec![r as u64, c as u64],
                bytes.clone(),
            )
            .map_err(err)?,
        );
        let tile = SparseTile::from_dense(r, c, Dtype::BF16, &bytes, Mask::from_bools(&l.keep))
            .map_err(err)?;
        let kept = l.keep.iter().filter(|&&k| k).count();
        let sparse = SparseTensor {
            tile,
            info: Sparsification::new(criterion, pattern, 1.0 - kept as f32 / (r * c) as f32),
            reconstruction: Reconstruction::Zero,
        };
        w.add_sparse(&l.name, &[r as u64, c as u64], &sparse)
            .map_err(err)?;
    }
    let trained = TensorFile {
        tensors: trained,
        metadata: vec![],
    };
    Ok((w.finish(vec![]).map_err(err)?.0, trained))
}

/// `teacher` with the student's masked weights (`Var` times mask, in the autograd graph).
fn masked(teacher: &Bert, linears: &[Linear]) -> Result<Bert, GridError> {
    let w: HashMap<String, Tensor> = linears
        .iter()
        .map(|l| Ok((l.name.clone(), (l.var.as_tensor() * &l.mask)?)))
        .collect::<Result<_, candle_core::Error>>()
        .map_err(err)?;
    Ok(teacher.with_linear_weights(&w)?)
}

/// The setup's model with the stream's tensors in place of its own.
fn overlay(setup: &Setup, stream: &[u8]) -> Result<TensorFile, GridError> {
    let restored = sparsewire_pipeline::decompress(stream)?;
    let mut full = setup.weights.clone();
    for t in restored.tensors {
        let slot = full
            .tensors
            .iter_mut()
            .find(|x| x.name == t.name)
            .ok_or_else(|| err(format!("the stream's {:?} is not in the model", t.name)))?;
        *slot = t;
    }
    Ok(full)
}

/// The training forward's activation sparsifier, for [`Bert::hidden_states_with`]: at
/// every site of `sites` that a model of `layers` layers sends, each token keeps what
/// `policy` says there (the runtime sparsifier), rounded to bf16 as they are sent, with
/// the straight-through gradient.
pub fn activation_hook(
    sites: Sites,
    layers: usize,
    policy: ActPolicy,
) -> impl FnMut(Site, Tensor) -> Result<Tensor, ModelError> {
    move |site, x| {
        if !sites.sends(site, layers) {
            return Ok(x);
        }
        let y = sparsewire_train::activation::ste(&x, policy.at(site))
            .map_err(|e| ModelError::Candle(candle_core::Error::Msg(e.to_string())))?;
        let r = y.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        Ok((&y + (r - &y)?.detach())?)
    }
}

/// The inference path's activation setting for these options, if any.
fn act_setting(o: &RecoverOptions) -> Option<ActSetting> {
    o.activations.map(|policy| ActSetting {
        policy,
        reconstruct: ActRebuild::Zero,
        sites: o.activation_sites,
        score: ActScore::Magnitude,
    })
}

/// Embeddings of `sentences` through the inference path (activations sparsified when
/// `act` says so), and the activation bytes (dense bf16, sent).
fn embed_act(
    model: &Bert,
    sentences: &[Vec<u32>],
    act: &ActSetting,
    setup: &Setup,
) -> Result<(Vec<Vec<f32>>, f64, f64), GridError> {
    let counts = std::sync::Mutex::new((0f64, 0f64, 0usize));
    let e = grid::embed_all(model, sentences, Some((act, setup, &counts)))?;
    let (dense, sent, _) = counts.into_inner().expect("no panics");
    Ok((e, dense, sent))
}

/// Distils a sparsified student from the setup's dense model on `train` (token ids), scoring
/// on the setup's evaluation sentences and on `heldout`. `progress` sees every step.
pub fn recover(
    setup: &Setup,
    train: &[Vec<u32>],
    heldout: &[Vec<u32>],
    o: &RecoverOptions,
    progress: &mut dyn FnMut(&Step),
) -> Result<Recovered, GridError> {
    o.check().map_err(GridError::Other)?;
    if train.is_empty() || heldout.len() < 2 {
        return Err(err(
            "recovery needs training sentences and at least 2 held-out ones",
        ));
    }
    if setup.config.pooling != crate::model::Pooling::MEAN {
        return Err(err("recovery trains models that pool by mean"));
    }
    let teacher = Bert::load(&setup.config, &setup.weights)?;
    let teacher_heldout = grid::embed_all(&teacher, heldout, None)?;
    // 1. Post hoc: the grid's sparsifier, coded; its masks and decoded weights.
    let setting = WeightSetting {
        sparsity: Some(o.sparsity),
        target_ratio: None,
        criterion: o.criterion,
        pattern: o.pattern,
        reconstruct: sparsewire_se::Rebuild::Zero,
    };
    let (post_stream, dense_bytes, _) = grid::weight_stream(setup, &setting, o.embeddings)?;
    let post_model = Bert::load(&setup.config, &overlay(setup, &post_stream)?)?;
    let post_hoc = quality(
        &setup.reference,
        &grid::embed_all(&post_model, &setup.sentences, None)?,
    );
    let post_hoc_heldout = quality(
        &teacher_heldout,
        &grid::embed_all(&post_model, heldout, None)?,
    );
    let act = act_setting(o);
    let post_act = match &act {
        Some(a) => Some((
            quality(
                &setup.reference,
                &embed_act(&post_model, &setup.sentences, a, setup)?.0,
            ),
            quality(
                &setup.reference,
                &embed_act(&teacher, &setup.sentences, a, setup)?.0,
            ),
            quality(
                &teacher_heldout,
                &embed_act(&post_model, heldout, a, setup)?.0,
            ),
        )),
        None => None,
    };
    drop(post_model);
    let reader = sparsewire_stream::Reader::new(&post_stream[..]).map_err(err)?;
    let mut linears = Vec::new();
    for t in 0..reader.header().tensors.len() {
        let dec = reader.decode_tensor(t).map_err(err)?;
        let (r, c) = (dec.shape[0] as usize, dec.shape[1] as usize);
        let keep: Vec<bool> = match reader.tensor_sparse(t).map_err(err)? {
            Some(tile) => (0..r * c).map(|i| tile.mask().is_kept(i)).collect(),
            None => vec![true; r * c],
        };
        // The dense model's values of this weight (the gradual start, the dense shadow).
        let dense = || {
            setup
                .weights
                .tensors
                .iter()
                .find(|w| w.name == dec.name)
                .and_then(|w| w.to_f32_vec())
        };
        let (v, keep) = match o.gradual {
            // The dense shadow: the post-hoc values where kept, the dense model's elsewhere.
            None if o.remask.is_some_and(|r| r.shadow == Shadow::Dense) => (
                dec.to_f32_vec().zip(dense()).map(|(mut v, d)| {
                    for ((x, &k), &y) in v.iter_mut().zip(&keep).zip(&d) {
                        if !k {
                            *x = y;
                        }
                    }
                    v
                }),
                keep,
            ),
            None => (dec.to_f32_vec(), keep),
            // Gradual pruning starts from the dense weights, every one kept.
            Some(_) => (dense(), vec![true; r * c]),
        };
        let v = v.ok_or_else(|| err(format!("linear weight {:?} is not float", dec.name)))?;
        linears.push(Linear::new(dec.name.clone(), v, keep, (r, c))?);
    }
    // 2. Training.
    let mut sparsifier = match o.gradual {
        None => None,
        Some(g) => {
            let params: Vec<(String, Var)> = linears
                .iter()
                .map(|l| (l.name.clone(), l.var.clone()))
                .collect();
            let mut s = sparsewire_train::Sparsifier::new(vec![sparsewire_train::Group {
                params: params.iter().map(|p| p.0.clone()).collect(),
                criterion: g.criterion,
                pattern: o.pattern,
                target: o.sparsity,
                schedule: sparsewire_train::Schedule::Gradual {
                    start: 0,
                    end: g.end as u64,
                    every: g.every as u64,
                    initial: 0.0,
                },
                rebuild: sparsewire_train::TrainRebuild::Zero,
                scope: sparsewire_train::Scope::Layer,
            }])
            .map_err(err)?;
            s.prepare(&params).map_err(err)?;
            Some(s)
        }
    };
    let mut opt = Adam::new(
        linears.iter().map(|l| l.var.clone()).collect(),
        o.weight_decay,
    )
    .map_err(err)?;
    let t0 = std::time::Instant::now();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut seed = o.seed;
    shuffle(&mut order, &mut seed);
    let mut at = 0usize;
    let mut curve: Vec<Step> = Vec::with_capacity(o.steps);
    let (mut start, mut seconds_before) = (0usize, 0f64);
    let options_json = serde_json::to_value(o).map_err(err)?;
    if let Some(c) = o.checkpoint.as_ref().filter(|c| c.resume) {
        let names: Vec<(String, usize)> = linears
            .iter()
            .map(|l| (l.name.clone(), l.shape.0 * l.shape.1))
            .collect();
        let ck = Checkpoint::load(&c.dir, &names).map_err(GridError::Other)?;
        if ck.state.options != options_json {
            return Err(err(format!(
                "checkpoint {}: started with other options ({}); resume with the same ones",
                c.dir.display(),
                ck.state.options
            )));
        }
        if ck.state.step >= o.steps || ck.state.order.len() != train.len() {
            return Err(err(format!(
                "checkpoint {}: step {} of {} sentences does not fit a run of {} steps on {}",
                c.dir.display(),
                ck.state.step,
                ck.state.order.len(),
                o.steps,
                train.len()
            )));
        }
        for (i, (l, saved)) in linears.iter_mut().zip(ck.linears).enumerate() {
            l.var
                .set(&checkpoint::tensor(saved.weights, l.shape).map_err(err)?)
                .map_err(err)?;
            l.set_keep(saved.keep)?;
            opt.m[i] = checkpoint::tensor(saved.m, l.shape).map_err(err)?;
            opt.v[i] = checkpoint::tensor(saved.v, l.shape).map_err(err)?;
        }
        start = ck.state.step;
        seconds_before = ck.state.seconds;
        (seed, order, at) = (ck.state.seed, ck.state.order, ck.state.at);
        opt.t = ck.state.adam_t;
        curve = serde_json::from_value(ck.state.curve).map_err(err)?;
    }
    let mut trained_seconds = curve.last().map_or(0.0, |s| s.seconds);
    for step in start..o.steps {
        if o.max_seconds.is_some_and(|t| trained_seconds >= t) {
            break;
        }
        let step0 = std::time::Instant::now();
        let lr = if step < o.warmup {
            o.lr * (step + 1) as f64 / o.warmup as f64
        } else {
            o.lr * (o.steps - step) as f64 / (o.steps - o.warmup) as f64
        };
        let student = if o.remask.is_some() {
            straight_through(&teacher, &linears)?
        } else {
            masked(&teacher, &linears)?
        };
        // The batch runs packed (one matrix product a layer for all its sentences), and
        // the loss is taken sentence by sentence from its rows, as if each ran alone.
        let mut segs: Vec<&[u32]> = Vec::with_capacity(o.batch);
        for _ in 0..o.batch {
            if at == order.len() {
                shuffle(&mut order, &mut seed);
                at = 0;
            }
            segs.push(&train[order[at]]);
            at += 1;
        }
        let ht_all = teacher.hidden_states_packed(&segs, None)?;
        let hs_all = match o.activations {
            None => student.hidden_states_packed(&segs, None)?,
            Some(k) => student.hidden_states_packed(
                &segs,
                Some(&mut activation_hook(
                    o.activation_sites,
                    setup.config.layers,
                    k,
                )),
            )?,
        };
        let mut loss: Option<Tensor> = None;
        let mut row = 0;
        for ids in &segs {
            let rows = |all: &[Tensor]| -> Result<Vec<Tensor>, GridError> {
                all.iter()
                    .map(|t| t.narrow(0, row, ids.len()).map_err(err))
                    .collect()
            };
            let (hs, ht) = (rows(&hs_all)?, rows(&ht_all)?);
            row += ids.len();
            let (es, et) = (
                Bert::mean_embedding(hs.last().expect("layers"))?,
                Bert::mean_embedding(ht.last().expect("layers"))?,
            );
            let cos = (es * et).map_err(err)?.sum_all().map_err(err)?;
            let mut l = (cos.neg().map_err(err)? + 1.0).map_err(err)?;
            if o.hidden_weight > 0.0 {
                let mut mse: Option<Tensor> = None;
                for (a, b) in hs.iter().zip(&ht).skip(1) {
                    let d = (a - b)
                        .map_err(err)?
                        .sqr()
                        .map_err(err)?
                        .mean_all()
                        .map_err(err)?;
                    mse = Some(match mse {
                        None => d,
                        Some(m) => (m + d).map_err(err)?,
                    });
                }
                let n = (hs.len() - 1).max(1) as f64;
                let mse =
                    (mse.expect("at least one layer") * (o.hidden_weight / n)).map_err(err)?;
                l = (l + mse).map_err(err)?;
            }
            loss = Some(match loss {
                None => l,
                Some(s) => (s + l).map_err(err)?,
            });
        }
        let loss = (loss.expect("a batch") / o.batch as f64).map_err(err)?;
        let value = f64::from(
            loss.to_dtype(DType::F32)
                .and_then(|t| t.to_scalar::<f32>())
                .map_err(err)?,
        );
        if !value.is_finite() {
            return Err(err(format!(
                "the loss is {value} at step {step}: lower --lr"
            )));
        }
        let mut grads = loss.backward().map_err(err)?;
        if o.clip > 0.0 {
            let mut sq = 0f64;
            for l in &linears {
                if let Some(g) = grads.get(l.var.as_tensor()) {
                    sq += f64::from(
                        g.sqr()
                            .and_then(|g| g.sum_all()?.to_scalar::<f32>())
                            .map_err(err)?,
                    );
                }
            }
            let norm = sq.sqrt();
            if norm > o.clip {
                for l in &linears {
                    if let Some(g) = grads.get(l.var.as_tensor()) {
                        let g = (g * (o.clip / norm)).map_err(err)?;
                        grads.insert(l.var.as_tensor(), g);
                    }
                }
            }
        }
        if let Some(sp) = &mut sparsifier {
            sp.observe(&grads).map_err(err)?;
        }
        if let Some(r) = o.remask.filter(|r| r.decay > 0.0) {
            for l in &linears {
                if let Some(g) = grads.get(l.var.as_tensor()) {
                    // Detached: a term that tracked the variable would chain each step's
                    // graph into the optimiser's moments (memory grows without bound).
                    let dropped = (l.var.as_tensor().detach() * (1.0 - &l.mask).map_err(err)?)
                        .map_err(err)?;
                    let g = (g + (dropped * r.decay).map_err(err)?).map_err(err)?;
                    grads.insert(l.var.as_tensor(), g);
                }
            }
        }
        opt.step(&grads, lr).map_err(err)?;
        if let Some(r) = o.remask {
            if (step + 1) % r.every == 0 {
                for l in &mut linears {
                    l.remask(o.pattern, o.sparsity)?;
                }
            }
        }
        if let Some(sp) = &mut sparsifier {
            // Masks move on the schedule's steps; `step` zeroes the dropped weights after
            // every update (the optimiser's momentum would move them).
            let changed = sp.step(step as u64).map_err(err)?;
            for (name, _) in changed {
                let l = linears
                    .iter_mut()
                    .find(|l| l.name == name)
                    .expect("the sparsifier holds the linears");
                let m = sp.mask(&name).expect("a masked parameter");
                l.set_keep((0..m.len()).map(|i| m.is_kept(i)).collect())?;
            }
        }
        trained_seconds += step0.elapsed().as_secs_f64();
        let heldout_cosine = if o.eval_every > 0 && (step + 1) % o.eval_every == 0 {
            let m = masked(&teacher, &linears)?;
            let e = match &act {
                Some(a) => embed_act(&m, heldout, a, setup)?.0,
                None => grid::embed_all(&m, heldout, None)?,
            };
            Some(quality(&teacher_heldout, &e).mean_cosine)
        } else {
            None
        };
        let s = Step {
            step: step + 1,
            loss: value,
            lr,
            heldout_cosine,
            seconds: trained_seconds,
        };
        progress(&s);
        curve.push(s);
        if let Some(c) = &o.checkpoint {
            if (step + 1) % c.every == 0 && step + 1 < o.steps {
                let mut saved = Vec::with_capacity(linears.len());
                for (i, l) in linears.iter().enumerate() {
                    saved.push(Saved {
                        name: l.name.clone(),
                        weights: checkpoint::values(l.var.as_tensor()).map_err(err)?,
                        keep: l.keep.clone(),
                        m: checkpoint::values(&opt.m[i]).map_err(err)?,
                        v: checkpoint::values(&opt.v[i]).map_err(err)?,
                    });
                }
                Checkpoint {
                    state: State {
                        step: step + 1,
                        options: options_json.clone(),
                        seed,
                        order: order.clone(),
                        at,
                        adam_t: opt.t,
                        seconds: seconds_before + t0.elapsed().as_secs_f64(),
                        curve: serde_json::to_value(&curve).map_err(err)?,
                    },
                    linears: saved,
                }
                .save(&c.dir)
                .map_err(GridError::Other)?;
            }
        }
    }
    // Moving masks are chosen once more after the last step, wherever the run stopped.
    if o.remask.is_some() {
        for l in &mut linears {
            l.remask(o.pattern, o.sparsity)?;
        }
    }
    let train_seconds = seconds_before + t0.elapsed().as_secs_f64();
    let kept: usize = linears
        .iter()
        .map(|l| l.keep.iter().filter(|&&k| k).count())
        .sum();
    let total: usize = linears.iter().map(|l| l.shape.0 * l.shape.1).sum();
    // 4. What crosses the link, decoded and scored.
    let recorded = match (o.gradual, o.remask) {
        (Some(g), _) => g.criterion.recorded(),
        (None, Some(_)) => Criterion::Magnitude,
        (None, None) => o.criterion,
    };
    let (stream, trained) = write_stream(&linears, recorded, o.pattern)?;
    let model = overlay(setup, &stream)?;
    let rec = Bert::load(&setup.config, &model)?;
    let recovered = quality(
        &setup.reference,
        &grid::embed_all(&rec, &setup.sentences, None)?,
    );
    let recovered_heldout = quality(&teacher_heldout, &grid::embed_all(&rec, heldout, None)?);
    let with_activations = match (&act, post_act) {
        (Some(a), Some((post_hoc, dense_weights, post_hoc_heldout))) => {
            let (e, dense, sent) = embed_act(&rec, &setup.sentences, a, setup)?;
            Some(WithActivations {
                post_hoc,
                dense_weights,
                recovered: quality(&setup.reference, &e),
                post_hoc_heldout,
                recovered_heldout: quality(
                    &teacher_heldout,
                    &embed_act(&rec, heldout, a, setup)?.0,
                ),
                activation_bytes_fraction: sent / dense.max(1.0),
            })
        }
        _ => None,
    };
    Ok(Recovered {
        report: RecoverReport {
            options: o.clone(),
            train_sentences: train.len(),
            heldout_sentences: heldout.len(),
            eval_sentences: setup.sentences.len(),
            bytes_fraction_post_hoc: post_stream.len() as f64 / dense_bytes.max(1) as f64,
            bytes_fraction: stream.len() as f64 / dense_bytes.max(1) as f64,
            stream_bytes: stream.len() as u64,
            dense_bf16_bytes: dense_bytes,
            sparsity: 1.0 - kept as f64 / total.max(1) as f64,
            post_hoc,
            recovered,
            post_hoc_heldout,
            recovered_heldout,
            with_activations,
            train_seconds,
            steps_done: curve.len(),
            curve,
        },
        stream,
        model,
        trained,
    })
}
