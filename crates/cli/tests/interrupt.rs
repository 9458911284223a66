//! Killing compress or decompress part way leaves nothing behind: no output, no temporary
//! file, the input intact. 100 iterations of each, at seeded random points over a whole
//! run: SIGKILL and SIGTERM on the default path (an unnamed temporary file), SIGTERM and
//! SIGINT on the named-file fallback (removed by the signal handler).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A 16 MiB f32 model: long enough to compress for some tens of milliseconds.
fn model(dir: &Path) -> std::path::PathBuf {
    let n = 4 << 20;
    let v: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 0.02).collect();
    let file = sparsewire_formats::TensorFile {
        tensors: vec![sparsewire_formats::Tensor::from_f32(
            "w",
            vec![2048, 2048],
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

/// Starts `args`, waits `us`, sends `signal` (`KILL`, `TERM` or `INT`), waits for the exit.
fn interrupt(args: &[&std::ffi::OsStr], us: u64, signal: &str, named: bool) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparsewire"));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if named {
        cmd.env("SPARSEWIRE_NAMED_TEMP", "1");
    }
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_micros(us));
    if signal == "KILL" {
        let _ = child.kill();
    } else {
        // The child may have finished already: `kill` then fails, which is fine.
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap();
    }
    child.wait().unwrap();
}

/// Microseconds a whole run of `args` takes.
fn duration(args: &[&std::ffi::OsStr]) -> u64 {
    let t0 = std::time::Instant::now();
    let st = Command::new(env!("CARGO_BIN_EXE_sparsewire"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    t0.elapsed().as_micros() as u64
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
    let compress: [&std::ffi::OsStr; 4] = [
        "compress".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    let decompress: [&std::ffi::OsStr; 4] = [
        "decompress".as_ref(),
        stream.as_os_str(),
        "-o".as_ref(),
        back.as_os_str(),
    ];
    // Kill points spread over a whole run (and a little past it).
    let spans = [duration(&compress), duration(&decompress)];
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&back).unwrap();
    let mut seed = 0x5eed_u64;
    let mut finished = 0;
    const ITERATIONS: u64 = 100;
    for i in 0..ITERATIONS {
        let (signal, named) = match i % 4 {
            0 => ("KILL", false),
            1 => ("TERM", false),
            2 => ("TERM", true),
            _ => ("INT", true),
        };
        for (args, span) in [(&compress, spans[0]), (&decompress, spans[1])] {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let us = (seed >> 33) % (span + span / 10);
            interrupt(args, us, signal, named);
            // A run that finished before the signal left a complete output: remove it.
            for p in [&out, &back] {
                if p.exists() {
                    finished += 1;
                    std::fs::remove_file(p).unwrap();
                }
            }
            assert_eq!(
                names(dir.path()),
                listing,
                "after {signal} at {us} us of {span} ({})",
                if named { "named" } else { "unnamed" }
            );
        }
    }
    assert!(
        finished < 2 * ITERATIONS,
        "every run finished before its signal: the test checked nothing"
    );
    assert!(
        finished > 0,
        "no run finished: the kill points do not cover a whole run"
    );
    eprintln!(
        "{} runs killed at random points, {finished} finished first; compress {} ms, decompress {} ms",
        2 * ITERATIONS - finished,
        spans[0] / 1000,
        spans[1] / 1000
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input is intact"
    );
}
