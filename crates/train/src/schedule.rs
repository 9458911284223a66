//! When masks change and to what sparsity.
//!
//! - [`Schedule::OneShot`]: the target at one step, then fixed (prune, then fine-tune).
//! - [`Schedule::Gradual`]: gradual magnitude pruning (Zhu & Gupta, 2017): from `start` to
//!   `end`, every `every` steps, sparsity follows the cubic
//!   `s_t = s_f + (s_i - s_f) (1 - (t - start) / (end - start))^3`, fast early while the
//!   network has redundancy to give, slow as it nears the target; exactly `s_f` at `end`.
//! - [`Schedule::Iterative`]: a list of (step, sparsity): prune, fine-tune, prune again.

use serde::Deserialize;

/// A sparsity schedule over training steps.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    OneShot {
        at: u64,
    },
    Gradual {
        start: u64,
        end: u64,
        every: u64,
        #[serde(default)]
        initial: f32,
    },
    Iterative {
        steps: Vec<(u64, f32)>,
    },
}

impl Schedule {
    /// The sparsity the masks should have after step `t` for a final `target`, or `None`
    /// when the masks do not change at `t`.
    pub fn at(&self, t: u64, target: f32) -> Option<f32> {
        match self {
            Schedule::OneShot { at } => (t == *at).then_some(target),
            Schedule::Gradual {
                start,
                end,
                every,
                initial,
            } => {
                if t < *start || t > *end {
                    return None;
                }
                if t != *end && !(t - start).is_multiple_of((*every).max(1)) {
                    return None;
                }
                let span = (end - start).max(1) as f64;
                let left = 1.0 - (t - start) as f64 / span;
                let s = target as f64 + (*initial as f64 - target as f64) * left.powi(3);
                Some(if t == *end { target } else { s as f32 })
            }
            Schedule::Iterative { steps } => steps
                .iter()
                .find(|(at, _)| *at == t)
                .map(|&(_, s)| s.min(target)),
        }
    }

    /// The step after which the masks no longer change.
    pub fn last_step(&self) -> u64 {
        match self {
            Schedule::OneShot { at } => *at,
            Schedule::Gradual { end, .. } => *end,
            Schedule::Iterative { steps } => steps.iter().map(|s| s.0).max().unwrap_or(0),
        }
    }

    /// Checks the schedule fits in `total` steps.
    pub fn check(&self, total: u64) -> Result<(), String> {
        match self {
            Schedule::Gradual {
                start,
                end,
                every,
                initial,
            } => {
                if start >= end || *every == 0 {
                    return Err(format!(
                        "gradual schedule: need start < end and every > 0, got start {start}, end {end}, every {every}"
                    ));
                }
                if !(0.0..1.0).contains(initial) {
                    return Err(format!(
                        "gradual schedule: initial sparsity {initial} is outside [0, 1)"
                    ));
                }
            }
            Schedule::Iterative { steps } => {
                if steps.is_empty() {
                    return Err("iterative schedule: no steps".into());
                }
                if let Some((_, s)) = steps.iter().find(|(_, s)| !(0.0..1.0).contains(s)) {
                    return Err(format!(
                        "iterative schedule: sparsity {s} is outside [0, 1)"
                    ));
                }
            }
            Schedule::OneShot { .. } => {}
        }
        if self.last_step() >= total {
            return Err(format!(
                "the schedule ends at step {}, but training has {total} steps",
                self.last_step()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cubic_reaches_its_target_at_the_last_step_and_only_grows() {
        let s = Schedule::Gradual {
            start: 100,
            end: 1000,
            every: 50,
            initial: 0.0,
        };
        assert_eq!(s.at(99, 0.9), None);
        assert_eq!(s.at(100, 0.9), Some(0.0));
        assert_eq!(s.at(125, 0.9), None, "between updates");
        assert_eq!(s.at(1000, 0.9), Some(0.9));
        assert_eq!(s.at(1001, 0.9), None);
        let mut last = -1.0;
        for t in (100..=1000).step_by(50) {
            let v = s.at(t, 0.9).unwrap();
            assert!(v >= last && v <= 0.9, "{t}: {v}");
            last = v;
        }
        // Cubic: half the span reaches 7/8 of the target.
        let mid = s.at(550, 0.9).unwrap();
        assert!((mid - 0.9 * 7.0 / 8.0).abs() < 1e-6, "{mid}");
        assert!(s.check(1001).is_ok());
        assert!(s.check(1000).is_err());
    }

    #[test]
    fn one_shot_and_iterative() {
        assert_eq!(Schedule::OneShot { at: 5 }.at(5, 0.7), Some(0.7));
        assert_eq!(Schedule::OneShot { at: 5 }.at(6, 0.7), None);
        let it = Schedule::Iterative {
            steps: vec![(10, 0.3), (20, 0.6), (30, 0.9)],
        };
        assert_eq!(it.at(20, 0.9), Some(0.6));
        assert_eq!(it.last_step(), 30);
        assert!(Schedule::Iterative {
            steps: vec![(1, 1.0)]
        }
        .check(10)
        .is_err());
    }
}
