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

fn read(p: &Path) -> sparsewire_formats::TensorFile {
    sparsewire_formats::input::InputFile::open(p)
        .unwrap()
        .read_all()
        .unwrap()
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
    for key in [
        "name",
        "dtype",
        "shape",
        "input_bytes",
        "output_bytes",
        "ratio",
        "codec",
        "tiles",
        "planes",
    ] {
        assert!(t.get(key).is_some(), "tensor entry lacks {key}");
    }
    // One schema: the lossy fields are there, null, on a lossless run.
    assert!(t["sparsify"].is_null(), "{t}");

    let back = d.path().join("back.safetensors");
    let out = run(&["decompress", s(&swire), "-o", s(&back), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut a = read(&input);
    let mut b = read(&back);
    a.tensors.sort_by(|x, y| x.name.cmp(&y.name));
    b.tensors.sort_by(|x, y| x.name.cmp(&y.name));
    assert!(a == b, "decompressed tensors differ from the input");

    let v = ok_json(&["inspect", s(&swire), "--json", "--entropy"]);
    let planes = &v["tensors"][0]["planes"];
    assert!(planes[0]["entropy_bound_bytes"].as_f64().unwrap() > 0.0);
    // The header's JSON view reads back to the same header.
    let out = run(&["inspect", s(&swire), "--header-json"]);
    assert!(out.status.success());
    let h =
        sparsewire_metadata::Header::from_json(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let bytes = std::fs::read(&swire).unwrap();
    let r = sparsewire_stream::Reader::new(&bytes[..]).unwrap();
    assert_eq!(h.to_postcard().unwrap(), r.header().to_postcard().unwrap());
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
    // The CPU and the kernels that ran, so figures from different machines can be told
    // apart.
    assert!(v["cpu"].as_str().is_some_and(|c| !c.is_empty()));
    for key in ["kernel", "encode_kernel"] {
        let k = v[key].as_str().unwrap_or_default();
        assert!(["scalar", "avx2", "avx512"].contains(&k), "{key}: {k:?}");
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
    bytes[sparsewire_stream::PREAMBLE_BYTES + 10] ^= 0xff;
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
    let t = sparsewire_formats::Tensor::from_f32("x", vec![3, 4], &[0.5; 12]);
    let npy = d.path().join("x.npy");
    std::fs::write(&npy, sparsewire_formats::npy::write_npy(&t).unwrap()).unwrap();
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
    // The same fields as a lossless run, and the sparsification's.
    for key in ["name", "dtype", "ratio", "codec", "tiles", "planes"] {
        assert!(t.get(key).is_some(), "lossy compress --json lacks {key}");
    }
    for key in [
        "criterion",
        "pattern",
        "sparsity",
        "rel_frobenius",
        "snr_db",
        "bits_per_element",
        "mask_bits_per_element",
    ] {
        assert!(
            t["sparsify"].get(key).is_some(),
            "lossy compress --json lacks sparsify.{key}"
        );
    }
    assert_eq!(t["sparsify"]["pattern"], "2:4");
    let out = run(&["inspect", s(&swire)]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("sparsified: magnitude 2:4"), "{text}");
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

/// Runs a command that must fail; its stderr.
/// The demo tensors in `dir`, and them compressed at 50% sparsity as `dir/s.swire`.
fn demo_sparse(dir: &Path) -> (PathBuf, PathBuf) {
    let input = demo_input(dir);
    let swire = dir.join("s.swire");
    assert!(
        run(&["compress", s(&input), "-o", s(&swire), "--sparsity", "0.5"])
            .status
            .success()
    );
    (input, swire)
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn options_that_would_be_ignored_or_out_of_range_are_refused() {
    let d = tmp();
    let input = demo_input(d.path());
    let o = d.path().join("o.swire");
    let base = ["compress", s(&input), "-o", s(&o)];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|x| x.to_string()).collect()
    };
    let fails_with = |extra: &[&str], want: &str| {
        let a = with(extra);
        let args: Vec<&str> = a.iter().map(String::as_str).collect();
        let e = fails(&args);
        assert!(e.contains(want), "{extra:?}: {e}");
    };
    // Lossy options without a lossy flag: a lossless stream would be written silently.
    fails_with(
        &[
            "--criterion",
            "wanda",
            "--calibration",
            s(&input),
            "--reconstruct",
            "learned",
        ],
        "only apply when sparsifying",
    );
    fails_with(&["--gradients", s(&input), "--sparsity", "0.5"], "taylor");
    fails_with(&["--sparsity", "NaN"], "[0, 1)");
    fails_with(&["--sparsity", "1"], "[0, 1)");
    fails_with(&["--tile-elems", "0"], ">= 1");
    fails_with(&["--zstd-level", "99"], "1..=22");
    fails_with(&["--target-ratio", "0"], "(0, 1]");
    fails_with(&["--max-error=-1"], "positive");
    assert!(!o.exists(), "nothing is written when an option is refused");
    let swire = d.path().join("m.swire");
    assert!(run(&["compress", s(&input), "-o", s(&swire)])
        .status
        .success());
    for (args, want) in [
        (
            vec![
                "matmul",
                s(&swire),
                "--tensor",
                "encoder.attn.weight",
                "--runs",
                "0",
            ],
            ">= 1",
        ),
        (
            vec![
                "matmul",
                s(&swire),
                "--tensor",
                "encoder.attn.weight",
                "--batch",
                "0",
            ],
            ">= 1",
        ),
        (vec!["simulate", s(&swire), "--batch", "0"], ">= 1"),
        (
            vec!["simulate", s(&swire), "--calibrate", "--plot", "x.svg"],
            "cannot be used",
        ),
        (
            vec!["simulate", s(&swire), "--sweep", "bus.speed=1,2"],
            "unknown parameter",
        ),
        (vec!["bench", s(&input), "--link-gbps", "0"], "positive"),
    ] {
        let e = fails(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // A non-float tensor: a clear error naming it and its dtype, not a panic.
    let e = fails(&["matmul", s(&swire), "--tensor", "position_ids"]);
    assert!(
        e.contains("position_ids") && e.contains("I64") && !e.contains("panicked"),
        "{e}"
    );
}

#[test]
fn sparse_layouts_are_written_as_named_arrays() {
    let d = tmp();
    let (_, swire) = demo_sparse(d.path());
    let dense = d.path().join("dense.safetensors");
    assert!(run(&["decompress", s(&swire), "-o", s(&dense)])
        .status
        .success());
    let dense = read(&dense);
    for layout in ["csr", "csc", "coo"] {
        let out = d.path().join(format!("{layout}.safetensors"));
        let v = ok_json(&[
            "decompress",
            s(&swire),
            "-o",
            s(&out),
            "--layout",
            layout,
            "--json",
        ]);
        let f = read(&out);
        let get = |n: &str| {
            f.tensors
                .iter()
                .find(|t| t.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        // A sparsified weight as arrays, against the dense decode.
        let w = dense
            .tensors
            .iter()
            .find(|t| t.name == "encoder.ffn.weight")
            .unwrap();
        let vals = w.to_f32_vec().unwrap();
        let kept: Vec<f32> = vals.iter().copied().filter(|&x| x != 0.0).collect();
        let values = get("encoder.ffn.weight.values").to_f32_vec().unwrap();
        assert_eq!(values.len(), kept.len(), "{layout}");
        if layout == "csr" {
            assert_eq!(values, kept);
            let ptr = get("encoder.ffn.weight.row_ptr");
            assert_eq!(ptr.shape, vec![1537]);
        }
        let shape = get("encoder.ffn.weight.shape");
        assert_eq!(
            shape.data,
            [1536i64, 384]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>()
        );
        // Dense tensors stay as they are.
        assert!(f.tensors.iter().any(|t| t.name == "encoder.ffn.bias"));
        assert!(v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["layout"] == layout));
        // The reference reader agrees it is a valid file.
        let bytes = std::fs::read(&out).unwrap();
        safetensors::SafeTensors::deserialize(&bytes).unwrap();
    }
}

#[test]
fn device_outputs_are_written_not_replaced() {
    let d = tmp();
    let input = demo_input(d.path());
    assert!(run(&["compress", s(&input), "-o", "/dev/null", "--force"])
        .status
        .success());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // To standard output: the stream, complete.
    let out = run(&["compress", s(&input), "-o", "-"]);
    assert!(out.status.success());
    sparsewire_stream::Reader::new(&out.stdout[..]).unwrap();
}

#[test]
fn model_folders_compress_inspect_and_come_back() {
    let d = tmp();
    let model = d.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::rename(demo_input(d.path()), model.join("model.safetensors")).unwrap();
    std::fs::write(model.join("config.json"), br#"{"hidden_size": 64}"#).unwrap();
    // Default output: the folder's name with .swire.
    let r = ok_json(&["compress", s(&model), "--json"]);
    let out = d.path().join("model.swire");
    assert_eq!(r["shards"].as_array().unwrap().len(), 1);
    assert_eq!(r["copied"][0], "config.json");
    assert!(out.join("model.swire").is_file() && out.join("model.swire.index.json").is_file());
    let i = ok_json(&["inspect", s(&out), "--json"]);
    assert_eq!(i["shards"][0]["file"], "model.swire");
    assert!(i["shards"][0]["tensors"].as_array().unwrap().len() > 3);
    // Through the index file too.
    let back = d.path().join("back");
    let index = out.join("model.swire.index.json");
    ok_json(&["decompress", s(&index), "-o", s(&back), "--json"]);
    assert_eq!(
        read(&back.join("model.safetensors")),
        read(&model.join("model.safetensors"))
    );
    assert_eq!(
        std::fs::read(back.join("config.json")).unwrap(),
        br#"{"hidden_size": 64}"#
    );
    // Refusals: standard output for a folder, an existing output, pickles.
    let e = run(&["compress", s(&model), "-o", "-"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("not standard output"));
    let e = run(&["compress", s(&model)]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("already exists"));
    let pk = d.path().join("pk");
    std::fs::create_dir(&pk).unwrap();
    std::fs::write(pk.join("pytorch_model.bin"), b"\x80\x02}q\x00.").unwrap();
    let e = run(&["compress", s(&pk)]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("never unpickles"));
}

/// Starts `sparsewire serve ARGS` (stdout and stderr piped); returns the process and the
/// address its first line says it serves on.
fn serve(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut host = bin()
        .arg("serve")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split(" on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_string();
    (host, addr)
}

#[test]
fn serve_and_run_over_loopback() {
    let d = tmp();
    let input = demo_input(d.path());
    // A non-loopback address needs --allow-remote.
    let e = run(&["serve", s(&input), "--listen", "0.0.0.0:0"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("--allow-remote"));
    let (mut host, addr) = serve(&[s(&input), "--listen", "127.0.0.1:0", "--link-gbps", "1"]);
    let v = ok_json(&[
        "run",
        "--connect",
        &addr,
        "--policy",
        "lossless",
        "--passes",
        "2",
        "--reference",
        s(&input),
        "--json",
    ]);
    for key in [
        "seconds",
        "passes",
        "deadline_hit_fraction",
        "stall_fraction",
        "bytes_sent",
        "dense_bytes",
        "levels",
        "mean_cosine",
        "retries",
    ] {
        assert!(v.get(key).is_some(), "run --json lacks {key}");
    }
    assert_eq!(v["passes"], 2);
    assert!(v["mean_cosine"].as_f64().unwrap() > 0.999_999);
    let v = ok_json(&[
        "run",
        "--connect",
        &addr,
        "--policy",
        "adaptive",
        "--period-ms",
        "50",
        "--passes",
        "3",
        "--json",
    ]);
    assert_eq!(v["passes"], 3);
    // Without a period: back to back, within a stall budget.
    let v = ok_json(&[
        "run",
        "--connect",
        &addr,
        "--policy",
        "adaptive",
        "--passes",
        "3",
        "--stall-budget",
        "0.2",
        "--json",
    ]);
    assert!(v["deadline_hit_fraction"].is_null());
    let e = run(&["run", "--connect", &addr, "--stall-budget", "1"]);
    assert!(!e.status.success());
    let e = run(&["run", "--connect", &addr, "--policy", "fixed:1.5"]);
    assert!(!e.status.success());
    host.kill().unwrap();
    host.wait().unwrap();
}

#[test]
fn serve_a_swire_from_its_stored_tiles() {
    let d = tmp();
    let input = demo_input(d.path());
    let stream = d.path().join("m.swire");
    let c = run(&["compress", s(&input), "-o", s(&stream)]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let (mut host, addr) = serve(&[s(&stream), "--listen", "127.0.0.1:0"]);
    let v = ok_json(&[
        "run",
        "--connect",
        &addr,
        "--policy",
        "lossless",
        "--passes",
        "1",
        "--reference",
        s(&input),
        "--json",
    ]);
    assert!(v["mean_cosine"].as_f64().unwrap() > 0.999_999, "{v}");
    let _ = host.kill();
    let _ = host.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut host.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("serving the stored tiles"), "{err}");
}

#[test]
fn serve_and_run_over_a_unix_socket() {
    let d = tmp();
    let input = demo_input(d.path());
    // Never replaces a file that is not a socket.
    let keep = d.path().join("not-a-socket");
    std::fs::write(&keep, b"keep").unwrap();
    let e = run(&[
        "serve",
        s(&input),
        "--listen",
        &format!("unix:{}", s(&keep)),
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(&keep).unwrap(), b"keep");
    let sock = format!("unix:{}", s(&d.path().join("host.sock")));
    let (mut host, addr) = serve(&[s(&input), "--listen", &sock]);
    assert_eq!(addr, sock);
    let v = ok_json(&[
        "run",
        "--connect",
        &sock,
        "--policy",
        "lossless",
        "--passes",
        "2",
        "--reference",
        s(&input),
        "--json",
    ]);
    assert_eq!(v["passes"], 2);
    assert!(v["mean_cosine"].as_f64().unwrap() > 0.999_999, "{v}");
    let _ = host.kill();
    let _ = host.wait();
}

#[test]
fn simulate_runs_its_bus_on_a_link_trace() {
    let d = tmp();
    let (_, swire) = demo_sparse(d.path());
    let base = ok_json(&["simulate", s(&swire), "--hw", "pcie-gpu", "--json"]);
    // A trace at a thousandth of the preset's bus: every transfer, the dense baseline's
    // too, takes longer.
    let slow = d.path().join("slow.trace");
    std::fs::write(&slow, "# seconds gbps\n0 0.055\n").unwrap();
    let r = ok_json(&[
        "simulate",
        s(&swire),
        "--hw",
        "pcie-gpu",
        "--link-trace",
        s(&slow),
        "--json",
    ]);
    let t = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    assert!(
        t(&r, "total_seconds") > 10.0 * t(&base, "total_seconds"),
        "{r} {base}"
    );
    assert!(t(&r, "dense_total_seconds") > 10.0 * t(&base, "dense_total_seconds"));
    assert_eq!(r["bus_bytes"], base["bus_bytes"]);
    // A bad trace is named with its line; a trace cannot be swept with bus.gbps.
    let bad = d.path().join("bad.trace");
    std::fs::write(&bad, "0 1\n0.5 fast\n").unwrap();
    let e = fails(&["simulate", s(&swire), "--link-trace", s(&bad)]);
    assert!(e.contains("bad.trace") && e.contains("line 2"), "{e}");
    let e = fails(&[
        "simulate",
        s(&swire),
        "--link-trace",
        s(&slow),
        "--sweep",
        "bus.gbps=1,2",
    ]);
    assert!(e.contains("bus.gbps"), "{e}");
}
