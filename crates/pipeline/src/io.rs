//! Files in and out: format by extension (or magic), atomic writes.

use crate::PipelineError;
use sparsewire_formats::npy::{read_npy, write_npy};
use sparsewire_formats::{read_safetensors, write_safetensors, TensorFile};
use std::io::Write;
use std::path::Path;

fn ext(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

pub(crate) fn map_file(path: &Path) -> Result<memmap2::Mmap, PipelineError> {
    let f = std::fs::File::open(path).map_err(PipelineError::io(path))?;
    read_only_map(&f).map_err(PipelineError::io(path))
}

#[allow(unsafe_code)]
fn read_only_map(f: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: memmap2's `map` is unsafe because another process may change the file while
    // it is mapped. The map is read-only and every tile is checksummed before it is
    // decoded; a file truncated underneath can still raise SIGBUS, as with any mmap reader.
    unsafe { memmap2::Mmap::map(f) }
}

/// Reads a `.safetensors` or `.npy` file (an `.npy` array is named after the file stem).
pub fn read_tensors(path: &Path) -> Result<TensorFile, PipelineError> {
    let bytes = std::fs::read(path).map_err(PipelineError::io(path))?;
    let fmt = |source| PipelineError::Format {
        path: path.to_path_buf(),
        source,
    };
    if ext(path) == "npy" || bytes.starts_with(b"\x93NUMPY") {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("array")
            .to_string();
        let t = read_npy(&bytes, &name).map_err(fmt)?;
        return Ok(TensorFile {
            tensors: vec![t],
            metadata: vec![],
        });
    }
    if ext(path) == "safetensors" || bytes.len() >= 9 && bytes[8] == b'{' {
        return read_safetensors(&bytes).map_err(fmt);
    }
    Err(PipelineError::UnknownFormat {
        path: path.to_path_buf(),
    })
}

/// Writes tensors: `.npy` for one tensor when the path says so, else safetensors.
pub fn write_tensors(path: &Path, file: &TensorFile, force: bool) -> Result<(), PipelineError> {
    let fmt = |source| PipelineError::Format {
        path: path.to_path_buf(),
        source,
    };
    let bytes = if ext(path) == "npy" {
        match &file.tensors[..] {
            [t] => write_npy(t).map_err(fmt)?,
            _ => {
                return Err(PipelineError::NpyNeedsOneTensor {
                    path: path.to_path_buf(),
                    count: file.tensors.len(),
                })
            }
        }
    } else {
        write_safetensors(file).map_err(fmt)?
    };
    write_atomic(path, &bytes, force)
}

/// Refuses an output that is the input, or that exists when `force` is off.
pub fn check_output(input: &Path, output: &Path, force: bool) -> Result<(), PipelineError> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(PipelineError::OutputIsInput {
                path: output.to_path_buf(),
            });
        }
    }
    if !force && output.exists() {
        return Err(PipelineError::OutputExists {
            path: output.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so a
/// failed or interrupted write leaves no partial file. Without `force`, an existing
/// `path` is never replaced (checked again at the rename).
pub fn write_atomic(path: &Path, bytes: &[u8], force: bool) -> Result<(), PipelineError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".sparsewire-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(PipelineError::io(dir))?;
    tmp.write_all(bytes).map_err(PipelineError::io(path))?;
    tmp.as_file().sync_all().map_err(PipelineError::io(path))?;
    let res = if force {
        tmp.persist(path).map(|_| ())
    } else {
        tmp.persist_noclobber(path).map(|_| ())
    };
    res.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            PipelineError::OutputExists {
                path: path.to_path_buf(),
            }
        } else {
            PipelineError::Io {
                path: path.to_path_buf(),
                source: e.error,
            }
        }
    })
}
