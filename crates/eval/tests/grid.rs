//! `sparsewire-eval --grid quick` end to end, and its errors.

use std::process::Command;

mod common;

fn eval() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparsewire-eval"))
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data (or $SPARSEWIRE_DATA), absent when this crate was built"
)]
fn quick_grid_writes_every_cell_and_lossless_is_exact() {
    let d = common::data_dir();
    let out = tempfile::tempdir().unwrap();
    let o = eval()
        .args(["--grid", "quick", "--data"])
        .arg(d)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert!(r["sentences"].as_u64().unwrap() >= 200);
    for c in cells {
        for k in [
            "path",
            "bytes_fraction",
            "bits_per_weight",
            "mean_cosine",
            "min_cosine",
            "top1_agreement",
            "spearman",
        ] {
            assert!(!c[k].is_null(), "{k} missing in {c}");
        }
        let m = c["mean_cosine"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&m));
    }
    // The lossless cell: identical embeddings, so exactly 1, and about 66% of bf16 bytes.
    let l = &cells[0];
    assert_eq!(l["reconstruct"], "lossless");
    assert_eq!(l["mean_cosine"].as_f64(), Some(1.0));
    assert_eq!(l["min_cosine"].as_f64(), Some(1.0));
    assert_eq!(l["top1_agreement"].as_f64(), Some(1.0));
    let b = l["bytes_fraction"].as_f64().unwrap();
    assert!(b > 0.6 && b < 0.7, "{b}");
    // Half the weights dropped: fewer bytes, lower quality; Wanda beats magnitude.
    let (mag, wanda) = (&cells[1], &cells[2]);
    assert!(mag["bytes_fraction"].as_f64().unwrap() < 0.4);
    assert!(wanda["mean_cosine"].as_f64() > mag["mean_cosine"].as_f64());
    // Activations at half kept: the bytes are a real encode of each block (mask and values
    // through the codec, with the stream's header), not the 1/16 + 1/2 of the bf16 bytes a
    // bitmask plus raw kept values would count.
    let act: Vec<_> = cells
        .iter()
        .filter(|c| c["path"] == "activations")
        .collect();
    assert!(!act.is_empty());
    for c in act {
        let b = c["bytes_fraction"].as_f64().unwrap();
        assert!(b > 0.2 && b < 0.5 && (b - 0.5625).abs() > 0.01, "{c}");
    }
    // Conv filters per layer type: zero-fill is the reference (gain 1), learned never worse.
    let filters = r["filters"].as_array().unwrap();
    assert!(filters.len() >= 4 * 4);
    for f in filters {
        let g = f["reconstruction_gain"].as_f64().unwrap();
        match f["reconstruct"].as_str().unwrap() {
            "zero" => assert!((g - 1.0).abs() < 1e-9, "{f}"),
            "learned" => assert!(g >= 1.0 - 1e-6, "{f}"),
            _ => {}
        }
    }
    for f in [
        "results.md",
        "weights.svg",
        "weights.png",
        "activations.svg",
        "activations.png",
        "filters.svg",
        "filters.png",
    ] {
        assert!(out.path().join(f).metadata().unwrap().len() > 100, "{f}");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = tempfile::tempdir().unwrap();
    let o = eval()
        .args(["--data", "/nonexistent", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("model weights not found") && e.contains("/nonexistent"),
        "{e}"
    );
    let o = eval()
        .args(["--grid", "default", "--criteria", "taylor", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("criterion taylor is not in the eval grid"),
        "{e}"
    );
    let o = eval()
        .args(["--grid", "huge", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown grid"));
}

/// A second layout built from MiniLM's own tensors: its first 3 layers, with a config that
/// says 3, run through `score` with no code change; the same tensors under MiniLM's config
/// are refused, naming the missing layer.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data (or $SPARSEWIRE_DATA), absent when this crate was built"
)]
fn a_three_layer_slice_of_minilm_runs_from_its_config() {
    let d = common::data_dir();
    let src = d.join("minilm_l6_v2_tokenizer");
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("minilm-l3");
    std::fs::create_dir(&m).unwrap();
    for f in ["tokenizer.json", "modules.json", "pooling_config.json"] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    assert!(cfg.contains("\"num_hidden_layers\": 6"));
    std::fs::write(
        m.join("config.json"),
        cfg.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 3"),
    )
    .unwrap();
    let full = sparsewire_formats::input::InputFile::open(&d.join("minilm_l6_v2.bf16.safetensors"))
        .unwrap()
        .read_all()
        .unwrap();
    let keep = |n: &str| {
        !n.starts_with("encoder.layer.")
            || ["0", "1", "2"].contains(&n.split('.').nth(2).unwrap_or(""))
    };
    let slice = sparsewire_formats::TensorFile {
        tensors: full.tensors.into_iter().filter(|t| keep(&t.name)).collect(),
        metadata: vec![],
    };
    std::fs::write(
        m.join("model.safetensors"),
        sparsewire_formats::write_safetensors(&slice).unwrap(),
    )
    .unwrap();
    let o = eval()
        .args(["score", "--json", "--model"])
        .arg(&m)
        .arg("--weights")
        .arg(m.join("model.safetensors"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("minilm-l3: 3 layers, width 384, 12 heads, FFN 1536"),
        "{e}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mean_cosine"].as_f64(), Some(1.0));
    assert!(v["sentences"].as_u64().unwrap() >= 200);
    // Its weights under a config that says 6 layers: the missing tensor is named.
    std::fs::write(m.join("config.json"), &cfg).unwrap();
    let o = eval()
        .args(["score", "--model"])
        .arg(&m)
        .arg("--weights")
        .arg(m.join("model.safetensors"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("encoder.layer.3.") && e.contains("missing"),
        "{e}"
    );
}
