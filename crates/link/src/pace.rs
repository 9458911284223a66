//! Emulating a slower or varying link on loopback: a trace of rates over time, and a
//! pacer that holds each frame until the emulated link would have finished sending it.
//!
//! The trace ([`Trace`], `sparsewire_accel::sim::Trace`: the simulator's bus runs on the
//! same one) is one `seconds gbps` pair per line. The pacer is shared by every connection
//! of a host, since they share the one link; frames are sent whole when the link would
//! have delivered their last byte (store and forward).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use sparsewire_accel::sim::Trace;

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
