use super::*;

/// A seeded 64-bit LCG giving its top 31 bits: test data, the same on every machine.
fn lcg(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    }
}

fn hist(sym: &[u16], alphabet: usize) -> Vec<u64> {
    let mut h = vec![0u64; alphabet];
    for &s in sym {
        h[s as usize] += 1;
    }
    h
}

#[test]
fn round_trips_skewed_and_uniform_data() {
    let mut next = lcg(1);
    for n in [0usize, 1, 7, 8, 9, 100, 4097, 50_000] {
        let syms: Vec<u16> = (0..n)
            .map(|_| {
                let r = next() as u32;
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
        assert!((buf.len() as f64) < est + (4 * MAX_LANES) as f64 + 64.0 + est * 0.01);
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
fn tables_read_straight_from_model_bytes_decode_as_the_model_s_own() {
    // Compact kinds (direct alphabet <= 256, and indexed: 300 symbols, 200 present) and
    // the wide kind (400 present), at full and coarse precision.
    let mut rng = lcg(7);
    let mut next = || rng() as usize;
    for (alphabet, present) in [(40usize, 30usize), (300, 200), (600, 400)] {
        let mut counts = vec![0u64; alphabet];
        for s in 0..present {
            counts[s * alphabet / present] = 1 + (next() % 50) as u64;
        }
        for m in [
            Model::from_counts(&counts).unwrap(),
            Model::best_for(&counts).unwrap().0,
        ] {
            let bytes = m.to_bytes();
            let (table, used) = DecodeTable::from_model_bytes(&bytes).unwrap();
            assert_eq!((used, table.alphabet()), (bytes.len(), alphabet));
            let syms: Vec<u16> = (0..5000)
                .map(|_| loop {
                    let s = next() % alphabet;
                    if counts[s] > 0 {
                        break s as u16;
                    }
                })
                .collect();
            let mut buf = Vec::new();
            encode(&syms, &m, &mut buf).unwrap();
            let (mut a, mut b) = (vec![0u16; syms.len()], vec![0u16; syms.len()]);
            decode(&buf, &m.decode_table(), &mut a).unwrap();
            decode(&buf, &table, &mut b).unwrap();
            assert_eq!((&a, &b), (&syms, &syms), "alphabet {alphabet}");
        }
        let bytes = Model::from_counts(&counts).unwrap().to_bytes();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(
                DecodeTable::from_model_bytes(&bytes[..cut]).err(),
                Model::from_bytes(&bytes[..cut]).err(),
            );
        }
    }
}

/// The SIMD kernels this machine has; a test that needs one says so rather than pass
/// quietly where there is none.
pub(crate) fn simd_kernels(test: &str) -> Vec<Kernel> {
    let ks: Vec<Kernel> = Kernel::available_kernels()
        .into_iter()
        .filter(|&k| k != Kernel::Scalar)
        .collect();
    if ks.is_empty() {
        assert!(
            cfg!(feature = "portable") || std::env::var_os("SPARSEWIRE_ALLOW_NO_SIMD").is_some(),
            "cannot test the SIMD kernels on this CPU; set SPARSEWIRE_ALLOW_NO_SIMD=1 to skip"
        );
        eprintln!("SKIPPED {test}: no SIMD kernel on this CPU or build");
    }
    ks
}

#[test]
fn simd_kernels_match_the_scalar_reference() {
    let kernels = simd_kernels("simd_kernels_match_the_scalar_reference");
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
        let mut slow = vec![0u16; n];
        let mut d = Decoder::new(&buf).unwrap();
        d.decode_reference(&t, &mut slow).unwrap();
        d.finish().unwrap();
        assert_eq!(slow, syms);
        for &k in &kernels {
            let mut fast = vec![0u16; n];
            let mut d = Decoder::new(&buf).unwrap();
            d.decode_with(&t, &mut fast, k).unwrap();
            d.finish().unwrap();
            assert_eq!(fast, syms, "{k:?}");
            // Table values, as the plane decoder takes them.
            let mut values = vec![0u8; n];
            let mut d = Decoder::new(&buf).unwrap();
            d.decode_values(&t, &mut values, k).unwrap();
            d.finish().unwrap();
            let map = t.value_symbols().unwrap();
            let back: Vec<u16> = values
                .iter()
                .map(|&v| map.map_or(v as u16, |m| m[v as usize]))
                .collect();
            assert_eq!(back, syms, "{k:?} values");
            // Corrupted words: every kernel fails or agrees, never reads out of bounds.
            let mut bad = buf.clone();
            let at = bad.len() - 3;
            bad[at] ^= 0x5a;
            if let Ok(mut d) = Decoder::new(&bad) {
                let _ = d.decode_with(&t, &mut fast, k);
            }
        }
    }
}

/// The fused F32 rounds (heads, packed tails and raw low bytes merged in the rANS rounds)
/// write what the scalar head decoder followed by the scalar merge writes, on a compact
/// table whose values are the symbols, one whose values index them, and a wide table; the
/// lanes' states and position continue where the scalar decoder's would.
#[test]
fn fused_f32_rounds_match_the_scalar_merge() {
    let kernels = simd_kernels("fused_f32_rounds_match_the_scalar_merge");
    if !kernels.contains(&Kernel::Avx512) {
        eprintln!("SKIPPED fused_f32_rounds_match_the_scalar_merge: no AVX-512 kernel");
        return;
    }
    let mut seed = 5u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (seed >> 33) as usize
    };
    // 100 heads below 256 (direct), 200 spread to 2047 (indexed), 1500 (wide).
    for (n, alphabet, spread) in [
        (20_000usize, 100usize, 1),
        (20_000, 200, 10),
        (40_000, 1500, 1),
    ] {
        let heads: Vec<u16> = (0..n)
            .map(|_| ((next() % alphabet) * spread % 2048) as u16)
            .collect();
        let tails: Vec<u8> = (0..n).map(|_| (next() % 32) as u8).collect();
        let low: Vec<[u8; 2]> = (0..n).map(|_| [next() as u8, next() as u8]).collect();
        let mut packed = Vec::new();
        crate::bits::pack(&tails, 5, &mut packed);
        let (b1, b0): (Vec<u8>, Vec<u8>) = low.iter().map(|l| (l[1], l[0])).unzip();
        let m = Model::from_counts(&hist(&heads, 2048)).unwrap();
        let mut buf = Vec::new();
        encode(&heads, &m, &mut buf).unwrap();
        let t = m.decode_table();
        let mut d = Decoder::new(&buf).unwrap();
        let mut out = vec![0u8; 4 * n];
        // Two calls, the second from where the first stopped, as the plane decoder makes.
        let half = n / 2 / 32 * 32;
        let k1 = d.decode_f32(
            &t,
            &packed,
            [&b1, &b0],
            &mut out[..4 * half],
            Kernel::Avx512,
        );
        assert!(k1 > 0 && k1 <= half && k1.is_multiple_of(32));
        let at = k1;
        let k2 = d.decode_f32(
            &t,
            &packed[at * 5 / 8..],
            [&b1[at..], &b0[at..]],
            &mut out[4 * at..],
            Kernel::Avx512,
        );
        let done = k1 + k2;
        // Only the tails' 12-byte window and the last partial round are left over.
        assert!(done >= n - 64, "{done} of {n}");
        // The rest through the scalar decoder, from the states the fused rounds left.
        let mut rest = vec![0u16; n - done];
        d.decode_reference(&t, &mut rest).unwrap();
        d.finish().unwrap();
        assert_eq!(rest, heads[done..]);
        for i in 0..done {
            let v = (heads[i] as u32) << 21
                | (tails[i] as u32) << 16
                | (low[i][1] as u32) << 8
                | low[i][0] as u32;
            assert_eq!(out[4 * i..4 * i + 4], v.to_le_bytes(), "value {i} of {n}");
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
    for cut in [0, 3, 1 + 4 * 4, buf.len() - 2] {
        assert!(decode(&buf[..cut], &t, &mut out).is_err());
    }
    let mut longer = vec![0u16; 1001];
    assert!(decode(&buf, &t, &mut longer).is_err());
    // 32 lanes: asking for more symbols than the stream holds, or decoding it cut short,
    // fails on every kernel (their last rounds run on a zero-padded copy of the words and
    // must not take its zeros for words).
    let syms: Vec<u16> = (0..20_000).map(|i| (i * 7 % 11 % 5) as u16).collect();
    let m = Model::from_counts(&hist(&syms, 5)).unwrap();
    let mut buf = Vec::new();
    encode(&syms, &m, &mut buf).unwrap();
    let t = m.decode_table();
    for k in Kernel::available_kernels() {
        for extra in [1, 32, 640] {
            let mut longer = vec![0u16; syms.len() + extra];
            let mut d = Decoder::new(&buf).unwrap();
            let r = d.decode_with(&t, &mut longer, k).and_then(|()| d.finish());
            assert!(r.is_err(), "{k:?} decoded {extra} symbols too many");
        }
        for cut in [2, 64, 130] {
            let mut out = vec![0u16; syms.len()];
            let mut d = Decoder::new(&buf[..buf.len() - cut]).unwrap();
            let r = d.decode_with(&t, &mut out, k).and_then(|()| d.finish());
            assert!(r.is_err(), "{k:?} decoded a stream {cut} bytes short");
        }
    }
}

#[test]
fn every_kernel_encodes_the_same_bytes() {
    let kernels = simd_kernels("every_kernel_encodes_the_same_bytes");
    let mut rng = lcg(5);
    let mut next = || rng() as u32;
    for n in [
        0usize, 15, 16, 17, 1000, 1024, 1500, 8191, 8192, 9000, 70_001,
    ] {
        for alphabet in [2usize, 7, 256, 2048] {
            let syms: Vec<u16> = (0..n)
                .map(|_| {
                    let r = next();
                    ((r.trailing_zeros() as usize * 37 + (r >> 28) as usize) % alphabet) as u16
                })
                .collect();
            let mut h = hist(&syms, alphabet);
            h[0] += 1;
            h[alphabet - 1] += 1;
            let m = Model::from_counts(&h).unwrap();
            let mut reference = Vec::new();
            encode_with(&syms, &m, &mut reference, Kernel::Scalar).unwrap();
            let bytes: Vec<u8> = syms.iter().map(|&s| s as u8).collect();
            let mut reference8 = Vec::new();
            if alphabet <= 256 {
                encode_with(&bytes, &m, &mut reference8, Kernel::Scalar).unwrap();
                assert_eq!(reference8, reference, "u8 and u16 symbols code alike");
            }
            for &k in &kernels {
                let mut got = Vec::new();
                encode_with(&syms, &m, &mut got, k).unwrap();
                assert!(got == reference, "n={n} alphabet={alphabet} {k:?}");
                if alphabet <= 256 {
                    let mut got8 = Vec::new();
                    encode_with(&bytes, &m, &mut got8, k).unwrap();
                    assert!(got8 == reference8, "u8 n={n} alphabet={alphabet} {k:?}");
                }
                // A symbol outside the model, or without a frequency, is refused.
                if n > 0 {
                    let mut bad = syms.clone();
                    bad[n / 2] = alphabet as u16 + 3;
                    let e = encode_with(&bad, &m, &mut Vec::new(), k).unwrap_err();
                    assert_eq!(
                        e,
                        CodecError::SymbolNotInModel {
                            symbol: alphabet as u32 + 3
                        }
                    );
                }
            }
        }
    }
    let m = Model::from_counts(&[5, 0, 5]).unwrap();
    for &k in &kernels {
        let e = encode_with(&vec![1u8; 5000], &m, &mut Vec::new(), k).unwrap_err();
        assert_eq!(e, CodecError::SymbolNotInModel { symbol: 1 });
    }
}

/// The compact quantiser matches a full-alphabet reference: `best_for_with_cost` picks
/// the precision whose model (scored by `cost_bits` and `to_bytes`) is cheapest, and its
/// cost is `cost_bits`'s; `varint_len` is the length `put_varint` writes.
#[test]
fn best_for_matches_the_full_alphabet_search() {
    let mut next = crate::tests::xorshift(0x9e37_79b9_7f4a_7c15);
    for case in 0..300 {
        let alphabet = [2usize, 16, 256, 2048][case % 4];
        let present = 2 + (next() as usize % alphabet.min(400));
        let mut counts = vec![0u64; alphabet];
        let scale = [1u64, 3, 40, 5000][(case / 4) % 4];
        for _ in 0..present {
            counts[next() as usize % alphabet] += 1 + next() % scale;
        }
        let full = [12u32, 10, 8, 6]
            .iter()
            .filter(|&&p| counts.iter().sum::<u64>() < 1 << 13 || p == 12)
            .filter_map(|&p| Model::from_counts_at(&counts, p))
            .map(|m| {
                let b = m.to_bytes();
                let bits = m.cost_bits(&counts).unwrap();
                (m, b, bits)
            })
            .min_by(|a, b| {
                (a.2 / 8.0 + a.1.len() as f64).total_cmp(&(b.2 / 8.0 + b.1.len() as f64))
            });
        let fast = Model::best_for_with_cost(&counts);
        match (full, fast) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                assert_eq!(a.0, b.0, "case {case}");
                assert_eq!(a.1, b.1, "case {case}");
                assert_eq!(a.2.to_bits(), b.2.to_bits(), "case {case}");
            }
            (a, b) => panic!("case {case}: {:?} vs {:?}", a.is_some(), b.is_some()),
        }
    }
}
