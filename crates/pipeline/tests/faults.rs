//! Fault injection: what happens when the world changes under compress and decompress.
//!
//! - the output's folder is removed during the write;
//! - the input shrinks part way (a file truncated by another process: the read fails
//!   mid-file), and a stream source whose reads fail with EIO from some offset on;
//! - the disk fills up (a 1 MiB tmpfs, where this process may mount one; skipped with the
//!   reason otherwise).
//!
//! Each must end in a typed error that names the file, with nothing partial left. Both
//! output paths are tried: the unnamed temporary file and the named fallback
//! (`SPARSEWIRE_NAMED_TEMP=1`), which is why this is one test in its own binary (the
//! variable is process-wide).

use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_pipeline::{
    compress_file, decompress_file, CompressOptions, DecompressOptions, PipelineError,
};
use sparsewire_stream::{Reader, Source, StreamError};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Eight tensors of 512 KiB of noise-like f32 (4 MiB, poorly compressible): progress ticks
/// between tensors, so a fault injected at the first tick lands mid-run.
fn model(dir: &Path) -> PathBuf {
    let mut s = 9u64;
    let tensors = (0..8)
        .map(|t| {
            let v: Vec<f32> = (0..128 * 1024)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
                })
                .collect();
            Tensor::from_f32(format!("layer{t}.weight"), vec![256, 512], &v)
        })
        .collect();
    let file = TensorFile {
        tensors,
        metadata: vec![],
    };
    let p = dir.join("model.safetensors");
    std::fs::write(&p, sparsewire_formats::write_safetensors(&file).unwrap()).unwrap();
    p
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn compress_with(input: &Path, output: &Path, mut at_first_tick: impl FnMut()) -> String {
    let mut fired = false;
    let r = compress_file(input, output, &CompressOptions::default(), &mut |_| {
        if !fired {
            fired = true;
            at_first_tick();
        }
    });
    assert!(fired, "no progress tick: the fault was never injected");
    match r {
        Ok(_) => panic!("{}: compress succeeded despite the fault", output.display()),
        Err(e) => e.to_string(),
    }
}

fn decompress_with(input: &Path, output: &Path, mut at_first_tick: impl FnMut()) -> String {
    let mut fired = false;
    let r = decompress_file(input, output, &DecompressOptions::default(), &mut |_, _| {
        if !fired {
            fired = true;
            at_first_tick();
        }
    });
    assert!(fired, "no progress tick: the fault was never injected");
    match r {
        Ok(_) => panic!(
            "{}: decompress succeeded despite the fault",
            output.display()
        ),
        Err(e) => e.to_string(),
    }
}

/// A stream source whose reads fail with EIO from `fail_from` on (a dying disk).
struct FailingSource<'a> {
    bytes: &'a [u8],
    fail_from: u64,
}

impl Source for FailingSource<'_> {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Cow<'_, [u8]>> {
        if offset + len as u64 > self.fail_from {
            return Err(std::io::Error::from_raw_os_error(5));
        }
        Ok(Cow::Borrowed(
            &self.bytes[offset as usize..offset as usize + len],
        ))
    }
    fn immutable(&self) -> bool {
        true
    }
}

/// A 1 MiB tmpfs mounted at a new temporary folder, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> Result<SmallDisk, String> {
        let d = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs"])
            .arg(d.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk(d))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

fn scenarios(named: bool) {
    let mode = if named { "named" } else { "unnamed" };
    let root = tempfile::tempdir().unwrap();
    let input = model(root.path());
    let pristine = std::fs::read(&input).unwrap();
    let stream = root.path().join("model.swire");
    compress_file(&input, &stream, &CompressOptions::default(), &mut |_| {}).unwrap();
    let stream_bytes = std::fs::read(&stream).unwrap();

    // 1. The output's folder is removed during the write.
    let out_dir = root.path().join("out");
    for decompress in [false, true] {
        std::fs::create_dir(&out_dir).unwrap();
        let (src, out) = if decompress {
            (&stream, out_dir.join("back.safetensors"))
        } else {
            (&input, out_dir.join("model.swire"))
        };
        let remove = || std::fs::remove_dir_all(&out_dir).unwrap();
        let e = if decompress {
            decompress_with(src, &out, remove)
        } else {
            compress_with(src, &out, remove)
        };
        assert!(e.contains(&out.display().to_string()), "{mode}: {e}");
        assert!(!out_dir.exists(), "{mode}: the removed folder came back");
        eprintln!("{mode}, output folder removed: {e}");
    }
    assert_eq!(
        listing(root.path()),
        ["model.safetensors", "model.swire"],
        "{mode}"
    );

    // 2. The input shrinks to half part way: the read fails mid-file.
    let out = root.path().join("x.swire");
    let e = compress_with(&input, &out, || {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .unwrap();
        f.set_len(pristine.len() as u64 / 2).unwrap();
    });
    assert!(e.contains(&input.display().to_string()), "{mode}: {e}");
    assert!(!out.exists(), "{mode}: partial output left");
    eprintln!("{mode}, input truncated mid-read: {e}");
    std::fs::write(&input, &pristine).unwrap();

    let back = root.path().join("back.safetensors");
    let e = decompress_with(&stream, &back, || {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&stream)
            .unwrap();
        f.set_len(stream_bytes.len() as u64 / 2).unwrap();
    });
    assert!(e.contains(&stream.display().to_string()), "{mode}: {e}");
    assert!(!back.exists(), "{mode}: partial output left");
    eprintln!("{mode}, stream truncated mid-read: {e}");
    std::fs::write(&stream, &stream_bytes).unwrap();
    assert_eq!(
        listing(root.path()),
        ["model.safetensors", "model.swire"],
        "{mode}"
    );

    // 3. The disk fills up.
    match SmallDisk::mount() {
        Err(why) => eprintln!("SKIPPED full-disk case ({mode}): {why}"),
        Ok(disk) => {
            for decompress in [false, true] {
                let out = disk.path().join(if decompress {
                    "back.safetensors"
                } else {
                    "model.swire"
                });
                let e: Result<(), PipelineError> = if decompress {
                    decompress_file(&stream, &out, &DecompressOptions::default(), &mut |_, _| {})
                        .map(drop)
                } else {
                    compress_file(&input, &out, &CompressOptions::default(), &mut |_| {}).map(drop)
                };
                let e = e.expect_err("4 MiB fit on a 1 MiB disk").to_string();
                assert!(
                    e.contains(&out.display().to_string())
                        && e.to_lowercase().contains("no space left"),
                    "{mode}: {e}"
                );
                assert!(
                    listing(disk.path()).is_empty(),
                    "{mode}: left on the full disk: {:?}",
                    listing(disk.path())
                );
                eprintln!("{mode}, disk full: {e}");
            }
        }
    }
    assert_eq!(
        std::fs::read(&input).unwrap(),
        pristine,
        "{mode}: input intact"
    );
}

#[test]
fn faults_end_in_typed_errors_and_leave_nothing() {
    scenarios(false);
    std::env::set_var("SPARSEWIRE_NAMED_TEMP", "1");
    scenarios(true);
    std::env::remove_var("SPARSEWIRE_NAMED_TEMP");

    // A source that fails with EIO from every offset in turn: the reader opens or decodes
    // with a read error, never a panic or wrong values.
    let dir = tempfile::tempdir().unwrap();
    let input = model(dir.path());
    let stream = dir.path().join("m.swire");
    compress_file(&input, &stream, &CompressOptions::default(), &mut |_| {}).unwrap();
    let bytes = std::fs::read(&stream).unwrap();
    let mut read_errors = 0;
    for fail_from in (0..bytes.len() as u64).step_by(bytes.len() / 97) {
        let src = FailingSource {
            bytes: &bytes,
            fail_from,
        };
        let r = Reader::new(src).and_then(|r| r.decode_all().map(|_| ()));
        match r {
            Err(StreamError::Read { source, .. }) if source.raw_os_error() == Some(5) => {
                read_errors += 1
            }
            Err(e) => panic!("EIO from {fail_from}: {e:?}"),
            Ok(()) => panic!("EIO from {fail_from}: decoded anyway"),
        }
    }
    assert!(read_errors > 90, "{read_errors}");
}
