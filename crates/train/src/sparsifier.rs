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
use sparsewire_sparse::{Mask, SparseTensor, SparseTile};
use std::collections::BTreeMap;

/// How a group's weights are scored when its masks are updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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
    fn recorded(self) -> Criterion {
        match self {
            TrainCriterion::Magnitude => Criterion::Magnitude,
            TrainCriterion::Taylor => Criterion::Taylor,
            TrainCriterion::Movement => Criterion::Movement,
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
            Some(m) => var.as_tensor().mul(&m.factor)?,
            None => var.as_tensor().clone(),
        })
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
        let mut changed = Vec::new();
        for (name, m) in self.masked.iter_mut() {
            let g = &self.groups[m.group];
            let Some(s) = g.schedule.at(t, g.target) else {
                continue;
            };
            let w = f32s(m.var.as_tensor())?;
            let scores: Vec<f32> = match (&m.score.score, g.criterion) {
                (Some(sc), TrainCriterion::Taylor | TrainCriterion::Movement) => f32s(sc)?,
                _ => w.iter().map(|v| v.abs()).collect(),
            };
            // A weight already dropped stays dropped (its score would be stale).
            let scores: Vec<f32> = scores
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    if m.mask.is_kept(i) {
                        s
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect();
            let sparsity = match g.pattern {
                Pattern::NM { .. } => 0.0,
                _ => s as f64,
            };
            let mask =
                sparsewire_se::pattern::select(&scores, m.rows, m.cols, g.pattern, sparsity)?;
            let f: Vec<f32> = (0..mask.len())
                .map(|i| if mask.is_kept(i) { 1.0 } else { 0.0 })
                .collect();
            m.factor =
                Tensor::from_vec(f, m.var.dims(), m.var.device())?.to_dtype(m.var.dtype())?;
            m.mask = mask;
            changed.push((name.clone(), 1.0 - m.mask.density() as f32));
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
                            criterion: g.criterion.recorded(),
                            pattern: g.pattern,
                            sparsity: 1.0 - m.mask.density() as f32,
                            threshold: None,
                            rel_error: 0.0,
                            output_error: None,
                            // Trained with the mask: the kept values are not the dense
                            // model's.
                            values_updated: true,
                        },
                        reconstruction: Reconstruction::Zero,
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
