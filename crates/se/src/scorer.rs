//! The trained scorer at compress time: `Criterion::Scorer`.
//!
//! `sparsewire-train` fits a small MLP that scores each weight for keeping (its module docs
//! give the features, the training and the benchmark, docs/SCORER.md the results). What a
//! host needs to *use* a fitted scorer lives here, in plain Rust with no autodiff, so the
//! compress path does not depend on the training crate: the per-element [`features`], their
//! per-layer [`standardise`]ation, and [`Scorer::scores`], the scalar reference the
//! training forward is tested against.
//!
//! For every element `w_ij` of a weight `[rows, cols]` the features read the weight and the
//! Gram matrix `G = XᵀX / tokens` of the layer's calibration inputs ([`gram`]):
//!
//! | # | feature |
//! |---|---|
//! | 0 | `ln |w_ij|` |
//! | 1 | `ln ‖x_j‖` (`½ ln G_jj`) |
//! | 2 | `asinh(w_ij (G w_i)_j / (G_jj w_ij²))` |
//! | 3 | `ln rms(w_i·)` |
//! | 4 | `ln rms(w_·j)` |
//! | 5 | `asinh(2 w_ij (G d_i)_j / (G_jj w_ij²))`, `d_i` the row's Wanda-dropped weights at the kept fraction, `j` left out |
//!
//! and the score is `s_ij = f0 + f1 + uᵀz + w2ᵀ tanh(W1 z + b1)` (`z` the standardised
//! features): Wanda's log score plus a learned residual. A scorer with `u = 0`, `w2 = 0`
//! ranks exactly like Wanda.
//!
//! A file may hold one scorer for every layer or one per layer family ([`Scorers`]): the
//! tensor's name picks the entry whose key it ends with (the longest such key), else the
//! entry keyed `*`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::SparsifyError;

/// Features per element.
pub const FEATURES: usize = 6;

/// What each feature is, in order.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "ln|w_ij|",
    "ln||x_j||",
    "asinh(w_ij (G w_i)_j / (G_jj w_ij^2))",
    "ln rms(row i)",
    "ln rms(column j)",
    "asinh(2 w_ij (G d_i)_j / (G_jj w_ij^2)), d_i the row's Wanda-dropped weights without j",
];

/// Floor of the logarithms (an exact zero weight scores lowest, not minus infinity).
const LN_FLOOR: f32 = -40.0;

/// Largest hidden width a scorer file may declare.
pub const MAX_HIDDEN: usize = 1024;

/// `XᵀX / tokens` of `tokens` rows of `cols` inputs, accumulated in f64 (in token order for
/// every element, so the result does not depend on the thread count), stored f32.
pub fn gram(x: &[f32], tokens: usize, cols: usize) -> Vec<f32> {
    let mut g = vec![0f32; cols * cols];
    g.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(a, out)| {
            let mut acc = vec![0f64; cols];
            for t in 0..tokens {
                let r = &x[t * cols..(t + 1) * cols];
                let xa = r[a];
                if xa == 0.0 {
                    continue;
                }
                let xa = xa as f64;
                for (gv, &xb) in acc.iter_mut().zip(r) {
                    *gv += xa * xb as f64;
                }
            }
            for (o, v) in out.iter_mut().zip(acc) {
                *o = (v / tokens as f64) as f32;
            }
        });
    g
}

fn ln(v: f32) -> f32 {
    if v > 0.0 {
        v.ln().max(LN_FLOOR)
    } else {
        LN_FLOOR
    }
}

/// Elements kept per row at `keep` (at least one).
pub fn kept_per_row(cols: usize, keep: f32) -> usize {
    ((cols as f32 * keep).round() as usize).clamp(1, cols)
}

/// 1 for the `kept_per_row` highest scores of each row, 0 elsewhere (ties by position).
pub fn top_k_rows(scores: &[f32], rows: usize, cols: usize, keep: f32) -> Vec<f32> {
    let k = kept_per_row(cols, keep);
    let mut mask = vec![0f32; rows * cols];
    let mut idx: Vec<usize> = Vec::with_capacity(cols);
    for i in 0..rows {
        let s = &scores[i * cols..(i + 1) * cols];
        idx.clear();
        idx.extend(0..cols);
        if k < cols {
            idx.select_nth_unstable_by(k - 1, |&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
        }
        for &j in &idx[..k] {
            mask[i * cols + j] = 1.0;
        }
    }
    mask
}

/// The raw features of every element of `w` (`[rows, cols]`, inputs with Gram `g`
/// `[cols, cols]`) at kept fraction `keep`: `[rows * cols, FEATURES]`, row-major.
pub fn features(w: &[f32], rows: usize, cols: usize, g: &[f32], keep: f32) -> Vec<f32> {
    let mut col_sq = vec![0f64; cols];
    for i in 0..rows {
        for (s, &v) in col_sq.iter_mut().zip(&w[i * cols..(i + 1) * cols]) {
            *s += (v as f64).powi(2);
        }
    }
    let col_rms: Vec<f32> = col_sq
        .iter()
        .map(|s| ln((s / rows as f64).sqrt() as f32))
        .collect();
    let xnorm: Vec<f32> = (0..cols).map(|j| 0.5 * ln(g[j * cols + j])).collect();
    let norms: Vec<f32> = (0..cols).map(|j| g[j * cols + j].max(0.0).sqrt()).collect();
    let wanda = top_k_rows(&crate::criteria::wanda(w, cols, &norms), rows, cols, keep);
    let mut out = vec![0f32; rows * cols * FEATURES];
    out.par_chunks_mut(cols * FEATURES)
        .enumerate()
        .for_each(|(i, out)| {
            let wi = &w[i * cols..(i + 1) * cols];
            let d: Vec<f32> = wi
                .iter()
                .zip(&wanda[i * cols..(i + 1) * cols])
                .map(|(&wv, &m)| wv * (1.0 - m))
                .collect();
            let row_rms = ln(
                (wi.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / cols as f64).sqrt() as f32,
            );
            for j in 0..cols {
                let gj = &g[j * cols..(j + 1) * cols];
                let (mut gw, mut gd) = (0f64, 0f64);
                for ((&a, &b), &c) in gj.iter().zip(wi).zip(&d) {
                    gw += a as f64 * b as f64;
                    gd += a as f64 * c as f64;
                }
                let gjj = g[j * cols + j] as f64;
                gd -= gjj * d[j] as f64;
                let own = gjj * (wi[j] as f64).powi(2);
                let (rel, cond) = if own > 0.0 {
                    (
                        (wi[j] as f64 * gw / own).asinh() as f32,
                        (2.0 * wi[j] as f64 * gd / own).asinh() as f32,
                    )
                } else {
                    (0.0, 0.0)
                };
                out[j * FEATURES..(j + 1) * FEATURES].copy_from_slice(&[
                    ln(wi[j].abs()),
                    xnorm[j],
                    rel,
                    row_rms,
                    col_rms[j],
                    cond,
                ]);
            }
        });
    out
}

/// Features standardised per column (mean 0, deviation 1; a constant feature becomes 0).
pub fn standardise(raw: &[f32]) -> Vec<f32> {
    let n = raw.len() / FEATURES;
    let mut out = raw.to_vec();
    for k in 0..FEATURES {
        let mean = (0..n).map(|e| raw[e * FEATURES + k] as f64).sum::<f64>() / n.max(1) as f64;
        let var = (0..n)
            .map(|e| (raw[e * FEATURES + k] as f64 - mean).powi(2))
            .sum::<f64>()
            / n.max(1) as f64;
        let sd = var.sqrt();
        for e in 0..n {
            out[e * FEATURES + k] = if sd > 1e-12 {
                ((raw[e * FEATURES + k] as f64 - mean) / sd) as f32
            } else {
                0.0
            };
        }
    }
    out
}

/// A fitted scorer's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorer {
    pub hidden: usize,
    /// `[FEATURES, hidden]`, row-major.
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    /// `[hidden]`.
    pub w2: Vec<f32>,
    /// `[FEATURES]`, the linear term.
    pub u: Vec<f32>,
}

impl Scorer {
    /// Checks the parameter shapes against `hidden` and that every parameter is finite
    /// (a scorer read from a file is checked before it scores anything).
    pub fn check(&self) -> Result<(), SparsifyError> {
        let bad = |reason: String| Err(SparsifyError::Scorer(reason));
        if self.hidden == 0 || self.hidden > MAX_HIDDEN {
            return bad(format!("hidden {} is not in 1..={MAX_HIDDEN}", self.hidden));
        }
        let h = self.hidden;
        for (name, v, want) in [
            ("w1", &self.w1, FEATURES * h),
            ("b1", &self.b1, h),
            ("w2", &self.w2, h),
            ("u", &self.u, FEATURES),
        ] {
            if v.len() != want {
                return bad(format!(
                    "{name} has {} values, hidden {h} needs {want}",
                    v.len()
                ));
            }
            if let Some(p) = v.iter().position(|x| !x.is_finite()) {
                return bad(format!("{name}[{p}] is {}", v[p]));
            }
        }
        Ok(())
    }

    /// Scores of every element of `w` (`[rows, cols]`, inputs with Gram `g`) at kept
    /// fraction `keep` (higher: keep): the scalar reference.
    pub fn scores(&self, w: &[f32], rows: usize, cols: usize, g: &[f32], keep: f32) -> Vec<f32> {
        let raw = features(w, rows, cols, g, keep);
        let z = standardise(&raw);
        self.scores_from(&raw, &z)
    }

    /// Scores from raw features and their standardised values (`[n, FEATURES]` each).
    pub fn scores_from(&self, raw: &[f32], z: &[f32]) -> Vec<f32> {
        let h = self.hidden;
        raw.par_chunks(FEATURES)
            .zip(z.par_chunks(FEATURES))
            .map(|(f, z)| {
                let mut s = f[0] + f[1];
                s += z.iter().zip(&self.u).map(|(a, b)| a * b).sum::<f32>();
                for k in 0..h {
                    let mut a = self.b1[k];
                    for (q, zq) in z.iter().enumerate() {
                        a += zq * self.w1[q * h + k];
                    }
                    s += self.w2[k] * a.tanh();
                }
                s
            })
            .collect()
    }
}

/// Fitted scorers keyed by the tensor-name suffix they apply to (`*`: any other tensor).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scorers {
    pub entries: Vec<(String, Scorer)>,
}

/// `cargo xtask scorer`'s output (docs/scorer.json): the fits, each with the model and the
/// layers it was fitted to.
#[derive(Deserialize)]
struct FitsFile {
    fits: Vec<FitEntry>,
}

#[derive(Deserialize)]
struct FitEntry {
    model: String,
    scorer: Scorer,
}

impl Scorers {
    /// Reads a scorer file: either one scorer's parameters (`{"hidden", "w1", "b1", "w2",
    /// "u"}`, used for every tensor) or `cargo xtask scorer`'s output (`{"fits": [{"model":
    /// "MODEL, SUFFIX", "scorer": {...}}]}`: each fit applies to the tensors whose name
    /// ends with `SUFFIX`; a fit to `all layers` to every other tensor). The first fit of
    /// a key wins. Every scorer is checked.
    pub fn from_json(text: &str) -> Result<Scorers, SparsifyError> {
        let parse = |e: serde_json::Error| SparsifyError::Scorer(format!("not a scorer file: {e}"));
        let value: serde_json::Value = serde_json::from_str(text).map_err(parse)?;
        let mut entries: Vec<(String, Scorer)> = Vec::new();
        if value.get("fits").is_some() {
            let file: FitsFile = serde_json::from_value(value).map_err(parse)?;
            for fit in file.fits {
                let suffix = fit.model.rsplit(", ").next().unwrap_or("").trim();
                let key = if suffix.is_empty() || suffix == "all layers" || suffix == "*" {
                    "*".to_string()
                } else {
                    suffix.to_string()
                };
                if !entries.iter().any(|(k, _)| *k == key) {
                    entries.push((key, fit.scorer));
                }
            }
        } else {
            let s: Scorer = serde_json::from_value(value).map_err(parse)?;
            entries.push(("*".into(), s));
        }
        if entries.is_empty() {
            return Err(SparsifyError::Scorer("the file holds no scorer".into()));
        }
        for (k, s) in &entries {
            s.check()
                .map_err(|e| SparsifyError::Scorer(format!("scorer for {k}: {e}")))?;
        }
        Ok(Scorers { entries })
    }

    /// The scorer for tensor `name`: the entry with the longest key that `name` ends with,
    /// else the `*` entry.
    pub fn for_tensor(&self, name: &str) -> Option<(&str, &Scorer)> {
        self.entries
            .iter()
            .filter(|(k, _)| k != "*" && name.ends_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .or_else(|| self.entries.iter().find(|(k, _)| k == "*"))
            .map(|(k, s)| (k.as_str(), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test values in [-1, 1).
    fn lcg(seed: &mut u64) -> f32 {
        2.0 * crate::sparsegpt::tests::lcg(seed)
    }

    fn wanda_scorer(hidden: usize) -> Scorer {
        let mut s = 7;
        Scorer {
            hidden,
            w1: (0..FEATURES * hidden).map(|_| lcg(&mut s)).collect(),
            b1: vec![0.0; hidden],
            w2: vec![0.0; hidden],
            u: vec![0.0; FEATURES],
        }
    }

    #[test]
    fn gram_matches_the_definition() {
        let mut s = 1;
        let (tokens, cols) = (9, 5);
        let x: Vec<f32> = (0..tokens * cols).map(|_| lcg(&mut s)).collect();
        let g = gram(&x, tokens, cols);
        for a in 0..cols {
            for b in 0..cols {
                let want: f64 = (0..tokens)
                    .map(|t| x[t * cols + a] as f64 * x[t * cols + b] as f64)
                    .sum::<f64>()
                    / tokens as f64;
                assert!((g[a * cols + b] as f64 - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn a_zero_residual_scorer_ranks_like_wanda() {
        let mut s = 3;
        let (rows, cols, tokens) = (6, 12, 30);
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        let x: Vec<f32> = (0..tokens * cols)
            .map(|i| lcg(&mut s) * (1 + i % 4) as f32)
            .collect();
        let g = gram(&x, tokens, cols);
        let sc = wanda_scorer(4).scores(&w, rows, cols, &g, 0.5);
        let norms = crate::criteria::input_norms(&x, tokens, cols);
        let wanda = crate::criteria::wanda(&w, cols, &norms);
        assert_eq!(
            top_k_rows(&sc, rows, cols, 0.5),
            top_k_rows(&wanda, rows, cols, 0.5)
        );
    }

    #[test]
    fn files_are_checked_and_tensors_find_their_scorer() {
        let one = serde_json::to_string(&wanda_scorer(3)).unwrap();
        let s = Scorers::from_json(&one).unwrap();
        assert_eq!(s.for_tensor("anything").unwrap().0, "*");
        let fits = format!(
            r#"{{"fits": [{{"model": "M, output.dense.weight", "scorer": {one}}},
                {{"model": "M, attention.output.dense.weight", "scorer": {one}}},
                {{"model": "CNN, all layers", "scorer": {one}}}]}}"#
        );
        let s = Scorers::from_json(&fits).unwrap();
        assert_eq!(
            s.for_tensor("l.0.attention.output.dense.weight").unwrap().0,
            "attention.output.dense.weight"
        );
        assert_eq!(
            s.for_tensor("l.0.output.dense.weight").unwrap().0,
            "output.dense.weight"
        );
        assert_eq!(s.for_tensor("conv1.weight").unwrap().0, "*");
        // Shapes, values and syntax.
        let mut bad = wanda_scorer(3);
        bad.w2.pop();
        let bad_json = serde_json::to_string(&bad).unwrap();
        assert!(matches!(
            Scorers::from_json(&bad_json),
            Err(SparsifyError::Scorer(_))
        ));
        let mut nan = wanda_scorer(3);
        nan.u[2] = f32::NAN;
        // serde_json writes NaN as null, which is not a number: refused either way.
        assert!(Scorers::from_json(&serde_json::to_string(&nan).unwrap()).is_err());
        assert!(nan.check().is_err());
        let mut huge = wanda_scorer(3);
        huge.hidden = usize::MAX;
        assert!(huge.check().is_err());
        for text in ["", "{", "[]", r#"{"fits": []}"#, r#"{"hidden": 2}"#] {
            assert!(
                matches!(Scorers::from_json(text), Err(SparsifyError::Scorer(_))),
                "{text}"
            );
        }
    }
}
