use super::*;
use crate::buffer::Policy;
use crate::schedule::{plan, sweep};
use proptest::prelude::*;

/// A machine with round numbers: 1 GB/s, no latency, 1e9 elements/s, 1e9 MAC/s.
fn unit() -> HardwareSpec {
    let mut hw = HardwareSpec::preset("edge-npu").unwrap();
    hw.name = "unit".into();
    hw.bus = BusSpec {
        gbps: 1.0,
        latency_us: 0.0,
        overhead_us: 0.0,
        trace: None,
    };
    hw.lmd = LmdSpec {
        capacity_bytes: 1 << 40,
        staging_bytes: 1 << 30,
    };
    hw.engine = EngineSpec {
        dense_elems_per_s: 1e9,
        zero_elems_per_s: 1e9,
        linear_elems_per_s: 1e9,
        learned_elems_per_s: 1e9,
        dictionary_elems_per_s: 1e9,
        per_tile_us: 0.0,
    };
    hw.mmu = MmuSpec {
        gemv_macs_per_s: 1e9,
        gemm_macs_per_s: 1e9,
        per_tile_us: 0.0,
        launch_us: 0.0,
        rebuilds_when_idle: false,
    };
    hw
}

fn tile(stored: u64, elements: u64) -> TileCost {
    TileCost {
        stored_bytes: stored,
        dense_bytes: elements * 2,
        elements,
        method: Method::Zero,
    }
}

fn run(n: usize, t: TileCost, hw: &HardwareSpec, lookahead: usize) -> (SimReport, Timeline) {
    let trace = sweep(0, &vec![t.elements * 4; n], 1);
    let p = plan(&trace, hw.buffer_bytes(), Policy::Belady, lookahead).unwrap();
    simulate(&p, &vec![t; n], 1, 1, hw).unwrap()
}

#[test]
fn sweep_specs_parse_and_apply() {
    let s: Sweep = "engine.scale=0.5,2".parse().unwrap();
    assert_eq!(s.values, vec![0.5, 2.0]);
    let hw = HardwareSpec::preset("edge-npu").unwrap();
    let (h, _) = s.param.apply(&hw, 1, 2.0);
    assert_eq!(h.engine.zero_elems_per_s, 2.0 * hw.engine.zero_elems_per_s);
    assert!("bus.speed=1".parse::<Sweep>().is_err());
    assert!("batch=1.5".parse::<Sweep>().is_err());
    assert!("bus.gbps=0".parse::<Sweep>().is_err());
    assert!("bus.gbps".parse::<Sweep>().is_err());
}

#[test]
fn delivery_overlaps_decode_with_transfer() {
    // Bus-bound: 3 tiles of 1 s each on the bus, 0.5 s decode: the last lands at 3 s.
    assert!((deliver_seconds(1.0, &[(1_000_000_000, 0.5); 3], 1) - 3.5).abs() < 1e-12);
    // Decode-bound: 0.1 s transfers, 1 s decodes, one worker: 0.1 + 3.
    assert!((deliver_seconds(1.0, &[(100_000_000, 1.0); 3], 1) - 3.1).abs() < 1e-12);
    // Two workers: tiles land at .1, .2, .3; workers finish at 1.1, 1.2, then 2.1.
    assert!((deliver_seconds(1.0, &[(100_000_000, 1.0); 3], 2) - 2.1).abs() < 1e-12);
}

#[test]
fn closed_forms() {
    let hw = unit();
    // One tile: 1e6 bytes (1 ms) on the bus, 1e6 elements rebuilt (1 ms), 1e6 MACs (1 ms).
    let (r, _) = run(1, tile(1_000_000, 1_000_000), &hw, 4);
    assert!((r.total_seconds - 3e-3).abs() < 1e-12, "{r:?}");
    // Dense: 2e6 bytes (2 ms) then 1 ms of MACs.
    assert!((r.dense_total_seconds - 3e-3).abs() < 1e-12);
    // Bus-bound, 10 tiles: 10 x 4 ms on the bus, then the last rebuild and multiply.
    let (r, _) = run(10, tile(4_000_000, 1_000_000), &hw, 4);
    assert!((r.total_seconds - 42e-3).abs() < 1e-12, "{r:?}");
    // MMU-bound: transfers and rebuilds of 1 ms, multiplies at batch 1 of 1e6 MACs at
    // 0.25e9 MAC/s = 4 ms: the first multiply starts at 2 ms, then 10 x 4 ms.
    let mut slow = hw.clone();
    slow.mmu.gemv_macs_per_s = 0.25e9;
    let (r, _) = run(10, tile(1_000_000, 1_000_000), &slow, 16);
    assert!((r.total_seconds - 42e-3).abs() < 1e-12, "{r:?}");
    assert!(r.mmu_stall_fraction < 0.05 + 1e-12);
    // Both equal (1 ms each stage): a three-stage pipeline, 10 + 2 slots.
    let (r, _) = run(10, tile(1_000_000, 1_000_000), &hw, 16);
    assert!((r.total_seconds - 12e-3).abs() < 1e-12, "{r:?}");
    // Latency delays every landing but is pipelined: it adds once, not per tile;
    // per-transfer overhead holds the bus: it adds per tile on a bus-bound link.
    let mut lat = hw.clone();
    lat.bus.latency_us = 500.0;
    let (r, _) = run(10, tile(4_000_000, 1_000_000), &lat, 4);
    assert!((r.total_seconds - 42.5e-3).abs() < 1e-12, "{r:?}");
    lat.bus.overhead_us = 100.0;
    let (r, _) = run(10, tile(4_000_000, 1_000_000), &lat, 4);
    assert!((r.total_seconds - 43.5e-3).abs() < 1e-12, "{r:?}");
}

#[test]
fn an_mmu_that_rebuilds_when_idle_shares_the_decode() {
    // Engine-bound: 0.1 ms transfers, 1 ms rebuilds, 10 us multiplies.
    let mut hw = unit();
    hw.mmu.gemv_macs_per_s = 1e11;
    let t = tile(100_000, 1_000_000);
    let (alone, _) = run(10, t, &hw, 16);
    assert!((alone.total_seconds - 10.11e-3).abs() < 1e-12, "{alone:?}");
    hw.mmu.rebuilds_when_idle = true;
    let (shared, tl) = run(10, t, &hw, 16);
    // Engine and MMU take turns: two rebuilds per 1 ms plus the multiplies in between.
    assert!(
        shared.total_seconds < 0.55 * alone.total_seconds,
        "{shared:?}"
    );
    assert!(shared.total_seconds > 5e-3, "{shared:?}");
    assert_eq!(tl.rebuilds.len(), 10);
    // Busy rebuilding is not stalling.
    assert!(shared.mmu_stall_fraction < alone.mmu_stall_fraction);
    // Where the MMU is the slower stage (or the bus), it never needs to help: the same
    // times as without.
    for (t, gemv, la) in [
        (tile(1_000_000, 1_000_000), 0.25e9, 16),
        (tile(4_000_000, 1_000_000), 1e9, 4),
    ] {
        let mut a = unit();
        a.mmu.gemv_macs_per_s = gemv;
        let mut b = a.clone();
        b.mmu.rebuilds_when_idle = true;
        let (ra, _) = run(10, t, &a, la);
        let (rb, _) = run(10, t, &b, la);
        assert!(
            (ra.total_seconds - rb.total_seconds).abs() < 1e-12,
            "{ra:?} {rb:?}"
        );
    }
}

#[test]
fn bad_hardware_names_the_field() {
    let mut hw = unit();
    hw.bus.gbps = 0.0;
    assert_eq!(
        hw.validate(),
        Err(SimError::NotPositive {
            field: "bus.gbps",
            value: 0.0
        })
    );
    let mut hw = unit();
    hw.lmd.staging_bytes = 10;
    let trace = sweep(0, &[40], 1);
    let p = plan(&trace, 100, Policy::Lru, 1).unwrap();
    assert_eq!(
        simulate(&p, &[tile(11, 10)], 1, 1, &hw).unwrap_err(),
        SimError::StagingTooSmall {
            staging: 10,
            tile: 11
        }
    );
    assert!(matches!(
        simulate(&p, &[], 1, 1, &hw),
        Err(SimError::UnknownTile { .. })
    ));
    assert!(HardwareSpec::preset("tpu").is_err());
}

proptest! {
    #[test]
    fn conservation_order_and_monotone_in_bandwidth(
        n in 1usize..40,
        stored in 1u64..5_000_000,
        elements in 1u64..2_000_000,
        gbps in 0.5f64..100.0,
        lookahead in 0usize..6,
        cap_tiles in 1u64..12,
    ) {
        let mut hw = unit();
        hw.lmd.capacity_bytes = hw.lmd.staging_bytes + cap_tiles * elements * 4;
        hw.bus.gbps = gbps;
        let t = tile(stored, elements);
        let trace = sweep(0, &vec![elements * 4; n], 2);
        let p = plan(&trace, hw.buffer_bytes(), Policy::Belady, lookahead).unwrap();
        let (r, tl) = simulate(&p, &vec![t; n], 1, 1, &hw).unwrap();
        // Bytes sent = one transfer per rebuild; every tile rebuilt before it is used.
        prop_assert_eq!(r.bus_bytes, stored * p.steps.len() as u64);
        for (pos, m) in tl.multiplies.iter().enumerate() {
            prop_assert!(tl.rebuilds[p.source[pos]].end <= m.start + 1e-15);
        }
        for (s, r) in tl.transfers.iter().zip(&tl.rebuilds) {
            prop_assert!(s.end <= r.start + 1e-15);
        }
        prop_assert!(r.buffer.peak_bytes <= hw.buffer_bytes());
        // More bandwidth is never slower.
        let mut fast = hw.clone();
        fast.bus.gbps = gbps * 2.0;
        let (r2, _) = simulate(&p, &vec![t; n], 1, 1, &fast).unwrap();
        prop_assert!(r2.total_seconds <= r.total_seconds + 1e-12);
        prop_assert!(r2.dense_total_seconds <= r.dense_total_seconds + 1e-12);
    }
}

#[test]
fn a_bus_trace_drives_the_transfers() {
    let t = tile(1_000_000, 1_000_000);
    let base = unit();
    // A constant trace is the constant bus.
    let mut same = unit();
    same.bus.trace = Some(Trace::constant(1.0).unwrap());
    let (a, ta) = run(8, t, &base, 2);
    let (b, tb) = run(8, t, &same, 2);
    assert_eq!(ta.transfers, tb.transfers);
    assert_eq!(a.total_seconds, b.total_seconds);
    // The rate halves after 3 ms: transfers started later take twice as long, and the
    // whole run lies between the 1 GB/s and the 0.5 GB/s bus.
    let mut varying = unit();
    varying.bus.trace = Some(Trace::new(vec![(0.0, 1.0), (0.003, 0.5)]).unwrap());
    let (v, tv) = run(8, t, &varying, 2);
    let mut slow = unit();
    slow.bus.gbps = 0.5;
    let (s, _) = run(8, t, &slow, 2);
    assert!(a.total_seconds < v.total_seconds && v.total_seconds < s.total_seconds);
    for x in &tv.transfers {
        let d = x.end - x.start;
        if x.end <= 0.003 {
            assert!((d - 1e-3).abs() < 1e-12, "{x:?}");
        } else if x.start >= 0.003 {
            assert!((d - 2e-3).abs() < 1e-12, "{x:?}");
        }
    }
    // The dense baseline crosses the same varying bus.
    assert!(v.dense_total_seconds > a.dense_total_seconds);
    // A preset file carries the trace as [seconds, gbps] pairs.
    let j = serde_json::to_value(&varying.bus).unwrap();
    assert_eq!(j["trace"], serde_json::json!([[0.0, 1.0], [0.003, 0.5]]));
    let back: BusSpec = serde_json::from_value(j).unwrap();
    assert_eq!(back, varying.bus);
}
