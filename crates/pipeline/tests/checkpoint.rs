//! Model folders: a Hugging Face layout (sharded with an index, or one file) goes to a
//! folder of streams and back, tensors bit for bit and every other file unchanged; bad
//! folders and indexes are refused; a failed run leaves nothing.

use sparsewire_formats::{read_safetensors, write_safetensors, Dtype, Tensor, TensorFile};
use sparsewire_pipeline::checkpoint::{compress_dir, decompress_dir, HF_INDEX, SWIRE_INDEX};
use sparsewire_pipeline::{CompressOptions, DecompressOptions, PipelineError};
use std::path::{Path, PathBuf};

fn shard(names: &[&str], seed: u32) -> TensorFile {
    let tensors = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let v: Vec<f32> = (0..48 * 32)
                .map(|k| {
                    (((k as u32).wrapping_mul(2654435761) ^ (seed + i as u32)) % 997) as f32 / 997.0
                        - 0.5
                })
                .collect();
            Tensor::from_f32(*n, vec![48, 32], &v)
        })
        .chain(
            [Tensor::new("ids", Dtype::I64, vec![2], vec![7; 16]).unwrap()]
                .into_iter()
                .filter(|_| seed == 0),
        )
        .collect();
    TensorFile {
        tensors,
        metadata: vec![("format".into(), "pt".into())],
    }
}

/// A sharded model folder with an index, config files and a sub-folder.
fn sharded(root: &Path) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let a = shard(&["a.weight", "b.weight"], 0);
    let b = shard(&["c.weight"], 1);
    std::fs::write(
        dir.join("model-00001-of-00002.safetensors"),
        write_safetensors(&a).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("model-00002-of-00002.safetensors"),
        write_safetensors(&b).unwrap(),
    )
    .unwrap();
    let index = r#"{"metadata": {"total_size": 18448}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00001-of-00002.safetensors",
        "ids": "model-00001-of-00002.safetensors", "c.weight": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.join(HF_INDEX), index).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"hidden_size": 32}"#).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    dir
}

/// Relative path -> bytes of every file under `dir`.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_sharded_folder_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let model = sharded(tmp.path());
    let swire = tmp.path().join("model.swire");
    let r = compress_dir(
        &model,
        &swire,
        &CompressOptions::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(r.shards.len(), 2);
    assert!(r.output_bytes < r.input_bytes);
    assert_eq!(
        listing(&swire),
        [
            "1_Pooling",
            "config.json",
            "model-00001-of-00002.swire",
            "model-00002-of-00002.swire",
            HF_INDEX,
            SWIRE_INDEX
        ]
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(swire.join(SWIRE_INDEX)).unwrap()).unwrap();
    assert_eq!(
        index["weight_map"]["c.weight"],
        "model-00002-of-00002.swire"
    );
    assert_eq!(index["weight_map"]["ids"], "model-00001-of-00002.swire");
    assert_eq!(index["metadata"]["total_size"], 18448);

    let back = tmp.path().join("back");
    let d = decompress_dir(
        &swire,
        &back,
        &DecompressOptions::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(d.shards.len(), 2);
    let (orig, got) = (files(&model), files(&back));
    assert_eq!(
        orig.iter().map(|f| &f.0).collect::<Vec<_>>(),
        got.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in orig.iter().zip(&got) {
        if name.extension().is_some_and(|e| e == "safetensors") {
            assert_eq!(
                read_safetensors(a).unwrap(),
                read_safetensors(b).unwrap(),
                "{name:?}"
            );
        } else {
            assert_eq!(a, b, "{name:?}");
        }
    }
    assert_eq!(listing(tmp.path()), ["back", "model", "model.swire"]);
}

#[test]
fn one_file_folders_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("st");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        write_safetensors(&shard(&["w"], 0)).unwrap(),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = CompressOptions::default();
    compress_dir(&dir, &out, &o, &mut |_, _, _| {}).unwrap();
    assert_eq!(listing(&out), ["model.swire", SWIRE_INDEX]);
    // An existing output needs force; with it the folder is replaced whole.
    let e = compress_dir(&dir, &out, &o, &mut |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    std::fs::write(out.join("stale"), b"x").unwrap();
    let forced = CompressOptions {
        force: true,
        ..o.clone()
    };
    compress_dir(&dir, &out, &forced, &mut |_, _, _| {}).unwrap();
    assert_eq!(listing(&out), ["model.swire", SWIRE_INDEX]);
    // Output inside the input, or the input itself.
    for bad in [dir.join("inner"), dir.clone()] {
        let e = compress_dir(&dir, &bad, &forced, &mut |_, _, _| {}).unwrap_err();
        assert!(matches!(e, PipelineError::Output(_)), "{e}");
    }
    // Pickles only: refused with the way out.
    let pk = tmp.path().join("pickle");
    std::fs::create_dir(&pk).unwrap();
    std::fs::write(pk.join("pytorch_model.bin"), b"\x80\x02}q\x00.").unwrap();
    let e = compress_dir(&pk, &tmp.path().join("o2"), &o, &mut |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("safetensors"), "{e}");
    // Nothing at all.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = compress_dir(&empty, &tmp.path().join("o3"), &o, &mut |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("no model found"), "{e}");
    assert!(!tmp.path().join("o2").exists() && !tmp.path().join("o3").exists());
}

#[test]
fn hostile_indexes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = sharded(tmp.path());
    std::fs::write(
        tmp.path().join("secret.safetensors"),
        write_safetensors(&shard(&["s"], 0)).unwrap(),
    )
    .unwrap();
    for (index, want) in [
        (
            r#"{"weight_map": {"s": "../secret.safetensors"}}"#,
            "not a file name",
        ),
        (r#"{"weight_map": {"s": "/etc/passwd"}}"#, "not a file name"),
        (
            r#"{"weight_map": {"s": "absent.safetensors"}}"#,
            "not there",
        ),
        (r#"{"weight_map": {"s": 3}}"#, "not a string"),
        (r#"{"weights": {}}"#, "weight_map"),
        ("not json", "not JSON"),
    ] {
        std::fs::write(model.join(HF_INDEX), index).unwrap();
        let e = compress_dir(
            &model,
            &tmp.path().join("o"),
            &CompressOptions::default(),
            &mut |_, _, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains(want), "{index}: {e}");
    }
    assert!(!tmp.path().join("o").exists());
}

#[test]
fn a_failed_run_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = sharded(tmp.path());
    let swire = tmp.path().join("model.swire");
    compress_dir(
        &model,
        &swire,
        &CompressOptions::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    // Damage the second stream: the first shard decodes, the second fails.
    let s2 = swire.join("model-00002-of-00002.swire");
    let mut b = std::fs::read(&s2).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xFF;
    std::fs::write(&s2, b).unwrap();
    let back = tmp.path().join("back");
    let e = decompress_dir(
        &swire,
        &back,
        &DecompressOptions::default(),
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("model-00002-of-00002.swire"), "{e}");
    assert_eq!(listing(tmp.path()), ["model", "model.swire"]);
}
