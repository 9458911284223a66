//! Sparsifying the tensors of a file, one [`Job`] per tensor.
//!
//! **Which tensors.** Float tensors (F32, F16, BF16) of rank 2 or more are sparsified
//! (linear weights, conv filters as `[out, in*kh*kw]`, embeddings); rank 0-1 tensors
//! (biases, norms) and other dtypes pass through untouched and lossless.
//!
//! [`plan`] decides, once per tensor, what will run: the calibration inputs
//! ([`crate::calibration`]), the criterion after fallbacks (Wanda or SparseGPT with no
//! matched inputs: magnitude; SparseGPT with a block or channel pattern: Wanda; the
//! trained scorer with no inputs: magnitude, with no scorer for the tensor: Wanda; the
//! report's `note` says why), the gradients for Taylor. [`Job::run`] then sparsifies at one
//! sparsity: it loads the tensor (a job holds no tensor data, so a file is processed in the
//! memory of one tensor), prunes (SparseGPT falls back to Wanda, with a warning, on a
//! Hessian that damping cannot make positive definite), chooses and fits the
//! reconstruction with `sparsewire-re`, and measures the error of exactly what the
//! receiver will rebuild: kept values rounded to the tensor's dtype, rebuilt values too.

use crate::calibration::{find_inputs, Inputs};
use crate::metrics::{self, Errors};
use crate::{LayerInputs, NonFinite, SparsifyConfig, SparsifyError, SparsifyOptions};
use sparsewire_formats::{Dtype, TensorRef};
use sparsewire_metadata::{view_2d, Criterion, Pattern, Reconstruction, Sparsification};
use sparsewire_re::Rebuild;
use sparsewire_sparse::{Mask, SparseTensor, SparseTile};

/// Hidden units of the MLP predictor fitted for `--reconstruct mlp`.
const MLP_HIDDEN: usize = 16;

/// One tensor to sparsify, as decided by [`plan`].
#[derive(Debug)]
pub struct Job<'a> {
    /// The tensor's index in the file.
    pub index: usize,
    pub tensor: TensorRef<'a>,
    pub rows: usize,
    pub cols: usize,
    inputs: Option<Inputs>,
    gradients: Option<Vec<f32>>,
    /// The trained scorer for this tensor (`Criterion::Scorer`).
    scorer: Option<crate::scorer::Scorer>,
    /// The criterion and pattern that will run (sparsity is given per run).
    pub config: SparsifyConfig,
    pub rebuild: Rebuild,
    /// Why the criterion or the reconstruction differs from what was asked.
    pub note: Option<String>,
    nonfinite: NonFinite,
}

/// What sparsifying one tensor gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The tile for the stream writer: mask and kept values in the tensor's dtype, the
    /// header's record, the reconstruction.
    pub sparse: SparseTensor,
    pub summary: Summary,
}

/// An outcome's figures (what the report needs once the tile is written).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Fraction of elements dropped, as achieved.
    pub sparsity: f64,
    /// Error of what the receiver rebuilds.
    pub errors: Errors,
    /// error(zero-fill) / error(chosen reconstruction): above 1 when rebuilding pays.
    pub gain: f64,
    /// The criterion that chose the mask (SparseGPT may fall back to Wanda).
    pub criterion: Criterion,
}

/// The jobs of a file: one per float tensor of rank 2 or more.
pub fn plan<'a>(
    tensors: &[TensorRef<'a>],
    opts: &SparsifyOptions,
) -> Result<Vec<Job<'a>>, SparsifyError> {
    if opts.criterion == Criterion::Scorer && opts.scorers.is_none() {
        return Err(SparsifyError::Needs {
            criterion: Criterion::Scorer,
            what: "a trained scorer (--scorer FILE)",
        });
    }
    let mut out = Vec::new();
    for (index, &t) in tensors.iter().enumerate() {
        if !t.dtype.is_compressible_float() || t.shape.len() < 2 || t.numel() == 0 {
            continue;
        }
        let (rows, cols) = view_2d(t.shape, t.numel());
        let (rows, cols) = (rows as usize, cols as usize);
        let mut config = SparsifyConfig {
            criterion: opts.criterion,
            pattern: opts.pattern,
            sparsity: 0.0,
        };
        let mut note = None;
        let inputs = match &opts.calibration {
            Some(cal) => find_inputs(cal, &opts.calibration_map, t.name, cols)?,
            None => None,
        };
        if matches!(
            opts.criterion,
            Criterion::Wanda | Criterion::SparseGpt | Criterion::Scorer
        ) && inputs.is_none()
        {
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
        let scorer = match (config.criterion, &opts.scorers) {
            (Criterion::Scorer, Some(set)) => match set.for_tensor(t.name) {
                Some((_, s)) => Some(s.clone()),
                None => {
                    note = Some(
                        "no scorer in the file applies to this tensor (no matching key, no *); scored by Wanda"
                            .into(),
                    );
                    config.criterion = Criterion::Wanda;
                    None
                }
            },
            _ => None,
        };
        let gradients = match (&opts.gradients, opts.criterion) {
            (Some(g), Criterion::Taylor) => {
                let gt = g.tensors.iter().find(|x| x.name == t.name).ok_or_else(|| {
                    SparsifyError::Calibration {
                        tensor: t.name.to_string(),
                        reason: "no gradient tensor of that name in --gradients".into(),
                    }
                })?;
                if gt.shape != t.shape {
                    return Err(SparsifyError::Calibration {
                        tensor: t.name.to_string(),
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
        // Dropping what interpolation predicts best pays only if something rebuilds it.
        let mut rebuild =
            if opts.criterion == Criterion::Predictable && opts.rebuild == Rebuild::Zero {
                Rebuild::Linear
            } else {
                opts.rebuild
            };
        if rebuild == Rebuild::Spatial && conv_kernel(t.shape).is_none() {
            note = Some("spatial rebuilds conv filters [out, in, kh, kw]; zero-fill kept".into());
            rebuild = Rebuild::Zero;
        }
        out.push(Job {
            index,
            tensor: t,
            rows,
            cols,
            inputs,
            gradients,
            scorer,
            config,
            rebuild,
            note,
            nonfinite: opts.nonfinite,
        });
    }
    Ok(out)
}

/// `(kh, kw)` of a conv filter bank `[out, in, kh, kw]` with kernels of more than one value.
fn conv_kernel(shape: &[u64]) -> Option<(u32, u32)> {
    match shape {
        [_, _, kh, kw] if kh * kw > 1 => Some((*kh as u32, *kw as u32)),
        _ => None,
    }
}

impl Job<'_> {
    /// The calibration activation matched to this tensor, if any.
    pub fn calibration(&self) -> Option<&str> {
        self.inputs.as_ref().map(|i| i.name.as_str())
    }

    fn read_err(&self, reason: String) -> SparsifyError {
        SparsifyError::Read {
            tensor: self.tensor.name.to_string(),
            reason,
        }
    }

    /// Sparsifies the tensor at `sparsity` (ignored for N:M, whose pattern fixes it).
    pub fn run(&self, sparsity: f32) -> Result<Outcome, SparsifyError> {
        // An owned copy even where the source is in memory: the BF16 magnitude path's
        // passes (histogram, mask, pack) run faster over the freshly written copy than over
        // the source (MiniLM bf16's fast-profile encode: 45-55 ms against 67-96 ms).
        let t = self
            .tensor
            .to_tensor()
            .map_err(|e| self.read_err(e.to_string()))?;
        if t.dtype == Dtype::BF16 {
            if let Some(out) = self.run_bf16_magnitude(&t.data, sparsity)? {
                return Ok(out);
            }
        }
        let original = t
            .to_f32_vec()
            .ok_or_else(|| self.read_err(format!("{} is not a float dtype", t.dtype)))?;
        // NaN and infinity cannot be ranked: refused, or ranked as zero and then kept or
        // dropped (`fix_nonfinite`); errors are measured on the finite values.
        let raw = original;
        // Checked a block at a time with no early exit inside a block, so it vectorises.
        let nonfinite = raw
            .chunks(4096)
            .any(|c| c.iter().fold(false, |a, v| a | !v.is_finite()));
        if let (true, NonFinite::Error) = (nonfinite, self.nonfinite) {
            let index = raw.iter().position(|v| !v.is_finite()).expect("one exists");
            return Err(SparsifyError::NonFinite {
                tensor: t.name.clone(),
                index,
                value: raw[index],
            });
        }
        // The ranked values; the raw ones are kept apart only when they differ (a tensor-sized
        // copy otherwise).
        let (original, raw): (Vec<f32>, Option<Vec<f32>>) = if nonfinite {
            let cleaned = raw
                .iter()
                .map(|&v| if v.is_finite() { v } else { 0.0 })
                .collect();
            (cleaned, Some(raw))
        } else {
            (raw, None)
        };
        let config = SparsifyConfig {
            sparsity,
            ..self.config
        };
        let inputs = self.inputs.as_ref().map(|i| LayerInputs {
            x: &i.x,
            tokens: i.tokens,
        });
        let mut criterion = config.criterion;
        let (rows, cols) = (self.rows, self.cols);
        let result = match (&self.scorer, inputs) {
            // `plan` keeps a scorer only for a tensor the scorer criterion applies to.
            (Some(scorer), Some(inputs)) => {
                crate::sparsify_with_scorer(&original, rows, cols, &config, inputs, scorer)
            }
            _ => crate::sparsify(
                &original,
                rows,
                cols,
                &config,
                inputs,
                self.gradients.as_deref(),
            ),
        };
        let s = match result {
            // A Hessian that damping cannot make positive definite: Wanda on the same inputs.
            Err(SparsifyError::SparseGpt(e)) => {
                tracing::warn!(tensor = %t.name, error = %e, "SparseGPT failed; using Wanda");
                criterion = Criterion::Wanda;
                let wanda = SparsifyConfig {
                    criterion,
                    ..config
                };
                crate::sparsify(&original, rows, cols, &wanda, inputs, None)?
            }
            r => r?,
        };
        let mut s = s;
        if let Some(raw) = &raw {
            fix_nonfinite(
                &t.name,
                raw,
                &original,
                &mut s.mask,
                cols,
                config.pattern,
                self.nonfinite,
            )?;
            if s.updated && self.nonfinite == NonFinite::Keep {
                for (v, &r) in s.values.iter_mut().zip(raw) {
                    if !r.is_finite() {
                        *v = r;
                    }
                }
            }
        }
        let kept_nonfinite = nonfinite && self.nonfinite == NonFinite::Keep;
        let tile_err = |source| SparsifyError::Tile {
            tensor: t.name.clone(),
            source,
        };
        // The stored values: originals bit for bit, or SparseGPT's compensated values
        // rounded to the dtype.
        let tile = if s.updated {
            let dense = sparsewire_formats::from_f32(t.dtype, &s.values).expect("float tensor");
            SparseTile::from_dense(rows, cols, t.dtype, &dense, s.mask.clone())
        } else {
            SparseTile::from_dense(rows, cols, t.dtype, &t.data, s.mask.clone())
        }
        .map_err(tile_err)?;
        let (reconstruction, errors, gain) = if kept_nonfinite
            || (!s.updated
                && self.inputs.is_none()
                && self.rebuild == Rebuild::Zero
                && s.reconstruction == Reconstruction::Zero)
        {
            // Zero-fill of original values, no calibration: the error is the dropped
            // energy, no dense copy needed.
            (
                Reconstruction::Zero,
                dropped_energy(&original, &s.mask),
                1.0,
            )
        } else {
            self.choose_rebuild(&t.name, t.dtype, &original, &tile, &s.reconstruction)?
        };
        Ok(self.outcome(tile, criterion, reconstruction, errors, gain, s.updated))
    }

    /// A magnitude job on BF16 weights (any pattern; zero-fill, no calibration, every value
    /// finite) straight from the tensor's bytes: the mask, tile and errors [`Job::run`]'s
    /// general path gives, without widening the tensor to f32 (a copy twice its size, and
    /// more passes over it). `None` where it does not apply.
    fn run_bf16_magnitude(
        &self,
        data: &[u8],
        sparsity: f32,
    ) -> Result<Option<Outcome>, SparsifyError> {
        let config = SparsifyConfig {
            sparsity,
            ..self.config
        };
        if config.criterion != Criterion::Magnitude
            || data.len() as u64 != 2 * self.rows as u64 * self.cols as u64
            || self.scorer.is_some()
            || self.inputs.is_some()
            || self.rebuild != Rebuild::Zero
        {
            return Ok(None);
        }
        config.check()?;
        // Infinity and NaN (exponent all ones) take the general path and its policy.
        let (values, _) = data.as_chunks::<2>();
        let (mask, errors) = if config.pattern == Pattern::Unstructured {
            // Checked by the select's histogram, in its one pass over the values.
            match crate::pattern::unstructured_magnitude_bf16(data, config.effective_sparsity()) {
                Some(m) => m,
                None => return Ok(None),
            }
        } else {
            if crate::pattern::bf16_any_nonfinite(values) {
                return Ok(None);
            }
            // Any other pattern ranks |w| as `sparsify` does, from scores widened straight
            // from the bits (one f32 vector where the general path makes two).
            let scores: Vec<f32> = values
                .iter()
                .map(|b| f32::from_bits(((u16::from_le_bytes(*b) & 0x7fff) as u32) << 16))
                .collect();
            let mask = crate::pattern::select(
                &scores,
                self.rows,
                self.cols,
                config.pattern,
                config.effective_sparsity(),
            )?;
            drop(scores);
            let mut e = metrics::Energy::default();
            e.add_bf16(values, mask.as_bytes());
            (mask, e.errors())
        };
        let tile = SparseTile::from_dense(self.rows, self.cols, Dtype::BF16, data, mask).map_err(
            |source| SparsifyError::Tile {
                tensor: self.tensor.name.to_string(),
                source,
            },
        )?;
        Ok(Some(self.outcome(
            tile,
            config.criterion,
            Reconstruction::Zero,
            errors,
            1.0,
            false,
        )))
    }

    /// The outcome of a tile sparsified by `criterion` and what it costs: the stream's
    /// sparsification record and the summary, the achieved sparsity from the tile's mask.
    fn outcome(
        &self,
        tile: SparseTile,
        criterion: Criterion,
        reconstruction: Reconstruction,
        errors: Errors,
        gain: f64,
        values_updated: bool,
    ) -> Outcome {
        let achieved = 1.0 - tile.mask().density();
        let info = Sparsification {
            criterion,
            pattern: self.config.pattern,
            sparsity: achieved as f32,
            threshold: None,
            rel_error: errors.rel_frobenius as f32,
            output_error: errors.rel_output.map(|x| x as f32),
            values_updated,
        };
        Outcome {
            sparse: SparseTensor {
                tile,
                info,
                reconstruction,
            },
            summary: Summary {
                sparsity: achieved,
                errors,
                gain,
                criterion,
            },
        }
    }

    /// Measures what the receiver rebuilds with each candidate method and keeps the one
    /// asked for (or, with `auto`, the best, zero-fill included).
    fn choose_rebuild(
        &self,
        name: &str,
        dtype: Dtype,
        original: &[f32],
        tile: &SparseTile,
        from_engine: &Reconstruction,
    ) -> Result<(Reconstruction, Errors, f64), SparsifyError> {
        use Reconstruction as R;
        let cols = self.cols;
        let mask = tile.mask().as_ref();
        // What the receiver has: kept values as stored, zero elsewhere.
        let zero_filled = sparsewire_formats::to_f32(dtype, &tile.to_dense()).expect("float");
        let inputs = self.inputs.as_ref().map(|i| (&i.x[..], i.tokens));
        let measure = |v: &[f32]| metrics::errors(original, v, cols, inputs);
        let score = |e: &Errors| e.rel_output.unwrap_or(e.rel_frobenius);
        let rebuild = |method: &R| -> Result<Vec<f32>, SparsifyError> {
            let mut v = zero_filled.clone();
            sparsewire_re::rebuild_tensor(&mut v, mask, cols, method).map_err(|source| {
                SparsifyError::Rebuild {
                    tensor: name.to_string(),
                    source,
                }
            })?;
            // Rebuilt values go through the dtype on the receiving side too.
            let bytes = sparsewire_formats::from_f32(dtype, &v).expect("float");
            Ok(sparsewire_formats::to_f32(dtype, &bytes).expect("float"))
        };
        let zero = measure(&zero_filled);
        if let R::Channels { .. } = from_engine {
            let e = measure(&rebuild(from_engine)?);
            let gain = ratio(score(&zero), score(&e));
            return Ok((from_engine.clone(), e, gain));
        }
        // The fits see what the receiver has where kept and the truth where dropped.
        let truth: Vec<f32> = (0..original.len())
            .map(|i| {
                if mask.is_kept(i) {
                    zero_filled[i]
                } else {
                    original[i]
                }
            })
            .collect();
        let learned = || sparsewire_re::fit_learned(&truth, mask, cols);
        let dictionary = || sparsewire_re::fit_dictionary(&truth, mask, cols);
        let mlp = || sparsewire_re::fit_mlp(&truth, mask, cols, MLP_HIDDEN, 0);
        let spatial = conv_kernel(self.tensor.shape).map(|(kh, kw)| R::Spatial { kh, kw });
        let candidates = match self.rebuild {
            Rebuild::Zero => vec![],
            Rebuild::Linear => vec![R::Linear],
            Rebuild::Learned => vec![learned()],
            Rebuild::Dictionary => vec![dictionary()],
            Rebuild::Mlp => vec![mlp()],
            Rebuild::Spatial => spatial.clone().into_iter().collect(),
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
        let forced = self.rebuild != Rebuild::Auto;
        let mut best = (R::Zero, zero);
        for method in candidates {
            let e = measure(&rebuild(&method)?);
            if forced || score(&e) < score(&best.1) {
                best = (method, e);
            }
        }
        let gain = ratio(score(&zero), score(&best.1));
        Ok((best.0, best.1, gain))
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// Relative error of zero-filling the dropped elements.
/// Applies the non-finite policy to a mask chosen with NaN and infinity ranked as zero:
/// `Keep` keeps every such element, `Drop` drops it. Under N:M each full group keeps
/// exactly N: the others it keeps are the largest finite values, those kept first.
fn fix_nonfinite(
    tensor: &str,
    raw: &[f32],
    finite: &[f32],
    mask: &mut Mask,
    cols: usize,
    pattern: Pattern,
    policy: NonFinite,
) -> Result<(), SparsifyError> {
    let bad = |i: usize| !raw[i].is_finite();
    let Pattern::NM { n, m } = pattern else {
        for i in (0..raw.len()).filter(|&i| bad(i)) {
            mask.set(i, policy == NonFinite::Keep);
        }
        return Ok(());
    };
    let (nu, mu) = (n as usize, m as usize);
    for row in 0..raw.len() / cols.max(1) {
        for g in (0..cols).step_by(mu) {
            let start = row * cols + g;
            let len = mu.min(cols - g);
            let group = start..start + len;
            let count = group.clone().filter(|&i| bad(i)).count();
            if count == 0 {
                continue;
            }
            if len < mu {
                // A partial group at a row's end is stored as its bits: no count to keep.
                for i in group.filter(|&i| bad(i)) {
                    mask.set(i, policy == NonFinite::Keep);
                }
                continue;
            }
            let (fits, limit) = match policy {
                NonFinite::Keep => (count <= nu, n),
                _ => (len - count >= nu, m - n),
            };
            if !fits {
                return Err(SparsifyError::NonFiniteGroup {
                    tensor: tensor.to_string(),
                    index: start,
                    count,
                    n,
                    m,
                    policy,
                    limit,
                });
            }
            // Forced first (kept non-finite), then the finite: kept before, then larger.
            let mut order: Vec<usize> = group.clone().collect();
            order.sort_by(|&a, &b| {
                let key = |i: usize| {
                    (
                        !(policy == NonFinite::Keep && bad(i)),
                        !mask.is_kept(i),
                        std::cmp::Reverse(finite[i].abs().to_bits()),
                    )
                };
                key(a).cmp(&key(b))
            });
            let keep: Vec<usize> = order
                .into_iter()
                .filter(|&i| policy == NonFinite::Keep || !bad(i))
                .take(nu)
                .collect();
            for i in group {
                mask.set(i, keep.contains(&i));
            }
        }
    }
    Ok(())
}

fn dropped_energy(original: &[f32], mask: &Mask) -> Errors {
    let mut e = metrics::Energy::default();
    e.add(original, mask.as_bytes());
    e.errors()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BF16 paths (mask straight from the bytes, dropped energy from its histogram;
    /// the scores and the blockwise energy the other patterns use) give what the f32
    /// paths give on the widened values, bit for bit (the histogram's energy to its last
    /// bits): ragged lengths across the energy's blocks, many tied
    /// magnitudes, signed zeros, every sparsity step.
    #[test]
    fn bf16_magnitude_path_matches_the_f32_path() {
        let mut next = crate::tests::xorshift(0x5151_7777_0000_1234);
        for n in [1usize, 7, 9, 4096, 4097, 9000, 20_011] {
            // Few distinct magnitudes (ties everywhere), both signs, zeros of both signs.
            let bytes: Vec<u8> = (0..n)
                .flat_map(|_| {
                    let r = next();
                    let mag = if r.is_multiple_of(17) {
                        0
                    } else {
                        0x3c00 + (r >> 8) % 300
                    } as u16;
                    (mag | ((r >> 40) as u16 & 1) << 15).to_le_bytes()
                })
                .collect();
            let f = sparsewire_formats::to_f32(Dtype::BF16, &bytes).unwrap();
            // The scores the other patterns rank: |w| widened from the bits is what the
            // magnitude criterion computes from the f32 values.
            let widened: Vec<u32> = bytes
                .as_chunks::<2>()
                .0
                .iter()
                .map(|b| ((u16::from_le_bytes(*b) & 0x7fff) as u32) << 16)
                .collect();
            let scores: Vec<u32> = crate::criteria::magnitude(&f)
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(widened, scores, "n {n}");
            for s in [0.0, 0.1, 0.5, 0.77, 0.999, 1.0] {
                let (fast, a) =
                    crate::pattern::unstructured_magnitude_bf16(&bytes, s).expect("finite");
                let slow = crate::pattern::unstructured_magnitude(&f, s);
                assert_eq!(fast, slow, "n {n} sparsity {s}");
                let b = dropped_energy(&f, &slow);
                // Counted by magnitude, not summed value by value: the last bits may differ.
                let (x, y) = (a.rel_frobenius, b.rel_frobenius);
                assert!(
                    (x - y).abs() <= 1e-14 * y.max(1e-300),
                    "n {n} s {s}: {x} {y}"
                );
                // The other patterns' path: blockwise-widened energy, the same bits.
                let (values, _) = bytes.as_chunks::<2>();
                let mut e = metrics::Energy::default();
                e.add_bf16(values, slow.as_bytes());
                let c = e.errors();
                assert_eq!(
                    c.rel_frobenius.to_bits(),
                    b.rel_frobenius.to_bits(),
                    "n {n} s {s}"
                );
            }
        }
    }

    /// The eight-lane dropped-energy sum agrees with the plain definition on ragged
    /// lengths and random masks.
    #[test]
    fn dropped_energy_matches_the_definition() {
        let mut next = crate::tests::xorshift(0x0123_4567_89ab_cdef);
        for n in [0usize, 1, 7, 8, 9, 63, 1001] {
            let v: Vec<f32> = (0..n)
                .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
                .collect();
            let keep: Vec<bool> = (0..n).map(|_| !next().is_multiple_of(3)).collect();
            let mask = Mask::from_bools(&keep);
            let (mut d, mut t) = (0f64, 0f64);
            for (&x, &k) in v.iter().zip(&keep) {
                t += x as f64 * x as f64;
                if !k {
                    d += x as f64 * x as f64;
                }
            }
            let want = if t == 0.0 { 0.0 } else { (d / t).sqrt() };
            let got = dropped_energy(&v, &mask).rel_frobenius;
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1.0),
                "n {n}: {got} vs {want}"
            );
        }
    }
}
