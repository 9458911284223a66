//! Soak: requests for a long time through a proxy that injects random faults (seeded):
//! flipped bytes, damaged streams under a valid frame checksum, truncated frames, silence
//! past the timeout, dropped connections, garbage sent to the host. Every pass's outputs
//! must equal the fault-free run's, bit for bit: no tile lost, none corrupt. Ignored by
//! default; `cargo xtask soak [--seconds S]` runs it (default 600 s), as does
//! `SPARSEWIRE_SOAK_SECONDS=S cargo test --release -p sparsewire-link --test soak -- --ignored`.

use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_link::client::{Client, ClientOptions};
use sparsewire_link::frame::Frame;
use sparsewire_link::host::{HostModel, HostOptions};
use sparsewire_link::pace::Pacer;
use sparsewire_link::run::{run, Policy, RunOptions};
use sparsewire_link::server::Server;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn model() -> TensorFile {
    let v = |n: usize, s: u32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32 ^ s).wrapping_mul(2654435761) >> 8) as f32 / 16_777_216.0 - 0.5)
            .collect()
    };
    TensorFile {
        tensors: vec![
            Tensor::from_f32("a", vec![700, 200], &v(700 * 200, 1)),
            Tensor::from_f32("b", vec![64, 700], &v(64 * 700, 2)),
        ],
        metadata: vec![],
    }
}

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A proxy injecting a fault into about one frame in `every`, by kind; counts them.
fn faulty_proxy(
    upstream: sparsewire_link::transport::Endpoint,
    seed: u64,
    every: u64,
    faults: Arc<AtomicU64>,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut down) = conn else { return };
            let Ok(mut up) = TcpStream::connect(&upstream) else {
                continue;
            };
            let mut rng = Rng(seed ^ (n as u64).wrapping_mul(0x9E37));
            let (mut d2, mut u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            let junk_at = rng.next() % (every * 8);
            let f2 = faults.clone();
            std::thread::spawn(move || {
                // Requests upstream; now and then garbage instead.
                let mut k = 0;
                loop {
                    let Ok(f) = Frame::read_from(&mut d2, 1 << 20) else {
                        return;
                    };
                    k += 1;
                    let b = if k == junk_at {
                        f2.fetch_add(1, Ordering::Relaxed);
                        b"garbage, not a frame".to_vec()
                    } else {
                        f.to_bytes()
                    };
                    if u2.write_all(&b).is_err() {
                        return;
                    }
                }
            });
            let faults = faults.clone();
            std::thread::spawn(move || loop {
                let Ok(f) = Frame::read_from(&mut up, u32::MAX) else {
                    return;
                };
                let mut b = f.to_bytes();
                if rng.next().is_multiple_of(every) {
                    faults.fetch_add(1, Ordering::Relaxed);
                    match rng.next() % 5 {
                        0 => {
                            let last = b.len() - 9;
                            let i = 16 + (rng.next() as usize % f.payload.len().max(1));
                            b[i.min(last)] ^= 0x20;
                        }
                        1 => {
                            let cut = rng.next() as usize % b.len();
                            let _ = down.write_all(&b[..cut]);
                            return;
                        }
                        2 => std::thread::sleep(Duration::from_millis(600)),
                        3 => return,
                        _ => {
                            let mut p = f.payload.clone();
                            if !p.is_empty() {
                                let i = rng.next() as usize % p.len();
                                p[i] ^= 1 << (rng.next() % 8);
                            }
                            b = Frame::new(f.kind, f.id, p).to_bytes();
                        }
                    }
                }
                if down.write_all(&b).is_err() {
                    return;
                }
            });
        }
    });
    addr
}

#[test]
#[ignore = "a long soak: cargo xtask soak"]
fn faults_for_minutes_lose_and_corrupt_nothing() {
    let seconds: f64 = std::env::var("SPARSEWIRE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600.0);
    let host = Arc::new(HostModel::new(&model(), &HostOptions::default()).unwrap());
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        false,
        host,
        Pacer::new(None),
    )
    .unwrap()
    .spawn();
    let o = |policy| RunOptions {
        policy,
        passes: Some(4),
        retries: 20,
        ..RunOptions::default()
    };
    let policies = [Policy::Lossless, Policy::Fixed(0.5), Policy::Fixed(0.85)];
    let want: Vec<Vec<Vec<f32>>> = {
        let mut c = Client::connect(server.addr(), ClientOptions::default()).unwrap();
        policies
            .iter()
            .map(|p| run(&mut c, &o(*p), &mut |_| {}).unwrap().outputs)
            .collect()
    };
    let faults = Arc::new(AtomicU64::new(0));
    let proxy = faulty_proxy(server.addr(), 0x5EED, 40, faults.clone());
    let copts = ClientOptions {
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let mut c = Client::connect(proxy, copts).unwrap();
    let t0 = Instant::now();
    let (mut runs, mut retries, mut tiles) = (0u64, 0u64, 0u64);
    while t0.elapsed().as_secs_f64() < seconds {
        let i = runs as usize % policies.len();
        let r = run(&mut c, &o(policies[i]), &mut |_| {}).unwrap();
        assert_eq!(
            r.outputs, want[i],
            "run {runs}: outputs differ from the fault-free run"
        );
        retries += u64::from(r.retries);
        tiles += r.bytes_sent;
        runs += 1;
    }
    let faults = faults.load(Ordering::Relaxed);
    println!(
        "soak: {:.0} s, {runs} runs of 4 passes, {faults} faults injected, {retries} retries, {tiles} bytes delivered, {} reconnects; every output bit-exact",
        t0.elapsed().as_secs_f64(),
        c.reconnects
    );
    assert!(faults > 0 && retries > 0);
}
