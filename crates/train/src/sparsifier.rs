//! Masks on parameters, updated on a schedule, folded into a `.swire` at the end.
//!
//! A parameter is viewed 2-D as `[out, rest]` (a conv filter bank `[out, in, kh, kw]` as
//! `[out, in*kh*kw]`, as everywhere in sparsewire), so patterns mean the same here as in
//! `sparsewire compress`: N:M groups run along a filter's inputs, channels are rows.

use crate::importance::Accumulator;
use crate::{Result, Schedule, TrainError};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::Deserialize;
use sparsewire_formats::{Tensor as FileTensor, TensorFile};
use sparsewire_metadata::{Criterion, Dtype, Pattern, Reconstruction, Sparsification};
use sparsewire_re::mlp::{mlp_inputs, row_scale, MLP_INPUTS};
use sparsewire_sparse::{Mask, SparseTensor, SparseTile};
use std::collections::BTreeMap;

/// `sqrt(num / den)`, 0 when there is nothing to rebuild.
fn relative(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        (num / den).sqrt()
    }
}

/// How a group's weights are scored when its masks are updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrainCriterion {
    /// `|w|`.
    #[default]
    Magnitude,
    /// The moving average of `|g w|` over steps.
    Taylor,
    /// `-sum g w` over steps.
    Movement,
}

impl TrainCriterion {
    /// The criterion a stream records for masks chosen this way.
    pub fn recorded(self) -> Criterion {
        match self {
            TrainCriterion::Magnitude => Criterion::Magnitude,
            TrainCriterion::Taylor => Criterion::Taylor,
            TrainCriterion::Movement => Criterion::Movement,
        }
    }
}

/// How a group's dropped weights are rebuilt on the accelerator, and so in the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TrainRebuild {
    /// Zero-fill.
    #[default]
    Zero,
    /// `re`'s dictionary (one value per column of the 2-D view fills that column's dropped
    /// weights), trained with the model: the task loss reaches the entries through the
    /// forward pass, and `weight` times the mean squared distance between the entries and
    /// the dropped weights' values when they were dropped (the reconstruction loss, see
    /// [`Sparsifier::reconstruction_loss`]) pulls them toward the post-hoc fit.
    Dictionary { weight: f64 },
    /// `re`'s MLP predictor (SPEC §6.2: `hidden` ReLU units over the row context of each
    /// dropped weight, its kept neighbours divided by the row's scale), trained with the
    /// model the same way: the task loss reaches its parameters through the forward pass,
    /// `weight` times the mean squared error of its predictions against the dropped
    /// weights' values when they were dropped is the reconstruction loss. Its inputs are
    /// recomputed from the current kept weights at every forward pass, as constants of the
    /// graph (the kept weights get their gradient through the forward pass itself, not
    /// through the predictor's inputs). Every mask change restarts it from `re`'s post-hoc
    /// fit (`sparsewire_re::fit_mlp`, seed 0).
    Mlp { weight: f64, hidden: usize },
}

impl TrainRebuild {
    /// The reconstruction loss's weight (0 for zero-fill).
    fn weight(self) -> f64 {
        match self {
            TrainRebuild::Zero => 0.0,
            TrainRebuild::Dictionary { weight } | TrainRebuild::Mlp { weight, .. } => weight,
        }
    }
}

/// One parameter group: which parameters, how they are scored, and where they end.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub params: Vec<String>,
    pub criterion: TrainCriterion,
    pub pattern: Pattern,
    /// Final fraction of weights dropped, in [0, 1) (an N:M pattern fixes it).
    pub target: f32,
    pub schedule: Schedule,
    pub rebuild: TrainRebuild,
    /// Whether the target applies to each parameter or to the group as a whole.
    pub scope: Scope,
}

/// Over what a group's target sparsity is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every parameter of the group drops the target fraction of its own weights.
    #[default]
    Layer,
    /// The group's weights are ranked together and the target fraction of all of them is
    /// dropped, so a layer whose weights score high keeps more (global magnitude pruning:
    /// fewer weights go from small layers that every output depends on). Unstructured
    /// only: the other patterns fix their units per parameter.
    Global,
}

impl Scope {
    /// Refuses a scope the pattern cannot use (global with anything but unstructured).
    pub fn check(self, pattern: Pattern) -> std::result::Result<(), String> {
        if self == Scope::Global && pattern != Pattern::Unstructured {
            return Err(format!(
                "scope \"global\" ranks a group's weights together, which only the \
                 unstructured pattern can use; the group's pattern is {pattern}"
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Masked {
    var: Var,
    group: usize,
    rows: usize,
    cols: usize,
    mask: Mask,
    /// The mask as a 0/1 tensor of the parameter's shape.
    factor: Tensor,
    score: Accumulator,
    /// With a trained rebuild: its parameters and what the dropped weights were.
    rebuild: Option<Trained>,
}

/// A trained rebuild's parameters.
#[derive(Debug)]
enum Rebuilder {
    /// One entry per column of the 2-D view (`[cols]`).
    Dictionary(Var),
    /// `re`'s MLP, in its stream order: `W1 [hidden, 8]`, `b1 [1, hidden]`,
    /// `w2 [hidden, 1]`, `b2 [1, 1]`.
    Mlp { hidden: usize, vars: [Var; 4] },
}

/// A parameter's trained rebuild.
#[derive(Debug)]
struct Trained {
    kind: Rebuilder,
    /// What the dropped weights were when they were dropped (the parameter's shape; a
    /// kept position holds its value at the last mask change, which nothing reads).
    reference: Tensor,
}

impl Trained {
    fn new(rebuild: TrainRebuild, var: &Var, cols: usize) -> candle_core::Result<Option<Self>> {
        let (dtype, dev) = (var.dtype(), var.device());
        let kind = match rebuild {
            TrainRebuild::Zero => return Ok(None),
            TrainRebuild::Dictionary { .. } => Rebuilder::Dictionary(Var::zeros(cols, dtype, dev)?),
            TrainRebuild::Mlp { hidden, .. } => Rebuilder::Mlp {
                hidden,
                vars: [
                    Var::zeros((hidden, MLP_INPUTS), dtype, dev)?,
                    Var::zeros((1, hidden), dtype, dev)?,
                    Var::zeros((hidden, 1), dtype, dev)?,
                    Var::zeros((1, 1), dtype, dev)?,
                ],
            },
        };
        Ok(Some(Trained {
            kind,
            reference: var.as_tensor().copy()?.detach(),
        }))
    }

    fn vars(&self) -> Vec<Var> {
        match &self.kind {
            Rebuilder::Dictionary(d) => vec![d.clone()],
            Rebuilder::Mlp { vars, .. } => vars.to_vec(),
        }
    }

    /// Every parameter, flattened in the stream's order.
    fn params(&self) -> candle_core::Result<Vec<f32>> {
        let mut p = Vec::new();
        for v in self.vars() {
            p.extend(f32s(v.as_tensor())?);
        }
        Ok(p)
    }

    /// Sets every parameter from `p` (in [`Trained::params`] order).
    fn set_params(&self, p: &[f32]) -> candle_core::Result<()> {
        let mut at = 0;
        for v in self.vars() {
            let n = v.elem_count();
            let t = Tensor::from_slice(&p[at..at + n], v.dims(), v.device())?;
            v.set(&t.to_dtype(v.dtype())?)?;
            at += n;
        }
        Ok(())
    }

    /// What the stream records for `re` to run.
    fn reconstruction(&self, cols: usize) -> candle_core::Result<Reconstruction> {
        Ok(match &self.kind {
            Rebuilder::Dictionary(d) => Reconstruction::Dictionary {
                entry_len: cols as u32,
                entries: f32s(d.as_tensor())?,
            },
            Rebuilder::Mlp { hidden, .. } => Reconstruction::Mlp {
                hidden: *hidden as u32,
                params: self.params()?,
            },
        })
    }
}

impl Masked {
    /// The scores a mask update ranks: the criterion's (`|w|` for magnitude), with every
    /// weight already dropped at -inf so that it stays dropped (its score would be stale).
    fn live_scores(&self, criterion: TrainCriterion) -> candle_core::Result<Vec<f32>> {
        let scores: Vec<f32> = match (&self.score.score, criterion) {
            (Some(sc), TrainCriterion::Taylor | TrainCriterion::Movement) => f32s(sc)?,
            _ => f32s(self.var.as_tensor())?
                .iter()
                .map(|v| v.abs())
                .collect(),
        };
        Ok(scores
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                if self.mask.is_kept(i) {
                    s
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect())
    }

    /// The rebuilt values at the dropped positions, zero elsewhere.
    fn fill(&self, r: &Trained) -> candle_core::Result<Tensor> {
        let full = match &r.kind {
            Rebuilder::Dictionary(d) => d
                .as_tensor()
                .reshape((1, self.cols))?
                .broadcast_as((self.rows, self.cols))?,
            Rebuilder::Mlp {
                vars: [w1, b1, w2, b2],
                ..
            } => {
                let (x, s) = self.mlp_inputs()?;
                x.matmul(&w1.as_tensor().t()?)?
                    .broadcast_add(b1.as_tensor())?
                    .relu()?
                    .matmul(w2.as_tensor())?
                    .broadcast_add(b2.as_tensor())?
                    .mul(&s)?
            }
        };
        full.reshape(self.var.dims())?
            .mul(&self.factor.affine(-1.0, 1.0)?)
    }

    /// What `re`'s MLP sees of each dropped weight, from the current kept weights: its
    /// inputs (`[rows * cols, 8]`, `sparsewire_re::mlp::mlp_inputs`) and its row's scale
    /// (`[rows * cols, 1]`); zeros for kept weights and for rows with nothing kept (whose
    /// prediction `re` makes 0).
    fn mlp_inputs(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let w = f32s(self.var.as_tensor())?;
        let n = self.rows * self.cols;
        let (mut x, mut s) = (vec![0f32; n * MLP_INPUTS], vec![0f32; n]);
        let mut keep = vec![false; self.cols];
        for (r, row) in w.chunks_exact(self.cols).enumerate() {
            let base = r * self.cols;
            for (j, k) in keep.iter_mut().enumerate() {
                *k = self.mask.is_kept(base + j);
            }
            let scale = row_scale(row, &keep);
            if scale.is_nan() || scale <= 0.0 {
                continue;
            }
            for j in (0..self.cols).filter(|&j| !keep[j]) {
                let i = base + j;
                for (o, f) in x[i * MLP_INPUTS..(i + 1) * MLP_INPUTS]
                    .iter_mut()
                    .zip(mlp_inputs(row, &keep, j, scale))
                {
                    *o = f as f32;
                }
                s[i] = scale as f32;
            }
        }
        let (dev, dtype) = (self.var.device(), self.var.dtype());
        Ok((
            Tensor::from_vec(x, (n, MLP_INPUTS), dev)?.to_dtype(dtype)?,
            Tensor::from_vec(s, (n, 1), dev)?.to_dtype(dtype)?,
        ))
    }

    /// `re`'s post-hoc fit of `r` on the current mask and weights: the dictionary's column
    /// means of the dropped values, or the MLP's random first layer and ridge output layer
    /// (`sparsewire_re::fit_mlp`, seed 0) with the kept weights as the receiver sees them.
    fn posthoc_fit(&self, r: &Trained) -> Result<Vec<f32>> {
        let inv = self.factor.affine(-1.0, 1.0)?;
        let original = f32s(&(r.reference.mul(&inv)? + self.var.as_tensor().mul(&self.factor)?)?)?;
        let mask = self.mask.as_ref();
        match &r.kind {
            Rebuilder::Dictionary(_) => {
                match sparsewire_re::fit_dictionary(&original, mask, self.cols) {
                    Reconstruction::Dictionary { entries, .. } => Ok(entries),
                    _ => unreachable!("fit_dictionary fits a dictionary"),
                }
            }
            Rebuilder::Mlp { hidden, .. } => {
                match sparsewire_re::fit_mlp(&original, mask, self.cols, *hidden, 0) {
                    Reconstruction::Mlp { params, .. } => Ok(params),
                    _ => unreachable!("fit_mlp fits an MLP"),
                }
            }
        }
    }

    /// `(||rebuilt - reference||², ||reference||²)` over the dropped weights.
    fn rebuild_error(&self, r: &Trained) -> Result<(f64, f64)> {
        let sum = |t: Tensor| -> candle_core::Result<f64> {
            t.sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()
        };
        let dropped = r.reference.mul(&self.factor.affine(-1.0, 1.0)?)?;
        Ok((sum((self.fill(r)? - &dropped)?)?, sum(dropped)?))
    }
}

/// Masks for the parameters of a model (see the crate docs).
#[derive(Debug)]
pub struct Sparsifier {
    groups: Vec<Group>,
    masked: BTreeMap<String, Masked>,
    /// The other weight matrices, scored by Taylor too when a group uses gradients, so
    /// that [`Sparsifier::gradients`] covers every tensor `compress` would prune.
    unmasked: BTreeMap<String, (Var, Accumulator)>,
}

/// A tensor's values as f32 (parameters of any float dtype; the stream stores F32).
fn f32s(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()
}

/// A parameter's `[out, rest]` view.
fn view(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (1, *n),
        [r, rest @ ..] => (*r, rest.iter().product()),
    }
}

impl Sparsifier {
    pub fn new(groups: Vec<Group>) -> Result<Self> {
        for g in &groups {
            if !(0.0..1.0).contains(&g.target) {
                return Err(TrainError::Config(format!(
                    "target sparsity {} is outside [0, 1)",
                    g.target
                )));
            }
            g.scope.check(g.pattern).map_err(TrainError::Config)?;
        }
        Ok(Sparsifier {
            groups,
            masked: BTreeMap::new(),
            unmasked: BTreeMap::new(),
        })
    }

    /// Attaches an all-ones mask to every parameter a group names; refuses names the model
    /// does not have and patterns a parameter's shape cannot hold.
    pub fn prepare(&mut self, params: &[(String, Var)]) -> Result<()> {
        for (gi, g) in self.groups.iter().enumerate() {
            for name in &g.params {
                let Some((_, var)) = params.iter().find(|(n, _)| n == name) else {
                    return Err(TrainError::NoSuchParameter {
                        name: name.clone(),
                        have: params
                            .iter()
                            .map(|p| p.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                };
                let shape = var.dims().to_vec();
                let (rows, cols) = view(&shape);
                let bad = |why: String| TrainError::Pattern {
                    name: name.clone(),
                    shape: shape.clone(),
                    pattern: g.pattern,
                    why,
                };
                match g.pattern {
                    Pattern::NM { n, m } if n == 0 || n >= m || cols % m as usize != 0 => {
                        return Err(bad(format!(
                            "{cols} inputs per output are not a multiple of {m} (or {n}:{m} is not a pattern)"
                        )))
                    }
                    Pattern::Block { rows: br, cols: bc }
                        if br == 0 || bc == 0 || rows % br as usize != 0 || cols % bc as usize != 0 =>
                    {
                        return Err(bad(format!("[{rows}, {cols}] is not tiled by {br}x{bc} blocks")))
                    }
                    _ => {}
                }
                let factor = Tensor::ones(shape.as_slice(), var.dtype(), var.device())?;
                let rebuild = Trained::new(g.rebuild, var, cols)?;
                self.masked.insert(
                    name.clone(),
                    Masked {
                        var: var.clone(),
                        group: gi,
                        rows,
                        cols,
                        mask: Mask::dense(rows * cols),
                        factor,
                        score: Accumulator::new(0.9),
                        rebuild,
                    },
                );
            }
        }
        let scored = self
            .groups
            .iter()
            .any(|g| g.criterion != TrainCriterion::Magnitude);
        if scored {
            for (name, var) in params {
                if var.dims().len() >= 2 && !self.masked.contains_key(name) {
                    self.unmasked
                        .insert(name.clone(), (var.clone(), Accumulator::new(0.9)));
                }
            }
        }
        Ok(())
    }

    /// The weight the forward pass uses: `w * mask` for a masked parameter (the product
    /// makes the gradient of every dropped weight exactly zero), `w` otherwise.
    pub fn weight(&self, name: &str, var: &Var) -> Result<Tensor> {
        Ok(match self.masked.get(name) {
            Some(m) => {
                let kept = var.as_tensor().mul(&m.factor)?;
                match &m.rebuild {
                    Some(r) => (kept + m.fill(r)?)?,
                    None => kept,
                }
            }
            None => var.as_tensor().clone(),
        })
    }

    /// The trainable rebuild parameters (dictionary entries, MLP weights), for the
    /// optimiser.
    pub fn rebuild_vars(&self) -> Vec<Var> {
        self.masked
            .values()
            .filter_map(|m| m.rebuild.as_ref())
            .flat_map(Trained::vars)
            .collect()
    }

    /// The reconstruction loss: for each trained rebuild, its weight times the mean
    /// squared distance between the rebuilt values and what the dropped weights were.
    pub fn reconstruction_loss(&self) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for m in self.masked.values() {
            let Some(r) = &m.rebuild else {
                continue;
            };
            let weight = self.groups[m.group].rebuild.weight();
            let dropped = m.mask.len() - m.mask.kept();
            if dropped == 0 || weight == 0.0 {
                continue;
            }
            let dropped_ref = r.reference.mul(&m.factor.affine(-1.0, 1.0)?)?;
            let err = (m.fill(r)? - dropped_ref)?.sqr()?.sum_all()?;
            let term = (err * (weight / dropped as f64))?;
            total = Some(match total {
                None => term,
                Some(t) => (t + term)?,
            });
        }
        Ok(total)
    }

    /// Sets each trained rebuild to `re`'s post-hoc fit on the current masks and weights
    /// (see [`TrainRebuild`]), or to zeros (zero-fill) with `zero`; returns the parameters
    /// it replaced, for [`Sparsifier::restore_rebuilds`].
    pub fn refit_rebuilds(&self, zero: bool) -> Result<Vec<Vec<f32>>> {
        let mut old = Vec::new();
        for m in self.masked.values() {
            let Some(r) = &m.rebuild else {
                continue;
            };
            let params = r.params()?;
            let fit = if zero {
                vec![0.0; params.len()]
            } else {
                m.posthoc_fit(r)?
            };
            r.set_params(&fit)?;
            old.push(params);
        }
        Ok(old)
    }

    /// Puts back the parameters [`Sparsifier::refit_rebuilds`] replaced.
    pub fn restore_rebuilds(&self, old: &[Vec<f32>]) -> Result<()> {
        for (r, o) in self
            .masked
            .values()
            .filter_map(|m| m.rebuild.as_ref())
            .zip(old)
        {
            r.set_params(o)?;
        }
        Ok(())
    }

    /// Relative error of the rebuilt dropped weights against what they were,
    /// `||rebuilt - reference|| / ||reference||` over the dropped elements, for each
    /// parameter with a trained rebuild, by name (empty without one).
    pub fn rebuild_errors(&self) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for (name, m) in &self.masked {
            if let Some(r) = &m.rebuild {
                let (num, den) = m.rebuild_error(r)?;
                out.push((name.clone(), relative(num, den)));
            }
        }
        Ok(out)
    }

    /// [`Sparsifier::rebuild_errors`] over every such parameter together (`None` without
    /// one).
    pub fn rebuild_error(&self) -> Result<Option<f64>> {
        let (mut num, mut den) = (0f64, 0f64);
        let mut any = false;
        for m in self.masked.values() {
            if let Some(r) = &m.rebuild {
                let (n, d) = m.rebuild_error(r)?;
                (num, den, any) = (num + n, den + d, true);
            }
        }
        Ok(any.then(|| relative(num, den)))
    }

    /// Accumulates the gradient criteria from one step's gradients.
    pub fn observe(&mut self, grads: &GradStore) -> Result<()> {
        for m in self.masked.values_mut() {
            let Some(g) = grads.get(m.var.as_tensor()) else {
                continue;
            };
            match self.groups[m.group].criterion {
                TrainCriterion::Magnitude => {}
                TrainCriterion::Taylor => m.score.taylor(&m.var, g)?,
                TrainCriterion::Movement => m.score.movement(&m.var, g)?,
            }
        }
        for (var, acc) in self.unmasked.values_mut() {
            if let Some(g) = grads.get(var.as_tensor()) {
                acc.taylor(var, g)?;
            }
        }
        Ok(())
    }

    /// Updates the masks whose schedule fires after step `t`; returns `(name, sparsity)`
    /// of each mask that changed.
    pub fn step(&mut self, t: u64) -> Result<Vec<(String, f32)>> {
        // 1. The new masks of the parameters whose schedule fires: a layer-scoped group
        //    selects per parameter, a global one over the concatenation of its parameters.
        let mut masks: Vec<(String, Mask)> = Vec::new();
        for (gi, g) in self.groups.iter().enumerate() {
            let Some(s) = g.schedule.at(t, g.target) else {
                continue;
            };
            let sparsity = match g.pattern {
                Pattern::NM { .. } => 0.0,
                _ => s as f64,
            };
            let members: Vec<(&String, &Masked)> =
                self.masked.iter().filter(|(_, m)| m.group == gi).collect();
            match g.scope {
                Scope::Layer => {
                    for (name, m) in members {
                        let scores = m.live_scores(g.criterion)?;
                        let mask = sparsewire_se::pattern::select(
                            &scores, m.rows, m.cols, g.pattern, sparsity,
                        )?;
                        masks.push((name.clone(), mask));
                    }
                }
                Scope::Global => {
                    let mut all = Vec::new();
                    for (_, m) in &members {
                        all.extend(m.live_scores(g.criterion)?);
                    }
                    let joint = sparsewire_se::pattern::select(
                        &all,
                        1,
                        all.len(),
                        Pattern::Unstructured,
                        sparsity,
                    )?;
                    let mut at = 0;
                    for (name, m) in members {
                        let n = m.rows * m.cols;
                        masks.push((name.clone(), Mask::from_fn(n, |i| joint.is_kept(at + i))));
                        at += n;
                    }
                }
            }
        }
        // 2. Install them.
        let mut changed = Vec::new();
        for (name, mask) in masks {
            let m = self
                .masked
                .get_mut(&name)
                .expect("a mask is made for a masked parameter");
            let f: Vec<f32> = (0..mask.len())
                .map(|i| if mask.is_kept(i) { 1.0 } else { 0.0 })
                .collect();
            let factor =
                Tensor::from_vec(f, m.var.dims(), m.var.device())?.to_dtype(m.var.dtype())?;
            if let Some(r) = &mut m.rebuild {
                // Weights kept until now give their current value; those dropped earlier
                // keep the value they had then.
                let w = m.var.as_tensor();
                // Detached: the reconstruction loss reaches the rebuild's parameters only,
                // never the weights through what they were.
                r.reference =
                    (r.reference.mul(&m.factor.affine(-1.0, 1.0)?)? + w.mul(&m.factor)?)?.detach();
            }
            m.factor = factor;
            m.mask = mask;
            if let Some(r) = &m.rebuild {
                // Start from the post-hoc fit (on the weights as they are, before `apply`
                // zeroes the newly dropped ones); training moves it from there.
                r.set_params(&m.posthoc_fit(r)?)?;
            }
            changed.push((name, 1.0 - m.mask.density() as f32));
        }
        self.apply()?;
        Ok(changed)
    }

    /// Sets every dropped weight to exactly zero (after the optimiser's update, whose
    /// weight decay or momentum would otherwise move them).
    pub fn apply(&self) -> Result<()> {
        for m in self.masked.values() {
            // `+ 0` turns the -0 of a negative weight times zero into +0.
            m.var
                .set(&m.var.as_tensor().mul(&m.factor)?.affine(1.0, 0.0)?)?;
        }
        Ok(())
    }

    /// Fraction of the masked parameters' weights dropped.
    pub fn sparsity(&self) -> f64 {
        let (kept, all) = self.masked.values().fold((0usize, 0usize), |(k, a), m| {
            (k + m.mask.kept(), a + m.mask.len())
        });
        if all == 0 {
            0.0
        } else {
            1.0 - kept as f64 / all as f64
        }
    }

    /// The mask of a parameter, if it has one.
    pub fn mask(&self, name: &str) -> Option<&Mask> {
        self.masked.get(name).map(|m| &m.mask)
    }

    /// The accumulated gradient criterion of each scored weight matrix (the masked ones,
    /// and every other matrix when a group scores by gradient), exported as the
    /// `--gradients` file `sparsewire compress --criterion taylor` reads: `|g|` such that
    /// `|g| |w|` is the score (zero where `w` is zero). Movement scores are exported as
    /// their magnitude.
    pub fn gradients(&self) -> Result<TensorFile> {
        let mut all: Vec<(&String, &Var, &Accumulator)> = self
            .masked
            .iter()
            .map(|(n, m)| (n, &m.var, &m.score))
            .chain(self.unmasked.iter().map(|(n, (v, a))| (n, v, a)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        let mut tensors = Vec::new();
        for (name, var, acc) in all {
            let Some(score) = &acc.score else {
                continue;
            };
            let s = f32s(score)?;
            let w = f32s(var.as_tensor())?;
            let g: Vec<f32> = s
                .iter()
                .zip(&w)
                .map(|(s, w)| if *w == 0.0 { 0.0 } else { s.abs() / w.abs() })
                .collect();
            let shape = var.dims().iter().map(|&d| d as u64).collect();
            tensors.push(FileTensor::from_f32(name.clone(), shape, &g));
        }
        Ok(TensorFile {
            tensors,
            metadata: vec![("sparsewire.gradients".into(), "train".into())],
        })
    }

    /// Folds the masks into the weights and codes every parameter (masked ones sparse,
    /// with their masks; the rest lossless) as one `.swire` stream of F32 tensors, in
    /// `params` order, with `metadata` added to the stream's user metadata.
    pub fn squash(
        &self,
        params: &[(String, Var)],
        metadata: &[(String, String)],
        opts: &sparsewire_stream::EncodeOptions,
    ) -> Result<Vec<u8>> {
        let mut tensors = Vec::with_capacity(params.len());
        let mut sparse = Vec::with_capacity(params.len());
        for (name, var) in params {
            let w = f32s(var.as_tensor())?;
            let shape: Vec<u64> = var.dims().iter().map(|&d| d as u64).collect();
            let t = FileTensor::from_f32(name.clone(), shape, &w);
            sparse.push(match self.masked.get(name) {
                Some(m) => {
                    let g = &self.groups[m.group];
                    let tile =
                        SparseTile::from_dense(m.rows, m.cols, Dtype::F32, &t.data, m.mask.clone())
                            .map_err(|e| TrainError::Config(format!("{name}: {e}")))?;
                    Some(SparseTensor {
                        tile,
                        info: Sparsification {
                            // Trained with the mask: the kept values are not the dense
                            // model's.
                            values_updated: true,
                            ..Sparsification::new(
                                g.criterion.recorded(),
                                g.pattern,
                                1.0 - m.mask.density() as f32,
                            )
                        },
                        reconstruction: match &m.rebuild {
                            Some(r) => r.reconstruction(m.cols)?,
                            None => Reconstruction::Zero,
                        },
                    })
                }
                None => None,
            });
            tensors.push(t);
        }
        let mut meta = vec![(
            "sparsewire.trained".to_string(),
            "sparsewire-train".to_string(),
        )];
        meta.extend(metadata.iter().cloned());
        let file = TensorFile {
            tensors,
            metadata: meta,
        };
        Ok(sparsewire_stream::encode_sparse(&file, &sparse, opts)?)
    }
}
