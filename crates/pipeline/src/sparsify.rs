//! The host stage with losses: sparsify the tensors of a file, then write them as a stream.
//!
//! **Which tensors.** Float tensors (F32, F16, BF16) of rank 2 or more are sparsified (linear
//! weights, conv filters as `[out, in*kh*kw]`, embeddings); rank 0-1 tensors (biases, norms)
//! and other dtypes pass through untouched and lossless.
//!
//! **Calibration inputs** (Wanda, SparseGPT, output error) are matched to a weight
//! `[out, in]`, first rule that applies:
//! 1. an explicit map (`--calibration-map FILE`, JSON `{"weight name": "activation name"}`);
//! 2. the built-in BERT/MiniLM rules: `….layer.{i}.intermediate.dense.weight` ← `ffn_in.{i}`,
//!    `….layer.{i}.output.dense.weight` ← `ffn_act.{i}`,
//!    `….layer.{i}.attention.self.{query,key,value}.weight` ← `hidden.{i}`;
//! 3. an activation named `<weight name without .weight>.input`;
//! 4. the only activation tensor whose last dimension is `in`.
//!
//! A matched activation must be `[tokens, in]` (any leading dims flattened into tokens); a
//! mismatch is an error naming both shapes. A weight with no match is scored by magnitude
//! instead when the criterion needs inputs, and the report says so (`criterion` holds the
//! criterion actually used, `note` why).
//!
//! **SparseGPT** falls back to Wanda (with a warning, and the report's `criterion` says so)
//! on a layer whose Hessian damping cannot make positive definite, such as one whose
//! calibration inputs are not finite. (Always-zero inputs are not a problem: their diagonal
//! is set to 1 before damping.)
//!
//! **Budgets.** `Sparsity(s)` applies one sparsity everywhere. `TargetBytes` and
//! `TargetRatio` build, for every tensor, the curve of estimated bytes and measured error
//! over a grid of sparsities and let [`sparsewire_se::budget::allocate`] spread the budget;
//! the result is re-encoded until the real stream fits (or the closest reachable size is
//! reported). `MaxError(e)` gives each tensor the largest grid sparsity whose relative
//! error (output error when calibrated, else Frobenius) stays within `e`.

use crate::PipelineError;
use serde::Serialize;
use sparsewire_codec::PlaneLayout;
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_masks::binary_entropy;
use sparsewire_metadata::{view_2d, Criterion, Pattern, Plane, Sparsification};
use sparsewire_se::budget::{self, Level};
use sparsewire_se::{metrics, LayerInputs, SparsifyConfig, SparsifyError};
use sparsewire_stream::{encode_sparse, EncodeOptions, Reader, TensorMask};

/// How much to drop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// The same sparsity for every sparsified tensor.
    Sparsity(f32),
    /// Whole stream at most this fraction of the original tensor bytes.
    TargetRatio(f64),
    /// Whole stream at most this many bytes.
    TargetBytes(u64),
    /// Per tensor, the sparsest grid level within this relative error.
    MaxError(f64),
}

/// How dropped weights are rebuilt on the accelerator side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rebuild {
    /// Dropped elements are zero.
    #[default]
    Zero,
    /// Interpolated from the nearest kept elements of the row.
    Linear,
    /// A ridge predictor on the row context, fitted per tensor on the dropped values.
    Learned,
    /// One entry per column: the mean of the column's dropped values.
    Dictionary,
    /// Conv filters (`[out, in, kh, kw]`): kept neighbours inside each kernel; other
    /// tensors fall back to `Linear`.
    Spatial,
    /// Per tensor, whichever of these has the lowest error (zero-fill included).
    Auto,
}

/// Options of the lossy host stage.
#[derive(Debug, Clone)]
pub struct SparsifyOptions {
    /// Reconstruction beyond zero-fill (the correlation criterion with the channel pattern
    /// always rebuilds channels from its stored combinations).
    pub rebuild: Rebuild,
    pub criterion: Criterion,
    pub pattern: Pattern,
    pub budget: Budget,
    /// Calibration activations (`[tokens, in]` tensors).
    pub calibration: Option<TensorFile>,
    /// Weight name -> activation name, before the built-in rules.
    pub calibration_map: Vec<(String, String)>,
    /// Gradients with the weights' names and shapes (Taylor).
    pub gradients: Option<TensorFile>,
}

/// The sparsity grid budgets search over.
pub const GRID: [f32; 20] = [
    0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
    0.85, 0.9, 0.95,
];

/// What happened to one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorSparsity {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub criterion: String,
    pub pattern: String,
    pub sparsity: f64,
    pub input_bytes: u64,
    /// Stored bytes: tiles plus shared models.
    pub output_bytes: u64,
    pub bits_per_element: f64,
    pub mask_bits_per_element: f64,
    /// H(density): the order-0 bound of an unstructured mask.
    pub mask_entropy_bits_per_element: f64,
    pub rel_frobenius: f64,
    pub snr_db: f64,
    pub rel_output: Option<f64>,
    /// The reconstruction the receiver applies: zero, linear, learned or channels.
    pub reconstruction: String,
    /// error(zero-fill) / error(reconstruction): above 1 when rebuilding pays.
    pub reconstruction_gain: f64,
    pub note: Option<String>,
}

/// What the lossy host stage did to a file.
#[derive(Debug, Clone, Serialize)]
pub struct SparsifyReport {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub ratio: f64,
    pub tensors: Vec<TensorSparsity>,
    /// With a byte budget: the same budget spread uniformly, for comparison.
    pub allocation: Option<AllocationReport>,
}

/// Adaptive against uniform allocation at the same (estimated) bytes.
#[derive(Debug, Clone, Serialize)]
pub struct AllocationReport {
    pub budget_bytes: u64,
    /// Σ numel · rel_err² (see `sparsewire_se::budget`), adaptive and uniform.
    pub adaptive_cost: f64,
    pub uniform_cost: f64,
    pub uniform_sparsity: f64,
    /// uniform_cost / adaptive_cost (> 1: adaptive is better).
    pub gain: f64,
}

/// Calibration inputs of one weight: the flattened `[tokens, in]` values.
struct Inputs {
    x: Vec<f32>,
    tokens: usize,
}

fn layer_index(name: &str) -> Option<(&str, &str)> {
    // "<prefix>layer.<i>.<rest>" -> (i, rest)
    let at = name.find("layer.")? + "layer.".len();
    let rest = &name[at..];
    let dot = rest.find('.')?;
    Some((&rest[..dot], &rest[dot + 1..]))
}

fn builtin_activation(weight: &str) -> Option<String> {
    let (i, rest) = layer_index(weight)?;
    match rest {
        "intermediate.dense.weight" => Some(format!("ffn_in.{i}")),
        "output.dense.weight" => Some(format!("ffn_act.{i}")),
        "attention.self.query.weight"
        | "attention.self.key.weight"
        | "attention.self.value.weight" => Some(format!("hidden.{i}")),
        _ => None,
    }
}

fn find_inputs(
    opts: &SparsifyOptions,
    weight: &str,
    cols: usize,
) -> Result<Option<Inputs>, PipelineError> {
    let Some(cal) = &opts.calibration else {
        return Ok(None);
    };
    let by_name = |n: &str| cal.tensors.iter().find(|t| t.name == n);
    let explicit = opts
        .calibration_map
        .iter()
        .find(|(w, _)| w == weight)
        .map(|(_, a)| a.clone());
    let named = explicit
        .clone()
        .or_else(|| builtin_activation(weight).filter(|a| by_name(a).is_some()))
        .or_else(|| {
            let n = format!("{}.input", weight.trim_end_matches(".weight"));
            by_name(&n).map(|_| n)
        });
    let t = match named {
        Some(n) => Some(by_name(&n).ok_or_else(|| PipelineError::Calibration {
            tensor: n.clone(),
            reason: format!("matched to weight {weight:?} but not in the calibration file"),
        })?),
        None => {
            let fits: Vec<&Tensor> = cal
                .tensors
                .iter()
                .filter(|t| t.shape.last() == Some(&(cols as u64)) && t.shape.len() >= 2)
                .collect();
            if fits.len() == 1 {
                Some(fits[0])
            } else {
                None
            }
        }
    };
    let Some(t) = t else { return Ok(None) };
    let x = t.to_f32_vec().ok_or_else(|| PipelineError::Calibration {
        tensor: t.name.clone(),
        reason: format!("dtype {} is not a float", t.dtype),
    })?;
    if t.shape.last() != Some(&(cols as u64)) || x.is_empty() {
        return Err(PipelineError::Calibration {
            tensor: t.name.clone(),
            reason: format!(
                "shape {:?} does not fit weight {weight:?}, which takes {cols} inputs",
                t.shape
            ),
        });
    }
    let tokens = x.len() / cols;
    Ok(Some(Inputs { x, tokens }))
}

/// Stored values of a sparsified tensor in its dtype: kept originals bit for bit (or the
/// compensated values, rounded), zero elsewhere.
fn stored_bytes(t: &Tensor, keep: &[bool], values: &[f32], updated: bool) -> Vec<u8> {
    let eb = (t.dtype.bits() / 8) as usize;
    if !updated {
        // Originals where kept, zero elsewhere: a branch-free select per element width.
        let mut out = vec![0u8; t.data.len()];
        match eb {
            2 => {
                for ((o, v), &k) in out
                    .chunks_exact_mut(2)
                    .zip(t.data.chunks_exact(2))
                    .zip(keep)
                {
                    let x = u16::from_le_bytes([v[0], v[1]]) & (k as u16).wrapping_neg();
                    o.copy_from_slice(&x.to_le_bytes());
                }
            }
            _ => {
                for ((o, v), &k) in out
                    .chunks_exact_mut(eb)
                    .zip(t.data.chunks_exact(eb))
                    .zip(keep)
                {
                    if k {
                        o.copy_from_slice(v);
                    }
                }
            }
        }
        return out;
    }
    let mut out = vec![0u8; t.data.len()];
    for (i, &k) in keep.iter().enumerate() {
        if !k {
            continue;
        }
        let o = &mut out[i * eb..(i + 1) * eb];
        match t.dtype {
            Dtype::BF16 => o.copy_from_slice(&half::bf16::from_f32(values[i]).to_le_bytes()),
            Dtype::F16 => o.copy_from_slice(&half::f16::from_f32(values[i]).to_le_bytes()),
            _ => o.copy_from_slice(&values[i].to_le_bytes()),
        }
    }
    out
}

/// Estimated bytes of a tensor's kept values and mask: the order-0 entropy of the kept
/// values' heads, the other value bits raw, and the mask at H(density) (N:M: its code).
fn estimate_bytes(t: &Tensor, keep: &[bool], pattern: Pattern) -> f64 {
    let Some(layout) = PlaneLayout::for_dtype(t.dtype) else {
        return t.data.len() as f64;
    };
    let vb = layout.value_bytes;
    let mut hist = vec![0u64; 1 << layout.head_bits];
    let mut kept = 0u64;
    for (v, &k) in t.data.chunks_exact(vb).zip(keep) {
        if k {
            hist[layout.head_of(v) as usize] += 1;
            kept += 1;
        }
    }
    let n = keep.len() as f64;
    let head_bits = sparsewire_codec::entropy_bits(&hist);
    let other = kept as f64 * (vb as f64 * 8.0 - layout.head_bits as f64);
    let mask_bits = match pattern {
        Pattern::NM { n: kn, m } => {
            let combos = (0..kn as u64).fold(1u64, |a, i| a * (m as u64 - i) / (i + 1));
            n / m as f64 * (combos as f64).log2()
        }
        _ => n * binary_entropy(kept as f64 / n.max(1.0)),
    };
    (head_bits + other + mask_bits) / 8.0
}

struct Prepared<'a> {
    index: usize,
    tensor: &'a Tensor,
    rows: usize,
    cols: usize,
    original: Vec<f32>,
    inputs: Option<Inputs>,
    gradients: Option<Vec<f32>>,
    config: SparsifyConfig,
    rebuild: Rebuild,
    note: Option<String>,
}

struct Outcome {
    /// error(zero-fill) / error(chosen reconstruction).
    gain: f64,
    /// The criterion that chose the mask (SparseGPT may fall back to Wanda).
    criterion: Criterion,
    keep: Vec<bool>,
    stored: Vec<u8>,
    errors: metrics::Errors,
    reconstruction: sparsewire_metadata::Reconstruction,
}

fn run_one(p: &Prepared<'_>, sparsity: f32) -> Result<Outcome, PipelineError> {
    let rebuild = p.rebuild;
    let config = SparsifyConfig {
        sparsity,
        ..p.config
    };
    let inputs = p.inputs.as_ref().map(|i| LayerInputs {
        x: &i.x,
        tokens: i.tokens,
    });
    let mut criterion = config.criterion;
    let s = match sparsewire_se::sparsify(
        &p.original,
        p.rows,
        p.cols,
        &config,
        inputs,
        p.gradients.as_deref(),
    ) {
        // A Hessian that damping cannot make positive definite: Wanda on the same inputs.
        Err(SparsifyError::SparseGpt(e)) => {
            tracing::warn!(tensor = %p.tensor.name, error = %e, "SparseGPT failed; using Wanda");
            criterion = Criterion::Wanda;
            let wanda = SparsifyConfig {
                criterion,
                ..config
            };
            sparsewire_se::sparsify(&p.original, p.rows, p.cols, &wanda, inputs, None)?
        }
        r => r?,
    };
    let stored = stored_bytes(p.tensor, &s.keep, &s.values, s.updated);
    // What the stream will hold, as f32: the originals where kept (or, after SparseGPT,
    // the compensated values as rounded to the dtype), zero elsewhere.
    // The common case, zero-fill of original values with no calibration and no rebuild:
    // the error is the dropped energy, no dense copy needed.
    if !s.updated
        && p.inputs.is_none()
        && rebuild == Rebuild::Zero
        && s.reconstruction == sparsewire_metadata::Reconstruction::Zero
    {
        let (mut dropped, mut total) = (0f64, 0f64);
        for (&v, &k) in p.original.iter().zip(&s.keep) {
            let e = (v as f64) * (v as f64);
            total += e;
            if !k {
                dropped += e;
            }
        }
        let rel = if total == 0.0 {
            0.0
        } else {
            (dropped / total).sqrt()
        };
        return Ok(Outcome {
            gain: 1.0,
            criterion,
            keep: s.keep,
            stored,
            errors: metrics::Errors {
                rel_frobenius: rel,
                snr_db: if rel == 0.0 {
                    f64::INFINITY
                } else {
                    -20.0 * rel.log10()
                },
                rel_output: None,
            },
            reconstruction: s.reconstruction,
        });
    }
    let mut changed: Vec<f32> = if s.updated {
        sparsewire_formats::to_f32(p.tensor.dtype, &stored).expect("float tensor")
    } else {
        p.original
            .iter()
            .zip(&s.keep)
            .map(|(&v, &k)| if k { v } else { 0.0 })
            .collect()
    };
    // Measure what the receiver will see after reconstruction; with `Auto`, keep the best.
    let inputs_ref = p.inputs.as_ref().map(|i| (&i.x[..], i.tokens));
    let measure = |v: &[f32]| metrics::errors(&p.original, v, p.cols, inputs_ref);
    let score = |e: &metrics::Errors| e.rel_output.unwrap_or(e.rel_frobenius);
    let zero_errors = measure(&changed);
    let mut best = (s.reconstruction.clone(), zero_errors);
    if let sparsewire_metadata::Reconstruction::Channels { combinations } = &s.reconstruction {
        sparsewire_re::rebuild_channels(&mut changed, p.cols, combinations)
            .expect("combinations made from this tensor are in range");
        best.1 = measure(&changed);
    } else {
        use sparsewire_metadata::Reconstruction as R;
        // What the receiver has where kept, the truth where dropped: the fits see both.
        let truth: Vec<f32> = changed
            .iter()
            .zip(&p.original)
            .zip(&s.keep)
            .map(|((&c, &o), &k)| if k { c } else { o })
            .collect();
        let learned = || sparsewire_re::fit_learned(&truth, &s.keep, p.cols);
        let dictionary = || sparsewire_re::fit_dictionary(&truth, &s.keep, p.cols);
        // Conv filters: kernels of kh x kw (more than one value) along each row.
        let spatial = match p.tensor.shape[..] {
            [_, _, kh, kw] if kh * kw > 1 => Some(R::Spatial {
                kh: kh as u32,
                kw: kw as u32,
            }),
            _ => None,
        };
        let candidates = match rebuild {
            Rebuild::Zero => vec![],
            Rebuild::Linear => vec![R::Linear],
            Rebuild::Learned => vec![learned()],
            Rebuild::Dictionary => vec![dictionary()],
            Rebuild::Spatial => vec![spatial.clone().unwrap_or(R::Linear)],
            Rebuild::Auto => [
                Some(R::Linear),
                Some(learned()),
                Some(dictionary()),
                spatial,
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        let forced = rebuild != Rebuild::Auto;
        for method in candidates {
            let mut v = changed.clone();
            sparsewire_re::rebuild(&mut v, &s.keep, p.cols, &method)
                .expect("methods made here are valid");
            // Rebuilt values go through the dtype on the receiving side too.
            let v = sparsewire_formats::to_f32(
                p.tensor.dtype,
                &sparsewire_formats::from_f32(p.tensor.dtype, &v).expect("float tensor"),
            )
            .expect("float tensor");
            let e = measure(&v);
            if forced || score(&e) < score(&best.1) {
                best = (method, e);
            }
        }
    }
    let (reconstruction, errors) = best;
    let gain = if score(&errors) > 0.0 {
        score(&zero_errors) / score(&errors)
    } else {
        f64::INFINITY
    };
    Ok(Outcome {
        gain,
        criterion,
        keep: s.keep,
        stored,
        errors,
        reconstruction,
    })
}

fn prepare<'a>(
    file: &'a TensorFile,
    opts: &SparsifyOptions,
) -> Result<Vec<Prepared<'a>>, PipelineError> {
    let mut out = Vec::new();
    for (index, t) in file.tensors.iter().enumerate() {
        if !t.dtype.is_compressible_float() || t.shape.len() < 2 || t.data.is_empty() {
            continue;
        }
        let (rows, cols) = view_2d(&t.shape, t.numel());
        let (rows, cols) = (rows as usize, cols as usize);
        let mut config = SparsifyConfig {
            criterion: opts.criterion,
            pattern: opts.pattern,
            sparsity: 0.0,
        };
        let mut note = None;
        let needs_inputs = matches!(opts.criterion, Criterion::Wanda | Criterion::SparseGpt);
        let inputs = find_inputs(opts, &t.name, cols)?;
        if needs_inputs && inputs.is_none() {
            note = Some(format!(
                "no calibration input matched (in = {cols}); scored by magnitude"
            ));
            config.criterion = Criterion::Magnitude;
        }
        if config.criterion == Criterion::SparseGpt
            && matches!(opts.pattern, Pattern::Block { .. } | Pattern::Channel)
        {
            note = Some("SparseGPT takes unstructured and N:M patterns; scored by Wanda".into());
            config.criterion = Criterion::Wanda;
        }
        let gradients = match (&opts.gradients, opts.criterion) {
            (Some(g), Criterion::Taylor) => {
                let gt = g.tensors.iter().find(|x| x.name == t.name).ok_or_else(|| {
                    PipelineError::Calibration {
                        tensor: t.name.clone(),
                        reason: "no gradient tensor of that name in --gradients".into(),
                    }
                })?;
                if gt.shape != t.shape {
                    return Err(PipelineError::Calibration {
                        tensor: t.name.clone(),
                        reason: format!(
                            "gradient shape {:?}, weight shape {:?}",
                            gt.shape, t.shape
                        ),
                    });
                }
                gt.to_f32_vec()
            }
            _ => None,
        };
        out.push(Prepared {
            index,
            tensor: t,
            rows,
            cols,
            original: t.to_f32_vec().expect("float tensor"),
            inputs,
            gradients,
            config,
            // Dropping what interpolation predicts best pays only if something rebuilds it.
            rebuild: if opts.criterion == Criterion::Predictable && opts.rebuild == Rebuild::Zero {
                Rebuild::Linear
            } else {
                opts.rebuild
            },
            note,
        });
    }
    Ok(out)
}

/// Sparsifies `file` under `opts`, then encodes it. Returns the stream and the report.
pub fn sparsify_and_compress(
    file: &TensorFile,
    opts: &SparsifyOptions,
    eopts: &EncodeOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<u8>, SparsifyReport), PipelineError> {
    SparsifyConfig {
        criterion: opts.criterion,
        pattern: opts.pattern,
        sparsity: match opts.budget {
            Budget::Sparsity(s) => s,
            _ => 0.0,
        },
    }
    .check()?;
    let prepared = prepare(file, opts)?;
    let total = prepared.len();
    let fixed = match opts.pattern {
        Pattern::NM { n, m } => Some(1.0 - n as f32 / m as f32),
        _ => None,
    };
    // Per tensor: the sparsity to use.
    let mut allocation = None;
    let levels: Vec<f32> = match (opts.budget, fixed) {
        (_, Some(s)) | (Budget::Sparsity(s), None) => vec![s; total],
        (Budget::MaxError(e), None) => {
            let mut v = Vec::with_capacity(total);
            for (i, p) in prepared.iter().enumerate() {
                let mut best = 0.0;
                for &s in &GRID[1..] {
                    let o = run_one(p, s)?;
                    let err = o.errors.rel_output.unwrap_or(o.errors.rel_frobenius);
                    if err > e {
                        break;
                    }
                    best = s;
                }
                v.push(best);
                progress(i + 1, total);
            }
            v
        }
        (Budget::TargetBytes(_) | Budget::TargetRatio(_), None) => {
            let budget_bytes = match opts.budget {
                Budget::TargetBytes(b) => b as f64,
                Budget::TargetRatio(r) => r * file.byte_len() as f64,
                _ => unreachable!(),
            };
            let (choice, report) = allocate_budget(file, &prepared, budget_bytes, eopts, progress)?;
            allocation = Some(report);
            choice
        }
    };

    let (stream, done) = encode_levels(file, &prepared, &levels, eopts, &|i| {
        if allocation.is_none() {
            progress(i, total);
        }
    })?;
    let reader = Reader::new(&stream[..])?;
    let mut tensors = Vec::new();
    for Done {
        at,
        achieved,
        errors,
        criterion,
        method,
        gain,
    } in done
    {
        let p = &prepared[at];
        let meta = &reader.header().tensors[p.index];
        let models: u64 = meta.models.iter().map(|m| m.len() as u64).sum();
        let stored: u64 = meta.tiles.iter().map(|t| t.len).sum::<u64>() + models;
        let mask: u64 = meta
            .tiles
            .iter()
            .flat_map(|t| &t.streams)
            .filter(|s| matches!(s.plane, Plane::Mask(_)))
            .map(|s| s.len)
            .sum();
        let n = p.tensor.numel() as f64;
        tensors.push(TensorSparsity {
            name: p.tensor.name.clone(),
            dtype: p.tensor.dtype.to_string(),
            shape: p.tensor.shape.clone(),
            criterion: format!("{criterion:?}"),
            pattern: format!("{:?}", opts.pattern),
            sparsity: achieved,
            input_bytes: p.tensor.data.len() as u64,
            output_bytes: stored,
            bits_per_element: stored as f64 * 8.0 / n,
            mask_bits_per_element: mask as f64 * 8.0 / n,
            mask_entropy_bits_per_element: binary_entropy(1.0 - achieved),
            rel_frobenius: errors.rel_frobenius,
            snr_db: errors.snr_db,
            rel_output: errors.rel_output,
            reconstruction: method.into(),
            reconstruction_gain: gain,
            note: p.note.clone(),
        });
    }
    let report = SparsifyReport {
        input_bytes: file.byte_len(),
        output_bytes: stream.len() as u64,
        ratio: crate::ratio(stream.len() as u64, file.byte_len()),
        tensors,
        allocation,
    };
    Ok((stream, report))
}

/// Builds every tensor's curve over [`GRID`], allocates the budget greedily, and compares
/// with the uniform allocation. Each allocation is checked by a real encode: the target is
/// corrected both ways (six passes at most), then bisected between the largest allocation
/// that fits and the nearest one that did not.
fn allocate_budget(
    file: &TensorFile,
    prepared: &[Prepared<'_>],
    budget_bytes: f64,
    eopts: &EncodeOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<f32>, AllocationReport), PipelineError> {
    // Bytes of everything that is not sparsified (lossless), from a real encode.
    let is_sparse: Vec<bool> = {
        let mut v = vec![false; file.tensors.len()];
        for p in prepared {
            v[p.index] = true;
        }
        v
    };
    let rest = TensorFile {
        tensors: file
            .tensors
            .iter()
            .zip(&is_sparse)
            .filter(|(_, &s)| !s)
            .map(|(t, _)| t.clone())
            .collect(),
        metadata: file.metadata.clone(),
    };
    let fixed_bytes = sparsewire_stream::encode(&rest, eopts, &|_| {})?.len() as f64;
    let mut curves = Vec::with_capacity(prepared.len());
    for (i, p) in prepared.iter().enumerate() {
        let n = p.tensor.numel() as f64;
        let mut curve = Vec::with_capacity(GRID.len());
        for &s in &GRID {
            let o = run_one(p, s)?;
            let err = o.errors.rel_output.unwrap_or(o.errors.rel_frobenius);
            let t = Tensor {
                data: o.stored,
                ..p.tensor.clone()
            };
            curve.push(Level {
                sparsity: s as f64,
                bytes: estimate_bytes(&t, &o.keep, p.config.pattern),
                cost: n * err * err,
            });
        }
        curves.push(curve);
        progress(i + 1, prepared.len());
    }
    // The byte estimate is only an estimate: correct the target by what a real encode gave,
    // both ways, keeping the largest allocation that fits; then bisect between it and the
    // nearest one that did not.
    let mut target = budget_bytes - fixed_bytes;
    let mut best: Option<(f64, f64, Vec<usize>)> = None; // (target, actual, choice)
    let mut failed: Option<f64> = None;
    let mut closest = f64::INFINITY;
    let try_target = |t: f64| -> Result<Option<(f64, Vec<usize>)>, PipelineError> {
        let Ok(c) = budget::allocate(&curves, t) else {
            return Ok(None);
        };
        let levels: Vec<f32> = c.iter().map(|&i| GRID[i]).collect();
        let actual = encoded_size(file, prepared, &levels, eopts)? as f64;
        tracing::debug!(target = t, actual, budget_bytes, "budget pass");
        Ok(Some((actual, c)))
    };
    for _ in 0..6 {
        let Some((actual, c)) = try_target(target)? else {
            break;
        };
        closest = closest.min(actual);
        if actual <= budget_bytes {
            if best.as_ref().is_none_or(|b| actual > b.1) {
                best = Some((target, actual, c));
            }
            if actual >= budget_bytes * 0.995 {
                break;
            }
        } else {
            failed = Some(failed.map_or(target, |f: f64| f.min(target)));
        }
        let next = target * (budget_bytes - fixed_bytes) / (actual - fixed_bytes).max(1.0);
        if (next - target).abs() < 1.0 {
            break;
        }
        target = next;
    }
    let (mut lo, mut lo_actual, mut choice) = best.ok_or(PipelineError::Budget {
        budget: budget_bytes as u64,
        closest: closest as u64,
    })?;
    if let Some(mut hi) = failed.filter(|&f| f > lo) {
        for _ in 0..4 {
            let mid = (lo + hi) / 2.0;
            match try_target(mid)? {
                Some((actual, c)) if actual <= budget_bytes => {
                    if actual > lo_actual {
                        (lo_actual, choice) = (actual, c);
                    }
                    lo = mid;
                }
                _ => hi = mid,
            }
        }
    }
    let target = lo;
    let (_, adaptive_cost) = budget::totals(&curves, &choice);
    // Uniform at exactly the same bytes: between the grid level that fits and the next,
    // interpolated (cost is convex in sparsity, so this is the uniform's best case).
    let uniform_level = budget::uniform(&curves, target).map_err(|e| PipelineError::Budget {
        budget: budget_bytes as u64,
        closest: (e.closest + fixed_bytes) as u64,
    })?;
    let level_totals = |i: usize| budget::totals(&curves, &vec![i; curves.len()]);
    let (b0, c0) = level_totals(uniform_level);
    let (uniform_cost, uniform_sparsity) = if uniform_level > 0 && uniform_level + 1 < GRID.len() {
        let (b1, c1) = level_totals(uniform_level - 1);
        // Level `uniform_level - 1` is denser and over budget; `uniform_level` fits.
        let f = ((b1 - target) / (b1 - b0)).clamp(0.0, 1.0);
        (
            c1 + (c0 - c1) * f,
            GRID[uniform_level - 1] as f64
                + (GRID[uniform_level] - GRID[uniform_level - 1]) as f64 * f,
        )
    } else {
        (c0, GRID[uniform_level] as f64)
    };
    Ok((
        choice.iter().map(|&c| GRID[c]).collect(),
        AllocationReport {
            budget_bytes: budget_bytes as u64,
            adaptive_cost,
            uniform_cost,
            uniform_sparsity,
            gain: if adaptive_cost > 0.0 {
                uniform_cost / adaptive_cost
            } else {
                f64::INFINITY
            },
        },
    ))
}

fn encoded_size(
    file: &TensorFile,
    prepared: &[Prepared<'_>],
    levels: &[f32],
    eopts: &EncodeOptions,
) -> Result<usize, PipelineError> {
    Ok(encode_levels(file, prepared, levels, eopts, &|_| {})?
        .0
        .len())
}

/// What sparsifying one prepared tensor (`prepared[at]`) gave, for the report.
struct Done {
    at: usize,
    achieved: f64,
    errors: metrics::Errors,
    criterion: Criterion,
    method: &'static str,
    gain: f64,
}

/// Sparsifies every prepared tensor at its level and encodes the whole file: the stream
/// the budget checks is the stream that is written. `progress` gets the count done.
fn encode_levels(
    file: &TensorFile,
    prepared: &[Prepared<'_>],
    levels: &[f32],
    eopts: &EncodeOptions,
    progress: &dyn Fn(usize),
) -> Result<(Vec<u8>, Vec<Done>), PipelineError> {
    // Sparsified tensors get their stored bytes below; only the others are copied.
    let sparse_idx: std::collections::HashSet<usize> = prepared.iter().map(|p| p.index).collect();
    let mut stored_file = TensorFile {
        tensors: file
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if sparse_idx.contains(&i) {
                    Tensor {
                        name: t.name.clone(),
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                        data: Vec::new(),
                    }
                } else {
                    t.clone()
                }
            })
            .collect(),
        metadata: file.metadata.clone(),
    };
    let mut masks: Vec<Option<TensorMask>> = vec![None; file.tensors.len()];
    let mut done = Vec::with_capacity(prepared.len());
    for (at, (p, &s)) in prepared.iter().zip(levels).enumerate() {
        let o = run_one(p, s)?;
        let achieved = o.keep.iter().filter(|&&k| !k).count() as f64 / o.keep.len() as f64;
        let method = match &o.reconstruction {
            sparsewire_metadata::Reconstruction::Zero => "zero",
            sparsewire_metadata::Reconstruction::Linear => "linear",
            sparsewire_metadata::Reconstruction::Learned { .. } => "learned",
            sparsewire_metadata::Reconstruction::Channels { .. } => "channels",
            sparsewire_metadata::Reconstruction::Dictionary { .. } => "dictionary",
            sparsewire_metadata::Reconstruction::Spatial { .. } => "spatial",
        };
        stored_file.tensors[p.index].data = o.stored;
        masks[p.index] = Some(TensorMask {
            keep: o.keep,
            info: Sparsification {
                criterion: o.criterion,
                pattern: p.config.pattern,
                sparsity: achieved as f32,
                threshold: None,
                rel_error: o.errors.rel_frobenius as f32,
                output_error: o.errors.rel_output.map(|x| x as f32),
                values_updated: o.criterion == Criterion::SparseGpt,
            },
            reconstruction: o.reconstruction,
        });
        done.push(Done {
            at,
            achieved,
            errors: o.errors,
            criterion: o.criterion,
            method,
            gain: o.gain,
        });
        progress(at + 1);
    }
    let stream = encode_sparse(&stored_file, &masks, eopts, &|_| {})?;
    Ok((stream, done))
}
