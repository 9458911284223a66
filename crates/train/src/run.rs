//! The training loop behind `sparsewire train --config FILE.toml`.
//!
//! One run trains the digits CNN with the configured sparsity in the loop and scores it
//! against two baselines trained in the same run with the same seed: the dense model (no
//! regularizer; shared by the runs of a grid, [`train_cached`]), and
//! the dense model pruned post hoc by magnitude at the same sparsity, pattern and
//! activation keep (the same bytes). Steps: shuffle (seeded), forward with masks and
//! activation sparsity, cross-entropy plus regularizers, backward, gradient criteria,
//! clipping, AdamW (linear warm-up, cosine decay), dropped weights re-zeroed, masks
//! updated on the schedule. A non-finite loss stops the run with the step and the last
//! finite loss; nothing is written.
//!
//! Bytes per image: the trained weights as a real `.swire` ([`Sparsifier::squash`])
//! amortised over a batch of [`AMORTISE`] images, plus the crossing activations as the
//! activation sparsifier sends them.

use crate::digits::{Cnn, Digits, LinkBytes, Rng};
use crate::regularize::Regularizers;
use crate::{Group, Result, Schedule, Sparsifier, TrainCriterion, TrainError};
use candle_core::{Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use sparsewire_metadata::Pattern;
use std::path::PathBuf;
use std::time::Instant;

/// Images a transfer of the weights is amortised over in `bytes_per_image`.
pub const AMORTISE: usize = 64;

/// A training run, as read from TOML (`examples/train/*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub seed: u64,
    /// `sklearn_digits.safetensors`; default `../shared/data/` or `$SPARSEWIRE_DATA`.
    #[serde(default)]
    pub data: Option<PathBuf>,
    #[serde(default = "defaults::epochs")]
    pub epochs: u64,
    #[serde(default = "defaults::batch")]
    pub batch: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    #[serde(default = "defaults::weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "defaults::warmup")]
    pub warmup_steps: u64,
    /// Global gradient-norm clip (0: off).
    #[serde(default = "defaults::clip")]
    pub clip: f64,
    /// Fraction of each crossing activation kept (1 or absent: dense).
    #[serde(default)]
    pub activation_keep: Option<f32>,
    #[serde(default)]
    pub sparsity: Option<SparsityConfig>,
    #[serde(default)]
    pub regularize: Regularizers,
    /// Train the dense and post-hoc baselines too (the report's comparison).
    #[serde(default = "defaults::yes")]
    pub baselines: bool,
    /// Where the sparse model starts: `scratch` (the seed's initialisation) or `dense`
    /// (the trained dense baseline's weights: dense, then prune, then fine-tune).
    #[serde(default)]
    pub init: Init,
    /// Distillation from the dense baseline (the teacher) beside the labels.
    #[serde(default)]
    pub distill: Option<DistillConfig>,
    /// Training images held out and scored instead of the test split (0: train on all
    /// 1,437, score on the 360 test images). For choosing a configuration without looking
    /// at the test images; every accuracy of the report is then a validation accuracy.
    #[serde(default)]
    pub validation: usize,
}

/// Where the sparse model's weights start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    #[default]
    Scratch,
    Dense,
}

/// The `[distill]` table: loss = (1 - weight) * cross-entropy with the labels + weight *
/// T^2 * KL(teacher || student), both softmaxes at temperature T (Hinton et al.'s
/// knowledge distillation; the T^2 keeps the soft term's gradients on the hard term's
/// scale; KL rather than the soft cross-entropy so the logged loss has no constant).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Share of the loss from the teacher, in (0, 1].
    pub weight: f64,
    /// Softmax temperature T, in (0, 100].
    #[serde(default = "defaults::temperature")]
    pub temperature: f64,
}

/// The `[sparsity]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparsityConfig {
    pub target: f32,
    #[serde(default = "defaults::pattern")]
    pub pattern: String,
    #[serde(default)]
    pub criterion: TrainCriterion,
    #[serde(default = "defaults::params")]
    pub params: Vec<String>,
    /// Default: gradual from 20% to 70% of the steps, every 10 steps.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// `zero` (default), `dictionary` (dropped weights rebuilt from per-column entries
    /// trained with the model) or `mlp` (rebuilt by `re`'s MLP predictor from their row's
    /// kept weights, trained with the model).
    #[serde(default)]
    pub rebuild: Option<String>,
    /// The reconstruction loss's weight for a trained rebuild.
    #[serde(default = "defaults::rebuild_weight")]
    pub rebuild_weight: f64,
    /// Hidden units of the `mlp` rebuild (1..=256).
    #[serde(default = "defaults::rebuild_hidden")]
    pub rebuild_hidden: usize,
    /// `layer` (default: each parameter reaches the target) or `global` (the parameters'
    /// weights ranked together; unstructured only).
    #[serde(default)]
    pub scope: crate::Scope,
}

mod defaults {
    pub fn epochs() -> u64 {
        30
    }
    pub fn batch() -> usize {
        64
    }
    pub fn lr() -> f64 {
        3e-3
    }
    pub fn weight_decay() -> f64 {
        1e-4
    }
    pub fn warmup() -> u64 {
        20
    }
    pub fn clip() -> f64 {
        5.0
    }
    pub fn yes() -> bool {
        true
    }
    pub fn pattern() -> String {
        "unstructured".into()
    }
    pub fn rebuild_weight() -> f64 {
        1.0
    }
    pub fn rebuild_hidden() -> usize {
        16
    }
    pub fn temperature() -> f64 {
        4.0
    }
    pub fn params() -> Vec<String> {
        ["conv2.weight", "conv3.weight", "fc.weight"]
            .map(String::from)
            .to_vec()
    }
}

impl TrainConfig {
    pub fn from_toml(text: &str) -> Result<Self> {
        let c: TrainConfig = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    /// Every option range-checked (done by [`TrainConfig::from_toml`]; again after an override).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 || self.epochs > 10_000 {
            return bad(format!("epochs {} is outside 1..=10000", self.epochs));
        }
        if self.validation > crate::digits::TRAIN / 2 {
            return bad(format!(
                "validation {} is outside 0..={} (half the training images)",
                self.validation,
                crate::digits::TRAIN / 2
            ));
        }
        if self.batch == 0 || self.batch > self.train_images() {
            return bad(format!(
                "batch {} is outside 1..={}",
                self.batch,
                self.train_images()
            ));
        }
        if let Some(d) = &self.distill {
            if !(d.weight > 0.0 && d.weight <= 1.0) {
                return bad(format!("distill weight {} is outside (0, 1]", d.weight));
            }
            if !(d.temperature > 0.0 && d.temperature <= 100.0) {
                return bad(format!(
                    "distill temperature {} is outside (0, 100]",
                    d.temperature
                ));
            }
        }
        if !(self.lr > 0.0 && self.lr < 10.0) {
            return bad(format!("lr {} is outside (0, 10)", self.lr));
        }
        if !((0.0..1.0).contains(&self.weight_decay) && self.clip >= 0.0 && self.clip.is_finite()) {
            return bad("weight_decay must be in [0, 1) and clip finite and >= 0".into());
        }
        if let Some(k) = self.activation_keep {
            if !(k > 0.0 && k <= 1.0) {
                return bad(format!("activation_keep {k} is outside (0, 1]"));
            }
        }
        let r = &self.regularize;
        if !(r.l1 >= 0.0 && r.l1.is_finite() && r.group_lasso >= 0.0 && r.group_lasso.is_finite()) {
            return bad("regularizer weights must be finite and >= 0".into());
        }
        if let Some(s) = &self.sparsity {
            if !(0.0..1.0).contains(&s.target) {
                return bad(format!("sparsity target {} is outside [0, 1)", s.target));
            }
            let pattern = s.pattern.parse::<Pattern>().map_err(TrainError::Config)?;
            s.scope.check(pattern).map_err(TrainError::Config)?;
            s.rebuild_mode()?;
            if !(s.rebuild_weight >= 0.0 && s.rebuild_weight.is_finite()) {
                return bad(format!(
                    "rebuild_weight {} must be finite and >= 0",
                    s.rebuild_weight
                ));
            }
            self.schedule(s)
                .check(self.steps())
                .map_err(TrainError::Config)?;
        }
        Ok(())
    }

    /// Optimiser steps in the run.
    pub fn steps(&self) -> u64 {
        self.epochs * self.train_images().div_ceil(self.batch) as u64
    }

    /// Images trained on: the training split less the validation images.
    fn train_images(&self) -> usize {
        crate::digits::TRAIN - self.validation.min(crate::digits::TRAIN / 2)
    }

    /// Whether the run needs the dense baseline (for the report, or as teacher or start).
    fn needs_dense(&self) -> bool {
        self.baselines || self.distill.is_some() || self.init == Init::Dense
    }

    fn schedule(&self, s: &SparsityConfig) -> Schedule {
        s.schedule.clone().unwrap_or_else(|| {
            let n = self.steps();
            Schedule::Gradual {
                start: n / 5,
                end: n * 7 / 10,
                every: 10,
                initial: 0.0,
            }
        })
    }

    /// The digits, with the validation images held out as the scored split when asked.
    fn load_data(&self) -> Result<Digits> {
        let data = Digits::load(&self.data_path())?;
        match self.validation {
            0 => Ok(data),
            n => data.hold_out(n),
        }
    }

    /// The digits file this config reads.
    pub fn data_path(&self) -> PathBuf {
        if let Some(p) = &self.data {
            return p.clone();
        }
        let dir = std::env::var_os("SPARSEWIRE_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared/data"));
        dir.join("sklearn_digits.safetensors")
    }
}

impl SparsityConfig {
    fn rebuild_mode(&self) -> Result<crate::TrainRebuild> {
        match self.rebuild.as_deref() {
            None | Some("zero") => Ok(crate::TrainRebuild::Zero),
            Some("dictionary") => Ok(crate::TrainRebuild::Dictionary {
                weight: self.rebuild_weight,
            }),
            Some("mlp") => {
                let max = sparsewire_re::mlp::MLP_MAX_HIDDEN as usize;
                if !(1..=max).contains(&self.rebuild_hidden) {
                    return Err(TrainError::Config(format!(
                        "rebuild_hidden {} is outside 1..={max}",
                        self.rebuild_hidden
                    )));
                }
                Ok(crate::TrainRebuild::Mlp {
                    weight: self.rebuild_weight,
                    hidden: self.rebuild_hidden,
                })
            }
            Some(other) => Err(TrainError::Config(format!(
                "rebuild {other:?}: expected \"zero\", \"dictionary\" or \"mlp\""
            ))),
        }
    }
}

/// Where a run is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// `dense`, `sparse`.
    pub phase: &'a str,
    pub step: u64,
    pub steps: u64,
    pub loss: f32,
    pub sparsity: f64,
    /// Accuracy on this epoch's training batches so far (the test set is only scored at
    /// the end).
    pub train_accuracy: f64,
}

/// What a run measured (`sparsewire train --json`; read back by `cargo xtask train`).
#[derive(Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub test_accuracy: f64,
    pub dense_test_accuracy: Option<f64>,
    /// The dense model pruned by magnitude at the same sparsity, pattern and activation
    /// keep, not retrained.
    pub posthoc_test_accuracy: Option<f64>,
    pub weight_sparsity: f64,
    pub activation_keep: f32,
    /// Weights (a real `.swire`, amortised over 64 images) plus crossing activations.
    pub bytes_per_image: f64,
    /// The same with the dense f32 weights and activations.
    pub dense_bytes_per_image: f64,
    /// The trained model's `.swire` size.
    pub weight_bytes: u64,
    /// With a trained rebuild: how it compares with `re`'s post-hoc fit on the same masks
    /// and weights.
    #[serde(default)]
    pub rebuild: Option<RebuildReport>,
    /// Mean training loss of each epoch.
    pub loss_curve: Vec<f32>,
    pub steps: u64,
    pub seed: u64,
    pub seconds: f64,
    /// Training images held out and scored instead of the test split (0: every accuracy
    /// above is on the test images).
    #[serde(default)]
    pub validation: usize,
    /// The trained model as a `.swire` stream (not in the JSON).
    #[serde(skip)]
    pub model: Vec<u8>,
    /// The gradient criteria, as `compress --gradients` reads them (not in the JSON).
    #[serde(skip)]
    pub gradients: Option<sparsewire_formats::TensorFile>,
}

/// The trained rebuild against the post-hoc fit, on the same final masks and kept weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildReport {
    /// `dictionary` or `mlp`.
    #[serde(default)]
    pub method: String,
    pub trained_test_accuracy: f64,
    pub posthoc_fit_test_accuracy: f64,
    pub zero_fill_test_accuracy: f64,
    /// `||rebuilt - dropped|| / ||dropped||` over the dropped weights (their values when
    /// dropped).
    pub trained_rel_error: f64,
    pub posthoc_fit_rel_error: f64,
    /// The same two errors for each rebuilt parameter.
    #[serde(default)]
    pub layers: Vec<LayerRebuild>,
}

/// One parameter's rebuilt error, trained and post-hoc.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRebuild {
    pub name: String,
    pub trained_rel_error: f64,
    pub posthoc_fit_rel_error: f64,
}

impl std::fmt::Debug for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainReport")
            .field("test_accuracy", &self.test_accuracy)
            .field("dense_test_accuracy", &self.dense_test_accuracy)
            .field("posthoc_test_accuracy", &self.posthoc_test_accuracy)
            .field("weight_sparsity", &self.weight_sparsity)
            .field("activation_keep", &self.activation_keep)
            .field("bytes_per_image", &self.bytes_per_image)
            .field("weight_bytes", &self.weight_bytes)
            .field("steps", &self.steps)
            .field(
                "model",
                &format_args!("<{} bytes of .swire>", self.model.len()),
            )
            .finish_non_exhaustive()
    }
}

struct Trained {
    cnn: Cnn,
    sp: Sparsifier,
    loss_curve: Vec<f32>,
}

/// Bytes per weight of each parameter coded alone, relative to the model's mean: the
/// byte-aware regularizer's weights.
fn byte_weights(cnn: &Cnn) -> Result<Vec<f64>> {
    let mut per = Vec::new();
    for (name, v) in &cnn.params {
        let w: Vec<f32> = v.as_tensor().flatten_all()?.to_vec1()?;
        let shape = v.dims().iter().map(|&d| d as u64).collect();
        let file = sparsewire_formats::TensorFile {
            tensors: vec![sparsewire_formats::Tensor::from_f32(
                name.clone(),
                shape,
                &w,
            )],
            metadata: vec![],
        };
        let bytes = sparsewire_stream::encode(&file, &Default::default())?.len();
        per.push(bytes as f64 / w.len() as f64);
    }
    let mean = per.iter().sum::<f64>() / per.len() as f64;
    Ok(per.iter().map(|b| b / mean).collect())
}

/// Trains one model. `dense` is the trained dense baseline: the start with
/// [`Init::Dense`] and the teacher with `[distill]` (unused by the dense run itself).
fn train_one(
    cfg: &TrainConfig,
    data: &Digits,
    groups: Vec<Group>,
    keep: Option<f32>,
    dense: Option<&Cnn>,
    phase: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Trained> {
    let cnn = match (cfg.init, dense) {
        (Init::Dense, Some(d)) => d.deep_copy()?,
        (Init::Dense, None) => {
            return Err(TrainError::Config(
                "init = \"dense\" needs the dense baseline".into(),
            ))
        }
        (Init::Scratch, _) => Cnn::new(cfg.seed)?,
    };
    let teacher = match (&cfg.distill, dense) {
        (Some(d), Some(t)) => Some((*d, t)),
        (Some(_), None) => {
            return Err(TrainError::Config(
                "[distill] needs the dense baseline as teacher".into(),
            ))
        }
        (None, _) => None,
    };
    let unmasked = Sparsifier::new(vec![])?;
    let mut sp = Sparsifier::new(groups)?;
    sp.prepare(&cnn.params)?;
    let scales = byte_weights(&cnn)?;
    let mut vars: Vec<_> = cnn.params.iter().map(|p| p.1.clone()).collect();
    vars.extend(sp.rebuild_vars());
    let mut opt = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let steps = cfg.steps();
    let mut rng = Rng::new(cfg.seed.wrapping_add(1));
    let mut order: Vec<u32> = (0..data.train_len()? as u32).collect();
    let mut t = 0u64;
    let mut last = None;
    let mut loss_curve = Vec::new();
    for _epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut count) = (0f64, 0usize);
        let (mut right, mut seen) = (0usize, 0usize);
        for batch in order.chunks(cfg.batch) {
            let lr = if t < cfg.warmup_steps {
                cfg.lr * (t + 1) as f64 / cfg.warmup_steps as f64
            } else {
                let p = (t - cfg.warmup_steps) as f64 / (steps - cfg.warmup_steps).max(1) as f64;
                cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            };
            opt.set_learning_rate(lr);
            let idx = Tensor::new(batch, &Device::Cpu)?;
            let x = data.train_x.index_select(&idx, 0)?;
            let y = data.train_y.index_select(&idx, 0)?;
            let (logits, _) = cnn.forward(&x, &sp, keep)?;
            right += logits
                .argmax(1)?
                .eq(&y)?
                .to_dtype(candle_core::DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()? as usize;
            seen += batch.len();
            let mut loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            if let Some((d, t)) = &teacher {
                let (soft, _) = t.forward(&x, &unmasked, None)?;
                let log_p = candle_nn::ops::log_softmax(&(soft.detach() / d.temperature)?, 1)?;
                let log_q = candle_nn::ops::log_softmax(&(&logits / d.temperature)?, 1)?;
                let kl = (log_p.exp()? * (log_p - log_q)?)?.sum(1)?.mean(0)?;
                let t2 = d.temperature * d.temperature;
                loss = ((loss * (1.0 - d.weight))? + (kl * (d.weight * t2))?)?;
            }
            for ((name, v), s) in cnn.params.iter().zip(&scales) {
                if name.ends_with("weight") {
                    if let Some(p) = cfg.regularize.penalty(v.as_tensor(), *s)? {
                        loss = (loss + p)?;
                    }
                }
            }
            if let Some(r) = sp.reconstruction_loss()? {
                loss = (loss + r)?;
            }
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(TrainError::NonFiniteLoss { step: t, last });
            }
            last = Some(value);
            let mut grads = loss.backward()?;
            sp.observe(&grads)?;
            if cfg.clip > 0.0 {
                let mut sq = 0f64;
                for v in &vars {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                    }
                }
                let norm = sq.sqrt();
                if norm > cfg.clip {
                    for v in &vars {
                        if let Some(g) = grads.get(v.as_tensor()) {
                            let g = (g * (cfg.clip / norm))?;
                            grads.insert(v.as_tensor(), g);
                        }
                    }
                }
            }
            opt.step(&grads)?;
            sp.apply()?;
            sp.step(t)?;
            sum += value as f64;
            count += 1;
            progress(&Progress {
                phase,
                step: t + 1,
                steps,
                loss: value,
                sparsity: sp.sparsity(),
                train_accuracy: right as f64 / seen.max(1) as f64,
            });
            t += 1;
        }
        loss_curve.push((sum / count as f64) as f32);
    }
    Ok(Trained {
        cnn,
        sp,
        loss_curve,
    })
}

/// The dense reference of a run: trained with the run's seed and optimiser settings, no
/// sparsity, no regularizer. Runs that share those (a grid) share it: see [`train_cached`].
/// Cloning shares the weights (they are only read).
#[derive(Clone)]
pub struct DenseBaseline {
    key: String,
    cnn: Cnn,
    accuracy: f64,
}

impl TrainConfig {
    /// What the dense baseline depends on.
    fn dense_key(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {:?}",
            self.validation,
            self.seed,
            self.epochs,
            self.batch,
            self.lr,
            self.weight_decay,
            self.warmup_steps,
            self.clip,
            self.data_path()
        )
    }
}

/// Trains the dense baseline of `cfg` (its seed, data and optimiser settings; no sparsity, no
/// regularizer), to be shared by the runs of a grid through [`train_cached`].
pub fn dense_baseline(
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<DenseBaseline> {
    cfg.check()?;
    dense_baseline_on(cfg, &cfg.load_data()?, progress)
}

fn dense_baseline_on(
    cfg: &TrainConfig,
    data: &Digits,
    progress: &mut dyn FnMut(&Progress),
) -> Result<DenseBaseline> {
    let plain = TrainConfig {
        regularize: Default::default(),
        init: Init::Scratch,
        distill: None,
        ..cfg.clone()
    };
    let dense = train_one(&plain, data, vec![], None, None, "dense", progress)?;
    let accuracy = dense
        .cnn
        .accuracy(&data.test_x, &data.test_y, &dense.sp, None)?
        .0;
    Ok(DenseBaseline {
        key: cfg.dense_key(),
        cnn: dense.cnn,
        accuracy,
    })
}

/// Runs `cfg` (see the module docs).
pub fn train(cfg: &TrainConfig, progress: &mut dyn FnMut(&Progress)) -> Result<TrainReport> {
    train_cached(cfg, &mut None, progress)
}

/// [`train`], reusing the dense baseline in `cache` when it was trained with the same seed,
/// data and optimiser settings (and leaving this run's there).
pub fn train_cached(
    cfg: &TrainConfig,
    cache: &mut Option<DenseBaseline>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainReport> {
    cfg.check()?;
    let t0 = Instant::now();
    let data = cfg.load_data()?;
    let keep = cfg.activation_keep.filter(|&k| k < 1.0);
    let groups = match &cfg.sparsity {
        Some(s) => vec![Group {
            params: s.params.clone(),
            criterion: s.criterion,
            pattern: s.pattern.parse().map_err(TrainError::Config)?,
            target: s.target,
            schedule: cfg.schedule(s),
            rebuild: s.rebuild_mode()?,
            scope: s.scope,
        }],
        None => vec![],
    };
    let (mut dense_acc, mut posthoc_acc) = (None, None);
    if cfg.needs_dense() && cache.as_ref().is_none_or(|c| c.key != cfg.dense_key()) {
        *cache = Some(dense_baseline_on(cfg, &data, progress)?);
    }
    let dense = cache.as_ref().filter(|_| cfg.needs_dense());
    if let Some(dense) = dense.filter(|_| cfg.baselines) {
        dense_acc = Some(dense.accuracy);
        // Post hoc: a copy of the dense weights pruned once by magnitude at the same target.
        let copy = dense.cnn.deep_copy()?;
        let posthoc_groups: Vec<Group> = groups
            .iter()
            .map(|g| Group {
                criterion: TrainCriterion::Magnitude,
                schedule: Schedule::OneShot { at: 0 },
                ..g.clone()
            })
            .collect();
        let mut sp = Sparsifier::new(posthoc_groups)?;
        sp.prepare(&copy.params)?;
        sp.step(0)?;
        posthoc_acc = Some(copy.accuracy(&data.test_x, &data.test_y, &sp, keep)?.0);
    }
    let trained = train_one(
        cfg,
        &data,
        groups,
        keep,
        dense.map(|d| &d.cnn),
        "sparse",
        progress,
    )?;
    let (acc, link) = trained
        .cnn
        .accuracy(&data.test_x, &data.test_y, &trained.sp, keep)?;
    let rebuild = match trained.sp.rebuild_error()? {
        None => None,
        Some(trained_rel_error) => {
            let sp = &trained.sp;
            let eval = || -> Result<f64> {
                Ok(trained
                    .cnn
                    .accuracy(&data.test_x, &data.test_y, sp, keep)?
                    .0)
            };
            let trained_layers = sp.rebuild_errors()?;
            let old = sp.refit_rebuilds(false)?;
            let posthoc_fit_test_accuracy = eval()?;
            let posthoc_fit_rel_error = sp.rebuild_error()?.unwrap_or(0.0);
            let posthoc_layers = sp.rebuild_errors()?;
            sp.refit_rebuilds(true)?;
            let zero_fill_test_accuracy = eval()?;
            sp.restore_rebuilds(&old)?;
            Some(RebuildReport {
                method: match cfg
                    .sparsity
                    .as_ref()
                    .map(|s| s.rebuild_mode())
                    .transpose()?
                {
                    Some(crate::TrainRebuild::Mlp { .. }) => "mlp",
                    _ => "dictionary",
                }
                .into(),
                layers: trained_layers
                    .into_iter()
                    .zip(posthoc_layers)
                    .map(|((name, t), (_, p))| LayerRebuild {
                        name,
                        trained_rel_error: t,
                        posthoc_fit_rel_error: p,
                    })
                    .collect(),
                trained_test_accuracy: acc,
                posthoc_fit_test_accuracy,
                zero_fill_test_accuracy,
                trained_rel_error,
                posthoc_fit_rel_error,
            })
        }
    };
    let mut meta = vec![
        (
            "sparsewire.train.test_accuracy".to_string(),
            format!("{acc:.4}"),
        ),
        (
            "sparsewire.train.weight_sparsity".to_string(),
            format!("{:.4}", trained.sp.sparsity()),
        ),
        ("sparsewire.train.seed".to_string(), cfg.seed.to_string()),
    ];
    if let Some(d) = dense_acc {
        meta.push((
            "sparsewire.train.dense_test_accuracy".into(),
            format!("{d:.4}"),
        ));
    }
    if let Some(p) = posthoc_acc {
        meta.push((
            "sparsewire.train.posthoc_test_accuracy".into(),
            format!("{p:.4}"),
        ));
    }
    let model = trained.sp.squash(
        &trained.cnn.params,
        &meta,
        &sparsewire_stream::EncodeOptions::default(),
    )?;
    let n_test = data.test_x.dim(0)? as f64;
    let dense_weights: usize = trained
        .cnn
        .params
        .iter()
        .map(|p| p.1.elem_count() * 4)
        .sum();
    let per_image = |weights: f64, link: &LinkBytes, dense: bool| {
        weights / AMORTISE as f64 + if dense { link.dense } else { link.sent } as f64 / n_test
    };
    Ok(TrainReport {
        test_accuracy: acc,
        dense_test_accuracy: dense_acc,
        posthoc_test_accuracy: posthoc_acc,
        weight_sparsity: trained.sp.sparsity(),
        activation_keep: keep.unwrap_or(1.0),
        bytes_per_image: per_image(model.len() as f64, &link, false),
        dense_bytes_per_image: per_image(dense_weights as f64, &link, true),
        weight_bytes: model.len() as u64,
        rebuild,
        loss_curve: trained.loss_curve,
        steps: cfg.steps(),
        seed: cfg.seed,
        seconds: t0.elapsed().as_secs_f64(),
        validation: cfg.validation,
        gradients: Some(trained.sp.gradients()?).filter(|g| !g.tensors.is_empty()),
        model,
    })
}
