//! Killing compress or decompress part way leaves nothing behind: no output, no temporary
//! file, the input intact. SIGKILL on the default path (an unnamed temporary file), and
//! SIGTERM on the named-file fallback (removed by the signal handler).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A 48 MiB f32 model: long enough to compress for a few hundred milliseconds.
fn model(dir: &Path) -> std::path::PathBuf {
    let n = 12 << 20;
    let v: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 0.02).collect();
    let file = sparsewire_formats::TensorFile {
        tensors: vec![sparsewire_formats::Tensor::from_f32(
            "w",
            vec![4096, 3072],
            &v,
        )],
        metadata: vec![],
    };
    let p = dir.join("model.safetensors");
    std::fs::write(&p, sparsewire_formats::write_safetensors(&file).unwrap()).unwrap();
    p
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Starts `args`, waits `ms`, sends `signal` (`KILL` or `TERM`), waits for the exit.
fn interrupt(args: &[&std::ffi::OsStr], ms: u64, signal: &str, named: bool) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparsewire"));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if named {
        cmd.env("SPARSEWIRE_NAMED_TEMP", "1");
    }
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    if signal == "KILL" {
        let _ = child.kill();
    } else {
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    child.wait().unwrap();
}

#[test]
fn killed_runs_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = model(dir.path());
    let before = std::fs::read(&input).unwrap();
    let stream = dir.path().join("ok.swire");
    let st = Command::new(env!("CARGO_BIN_EXE_sparsewire"))
        .arg("compress")
        .arg(&input)
        .arg("-o")
        .arg(&stream)
        .status()
        .unwrap();
    assert!(st.success());
    let listing = names(dir.path());
    let out = dir.path().join("out.swire");
    let back = dir.path().join("back.safetensors");
    let mut finished = 0;
    for i in 0..12u64 {
        let (signal, named) = match i % 3 {
            0 => ("KILL", false),
            1 => ("TERM", false),
            _ => ("TERM", true),
        };
        let ms = 20 + 25 * i;
        interrupt(
            &[
                "compress".as_ref(),
                input.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
            ],
            ms,
            signal,
            named,
        );
        interrupt(
            &[
                "decompress".as_ref(),
                stream.as_os_str(),
                "-o".as_ref(),
                back.as_os_str(),
            ],
            ms,
            signal,
            named,
        );
        // A run that finished before the signal left a complete output: remove it.
        for p in [&out, &back] {
            if p.exists() {
                finished += 1;
                std::fs::remove_file(p).unwrap();
            }
        }
        assert_eq!(names(dir.path()), listing, "after {signal} at {ms} ms");
    }
    assert!(
        finished < 24,
        "every run finished before its signal: the test checked nothing"
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input is intact"
    );
}
