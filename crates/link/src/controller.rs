//! Adaptive sparsity: which level of the ladder each tile is requested at.
//!
//! The controller knows, for every tile still to request in the current pass, its exact
//! size at each level (from the manifest), the bytes already in flight, the time left
//! until the pass's deadline, and the delivered bandwidth (an exponentially weighted mean
//! of what arriving tiles measured). It picks the least sparse level at which everything
//! left would arrive in time, with a safety margin, never beyond the floor. Hysteresis:
//! it steps to a sparser level at once (a deadline is at stake) but back toward lossless
//! only after `hysteresis` consecutive decisions in which the better level fitted, so a
//! noisy estimate does not make it oscillate.

/// How adaptive spends the bytes a pass can afford over the tiles it has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spend {
    /// One level for every tile left (the least sparse that fits).
    #[default]
    Uniform,
    /// A level per tensor, where the host's measured error per byte saved is lowest
    /// ([`allocate`]).
    ByError,
}

impl std::str::FromStr for Spend {
    type Err = String;
    fn from_str(s: &str) -> Result<Spend, String> {
        match s {
            "uniform" => Ok(Spend::Uniform),
            "by-error" => Ok(Spend::ByError),
            _ => Err(format!("spend {s:?}: expected uniform or by-error")),
        }
    }
}

impl std::fmt::Display for Spend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Spend::Uniform => "uniform",
            Spend::ByError => "by-error",
        })
    }
}

/// One tensor's work left in a pass: its bytes and its relative error at each level.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub bytes: Vec<f64>,
    pub error: Vec<f64>,
}

/// What is left to request in a pass, per tensor of its schedule, and the level the next
/// request gets: shared by `run` and the timing model so that both decide alike.
#[derive(Debug, Clone)]
pub struct Pass {
    /// Per schedule position: the bytes not yet requested, and the error, at each level.
    groups: Vec<Group>,
}

impl Pass {
    /// A pass over `schedule` (manifest indices), nothing requested yet.
    pub fn new(m: &crate::host::Manifest, schedule: impl IntoIterator<Item = usize>) -> Pass {
        Pass {
            groups: schedule
                .into_iter()
                .map(|t| {
                    let info = &m.tensors[t];
                    Group {
                        bytes: (0..m.levels.len())
                            .map(|lv| info.bytes.iter().map(|b| b[lv] as f64).sum())
                            .collect(),
                        error: info.rel_error.iter().map(|e| f64::from(*e)).collect(),
                    }
                })
                .collect(),
        }
    }

    /// A tile of `bytes` (at each level) of schedule position `g` was requested.
    pub fn take(&mut self, g: usize, bytes: &[u64]) {
        for (left, b) in self.groups[g].bytes.iter_mut().zip(bytes) {
            *left -= *b as f64;
        }
    }

    /// The level of the next request, a tile of schedule position `g`, with `in_flight`
    /// bytes requested and not arrived and `time_left` seconds to aim at.
    pub fn level(
        &self,
        c: &mut Controller,
        spend: Spend,
        g: usize,
        in_flight: f64,
        time_left: f64,
    ) -> usize {
        // Earlier positions are wholly requested: what is left is in `g..`.
        let left = &self.groups[g..];
        match spend {
            Spend::Uniform => {
                let remaining: Vec<f64> = (0..left[0].bytes.len())
                    .map(|lv| left.iter().map(|grp| grp.bytes[lv]).sum())
                    .collect();
                c.choose(&remaining, in_flight, time_left)
            }
            Spend::ByError => c
                .choose_groups(left, in_flight, time_left)
                .map_or(c.current(), |v| v[0]),
        }
    }
}

/// The levels (at most `floor`) at multiplier `lambda`: each group's
/// `argmin error² + lambda * bytes`, and their total bytes.
fn levels_at(groups: &[Group], floor: usize, lambda: f64) -> (Vec<usize>, f64) {
    let mut total = 0.0;
    let levels = groups
        .iter()
        .map(|g| {
            let top = floor.min(g.bytes.len() - 1);
            let l = (0..=top)
                .min_by(|&a, &b| {
                    let c = |l: usize| g.error[l].powi(2) + lambda * g.bytes[l];
                    c(a).total_cmp(&c(b))
                })
                .expect("a level");
            total += g.bytes[l];
            l
        })
        .collect();
    (levels, total)
}

/// The multiplier at which the groups' levels fit `budget` bytes while the summed squared
/// error is least (bisection on its logarithm; the error falls and the bytes rise as it
/// falls): 0 when everything fits lossless, the largest tried when even the floor does
/// not.
pub fn allocate(groups: &[Group], budget: f64, floor: usize) -> f64 {
    if groups.is_empty() || levels_at(groups, floor, 0.0).1 <= budget {
        return 0.0;
    }
    let (mut lo, mut hi) = (-80f64, 20f64); // ln of the multiplier
    if levels_at(groups, floor, hi.exp()).1 > budget {
        return hi.exp();
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if levels_at(groups, floor, mid.exp()).1 <= budget {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi.exp()
}

/// The controller's state.
#[derive(Debug, Clone)]
pub struct Controller {
    /// Highest level index it may use.
    floor: usize,
    current: usize,
    /// Delivered bytes per second, once measured.
    bandwidth: Option<f64>,
    better_streak: u32,
    /// `Spend::ByError`: the multiplier in use.
    lambda: f64,
    pub hysteresis: u32,
    /// Share of the time left that the transfers may use.
    pub margin: f64,
    /// Weight of a new bandwidth sample.
    pub alpha: f64,
}

impl Controller {
    /// A controller over levels `0..=floor`, starting lossless.
    pub fn new(floor: usize) -> Controller {
        Controller {
            floor,
            current: 0,
            bandwidth: None,
            better_streak: 0,
            lambda: 0.0,
            hysteresis: 3,
            margin: 0.85,
            alpha: 0.3,
        }
    }

    /// `bytes` took `seconds` on the link (the link was the limit).
    pub fn observe(&mut self, bytes: u64, seconds: f64) {
        if seconds <= 0.0 || bytes == 0 {
            return;
        }
        let s = bytes as f64 / seconds;
        self.bandwidth = Some(match self.bandwidth {
            Some(b) => b + self.alpha * (s - b),
            None => s,
        });
    }

    /// The link delivered at least `bytes` in `seconds` while something else was the
    /// limit: raises the estimate to that rate if it was lower, never lowers it.
    pub fn observe_at_least(&mut self, bytes: u64, seconds: f64) {
        if seconds <= 0.0 || bytes == 0 {
            return;
        }
        let s = bytes as f64 / seconds;
        if self.bandwidth.is_none_or(|b| b < s) {
            self.observe(bytes, seconds);
        }
    }

    /// The level it would use now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// `Spend::ByError`: a level per group for the work left (`None` before the first
    /// bandwidth sample). The multiplier moves up at once when the budget shrinks and down
    /// (halving at most) only after `hysteresis` consecutive decisions that allow it.
    pub fn choose_groups(
        &mut self,
        groups: &[Group],
        in_flight: f64,
        time_left: f64,
    ) -> Option<Vec<usize>> {
        let bw = self.bandwidth?;
        let budget = (bw * time_left.max(0.0) * self.margin - in_flight).max(0.0);
        let want = allocate(groups, budget, self.floor);
        if want >= self.lambda {
            self.lambda = want;
            self.better_streak = 0;
        } else {
            self.better_streak += 1;
            if self.better_streak >= self.hysteresis {
                self.lambda = want.max(self.lambda * 0.5);
                if self.lambda < 1e-30 {
                    self.lambda = 0.0;
                }
                self.better_streak = 0;
            }
        }
        Some(levels_at(groups, self.floor, self.lambda).0)
    }

    /// The bandwidth estimate, bytes per second.
    pub fn bandwidth(&self) -> Option<f64> {
        self.bandwidth
    }

    /// The level for the next request: `remaining[l]` is the bytes of every tile still to
    /// request in this pass at level `l`, `in_flight` the bytes requested and not yet
    /// arrived, `time_left` the seconds to the deadline.
    pub fn choose(&mut self, remaining: &[f64], in_flight: f64, time_left: f64) -> usize {
        let Some(bw) = self.bandwidth else {
            return self.current;
        };
        let budget = time_left.max(0.0) * self.margin;
        let fits = |l: usize| (in_flight + remaining[l]) / bw <= budget;
        let best = (0..=self.floor.min(remaining.len() - 1))
            .find(|&l| fits(l))
            .unwrap_or(self.floor.min(remaining.len() - 1));
        if best > self.current {
            self.current = best;
            self.better_streak = 0;
        } else if best < self.current {
            self.better_streak += 1;
            if self.better_streak >= self.hysteresis {
                self.current -= 1;
                self.better_streak = 0;
            }
        } else {
            self.better_streak = 0;
        }
        self.current
    }
}

/// Seconds of delivery a bandwidth sample spans.
pub const MEASURE: f64 = 0.02;
/// Share of a sample's time spent waiting above which the link was the limit.
pub const LINK_BOUND: f64 = 0.25;

/// Turns tile arrivals into the controller's bandwidth samples: bytes delivered over wall
/// time, per window of at least [`MEASURE`] seconds. When the multiply spent
/// [`LINK_BOUND`] or more of the window waiting, the link was the limit and this is its
/// rate; otherwise the client was, and the link did at least this much. Times are seconds
/// on any clock (the run's, or the timing model's).
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    bytes: u64,
    since: f64,
    waited: f64,
}

impl Meter {
    pub fn new(now: f64) -> Meter {
        Meter {
            bytes: 0,
            since: now,
            waited: 0.0,
        }
    }

    /// A tile of `bytes` arrived at `now` after the multiply waited `waited` for it.
    pub fn arrived(&mut self, c: &mut Controller, bytes: u64, waited: f64, now: f64) {
        self.bytes += bytes;
        self.waited += waited;
        let wall = now - self.since;
        if wall >= MEASURE {
            if self.waited / wall >= LINK_BOUND {
                c.observe(self.bytes, wall);
            } else {
                c.observe_at_least(self.bytes, wall);
            }
            *self = Meter::new(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass of 100 tiles whose sizes at 5 levels are 300, 220, 160, 110, 70 KB each.
    fn remaining(left: usize) -> Vec<f64> {
        [300e3, 220e3, 160e3, 110e3, 70e3]
            .iter()
            .map(|b| b * left as f64)
            .collect()
    }

    /// Runs passes of 100 tiles due every `period` seconds on a link whose rate is
    /// `rate(t)`, sending tiles one at a time; returns each pass's mean level and whether
    /// it met its deadline.
    fn simulate(rate: impl Fn(f64) -> f64, passes: usize, period: f64) -> (Vec<f64>, Vec<bool>) {
        let sizes = remaining(1);
        let mut c = Controller::new(4);
        c.observe(1, 1e-9); // start optimistic
        let mut t = 0.0f64;
        let (mut levels, mut hits) = (vec![], vec![]);
        for p in 0..passes {
            t = t.max(p as f64 * period);
            let deadline = p as f64 * period + period;
            let mut sum = 0.0;
            for k in 0..100 {
                let l = c.choose(&remaining(100 - k), 0.0, deadline - t);
                let dt = sizes[l] / rate(t);
                c.observe(sizes[l] as u64, dt);
                t += dt;
                sum += l as f64;
            }
            levels.push(sum / 100.0);
            hits.push(t <= deadline);
        }
        (levels, hits)
    }

    #[test]
    fn lossless_on_a_fast_link_sparser_on_a_slow_one() {
        // 30 MB lossless a pass, due every 0.2 s: 2 GB/s carries it, 0.1 GB/s cannot.
        let (fast, hits) = simulate(|_| 2e9, 20, 0.2);
        assert!(fast[1..].iter().all(|&l| l == 0.0), "{fast:?}");
        assert!(hits.iter().all(|h| *h));
        // 0.1 GB/s: 20 MB a pass; 50% (16 MB) fits, 25% (22 MB) does not: it mixes the
        // two to use the link, and meets every deadline.
        let (slow, hits) = simulate(|_| 0.1e9, 20, 0.2);
        assert!(
            slow[1..].iter().all(|&l| (1.0..=2.0).contains(&l)),
            "{slow:?}"
        );
        assert!(hits[1..].iter().all(|h| *h), "{hits:?}");
        // Alternating every 2 s: it follows the link both ways.
        let (alt, hits) = simulate(
            |t| {
                if ((t / 2.0) as u64).is_multiple_of(2) {
                    2e9
                } else {
                    0.12e9
                }
            },
            40,
            0.2,
        );
        let (fast_phase, slow_phase) = (&alt[3..10], &alt[13..20]);
        assert!(fast_phase.iter().sum::<f64>() / 7.0 < 0.5, "{alt:?}");
        assert!(slow_phase.iter().sum::<f64>() / 7.0 >= 1.0, "{alt:?}");
        assert!(hits.iter().filter(|h| **h).count() >= 36, "{hits:?}");
    }

    #[test]
    fn allocation_spends_where_the_error_per_byte_is_least() {
        // Two tensors of the same size: one loses little when pruned, one a lot.
        let cheap = Group {
            bytes: vec![100.0, 60.0, 30.0],
            error: vec![0.0, 0.05, 0.1],
        };
        let dear = Group {
            bytes: vec![100.0, 60.0, 30.0],
            error: vec![0.0, 0.4, 0.8],
        };
        let g = [cheap.clone(), dear.clone()];
        assert_eq!(levels_at(&g, 2, allocate(&g, 200.0, 2)).0, [0, 0]);
        let (l, bytes) = levels_at(&g, 2, allocate(&g, 130.0, 2));
        assert_eq!(l, [2, 0]);
        assert!(bytes <= 130.0);
        let (l, _) = levels_at(&g, 2, allocate(&g, 90.0, 2));
        assert_eq!(l, [2, 1]);
        // Nothing fits: the floor everywhere.
        assert_eq!(levels_at(&g, 1, allocate(&g, 10.0, 1)).0, [1, 1]);
    }

    #[test]
    fn hysteresis_waits_before_stepping_back() {
        let mut c = Controller::new(4);
        c.observe(1000, 1.0); // 1 kB/s
        assert_eq!(c.choose(&[1e6, 5e5, 1e5, 5e4, 1e4], 0.0, 1.0), 4);
        c.observe(1_000_000_000, 0.001); // suddenly very fast
        let steps: Vec<usize> = (0..8)
            .map(|_| c.choose(&[1e6, 5e5, 1e5, 5e4, 1e4], 0.0, 1.0))
            .collect();
        assert_eq!(steps[..2], [4, 4]);
        assert_eq!(*steps.last().unwrap(), 2);
        assert!(steps.windows(2).all(|w| w[1] <= w[0]));
    }
}
