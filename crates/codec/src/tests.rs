use super::*;
use proptest::prelude::*;

/// The crate's tests' pseudo-random numbers: xorshift64 from `seed`, each call the next
/// state.
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

fn roundtrip(dtype: Dtype, values: &[u8]) -> Vec<EncodedStream> {
    let layout = PlaneLayout::for_dtype(dtype).unwrap();
    let mut h = PlaneHistograms::new(layout);
    h.add(values);
    let models = TensorModels::fit(&h);
    let models = TensorModels::from_bytes(&models.to_bytes()).unwrap();
    let streams = encode_planes(layout, values, &models).unwrap();
    // The writer's path, with the tile's histograms counted beforehand: the same streams.
    assert_eq!(
        encode_planes_counted(layout, values, &models, Some(&h)).unwrap(),
        streams
    );
    let entries: Vec<_> = streams.iter().map(EncodedStream::entry).collect();
    let data: Vec<u8> = streams.iter().flat_map(|s| s.bytes.clone()).collect();
    // Every kernel this machine has, and the scalar reference, byte for byte.
    for kernel in Kernel::available_kernels() {
        let mut out = vec![0u8; values.len()];
        decode_planes(
            layout,
            &entries,
            &data,
            &models.decoder_with(kernel),
            &mut out,
        )
        .unwrap();
        assert!(out == values, "{dtype} round trip with {kernel:?}");
    }
    // The chunked decoder hands out the same bytes, in order, in bounded pieces.
    let mut chunked = Vec::new();
    let n = values.len() / layout.value_bytes;
    let dec = models.decoder();
    decode_planes_chunked::<CodecError>(layout, &entries, &data, &dec, n, |c| {
        assert!(!c.is_empty() && c.len() <= 2048 * layout.value_bytes);
        chunked.extend_from_slice(c);
        Ok(())
    })
    .unwrap();
    assert_eq!(chunked, values, "{dtype} chunked");
    streams
}

/// `vals` coded as planes with the tensor's own models, then `flips` bits flipped at
/// places drawn from `seed`: the layout, models, stream entries and corrupted bytes.
fn encode_corrupted(
    dtype: Dtype,
    vals: &[u8],
    seed: u64,
    flips: usize,
) -> (PlaneLayout, TensorModels, Vec<StreamEntry>, Vec<u8>) {
    let layout = PlaneLayout::for_dtype(dtype).unwrap();
    let mut h = PlaneHistograms::new(layout);
    h.add(vals);
    let models = TensorModels::fit(&h);
    let streams = encode_planes(layout, vals, &models).unwrap();
    let entries: Vec<_> = streams.iter().map(EncodedStream::entry).collect();
    let mut data: Vec<u8> = streams.iter().flat_map(|s| s.bytes.clone()).collect();
    let mut s = seed;
    for _ in 0..flips {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = (s >> 20) as usize % data.len();
        data[i] ^= 1 << (s >> 60 & 7);
    }
    (layout, models, entries, data)
}

#[derive(Debug, PartialEq)]
enum SinkOrCodec {
    Sink,
    Codec(CodecError),
}

impl From<CodecError> for SinkOrCodec {
    fn from(e: CodecError) -> Self {
        SinkOrCodec::Codec(e)
    }
}

#[test]
fn a_chunked_decode_stops_at_the_sinks_error_and_returns_it() {
    let values: Vec<u8> = (0..10_000u32)
        .flat_map(|i| ((i % 300) as f32 * 0.01).to_le_bytes())
        .collect();
    let layout = PlaneLayout::for_dtype(Dtype::F32).unwrap();
    let mut h = PlaneHistograms::new(layout);
    h.add(&values);
    let models = TensorModels::fit(&h);
    let streams = encode_planes(layout, &values, &models).unwrap();
    let entries: Vec<_> = streams.iter().map(EncodedStream::entry).collect();
    let data: Vec<u8> = streams.iter().flat_map(|s| s.bytes.clone()).collect();
    let mut calls = 0;
    let r = decode_planes_chunked(layout, &entries, &data, &models.decoder(), 10_000, |_| {
        calls += 1;
        if calls == 2 {
            Err(SinkOrCodec::Sink)
        } else {
            Ok(())
        }
    });
    assert_eq!(r, Err(SinkOrCodec::Sink));
    assert_eq!(calls, 2);
    // A wrong value count is the codec's error, not a panic.
    let r = decode_planes_chunked(layout, &entries, &data, &models.decoder(), 10_001, |_| {
        Ok::<(), SinkOrCodec>(())
    });
    assert!(matches!(r, Err(SinkOrCodec::Codec(_))), "{r:?}");
}

const SPECIAL_F32: [f32; 8] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    -0.0,
    0.0,
    1e-45,
    -1.1754942e-38,
    f32::MAX,
];

#[test]
fn special_values_round_trip_bit_exact() {
    let mut v: Vec<u8> = SPECIAL_F32.iter().flat_map(|x| x.to_le_bytes()).collect();
    v.extend(0x7fc0_1234u32.to_le_bytes()); // NaN with a payload
    roundtrip(Dtype::F32, &v);
    let b: Vec<u8> = [0x7f81u16, 0xff80, 0x8000, 0x0001, 0x7fc1, 0x3f80]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    roundtrip(Dtype::BF16, &b);
    roundtrip(Dtype::F16, &b);
}

#[test]
fn gaussian_bf16_beats_order0_byte_planes() {
    // A deterministic bell-shaped weight tensor: the head coding must get below the
    // 8 + H(sign+exponent byte) bits that byte grouping reaches.
    let mut s = 7u64;
    let vals: Vec<u8> = (0..65536)
        .flat_map(|_| {
            let mut acc = 0.0f32;
            for _ in 0..4 {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            let bits = (acc * 0.05).to_bits();
            ((bits >> 16) as u16).to_le_bytes()
        })
        .collect();
    let streams = roundtrip(Dtype::BF16, &vals);
    let coded: usize = streams.iter().map(|s| s.bytes.len()).sum();
    let mut h = [0u64; 512];
    for c in vals.chunks_exact(2) {
        h[(u16::from_le_bytes([c[0], c[1]]) >> 7) as usize] += 1;
    }
    let n = (vals.len() / 2) as f64;
    let h0: f64 = h
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64 / n) * (c as f64 / n).log2())
        .sum();
    let order0_bytes = n * (h0 + 7.0) / 8.0;
    assert!(
        (coded as f64) < order0_bytes,
        "coded {coded} vs order-0 bound {order0_bytes}"
    );
}

#[test]
fn constant_and_tiny_tiles() {
    roundtrip(Dtype::F32, &[]);
    roundtrip(Dtype::F32, &1.0f32.to_le_bytes());
    let zeros = vec![0u8; 4096];
    let s = roundtrip(Dtype::BF16, &zeros);
    assert!(s.iter().all(|s| s.bytes.is_empty()));
}

#[test]
fn foreign_model_alphabet_is_an_error() {
    // A byte-plane stream pointing at the 2048-symbol head model must not decode.
    // Skewed low bytes, so the byte planes are coded with the tensor's shared models.
    let vals: Vec<u8> = (0..4000u32)
        .flat_map(|i| {
            (0x3000_0000 | ((i * i % 37) << 21) | ((i % 3) << 8) | (i * 7919 % 5)).to_le_bytes()
        })
        .collect();
    let layout = PlaneLayout::for_dtype(Dtype::F32).unwrap();
    let mut h = PlaneHistograms::new(layout);
    h.add(&vals);
    let models = TensorModels::fit(&h);
    let streams = encode_planes(layout, &vals, &models).unwrap();
    let mut entries: Vec<_> = streams.iter().map(EncodedStream::entry).collect();
    let data: Vec<u8> = streams.iter().flat_map(|s| s.bytes.clone()).collect();
    for e in entries.iter_mut().skip(2) {
        if matches!(e.codec, StreamCodec::RansShared { .. }) {
            e.codec = StreamCodec::RansShared { model: 0 };
        }
    }
    assert!(
        entries
            .iter()
            .skip(2)
            .any(|e| e.codec == StreamCodec::RansShared { model: 0 }),
        "the test needs a shared-model byte plane to redirect: {entries:?}"
    );
    let mut out = vec![0u8; vals.len()];
    let err = decode_planes(layout, &entries, &data, &models.decoder(), &mut out).unwrap_err();
    assert!(
        matches!(err, CodecError::BadModel { reason } if reason.contains("alphabet wider")),
        "{err}"
    );
}

#[test]
fn whole_tile_codecs() {
    let v: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
    for codec in [ValueCodec::Raw, ValueCodec::Zstd] {
        let s = encode_whole(codec, &v, 3).unwrap();
        let mut out = vec![0u8; v.len()];
        decode_whole(&[s.entry()], &s.bytes, &mut out).unwrap();
        assert_eq!(out, v);
        let mut short = vec![0u8; v.len() - 1];
        assert!(decode_whole(&[s.entry()], &s.bytes, &mut short).is_err());
    }
}

fn dtype_strategy() -> impl Strategy<Value = Dtype> {
    prop_oneof![Just(Dtype::F32), Just(Dtype::F16), Just(Dtype::BF16)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_bits_round_trip(dtype in dtype_strategy(), raw in proptest::collection::vec(any::<u8>(), 0..3000), special in 0usize..4) {
        let vb = PlaneLayout::for_dtype(dtype).unwrap().value_bytes;
        let mut v = raw;
        v.truncate(v.len() / vb * vb);
        // Mix in runs of special values so constant and skewed planes are exercised.
        if special > 0 && !v.is_empty() {
            let sp: Vec<u8> = SPECIAL_F32.iter().flat_map(|x| x.to_le_bytes()).collect();
            let k = v.len() / special;
            for (i, b) in v.iter_mut().enumerate().take(k) {
                *b = sp[i % sp.len()];
            }
        }
        roundtrip(dtype, &v);
    }

    #[test]
    fn corrupted_streams_never_panic(seed in any::<u64>(), flips in 1usize..8) {
        let vals: Vec<u8> = (0..2000u32).flat_map(|i| ((i as f32).sin() * 0.1).to_le_bytes()).collect();
        let (layout, models, entries, data) = encode_corrupted(Dtype::F32, &vals, seed, flips);
        let mut out = vec![0u8; vals.len()];
        let _ = decode_planes(layout, &entries, &data, &models.decoder(), &mut out);
    }

    /// Large enough for 32-lane streams (the fused BF16 rounds, the wide-table rounds),
    /// corrupted, on every kernel: an error or some output, never a panic or a read out of
    /// bounds.
    #[test]
    fn corrupted_32_lane_streams_never_panic_on_any_kernel(
        seed in any::<u64>(),
        flips in 1usize..8,
        bf16 in any::<bool>(),
        wide in any::<bool>(),
    ) {
        let n = 20_000u32;
        let f: Vec<f32> = (0..n)
            .map(|i| if wide { f32::from_bits(i.wrapping_mul(2654435761) & 0xbfff_ffff) } else { (i as f32).sin() * 0.1 })
            .collect();
        let (dtype, vals): (Dtype, Vec<u8>) = if bf16 {
            (Dtype::BF16, f.iter().flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect())
        } else {
            (Dtype::F32, f.iter().flat_map(|x| x.to_le_bytes()).collect())
        };
        let (layout, models, entries, data) = encode_corrupted(dtype, &vals, seed, flips);
        for kernel in Kernel::available_kernels() {
            let mut out = vec![0u8; vals.len()];
            let _ = decode_planes(layout, &entries, &data, &models.decoder_with(kernel), &mut out);
        }
    }
}

#[test]
fn every_kernel_decodes_every_layout_and_table_kind_alike() {
    let _ =
        crate::rans::tests::simd_kernels("every_kernel_decodes_every_layout_and_table_kind_alike");
    let mut next = xorshift(3);
    for n in [1usize, 31, 33, 100, 1000, 1500, 5000, 9000, 70_000] {
        // Bell-shaped weights (a compact head table) and values spread over the whole
        // exponent range (more than 256 head symbols: a wide table).
        let bell: Vec<f32> = (0..n)
            .map(|_| (0..4).map(|_| (next() % 1000) as f32 - 500.0).sum::<f32>() * 1e-4)
            .collect();
        let spread: Vec<f32> = (0..n)
            .map(|_| f32::from_bits((next() as u32) & 0xbfff_ffff))
            .collect();
        // Positive values below 2^-63: every BF16 head below 256, a table whose values
        // are the symbols themselves.
        let tiny: Vec<f32> = (0..n)
            .map(|_| {
                f32::from_bits(((20 + next() % 40) as u32) << 23 | (next() as u32 & 0x7f_ffff))
            })
            .collect();
        // Heads 8 k for 150 values of k: at most 256 symbols but 150 groups of eight, so a
        // compact table mapped through its symbol table rather than by group offsets
        // (which the bell's few dozen groups use).
        let scattered: Vec<f32> = (0..n)
            .map(|_| {
                f32::from_bits(((8 * (next() % 150)) as u32) << 21 | (next() as u32 & 0x1f_ffff))
            })
            .collect();
        for v in [&bell, &spread, &tiny, &scattered] {
            let f32s: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            roundtrip(Dtype::F32, &f32s);
            let bf16: Vec<u8> = v
                .iter()
                .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
                .collect();
            roundtrip(Dtype::BF16, &bf16);
            let f16: Vec<u8> = v
                .iter()
                .flat_map(|x| ((x.to_bits() >> 16) as u16 ^ 0x1234).to_le_bytes())
                .collect();
            roundtrip(Dtype::F16, &f16);
        }
    }
}

/// The AVX-512 build of the plane split writes what the scalar reference writes, on every
/// layout and on lengths that are not a multiple of the vector width (without AVX-512 it
/// fails unless SPARSEWIRE_ALLOW_NO_SIMD is set or the build is portable, then says
/// SKIPPED).
#[test]
fn avx512_split_matches_the_scalar_split() {
    if !simd::avx512_available() {
        assert!(
            cfg!(feature = "portable") || std::env::var_os("SPARSEWIRE_ALLOW_NO_SIMD").is_some(),
            "cannot test the AVX-512 split on this CPU; set SPARSEWIRE_ALLOW_NO_SIMD=1 to skip"
        );
        eprintln!("SKIPPED avx512_split_matches_the_scalar_split: no AVX-512 on this CPU or build");
        return;
    }
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32] {
        let l = PlaneLayout::for_dtype(dtype).unwrap();
        for n in [0usize, 1, 15, 16, 17, 63, 1000, 4099] {
            let values: Vec<u8> = (0..n * l.value_bytes).map(|_| next() as u8).collect();
            let planes = || {
                (
                    vec![0u16; n],
                    vec![0u8; if l.tail_bits > 0 { n } else { 0 }],
                    vec![0u8; if l.byte_planes >= 1 { n } else { 0 }],
                    vec![0u8; if l.byte_planes >= 2 { n } else { 0 }],
                )
            };
            let (mut h0, mut t0, mut a0, mut b0) = planes();
            let (mut h1, mut t1, mut a1, mut b1) = planes();
            planes::split_scalar(l, &values, &mut h0, &mut t0, &mut a0, &mut b0);
            simd::split_avx512(l, &values, &mut h1, &mut t1, &mut a1, &mut b1);
            assert_eq!((h0, t0, a0, b0), (h1, t1, a1, b1), "{dtype:?} n={n}");
        }
    }
}

/// The reused per-thread zstd compressor writes the frames a fresh one writes, across
/// levels and inputs in any order.
#[test]
fn reused_zstd_compressor_writes_fresh_frames() {
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        (0..1000u32).map(|i| (i * 7 % 13) as u8).collect(),
        (0..70_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect(),
    ];
    for level in [3, 1, 3, 19, 3] {
        for b in &inputs {
            let reused = encode_whole(ValueCodec::Zstd, b, level).unwrap().bytes;
            assert_eq!(
                reused,
                zstd::bulk::compress(b, level).unwrap(),
                "level {level}"
            );
        }
    }
}

/// The planes' lower bound never exceeds what the planes take, on every layout and on the
/// inputs where it is tight (few distinct symbols, so rANS is close to the entropy; all
/// distinct, where it must reach the raw size), and it does reach the raw size on a tile
/// of a few dozen noisy floats (what lets the writer skip fitting their models).
#[test]
fn planes_lower_bound_is_below_the_planes() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for case in 0..3000 {
        let dtype = [Dtype::F32, Dtype::BF16, Dtype::F16][case % 3];
        let layout = PlaneLayout::for_dtype(dtype).unwrap();
        let n = 1 + next() as usize % [8usize, 64, 400, 3000][(case / 3) % 4];
        let distinct = 1 + next() % [2u64, 5, 40, 1 << 32][(case / 12) % 4];
        let pool: Vec<u64> = (0..distinct.min(64)).map(|_| next()).collect();
        let values: Vec<u8> = (0..n)
            .flat_map(|_| {
                let v = if distinct > 64 {
                    next()
                } else {
                    // Skewed: the first symbols of the pool far more often.
                    let r = next() % 100;
                    pool[(r * r / 100 % pool.len() as u64) as usize]
                };
                v.to_le_bytes()[..layout.value_bytes].to_vec()
            })
            .collect();
        let none = TensorModels {
            models: vec![None; 1 + layout.byte_planes],
        };
        let planes: usize = encode_planes(layout, &values, &none)
            .unwrap()
            .iter()
            .map(|s| s.bytes.len())
            .sum();
        let floor = encode_planes_len_lower_bound(layout, &values);
        assert!(
            floor <= planes,
            "case {case} {dtype} n={n}: {floor} > {planes}"
        );
    }
    let noise: Vec<u8> = (0..24)
        .flat_map(|i| ((i as f32 * 0.7371).sin() * 0.1).to_le_bytes())
        .collect();
    let layout = PlaneLayout::for_dtype(Dtype::F32).unwrap();
    assert!(encode_planes_len_lower_bound(layout, &noise) >= noise.len());
}
