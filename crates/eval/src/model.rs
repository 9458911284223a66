//! all-MiniLM-L6-v2 (a 6-layer BERT) forward pass in candle, with a hook on the tensors an
//! accelerator would receive: each layer's input and output (`hidden.i`), each FFN's input
//! (`ffn_in.i`) and its post-GELU activation (`ffn_act.i`), named as in
//! `minilm_l6_v2_activations.f32.safetensors`.
//!
//! Sentences run one at a time, unpadded, so no attention mask is needed. The embedding is
//! the mean of the last hidden states, L2-normalised (the sentence-transformers pooling).

use candle_core::{DType, Device, Tensor};
use sparsewire_formats::TensorFile;

/// BERT-base geometry of all-MiniLM-L6-v2 (its config.json).
pub const LAYERS: usize = 6;
pub const HIDDEN: usize = 384;
pub const HEADS: usize = 12;
pub const FFN: usize = 1536;
const EPS: f64 = 1e-12;

/// Errors of loading or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("model tensor {name:?} is missing")]
    Missing { name: String },
    #[error("model tensor {name:?} has shape {got:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        got: Vec<u64>,
    },
    #[error("model tensor {name:?} is {dtype}, not a float")]
    Dtype { name: String, dtype: String },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    Token { id: u32, vocab: usize },
    #[error("a sentence of {0} tokens is longer than the 512 positions")]
    TooLong(usize),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Where a hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Site {
    /// Input of layer `i` (`i = 0`: the embeddings), or the model output (`i = 6`).
    Hidden(usize),
    /// Input of layer `i`'s FFN.
    FfnIn(usize),
    /// Layer `i`'s post-GELU activation.
    FfnAct(usize),
}

impl Site {
    /// The name of this site's tensor in the reference activation file.
    pub fn name(&self) -> String {
        match self {
            Site::Hidden(i) => format!("hidden.{i}"),
            Site::FfnIn(i) => format!("ffn_in.{i}"),
            Site::FfnAct(i) => format!("ffn_act.{i}"),
        }
    }

    /// Every site in forward order.
    pub fn all() -> Vec<Site> {
        let mut v = vec![Site::Hidden(0)];
        for i in 0..LAYERS {
            v.extend([Site::FfnIn(i), Site::FfnAct(i), Site::Hidden(i + 1)]);
        }
        v
    }
}

/// A hook may read and replace a site's `[tokens, width]` values (row-major).
pub type Hook<'a> = dyn FnMut(Site, &mut Vec<f32>) + 'a;

struct Linear {
    /// Transposed weight `[in, out]`, so `x W^T = x.matmul(wt)`.
    wt: Tensor,
    b: Tensor,
}

struct Norm {
    w: Tensor,
    b: Tensor,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln1: Norm,
    up: Linear,
    down: Linear,
    ln2: Norm,
}

/// The loaded model.
pub struct MiniLm {
    word: Tensor,
    pos: Tensor,
    typ: Tensor,
    ln: Norm,
    layers: Vec<Layer>,
}

fn get(file: &TensorFile, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
    let t = file
        .tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ModelError::Missing { name: name.into() })?;
    if t.shape
        .iter()
        .map(|&d| d as usize)
        .ne(shape.iter().copied())
    {
        return Err(ModelError::Shape {
            name: name.into(),
            expected: shape.to_vec(),
            got: t.shape.clone(),
        });
    }
    let v = t.to_f32_vec().ok_or_else(|| ModelError::Dtype {
        name: name.into(),
        dtype: t.dtype.to_string(),
    })?;
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn linear(file: &TensorFile, p: &str, out: usize, inp: usize) -> Result<Linear, ModelError> {
    Ok(Linear {
        wt: get(file, &format!("{p}.weight"), &[out, inp])?
            .t()?
            .contiguous()?,
        b: get(file, &format!("{p}.bias"), &[out])?,
    })
}

fn norm(file: &TensorFile, p: &str) -> Result<Norm, ModelError> {
    Ok(Norm {
        w: get(file, &format!("{p}.weight"), &[HIDDEN])?,
        b: get(file, &format!("{p}.bias"), &[HIDDEN])?,
    })
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(x.matmul(&self.wt)?.broadcast_add(&self.b)?)
    }
}

impl Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let mean = x.mean_keepdim(1)?;
        let c = x.broadcast_sub(&mean)?;
        let var = c.sqr()?.mean_keepdim(1)?;
        let y = c.broadcast_div(&(var + EPS)?.sqrt()?)?;
        Ok(y.broadcast_mul(&self.w)?.broadcast_add(&self.b)?)
    }
}

fn softmax_rows(x: &Tensor) -> Result<Tensor, ModelError> {
    let last = x.rank() - 1;
    let m = x.max_keepdim(last)?;
    let e = x.broadcast_sub(&m)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(last)?)?)
}

/// Runs `hook` on `x` (when given), replacing it with what the hook leaves.
fn at(x: Tensor, site: Site, hook: &mut Option<&mut Hook>) -> Result<Tensor, ModelError> {
    let Some(h) = hook else { return Ok(x) };
    let dims = x.dims().to_vec();
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    h(site, &mut v);
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
}

impl MiniLm {
    /// Loads the weights from a tensor file (safetensors read by sparsewire, or a
    /// decompressed `.swire`), checking every name and shape.
    pub fn load(file: &TensorFile) -> Result<Self, ModelError> {
        let mut layers = Vec::with_capacity(LAYERS);
        for i in 0..LAYERS {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: linear(file, &format!("{p}.attention.self.query"), HIDDEN, HIDDEN)?,
                k: linear(file, &format!("{p}.attention.self.key"), HIDDEN, HIDDEN)?,
                v: linear(file, &format!("{p}.attention.self.value"), HIDDEN, HIDDEN)?,
                o: linear(file, &format!("{p}.attention.output.dense"), HIDDEN, HIDDEN)?,
                ln1: norm(file, &format!("{p}.attention.output.LayerNorm"))?,
                up: linear(file, &format!("{p}.intermediate.dense"), FFN, HIDDEN)?,
                down: linear(file, &format!("{p}.output.dense"), HIDDEN, FFN)?,
                ln2: norm(file, &format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(MiniLm {
            word: get(file, "embeddings.word_embeddings.weight", &[30522, HIDDEN])?,
            pos: get(
                file,
                "embeddings.position_embeddings.weight",
                &[512, HIDDEN],
            )?,
            typ: get(
                file,
                "embeddings.token_type_embeddings.weight",
                &[2, HIDDEN],
            )?,
            ln: norm(file, "embeddings.LayerNorm")?,
            layers,
        })
    }

    /// The last hidden states `[tokens, 384]` of one sentence; `hook` sees (and may
    /// replace) every transferred tensor.
    pub fn forward(&self, ids: &[u32], mut hook: Option<&mut Hook>) -> Result<Tensor, ModelError> {
        let n = ids.len();
        if n > 512 {
            return Err(ModelError::TooLong(n));
        }
        let vocab = self.word.dims()[0];
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::Token { id, vocab });
        }
        let idx = Tensor::from_vec(ids.to_vec(), n, &Device::Cpu)?;
        let x = self
            .word
            .index_select(&idx, 0)?
            .add(&self.pos.narrow(0, 0, n)?)?
            .broadcast_add(&self.typ.narrow(0, 0, 1)?)?;
        let mut x = at(self.ln.forward(&x)?, Site::Hidden(0), &mut hook)?;
        let hd = HIDDEN / HEADS;
        let scale = 1.0 / (hd as f64).sqrt();
        for (i, l) in self.layers.iter().enumerate() {
            let heads = |t: Tensor| -> Result<Tensor, ModelError> {
                Ok(t.reshape((n, HEADS, hd))?.transpose(0, 1)?.contiguous()?)
            };
            let q = heads(l.q.forward(&x)?)?;
            let k = heads(l.k.forward(&x)?)?;
            let v = heads(l.v.forward(&x)?)?;
            let s = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? * scale)?;
            let ctx = softmax_rows(&s)?
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((n, HIDDEN))?;
            let a = l.ln1.forward(&l.o.forward(&ctx)?.add(&x)?)?;
            let a = at(a, Site::FfnIn(i), &mut hook)?;
            let h = at(l.up.forward(&a)?.gelu_erf()?, Site::FfnAct(i), &mut hook)?;
            let out = l.ln2.forward(&l.down.forward(&h)?.add(&a)?)?;
            x = at(out, Site::Hidden(i + 1), &mut hook)?;
        }
        Ok(x)
    }

    /// The sentence embedding: mean of the last hidden states, L2-normalised.
    pub fn embed(&self, ids: &[u32], hook: Option<&mut Hook>) -> Result<Vec<f32>, ModelError> {
        let h = self.forward(ids, hook)?;
        let m = h.mean(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let norm = m.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        Ok(m.iter()
            .map(|v| (*v as f64 / norm.max(1e-12)) as f32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsewire_formats::Tensor as SwTensor;

    #[test]
    fn missing_or_misshapen_tensors_are_named() {
        let empty = TensorFile {
            tensors: vec![],
            metadata: vec![],
        };
        let e = MiniLm::load(&empty).err().unwrap().to_string();
        assert!(
            e.contains("encoder.layer.0.attention.self.query.weight"),
            "{e}"
        );
        let bad = TensorFile {
            tensors: vec![SwTensor::from_f32(
                "encoder.layer.0.attention.self.query.weight",
                vec![2, 2],
                &[0.0; 4],
            )],
            metadata: vec![],
        };
        let e = MiniLm::load(&bad).err().unwrap().to_string();
        assert!(e.contains("shape [2, 2], expected [384, 384]"), "{e}");
    }

    #[test]
    fn sites_are_in_forward_order() {
        let s = Site::all();
        assert_eq!(s.len(), 1 + 3 * LAYERS);
        assert_eq!(s[1].name(), "ffn_in.0");
        assert_eq!(s.last().unwrap().name(), "hidden.6");
    }
}
