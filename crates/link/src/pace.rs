//! Emulating a slower or varying link on loopback: a trace of rates over time, and a
//! pacer that holds each frame until the emulated link would have finished sending it.
//!
//! A trace file has one `seconds gbps` pair per line (`#` comments and blank lines
//! ignored): from that second on, the link carries that many GB/s (1e9 bytes) until the
//! next line; the last rate holds after the end. The pacer is shared by every connection
//! of a host, since they share the one link; frames are sent whole when the link would
//! have delivered their last byte (store and forward).

use crate::LinkError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rates over time, piecewise constant.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `(start second, bytes per second)`, starts increasing, the first at 0.
    points: Vec<(f64, f64)>,
}

impl Trace {
    /// One rate for ever.
    pub fn constant(gbps: f64) -> Result<Trace, LinkError> {
        Trace::new(vec![(0.0, gbps)])
    }

    /// From `(second, GB/s)` points; the first must be at 0.
    pub fn new(points: Vec<(f64, f64)>) -> Result<Trace, LinkError> {
        let bad = |m: String| LinkError::Options(format!("link trace: {m}"));
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
    pub fn parse(text: &str) -> Result<Trace, LinkError> {
        let mut points = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
                return Err(LinkError::Options(format!(
                    "link trace line {}: expected `seconds gbps`, got {line:?}",
                    n + 1
                )));
            };
            let num = |s: &str| {
                s.parse::<f64>().map_err(|_| {
                    LinkError::Options(format!("link trace line {}: {s:?} is not a number", n + 1))
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

/// Shortest wait worth a sleep, seconds.
const MIN_SLEEP: f64 = 200e-6;

/// Holds frames to the emulated link's pace; unlimited without a trace. The trace's clock
/// starts with the first frame sent (a host's first answer), not when the host starts.
#[derive(Debug)]
pub struct Pacer {
    start: std::sync::OnceLock<Instant>,
    trace: Option<Trace>,
    /// Second (since `start`) at which the link is free again.
    busy_until: Mutex<f64>,
}

impl Pacer {
    pub fn new(trace: Option<Trace>) -> Pacer {
        Pacer {
            start: std::sync::OnceLock::new(),
            trace,
            busy_until: Mutex::new(0.0),
        }
    }

    /// Seconds since the pacer started (the trace's clock).
    pub fn now(&self) -> f64 {
        self.start.get_or_init(Instant::now).elapsed().as_secs_f64()
    }

    /// The link's rate now (GB/s), `None` when unlimited.
    pub fn gbps_now(&self) -> Option<f64> {
        self.trace.as_ref().map(|t| t.gbps_at(self.now()))
    }

    /// Reserves the link for `bytes` and sleeps until they would have been sent.
    pub fn pace(&self, bytes: u64) {
        self.pace_from(self.now(), bytes);
    }

    /// [`Self::pace`] for a frame that was ready to go at `ready` (the pacer's clock): it
    /// starts when both it and the link are ready, so the time a sleep overshoots is not
    /// added to the next frame's start while frames queue back to back (the link's rate
    /// holds instead of drifting below the trace's).
    pub fn pace_from(&self, ready: f64, bytes: u64) {
        let Some(trace) = &self.trace else { return };
        let end = {
            let mut busy = self.busy_until.lock().unwrap_or_else(|e| e.into_inner());
            let begin = busy.max(ready);
            let end = trace.finish(begin, bytes);
            *busy = end;
            end
        };
        // A sleep takes tens of microseconds at least: shorter waits are not slept but
        // stay owed (`busy_until` has advanced), so later frames wait for them and the
        // rate holds on average, small frames on a fast link included.
        let wait = end - self.now();
        if wait > MIN_SLEEP {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
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
    fn queued_frames_keep_the_rate_whatever_the_sleeps_overshoot() {
        // 100 frames of 10 kB at 100 MB/s, all ready at once: 10 ms in all, however long
        // each 100 µs sleep really takes.
        let p = Pacer::new(Some(Trace::constant(0.1).unwrap()));
        let ready = p.now();
        let t0 = Instant::now();
        for _ in 0..100 {
            p.pace_from(ready, 10_000);
        }
        let s = t0.elapsed().as_secs_f64();
        assert!((0.009..0.05).contains(&s), "{s}");
    }

    #[test]
    fn the_pacer_holds_frames_to_the_rate() {
        let p = Pacer::new(Some(Trace::constant(0.01).unwrap()));
        let t0 = Instant::now();
        for _ in 0..5 {
            p.pace(200_000); // 20 ms each at 10 MB/s
        }
        let s = t0.elapsed().as_secs_f64();
        assert!((0.095..0.5).contains(&s), "{s}");
        let free = Pacer::new(None);
        let t0 = Instant::now();
        free.pace(u64::MAX);
        assert!(t0.elapsed() < Duration::from_millis(50));
    }
}
