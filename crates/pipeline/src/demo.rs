//! `sparsewire demo`: the whole job on the built-in tensors
//! ([`sparsewire_formats::builtin`], re-exported here as [`tensors`] and [`stats`]).
//!
//! [`run`], as `sparsewire demo` shows it: compress, inspect,
//! decompress and verify every bit; sparsify half of the weights and verify what comes
//! back; multiply straight from the sparse stream; model the stream on an accelerator.

use crate::{compress, decompress, CompressOptions, PipelineError};
use serde::Serialize;
use sparsewire_accel::calibrate::median;
use sparsewire_accel::exec::{self, Options};
use sparsewire_accel::sim::{HardwareSpec, SimReport};
pub use sparsewire_formats::builtin::{stats, tensors};
use sparsewire_se::{Budget, SparsifyOptions};
use sparsewire_stream::report::{inspect, InspectReport};
use sparsewire_stream::{EncodeOptions, Profile, Reader};
use std::path::Path;
use std::time::Instant;

/// A multiply from the sparse stream against the dense kernel on the original weights.
#[derive(Debug, Clone, Serialize)]
pub struct DemoMultiply {
    pub tensor: String,
    /// Median seconds of the multiply from the stream (fast profile, 50% sparse).
    pub seconds: f64,
    /// Median seconds of the dense kernel on the original weights.
    pub dense_seconds: f64,
    pub speedup: f64,
    /// Largest |y - y_reference| (the scalar reference on the same stream).
    pub max_abs_error_vs_reference: f64,
}

/// What [`run`] found.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub ratio: f64,
    pub encode_seconds: f64,
    pub decode_seconds: f64,
    pub bit_exact: bool,
    /// What the lossless stream holds (as `inspect` shows it).
    pub inspect: InspectReport,
    pub sparsified_output_bytes: u64,
    pub sparsified_ratio: f64,
    /// Weights sparsified (biases, norms and ids stay lossless).
    pub sparsified_tensors: usize,
    pub sparsified_mean_rel_error: f64,
    /// Every decoded value is the original bit for bit, or a dropped zero.
    pub sparsified_decodes_exactly: bool,
    pub matmul: DemoMultiply,
    pub simulated_edge_npu: SimReport,
}

/// Runs the demo (module docs); with `out`, also writes `demo.safetensors` and
/// `demo.swire` there.
pub fn run(out: Option<&Path>) -> Result<DemoReport, PipelineError> {
    let file = tensors();
    let lossless = CompressOptions::default();
    let t0 = Instant::now();
    let (stream, _) = compress(&file, &lossless)?;
    let encode_seconds = t0.elapsed().as_secs_f64();
    let reader = Reader::new(&stream[..])?;
    let report = inspect(&reader, true)?;
    let t1 = Instant::now();
    let back = decompress(&stream)?;
    let decode_seconds = t1.elapsed().as_secs_f64();
    if let Some(dir) = out {
        let st = sparsewire_formats::write_safetensors(&file).map_err(PipelineError::write(dir))?;
        sparsewire_formats::output::write_file(&dir.join("demo.safetensors"), &st, true)?;
        sparsewire_formats::output::write_file(&dir.join("demo.swire"), &stream, true)?;
    }
    // Half of every weight matrix, by magnitude.
    let half = CompressOptions {
        sparsify: Some(SparsifyOptions::new(Budget::Sparsity(0.5))),
        ..CompressOptions::default()
    };
    let (sparse_stream, sparse) = compress(&file, &half)?;
    let lossy: Vec<_> = sparse
        .tensors
        .iter()
        .filter_map(|t| t.sparsify.as_ref().map(|s| (t, s)))
        .collect();
    let n: f64 = lossy.iter().map(|(t, _)| t.stream.input_bytes as f64).sum();
    let mean_err = lossy
        .iter()
        .map(|(t, s)| s.rel_frobenius * t.stream.input_bytes as f64)
        .sum::<f64>()
        / n.max(1.0);
    let sparse_back = decompress(&sparse_stream)?;
    let exact = file.tensors.iter().zip(&sparse_back.tensors).all(|(a, b)| {
        match (a.to_f32_vec(), b.to_f32_vec()) {
            (Some(x), Some(y)) => x
                .iter()
                .zip(&y)
                .all(|(p, q)| *q == 0.0 || p.to_bits() == q.to_bits()),
            _ => a == b,
        }
    });
    // Multiply from the fast profile's stored bytes, against the dense kernel on the
    // original weights (the same executor on a lossless fast-profile stream).
    let fast = EncodeOptions {
        profile: Profile::Fast,
        ..EncodeOptions::default()
    };
    let sparse_fast = CompressOptions {
        encode: fast.clone(),
        ..half
    };
    let dense_fast = CompressOptions {
        encode: fast,
        ..CompressOptions::default()
    };
    let (fs, ds) = (
        compress(&file, &sparse_fast)?.0,
        compress(&file, &dense_fast)?.0,
    );
    let (fr, dr) = (Reader::new(&fs[..])?, Reader::new(&ds[..])?);
    let name = "encoder.ffn.weight";
    let t = fr.tensor_index(name)?;
    let x = exec::default_input(1, 384);
    let want = exec::reference(&fr, t, &x, 1)?;
    let opts = Options::default();
    let (mut secs, mut dense_secs, mut err) = (vec![], vec![], 0f64);
    for _ in 0..21 {
        let (y, r) = exec::matmul(&fr, t, &x, &opts)?;
        secs.push(r.seconds);
        let diff = y.iter().zip(&want).map(|(a, b)| (a - b).abs() as f64);
        err = diff.fold(err, f64::max);
        dense_secs.push(exec::matmul(&dr, t, &x, &opts)?.1.seconds);
    }
    let (seconds, dense_seconds) = (median(secs), median(dense_secs));
    // The sparse stream's matrices on the edge-npu model.
    let sr = Reader::new(&sparse_stream[..])?;
    let matrices: Vec<usize> = (0..sr.header().tensors.len())
        .filter(|&i| sr.header().tensors[i].sparsification.is_some())
        .collect();
    let npu = HardwareSpec::preset("edge-npu")?;
    let sim = sparsewire_accel::workload::simulate_stream(sr.header(), &matrices, 1, 1, 4, &npu)?;
    Ok(DemoReport {
        input_bytes: report.input_bytes,
        output_bytes: report.output_bytes,
        ratio: report.ratio,
        encode_seconds,
        decode_seconds,
        bit_exact: back == file,
        inspect: report,
        sparsified_output_bytes: sparse.output_bytes,
        sparsified_ratio: sparse.ratio,
        sparsified_tensors: lossy.len(),
        sparsified_mean_rel_error: mean_err,
        sparsified_decodes_exactly: exact,
        matmul: DemoMultiply {
            tensor: name.into(),
            seconds,
            dense_seconds,
            speedup: dense_seconds / seconds,
            max_abs_error_vs_reference: err,
        },
        simulated_edge_npu: sim,
    })
}
