//! The lossy host stage end to end: patterns and budgets on hand-made tensors, and the
//! criteria on real MiniLM layers with their real activations (when ../shared/data is
//! there).

use sparsewire_formats::input::InputFile;
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::{Criterion, Pattern};
use sparsewire_pipeline::{compress, decompress, CompressOptions, CompressReport, PipelineError};
use sparsewire_se::{Budget, Rebuild, SparsifyOptions};
mod common;

fn opts(criterion: Criterion, pattern: Pattern, budget: Budget) -> SparsifyOptions {
    SparsifyOptions {
        criterion,
        pattern,
        ..SparsifyOptions::new(budget)
    }
}

/// Sparsify and encode with the default encoder options; the report's sparsified tensors.
fn run(f: &TensorFile, o: &SparsifyOptions) -> Result<(Vec<u8>, Report), PipelineError> {
    let opts = CompressOptions {
        sparsify: Some(o.clone()),
        ..CompressOptions::default()
    };
    let (s, r) = compress(f, &opts)?;
    Ok((s, Report(r)))
}

/// The report, and its sparsified tensors' entries with the stored bytes.
#[derive(Debug)]
struct Report(CompressReport);

struct Lossy {
    name: String,
    output_bytes: u64,
    s: sparsewire_se::report::TensorSparsity,
}

impl Report {
    fn tensors(&self) -> Vec<Lossy> {
        self.0
            .tensors
            .iter()
            .filter_map(|t| {
                t.sparsify.clone().map(|s| Lossy {
                    name: t.stream.name.clone(),
                    output_bytes: t.stream.output_bytes,
                    s,
                })
            })
            .collect()
    }
}

fn read_tensors(p: &std::path::Path) -> TensorFile {
    InputFile::open(p).unwrap().read_all().unwrap()
}

fn weights(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn file() -> TensorFile {
    TensorFile {
        tensors: vec![
            Tensor::from_f32("a.weight", vec![64, 48], &weights(64, 48, 1)),
            Tensor::from_f32("b.weight", vec![32, 96], &weights(32, 96, 2)),
            Tensor::from_f32("b.bias", vec![32], &weights(1, 32, 3)),
        ],
        metadata: vec![],
    }
}

#[test]
fn uniform_sparsity_is_exact_and_decodes_zero_filled() {
    let f = file();
    for pattern in [
        Pattern::Unstructured,
        Pattern::UnstructuredPerRow,
        Pattern::NM { n: 2, m: 4 },
        Pattern::Channel,
    ] {
        let (stream, report) = run(
            &f,
            &opts(Criterion::Magnitude, pattern, Budget::Sparsity(0.5)),
        )
        .unwrap();
        assert_eq!(report.tensors().len(), 2, "the bias stays dense");
        let back = decompress(&stream).unwrap();
        for (t, r) in f.tensors.iter().zip(&back.tensors).take(2) {
            let (a, b) = (t.to_f32_vec().unwrap(), r.to_f32_vec().unwrap());
            let zeros = b.iter().filter(|&&x| x == 0.0).count();
            // Within one element of the target (one row for channel).
            let slack = if pattern == Pattern::Channel {
                t.shape[1] as f64
            } else {
                1.0
            };
            assert!(
                (zeros as f64 - a.len() as f64 * 0.5).abs() <= slack,
                "{pattern:?}: {zeros}"
            );
            // Kept values are bit-exact.
            assert!(a
                .iter()
                .zip(&b)
                .all(|(x, y)| *y == 0.0 || x.to_bits() == y.to_bits()));
        }
        assert_eq!(back.tensors[2], f.tensors[2]);
    }
}

#[test]
fn inspect_bounds_a_sparse_tensor_by_its_mask_and_kept_values() {
    let f = file();
    let (stream, _) = run(
        &f,
        &opts(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::Sparsity(0.5),
        ),
    )
    .unwrap();
    let reader = sparsewire_stream::Reader::new(&stream[..]).unwrap();
    let r = sparsewire_stream::report::inspect(&reader, true).unwrap();
    let t = &r.tensors[0];
    assert_eq!(t.planes[0].plane.to_string(), "mask");
    // H(0.5) = 1 bit per element.
    assert!((t.planes[0].entropy_bound_bytes.unwrap() - 64.0 * 48.0 / 8.0).abs() < 1e-6);
    // The head of the kept values (half the elements) is bounded by at most 11 bits each.
    assert!(t.planes[1].entropy_bound_bytes.unwrap() <= 64.0 * 48.0 / 2.0 * 11.0 / 8.0);
    assert!(t.sparsification.is_some());
}

#[test]
fn row_reconstructions_rebuild_smooth_rows_on_decompress() {
    // Smooth rows: interpolation recovers dropped values that zero-fill would lose.
    let (rows, cols) = (16usize, 64usize);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| 1.0 + 0.01 * (i % cols) as f32 + 0.1 * (i / cols) as f32)
        .collect();
    let f = TensorFile {
        tensors: vec![Tensor::from_f32(
            "s.weight",
            vec![rows as u64, cols as u64],
            &w,
        )],
        metadata: vec![],
    };
    for rebuild in [Rebuild::Linear, Rebuild::Mlp, Rebuild::Auto] {
        let mut o = opts(
            Criterion::Magnitude,
            Pattern::UnstructuredPerRow,
            Budget::Sparsity(0.3),
        );
        o.rebuild = rebuild;
        let (stream, r) = run(&f, &o).unwrap();
        let r = &r.tensors()[0].s;
        assert!(
            r.reconstruction_gain > 10.0,
            "{rebuild:?}: {}",
            r.reconstruction_gain
        );
        let back = decompress(&stream).unwrap().tensors[0]
            .to_f32_vec()
            .unwrap();
        let err: f64 = w
            .iter()
            .zip(&back)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            / w.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
        // What decompress rebuilds is what compress measured.
        assert!(
            (err - r.rel_frobenius).abs() < 1e-6,
            "{err} vs {}",
            r.rel_frobenius
        );
        assert!(err < 1e-3);
    }
}

#[test]
fn budgets_are_met() {
    let f = file();
    let target = 0.4;
    let (stream, report) = run(
        &f,
        &opts(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::TargetRatio(target),
        ),
    )
    .unwrap();
    assert!(
        stream.len() as f64 <= target * f.byte_len() as f64,
        "{} bytes",
        stream.len()
    );
    assert!(report.0.allocation.is_some());
    let (_, report) = run(
        &f,
        &opts(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::MaxError(0.3),
        ),
    )
    .unwrap();
    assert!(report
        .tensors()
        .iter()
        .all(|t| t.s.rel_frobenius <= 0.3 && t.s.sparsity > 0.0));
    // A budget below what any allocation reaches names the closest one.
    let e = run(
        &f,
        &opts(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::TargetBytes(100),
        ),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("closest"), "{msg}");
    // The closest reachable size is a real size, not a sentinel.
    let closest: u64 = msg
        .rsplit("closest reachable is ")
        .next()
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(closest > 100 && closest < f.byte_len(), "{msg}");
}

#[test]
fn correlation_rebuilds_a_redundant_channel_exactly() {
    // Row 3 is 2 x row 0 (in bf16, so exactly representable): dropping it and
    // rebuilding from row 0 loses nothing.
    let mut w = weights(8, 16, 5);
    for c in 0..16 {
        w[3 * 16 + c] = 2.0 * w[c];
    }
    let data: Vec<u8> = w
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    let t = Tensor::new("c.weight", Dtype::BF16, vec![8, 16], data).unwrap();
    let f = TensorFile {
        tensors: vec![t.clone()],
        metadata: vec![],
    };
    let (stream, report) = run(
        &f,
        &opts(
            Criterion::Correlation,
            Pattern::Channel,
            Budget::Sparsity(0.125),
        ),
    )
    .unwrap();
    let e = report.tensors()[0].s.rel_frobenius;
    assert!(e < 1e-3, "{e}");
    let back = decompress(&stream).unwrap();
    let (a, b) = (
        t.to_f32_vec().unwrap(),
        back.tensors[0].to_f32_vec().unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-2 * x.abs().max(1e-3), "{x} vs {y}");
    }
}

#[test]
fn bad_options_are_clear_errors() {
    let f = file();
    let go = |o: SparsifyOptions| run(&f, &o);
    assert!(go(opts(
        Criterion::Magnitude,
        Pattern::Unstructured,
        Budget::Sparsity(1.0)
    ))
    .is_err());
    assert!(go(opts(
        Criterion::Magnitude,
        Pattern::NM { n: 4, m: 4 },
        Budget::Sparsity(0.0)
    ))
    .is_err());
    assert!(go(opts(
        Criterion::Magnitude,
        Pattern::Block { rows: 100, cols: 2 },
        Budget::Sparsity(0.5)
    ))
    .is_err());
    // Taylor without gradients, and gradients of the wrong shape.
    let mut o = opts(
        Criterion::Taylor,
        Pattern::Unstructured,
        Budget::Sparsity(0.5),
    );
    assert!(go(o.clone()).is_err());
    o.gradients = Some(TensorFile {
        tensors: vec![Tensor::from_f32(
            "a.weight",
            vec![48, 64],
            &weights(48, 64, 9),
        )],
        metadata: vec![],
    });
    let e = go(o).unwrap_err().to_string();
    assert!(
        e.contains("a.weight") && e.contains("[48, 64]") && e.contains("[64, 48]"),
        "{e}"
    );
}

#[test]
fn sparsegpt_falls_back_to_wanda_on_a_bad_hessian() {
    let w = weights(8, 6, 7);
    let f = TensorFile {
        tensors: vec![Tensor::from_f32("l.weight", vec![8, 6], &w)],
        metadata: vec![],
    };
    let mut x = weights(10, 6, 8);
    x[3] = f32::NAN;
    let mut o = opts(
        Criterion::SparseGpt,
        Pattern::Unstructured,
        Budget::Sparsity(0.5),
    );
    o.calibration = Some(TensorFile {
        tensors: vec![Tensor::from_f32("l.input", vec![10, 6], &x)],
        metadata: vec![],
    });
    let (_, r) = run(&f, &o).unwrap();
    assert_eq!(r.tensors()[0].s.criterion, Criterion::Wanda);
}

#[test]
fn a_trained_scorer_chooses_the_mask_and_is_recorded() {
    let w = weights(8, 12, 11);
    let f = TensorFile {
        tensors: vec![Tensor::from_f32("l.weight", vec![8, 12], &w)],
        metadata: vec![],
    };
    let x: Vec<f32> = weights(30, 12, 12)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1 + i % 5) as f32)
        .collect();
    let cal = TensorFile {
        tensors: vec![Tensor::from_f32("l.input", vec![30, 12], &x)],
        metadata: vec![],
    };
    // A scorer with no residual ranks like Wanda: the same stream, the criterion recorded.
    let zero = serde_json::json!({
        "hidden": 2, "w1": vec![0.1; 12], "b1": [0.0, 0.0], "w2": [0.0, 0.0], "u": vec![0.0; 6]
    });
    let mut o = opts(
        Criterion::Scorer,
        Pattern::UnstructuredPerRow,
        Budget::Sparsity(0.5),
    );
    o.calibration = Some(cal.clone());
    // No scorer: a clear error before any work.
    let e = run(&f, &o).unwrap_err().to_string();
    assert!(e.contains("scorer"), "{e}");
    o.scorers = Some(sparsewire_se::scorer::Scorers::from_json(&zero.to_string()).unwrap());
    let (a, r) = run(&f, &o).unwrap();
    assert_eq!(r.tensors()[0].s.criterion, Criterion::Scorer);
    let mut wanda = opts(
        Criterion::Wanda,
        Pattern::UnstructuredPerRow,
        Budget::Sparsity(0.5),
    );
    wanda.calibration = Some(cal);
    let (b, rw) = run(&f, &wanda).unwrap();
    assert_eq!(r.tensors()[0].s.rel_output, rw.tensors()[0].s.rel_output);
    assert_eq!(decompress(&a).unwrap(), decompress(&b).unwrap());
    // A residual that changes the ranking changes the mask.
    let mut loud = zero.clone();
    loud["u"] = serde_json::json!([-5.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    o.scorers = Some(sparsewire_se::scorer::Scorers::from_json(&loud.to_string()).unwrap());
    let (c, _) = run(&f, &o).unwrap();
    assert_ne!(decompress(&c).unwrap(), decompress(&b).unwrap());
    // Without calibration inputs: magnitude, and the note says why.
    o.calibration = None;
    let (_, r) = run(&f, &o).unwrap();
    assert_eq!(r.tensors()[0].s.criterion, Criterion::Magnitude);
    assert!(r.tensors()[0].s.note.is_some());
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data (or $SPARSEWIRE_DATA), absent when this crate was built"
)]
fn minilm_criteria_order_and_sizes() {
    let dir = common::data_dir();
    let model = read_tensors(&dir.join("minilm_l6_v2.bf16.safetensors"));
    let acts = read_tensors(&dir.join("minilm_l6_v2_activations.f32.safetensors"));
    // Two real layers with their real inputs: FFN in (in = 384) and FFN out (in = 1536).
    let names = [
        "encoder.layer.1.intermediate.dense.weight",
        "encoder.layer.1.output.dense.weight",
    ];
    let layers = TensorFile {
        tensors: model
            .tensors
            .iter()
            .filter(|t| names.contains(&t.name.as_str()))
            .cloned()
            .collect(),
        metadata: vec![],
    };
    let mut errs = Vec::new();
    for c in [Criterion::Magnitude, Criterion::Wanda, Criterion::SparseGpt] {
        let mut o = opts(c, Pattern::Unstructured, Budget::Sparsity(0.5));
        o.calibration = Some(acts.clone());
        let (_, r) = run(&layers, &o).unwrap();
        let r = r.tensors();
        assert!(r
            .iter()
            .all(|t| t.s.note.is_none() && t.s.rel_output.is_some()));
        errs.push(
            r.iter()
                .map(|t| t.s.rel_output.unwrap())
                .collect::<Vec<_>>(),
        );
    }
    for l in 0..2 {
        assert!(
            errs[2][l] < errs[1][l] && errs[1][l] < errs[0][l],
            "layer {l}: {errs:?}"
        );
    }

    // Whole file at 50% magnitude: the size target, and the mask near H(0.5).
    let (stream, r) = run(
        &model,
        &opts(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::Sparsity(0.5),
        ),
    )
    .unwrap();
    assert!((stream.len() as f64) < 0.365 * model.byte_len() as f64);
    for t in &r.tensors() {
        assert!(
            t.s.mask_bits_per_element <= 1.03 * t.s.mask_entropy_bits_per_element + 0.01,
            "{} ({} bytes)",
            t.name,
            t.output_bytes
        );
    }
}

#[test]
fn untouched_tensors_are_coded_as_the_lossless_path_codes_them() {
    // A bias and an integer tensor beside a pruned weight: same bytes either way, zstd
    // trial included (a constant bias is far smaller through zstd).
    let mut f = file();
    f.tensors
        .push(Tensor::from_f32("zero.bias", vec![4096], &[0.25; 4096]));
    let (sparse, r) = run(
        &f,
        &opts(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::Sparsity(0.5),
        ),
    )
    .unwrap();
    let (lossless, l) = compress(&f, &CompressOptions::default()).unwrap();
    let (sr, lr) = (
        sparsewire_stream::Reader::new(&sparse[..]).unwrap(),
        sparsewire_stream::Reader::new(&lossless[..]).unwrap(),
    );
    for name in ["b.bias", "zero.bias"] {
        let (a, b) = (
            sr.tensor_index(name).unwrap(),
            lr.tensor_index(name).unwrap(),
        );
        let (ma, mb) = (&sr.header().tensors[a], &lr.header().tensors[b]);
        assert_eq!(ma.codec, mb.codec, "{name}");
        assert_eq!(ma.tiles.len(), mb.tiles.len());
        for k in 0..ma.tiles.len() {
            assert_eq!(
                sr.tile_stored(a, k).unwrap(),
                lr.tile_stored(b, k).unwrap(),
                "{name}"
            );
        }
    }
    // The same report schema on both paths: every tensor, lossy fields only where pruned.
    assert_eq!(r.0.tensors.len(), l.tensors.len());
    assert!(l.tensors.iter().all(|t| t.sparsify.is_none()));
    assert_eq!(r.tensors().len(), 2);
}

#[test]
fn non_finite_weights_and_misplaced_methods_are_said() {
    let mut w = weights(8, 8, 3);
    w[5] = f32::NAN;
    let f = TensorFile {
        tensors: vec![Tensor::from_f32("n.weight", vec![8, 8], &w)],
        metadata: vec![],
    };
    let e = run(
        &f,
        &opts(
            Criterion::Magnitude,
            Pattern::Unstructured,
            Budget::Sparsity(0.5),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("n.weight") && e.contains("element 5") && e.contains("NaN"),
        "{e}"
    );
    // `spatial` on a matrix that is not a conv filter: zero-fill, and a note saying why.
    let mut o = opts(
        Criterion::Magnitude,
        Pattern::Unstructured,
        Budget::Sparsity(0.5),
    );
    o.rebuild = Rebuild::Spatial;
    let (_, r) = run(&file(), &o).unwrap();
    for t in r.tensors() {
        assert_eq!(
            t.s.reconstruction,
            sparsewire_metadata::ReconstructionMethod::Zero
        );
        assert!(
            t.s.note.as_deref().unwrap_or("").contains("conv"),
            "{:?}",
            t.s.note
        );
    }
}

#[test]
fn nonfinite_keep_stores_them_exactly_and_drop_drops_them() {
    use sparsewire_se::NonFinite;
    let mut w = weights(8, 16, 4);
    // 3.4e38 is the largest value: a NaN or infinity must not push it out.
    let specials = [(5, f32::NAN), (20, f32::INFINITY), (33, f32::NEG_INFINITY)];
    for (i, v) in specials {
        w[i] = v;
    }
    w[40] = 3.4e38;
    let f = TensorFile {
        tensors: vec![Tensor::from_f32("n.weight", vec![8, 16], &w)],
        metadata: vec![],
    };
    for pattern in [Pattern::Unstructured, Pattern::NM { n: 2, m: 4 }] {
        for policy in [NonFinite::Keep, NonFinite::Drop] {
            let mut o = opts(Criterion::Magnitude, pattern, Budget::Sparsity(0.5));
            o.nonfinite = policy;
            o.rebuild = Rebuild::Linear;
            let (stream, r) = run(&f, &o).unwrap();
            let t = &r.tensors()[0];
            assert!(
                t.s.rel_frobenius.is_finite(),
                "{pattern:?} {policy}: {}",
                t.s.rel_frobenius
            );
            let back = decompress(&stream).unwrap().tensors[0]
                .to_f32_vec()
                .unwrap();
            for (i, v) in specials {
                match policy {
                    NonFinite::Keep => assert_eq!(
                        back[i].to_bits(),
                        v.to_bits(),
                        "{pattern:?}: element {i} kept exactly"
                    ),
                    _ => assert!(back[i].is_finite(), "{pattern:?}: element {i} dropped"),
                }
            }
            assert_eq!(back[40], 3.4e38, "{pattern:?} {policy}: the largest kept");
            // Nothing non-finite leaks into rebuilt values.
            let leaked = (0..back.len())
                .filter(|i| !specials.iter().any(|s| s.0 == *i))
                .filter(|&i| !back[i].is_finite())
                .count();
            assert_eq!(leaked, 0, "{pattern:?} {policy}");
            // Kept non-finite values mean zero-fill (interpolation would spread them): the
            // groups are visible as they are stored.
            if let (Pattern::NM { .. }, NonFinite::Keep) = (pattern, policy) {
                for g in back.chunks(4) {
                    let kept = g.iter().filter(|v| **v != 0.0).count();
                    assert!(kept <= 2, "{pattern:?} {policy}: {g:?}");
                }
            }
        }
    }
    // Three non-finite values in one 2:4 group cannot be kept.
    let mut w2 = weights(4, 8, 5);
    w2[0] = f32::NAN;
    w2[1] = f32::NAN;
    w2[2] = f32::INFINITY;
    let f2 = TensorFile {
        tensors: vec![Tensor::from_f32("g.weight", vec![4, 8], &w2)],
        metadata: vec![],
    };
    let mut o = opts(
        Criterion::Magnitude,
        Pattern::NM { n: 2, m: 4 },
        Budget::Sparsity(0.0),
    );
    o.nonfinite = NonFinite::Keep;
    let e = run(&f2, &o).unwrap_err().to_string();
    assert!(
        e.contains("g.weight") && e.contains("3 NaN or infinite") && e.contains("keep"),
        "{e}"
    );
}

/// BF16 magnitude with zero-fill reads the bytes directly and finds a NaN or infinity in
/// its histogram: the policy applies as on the general path (refused by default and named;
/// kept exactly with `keep`), for the unstructured select and for 2:4.
#[test]
fn bf16_nonfinite_meets_the_policy_on_the_direct_path() {
    use sparsewire_se::NonFinite;
    let w = weights(8, 16, 4);
    let mut bytes: Vec<u8> = w
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    bytes[40..42].copy_from_slice(&half::bf16::INFINITY.to_le_bytes());
    bytes[66..68].copy_from_slice(&half::bf16::NAN.to_le_bytes());
    let f = TensorFile {
        tensors: vec![Tensor::new("b.weight", Dtype::BF16, vec![8, 16], bytes).unwrap()],
        metadata: vec![],
    };
    for pattern in [Pattern::Unstructured, Pattern::NM { n: 2, m: 4 }] {
        let mut o = opts(Criterion::Magnitude, pattern, Budget::Sparsity(0.5));
        o.rebuild = Rebuild::Zero;
        let e = run(&f, &o).unwrap_err().to_string();
        assert!(e.contains("b.weight"), "{pattern:?}: {e}");
        o.nonfinite = NonFinite::Keep;
        let (stream, _) = run(&f, &o).unwrap();
        let back = decompress(&stream).unwrap().tensors[0]
            .to_f32_vec()
            .unwrap();
        assert_eq!(back[20], f32::INFINITY, "{pattern:?}");
        assert!(back[33].is_nan(), "{pattern:?}");
    }
}
