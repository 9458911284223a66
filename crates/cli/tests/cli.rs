//! The `sparsewire` binary end to end: exit codes, --json fields, refusing to clobber.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparsewire"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// Runs a command that must succeed, and parses its `--json` report.
fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report on stdout")
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes the demo tensors as safetensors into `dir`.
fn demo_input(dir: &Path) -> PathBuf {
    let out = run(&["demo", "--out", s(dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("demo.safetensors")
}

#[test]
fn demo_runs_and_verifies() {
    let out = run(&["demo"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bit for bit"), "{text}");
    let json = run(&["demo", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["bit_exact"], true);
    assert!(v["ratio"].as_f64().unwrap() < 0.9);
}

#[test]
fn compress_decompress_inspect_with_json() {
    let d = tmp();
    let input = demo_input(d.path());
    let swire = d.path().join("m.swire");
    let v = ok_json(&["compress", s(&input), "-o", s(&swire), "--json"]);
    for key in ["input_bytes", "output_bytes", "ratio", "tensors"] {
        assert!(v.get(key).is_some(), "compress --json lacks {key}");
    }
    let t = &v["tensors"][0];
    for key in ["name", "dtype", "shape", "input_bytes", "output_bytes"] {
        assert!(t.get(key).is_some(), "tensor entry lacks {key}");
    }

    let back = d.path().join("back.safetensors");
    let out = run(&["decompress", s(&swire), "-o", s(&back), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut a = sparsewire_pipeline::read_tensors(&input).unwrap();
    let mut b = sparsewire_pipeline::read_tensors(&back).unwrap();
    a.tensors.sort_by(|x, y| x.name.cmp(&y.name));
    b.tensors.sort_by(|x, y| x.name.cmp(&y.name));
    assert!(a == b, "decompressed tensors differ from the input");

    let out = run(&["inspect", s(&swire), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let planes = &v["tensors"][0]["planes"];
    assert!(planes[0]["entropy_bound_bytes"].as_f64().unwrap() > 0.0);
    let out = run(&["inspect", s(&swire)]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("encoder.attn.weight"));
}

#[test]
fn bench_json_has_speed_fields() {
    let d = tmp();
    let input = demo_input(d.path());
    let v = ok_json(&[
        "bench",
        s(&input),
        "--runs",
        "1",
        "--threads",
        "2",
        "--json",
    ]);
    for key in [
        "encode_gbps",
        "decode_gbps",
        "decode_gbps_all_threads",
        "ratio",
        "input_bytes",
        "output_bytes",
        "tensors",
    ] {
        assert!(v.get(key).is_some(), "bench --json lacks {key}");
    }
}

#[test]
fn refuses_to_clobber_and_reports_errors() {
    let d = tmp();
    let input = demo_input(d.path());
    let swire = d.path().join("m.swire");
    assert!(run(&["compress", s(&input), "-o", s(&swire)])
        .status
        .success());
    // Existing output without --force.
    let out = run(&["compress", s(&input), "-o", s(&swire)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(run(&["compress", s(&input), "-o", s(&swire), "--force"])
        .status
        .success());
    // Its own input, even with --force.
    let out = run(&["compress", s(&input), "-o", s(&input), "--force"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("input"));
    // A corrupt stream: one clear message, non-zero exit, no output file left.
    let mut bytes = std::fs::read(&swire).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    let bad = d.path().join("bad.swire");
    std::fs::write(&bad, bytes).unwrap();
    let back = d.path().join("never.safetensors");
    let out = run(&["decompress", s(&bad), "-o", s(&back)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!back.exists());
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty());
    // Missing input.
    let out = run(&["inspect", "/nonexistent.swire"]);
    assert!(!out.status.success());
}

#[test]
fn npy_in_and_out() {
    let d = tmp();
    let t = sparsewire_pipeline::Tensor::from_f32("x", vec![3, 4], &[0.5; 12]);
    let npy = d.path().join("x.npy");
    std::fs::write(
        &npy,
        sparsewire_pipeline::formats::npy::write_npy(&t).unwrap(),
    )
    .unwrap();
    let swire = d.path().join("x.swire");
    assert!(run(&["compress", s(&npy), "-o", s(&swire)])
        .status
        .success());
    let back = d.path().join("y.npy");
    assert!(run(&["decompress", s(&swire), "-o", s(&back)])
        .status
        .success());
    assert_eq!(std::fs::read(&npy).unwrap(), std::fs::read(&back).unwrap());
}

#[test]
fn lossy_compress_reports_and_inspect_shows_it() {
    let d = tmp();
    let input = demo_input(d.path());
    let swire = d.path().join("s.swire");
    let v = ok_json(&[
        "compress",
        s(&input),
        "-o",
        s(&swire),
        "--sparsity",
        "0.5",
        "--pattern",
        "2:4",
        "--json",
    ]);
    assert!(v["ratio"].as_f64().unwrap() < 0.6);
    let t = &v["tensors"][0];
    for key in [
        "name",
        "sparsity",
        "rel_frobenius",
        "snr_db",
        "bits_per_element",
        "mask_bits_per_element",
    ] {
        assert!(t.get(key).is_some(), "lossy compress --json lacks {key}");
    }
    let out = run(&["inspect", s(&swire)]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("sparsified: Magnitude NM"), "{text}");
    let back = d.path().join("back.safetensors");
    assert!(run(&["decompress", s(&swire), "-o", s(&back)])
        .status
        .success());
    // Bad flags: one clear message each.
    for args in [
        vec![
            "compress",
            s(&input),
            "-o",
            "/tmp/never.swire",
            "--sparsity",
            "1.5",
        ],
        vec![
            "compress",
            s(&input),
            "-o",
            "/tmp/never.swire",
            "--pattern",
            "4:2",
        ],
        vec![
            "compress",
            s(&input),
            "-o",
            "/tmp/never.swire",
            "--criterion",
            "psychic",
            "--sparsity",
            "0.5",
        ],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}
