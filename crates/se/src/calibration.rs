//! Matching calibration inputs to layers.
//!
//! Wanda, SparseGPT and the output error need a weight `[out, in]`'s inputs `X`
//! (`[tokens, in]`). They are found in the calibration file by the first rule that applies:
//! 1. an explicit map (`--calibration-map FILE`, JSON `{"weight name": "activation name"}`);
//! 2. the built-in BERT/MiniLM rules: `….layer.{i}.intermediate.dense.weight` ← `ffn_in.{i}`,
//!    `….layer.{i}.output.dense.weight` ← `ffn_act.{i}`,
//!    `….layer.{i}.attention.self.{query,key,value}.weight` ← `hidden.{i}`;
//! 3. an activation named `<weight name without .weight>.input`;
//! 4. the only activation tensor whose last dimension is `in`.
//!
//! A matched activation must be `[tokens, in]` (leading dimensions flattened into tokens);
//! a mismatch is an error naming both shapes. No match is not an error here: the caller
//! decides (a criterion that needs inputs falls back to magnitude, and says so).

use crate::SparsifyError;
use sparsewire_formats::{Tensor, TensorFile};

/// A layer's calibration inputs: the flattened `[tokens, in]` values.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub x: Vec<f32>,
    pub tokens: usize,
    /// The activation tensor they came from.
    pub name: String,
}

fn layer_index(name: &str) -> Option<(&str, &str)> {
    // "<prefix>layer.<i>.<rest>" -> (i, rest)
    let at = name.find("layer.")? + "layer.".len();
    let rest = &name[at..];
    let dot = rest.find('.')?;
    Some((&rest[..dot], &rest[dot + 1..]))
}

/// The activation the built-in BERT rules name for `weight`.
pub fn builtin_activation(weight: &str) -> Option<String> {
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

/// The calibration inputs of `weight` (which takes `cols` inputs), if a rule matches.
pub fn find_inputs(
    calibration: &TensorFile,
    map: &[(String, String)],
    weight: &str,
    cols: usize,
) -> Result<Option<Inputs>, SparsifyError> {
    let by_name = |n: &str| calibration.tensors.iter().find(|t| t.name == n);
    let explicit = map
        .iter()
        .find(|(w, _)| w == weight)
        .map(|(_, a)| a.clone());
    let named = explicit
        .or_else(|| builtin_activation(weight).filter(|a| by_name(a).is_some()))
        .or_else(|| {
            let n = format!("{}.input", weight.trim_end_matches(".weight"));
            by_name(&n).map(|_| n)
        });
    let t = match named {
        Some(n) => Some(by_name(&n).ok_or_else(|| SparsifyError::Calibration {
            tensor: n.clone(),
            reason: format!("matched to weight {weight:?} but not in the calibration file"),
        })?),
        None => {
            let fits: Vec<&Tensor> = calibration
                .tensors
                .iter()
                .filter(|t| t.shape.last() == Some(&(cols as u64)) && t.shape.len() >= 2)
                .collect();
            match fits[..] {
                [one] => Some(one),
                _ => None,
            }
        }
    };
    let Some(t) = t else { return Ok(None) };
    let x = t.to_f32_vec().ok_or_else(|| SparsifyError::Calibration {
        tensor: t.name.clone(),
        reason: format!("dtype {} is not a float", t.dtype),
    })?;
    if t.shape.last() != Some(&(cols as u64)) || x.is_empty() {
        return Err(SparsifyError::Calibration {
            tensor: t.name.clone(),
            reason: format!(
                "shape {:?} does not fit weight {weight:?}, which takes {cols} inputs",
                t.shape
            ),
        });
    }
    let tokens = x.len() / cols;
    Ok(Some(Inputs {
        x,
        tokens,
        name: t.name.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_in_order() {
        let acts = TensorFile {
            tensors: vec![
                Tensor::from_f32("ffn_in.2", vec![3, 4], &[1.0; 12]),
                Tensor::from_f32("proj.input", vec![2, 5], &[1.0; 10]),
                Tensor::from_f32("other", vec![1, 6], &[1.0; 6]),
                Tensor::from_f32("other2", vec![1, 6], &[1.0; 6]),
            ],
            metadata: vec![],
        };
        let f = |w: &str, cols| find_inputs(&acts, &[], w, cols).unwrap().map(|i| i.name);
        assert_eq!(
            f("encoder.layer.2.intermediate.dense.weight", 4).as_deref(),
            Some("ffn_in.2")
        );
        assert_eq!(f("proj.weight", 5).as_deref(), Some("proj.input"));
        // Two activations of width 6: no unique match.
        assert_eq!(f("x.weight", 6), None);
        let map = vec![("x.weight".to_string(), "other".to_string())];
        let got = find_inputs(&acts, &map, "x.weight", 6).unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.tokens), ("other", 1));
        // A matched activation of the wrong width names both.
        let e = find_inputs(&acts, &map, "x.weight", 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, 6]") && e.contains("7 inputs"), "{e}");
        let map = vec![("x.weight".to_string(), "missing".to_string())];
        assert!(find_inputs(&acts, &map, "x.weight", 6).is_err());
    }
}
