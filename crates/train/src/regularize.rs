//! Penalties that push weights toward what drops cheaply.
//!
//! - L1, `sum |w|`: drives single weights to zero (unstructured patterns).
//! - Group lasso over output channels, `sum_rows ||w_row||_2`: drives whole filters to
//!   zero, so the channel pattern pays.
//!
//! Both are means over the tensor's elements (rows for group lasso) times the tensor's
//! byte weight: what one of its weights costs on the link relative to the model's average,
//! measured by coding it (`run` computes it with the stream writer), so the penalty falls
//! hardest where the bytes are.

use candle_core::Tensor;

/// Which penalties, and their weights (0 switches one off).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regularizers {
    #[serde(default)]
    pub l1: f64,
    #[serde(default)]
    pub group_lasso: f64,
    /// Scale each tensor's penalty by its byte weight (else 1).
    #[serde(default)]
    pub byte_aware: bool,
}

impl Regularizers {
    pub fn is_off(&self) -> bool {
        self.l1 == 0.0 && self.group_lasso == 0.0
    }

    /// The penalty of one weight tensor (`[out, ...]`), scaled by `byte_weight`.
    pub fn penalty(&self, w: &Tensor, byte_weight: f64) -> candle_core::Result<Option<Tensor>> {
        if self.is_off() {
            return Ok(None);
        }
        let scale = if self.byte_aware { byte_weight } else { 1.0 };
        let mut total: Option<Tensor> = None;
        let mut add = |t: Tensor| -> candle_core::Result<()> {
            total = Some(match total.take() {
                None => t,
                Some(a) => (a + t)?,
            });
            Ok(())
        };
        if self.l1 > 0.0 {
            add((w.abs()?.mean_all()? * (self.l1 * scale))?)?;
        }
        if self.group_lasso > 0.0 {
            let rows = w.flatten_from(1)?;
            let norms = (rows.sqr()?.sum(1)? + 1e-12)?.sqrt()?;
            add((norms.mean_all()? * (self.group_lasso * scale))?)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn penalties_are_the_documented_means() {
        let w = Tensor::new(&[[3.0f32, -4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let r = Regularizers {
            l1: 1.0,
            group_lasso: 0.0,
            byte_aware: false,
        };
        let p = r
            .penalty(&w, 2.0)
            .unwrap()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((p - 7.0 / 4.0).abs() < 1e-6);
        let g = Regularizers {
            l1: 0.0,
            group_lasso: 1.0,
            byte_aware: true,
        };
        let p = g
            .penalty(&w, 2.0)
            .unwrap()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((p - 2.0 * 5.0 / 2.0).abs() < 1e-4, "{p}");
        assert!(Regularizers::default().penalty(&w, 1.0).unwrap().is_none());
    }
}
