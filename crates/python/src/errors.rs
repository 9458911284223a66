//! Rust errors as Python exceptions. The classes live in `sparsewire/_errors.py` (so that
//! they can also derive from `ValueError` or `OSError`); each error is sorted into one of
//! them by its family, and keeps the Rust error's message.
//!
//! | class | raised for |
//! |---|---|
//! | `InvalidInput` (`ValueError`) | bad arguments, dtypes, shapes, names, option values |
//! | `CorruptStream` | a stream that is truncated, damaged or not a stream |
//! | `UnsupportedVersion` | a stream of another format version (both versions named) |
//! | `LimitExceeded` | a decode over the output or memory limit |
//! | `FileError` (`OSError`) | reading or writing a file failed, or the path is refused |
//! | `SparsifyError` (`ValueError`) | the sparsification engine refused the tensors |

use pyo3::prelude::*;
use pyo3::types::PyType;
use sparsewire_formats::FormatError;
use sparsewire_pipeline::PipelineError;
use sparsewire_stream::StreamError;

/// Whether the error came from writing a stream (then malformed tensors are the caller's
/// input) or from reading one (then malformed bytes are a corrupt stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Encode,
    Decode,
}

fn stream_class(e: &StreamError, fam: Family) -> &'static str {
    match e {
        StreamError::UnsupportedVersion { .. } => "UnsupportedVersion",
        StreamError::OutputLimit { .. } | StreamError::MemoryLimit { .. } => "LimitExceeded",
        StreamError::Read { .. } | StreamError::Write(_) | StreamError::Output(_) => "FileError",
        StreamError::Format(FormatError::Io(_)) => "FileError",
        StreamError::NoSuchTensor { .. } => "InvalidInput",
        _ if fam == Family::Encode => "InvalidInput",
        _ => "CorruptStream",
    }
}

fn class(e: &PipelineError, fam: Family) -> &'static str {
    match e {
        PipelineError::Input { source, .. } => match **source {
            FormatError::Io(_) => "FileError",
            _ => "InvalidInput",
        },
        PipelineError::Stream { source, .. } => stream_class(source, fam),
        PipelineError::StreamBytes(s) => stream_class(s, fam),
        PipelineError::Output(_) | PipelineError::Write { .. } => "FileError",
        PipelineError::Sparsify(_) => "SparsifyError",
        PipelineError::Rebuild { .. } => "CorruptStream",
        PipelineError::Folder { .. } | PipelineError::DirBudget { .. } => "InvalidInput",
        PipelineError::Rows { .. }
        | PipelineError::Activation(_)
        | PipelineError::ActivationDtype { .. } => "InvalidInput",
        _ => "SparsewireError",
    }
}

/// `name(message)` from `sparsewire._errors`.
fn make(name: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let cls = py
            .import("sparsewire._errors")
            .and_then(|m| m.getattr(name))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match cls {
            Ok(cls) => PyErr::from_type(cls, message),
            // The package is broken (the native module imported alone): still an error.
            Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
        }
    })
}

/// The Python exception for `e`.
pub fn raise(fam: Family, e: PipelineError) -> PyErr {
    make(class(&e, fam), e.to_string())
}

/// An `InvalidInput` with `message`.
pub fn invalid(message: impl Into<String>) -> PyErr {
    make("InvalidInput", message.into())
}
