//! Importance from real gradients, accumulated over steps.
//!
//! - Taylor (first order): the loss change from removing `w` is about `|g w|`; one batch's
//!   gradient is noisy, so the score is an exponential moving average
//!   `s <- beta s + (1 - beta) |g w|`.
//! - Movement (Sanh et al., 2020): `s <- s - g w`, summed over steps: weights moving away
//!   from zero score high, whatever their size now.

use candle_core::{Tensor, Var};

/// A criterion's running score for one parameter.
#[derive(Debug, Clone)]
pub struct Accumulator {
    pub score: Option<Tensor>,
    /// Moving-average factor for Taylor.
    pub beta: f64,
}

impl Accumulator {
    pub fn new(beta: f64) -> Self {
        Accumulator { score: None, beta }
    }

    /// Adds one step's `|g w|` to the moving average.
    pub fn taylor(&mut self, w: &Var, g: &Tensor) -> candle_core::Result<()> {
        let gw = (g * w.as_tensor())?.abs()?;
        self.score = Some(match self.score.take() {
            None => gw,
            Some(s) => ((s * self.beta)? + (gw * (1.0 - self.beta))?)?,
        });
        Ok(())
    }

    /// Adds one step's `-g w` to the movement score.
    pub fn movement(&mut self, w: &Var, g: &Tensor) -> candle_core::Result<()> {
        let gw = (g * w.as_tensor())?.neg()?;
        self.score = Some(match self.score.take() {
            None => gw,
            Some(s) => (s + gw)?,
        });
        Ok(())
    }
}
