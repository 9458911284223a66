//! A BERT-family sentence encoder's forward pass in candle, with a hook on the tensors an
//! accelerator would receive: each layer's input and output (`hidden.i`), each FFN's input
//! (`ffn_in.i`) and its post-activation values (`ffn_act.i`), named as in
//! `minilm_l6_v2_activations.f32.safetensors`.
//!
//! The geometry (layers, width, heads, FFN width, vocabulary, positions, activation,
//! LayerNorm epsilon) comes from the model's Hugging Face `config.json`, the pooling from
//! the sentence-transformers files (`modules.json`, `1_Pooling/config.json`), so any
//! BERT-family encoder in that layout runs with no code change: [`ModelDir`] finds the
//! files, [`BertConfig`] reads and checks them, [`Bert`] loads the weights against it.
//! all-MiniLM-L6-v2 ([`BertConfig::minilm_l6`]) is the reference.
//!
//! Sentences run one at a time, unpadded, so no attention mask is needed. The embedding is
//! the configured pooling of the last hidden states (mean, `[CLS]` or max), L2-normalised
//! when the model's modules say so.

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use sparsewire_formats::TensorFile;
use std::path::{Path, PathBuf};

/// The largest geometry a config may declare (far above any BERT-family encoder; a config
/// beyond these is refused before any weight is read).
const MAX_LAYERS: usize = 256;
const MAX_WIDTH: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 22;
const MAX_POSITIONS: usize = 1 << 16;

/// The FFN's activation (`hidden_act` in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Activation {
    /// `gelu`: the exact (erf) GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    Relu,
}

/// How the last hidden states become one vector (sentence-transformers' Pooling module);
/// several modes are concatenated in that module's order: CLS, max, mean, mean/sqrt(len).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pooling {
    pub cls: bool,
    pub max: bool,
    pub mean: bool,
    pub mean_sqrt_len: bool,
}

impl Pooling {
    /// Mean pooling (MiniLM's, and the default when a model has no Pooling module).
    pub const MEAN: Pooling = Pooling {
        cls: false,
        max: false,
        mean: true,
        mean_sqrt_len: false,
    };
}

/// A BERT encoder's geometry and head, from its config.json and sentence-transformers files.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BertConfig {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
    pub pooling: Pooling,
    /// L2-normalise the pooled vector (a `Normalize` module).
    pub normalize: bool,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    num_hidden_layers: usize,
    hidden_size: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    vocab_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct StPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

fn read_text(p: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(p).map_err(|e| ModelError::File {
        path: p.to_path_buf(),
        msg: e.to_string(),
    })
}

fn parse<T: serde::de::DeserializeOwned>(p: &Path, text: &str) -> Result<T, ModelError> {
    serde_json::from_str(text).map_err(|e| ModelError::Config {
        path: p.to_path_buf(),
        msg: e.to_string(),
    })
}

impl BertConfig {
    /// all-MiniLM-L6-v2: 6 layers of width 384, 12 heads, FFN 1536, exact GELU, mean
    /// pooling, normalised.
    pub fn minilm_l6() -> Self {
        BertConfig {
            layers: 6,
            hidden: 384,
            heads: 12,
            ffn: 1536,
            vocab: 30522,
            max_positions: 512,
            type_vocab: 2,
            layer_norm_eps: 1e-12,
            activation: Activation::Gelu,
            pooling: Pooling::MEAN,
            normalize: true,
        }
    }

    /// Reads `dir/config.json` and, when present, the sentence-transformers files:
    /// `modules.json` (its Pooling module's folder holds `config.json`; a `Normalize`
    /// module turns normalisation on) or a `pooling_config.json` beside config.json.
    /// Without them: mean pooling, normalised.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let cp = dir.join("config.json");
        let hf: HfConfig = parse(&cp, &read_text(&cp)?)?;
        let bad = |msg: String| ModelError::Config {
            path: cp.clone(),
            msg,
        };
        if let Some(t) = &hf.model_type {
            if t != "bert" {
                return Err(bad(format!(
                    "model_type {t:?} is not a BERT encoder (only \"bert\" runs here)"
                )));
            }
        }
        if let Some(p) = &hf.position_embedding_type {
            if p != "absolute" {
                return Err(bad(format!(
                    "position_embedding_type {p:?} is not supported (only \"absolute\")"
                )));
            }
        }
        let activation = match hf.hidden_act.as_deref().unwrap_or("gelu") {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            a => {
                return Err(bad(format!(
                    "hidden_act {a:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)"
                )))
            }
        };
        let (mut pooling, mut normalize) = (Pooling::MEAN, true);
        let mp = dir.join("modules.json");
        let mut pool_file = dir.join("pooling_config.json");
        if mp.exists() {
            let modules: Vec<StModule> = parse(&mp, &read_text(&mp)?)?;
            normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
            if let Some(m) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
                if m.path.split(['/', '\\']).any(|c| c == "..") {
                    return Err(ModelError::Config {
                        path: mp,
                        msg: format!("module path {:?} leaves the model folder", m.path),
                    });
                }
                let inside = dir.join(&m.path).join("config.json");
                if inside.exists() {
                    pool_file = inside;
                }
            }
        }
        if pool_file.exists() {
            let p: StPooling = parse(&pool_file, &read_text(&pool_file)?)?;
            pooling = Pooling {
                cls: p.pooling_mode_cls_token,
                max: p.pooling_mode_max_tokens,
                mean: p.pooling_mode_mean_tokens,
                mean_sqrt_len: p.pooling_mode_mean_sqrt_len_tokens,
            };
            if !(pooling.cls || pooling.max || pooling.mean || pooling.mean_sqrt_len) {
                return Err(ModelError::Config {
                    path: pool_file,
                    msg: "no pooling mode is on (cls, max, mean or mean_sqrt_len)".into(),
                });
            }
        }
        let c = BertConfig {
            layers: hf.num_hidden_layers,
            hidden: hf.hidden_size,
            heads: hf.num_attention_heads,
            ffn: hf.intermediate_size,
            vocab: hf.vocab_size,
            max_positions: hf.max_position_embeddings,
            type_vocab: hf.type_vocab_size.unwrap_or(2),
            layer_norm_eps: hf.layer_norm_eps.unwrap_or(1e-12),
            activation,
            pooling,
            normalize,
        };
        c.check().map_err(bad)?;
        Ok(c)
    }

    /// Checks every size is in range and the heads divide the width.
    pub fn check(&self) -> Result<(), String> {
        let range = |what: &str, v: usize, max: usize| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what} = {v} is outside 1..={max}"))
            }
        };
        range("num_hidden_layers", self.layers, MAX_LAYERS)?;
        range("hidden_size", self.hidden, MAX_WIDTH)?;
        range("num_attention_heads", self.heads, self.hidden)?;
        range("intermediate_size", self.ffn, 4 * MAX_WIDTH)?;
        range("vocab_size", self.vocab, MAX_VOCAB)?;
        range("max_position_embeddings", self.max_positions, MAX_POSITIONS)?;
        range("type_vocab_size", self.type_vocab, 1024)?;
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden, self.heads
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(format!(
                "layer_norm_eps = {} is outside (0, 1)",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    /// The width of a site's rows.
    pub fn width(&self, site: Site) -> usize {
        match site {
            Site::FfnAct(_) => self.ffn,
            _ => self.hidden,
        }
    }

    /// Every site in forward order.
    pub fn sites(&self) -> Vec<Site> {
        let mut v = vec![Site::Hidden(0)];
        for i in 0..self.layers {
            v.extend([Site::FfnIn(i), Site::FfnAct(i), Site::Hidden(i + 1)]);
        }
        v
    }

    /// The length of the pooled embedding.
    pub fn embedding_len(&self) -> usize {
        let p = self.pooling;
        self.hidden
            * [p.cls, p.max, p.mean, p.mean_sqrt_len]
                .iter()
                .filter(|&&b| b)
                .count()
    }
}

/// Where a model's files are: its config, tokenizer, weights and (optionally) recorded
/// calibration activations.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// What reports call the model: `all-MiniLM-L6-v2`, or the folder's name.
    pub name: String,
    pub config: BertConfig,
    /// The folder config.json was read from.
    pub dir: PathBuf,
    pub tokenizer: PathBuf,
    /// safetensors (f32, f16, bf16) or `.swire`.
    pub weights: PathBuf,
    /// Activations recorded from the model (`hidden.i`, `ffn_in.i`, `ffn_act.i`), if any;
    /// without them the calibration is recorded from text (see `grid::Setup`).
    pub calibration: Option<PathBuf>,
}

fn need(p: PathBuf, what: &str) -> Result<PathBuf, ModelError> {
    if p.is_file() {
        Ok(p)
    } else {
        Err(ModelError::File {
            msg: format!("{what} not found"),
            path: p,
        })
    }
}

impl ModelDir {
    /// The reference model in the shared data folder: its config and tokenizer in
    /// `minilm_l6_v2_tokenizer/`, the bf16 weights and the recorded activations beside.
    pub fn shared_minilm(data: &Path) -> Result<Self, ModelError> {
        let dir = data.join("minilm_l6_v2_tokenizer");
        let weights = need(data.join("minilm_l6_v2.bf16.safetensors"), "model weights")?;
        let calibration = need(
            data.join("minilm_l6_v2_activations.f32.safetensors"),
            "calibration activations",
        )?;
        Ok(ModelDir {
            name: "all-MiniLM-L6-v2".into(),
            config: BertConfig::from_dir(&dir)?,
            tokenizer: need(dir.join("tokenizer.json"), "tokenizer")?,
            weights,
            calibration: Some(calibration),
            dir,
        })
    }

    /// A model folder in the Hugging Face / sentence-transformers layout: `config.json`,
    /// `tokenizer.json`, and the weights, `model.safetensors` or else the folder's only
    /// `.safetensors` or `.swire` file; `activations.f32.safetensors`, when present, is its
    /// calibration.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::File {
                path: dir.to_path_buf(),
                msg: "not a folder (a model folder holds config.json, tokenizer.json and the weights)".into(),
            });
        }
        let config = BertConfig::from_dir(dir)?;
        let tokenizer = need(dir.join("tokenizer.json"), "tokenizer")?;
        let calib = dir.join("activations.f32.safetensors");
        let weights =
            match dir.join("model.safetensors") {
                p if p.is_file() => p,
                _ => {
                    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                        .map_err(|e| ModelError::File {
                            path: dir.to_path_buf(),
                            msg: e.to_string(),
                        })?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.is_file()
                                && *p != calib
                                && matches!(
                                    p.extension().and_then(|e| e.to_str()),
                                    Some("safetensors" | "swire")
                                )
                        })
                        .collect();
                    found.sort();
                    match found.len() {
                        1 => found.remove(0),
                        0 => return Err(ModelError::File {
                            path: dir.to_path_buf(),
                            msg:
                                "no weights: model.safetensors, or one .safetensors or .swire file"
                                    .into(),
                        }),
                        _ => {
                            return Err(ModelError::File {
                                path: dir.to_path_buf(),
                                msg: format!(
                                    "{} weight files and no model.safetensors: which one? ({})",
                                    found.len(),
                                    found
                                        .iter()
                                        .filter_map(|p| p.file_name()?.to_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            })
                        }
                    }
                }
            };
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| Some(d.file_name()?.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(ModelDir {
            name,
            config,
            dir: dir.to_path_buf(),
            tokenizer,
            weights,
            calibration: calib.is_file().then_some(calib),
        })
    }
}

/// Reads a weight or activation file: safetensors (or any input sparsewire reads) or a
/// `.swire` stream, decoded.
pub fn read_tensors(p: &Path) -> Result<TensorFile, ModelError> {
    let file = |msg: String| ModelError::File {
        path: p.to_path_buf(),
        msg,
    };
    match sparsewire_formats::input::InputFile::open(p).and_then(|f| f.read_all()) {
        Ok(t) => Ok(t),
        Err(sparsewire_formats::FormatError::IsStream) => {
            let bytes = std::fs::read(p).map_err(|e| file(e.to_string()))?;
            sparsewire_pipeline::decompress(&bytes).map_err(|e| file(e.to_string()))
        }
        Err(e) => Err(file(e.to_string())),
    }
}

/// Errors of loading or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    #[error("{}: {msg}", path.display())]
    Config { path: PathBuf, msg: String },
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
    #[error("a sentence of {tokens} tokens is longer than the model's {positions} positions")]
    TooLong { tokens: usize, positions: usize },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Where a hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Site {
    /// Input of layer `i` (`i = 0`: the embeddings), or the model output (`i` = layers).
    Hidden(usize),
    /// Input of layer `i`'s FFN.
    FfnIn(usize),
    /// Layer `i`'s post-activation (GELU) values.
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
}

/// A hook may read and replace a site's `[tokens, width]` values (row-major).
pub type Hook<'a> = dyn FnMut(Site, &mut Vec<f32>) + 'a;

/// A training hook: replaces a site's `[tokens, width]` tensor with another in the autograd
/// graph (recovery's activation sparsifier with its straight-through gradient).
pub type GraphHook<'a> = dyn FnMut(Site, Tensor) -> Result<Tensor, ModelError> + 'a;

/// Runs `graph` on `x` (when given).
fn through(
    x: Tensor,
    site: Site,
    graph: &mut Option<&mut GraphHook>,
) -> Result<Tensor, ModelError> {
    match graph {
        Some(g) => g(site, x),
        None => Ok(x),
    }
}

#[derive(Clone)]
struct Linear {
    /// Transposed weight `[in, out]`, so `x W^T = x.matmul(wt)`.
    wt: Tensor,
    b: Tensor,
}

#[derive(Clone)]
struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

#[derive(Clone)]
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
#[derive(Clone)]
pub struct Bert {
    config: BertConfig,
    /// `bert.` when the weights' names carry it.
    prefix: &'static str,
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

fn norm(file: &TensorFile, p: &str, width: usize, eps: f64) -> Result<Norm, ModelError> {
    Ok(Norm {
        w: get(file, &format!("{p}.weight"), &[width])?,
        b: get(file, &format!("{p}.bias"), &[width])?,
        eps,
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
        let y = c.broadcast_div(&(var + self.eps)?.sqrt()?)?;
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

/// The word-embedding table's name (after any `bert.` prefix).
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

impl Bert {
    /// Loads the weights of a model of geometry `config` from a tensor file (safetensors
    /// read by sparsewire, or a decompressed `.swire`), checking every name and shape.
    /// Names may carry a `bert.` prefix (as `BertForMaskedLM` checkpoints do).
    pub fn load(config: &BertConfig, file: &TensorFile) -> Result<Self, ModelError> {
        config.check().map_err(|msg| ModelError::Config {
            path: PathBuf::from("config.json"),
            msg,
        })?;
        let c = config;
        let first = WORD_EMBEDDINGS;
        let prefix = if !file.tensors.iter().any(|t| t.name == first)
            && file
                .tensors
                .iter()
                .any(|t| t.name == format!("bert.{first}"))
        {
            "bert."
        } else {
            ""
        };
        let (h, eps) = (c.hidden, c.layer_norm_eps);
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let p = format!("{prefix}encoder.layer.{i}");
            layers.push(Layer {
                q: linear(file, &format!("{p}.attention.self.query"), h, h)?,
                k: linear(file, &format!("{p}.attention.self.key"), h, h)?,
                v: linear(file, &format!("{p}.attention.self.value"), h, h)?,
                o: linear(file, &format!("{p}.attention.output.dense"), h, h)?,
                ln1: norm(file, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                up: linear(file, &format!("{p}.intermediate.dense"), c.ffn, h)?,
                down: linear(file, &format!("{p}.output.dense"), h, c.ffn)?,
                ln2: norm(file, &format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        let e = format!("{prefix}embeddings");
        Ok(Bert {
            word: get(file, &format!("{e}.word_embeddings.weight"), &[c.vocab, h])?,
            pos: get(
                file,
                &format!("{e}.position_embeddings.weight"),
                &[c.max_positions, h],
            )?,
            typ: get(
                file,
                &format!("{e}.token_type_embeddings.weight"),
                &[c.type_vocab, h],
            )?,
            ln: norm(file, &format!("{e}.LayerNorm"), h, eps)?,
            layers,
            config: c.clone(),
            prefix,
        })
    }

    /// all-MiniLM-L6-v2's weights ([`BertConfig::minilm_l6`]).
    pub fn minilm(file: &TensorFile) -> Result<Self, ModelError> {
        Self::load(&BertConfig::minilm_l6(), file)
    }

    /// The geometry the model was loaded with.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden states `[tokens, hidden]` of one sentence; `hook` sees (and may
    /// replace) every transferred tensor.
    pub fn forward(&self, ids: &[u32], hook: Option<&mut Hook>) -> Result<Tensor, ModelError> {
        Ok(self.run(&[ids], hook, None, false)?.0)
    }

    /// Every layer's input and the output (`hidden.0..=layers`, `[tokens, hidden]` each),
    /// kept in the autograd graph: what recovery training pulls toward the teacher's.
    pub fn hidden_states(&self, ids: &[u32]) -> Result<Vec<Tensor>, ModelError> {
        Ok(self.run(&[ids], None, None, true)?.1)
    }

    /// [`Self::hidden_states`] with `graph` replacing every transferred tensor in the
    /// graph (the model output `hidden.{layers}` included: the hook decides). The states
    /// returned are each layer's output as computed, before `graph` sees it.
    pub fn hidden_states_with(
        &self,
        ids: &[u32],
        graph: &mut GraphHook,
    ) -> Result<Vec<Tensor>, ModelError> {
        Ok(self.run(&[ids], None, Some(graph), true)?.1)
    }

    /// [`Self::hidden_states_with`] (or [`Self::hidden_states`] without `graph`) for
    /// several sentences at once, packed: each state is `[total tokens, hidden]`, the
    /// sentences' rows one after the other in the order given, no padding. The linear
    /// layers, norms and activations run once over every row (one matrix product a layer
    /// instead of one a sentence: what makes a training batch fast on a CPU); attention
    /// stays within each sentence, so every sentence's rows equal its own
    /// [`Self::hidden_states_with`] (up to the matrix product's summation order).
    pub fn hidden_states_packed(
        &self,
        sentences: &[&[u32]],
        graph: Option<&mut GraphHook>,
    ) -> Result<Vec<Tensor>, ModelError> {
        Ok(self.run(sentences, None, graph, true)?.1)
    }

    /// Mean pooling of last hidden states, L2-normalised, as a tensor (in the autograd
    /// graph); the models recovery trains pool by mean.
    pub fn mean_embedding(h: &Tensor) -> Result<Tensor, ModelError> {
        let m = h.mean(0)?;
        let n = m.sqr()?.sum_all()?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(m.broadcast_div(&n)?)
    }

    /// The encoder's linear weights by name (`encoder.layer.I.….weight`, with the weights'
    /// `bert.` prefix if they had one; `[out, in]`).
    pub fn linear_weights(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (n, lin) in [
                ("attention.self.query", &l.q),
                ("attention.self.key", &l.k),
                ("attention.self.value", &l.v),
                ("attention.output.dense", &l.o),
                ("intermediate.dense", &l.up),
                ("output.dense", &l.down),
            ] {
                v.push((
                    format!("encoder.layer.{i}.{n}.weight"),
                    lin.wt.t().expect("2-D"),
                ));
            }
        }
        v
    }

    /// This model with some encoder linear weights replaced (`[out, in]` tensors by the
    /// names [`Self::linear_weights`] gives; for training, tensors of `Var`s, so the
    /// gradient reaches them), and the word-embedding table too when `w` names it
    /// ([`WORD_EMBEDDINGS`], `[vocab, hidden]`). Cheap: the other weights are shared.
    pub fn with_linear_weights(
        &self,
        w: &std::collections::HashMap<String, Tensor>,
    ) -> Result<Bert, ModelError> {
        let mut b = self.clone();
        let mut applied = 0;
        let word = format!("{}{WORD_EMBEDDINGS}", self.prefix);
        if let Some(t) = w.get(&word) {
            if t.dims() != self.word.dims() {
                return Err(ModelError::Shape {
                    name: word,
                    expected: self.word.dims().to_vec(),
                    got: t.dims().iter().map(|&d| d as u64).collect(),
                });
            }
            b.word = t.clone();
            applied += 1;
        }
        for (i, l) in b.layers.iter_mut().enumerate() {
            for (n, lin) in [
                ("attention.self.query", &mut l.q),
                ("attention.self.key", &mut l.k),
                ("attention.self.value", &mut l.v),
                ("attention.output.dense", &mut l.o),
                ("intermediate.dense", &mut l.up),
                ("output.dense", &mut l.down),
            ] {
                let name = format!("{}encoder.layer.{i}.{n}.weight", self.prefix);
                if let Some(t) = w.get(&name) {
                    if t.dims() != [lin.wt.dims()[1], lin.wt.dims()[0]] {
                        return Err(ModelError::Shape {
                            name,
                            expected: vec![lin.wt.dims()[1], lin.wt.dims()[0]],
                            got: t.dims().iter().map(|&d| d as u64).collect(),
                        });
                    }
                    lin.wt = t.t()?;
                    applied += 1;
                }
            }
        }
        if applied != w.len() {
            let known: Vec<String> = self.linear_weights().into_iter().map(|x| x.0).collect();
            let name = w
                .keys()
                .find(|k| !known.contains(k))
                .cloned()
                .unwrap_or_default();
            return Err(ModelError::Missing { name });
        }
        Ok(b)
    }

    /// The forward pass over `segs`, sentences packed row after row (see
    /// [`Self::hidden_states_packed`]); one sentence is the unpacked case.
    fn run(
        &self,
        segs: &[&[u32]],
        mut hook: Option<&mut Hook>,
        mut graph: Option<&mut GraphHook>,
        keep: bool,
    ) -> Result<(Tensor, Vec<Tensor>), ModelError> {
        let mut kept = Vec::new();
        let c = &self.config;
        let vocab = self.word.dims()[0];
        for ids in segs {
            if ids.len() > c.max_positions {
                return Err(ModelError::TooLong {
                    tokens: ids.len(),
                    positions: c.max_positions,
                });
            }
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(ModelError::Token { id, vocab });
            }
        }
        let n: usize = segs.iter().map(|s| s.len()).sum();
        let all: Vec<u32> = segs.iter().flat_map(|s| s.iter().copied()).collect();
        let idx = Tensor::from_vec(all, n, &Device::Cpu)?;
        // (candle's `narrow` of a whole dimension and `cat` of one tensor are clones, so
        // one sentence runs as it did before packing.)
        let pos = segs
            .iter()
            .map(|s| self.pos.narrow(0, 0, s.len()))
            .collect::<Result<Vec<_>, _>>()?;
        let pos = Tensor::cat(&pos, 0)?;
        let x = self
            .word
            .index_select(&idx, 0)?
            .add(&pos)?
            .broadcast_add(&self.typ.narrow(0, 0, 1)?)?;
        let mut x = at(self.ln.forward(&x)?, Site::Hidden(0), &mut hook)?;
        if keep {
            kept.push(x.clone());
        }
        x = through(x, Site::Hidden(0), &mut graph)?;
        let (heads, hd) = (c.heads, c.hidden / c.heads);
        let scale = 1.0 / (hd as f64).sqrt();
        for (i, l) in self.layers.iter().enumerate() {
            let (q, k, v) = (l.q.forward(&x)?, l.k.forward(&x)?, l.v.forward(&x)?);
            // Attention within each sentence.
            let mut ctxs = Vec::with_capacity(segs.len());
            let mut at_row = 0;
            for seg in segs {
                let m = seg.len();
                let split = |t: &Tensor| -> Result<Tensor, ModelError> {
                    Ok(t.narrow(0, at_row, m)?
                        .reshape((m, heads, hd))?
                        .transpose(0, 1)?
                        .contiguous()?)
                };
                let (q, k, v) = (split(&q)?, split(&k)?, split(&v)?);
                let s = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? * scale)?;
                ctxs.push(
                    softmax_rows(&s)?
                        .matmul(&v)?
                        .transpose(0, 1)?
                        .contiguous()?
                        .reshape((m, c.hidden))?,
                );
                at_row += m;
            }
            let ctx = Tensor::cat(&ctxs, 0)?;
            let a = l.ln1.forward(&l.o.forward(&ctx)?.add(&x)?)?;
            let a = through(
                at(a, Site::FfnIn(i), &mut hook)?,
                Site::FfnIn(i),
                &mut graph,
            )?;
            let up = l.up.forward(&a)?;
            let up = match c.activation {
                Activation::Gelu => up.gelu_erf()?,
                Activation::GeluTanh => up.gelu()?,
                Activation::Relu => up.relu()?,
            };
            let h = through(
                at(up, Site::FfnAct(i), &mut hook)?,
                Site::FfnAct(i),
                &mut graph,
            )?;
            let out = l.ln2.forward(&l.down.forward(&h)?.add(&a)?)?;
            x = at(out, Site::Hidden(i + 1), &mut hook)?;
            if keep {
                kept.push(x.clone());
            }
            x = through(x, Site::Hidden(i + 1), &mut graph)?;
        }
        Ok((x, kept))
    }

    /// The sentence embedding: the configured pooling of the last hidden states,
    /// L2-normalised when the model says so.
    pub fn embed(&self, ids: &[u32], hook: Option<&mut Hook>) -> Result<Vec<f32>, ModelError> {
        let h = self.forward(ids, hook)?;
        let p = self.config.pooling;
        let mut m: Vec<f32> = Vec::with_capacity(self.config.embedding_len());
        if p.cls {
            m.extend(h.get(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
        }
        if p.max {
            m.extend(h.max(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
        }
        let mean = h.mean(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if p.mean {
            m.extend(&mean);
        }
        if p.mean_sqrt_len {
            let r = (ids.len() as f32).sqrt();
            m.extend(mean.iter().map(|v| v * r));
        }
        if !self.config.normalize {
            return Ok(m);
        }
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
        let e = Bert::minilm(&empty).err().unwrap().to_string();
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
        let e = Bert::minilm(&bad).err().unwrap().to_string();
        assert!(e.contains("shape [2, 2], expected [384, 384]"), "{e}");
    }

    #[test]
    fn sites_are_in_forward_order() {
        let s = BertConfig::minilm_l6().sites();
        assert_eq!(s.len(), 1 + 3 * 6);
        assert_eq!(s[1].name(), "ffn_in.0");
        assert_eq!(s.last().unwrap().name(), "hidden.6");
    }
}
