//! The trainable scorer: a small MLP that decides which weights to keep.
//!
//! Magnitude, Wanda and SparseGPT score with a fixed rule. The scorer learns its rule from
//! calibration data: for every element `w_ij` of a weight `[rows, cols]` (inputs `x_j`) it
//! reads [`FEATURES`] per-element features, all computed from the weights and the
//! calibration Gram matrix `G = XᵀX / tokens` (nothing from held-out inputs):
//!
//! | # | feature | why |
//! |---|---|---|
//! | 0 | `ln |w_ij|` | magnitude |
//! | 1 | `ln ‖x_j‖` (`½ ln G_jj`) | with 0, Wanda's `ln(|w_ij| ‖x_j‖)` |
//! | 2 | `asinh(w_ij (G w_i)_j / (G_jj w_ij²))` | gradient × weight of the row's output energy `w_iᵀ G w_i`, relative to Wanda's own term: how much the other inputs of the row, through their correlation with `x_j`, add to or cancel what dropping `w_ij` costs |
//! | 3 | `ln rms(w_i·)` | the row's scale |
//! | 4 | `ln rms(w_·j)` | the input column's scale across all outputs |
//! | 5 | `asinh(2 w_ij (G d_i)_j / (G_jj w_ij²))`, `d_i` the weights of row `i` Wanda drops at the kept fraction, `w_ij` itself left out | what dropping `w_ij` costs *given the rest of Wanda's choice*, beyond Wanda's own term: the exact change of the row's error is `G_jj w_ij² + 2 w_ij (G d_i)_j` |
//!
//! Each feature is standardised per layer (mean 0, deviation 1 over the layer's elements)
//! into `z`, and the score is
//!
//! `s_ij = f0 + f1 + uᵀz + w2ᵀ tanh(W1 z + b1)`,
//!
//! a residual on Wanda's log score: with `u = 0` and `w2 = 0`, the initial values, the
//! scorer *is* Wanda, and training moves it only where the calibration error says so.
//! Selection is per row (every output keeps `round(cols · keep)` inputs, Wanda's comparison
//! group), so the kept fraction is exactly that of the baselines it is compared with.
//!
//! **Training** minimises the layer output error on calibration inputs,
//! `Σ_i d_iᵀ G d_i / Σ_i w_iᵀ G w_i` with `d = w ⊙ (1 − m)`, through a relaxed top-k. The
//! scores are standardised per row (mean 0, deviation 1, with the gradient flowing through
//! both), because shifting or scaling a whole row changes no selection: without it the
//! relaxed loss rewards raising every score (keeping more always lowers the error) and the
//! optimiser learns nothing; with it, the default relaxation ([`Relaxation::Sigmoid`])
//! differentiates the soft mask `sigmoid((s − t_i) / T)`, `t_i` halfway between the row's
//! k-th and (k+1)-th score, `T` = [`ScorerConfig::temperature`]; a straight-through variant
//! (hard mask forward) is there too. On a synthetic sweep (two correlated layers, 100 steps)
//! the sigmoid at `T = 0.1` lowered the hard error most steadily (−13% against Wanda), the
//! straight-through estimator about as far but drifting back up at larger learning rates.
//! The hard calibration error is measured every tenth of the run and the parameters with the
//! lowest are kept, so the result is never worse than Wanda *on the calibration data*;
//! whether it is on held-out inputs is what the benchmark (`cargo xtask scorer`,
//! docs/SCORER.md) measures. Rows are independent given `G`, so each step samples at most
//! [`ScorerConfig::rows_per_step`] rows per layer: an unbiased estimate of the loss at a
//! fraction of the cost.
//!
//! [`Scorer::scores`] is the scalar reference: plain Rust, no candle, what a host runs to
//! choose a mask; the training forward is tested against it. It lives in
//! `sparsewire_se::scorer` (with the features and the Gram matrix), so that
//! `sparsewire compress --criterion scorer` uses a fitted scorer without the training
//! crate; this module re-exports it and adds the fitting.

use crate::digits::Rng;
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
pub use sparsewire_se::scorer::{
    gram, kept_per_row, standardise, top_k_rows, Scorer, FEATURES, FEATURE_NAMES,
};

/// The raw features of every element of `layer` at kept fraction `keep`,
/// `[rows * cols, FEATURES]` ([`sparsewire_se::scorer::features`]).
pub fn features(layer: &Layer, keep: f32) -> Vec<f32> {
    sparsewire_se::scorer::features(&layer.w, layer.rows, layer.cols, &layer.gram, keep)
}

/// The initial scorer: Wanda (`u = 0`, `w2 = 0`) with `W1` drawn from `seed`.
pub fn initial(hidden: usize, seed: u64) -> Scorer {
    let mut rng = Rng::new(seed ^ 0x5c0e);
    let b = (1.0 / FEATURES as f32).sqrt();
    Scorer {
        hidden,
        w1: (0..FEATURES * hidden)
            .map(|_| (rng.uniform() * 2.0 - 1.0) * b)
            .collect(),
        b1: vec![0.0; hidden],
        w2: vec![0.0; hidden],
        u: vec![0.0; FEATURES],
    }
}

/// Scores of every element of `layer` at kept fraction `keep` (higher: keep), through
/// the scalar reference.
pub fn scores(scorer: &Scorer, layer: &Layer, keep: f32) -> Vec<f32> {
    scorer.scores(&layer.w, layer.rows, layer.cols, &layer.gram, keep)
}

/// The layer's weights with the scorer's per-row top-k kept (`keep` of each row).
pub fn prune(scorer: &Scorer, layer: &Layer, keep: f32) -> Vec<f32> {
    let m = top_k_rows(&scores(scorer, layer, keep), layer.rows, layer.cols, keep);
    layer.w.iter().zip(&m).map(|(w, k)| w * k).collect()
}

/// One layer as the scorer sees it: the weight and the Gram matrix of its inputs.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    /// `[rows, cols]`, row-major.
    pub w: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    /// `XᵀX / tokens`, `[cols, cols]`.
    pub gram: Vec<f32>,
}

impl Layer {
    /// The layer `w` (`[rows, cols]`) with inputs `x` (`[tokens, cols]`).
    pub fn new(
        name: impl Into<String>,
        w: Vec<f32>,
        rows: usize,
        cols: usize,
        x: &[f32],
        tokens: usize,
    ) -> Result<Layer> {
        let name = name.into();
        if rows == 0 || cols == 0 || w.len() != rows * cols {
            return Err(TrainError::Config(format!(
                "{name}: {} weights are not [{rows}, {cols}]",
                w.len()
            )));
        }
        if tokens == 0 || x.len() != tokens * cols {
            return Err(TrainError::Config(format!(
                "{name}: {} inputs are not [{tokens} tokens, {cols}] (at least one token)",
                x.len()
            )));
        }
        Ok(Layer {
            gram: gram(x, tokens, cols),
            name,
            w,
            rows,
            cols,
        })
    }

    /// The same layer with its Gram matrix shrunk toward its diagonal,
    /// `G' = (1 − alpha) G + alpha diag(G)`: the input norms (Wanda's score) are unchanged,
    /// the correlations between inputs, which features 2 and 5 and the training loss read,
    /// are trusted only by `1 − alpha`. Fewer calibration tokens than inputs make the
    /// off-diagonal noise (the Gram is rank-deficient); shrinkage is the usual remedy
    /// (Ledoit–Wolf). `alpha` in `[0, 1]`; 0 is the layer as it is, 1 drops every correlation.
    pub fn shrunk(&self, alpha: f32) -> Result<Layer> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(TrainError::Config(format!(
                "{}: Gram shrinkage {alpha} is outside [0, 1]",
                self.name
            )));
        }
        let mut out = self.clone();
        let c = self.cols;
        for a in 0..c {
            for b in 0..c {
                if a != b {
                    out.gram[a * c + b] *= 1.0 - alpha;
                }
            }
        }
        Ok(out)
    }

    /// `Σ_i d_iᵀ G d_i` for `d = w − changed`, over `Σ_i w_iᵀ G w_i`, square-rooted: the
    /// relative output error `‖X(W − W')ᵀ‖ / ‖XWᵀ‖` on the inputs this Gram came from.
    pub fn rel_output(&self, changed: &[f32]) -> f64 {
        let d: Vec<f32> = self.w.iter().zip(changed).map(|(a, b)| a - b).collect();
        let e = quad(&d, &self.gram, self.rows, self.cols);
        let n = quad(&self.w, &self.gram, self.rows, self.cols);
        if n == 0.0 {
            0.0
        } else {
            (e / n).sqrt()
        }
    }
}

/// `Σ_i w_iᵀ G w_i` in f64.
fn quad(w: &[f32], g: &[f32], rows: usize, cols: usize) -> f64 {
    let mut total = 0f64;
    for i in 0..rows {
        let wi = &w[i * cols..(i + 1) * cols];
        for (a, &wa) in wi.iter().enumerate() {
            if wa == 0.0 {
                continue;
            }
            let ga = &g[a * cols..(a + 1) * cols];
            let s: f64 = ga.iter().zip(wi).map(|(&x, &y)| x as f64 * y as f64).sum();
            total += wa as f64 * s;
        }
    }
    total
}

/// How the scorer is trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScorerConfig {
    /// Fraction of each row kept, in (0, 1].
    pub keep: f32,
    pub hidden: usize,
    pub steps: usize,
    pub lr: f64,
    /// The sigmoid's temperature, in units of the row's score deviation.
    pub temperature: f32,
    /// What the backward pass differentiates.
    pub relaxation: Relaxation,
    /// Rows sampled per layer per step (all when the layer has fewer).
    pub rows_per_step: usize,
    pub seed: u64,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        ScorerConfig {
            keep: 0.5,
            hidden: 16,
            steps: 100,
            lr: 2e-3,
            temperature: 0.1,
            rows_per_step: 64,
            relaxation: Relaxation::Sigmoid,
            seed: 0,
        }
    }
}

impl ScorerConfig {
    fn check(&self) -> Result<()> {
        let bad = |why: String| Err(TrainError::Config(format!("scorer: {why}")));
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return bad(format!("keep {} is not in (0, 1]", self.keep));
        }
        if self.hidden == 0 || self.hidden > 1024 {
            return bad(format!("hidden {} is not in 1..=1024", self.hidden));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr {} is not positive", self.lr));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature {} is not positive", self.temperature));
        }
        if self.rows_per_step == 0 {
            return bad("rows_per_step is 0".into());
        }
        Ok(())
    }
}

/// How the hard top-k is relaxed for the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relaxation {
    /// The loss of the soft mask `sigmoid((s - t_i) / T_i)`, forward and backward.
    Sigmoid,
    /// The hard mask forward, the soft mask's gradient backward.
    StraightThrough,
}

/// What fitting did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitReport {
    /// Mean relative output energy `Σ d G d / Σ w G w` over the layers, on the full
    /// calibration data, for Wanda (the start) and for the scorer kept.
    pub wanda_loss: f64,
    pub loss: f64,
    /// The step whose parameters were kept (0: Wanda itself was best).
    pub best_step: usize,
    /// Sampled training loss of each step.
    pub curve: Vec<f32>,
    pub seconds: f64,
}

/// One layer's tensors for training.
struct Prepared {
    raw01: Tensor,
    z: Tensor,
    w: Tensor,
    g: Tensor,
    energy: f64,
    raw: Vec<f32>,
    zs: Vec<f32>,
}

/// Fits one scorer to all of `layers` (shared: one set of parameters), starting from Wanda.
pub fn fit(layers: &[Layer], cfg: &ScorerConfig) -> Result<(Scorer, FitReport)> {
    cfg.check()?;
    if layers.is_empty() {
        return Err(TrainError::Config("scorer: no layers to fit".into()));
    }
    let t0 = std::time::Instant::now();
    let dev = Device::Cpu;
    let mut prepared = Vec::with_capacity(layers.len());
    for l in layers {
        let raw = features(l, cfg.keep);
        let zs = standardise(&raw);
        let n = l.rows * l.cols;
        let raw01: Vec<f32> = raw.chunks(FEATURES).map(|f| f[0] + f[1]).collect();
        prepared.push(Prepared {
            raw01: Tensor::from_vec(raw01, (l.rows, l.cols), &dev)?,
            z: Tensor::from_vec(zs.clone(), (n, FEATURES), &dev)?,
            w: Tensor::from_vec(l.w.clone(), (l.rows, l.cols), &dev)?,
            g: Tensor::from_vec(l.gram.clone(), (l.cols, l.cols), &dev)?,
            energy: quad(&l.w, &l.gram, l.rows, l.cols).max(f64::MIN_POSITIVE),
            raw,
            zs,
        });
    }
    let mut scorer = initial(cfg.hidden, cfg.seed);
    let h = cfg.hidden;
    let w1 = Var::from_vec(scorer.w1.clone(), (FEATURES, h), &dev)?;
    let b1 = Var::from_vec(scorer.b1.clone(), (1, h), &dev)?;
    let w2 = Var::from_vec(scorer.w2.clone(), (h, 1), &dev)?;
    let u = Var::from_vec(scorer.u.clone(), (FEATURES, 1), &dev)?;
    let mut opt = AdamW::new(
        vec![w1.clone(), b1.clone(), w2.clone(), u.clone()],
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let snapshot = |s: &mut Scorer| -> Result<()> {
        s.w1 = w1.as_tensor().flatten_all()?.to_vec1()?;
        s.b1 = b1.as_tensor().flatten_all()?.to_vec1()?;
        s.w2 = w2.as_tensor().flatten_all()?.to_vec1()?;
        s.u = u.as_tensor().flatten_all()?.to_vec1()?;
        Ok(())
    };
    // The full calibration loss of a parameter set (hard masks; the quadratic form through
    // candle's matmul, the scalar `quad` being too slow for every eval of a large model).
    let full_loss = |s: &Scorer| -> Result<f64> {
        let mut total = 0f64;
        for (l, p) in layers.iter().zip(&prepared) {
            let m = top_k_rows(&s.scores_from(&p.raw, &p.zs), l.rows, l.cols, cfg.keep);
            let d: Vec<f32> = l.w.iter().zip(&m).map(|(w, k)| w * (1.0 - k)).collect();
            let d = Tensor::from_vec(d, (l.rows, l.cols), &dev)?;
            let e = (d.matmul(&p.g)? * &d)?.sum_all()?.to_scalar::<f32>()? as f64;
            total += e / p.energy;
        }
        Ok(total / layers.len() as f64)
    };
    let wanda_loss = full_loss(&scorer)?;
    let (mut best, mut best_step) = (wanda_loss, 0);
    let mut kept = scorer.clone();
    let mut rng = Rng::new(cfg.seed ^ 0x0005_c0e5);
    let mut curve = Vec::with_capacity(cfg.steps);
    let eval_every = (cfg.steps / 10).max(1);
    for step in 1..=cfg.steps {
        let mut total: Option<Tensor> = None;
        let mut hard_total = 0f64;
        for (l, p) in layers.iter().zip(&prepared) {
            // The rows of this step.
            let mut rows: Vec<u32> = (0..l.rows as u32).collect();
            if l.rows > cfg.rows_per_step {
                rng.shuffle(&mut rows);
                rows.truncate(cfg.rows_per_step);
                rows.sort_unstable();
            }
            let r = rows.len();
            let idx = Tensor::from_vec(rows.clone(), r, &dev)?;
            let elem: Vec<u32> = rows
                .iter()
                .flat_map(|&i| (0..l.cols as u32).map(move |j| i * l.cols as u32 + j))
                .collect();
            let eidx = Tensor::from_vec(elem, r * l.cols, &dev)?;
            let z = p.z.index_select(&eidx, 0)?;
            let hidden = z
                .matmul(w1.as_tensor())?
                .broadcast_add(b1.as_tensor())?
                .tanh()?;
            let s = (hidden.matmul(w2.as_tensor())? + z.matmul(u.as_tensor())?)?
                .reshape((r, l.cols))?;
            let s = (s + p.raw01.index_select(&idx, 0)?)?;
            // Standardised per row, through the gradient too: a shift or a scaling of a
            // whole row changes no selection, so the loss must not reward it (it would,
            // keeping more always lowering the error).
            let centred = s.broadcast_sub(&s.mean_keepdim(1)?)?;
            let sd = (centred.sqr()?.mean_keepdim(1)? + 1e-12)?.sqrt()?;
            let s = centred.broadcast_div(&sd)?;
            let sv: Vec<f32> = s.flatten_all()?.to_vec1()?;
            let hard = top_k_rows(&sv, r, l.cols, cfg.keep);
            let k = kept_per_row(l.cols, cfg.keep);
            let mut thr = Vec::with_capacity(r);
            for row in sv.chunks(l.cols) {
                let mut v = row.to_vec();
                v.sort_unstable_by(|a, b| b.total_cmp(a));
                // Halfway between the last kept and the first dropped score.
                thr.push(if k < l.cols {
                    0.5 * (v[k - 1] + v[k])
                } else {
                    v[k - 1] - 1.0
                });
            }
            let thr = Tensor::from_vec(thr, (r, 1), &dev)?;
            let soft =
                candle_nn::ops::sigmoid(&(s.broadcast_sub(&thr)? / cfg.temperature as f64)?)?;
            let hard = Tensor::from_vec(hard, (r, l.cols), &dev)?;
            let w = p.w.index_select(&idx, 0)?;
            let scale = l.rows as f64 / r as f64 / p.energy / layers.len() as f64;
            // The hard error (what is reported and kept) and the relaxed one (what is
            // differentiated).
            let dh = (&w * (1.0 - &hard)?)?;
            let eh = (dh.matmul(&p.g)? * &dh)?.sum_all()?.to_scalar::<f32>()? as f64 * scale;
            hard_total += eh;
            let m = match cfg.relaxation {
                Relaxation::Sigmoid => soft,
                Relaxation::StraightThrough => (hard + (&soft - soft.detach())?)?,
            };
            let d = (&w * (1.0 - m)?)?;
            let e = ((d.matmul(&p.g)? * &d)?.sum_all()? * scale)?;
            total = Some(match total {
                None => e,
                Some(t) => (t + e)?,
            });
        }
        let loss = total.expect("at least one layer");
        let lv = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if !lv.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: step as u64,
                last: curve.last().copied(),
            });
        }
        curve.push(hard_total as f32);
        opt.backward_step(&loss)?;
        if step % eval_every == 0 || step == cfg.steps {
            let mut s = scorer.clone();
            snapshot(&mut s)?;
            let full = full_loss(&s)?;
            tracing::debug!(step, full, "scorer");
            if full < best {
                (best, best_step, kept) = (full, step, s);
            }
        }
    }
    snapshot(&mut scorer)?;
    Ok((
        kept,
        FitReport {
            wanda_loss,
            loss: best,
            best_step,
            curve,
            seconds: t0.elapsed().as_secs_f64(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_layer(rows: usize, cols: usize, tokens: usize, seed: u64) -> Layer {
        let mut rng = Rng::new(seed);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.uniform() * 2.0 - 1.0)
            .collect();
        // Correlated inputs with uneven scales: x = a · mix, so Wanda is not optimal.
        let mix: Vec<f32> = (0..cols * cols)
            .map(|i| {
                if i % (cols + 1) == 0 {
                    1.0
                } else {
                    (rng.uniform() - 0.5) * 0.8
                }
            })
            .collect();
        let scale: Vec<f32> = (0..cols).map(|j| 0.2 + (j % 5) as f32).collect();
        let mut x = vec![0f32; tokens * cols];
        for t in 0..tokens {
            let a: Vec<f32> = (0..cols).map(|_| rng.uniform() * 2.0 - 1.0).collect();
            for j in 0..cols {
                x[t * cols + j] =
                    scale[j] * (0..cols).map(|q| a[q] * mix[q * cols + j]).sum::<f32>();
            }
        }
        Layer::new("t", w, rows, cols, &x, tokens).unwrap()
    }

    #[test]
    fn the_initial_scorer_ranks_like_wanda() {
        let l = random_layer(8, 16, 40, 1);
        let s = scores(&initial(8, 0), &l, 0.5);
        let norms: Vec<f32> = (0..l.cols).map(|j| l.gram[j * l.cols + j].sqrt()).collect();
        let wanda = sparsewire_se::criteria::wanda(&l.w, l.cols, &norms);
        let a = top_k_rows(&s, l.rows, l.cols, 0.5);
        let b = top_k_rows(&wanda, l.rows, l.cols, 0.5);
        assert_eq!(a, b);
        assert_eq!(a.iter().sum::<f32>() as usize, 8 * 8);
    }

    #[test]
    fn the_conditional_feature_is_the_exact_cost_of_dropping_beyond_wandas_term() {
        let l = random_layer(6, 10, 30, 2);
        let f = features(&l, 0.5);
        let norms: Vec<f32> = (0..l.cols).map(|j| l.gram[j * l.cols + j].sqrt()).collect();
        let keep = top_k_rows(
            &sparsewire_se::criteria::wanda(&l.w, l.cols, &norms),
            6,
            10,
            0.5,
        );
        for i in 0..6 {
            for j in 0..10 {
                // Wanda's dropped set of the row, with j forced kept, then forced dropped.
                let row = |drop_j: bool| -> Vec<f32> {
                    let mut w = l.w.clone();
                    for c in 0..10 {
                        let dropped = if c == j {
                            drop_j
                        } else {
                            keep[i * 10 + c] == 0.0
                        };
                        for r in 0..6 {
                            if r != i || dropped {
                                w[r * 10 + c] = if r == i { 0.0 } else { w[r * 10 + c] };
                            }
                        }
                    }
                    w
                };
                let e = |w: &[f32]| {
                    quad(
                        &l.w.iter().zip(w).map(|(a, b)| a - b).collect::<Vec<_>>(),
                        &l.gram,
                        6,
                        10,
                    )
                };
                let cost = e(&row(true)) - e(&row(false));
                let own = l.gram[j * 10 + j] as f64 * (l.w[i * 10 + j] as f64).powi(2);
                let want = ((cost - own) / own).asinh();
                let got = f[(i * 10 + j) * FEATURES + 5] as f64;
                assert!((got - want).abs() < 1e-3, "({i}, {j}): {got} vs {want}");
            }
        }
    }

    #[test]
    fn shrinkage_keeps_the_diagonal_and_scales_the_correlations() {
        let l = random_layer(4, 6, 12, 4);
        let c = l.cols;
        assert_eq!(l.shrunk(0.0).unwrap().gram, l.gram);
        let h = l.shrunk(0.25).unwrap();
        let full = l.shrunk(1.0).unwrap();
        for a in 0..c {
            for b in 0..c {
                let (g, s, f) = (l.gram[a * c + b], h.gram[a * c + b], full.gram[a * c + b]);
                if a == b {
                    assert_eq!((s, f), (g, g));
                } else {
                    assert!((s - 0.75 * g).abs() <= 1e-6 * g.abs().max(1.0));
                    assert_eq!(f, 0.0);
                }
            }
        }
        // With no correlations, the conditional feature is 0 and feature 2 is asinh(1).
        let f = features(&full, 0.5);
        for e in 0..l.rows * c {
            if l.w[e] != 0.0 {
                assert!((f[e * FEATURES + 2] - 1f32.asinh()).abs() < 1e-5);
                assert_eq!(f[e * FEATURES + 5], 0.0);
            }
        }
        for bad in [-0.1, 1.1, f32::NAN] {
            assert!(l.shrunk(bad).is_err());
        }
    }

    #[test]
    fn top_k_keeps_exactly_k_per_row() {
        let s = [3.0, 1.0, 2.0, 2.0, 0.0, 5.0, 5.0, 5.0];
        assert_eq!(
            top_k_rows(&s, 2, 4, 0.5),
            [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
        );
        assert_eq!(kept_per_row(9, 0.01), 1);
        assert_eq!(kept_per_row(9, 1.0), 9);
    }

    #[test]
    fn rel_output_matches_se() {
        let mut rng = Rng::new(3);
        let (rows, cols, tokens) = (5, 7, 11);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() - 0.5).collect();
        let x: Vec<f32> = (0..tokens * cols).map(|_| rng.uniform() - 0.5).collect();
        let l = Layer::new("t", w.clone(), rows, cols, &x, tokens).unwrap();
        let changed: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 3 == 0 { 0.0 } else { *v })
            .collect();
        let a = l.rel_output(&changed);
        let b = sparsewire_se::metrics::rel_output(&w, &changed, cols, &x, tokens);
        assert!((a - b).abs() < 1e-5, "{a} {b}");
    }

    #[test]
    fn training_forward_matches_the_scalar_reference_and_lowers_the_calibration_error() {
        let layers = vec![random_layer(24, 32, 64, 5), random_layer(16, 24, 64, 6)];
        let cfg = ScorerConfig {
            steps: 60,
            rows_per_step: 1000,
            ..Default::default()
        };
        let (s, r) = fit(&layers, &cfg).unwrap();
        assert_eq!(r.curve.len(), 60);
        assert!(r.loss <= r.wanda_loss);
        assert!(
            r.loss < 0.98 * r.wanda_loss,
            "{} vs {}",
            r.loss,
            r.wanda_loss
        );
        // The first step's sampled loss (all rows) is Wanda's full calibration loss.
        assert!((r.curve[0] as f64 - r.wanda_loss).abs() < 1e-4 * r.wanda_loss.max(1.0));
        // The kept parameters score through the scalar reference to the reported loss.
        let again: f64 = layers
            .iter()
            .map(|l| l.rel_output(&prune(&s, l, cfg.keep)).powi(2))
            .sum::<f64>()
            / 2.0;
        assert!((again - r.loss).abs() < 1e-5, "{again} {}", r.loss);
        // Deterministic with a seed.
        let (s2, r2) = fit(&layers, &cfg).unwrap();
        assert_eq!(s, s2);
        assert_eq!(r.curve, r2.curve);
    }

    #[test]
    fn bad_configs_and_shapes_are_errors() {
        let l = random_layer(4, 4, 8, 0);
        for cfg in [
            ScorerConfig {
                keep: 0.0,
                ..Default::default()
            },
            ScorerConfig {
                keep: 1.5,
                ..Default::default()
            },
            ScorerConfig {
                hidden: 0,
                ..Default::default()
            },
            ScorerConfig {
                lr: f64::NAN,
                ..Default::default()
            },
            ScorerConfig {
                rows_per_step: 0,
                ..Default::default()
            },
        ] {
            assert!(fit(std::slice::from_ref(&l), &cfg).is_err());
        }
        assert!(fit(&[], &ScorerConfig::default()).is_err());
        assert!(Layer::new("x", vec![0.0; 5], 2, 3, &[0.0; 3], 1).is_err());
        assert!(Layer::new("x", vec![0.0; 6], 2, 3, &[0.0; 4], 1).is_err());
        assert!(Layer::new("x", vec![0.0; 6], 2, 3, &[], 0).is_err());
    }
}
