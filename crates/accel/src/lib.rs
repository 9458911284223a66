//! The accelerator model (docs/ARCHITECTURE.md "Accelerator model"): the bus between host
//! and accelerator, the local memory device (LMD) with its reconstruction buffer, and the
//! matrix unit (MMU).
//!
//! - [`buffer`]: the LMD's dynamic reconstruction buffer (capacity, schedule-aware Belady
//!   or LRU eviction, pinning, hit/miss/peak stats);
//! - [`schedule`]: the scheduler, one [`schedule::Plan`] of rebuilds, evictions and gates
//!   that the real executor (`sparsewire_pipeline::mmo`) and the timing model both follow;
//! - [`mmu`]: the matrix unit computing for real (AVX-512 kernels on stored fast-profile
//!   tiles, faer on rebuilt ones, a scalar reference);
//! - [`sim`]: the timing model (hardware descriptions, presets, an event pass over a plan);
//! - [`Bus`]: transfer times and tile-by-tile delivery with overlapped decoding.
// The only unsafe code is `mmu`'s AVX-512 kernels (intrinsics and masked loads).
#![deny(unsafe_code)]

pub mod buffer;
pub mod mmu;
pub mod schedule;
pub mod sim;

/// Errors in a hardware description.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum HardwareError {
    #[error("{field} must be positive and finite, got {value}")]
    NotPositive { field: &'static str, value: f64 },
}

/// The link between host and accelerator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bus {
    /// Sustained bandwidth, bytes per second.
    pub bytes_per_second: f64,
    /// Fixed cost of one transfer, seconds.
    pub latency_seconds: f64,
}

impl Bus {
    /// A bus of `gbps` GB/s (1e9 bytes) with `latency_us` microseconds per transfer.
    pub fn new(gbps: f64, latency_us: f64) -> Result<Self, HardwareError> {
        if !(gbps > 0.0 && gbps.is_finite()) {
            return Err(HardwareError::NotPositive {
                field: "bus.gbps",
                value: gbps,
            });
        }
        if !(latency_us >= 0.0 && latency_us.is_finite()) {
            return Err(HardwareError::NotPositive {
                field: "bus.latency_us",
                value: latency_us,
            });
        }
        Ok(Bus {
            bytes_per_second: gbps * 1e9,
            latency_seconds: latency_us * 1e-6,
        })
    }

    /// Time to move `bytes` in `transfers` transfers.
    pub fn transfer_seconds(&self, bytes: u64, transfers: u64) -> f64 {
        bytes as f64 / self.bytes_per_second + transfers as f64 * self.latency_seconds
    }

    /// When the last of `tiles` (stored bytes, decode seconds) is decoded, if they cross
    /// the bus one after another and `workers` decoders take each as it lands (the
    /// earliest free one): decoding overlaps the transfer of the next tiles.
    pub fn deliver_seconds(&self, tiles: &[(u64, f64)], workers: usize) -> f64 {
        let mut free = vec![0f64; workers.max(1)];
        let (mut arrived, mut done) = (0f64, 0f64);
        for &(bytes, decode) in tiles {
            arrived += self.transfer_seconds(bytes, 1);
            let w = free
                .iter_mut()
                .min_by(|a, b| a.total_cmp(b))
                .expect("one worker or more");
            *w = w.max(arrived) + decode;
            done = done.max(*w);
        }
        done
    }
}

/// Local memory beside the matrix unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lmd {
    pub capacity_bytes: u64,
}

/// The matrix unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mmu {
    pub macs_per_second: f64,
}

/// A whole accelerator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hardware {
    pub bus: Bus,
    pub lmd: Lmd,
    pub mmu: Mmu,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_time_is_bytes_over_bandwidth_plus_latency() {
        let b = Bus::new(2.0, 10.0).unwrap();
        assert!((b.transfer_seconds(2_000_000_000, 1) - 1.00001).abs() < 1e-12);
        assert!(Bus::new(0.0, 1.0).is_err());
        assert!(Bus::new(1.0, f64::NAN).is_err());
    }

    #[test]
    fn delivery_overlaps_decode_with_transfer() {
        let b = Bus::new(1.0, 0.0).unwrap();
        // Bus-bound: 3 tiles of 1 s each on the bus, 0.5 s decode: the last lands at 3 s.
        assert!((b.deliver_seconds(&[(1_000_000_000, 0.5); 3], 1) - 3.5).abs() < 1e-12);
        // Decode-bound: 0.1 s transfers, 1 s decodes, one worker: 0.1 + 3.
        assert!((b.deliver_seconds(&[(100_000_000, 1.0); 3], 1) - 3.1).abs() < 1e-12);
        // Two workers: tiles land at .1, .2, .3; workers finish at 1.1, 1.2, then 2.1.
        assert!((b.deliver_seconds(&[(100_000_000, 1.0); 3], 2) - 2.1).abs() < 1e-12);
    }
}
