//! Bounded memory: `compress` and `decompress` of a safetensors file larger than 4 GiB stay
//! under 512 MiB of resident memory (the binary's own `VmHWM`, reported in `--json`), and
//! the round trip is bit-exact.
//!
//! Ignored by default (it writes about 13.5 GB to the temporary folder and takes a few
//! minutes on 2 cores); `cargo xtask memory` runs it. SPARSEWIRE_MEMORY_DIR picks the folder.

use std::io::{BufWriter, Read};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sparsewire_formats::safetensors::{Announce, SafetensorsWriter};
use sparsewire_metadata::Dtype;

const LIMIT: u64 = 512 << 20;

/// Weight-like values: a sum of four uniforms (close to a normal), scaled to 0.02.
struct Weights(u64);

impl Weights {
    fn next(&mut self) -> f32 {
        let mut s = 0f32;
        for _ in 0..4 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s += (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        }
        (s - 2.0) * 0.035
    }
}

/// Writes the synthetic model: two 1 GiB bf16 matrices and one 2.5 GiB f32 matrix.
fn write_model(path: &Path) -> u64 {
    let tensors: [(&str, Dtype, [u64; 2]); 3] = [
        ("layer0.weight", Dtype::BF16, [32768, 16384]),
        ("layer1.weight", Dtype::BF16, [32768, 16384]),
        ("head.weight", Dtype::F32, [16384, 40960]),
    ];
    let announce: Vec<Announce<'_>> = tensors
        .iter()
        .map(|(name, dtype, shape)| Announce {
            name,
            dtype: *dtype,
            shape,
        })
        .collect();
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        SafetensorsWriter::new(BufWriter::with_capacity(1 << 22, file), &announce, &[]).unwrap();
    let mut rng = Weights(0x9e37_79b9_7f4a_7c15);
    let mut buf = Vec::with_capacity(1 << 24);
    for (_, dtype, [r, c]) in tensors {
        let mut left = r * c;
        while left > 0 {
            let n = left.min(1 << 22);
            buf.clear();
            for _ in 0..n {
                let v = rng.next();
                match dtype {
                    Dtype::BF16 => buf.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                    _ => buf.extend_from_slice(&v.to_le_bytes()),
                }
            }
            w.write(&buf).unwrap();
            left -= n;
        }
    }
    let total = w.written();
    w.finish().unwrap();
    total
}

/// Runs the binary with `--json` and returns its report.
fn run(args: &[&std::ffi::OsStr]) -> (serde_json::Value, f64) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sparsewire"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        t0.elapsed().as_secs_f64(),
    )
}

fn same_files(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 24], vec![0u8; 1 << 24]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[test]
#[ignore = "writes ~13.5 GB and takes minutes: run by `cargo xtask memory`"]
fn compress_and_decompress_of_a_4_gib_file_stay_under_512_mib() {
    let base = std::env::var_os("SPARSEWIRE_MEMORY_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let (model, stream, back) = (
        dir.path().join("model.safetensors"),
        dir.path().join("model.swire"),
        dir.path().join("back.safetensors"),
    );
    let t0 = Instant::now();
    let bytes = write_model(&model);
    assert!(bytes > 4 << 30, "the model is over 4 GiB");
    eprintln!(
        "wrote {:.2} GiB of tensors in {:.1} s",
        bytes as f64 / (1u64 << 30) as f64,
        t0.elapsed().as_secs_f64()
    );
    let (c, cs) = run(&[
        "compress".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        stream.as_os_str(),
    ]);
    let (d, ds) = run(&[
        "decompress".as_ref(),
        stream.as_os_str(),
        "-o".as_ref(),
        back.as_os_str(),
    ]);
    let peak = |r: &serde_json::Value| r["peak_memory_bytes"].as_u64();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let (Some(pc), Some(pd)) = (peak(&c), peak(&d)) else {
        panic!("the binary did not report its peak memory (not Linux?)");
    };
    eprintln!(
        "compress: {:.2} GiB -> {:.2} GiB (ratio {:.4}) in {cs:.1} s, peak {:.0} MiB",
        bytes as f64 / (1u64 << 30) as f64,
        c["output_bytes"].as_u64().unwrap() as f64 / (1u64 << 30) as f64,
        c["ratio"].as_f64().unwrap(),
        mib(pc)
    );
    eprintln!("decompress: {ds:.1} s, peak {:.0} MiB", mib(pd));
    assert!(same_files(&model, &back), "the round trip is bit-exact");
    assert!(pc < LIMIT, "compress peaked at {:.0} MiB", mib(pc));
    assert!(pd < LIMIT, "decompress peaked at {:.0} MiB", mib(pd));
}
