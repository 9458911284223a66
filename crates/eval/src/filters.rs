//! Conv filters at tensor level (PP-OCRv4 detection): bits per weight against relative
//! error and reconstruction gain, per layer type.
//!
//! There is no end-to-end model here (the OCR network is not reimplemented), so quality
//! is the relative Frobenius error of each rebuilt filter bank and the gain is
//! error(zero-fill) / error(method), aggregated per layer type (1x1, k x k, depthwise)
//! weighted by each tensor's size.

use crate::grid::GridError;
use sparsewire_formats::TensorFile;
use sparsewire_metadata::Criterion;
use sparsewire_pipeline::{compress, CompressOptions};
use sparsewire_se::{Budget, Rebuild, SparsifyOptions};
use std::collections::BTreeMap;

/// One setting on one layer type.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FilterCell {
    pub layer_type: String,
    pub tensors: usize,
    pub sparsity: f32,
    #[serde(serialize_with = "sparsewire_metadata::display::serialize")]
    pub criterion: Criterion,
    #[serde(serialize_with = "sparsewire_metadata::display::serialize")]
    pub reconstruct: Rebuild,
    /// Stored bits per weight (mask + kept values).
    pub bits_per_weight: f64,
    /// Size-weighted mean relative Frobenius error.
    pub rel_error: f64,
    /// Size-weighted mean of error(zero-fill) / error(method).
    pub reconstruction_gain: f64,
    /// How many tensors each method was chosen for (`auto` picks per tensor).
    pub methods: BTreeMap<String, usize>,
}

/// The layer type of a conv weight `[out, in/groups, kh, kw]`.
pub fn layer_type(shape: &[u64]) -> Option<String> {
    match shape {
        [_, 1, kh, kw] if kh * kw > 1 => Some(format!("depthwise {kh}x{kw}")),
        [_, _, 1, 1] => Some("1x1".into()),
        [_, _, kh, kw] => Some(format!("{kh}x{kw}")),
        _ => None,
    }
}

/// Runs the filter grid on the conv weights of `file`.
pub fn run(file: &TensorFile, quick: bool) -> Result<Vec<FilterCell>, GridError> {
    let convs = TensorFile {
        tensors: file
            .tensors
            .iter()
            .filter(|t| layer_type(&t.shape).is_some())
            .cloned()
            .collect(),
        metadata: vec![],
    };
    let sparsities: &[f32] = if quick { &[0.5] } else { &[0.3, 0.5, 0.7, 0.9] };
    let settings: &[(Criterion, Rebuild)] = &[
        (Criterion::Magnitude, Rebuild::Zero),
        (Criterion::Magnitude, Rebuild::Spatial),
        (Criterion::Magnitude, Rebuild::Learned),
        (Criterion::Magnitude, Rebuild::Auto),
        (Criterion::Predictable, Rebuild::Spatial),
    ];
    let mut out = Vec::new();
    for &s in sparsities {
        for &(criterion, rebuild) in settings {
            let opts = CompressOptions {
                sparsify: Some(SparsifyOptions {
                    rebuild,
                    criterion,
                    ..SparsifyOptions::new(Budget::Sparsity(s))
                }),
                ..CompressOptions::default()
            };
            let (_, report) = compress(&convs, &opts)?;
            // Per layer type: (tensors, weights, bits, weighted error, weighted gain, methods).
            type Acc = (usize, f64, f64, f64, f64, BTreeMap<String, usize>);
            let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
            for t in &report.tensors {
                let (Some(kind), Some(sp)) = (layer_type(&t.stream.shape), &t.sparsify) else {
                    continue;
                };
                let n = t.stream.shape.iter().product::<u64>() as f64;
                let e = acc.entry(kind).or_default();
                e.0 += 1;
                e.1 += n;
                e.2 += 8.0 * t.stream.output_bytes as f64;
                e.3 += n * sp.rel_frobenius;
                // An exact rebuild has infinite gain: count it as 10 in the mean.
                e.4 += n * sp.reconstruction_gain.min(10.0);
                *e.5.entry(sp.reconstruction.to_string()).or_default() += 1;
            }
            for (kind, (k, n, bits, err, gain, methods)) in acc {
                out.push(FilterCell {
                    layer_type: kind,
                    tensors: k,
                    sparsity: s,
                    criterion,
                    reconstruct: rebuild,
                    bits_per_weight: bits / n,
                    rel_error: err / n,
                    reconstruction_gain: gain / n,
                    methods,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn layer_types() {
        use super::layer_type;
        assert_eq!(layer_type(&[16, 1, 3, 3]).as_deref(), Some("depthwise 3x3"));
        assert_eq!(layer_type(&[16, 8, 1, 1]).as_deref(), Some("1x1"));
        assert_eq!(layer_type(&[16, 8, 3, 3]).as_deref(), Some("3x3"));
        assert_eq!(layer_type(&[16, 8]), None);
    }
}
