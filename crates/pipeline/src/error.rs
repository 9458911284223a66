use sparsewire_accel::exec::ExecError;
use sparsewire_accel::sim::SimError;
use sparsewire_formats::output::OutputError;
use sparsewire_formats::FormatError;
use sparsewire_re::RebuildError;
use sparsewire_se::SparsifyError;
use sparsewire_stream::StreamError;
use std::path::PathBuf;

/// Errors of the pipeline: each stage's own, with the file they concern. The per-file
/// sources are boxed so that `Result<_, PipelineError>` stays small on the happy path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("{path}: {source}")]
    Input {
        path: PathBuf,
        source: Box<FormatError>,
    },
    #[error("{path}: {source}")]
    Stream {
        path: PathBuf,
        source: Box<StreamError>,
    },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{path}: writing: {source}")]
    Write {
        path: PathBuf,
        source: Box<FormatError>,
    },
    #[error(transparent)]
    Sparsify(#[from] SparsifyError),
    #[error("tensor {tensor:?}: rebuilding: {source}")]
    Rebuild {
        tensor: String,
        source: RebuildError,
    },
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("accelerator model: {0}")]
    Model(#[from] SimError),
    #[error("{path}: .npy holds one array, the stream has {count} tensors")]
    NpyNeedsOneTensor { path: PathBuf, count: usize },
    #[error("{path}: a sparse layout ({layout}) goes to .safetensors, not .npy")]
    LayoutNeedsSafetensors {
        path: PathBuf,
        layout: sparsewire_sparse::LayoutKind,
    },
    #[error("tensor {tensor:?} has {rows} rows: rows {start}..{end} are not a range of them")]
    Rows {
        tensor: String,
        start: u64,
        end: u64,
        rows: u64,
    },
    #[error("{path}: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error("{path}: --target-bytes is a budget for one stream; for a model folder give --target-ratio (each shard gets it)")]
    DirBudget { path: PathBuf },
    #[error("activations: {0}")]
    Activation(#[from] sparsewire_se::activations::ActivationError),
    #[error("activations are sent as F32, F16 or BF16, not {dtype}")]
    ActivationDtype { dtype: sparsewire_formats::Dtype },
    #[error("stream: {0}")]
    StreamBytes(#[from] StreamError),
}

impl PipelineError {
    pub(crate) fn input(path: &std::path::Path) -> impl FnOnce(FormatError) -> PipelineError + '_ {
        move |source| PipelineError::Input {
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    }

    pub(crate) fn stream(path: &std::path::Path) -> impl FnOnce(StreamError) -> PipelineError + '_ {
        move |source| PipelineError::Stream {
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    }

    /// A decode error about `input`, except a failed write of the decoded values, which is
    /// about `output`.
    pub(crate) fn decode<'a>(
        input: &'a std::path::Path,
        output: &'a std::path::Path,
    ) -> impl Fn(StreamError) -> PipelineError + 'a {
        move |source| match source {
            StreamError::Output(e) => PipelineError::Write {
                path: output.to_path_buf(),
                source: Box::new(e.into()),
            },
            source => PipelineError::Stream {
                path: input.to_path_buf(),
                source: Box::new(source),
            },
        }
    }

    pub(crate) fn write(path: &std::path::Path) -> impl FnOnce(FormatError) -> PipelineError + '_ {
        move |source| PipelineError::Write {
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    }
}
