//! Isolated rANS decode speed per kernel: ns per symbol on a skewed 1 Mi-symbol stream
//! (32 lanes), to 16-bit symbols and to the 8-bit table values the plane decoder takes.
use sparsewire_codec::rans::{encode, Decoder, Model};
use sparsewire_codec::Kernel;
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
    println!(
        "bits/sym {:.2}  encode {:.2} ns/sym",
        buf.len() as f64 * 8.0 / n as f64,
        enc * 1e9 / n as f64
    );
    let table = m.decode_table();
    for kernel in Kernel::available_kernels() {
        let time = |f: &mut dyn FnMut()| {
            let mut best = f64::MAX;
            for _ in 0..50 {
                let t = Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best * 1e9 / n as f64
        };
        let mut enc = Vec::new();
        let encode_ns = time(&mut || {
            enc.clear();
            sparsewire_codec::rans::encode_with(&syms, &m, &mut enc, kernel).unwrap();
        });
        assert_eq!(enc, buf);
        let mut out = vec![0u16; n];
        let symbols = time(&mut || {
            let mut d = Decoder::new(&buf).unwrap();
            d.decode_with(&table, &mut out, kernel).unwrap();
            d.finish().unwrap();
        });
        assert_eq!(out, syms);
        let mut values = vec![0u8; n];
        let values_ns = time(&mut || {
            let mut d = Decoder::new(&buf).unwrap();
            d.decode_values(&table, &mut values, kernel).unwrap();
            d.finish().unwrap();
        });
        println!(
            "{:>7}: encode {encode_ns:.2} ns/sym; decode to symbols {symbols:.2} ns/sym, to table values {values_ns:.2} ns/sym",
            kernel.name()
        );
    }
}
