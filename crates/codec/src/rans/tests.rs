use super::*;

fn hist(sym: &[u16], alphabet: usize) -> Vec<u64> {
    let mut h = vec![0u64; alphabet];
    for &s in sym {
        h[s as usize] += 1;
    }
    h
}

#[test]
fn round_trips_skewed_and_uniform_data() {
    let mut seed = 1u64;
    for n in [0usize, 1, 7, 8, 9, 100, 4097, 50_000] {
        let syms: Vec<u16> = (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (seed >> 33) as u32;
                (r.trailing_zeros().min(20) as u16) * 3 + (r as u16 & 1)
            })
            .collect();
        let mut h = hist(&syms, 64);
        h[0] += 1;
        h[63] += 1;
        let m = Model::from_counts(&h).unwrap();
        let mut buf = Vec::new();
        encode(&syms, &m, &mut buf).unwrap();
        let mut out = vec![0u16; n];
        decode(&buf, &m.decode_table(), &mut out).unwrap();
        assert_eq!(out, syms, "n={n}");
        let est = m.cost_bits(&hist(&syms, 64)).unwrap() / 8.0;
        assert!((buf.len() as f64) < est + STATE_BYTES as f64 + 64.0 + est * 0.01);
    }
}

#[test]
fn coarse_models_round_trip_and_are_chosen_for_small_tiles() {
    let counts = [3u64, 0, 40, 2, 1, 0, 9];
    for p in [3, 6, 12] {
        let m = Model::from_counts_at(&counts, p).unwrap();
        let (back, used) = Model::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!((&back, used), (&m, m.to_bytes().len()));
        let syms: Vec<u16> = [0u16, 2, 2, 3, 6, 4, 2].repeat(5);
        let mut buf = Vec::new();
        encode(&syms, &m, &mut buf).unwrap();
        let mut out = vec![0u16; syms.len()];
        decode(&buf, &m.decode_table(), &mut out).unwrap();
        assert_eq!(out, syms);
    }
    assert!(
        Model::from_counts_at(&counts, 2).is_none(),
        "5 symbols need 3 bits"
    );
    let (m, _) = Model::best_for(&counts).unwrap();
    assert!(m.precision < 12);
}

#[test]
fn model_serialisation_round_trips_and_rejects_garbage() {
    let m = Model::from_counts(&[5, 0, 0, 1000, 3, 0, 1]).unwrap();
    let b = m.to_bytes();
    let (m2, used) = Model::from_bytes(&b).unwrap();
    assert_eq!((m2, used), (m, b.len()));
    assert!(Model::from_bytes(&b[..b.len() - 1]).is_err());
    assert!(Model::from_bytes(&[0xff; 12]).is_err());
    assert!(Model::from_counts(&[0, 9, 0]).is_none());
}

#[test]
fn simd_kernel_matches_the_scalar_reference() {
    // Without the kernel both paths are the scalar one: say so rather than pass quietly.
    if !simd_available() {
        assert!(
            cfg!(feature = "portable") || std::env::var_os("SPARSEWIRE_ALLOW_NO_SIMD").is_some(),
            "cannot test the AVX2 rANS kernel on this CPU; set SPARSEWIRE_ALLOW_NO_SIMD=1 to skip"
        );
        eprintln!("SKIPPED simd_kernel_matches_the_scalar_reference: no AVX2 kernel");
        return;
    }
    let mut seed = 9u64;
    for (n, alphabet) in [(5000usize, 256usize), (40_000, 2048), (16, 3), (17, 256)] {
        let syms: Vec<u16> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let r = (seed >> 33) as usize;
                ((r % 7) * (r % 13) % alphabet) as u16
            })
            .collect();
        let m = Model::from_counts(&hist(&syms, alphabet)).unwrap();
        let mut buf = Vec::new();
        encode(&syms, &m, &mut buf).unwrap();
        let t = m.decode_table();
        let (mut fast, mut slow) = (vec![0u16; n], vec![0u16; n]);
        let mut d = Decoder::new(&buf).unwrap();
        d.decode(&t, &mut fast).unwrap();
        d.finish().unwrap();
        let mut d = Decoder::new(&buf).unwrap();
        d.decode_reference(&t, &mut slow).unwrap();
        d.finish().unwrap();
        assert_eq!(fast, syms);
        assert_eq!(slow, syms);
        // Corrupted words: both paths must fail or agree, never read out of bounds.
        let mut bad = buf.clone();
        let at = bad.len() - 3;
        bad[at] ^= 0x5a;
        if let Ok(mut d) = Decoder::new(&bad) {
            let _ = d.decode(&t, &mut fast);
        }
    }
}

#[test]
fn corrupt_streams_are_errors_not_panics() {
    let syms: Vec<u16> = (0..1000).map(|i| (i % 5) as u16).collect();
    let m = Model::from_counts(&hist(&syms, 5)).unwrap();
    let mut buf = Vec::new();
    encode(&syms, &m, &mut buf).unwrap();
    let t = m.decode_table();
    let mut out = vec![0u16; 1000];
    for cut in [0, 3, STATE_BYTES, buf.len() - 2] {
        assert!(decode(&buf[..cut], &t, &mut out).is_err());
    }
    let mut longer = vec![0u16; 1001];
    assert!(decode(&buf, &t, &mut longer).is_err());
}
