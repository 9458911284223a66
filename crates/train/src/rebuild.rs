//! The MLP rebuild predictor (`re`'s `Mlp`, SPEC §6.2) as a trainable module.
//!
//! `sparsewire_re::fit_mlp` fits it after the fact: a random first layer and a ridge
//! output layer. Here every parameter is trained (AdamW, full batch) on the
//! reconstruction loss, the mean squared error of the rebuilt dropped values against
//! their true values, starting from that fit; the parameters with the lowest loss seen
//! are kept, so the result is never worse than the post-hoc fit on the elements it is
//! trained on. The inputs are the row context as the receiver computes it
//! (`sparsewire_re::mlp::mlp_inputs`), so the trained network is exactly what `re` runs.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use sparsewire_re::fit::MLP_FIT_SAMPLES;
use sparsewire_re::mlp::{mlp_inputs, row_scale, MLP_INPUTS};
use sparsewire_re::Reconstruction;
use sparsewire_sparse::MaskRef;

/// How [`train_mlp`] trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpTraining {
    /// Hidden units (1..=256).
    pub hidden: usize,
    /// Full-batch AdamW steps.
    pub steps: usize,
    pub lr: f64,
    /// Seed of the post-hoc fit the training starts from.
    pub seed: u64,
}

impl Default for MlpTraining {
    fn default() -> Self {
        Self {
            hidden: 16,
            steps: 300,
            lr: 3e-3,
            seed: 0,
        }
    }
}

/// What [`train_mlp`] gives: the trained predictor, the post-hoc fit it started from, and
/// the reconstruction loss (mean squared error over the sampled dropped elements) of each.
#[derive(Debug, Clone)]
pub struct TrainedMlp {
    pub trained: Reconstruction,
    pub post_hoc: Reconstruction,
    pub post_hoc_loss: f64,
    pub trained_loss: f64,
    /// Elements trained on (at most `MLP_FIT_SAMPLES`, evenly spaced).
    pub samples: usize,
}

/// Trains the MLP predictor of one tensor's dropped values (`original` row-major with
/// `cols` columns; its dropped elements hold their true values).
pub fn train_mlp(
    original: &[f32],
    mask: MaskRef<'_>,
    cols: usize,
    o: &MlpTraining,
) -> candle_core::Result<TrainedMlp> {
    let post_hoc = sparsewire_re::fit_mlp(original, mask, cols, o.hidden, o.seed);
    let Reconstruction::Mlp { hidden, params } = &post_hoc else {
        unreachable!("fit_mlp gives an Mlp")
    };
    let h = *hidden as usize;
    // The samples: what the receiver sees of each dropped element, and its truth; the
    // same elements the post-hoc fit learned from (a tensor that drops nothing has none).
    let (mut x, mut s, mut v) = (Vec::new(), Vec::new(), Vec::new());
    if (0..mask.len()).any(|i| !mask.is_kept(i)) {
        sparsewire_re::fit::for_each_fit_sample(
            original,
            mask,
            cols,
            MLP_FIT_SAMPLES,
            row_scale,
            |&scale, row, keep, j| {
                if scale > 0.0 {
                    x.extend(mlp_inputs(row, keep, j, scale).map(|f| f as f32));
                    s.push(scale as f32);
                    v.push(row[j]);
                }
            },
        );
    }
    let n = v.len();
    if n == 0 {
        return Ok(TrainedMlp {
            trained: post_hoc.clone(),
            post_hoc,
            post_hoc_loss: 0.0,
            trained_loss: 0.0,
            samples: 0,
        });
    }
    let dev = Device::Cpu;
    let x = Tensor::from_vec(x, (n, MLP_INPUTS), &dev)?;
    let s = Tensor::from_vec(s, (n, 1), &dev)?;
    let v = Tensor::from_vec(v, (n, 1), &dev)?;
    let part = |a: usize, len: usize, shape: (usize, usize)| {
        Var::from_tensor(&Tensor::from_slice(&params[a..a + len], shape, &dev)?)
    };
    let w1 = part(0, h * MLP_INPUTS, (h, MLP_INPUTS))?;
    let b1 = part(h * MLP_INPUTS, h, (1, h))?;
    let w2 = part(h * (MLP_INPUTS + 1), h, (h, 1))?;
    let b2 = part(h * (MLP_INPUTS + 2), 1, (1, 1))?;
    let vars = [&w1, &b1, &w2, &b2];
    let loss_of = || -> candle_core::Result<Tensor> {
        let hid = x.matmul(&w1.as_tensor().t()?)?.broadcast_add(&b1)?.relu()?;
        let pred = hid
            .matmul(w2.as_tensor())?
            .broadcast_add(&b2)?
            .broadcast_mul(&s)?;
        (pred - &v)?.sqr()?.mean_all()
    };
    let flat = |vs: &[&Var]| -> candle_core::Result<Vec<f32>> {
        let mut p = Vec::with_capacity(params.len());
        for var in vs {
            p.extend(var.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(p)
    };
    let mut opt = AdamW::new(
        vars.iter().map(|v| (*v).clone()).collect(),
        ParamsAdamW {
            lr: o.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let post_hoc_loss = loss_of()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let mut best = (post_hoc_loss, params.clone());
    for _ in 0..o.steps {
        let loss = loss_of()?;
        let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if l.is_finite() && l < best.0 {
            best = (l, flat(&vars)?);
        }
        opt.backward_step(&loss)?;
    }
    let l = loss_of()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if l.is_finite() && l < best.0 {
        best = (l, flat(&vars)?);
    }
    Ok(TrainedMlp {
        trained: Reconstruction::Mlp {
            hidden: h as u32,
            params: best.1,
        },
        post_hoc,
        post_hoc_loss,
        trained_loss: best.0,
        samples: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsewire_sparse::Mask;

    #[test]
    fn training_lowers_the_loss_of_the_post_hoc_fit_and_re_rebuilds_it() {
        // Rows of a smooth but curved signal: more than the ridge layer alone captures.
        let (rows, cols) = (48, 64);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                (1.0 + r as f32 * 0.1) * ((c as f32 * 0.45 + r as f32).sin()).powi(3)
            })
            .collect();
        let mask = Mask::from_fn(rows * cols, |i| (i * 2654435761) % 9 < 5);
        let t = train_mlp(
            &w,
            mask.as_ref(),
            cols,
            &MlpTraining {
                steps: 200,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(t.samples > 1000);
        assert!(
            t.trained_loss < 0.8 * t.post_hoc_loss,
            "{} vs {}",
            t.trained_loss,
            t.post_hoc_loss
        );
        // What re rebuilds with the trained parameters has the loss training reports.
        let mut rebuilt: Vec<f32> = (0..w.len())
            .map(|i| if mask.is_kept(i) { w[i] } else { 0.0 })
            .collect();
        sparsewire_re::rebuild_tensor(&mut rebuilt, mask.as_ref(), cols, &t.trained).unwrap();
        let mse = (0..w.len())
            .filter(|&i| !mask.is_kept(i))
            .map(|i| (rebuilt[i] as f64 - w[i] as f64).powi(2))
            .sum::<f64>()
            / t.samples as f64;
        assert!(
            (mse - t.trained_loss).abs() <= 1e-3 * t.trained_loss + 1e-9,
            "{mse} vs {}",
            t.trained_loss
        );
    }
}
