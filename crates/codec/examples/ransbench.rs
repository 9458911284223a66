//! Isolated rANS decode speed: ns per symbol on a skewed 1M-symbol stream.
use sparsewire_codec::rans::{decode, encode, Model};
use std::time::Instant;

fn main() {
    let n = 1 << 20;
    let mut s = 1u64;
    let syms: Vec<u16> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (s >> 33) as u32;
            (r.trailing_zeros().min(30) * 4 + (r >> 28) % 4) as u16
        })
        .collect();
    let mut h = vec![0u64; 2048];
    for &x in &syms {
        h[x as usize] += 1;
    }
    let m = Model::from_counts(&h).unwrap();
    let mut buf = Vec::new();
    let t = Instant::now();
    encode(&syms, &m, &mut buf).unwrap();
    let enc = t.elapsed().as_secs_f64();
    let table = m.decode_table();
    let mut out = vec![0u16; n];
    let mut best = f64::MAX;
    for _ in 0..200 {
        let t = Instant::now();
        decode(&buf, &table, &mut out).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    assert_eq!(out, syms);
    println!(
        "bits/sym {:.2}  encode {:.2} ns/sym  decode {:.2} ns/sym",
        buf.len() as f64 * 8.0 / n as f64,
        enc * 1e9 / n as f64,
        best * 1e9 / n as f64
    );
}
