//! A built-in, seeded tensor file: weight-like tensors for the demo, tests and benchmarks
//! (no files, no downloads; the same bytes on every run and platform).
//!
//! | tensor | dtype | shape | distribution (what it imitates) |
//! |---|---|---|---|
//! | `encoder.attn.weight` | BF16 | [384, 384] | normal, sigma 0.04 (a linear layer) |
//! | `encoder.ffn.weight` | F32 | [1536, 384] | normal, sigma 0.03, 1% outliers x8 |
//! | `encoder.ffn.bias` | F32 | `[1536]` | normal, sigma 0.01 |
//! | `norm.weight` | F16 | `[384]` | 1 + normal sigma 0.05 (LayerNorm gain) |
//! | `conv.weight` | F32 | [32, 16, 3, 3] | Laplace, scale 0.05 (conv filters) |
//! | `embeddings.weight` | BF16 | [2000, 64] | normal sigma 0.05, rows 1500.. untrained (all 0) |
//! | `position_ids` | I64 | [1, 512] | 0..511 (carried through, never dropped) |

use crate::{Dtype, Tensor, TensorFile};

/// A SplitMix64 generator: tiny, fixed, and identical on every platform.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn laplace(&mut self) -> f64 {
        let u = self.uniform() - 0.5;
        -u.signum() * (1.0 - 2.0 * u.abs()).ln()
    }
}

fn bf16_tensor(name: &str, shape: Vec<u64>, v: &[f32]) -> Tensor {
    let data = v
        .iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect();
    Tensor::new(name, Dtype::BF16, shape, data).expect("shape matches")
}

fn f16_tensor(name: &str, shape: Vec<u64>, v: &[f32]) -> Tensor {
    let data = v
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    Tensor::new(name, Dtype::F16, shape, data).expect("shape matches")
}

/// The built-in tensors. Same bytes on every run and platform.
pub fn tensors() -> TensorFile {
    let mut r = Rng(0x5357_4952_4544_454d);
    let mut normal = |n: usize, sigma: f64| -> Vec<f32> {
        (0..n).map(|_| (r.normal() * sigma) as f32).collect()
    };
    let attn = normal(384 * 384, 0.04);
    let mut ffn = normal(1536 * 384, 0.03);
    let bias = normal(1536, 0.01);
    let norm: Vec<f32> = normal(384, 0.05).iter().map(|x| 1.0 + x).collect();
    let mut emb = normal(2000 * 64, 0.05);
    emb[1500 * 64..].fill(0.0);
    let mut r2 = Rng(0x434f_4e56);
    for (i, x) in ffn.iter_mut().enumerate() {
        if i % 97 == 0 {
            *x *= 8.0;
        }
    }
    let conv: Vec<f32> = (0..32 * 16 * 9)
        .map(|_| (r2.laplace() * 0.05) as f32)
        .collect();
    let ids: Vec<u8> = (0..512i64).flat_map(|i| i.to_le_bytes()).collect();
    TensorFile {
        tensors: vec![
            bf16_tensor("encoder.attn.weight", vec![384, 384], &attn),
            Tensor::from_f32("encoder.ffn.weight", vec![1536, 384], &ffn),
            Tensor::from_f32("encoder.ffn.bias", vec![1536], &bias),
            f16_tensor("norm.weight", vec![384], &norm),
            Tensor::from_f32("conv.weight", vec![32, 16, 3, 3], &conv),
            bf16_tensor("embeddings.weight", vec![2000, 64], &emb),
            Tensor::new("position_ids", Dtype::I64, vec![1, 512], ids).expect("shape matches"),
        ],
        metadata: vec![(
            "source".into(),
            "sparsewire demo (built-in, seed fixed)".into(),
        )],
    }
}

/// Mean, standard deviation, minimum and maximum of a float tensor.
pub fn stats(t: &Tensor) -> Option<[f64; 4]> {
    let v = t.to_f32_vec()?;
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let min = v.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    Some([mean, var.sqrt(), min, max])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_weight_like() {
        let a = tensors();
        assert_eq!(a, tensors());
        let s = stats(&a.tensors[0]).unwrap();
        assert!(s[0].abs() < 0.002 && (s[1] - 0.04).abs() < 0.002, "{s:?}");
    }
}
