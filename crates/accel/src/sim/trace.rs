//! A link's rate over time, piecewise constant: the bus of the simulator
//! ([`super::BusSpec::trace`]) and the pacer that emulates a slower or varying link on
//! loopback (`sparsewire_link::pace`) read the same trace, so a prediction and a
//! measurement run against the same link.
//!
//! A trace file has one `seconds gbps` pair per line (`#` comments and blank lines
//! ignored): from that second on, the link carries that many GB/s (1e9 bytes) until the
//! next line; the last rate holds after the end. In a hardware description (JSON) it is a
//! list of `[seconds, gbps]` pairs.

use super::SimError;
use serde::{Deserialize, Serialize};

/// Rates over time, piecewise constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<(f64, f64)>", into = "Vec<(f64, f64)>")]
pub struct Trace {
    /// `(start second, bytes per second)`, starts increasing, the first at 0.
    points: Vec<(f64, f64)>,
}

impl Trace {
    /// One rate for ever.
    pub fn constant(gbps: f64) -> Result<Trace, SimError> {
        Trace::new(vec![(0.0, gbps)])
    }

    /// From `(second, GB/s)` points; the first must be at 0.
    pub fn new(points: Vec<(f64, f64)>) -> Result<Trace, SimError> {
        let bad = |m: String| SimError::Trace(format!("link trace: {m}"));
        if points.is_empty() {
            return Err(bad("no points".into()));
        }
        if points[0].0 != 0.0 {
            return Err(bad(format!(
                "the first point is at {} s; it must be at 0",
                points[0].0
            )));
        }
        for w in points.windows(2) {
            if w[1].0.partial_cmp(&w[0].0) != Some(std::cmp::Ordering::Greater) {
                return Err(bad(format!(
                    "times must increase ({} then {})",
                    w[0].0, w[1].0
                )));
            }
        }
        for &(t, g) in &points {
            if !(g.is_finite() && g > 0.0 && g <= 10_000.0 && t.is_finite()) {
                return Err(bad(format!(
                    "at {t} s: {g} GB/s is not a rate in (0, 10000]"
                )));
            }
        }
        Ok(Trace {
            points: points.into_iter().map(|(t, g)| (t, g * 1e9)).collect(),
        })
    }

    /// Parses a trace file's text.
    pub fn parse(text: &str) -> Result<Trace, SimError> {
        let mut points = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
                return Err(SimError::Trace(format!(
                    "link trace line {}: expected `seconds gbps`, got {line:?}",
                    n + 1
                )));
            };
            let num = |s: &str| {
                s.parse::<f64>().map_err(|_| {
                    SimError::Trace(format!("link trace line {}: {s:?} is not a number", n + 1))
                })
            };
            points.push((num(a)?, num(b)?));
        }
        Trace::new(points)
    }

    /// Bytes per second at second `t`.
    pub fn rate_at(&self, t: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t).max(1) - 1;
        self.points[i].1
    }

    /// GB/s at second `t`.
    pub fn gbps_at(&self, t: f64) -> f64 {
        self.rate_at(t) / 1e9
    }

    /// When `bytes` started at second `t` have all been sent.
    pub fn finish(&self, mut t: f64, bytes: u64) -> f64 {
        let mut left = bytes as f64;
        loop {
            let i = self.points.partition_point(|p| p.0 <= t).max(1) - 1;
            let rate = self.points[i].1;
            let end = self.points.get(i + 1).map_or(f64::INFINITY, |p| p.0);
            let can = (end - t) * rate;
            if can >= left {
                return t + left / rate;
            }
            left -= can;
            t = end;
        }
    }
}

impl TryFrom<Vec<(f64, f64)>> for Trace {
    type Error = SimError;
    fn try_from(points: Vec<(f64, f64)>) -> Result<Trace, SimError> {
        Trace::new(points)
    }
}

impl From<Trace> for Vec<(f64, f64)> {
    fn from(t: Trace) -> Self {
        t.points.into_iter().map(|(s, r)| (s, r / 1e9)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_parse_and_integrate() {
        let t = Trace::parse("# slow then fast\n0 0.1\n2 2\n\n4 0.1 # again\n").unwrap();
        assert_eq!(t.gbps_at(0.0), 0.1);
        assert_eq!(t.gbps_at(2.5), 2.0);
        assert_eq!(t.gbps_at(100.0), 0.1);
        // 0.1 GB in the first second.
        assert!((t.finish(0.0, 100_000_000) - 1.0).abs() < 1e-9);
        // 0.1 GB from 1.5 s: 0.05 GB by 2 s, the rest at 2 GB/s.
        assert!((t.finish(1.5, 100_000_000) - 2.025).abs() < 1e-9);
        for bad in ["", "1 1", "0 1\n0 2", "0 -1", "0 x", "0 1 2", "0 nan"] {
            assert!(Trace::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_trace_round_trips_through_json_and_is_checked_there() {
        let t = Trace::parse("0 4\n1.5 0.5\n").unwrap();
        let j = serde_json::to_string(&t).unwrap();
        assert_eq!(j, "[[0.0,4.0],[1.5,0.5]]");
        assert_eq!(serde_json::from_str::<Trace>(&j).unwrap(), t);
        assert!(serde_json::from_str::<Trace>("[[1.0,4.0]]").is_err());
        assert!(serde_json::from_str::<Trace>("[[0.0,0.0]]").is_err());
    }
}
