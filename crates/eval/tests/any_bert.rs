//! Any BERT-family encoder runs with no code change: a tiny model of another geometry
//! (2 layers, width 32, 4 heads, FFN 48, ReLU, CLS + max pooling, `bert.`-prefixed names,
//! f16 weights, its own WordPiece tokenizer), written here, goes through the quick grid
//! (calibration recorded from text) and through `score`. Needs no shared data.

use sparsewire_formats::{Dtype, Tensor, TensorFile};
use std::path::Path;
use std::process::Command;

const LAYERS: usize = 2;
const HIDDEN: usize = 32;
const FFN: usize = 48;
const POSITIONS: usize = 64;

fn eval() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparsewire-eval"))
}

/// A WordPiece tokenizer whose vocabulary is the specials and every letter, so any
/// lower-case word tokenizes.
fn tokenizer_json() -> (String, usize) {
    let mut vocab = vec![
        "[PAD]".to_string(),
        "[UNK]".into(),
        "[CLS]".into(),
        "[SEP]".into(),
    ];
    for c in 'a'..='z' {
        vocab.push(c.to_string());
        vocab.push(format!("##{c}"));
    }
    let entries: Vec<String> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{t:?}: {i}"))
        .collect();
    let json = format!(
        r###"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
  "normalizer": {{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}},
  "pre_tokenizer": {{"type": "BertPreTokenizer"}},
  "post_processor": {{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}},
  "decoder": null,
  "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": {{{}}}}}}}"###,
        entries.join(", ")
    );
    (json, vocab.len())
}

/// Seeded uniform values in [-scale, scale).
fn values(n: usize, seed: &mut u64, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn model_dir(dir: &Path) {
    let (tok, vocab) = tokenizer_json();
    std::fs::write(dir.join("tokenizer.json"), tok).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"model_type": "bert", "num_hidden_layers": {LAYERS}, "hidden_size": {HIDDEN},
  "num_attention_heads": 4, "intermediate_size": {FFN}, "vocab_size": {vocab},
  "max_position_embeddings": {POSITIONS}, "type_vocab_size": 1, "hidden_act": "relu",
  "layer_norm_eps": 1e-5}}"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    std::fs::create_dir(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": true, "pooling_mode_max_tokens": true}"#,
    )
    .unwrap();
    let mut seed = 7u64;
    let mut tensors = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let v: Vec<f32> = values(n, &mut seed, scale)
            .iter()
            .map(|x| x + offset)
            .collect();
        let data = sparsewire_formats::from_f32(Dtype::F16, &v).unwrap();
        let shape = shape.iter().map(|&d| d as u64).collect();
        tensors.push(Tensor::new(format!("bert.{name}"), Dtype::F16, shape, data).unwrap());
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        vec![vocab, HIDDEN],
        1.0,
        0.0,
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        vec![POSITIONS, HIDDEN],
        0.3,
        0.0,
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        vec![1, HIDDEN],
        0.1,
        0.0,
    );
    let norm = |p: &str, add: &mut dyn FnMut(String, Vec<usize>, f32, f32)| {
        add(format!("{p}.weight"), vec![HIDDEN], 0.1, 1.0);
        add(format!("{p}.bias"), vec![HIDDEN], 0.1, 0.0);
    };
    norm("embeddings.LayerNorm", &mut add);
    for i in 0..LAYERS {
        let p = format!("encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.self.query", HIDDEN, HIDDEN),
            ("attention.self.key", HIDDEN, HIDDEN),
            ("attention.self.value", HIDDEN, HIDDEN),
            ("attention.output.dense", HIDDEN, HIDDEN),
            ("intermediate.dense", FFN, HIDDEN),
            ("output.dense", HIDDEN, FFN),
        ] {
            let s = 1.0 / (inp as f32).sqrt();
            add(format!("{p}.{name}.weight"), vec![out, inp], s, 0.0);
            add(format!("{p}.{name}.bias"), vec![out], 0.05, 0.0);
        }
        norm(&format!("{p}.attention.output.LayerNorm"), &mut add);
        norm(&format!("{p}.output.LayerNorm"), &mut add);
    }
    let file = TensorFile {
        tensors,
        metadata: vec![],
    };
    std::fs::write(
        dir.join("model.safetensors"),
        sparsewire_formats::safetensors::write_safetensors(&file).unwrap(),
    )
    .unwrap();
}

const TEXT: &str = "the cat sat on the mat\na quick brown fox jumps over the lazy dog\n\
rain fell all night on the quiet town\nshe sold her old car to a friend\n\
the market closed early on friday\nbirds sing before the sun comes up\n\
he painted the fence a bright blue\nthe river ran fast after the storm\n";

#[test]
fn a_tiny_bert_of_another_geometry_runs_the_quick_grid_and_score() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("tiny-bert");
    std::fs::create_dir(&m).unwrap();
    model_dir(&m);
    let sentences = d.path().join("sentences.txt");
    std::fs::write(&sentences, TEXT).unwrap();
    let calib = d.path().join("calibration.txt");
    std::fs::write(
        &calib,
        "a different text for the calibration\nof the activations only\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let o = eval()
        .arg("--model")
        .arg(&m)
        .arg("--sentences")
        .arg(&sentences)
        .arg("--calibration-text")
        .arg(&calib)
        .arg("--data")
        .arg(d.path())
        .args(["--grid", "quick", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("2 layers, width 32, 4 heads, FFN 48; 8 sentences"),
        "{err}"
    );
    assert!(
        err.contains("recording calibration activations from 2 sentences"),
        "{err}"
    );
    assert!(err.contains("conv filters skipped"), "{err}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["model"], "tiny-bert");
    assert_eq!(r["sentences"], 8);
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert_eq!(cells[0]["reconstruct"], "lossless");
    assert_eq!(cells[0]["mean_cosine"].as_f64(), Some(1.0));
    for c in &cells[1..] {
        let m = c["mean_cosine"].as_f64().unwrap();
        let b = c["bytes_fraction"].as_f64().unwrap();
        assert!(m < 1.0 && m > 0.0 && b > 0.0 && b < 1.2, "{c}");
    }

    // score: the model's own weights are exact; a half-sparse stream is smaller and not.
    let score = |weights: &Path, extra: &[&str]| {
        let o = eval()
            .args(["score", "--json", "--model"])
            .arg(&m)
            .arg("--sentences")
            .arg(&sentences)
            .arg("--weights")
            .arg(weights)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let same = score(&m.join("model.safetensors"), &[]);
    assert_eq!(same["mean_cosine"].as_f64(), Some(1.0), "{same}");
    assert_eq!(same["top1_agreement"].as_f64(), Some(1.0));
    let file = sparsewire_formats::input::InputFile::open(&m.join("model.safetensors"))
        .unwrap()
        .read_all()
        .unwrap();
    let linear = TensorFile {
        tensors: file
            .tensors
            .into_iter()
            .filter(|t| t.name.contains("encoder.") && t.name.ends_with("dense.weight"))
            .collect(),
        metadata: vec![],
    };
    let opts = sparsewire_pipeline::CompressOptions {
        sparsify: Some(sparsewire_se::SparsifyOptions::new(
            sparsewire_se::Budget::Sparsity(0.5),
        )),
        ..Default::default()
    };
    let stream = sparsewire_pipeline::compress(&linear, &opts).unwrap().0;
    let sw = d.path().join("half.swire");
    std::fs::write(&sw, &stream).unwrap();
    let half = score(&sw, &["--activation-keep", "0.5"]);
    assert_eq!(half["tensors_replaced"], 6);
    assert_eq!(half["file_bytes"].as_u64(), Some(stream.len() as u64));
    let dense = 2 * LAYERS as u64 * (HIDDEN * HIDDEN + 2 * HIDDEN * FFN) as u64;
    assert_eq!(half["dense_bf16_bytes"].as_u64(), Some(dense));
    let (mc, bf) = (
        half["mean_cosine"].as_f64().unwrap(),
        half["bytes_fraction"].as_f64().unwrap(),
    );
    assert!(mc < 1.0 && mc > 0.0 && bf < 1.0, "{half}");
    assert!(half["activation_bytes_fraction"].as_f64().unwrap() < 1.0);
    // Ranked by the next weights' column norms: other values kept, so another score.
    let weighted = score(
        &sw,
        &["--activation-keep", "0.5", "--activation-score", "weighted"],
    );
    let mw = weighted["mean_cosine"].as_f64().unwrap();
    assert!(mw < 1.0 && mw > 0.0 && mw != mc, "{weighted} against {mc}");
    // A trained activation scorer at its start (no residual term) ranks a token's values by
    // ln|a_j| + ln of the next weights' column norm: WINA, so `weighted`'s very masks.
    let start = serde_json::json!({"hidden": 1, "w1": vec![0.0; 6], "b1": [0.0], "w2": [0.0], "u": vec![0.0; 6]});
    let fits: Vec<_> = [
        "attention.self.query.weight",
        "intermediate.dense.weight",
        "output.dense.weight",
    ]
    .iter()
    .map(|f| serde_json::json!({"family": f, "scorer": start}))
    .collect();
    let file = d.path().join("act_scorers.json");
    std::fs::write(&file, serde_json::json!({ "fits": fits }).to_string()).unwrap();
    let scored = score(
        &sw,
        &[
            "--activation-keep",
            "0.5",
            "--activation-score",
            "scorer",
            "--activation-scorer",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(scored["mean_cosine"], weighted["mean_cosine"], "{scored}");
    // Without the file, or with a family missing: a clear error.
    let scorer_refused = |extra: &[&str]| {
        let o = eval()
            .args(["score", "--model"])
            .arg(&m)
            .arg("--sentences")
            .arg(&sentences)
            .arg("--weights")
            .arg(&sw)
            .args(["--activation-keep", "0.5", "--activation-score", "scorer"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(scorer_refused(&[]).contains("--activation-scorer FILE"));
    std::fs::write(
        &file,
        serde_json::json!({ "fits": [{"family": "output.dense.weight", "scorer": start}] })
            .to_string(),
    )
    .unwrap();
    let e = scorer_refused(&["--activation-scorer", file.to_str().unwrap()]);
    assert!(e.contains("attention.self.query.weight"), "{e}");
}

#[test]
fn a_model_folder_that_is_not_a_bert_is_refused_clearly() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path();
    model_dir(m);
    let run = |extra: &[&str]| {
        let o = eval()
            .args(["score", "--model"])
            .arg(m)
            .arg("--weights")
            .arg(m.join("model.safetensors"))
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let cfg = std::fs::read_to_string(m.join("config.json")).unwrap();
    std::fs::write(
        m.join("config.json"),
        cfg.replace("\"bert\"", "\"roberta\""),
    )
    .unwrap();
    let e = run(&[]);
    assert!(
        e.contains("config.json") && e.contains("\"roberta\" is not a BERT"),
        "{e}"
    );
    std::fs::write(
        m.join("config.json"),
        cfg.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"),
    )
    .unwrap();
    let e = run(&[]);
    assert!(e.contains("not a multiple of num_attention_heads 5"), "{e}");
    std::fs::write(
        m.join("config.json"),
        cfg.replace("\"intermediate_size\": 48", "\"intermediate_size\": 40"),
    )
    .unwrap();
    let e = run(&[]);
    assert!(
        e.contains("intermediate.dense.weight") && e.contains("expected [40, 32]"),
        "{e}"
    );
    std::fs::write(m.join("config.json"), &cfg).unwrap();
    let e = run(&["--activation-keep", "1.5"]);
    assert!(e.contains("--activation-keep 1.5 is outside (0, 1]"), "{e}");
    // A sentence longer than the model's positions is truncated, and said so once.
    let long = m.join("long.txt");
    std::fs::write(&long, format!("short one\n{}\n", "abcdefgh ".repeat(20))).unwrap();
    let o = eval()
        .args(["score", "--model"])
        .arg(m)
        .arg("--weights")
        .arg(m.join("model.safetensors"))
        .arg("--sentences")
        .arg(&long)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert_eq!(
        e.matches("1 sentence(s) longer than the model's 64 positions, truncated")
            .count(),
        1,
        "{e}"
    );
    std::fs::remove_file(m.join("tokenizer.json")).unwrap();
    let e = run(&[]);
    assert!(e.contains("tokenizer not found"), "{e}");
}

/// The tiny model in `m`, mean-pooled (recovery's pooling: no sentence-transformers
/// modules), its evaluation sentences, and training and held-out sentences made from them.
fn recovery_setup(m: &Path) -> (sparsewire_eval::grid::Setup, Vec<Vec<u32>>, Vec<Vec<u32>>) {
    model_dir(m);
    std::fs::remove_file(m.join("modules.json")).unwrap();
    let config = sparsewire_eval::model::BertConfig::from_dir(m).unwrap();
    assert_eq!(config.layers, LAYERS);
    let weights = sparsewire_formats::input::InputFile::open(&m.join("model.safetensors"))
        .unwrap()
        .read_all()
        .unwrap();
    let tok = m.join("tokenizer.json");
    let lines: Vec<&str> = TEXT.lines().collect();
    let eval = sparsewire_eval::sentences::tokenize(&tok, &lines, POSITIONS).unwrap();
    let more: Vec<String> = (0..60)
        .map(|i| format!("{} and {}", lines[i % 8], lines[(i * 3 + 1) % 8]))
        .collect();
    let train = sparsewire_eval::sentences::tokenize(&tok, &more[..50], POSITIONS).unwrap();
    let heldout = sparsewire_eval::sentences::tokenize(&tok, &more[50..], POSITIONS).unwrap();
    let empty = TensorFile {
        tensors: vec![],
        metadata: vec![],
    };
    let setup = sparsewire_eval::grid::Setup::new(config, weights, empty, eval).unwrap();
    (setup, train, heldout)
}

/// Recovery refuses `bad` before any work, with an error that says `want`.
fn refused(
    setup: &sparsewire_eval::grid::Setup,
    train: &[Vec<u32>],
    heldout: &[Vec<u32>],
    bad: &sparsewire_eval::recover::RecoverOptions,
    want: &str,
) {
    let e = sparsewire_eval::recover::recover(setup, train, heldout, bad, &mut |_| {})
        .err()
        .expect("refused");
    assert!(e.to_string().contains(want), "{e}");
}

#[test]
fn recovery_lowers_the_loss_keeps_the_masks_and_writes_what_it_trained() {
    use sparsewire_eval::grid::{linear_stream, WeightSetting};
    use sparsewire_eval::recover::{recover, RecoverOptions};
    let d = tempfile::tempdir().unwrap();
    let (setup, train, heldout) = recovery_setup(d.path());
    let o = RecoverOptions {
        criterion: sparsewire_metadata::Criterion::Magnitude,
        sparsity: 0.5,
        steps: 20,
        batch: 4,
        lr: 3e-3,
        warmup: 2,
        eval_every: 10,
        ..RecoverOptions::default()
    };
    let mut seen = 0;
    let r = recover(&setup, &train, &heldout, &o, &mut |_| seen += 1).unwrap();
    assert_eq!(seen, 20);
    let c = &r.report.curve;
    let first: f64 = c[..5].iter().map(|s| s.loss).sum();
    let last: f64 = c[15..].iter().map(|s| s.loss).sum();
    assert!(last < first, "the loss did not fall: {first} -> {last}");
    assert!(c[9].heldout_cosine.is_some() && c[8].heldout_cosine.is_none());
    assert!(
        r.report.recovered_heldout.mean_cosine > r.report.post_hoc_heldout.mean_cosine,
        "{:?}",
        r.report
    );
    // The written stream decodes to the trained weights bit for bit.
    let decoded = sparsewire_pipeline::decompress(&r.stream).unwrap();
    assert_eq!(decoded.tensors, r.trained.tensors);
    // The masks are the post-hoc ones: a weight dropped then is exactly zero now, and one
    // kept then is stored now.
    let setting = WeightSetting {
        sparsity: Some(0.5),
        target_ratio: None,
        criterion: sparsewire_metadata::Criterion::Magnitude,
        pattern: sparsewire_metadata::Pattern::Unstructured,
        reconstruct: sparsewire_se::Rebuild::Zero,
    };
    let post = linear_stream(&setup, &setting).unwrap().0;
    let (a, b) = (
        sparsewire_stream::Reader::new(&post[..]).unwrap(),
        sparsewire_stream::Reader::new(&r.stream[..]).unwrap(),
    );
    assert_eq!(a.header().tensors.len(), 6 * LAYERS);
    for t in 0..a.header().tensors.len() {
        let tb = b.tensor_index(&a.header().tensors[t].name).unwrap();
        let (ma, mb) = (
            a.tensor_sparse(t).unwrap().unwrap(),
            b.tensor_sparse(tb).unwrap().unwrap(),
        );
        assert_eq!(ma.mask(), mb.mask(), "{}", a.header().tensors[t].name);
        let v = b.decode_tensor(tb).unwrap().to_f32_vec().unwrap();
        for (i, x) in v.iter().enumerate() {
            if !mb.mask().is_kept(i) {
                assert_eq!(x.to_bits(), 0);
            }
        }
    }
    // Bad options are refused before any work.
    let bad = RecoverOptions {
        warmup: 20,
        ..o.clone()
    };
    refused(&setup, &train, &heldout, &bad, "warm-up");
}

#[test]
fn a_packed_batch_gives_each_sentence_its_own_states() {
    use sparsewire_eval::model::Bert;
    let d = tempfile::tempdir().unwrap();
    let (setup, train, _) = recovery_setup(d.path());
    let bert = Bert::load(&setup.config, &setup.weights).unwrap();
    let segs: Vec<&[u32]> = train[..3].iter().map(|s| &s[..]).collect();
    assert!(segs.windows(2).any(|w| w[0].len() != w[1].len()));
    let packed = bert.hidden_states_packed(&segs, None).unwrap();
    assert_eq!(packed.len(), LAYERS + 1);
    let mut row = 0;
    for ids in &segs {
        let alone = bert.hidden_states(ids).unwrap();
        for (p, a) in packed.iter().zip(&alone) {
            let p = p.narrow(0, row, ids.len()).unwrap();
            let diff = (p - a)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "packed rows differ by {diff}");
        }
        row += ids.len();
    }
    assert_eq!(packed[0].dims()[0], row);
    // Nothing to run is an error, not a panic.
    assert!(bert.hidden_states_packed(&[], None).is_err());
}

#[test]
fn recovery_can_prune_and_train_the_word_embeddings_within_a_time_budget() {
    use sparsewire_eval::recover::{recover, RecoverOptions};
    let d = tempfile::tempdir().unwrap();
    let (setup, train, heldout) = recovery_setup(d.path());
    let o = RecoverOptions {
        criterion: sparsewire_metadata::Criterion::Magnitude,
        sparsity: 0.5,
        steps: 12,
        batch: 4,
        lr: 3e-3,
        warmup: 2,
        eval_every: 4,
        embeddings: true,
        ..RecoverOptions::default()
    };
    let r = recover(&setup, &train, &heldout, &o, &mut |_| {}).unwrap();
    assert_eq!(r.report.steps_done, 12);
    let c = &r.report.curve;
    assert!(c[0].seconds > 0.0 && c.windows(2).all(|w| w[1].seconds >= w[0].seconds));
    // The table crosses the link in the stream, with its mask: half dropped, exactly zero,
    // and its kept values trained away from the post-hoc ones.
    let name = "bert.embeddings.word_embeddings.weight";
    let b = sparsewire_stream::Reader::new(&r.stream[..]).unwrap();
    assert_eq!(b.header().tensors.len(), 6 * LAYERS + 1);
    let t = b.tensor_index(name).unwrap();
    let mask = b.tensor_sparse(t).unwrap().unwrap();
    let v = b.decode_tensor(t).unwrap().to_f32_vec().unwrap();
    let kept = (0..v.len()).filter(|&i| mask.mask().is_kept(i)).count();
    assert_eq!(kept * 2, v.len());
    let dense = setup
        .weights
        .tensors
        .iter()
        .find(|x| x.name == name)
        .unwrap();
    let dense = dense.to_f32_vec().unwrap();
    let mut moved = 0;
    for (i, x) in v.iter().enumerate() {
        if !mask.mask().is_kept(i) {
            assert_eq!(x.to_bits(), 0);
        } else if (x - dense[i]).abs() > 1e-2 {
            moved += 1;
        }
    }
    assert!(moved > 0, "the kept embeddings did not train");
    let decoded = sparsewire_pipeline::decompress(&r.stream).unwrap();
    assert_eq!(decoded.tensors, r.trained.tensors);
    // Its bf16 bytes count in the denominator: linears and table, 2 bytes a value.
    let all: u64 = setup
        .weights
        .tensors
        .iter()
        .filter(|x| sparsewire_eval::grid::encoder_linear(&x.name) || x.name == name)
        .map(|x| 2 * x.numel())
        .sum();
    assert_eq!(r.report.dense_bf16_bytes, all);
    // A budget stops the run at the first step past it; the schedule stays planned on
    // `steps`.
    let short = RecoverOptions {
        max_seconds: Some(1e-9),
        eval_every: 0,
        ..o.clone()
    };
    let r = recover(&setup, &train, &heldout, &short, &mut |_| {}).unwrap();
    assert_eq!((r.report.steps_done, r.report.curve.len()), (1, 1));
    assert_eq!(r.report.curve[0].lr, o.lr / 2.0);
    // Refused before any work: a criterion that cannot score a lookup table, a budget that
    // is not positive.
    let wanda = RecoverOptions {
        criterion: sparsewire_metadata::Criterion::Wanda,
        ..o.clone()
    };
    refused(&setup, &train, &heldout, &wanda, "magnitude only");
    let zero = RecoverOptions {
        max_seconds: Some(0.0),
        ..o.clone()
    };
    refused(&setup, &train, &heldout, &zero, "not positive");
}

#[test]
fn activations_in_the_loop_train_through_what_inference_ships() {
    use sparsewire_eval::grid::{score, ActPolicy, ActScore, Sites};
    use sparsewire_eval::model::{Bert, Site};
    use sparsewire_eval::recover::{activation_hook, recover, RecoverOptions};
    let d = tempfile::tempdir().unwrap();
    let (setup, train, heldout) = recovery_setup(d.path());
    let model = Bert::load(&setup.config, &setup.weights).unwrap();
    // The graph hook sees every transferred tensor once, in forward order; an identity
    // hook changes nothing.
    let mut seen = Vec::new();
    let plain = model.hidden_states(&train[0]).unwrap();
    let hooked = model
        .hidden_states_with(&train[0], &mut |site: Site, x| {
            seen.push(site);
            Ok(x)
        })
        .unwrap();
    assert_eq!(seen, setup.config.sites());
    for (a, b) in plain.iter().zip(&hooked) {
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    }
    // The training forward (straight-through sparsifier in the graph) computes what the
    // inference path (sparsified, encoded, decoded, zero-filled tiles) does: the same mean
    // cosine to the dense embeddings.
    let keep = 0.5;
    let layers = setup.config.layers;
    let mut cos = 0f64;
    for (ids, r) in setup.sentences.iter().zip(&setup.reference) {
        let hs = model
            .hidden_states_with(
                ids,
                &mut activation_hook(Sites::All, layers, ActPolicy::KeepFraction(keep)),
            )
            .unwrap();
        let e = Bert::mean_embedding(hs.last().unwrap())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let dot: f64 = e
            .iter()
            .zip(r)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        let n: f64 = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        cos += dot / n;
    }
    cos /= setup.sentences.len() as f64;
    let some = TensorFile {
        tensors: vec![setup.weights.tensors[0].clone()],
        metadata: vec![],
    };
    let inference = score(&setup, &some, 1, Some(keep), ActScore::Magnitude)
        .unwrap()
        .quality
        .mean_cosine;
    assert!(
        cos < 0.999,
        "half the activations dropped cost nothing: {cos}"
    );
    assert!(
        (cos - inference).abs() < 1e-4,
        "training forward {cos} against inference path {inference}"
    );
    // Training with the activations in the loop (weights intact) raises the score with
    // the activations sparsified, measured through the inference path.
    let o = RecoverOptions {
        criterion: sparsewire_metadata::Criterion::Magnitude,
        sparsity: 0.0,
        steps: 20,
        batch: 4,
        lr: 3e-3,
        warmup: 2,
        eval_every: 10,
        activations: Some(ActPolicy::KeepFraction(keep)),
        ..RecoverOptions::default()
    };
    let r = recover(&setup, &train, &heldout, &o, &mut |_| {}).unwrap();
    let w = r
        .report
        .with_activations
        .as_ref()
        .expect("activations scored");
    assert!(
        w.recovered_heldout.mean_cosine > w.post_hoc_heldout.mean_cosine
            && w.recovered.mean_cosine > w.post_hoc.mean_cosine,
        "{w:?}"
    );
    assert!(
        w.activation_bytes_fraction > 0.2 && w.activation_bytes_fraction < 0.8,
        "{w:?}"
    );
    assert!(
        r.report.sparsity < 1e-6,
        "no weight dropped: {}",
        r.report.sparsity
    );
    // Out-of-range keep fractions and thresholds are refused before any work.
    for p in [
        ActPolicy::KeepFraction(0.0),
        ActPolicy::KeepFraction(1.5),
        ActPolicy::KeepFraction(f32::NAN),
        ActPolicy::PerFamily {
            hidden: 0.9,
            ffn_in: 0.0,
            ffn_act: 0.5,
        },
        ActPolicy::Threshold(-1.0),
    ] {
        let bad = RecoverOptions {
            activations: Some(p),
            ..o.clone()
        };
        refused(&setup, &train, &heldout, &bad, "activation");
    }
    // The command line's forms: a fraction, one per family, a threshold.
    assert_eq!("0.7".parse::<ActPolicy>(), Ok(ActPolicy::KeepFraction(0.7)));
    assert_eq!(
        "0.9,0.8,0.5".parse::<ActPolicy>(),
        Ok(ActPolicy::PerFamily {
            hidden: 0.9,
            ffn_in: 0.8,
            ffn_act: 0.5
        })
    );
    assert_eq!(">0.1".parse::<ActPolicy>(), Ok(ActPolicy::Threshold(0.1)));
    for bad in ["0.5,0.5", "x", "1.5", ">-1", "0.9,0.9,0"] {
        assert!(bad.parse::<ActPolicy>().is_err(), "{bad}");
    }
}

#[test]
fn recover_and_plot_recovery_run_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("tiny-bert");
    std::fs::create_dir(&m).unwrap();
    model_dir(&m);
    std::fs::remove_file(m.join("modules.json")).unwrap();
    let text = d.path().join("text.txt");
    let lines: Vec<&str> = TEXT.lines().collect();
    let more: Vec<String> = (0..40)
        .map(|i| format!("{} and {}", lines[i % 8], lines[(i * 3 + 1) % 8]))
        .collect();
    std::fs::write(&text, more.join("\n")).unwrap();
    let sentences = d.path().join("sentences.txt");
    std::fs::write(&sentences, TEXT).unwrap();
    let recover = |extra: &[&str], out: &Path| {
        eval()
            .arg("recover")
            .arg("--model")
            .arg(&m)
            .arg("--sentences")
            .arg(&sentences)
            .arg("--calibration-text")
            .arg(&text)
            .arg("--train-text")
            .arg(&text)
            .args([
                "--data",
                "/nonexistent",
                "--criterion",
                "magnitude",
                "--train-lines",
                "30",
                "--heldout",
                "10",
                "--steps",
                "6",
                "--warmup",
                "1",
                "--batch",
                "2",
                "--lr",
                "3e-3",
                "--eval-every",
                "3",
            ])
            .args(extra)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let (w, a) = (d.path().join("weights"), d.path().join("acts"));
    for (extra, out) in [
        (&["--sparsity", "0.5", "--checkpoint-every", "2"][..], &w),
        (&["--sparsity", "0", "--activation-keep", "0.5"][..], &a),
    ] {
        let o = recover(extra, out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        for f in [
            "model.swire",
            "model.safetensors",
            "results.json",
            "results.md",
            "loss.svg",
        ] {
            assert!(out.join(f).is_file(), "{f} missing: {err}");
        }
    }
    // Checkpoints were written every 2 steps and removed when the run completed.
    assert!(!d.path().join("weights.checkpoint").exists());
    let e = recover(&["--resume"], &d.path().join("y"));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && err.contains("no checkpoint"),
        "{err}"
    );
    // A checkpoint left by an earlier run is neither overwritten nor ignored.
    std::fs::create_dir(d.path().join("y.checkpoint")).unwrap();
    std::fs::write(d.path().join("y.checkpoint/checkpoint.json"), "{}").unwrap();
    let e = recover(&[], &d.path().join("y"));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("--resume"), "{err}");
    let md = std::fs::read_to_string(a.join("results.md")).unwrap();
    assert!(md.contains("With 0.5 of each token's values kept"), "{md}");
    assert!(md.contains("| dense weights |"), "{md}");
    // An existing output is refused before training, and left as it was.
    let before = std::fs::read(w.join("results.json")).unwrap();
    let o = recover(&["--sparsity", "0.3"], &w);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(w.join("results.json")).unwrap(), before);
    // Out-of-range options are refused with the option named.
    let o = recover(&["--activation-keep", "1.5"], &d.path().join("x"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("activation keep"),
        "{err}"
    );
    assert!(!d.path().join("x").exists());
    // Both runs charted, each on its own axes.
    let plots = d.path().join("plots");
    let o = eval()
        .arg("plot-recovery")
        .arg(&w)
        .arg(a.join("results.json"))
        .arg("--out")
        .arg(&plots)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for chart in ["weights", "activations"] {
        let svg = std::fs::read_to_string(plots.join(format!("recovery_{chart}.svg"))).unwrap();
        assert!(
            svg.contains("recovered") && svg.contains("post hoc"),
            "{chart}"
        );
        assert!(plots.join(format!("recovery_{chart}.png")).is_file());
    }
    // A file that is not a recovery result is named.
    let o = eval()
        .arg("plot-recovery")
        .arg(&sentences)
        .arg("--out")
        .arg(&plots)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("sentences.txt"),
        "{err}"
    );
}

#[test]
fn gradual_pruning_during_recovery_reaches_the_target_and_writes_its_masks() {
    use sparsewire_eval::recover::{recover, Gradual, RecoverOptions};
    let d = tempfile::tempdir().unwrap();
    let (setup, train, heldout) = recovery_setup(d.path());
    let o = RecoverOptions {
        criterion: sparsewire_metadata::Criterion::Magnitude,
        sparsity: 0.5,
        steps: 16,
        batch: 2,
        lr: 3e-3,
        warmup: 2,
        eval_every: 0,
        gradual: Some(Gradual {
            end: 8,
            every: 2,
            criterion: sparsewire_train::TrainCriterion::Taylor,
        }),
        ..RecoverOptions::default()
    };
    let r = recover(&setup, &train, &heldout, &o, &mut |_| {}).unwrap();
    assert!(
        (r.report.sparsity - 0.5).abs() < 0.01,
        "{}",
        r.report.sparsity
    );
    // The stream records the training criterion and carries the final masks: every
    // dropped weight is zero, and half of each tensor is dropped.
    let rd = sparsewire_stream::Reader::new(&r.stream[..]).unwrap();
    assert_eq!(rd.header().tensors.len(), 6 * LAYERS);
    for t in 0..rd.header().tensors.len() {
        let m = rd.tensor_sparse(t).unwrap().unwrap();
        let kept = m.mask().kept() as f64 / m.mask().len() as f64;
        assert!((kept - 0.5).abs() < 0.01, "{kept}");
        let info = rd.header().tensors[t].sparsification.as_ref().unwrap();
        assert_eq!(info.criterion, sparsewire_metadata::Criterion::Taylor);
        let v = rd.decode_tensor(t).unwrap().to_f32_vec().unwrap();
        for (i, x) in v.iter().enumerate() {
            if !m.mask().is_kept(i) {
                assert_eq!(x.to_bits(), 0);
            }
        }
    }
    let decoded = sparsewire_pipeline::decompress(&r.stream).unwrap();
    assert_eq!(decoded.tensors, r.trained.tensors);
    // The schedule must end inside the run and update at least once.
    for (end, every) in [(16, 2), (0, 1), (8, 0), (4, 5)] {
        let bad = RecoverOptions {
            gradual: Some(Gradual {
                end,
                every,
                criterion: sparsewire_train::TrainCriterion::Magnitude,
            }),
            ..o.clone()
        };
        refused(&setup, &train, &heldout, &bad, "gradual");
    }
}

/// SR-STE: the 2:4 masks move during recovery (some group keeps other weights than the
/// post-hoc start), every written mask is still 2:4 with its dropped weights exactly zero,
/// the stream decodes to what was trained, the written model beats the post-hoc one on
/// held-out text, and bad settings are refused.
#[test]
fn remasked_recovery_moves_the_masks_and_keeps_the_pattern() {
    use sparsewire_eval::grid::{linear_stream, WeightSetting};
    use sparsewire_eval::recover::{recover, RecoverOptions, Remask, Shadow};
    let d = tempfile::tempdir().unwrap();
    let (setup, train, heldout) = recovery_setup(d.path());
    let pattern = sparsewire_metadata::Pattern::NM { n: 2, m: 4 };
    let o = RecoverOptions {
        criterion: sparsewire_metadata::Criterion::Magnitude,
        pattern,
        sparsity: 0.5,
        steps: 20,
        batch: 4,
        lr: 3e-3,
        warmup: 2,
        eval_every: 0,
        remask: Some(Remask {
            every: 5,
            decay: 2e-4,
            shadow: Shadow::Dense,
        }),
        ..RecoverOptions::default()
    };
    let r = recover(&setup, &train, &heldout, &o, &mut |_| {}).unwrap();
    // The loss jumps where a re-choice moves masks (step 5 here, at this high rate), so
    // the check is end to end: the written model beats the post-hoc one on held-out text.
    assert!(
        r.report.recovered_heldout.mean_cosine > r.report.post_hoc_heldout.mean_cosine,
        "{:?}",
        r.report
    );
    let setting = WeightSetting {
        sparsity: Some(0.5),
        target_ratio: None,
        criterion: sparsewire_metadata::Criterion::Magnitude,
        pattern,
        reconstruct: sparsewire_se::Rebuild::Zero,
    };
    let post = linear_stream(&setup, &setting).unwrap().0;
    let (a, b) = (
        sparsewire_stream::Reader::new(&post[..]).unwrap(),
        sparsewire_stream::Reader::new(&r.stream[..]).unwrap(),
    );
    let mut moved = 0;
    for t in 0..b.header().tensors.len() {
        let mb = b.tensor_sparse(t).unwrap().unwrap();
        let name = &b.header().tensors[t].name;
        let ma = a
            .tensor_sparse(a.tensor_index(name).unwrap())
            .unwrap()
            .unwrap();
        moved += (0..mb.mask().len())
            .filter(|&i| mb.mask().is_kept(i) != ma.mask().is_kept(i))
            .count();
        let info = b.header().tensors[t].sparsification.as_ref().unwrap();
        assert_eq!(info.criterion, sparsewire_metadata::Criterion::Magnitude);
        let v = b.decode_tensor(t).unwrap().to_f32_vec().unwrap();
        for (g, w) in v.chunks(4).enumerate() {
            let kept = (0..4).filter(|&j| mb.mask().is_kept(4 * g + j)).count();
            assert_eq!(kept, 2, "{name}: group {g}");
            for (j, x) in w.iter().enumerate() {
                if !mb.mask().is_kept(4 * g + j) {
                    assert_eq!(x.to_bits(), 0, "{name}");
                }
            }
        }
    }
    assert!(moved > 0, "no mask moved");
    let decoded = sparsewire_pipeline::decompress(&r.stream).unwrap();
    assert_eq!(decoded.tensors, r.trained.tensors);
    for (every, decay) in [(0, 0.0), (21, 0.0), (5, -1.0), (5, 1.0)] {
        let bad = RecoverOptions {
            remask: Some(Remask {
                every,
                decay,
                shadow: Shadow::Zero,
            }),
            ..o.clone()
        };
        refused(&setup, &train, &heldout, &bad, "re-chosen");
    }
}

#[test]
fn an_interrupted_recovery_resumes_to_the_same_result() {
    use sparsewire_eval::checkpoint::Checkpointing;
    use sparsewire_eval::recover::{recover, RecoverOptions};
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    std::fs::create_dir(&m).unwrap();
    let (setup, train, heldout) = recovery_setup(&m);
    let base = RecoverOptions {
        criterion: sparsewire_metadata::Criterion::Magnitude,
        sparsity: 0.5,
        steps: 12,
        batch: 2,
        lr: 3e-3,
        warmup: 2,
        eval_every: 4,
        activations: Some(sparsewire_eval::grid::ActPolicy::PerFamily {
            hidden: 0.9,
            ffn_in: 0.8,
            ffn_act: 0.6,
        }),
        ..RecoverOptions::default()
    };
    let plain = recover(&setup, &train, &heldout, &base, &mut |_| {}).unwrap();
    // The same run writing checkpoints every 4 steps; the one of step 8 is copied aside
    // as an interruption would have left it.
    let (ck, kept) = (d.path().join("ck"), d.path().join("at8"));
    let with = RecoverOptions {
        checkpoint: Some(Checkpointing {
            dir: ck.clone(),
            every: 4,
            resume: false,
        }),
        ..base.clone()
    };
    let full = recover(&setup, &train, &heldout, &with, &mut |s| {
        if s.step == 9 {
            std::fs::create_dir(&kept).unwrap();
            for f in std::fs::read_dir(&ck).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, kept.join(f.file_name().unwrap())).unwrap();
            }
        }
    })
    .unwrap();
    assert_eq!(full.stream, plain.stream, "checkpoints change nothing");
    let mut steps = Vec::new();
    let resumed = RecoverOptions {
        checkpoint: Some(Checkpointing {
            dir: kept.clone(),
            every: 4,
            resume: true,
        }),
        ..base.clone()
    };
    let r = recover(&setup, &train, &heldout, &resumed, &mut |s| {
        steps.push(s.step)
    })
    .unwrap();
    assert_eq!(
        steps,
        (9..=12).collect::<Vec<_>>(),
        "only the steps left run"
    );
    assert_eq!(
        r.stream, full.stream,
        "the resumed run ends where the whole one did"
    );
    let losses =
        |c: &[sparsewire_eval::recover::Step]| c.iter().map(|s| s.loss).collect::<Vec<_>>();
    assert_eq!(losses(&r.report.curve), losses(&full.report.curve));
    // Other options than the checkpoint's are refused, naming them.
    let other = RecoverOptions {
        lr: 1e-3,
        ..resumed.clone()
    };
    refused(&setup, &train, &heldout, &other, "other options");
    let none = RecoverOptions {
        checkpoint: Some(Checkpointing {
            dir: d.path().join("nothing"),
            every: 4,
            resume: true,
        }),
        ..base.clone()
    };
    refused(&setup, &train, &heldout, &none, "checkpoint");
}
