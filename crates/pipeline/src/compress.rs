//! Host side: a tensor file to a `.swire` file, losslessly or sparsified.
//!
//! `formats` opens the input by its header -> (lossy) `se` plans a job per float matrix
//! and picks each one's sparsity (a byte budget measures real encodes through
//! [`StreamBytes`]) -> per tensor, `se` sparsifies it (or not) and `stream` codes and
//! writes it -> `formats` commits the output. One tensor is in memory at a time.

use crate::PipelineError;
use serde::Serialize;
use sparsewire_formats::input::InputFile;
use sparsewire_formats::output::{check_output, Output};
use sparsewire_formats::{TensorFile, TensorRef};
use sparsewire_metadata::Header;
use sparsewire_se::job::Summary;
use sparsewire_se::levels::StreamBytes;
use sparsewire_se::report::{AllocationReport, TensorSparsity};
use sparsewire_se::{Job, SparsifyOptions};
use sparsewire_sparse::SparseTensor;
use sparsewire_stream::report::{ratio, tensor_report, TensorReport};
use sparsewire_stream::{EncodeOptions, Writer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to compress.
#[derive(Debug, Clone, Default)]
pub struct CompressOptions {
    pub encode: EncodeOptions,
    /// Sparsify the float matrices first (`None`: lossless).
    pub sparsify: Option<SparsifyOptions>,
    /// Replace an existing output file.
    pub force: bool,
}

/// Where a long compress is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Measuring tensors for a budget.
    Analyse { done: usize, total: usize },
    /// Writing: tensor bytes consumed.
    Write { done_bytes: u64, total_bytes: u64 },
}

/// One tensor of a compress report: what the stream holds (as `inspect` shows it), and,
/// for a sparsified tensor, what the sparsification engine measured (`null` otherwise).
#[derive(Debug, Clone, Serialize)]
pub struct CompressedTensor {
    #[serde(flatten)]
    pub stream: TensorReport,
    pub sparsify: Option<TensorSparsity>,
}

/// What `compress` did; the same fields whether it sparsified or not.
#[derive(Debug, Clone, Serialize)]
pub struct CompressReport {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Bytes of the input's tensors.
    pub input_bytes: u64,
    /// Bytes of the stream.
    pub output_bytes: u64,
    pub ratio: f64,
    pub seconds: f64,
    pub tensors: Vec<CompressedTensor>,
    /// With a byte budget: adaptive against uniform allocation.
    pub allocation: Option<AllocationReport>,
}

/// Writes `tensors` to `out` (job `j` at `levels[j]`); returns the output, the header
/// and each tensor's sparsification summary.
fn write_stream<W: Write>(
    out: W,
    tensors: &[TensorRef<'_>],
    metadata: &[(String, String)],
    jobs: &[Job<'_>],
    levels: &[f32],
    opts: &EncodeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, Header, Vec<Option<Summary>>), PipelineError> {
    let total_bytes: u64 = tensors.iter().map(|t| t.bytes.size()).sum();
    let mut job_of = vec![None; tensors.len()];
    for (j, job) in jobs.iter().enumerate() {
        job_of[job.index] = Some(j);
    }
    let mut writer = Writer::new(out, opts.clone())?;
    let mut summaries = Vec::with_capacity(job_of.len());
    let mut before = 0u64;
    for (t, job) in tensors.iter().zip(&job_of) {
        let mut tick = |done: u64| {
            progress(Progress::Write {
                done_bytes: before + done,
                total_bytes,
            })
        };
        match job {
            Some(j) => {
                let o = jobs[*j].run(levels[*j])?;
                writer.add_sparse_with(t.name, t.shape, &o.sparse, &mut tick)?;
                summaries.push(Some(o.summary));
            }
            None => {
                writer.add_with(*t, &mut tick)?;
                summaries.push(None);
            }
        }
        before += t.bytes.size();
    }
    let (out, header) = writer.finish(metadata.to_vec())?;
    Ok((out, header, summaries))
}

/// A byte budget's view of the stream: real encodes into a counter.
struct Budget<'a, 'b> {
    tensors: &'a [TensorRef<'b>],
    jobs: &'a [Job<'b>],
    opts: &'a EncodeOptions,
}

impl StreamBytes for Budget<'_, '_> {
    type Error = PipelineError;

    fn fixed(&mut self) -> Result<f64, PipelineError> {
        let mut w = Writer::new(std::io::sink(), self.opts.clone())?;
        let sparse: std::collections::HashSet<usize> = self.jobs.iter().map(|j| j.index).collect();
        for (i, t) in self.tensors.iter().enumerate() {
            if !sparse.contains(&i) {
                w.add(*t)?;
            }
        }
        Ok(sparsewire_stream::stream_bytes(&w.finish(vec![])?.1)? as f64)
    }

    fn estimate(&self, s: &SparseTensor) -> f64 {
        sparsewire_stream::estimate::sparse_bytes(s.tile.as_ref(), s.info.pattern)
    }

    fn encoded(&mut self, levels: &[f32]) -> Result<u64, PipelineError> {
        let sink = std::io::sink();
        let (_, header, _) = write_stream(
            sink,
            self.tensors,
            &[],
            self.jobs,
            levels,
            self.opts,
            &mut |_| {},
        )?;
        Ok(sparsewire_stream::stream_bytes(&header)?)
    }
}

/// Compresses `tensors` (with `metadata`) into `out`; gives the output back with the
/// report (its `input` and `output` are `-`: the caller knows the paths).
pub fn compress_to<W: Write>(
    out: W,
    tensors: &[TensorRef<'_>],
    metadata: &[(String, String)],
    opts: &CompressOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, CompressReport), PipelineError> {
    let t0 = Instant::now();
    let input_bytes = tensors.iter().map(|t| t.bytes.size()).sum();
    let (jobs, levels, allocation) = match &opts.sparsify {
        Some(sopts) => {
            sopts.check()?;
            let jobs = sparsewire_se::plan(tensors, sopts)?;
            let mut budget = Budget {
                tensors,
                jobs: &jobs,
                opts: &opts.encode,
            };
            let mut analyse = |done, total| progress(Progress::Analyse { done, total });
            let (levels, allocation) =
                sparsewire_se::levels(&jobs, sopts, input_bytes, &mut budget, &mut analyse)?;
            (jobs, levels, allocation)
        }
        None => (vec![], vec![], None),
    };
    let encode = &opts.encode;
    let (out, header, summaries) =
        write_stream(out, tensors, metadata, &jobs, &levels, encode, progress)?;
    let mut entries = Vec::with_capacity(header.tensors.len());
    let mut next_job = jobs.iter().peekable();
    for (i, (meta, summary)) in header.tensors.iter().zip(&summaries).enumerate() {
        let job = next_job.next_if(|j| j.index == i);
        entries.push(CompressedTensor {
            stream: tensor_report(meta)?,
            sparsify: job
                .zip(summary.as_ref())
                .map(|(j, s)| sparsewire_se::report::tensor(j, s, meta)),
        });
    }
    let output_bytes = sparsewire_stream::stream_bytes(&header)?;
    let report = CompressReport {
        input: PathBuf::from("-"),
        output: PathBuf::from("-"),
        input_bytes,
        output_bytes,
        ratio: ratio(output_bytes, input_bytes),
        seconds: t0.elapsed().as_secs_f64(),
        tensors: entries,
        allocation,
    };
    Ok((out, report))
}

/// Compresses tensors held in memory: the stream's bytes and the report.
pub fn compress(
    file: &TensorFile,
    opts: &CompressOptions,
) -> Result<(Vec<u8>, CompressReport), PipelineError> {
    let mut out = Vec::new();
    let report = compress_into(file, opts, &mut out)?;
    Ok((out, report))
}

/// [`compress`] into `out` (cleared first), reusing its allocation: what a sender that
/// compresses at send time, again and again, calls. `out` is sized for the tensors' bytes
/// before the stream is written, so it is not regrown (and copied) as the stream grows:
/// the regrowing was a sixth of a 50% fast-profile encode of MiniLM. On an error `out` is
/// left empty.
pub fn compress_into(
    file: &TensorFile,
    opts: &CompressOptions,
    out: &mut Vec<u8>,
) -> Result<CompressReport, PipelineError> {
    let tensors: Vec<TensorRef> = file.tensors.iter().map(|t| t.as_ref()).collect();
    let mut buf = std::mem::take(out);
    buf.clear();
    // A sparsified stream is at most about as large as a lossless one.
    buf.reserve(sparsewire_stream::out_capacity(file));
    let (buf, report) = compress_to(buf, &tensors, &file.metadata, opts, &mut |_| {})?;
    *out = buf;
    Ok(report)
}

/// Compresses `input` (.safetensors or .npy) into `output` (see the module docs).
pub fn compress_file(
    input: &Path,
    output: &Path,
    opts: &CompressOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<CompressReport, PipelineError> {
    let t0 = Instant::now();
    check_output(Some(input), output, opts.force)?;
    let file = InputFile::open(input).map_err(PipelineError::input(input))?;
    let out = Output::create(output, opts.force)?;
    let (out, report) = compress_to(out, &file.tensors(), file.metadata(), opts, progress)
        .map_err(|e| match e {
            // The stream writer reads tensors from the input as it goes.
            PipelineError::StreamBytes(sparsewire_stream::StreamError::Read { what, source }) => {
                PipelineError::Input {
                    path: input.to_path_buf(),
                    source: Box::new(
                        std::io::Error::new(source.kind(), format!("{what}: {source}")).into(),
                    ),
                }
            }
            PipelineError::StreamBytes(sparsewire_stream::StreamError::Write(source)) => {
                PipelineError::Write {
                    path: output.to_path_buf(),
                    source: Box::new(source.into()),
                }
            }
            e => e,
        })?;
    out.commit()?;
    Ok(CompressReport {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        seconds: t0.elapsed().as_secs_f64(),
        ..report
    })
}
