//! Recovery's optimiser and checkpoints.
//!
//! [`Adam`] is AdamW with its state in the open (candle's `AdamW` keeps its moments
//! private, so a run could not be resumed where it stopped): the same update, checked
//! against candle's step for step in the tests. A [`Checkpoint`] is everything a recovery
//! run needs to go on exactly where it was: the student's weights and masks, the
//! optimiser's moments and step, the data order and position, the loss curve so far and
//! the options it was started with (a resume under other options is refused). It is two
//! files in a folder, `checkpoint.safetensors` (the tensors, f32) and `checkpoint.json`,
//! each replaced atomically; the JSON names the step it belongs to, and the tensors carry
//! the same step, so a checkpoint torn between the two writes is refused, not half-used.

use candle_core::{backprop::GradStore, Device, Tensor, Var};
use sparsewire_formats::{Dtype, Tensor as FileTensor, TensorFile};
use std::path::{Path, PathBuf};

/// AdamW (decoupled weight decay, bias-corrected moments), as `candle_nn::AdamW`.
pub struct Adam {
    pub vars: Vec<Var>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Steps taken.
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Adam {
    /// Zero moments, candle's default betas and epsilon.
    pub fn new(vars: Vec<Var>, weight_decay: f64) -> candle_core::Result<Adam> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Adam {
            m: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            v: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            vars,
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// One update at rate `lr`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let scale_m = 1.0 / (1.0 - b1.powi(self.t as i32));
        let scale_v = 1.0 / (1.0 - b2.powi(self.t as i32));
        for ((var, m), v) in self.vars.iter().zip(&mut self.m).zip(&mut self.v) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let next_m = ((&*m * b1)? + (g * (1.0 - b1))?)?;
            let next_v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let theta = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            let step = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            var.set(&(theta - (step * lr)?)?)?;
            *m = next_m;
            *v = next_v;
        }
        Ok(())
    }
}

/// Where recovery keeps its checkpoints, and how often it writes one.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    pub dir: PathBuf,
    /// Steps between checkpoints (>= 1).
    pub every: usize,
    /// Go on from the checkpoint in `dir` (it must exist and match the options).
    pub resume: bool,
}

/// The scalar part of a checkpoint (`checkpoint.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Steps done.
    pub step: usize,
    /// The options the run was started with, as JSON: a resume must match them.
    pub options: serde_json::Value,
    /// The shuffle's state, the training order and the position in it.
    pub seed: u64,
    pub order: Vec<usize>,
    pub at: usize,
    pub adam_t: usize,
    /// Training seconds before this checkpoint.
    pub seconds: f64,
    pub curve: serde_json::Value,
}

/// One linear weight's saved part: name, weights, mask, moments.
pub struct Saved {
    pub name: String,
    pub weights: Vec<f32>,
    pub keep: Vec<bool>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// A checkpoint: the scalars and each linear's tensors.
pub struct Checkpoint {
    pub state: State,
    pub linears: Vec<Saved>,
}

const JSON: &str = "checkpoint.json";
const TENSORS: &str = "checkpoint.safetensors";
const STEP_KEY: &str = "sparsewire.recover.step";

fn err(p: &Path, e: impl std::fmt::Display) -> String {
    format!("checkpoint {}: {e}", p.display())
}

impl Checkpoint {
    /// Writes the checkpoint into `dir` (created if missing): the tensors first, then the
    /// JSON, each atomically.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        let mut tensors = Vec::with_capacity(4 * self.linears.len());
        for l in &self.linears {
            let n = l.weights.len() as u64;
            tensors.push(FileTensor::from_f32(
                format!("w.{}", l.name),
                vec![n],
                &l.weights,
            ));
            tensors.push(FileTensor::from_f32(format!("m.{}", l.name), vec![n], &l.m));
            tensors.push(FileTensor::from_f32(format!("v.{}", l.name), vec![n], &l.v));
            tensors.push(
                FileTensor::new(
                    format!("keep.{}", l.name),
                    Dtype::U8,
                    vec![n],
                    l.keep.iter().map(|&k| k as u8).collect(),
                )
                .map_err(|e| err(dir, e))?,
            );
        }
        let file = TensorFile {
            tensors,
            metadata: vec![(STEP_KEY.into(), self.state.step.to_string())],
        };
        let bytes =
            sparsewire_formats::safetensors::write_safetensors(&file).map_err(|e| err(dir, e))?;
        let write = |name: &str, b: &[u8]| {
            let p = dir.join(name);
            sparsewire_formats::output::write_file(&p, b, true).map_err(|e| err(&p, e))
        };
        write(TENSORS, &bytes)?;
        let json = serde_json::to_vec(&self.state).map_err(|e| err(dir, e))?;
        write(JSON, &json)
    }

    /// Whether `dir` holds a checkpoint.
    pub fn exists(dir: &Path) -> bool {
        dir.join(JSON).is_file()
    }

    /// Reads the checkpoint in `dir`, checking that its two files belong together and
    /// that every linear of `names` (with its element count) is there.
    pub fn load(dir: &Path, names: &[(String, usize)]) -> Result<Checkpoint, String> {
        let jp = dir.join(JSON);
        let text = std::fs::read(&jp).map_err(|e| err(&jp, e))?;
        let state: State = serde_json::from_slice(&text).map_err(|e| err(&jp, e))?;
        let tp = dir.join(TENSORS);
        let bytes = std::fs::read(&tp).map_err(|e| err(&tp, e))?;
        let file =
            sparsewire_formats::safetensors::read_safetensors(&bytes).map_err(|e| err(&tp, e))?;
        let step = file
            .metadata
            .iter()
            .find(|(k, _)| k == STEP_KEY)
            .map(|(_, v)| v.as_str());
        if step != Some(state.step.to_string().as_str()) {
            return Err(err(
                dir,
                format!(
                    "{JSON} is at step {} but {TENSORS} at {}: written by two runs",
                    state.step,
                    step.unwrap_or("none")
                ),
            ));
        }
        let get = |key: String, n: usize| -> Result<&FileTensor, String> {
            let t = file
                .tensors
                .iter()
                .find(|t| t.name == key)
                .ok_or_else(|| err(&tp, format!("{key} is missing")))?;
            if t.numel() != n as u64 {
                return Err(err(
                    &tp,
                    format!("{key} has {} values, expected {n}", t.numel()),
                ));
            }
            Ok(t)
        };
        let f32s = |key: String, n: usize| -> Result<Vec<f32>, String> {
            get(key.clone(), n)?
                .to_f32_vec()
                .ok_or_else(|| err(&tp, format!("{key} is not float")))
        };
        let mut linears = Vec::with_capacity(names.len());
        for (name, n) in names {
            let keep = get(format!("keep.{name}"), *n)?;
            if keep.dtype != Dtype::U8 {
                return Err(err(&tp, format!("keep.{name} is not u8")));
            }
            linears.push(Saved {
                name: name.clone(),
                weights: f32s(format!("w.{name}"), *n)?,
                keep: keep.data.iter().map(|&b| b != 0).collect(),
                m: f32s(format!("m.{name}"), *n)?,
                v: f32s(format!("v.{name}"), *n)?,
            });
        }
        Ok(Checkpoint { state, linears })
    }
}

/// A tensor's values, flattened, as f32.
pub fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1()
}

/// `v` as a tensor of `shape`.
pub fn tensor(v: Vec<f32>, shape: (usize, usize)) -> candle_core::Result<Tensor> {
    Tensor::from_vec(v, shape, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

    #[test]
    fn adam_is_candles_adamw_step_for_step() {
        let init: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
        let a = Var::from_vec(init.clone(), (4, 6), &Device::Cpu).unwrap();
        let b = Var::from_vec(init, (4, 6), &Device::Cpu).unwrap();
        let mut mine = Adam::new(vec![a.clone()], 0.01).unwrap();
        let mut theirs = AdamW::new(
            vec![b.clone()],
            ParamsAdamW {
                lr: 0.05,
                weight_decay: 0.01,
                ..Default::default()
            },
        )
        .unwrap();
        for step in 0..5 {
            let lr = 0.05 * (step + 1) as f64 / 5.0;
            theirs.set_learning_rate(lr);
            let loss = |x: &Var| (x.as_tensor().sqr().unwrap() * (step as f64 + 1.0)).unwrap();
            let ga = loss(&a).sum_all().unwrap().backward().unwrap();
            let gb = loss(&b).sum_all().unwrap().backward().unwrap();
            mine.step(&ga, lr).unwrap();
            theirs.step(&gb).unwrap();
            let (x, y) = (
                values(a.as_tensor()).unwrap(),
                values(b.as_tensor()).unwrap(),
            );
            for (p, q) in x.iter().zip(&y) {
                assert!(
                    (p - q).abs() <= 1e-6 * q.abs().max(1.0),
                    "step {step}: {p} vs {q}"
                );
            }
        }
        assert_eq!(mine.t, 5);
    }

    #[test]
    fn a_checkpoint_round_trips_and_a_torn_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let c = Checkpoint {
            state: State {
                step: 7,
                options: serde_json::json!({"lr": 0.1}),
                seed: 42,
                order: vec![2, 0, 1],
                at: 1,
                adam_t: 7,
                seconds: 1.5,
                curve: serde_json::json!([]),
            },
            linears: vec![Saved {
                name: "l".into(),
                weights: vec![1.0, -2.0, 0.0],
                keep: vec![true, true, false],
                m: vec![0.1, 0.2, 0.0],
                v: vec![0.01, 0.02, 0.0],
            }],
        };
        c.save(d.path()).unwrap();
        assert!(Checkpoint::exists(d.path()));
        let back = Checkpoint::load(d.path(), &[("l".into(), 3)]).unwrap();
        assert_eq!(back.state.order, vec![2, 0, 1]);
        assert_eq!(back.linears[0].weights, vec![1.0, -2.0, 0.0]);
        assert_eq!(back.linears[0].keep, vec![true, true, false]);
        assert_eq!(back.linears[0].v, vec![0.01, 0.02, 0.0]);
        // Another model's linears, or a different size, are named.
        let e = Checkpoint::load(d.path(), &[("other".into(), 3)])
            .err()
            .unwrap();
        assert!(
            e.contains("w.other is missing") || e.contains("keep.other"),
            "{e}"
        );
        let e = Checkpoint::load(d.path(), &[("l".into(), 4)])
            .err()
            .unwrap();
        assert!(e.contains("expected 4"), "{e}");
        // The JSON of a later step beside the tensors of an earlier one: refused.
        let mut later = c.state.clone();
        later.step = 8;
        std::fs::write(d.path().join(JSON), serde_json::to_vec(&later).unwrap()).unwrap();
        let e = Checkpoint::load(d.path(), &[("l".into(), 3)])
            .err()
            .unwrap();
        assert!(e.contains("two runs"), "{e}");
    }
}
