//! `sparsewire train` end to end: a short run writes its model and gradient scores, the
//! model decodes, and the scores drive `compress --criterion taylor`; bad configs and
//! existing outputs are refused before any training.

use std::process::Command;

fn sw(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sparsewire"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data/sklearn_digits.safetensors"
)]
fn train_writes_a_model_and_gradients_that_compress_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "seed = 1\nepochs = 3\nbaselines = false\ndata = {:?}\n[sparsity]\ntarget = 0.6\ncriterion = \"taylor\"\n",
            format!("{}/sklearn_digits.safetensors", env!("SPARSEWIRE_DATA_DIR"))
        ),
    )
    .unwrap();
    let model = dir.path().join("m.swire");
    let grads = dir.path().join("g.safetensors");
    let out = sw(&[
        "train".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "-o".as_ref(),
        model.as_os_str(),
        "--gradients-out".as_ref(),
        grads.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "test_accuracy",
        "dense_test_accuracy",
        "posthoc_test_accuracy",
        "weight_sparsity",
        "activation_keep",
        "bytes_per_image",
        "seconds",
    ] {
        assert!(j.get(k).is_some(), "{k} missing: {j}");
    }
    assert!(j["test_accuracy"].as_f64().unwrap() > 0.5);
    assert_eq!(
        std::fs::metadata(&model).unwrap().len(),
        j["weight_bytes"].as_u64().unwrap()
    );

    // The model decodes; its gradient scores drive a Taylor prune of it.
    let back = dir.path().join("m.safetensors");
    let out = sw(&[
        "decompress".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        back.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = dir.path().join("again.swire");
    let out = sw(&[
        "compress".as_ref(),
        back.as_os_str(),
        "-o".as_ref(),
        again.as_os_str(),
        "--sparsity".as_ref(),
        "0.8".as_ref(),
        "--criterion".as_ref(),
        "taylor".as_ref(),
        "--gradients".as_ref(),
        grads.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&again).unwrap().len() < std::fs::metadata(&model).unwrap().len());

    // An existing output is refused before training (no --force).
    let t0 = std::time::Instant::now();
    let out = sw(&[
        "train".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "-o".as_ref(),
        model.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert!(t0.elapsed().as_secs_f64() < 2.0, "it trained first");
}

#[test]
fn a_bad_config_is_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "epochs = 3\n[sparsity]\ntarget = 0.5\npatern = \"2:4\"\n",
    )
    .unwrap();
    let out = sw(&["train".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("bad.toml") && e.contains("patern"), "{e}");
}
