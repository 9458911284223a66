//! `sparsewire._native`: the Rust side of the Python package, kept to argument checking
//! and conversion. Every algorithm is in the workspace's crates: `pipeline` compresses and
//! decodes (`read_tensor`, `read_rows`, `encode_activations`), `stream` gives random
//! access and the inspect report, `formats` the sparse layouts' arrays.
//!
//! Tensors cross the boundary as `(name, dtype, shape, uint8 array)`: the Python layer
//! (`python/sparsewire/`) views a contiguous array's bytes as a flat `uint8` array without
//! a copy, and turns what comes back into the caller's dtype and shape the same way.
//! Decoded tensors are handed to numpy as the `Vec` they were decoded into
//! (`PyArray::from_vec`: no second copy). Compress and decompress run with the interpreter
//! released ([`Python::detach`]), so other Python threads go on meanwhile.
//!
//! Errors are raised as the classes of `sparsewire._errors` (`errors.rs`): one base class,
//! one subclass per family, each message the Rust error's.

mod errors;

use errors::{invalid, raise, Family};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sparsewire_formats::output::Output;
use sparsewire_formats::{Dtype, TensorBytes, TensorRef};
use sparsewire_metadata::{Criterion, Pattern, Reconstruction};
use sparsewire_pipeline::{CompressOptions, PipelineError};
use sparsewire_se::activations::ActivationPolicy;
use sparsewire_se::{Budget, NonFinite, SparsifyOptions};
use sparsewire_sparse::LayoutKind;
use sparsewire_stream::{EncodeOptions, FileSource, Profile, Reader, Source};
use std::borrow::Cow;
use std::path::PathBuf;

/// A tensor as Python hands it over: name, dtype name, shape, its bytes as flat `uint8`.
type InTensor<'py> = (String, String, Vec<u64>, PyReadonlyArray1<'py, u8>);
/// A tensor as Python gets it back.
type OutTensor<'py> = (String, String, Vec<u64>, Bound<'py, PyArray1<u8>>);

/// A slice lent to the stream writer (the writer reads a tile's range at a time).
struct Lent<'a>(&'a [u8]);

impl TensorBytes for Lent<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Cow<'_, [u8]>> {
        self.0.read(offset, len)
    }
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| invalid(format!("{what}={s:?}: {e}")))
}

/// The dtype a name gives (safetensors names, any case).
fn dtype(s: &str) -> PyResult<Dtype> {
    parse("dtype", s)
}

/// The option names `save` and `compress_dir` take.
const OPTIONS: [&str; 8] = [
    "sparsity",
    "criterion",
    "pattern",
    "reconstruct",
    "profile",
    "nonfinite",
    "target_ratio",
    "max_error",
];

/// The codec and sparsification options of `save` and `compress_dir` from their keyword
/// dict (a `None` value is the default), checked as the CLI checks them; an unknown key is
/// an `InvalidInput` (a typo must not silently give a lossless file).
fn compress_options(d: Option<&Bound<'_, PyDict>>) -> PyResult<CompressOptions> {
    let mut got: std::collections::HashMap<String, Bound<'_, PyAny>> = Default::default();
    if let Some(d) = d {
        for (k, v) in d.iter() {
            let k: String = k.extract()?;
            if !OPTIONS.contains(&k.as_str()) {
                return Err(invalid(format!(
                    "unknown option {k:?} (the options are {})",
                    OPTIONS.join(", ")
                )));
            }
            if !v.is_none() {
                got.insert(k, v);
            }
        }
    }
    fn get<'py, T: FromPyObjectOwned<'py>>(
        got: &std::collections::HashMap<String, Bound<'py, PyAny>>,
        k: &str,
    ) -> PyResult<Option<T>> {
        got.get(k)
            .map(|v| {
                v.extract::<T>()
                    .map_err(|_| invalid(format!("{k}={v}: wrong type")))
            })
            .transpose()
    }
    let sparsity: Option<f32> = get(&got, "sparsity")?;
    let criterion: Option<String> = get(&got, "criterion")?;
    let pattern: Option<String> = get(&got, "pattern")?;
    let reconstruct: Option<String> = get(&got, "reconstruct")?;
    let profile: Option<String> = get(&got, "profile")?;
    let nonfinite: Option<String> = get(&got, "nonfinite")?;
    let target_ratio: Option<f64> = get(&got, "target_ratio")?;
    let max_error: Option<f64> = get(&got, "max_error")?;
    let (criterion, pattern, reconstruct, profile, nonfinite) = (
        criterion.as_deref(),
        pattern.as_deref(),
        reconstruct.as_deref(),
        profile.as_deref(),
        nonfinite.as_deref(),
    );
    let mut encode = EncodeOptions::default();
    if let Some(p) = profile {
        encode.profile = parse::<Profile>("profile", p)?;
    }
    if let Some(s) = sparsity {
        if !(0.0..1.0).contains(&s) {
            return Err(invalid(format!("sparsity={s}: must be in [0, 1)")));
        }
    }
    if let Some(r) = target_ratio {
        if !(r > 0.0 && r <= 1.0) {
            return Err(invalid(format!("target_ratio={r}: must be in (0, 1]")));
        }
    }
    if let Some(e) = max_error {
        if !(e > 0.0 && e.is_finite()) {
            return Err(invalid(format!("max_error={e}: must be a number > 0")));
        }
    }
    let given = [
        sparsity.is_some(),
        target_ratio.is_some(),
        max_error.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(invalid(
            "give one of sparsity, target_ratio and max_error, not several",
        ));
    }
    let pattern_v = pattern
        .map(|p| parse::<Pattern>("pattern", p))
        .transpose()?;
    let budget = match (sparsity, target_ratio, max_error, pattern_v) {
        (_, Some(r), _, _) => Some(Budget::TargetRatio(r)),
        (_, _, Some(e), _) => Some(Budget::MaxError(e)),
        (Some(s), _, _, _) if s > 0.0 => Some(Budget::Sparsity(s)),
        (_, _, _, Some(Pattern::NM { .. })) => Some(Budget::Sparsity(0.0)),
        _ => None,
    };
    let Some(budget) = budget else {
        let lossy = [
            ("criterion", criterion.is_some()),
            ("pattern", pattern.is_some()),
            ("reconstruct", reconstruct.is_some()),
            ("nonfinite", nonfinite.is_some()),
        ];
        if let Some((name, _)) = lossy.iter().find(|(_, g)| *g) {
            return Err(invalid(format!(
                "{name} only applies when sparsifying: give sparsity > 0, an N:M pattern, target_ratio or max_error (without one the stream is lossless)"
            )));
        }
        return Ok(CompressOptions {
            encode,
            ..CompressOptions::default()
        });
    };
    let mut s = SparsifyOptions::new(budget);
    if let Some(c) = criterion {
        s.criterion = parse::<Criterion>("criterion", c)?;
    }
    if let Some(p) = pattern_v {
        s.pattern = p;
    }
    if let Some(r) = reconstruct {
        s.rebuild = parse("reconstruct", r)?;
    }
    if let Some(n) = nonfinite {
        s.nonfinite = parse::<NonFinite>("nonfinite", n)?;
    }
    Ok(CompressOptions {
        encode,
        sparsify: Some(s),
        force: true,
    })
}

/// Compresses `tensors` into a `.swire` stream: returned as `bytes`, or written to `path`
/// atomically (an existing file is replaced only once the new one is complete; a device
/// or a directory is refused).
#[pyfunction]
#[pyo3(signature = (tensors, metadata=None, path=None, options=None, calibration=None))]
fn save<'py>(
    py: Python<'py>,
    tensors: Vec<InTensor<'py>>,
    metadata: Option<Vec<(String, String)>>,
    path: Option<PathBuf>,
    options: Option<&Bound<'py, PyDict>>,
    calibration: Option<Vec<InTensor<'py>>>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let mut opts = compress_options(options)?;
    if let Some(cal) = calibration {
        let Some(s) = opts.sparsify.as_mut() else {
            return Err(invalid(
                "calibration only applies when sparsifying (give sparsity, an N:M pattern, target_ratio or max_error)",
            ));
        };
        let mut file = sparsewire_formats::TensorFile::default();
        for (name, d, shape, data) in &cal {
            let bytes = data
                .as_slice()
                .map_err(|e| invalid(format!("calibration {name:?}: {e}")))?;
            let t = sparsewire_formats::Tensor::new(
                name.clone(),
                dtype(d)?,
                shape.clone(),
                bytes.to_vec(),
            )
            .map_err(|e| invalid(format!("calibration: {e}")))?;
            file.tensors.push(t);
        }
        s.calibration = Some(file);
    }
    let metadata = metadata.unwrap_or_default();
    let mut parts = Vec::with_capacity(tensors.len());
    for (name, d, shape, data) in &tensors {
        let d = dtype(d)?;
        let bytes = data
            .as_slice()
            .map_err(|e| invalid(format!("tensor {name:?}: {e}")))?;
        let need =
            sparsewire_formats::byte_len(name, d, shape).map_err(|e| invalid(e.to_string()))?;
        if need != bytes.len() as u64 {
            return Err(invalid(format!(
                "tensor {name:?}: {d} {shape:?} is {need} bytes, {} given",
                bytes.len()
            )));
        }
        parts.push((name.as_str(), d, shape.as_slice(), Lent(bytes)));
    }
    let refs: Vec<TensorRef> = parts
        .iter()
        .map(|(name, d, shape, bytes)| TensorRef {
            name,
            dtype: *d,
            shape,
            bytes,
        })
        .collect();
    let fam = Family::Encode;
    match path {
        None => {
            let stream = py
                .detach(|| {
                    sparsewire_pipeline::compress_to(
                        Vec::new(),
                        &refs,
                        &metadata,
                        &opts,
                        &mut |_| {},
                    )
                })
                .map_err(|e| raise(fam, e))?
                .0;
            Ok(Some(PyBytes::new(py, &stream)))
        }
        Some(path) => {
            py.detach(|| -> Result<(), PipelineError> {
                let out = Output::create(&path, true)?;
                let (out, _) =
                    sparsewire_pipeline::compress_to(out, &refs, &metadata, &opts, &mut |_| {})
                        .map_err(|e| match e {
                            PipelineError::StreamBytes(sparsewire_stream::StreamError::Write(
                                source,
                            )) => PipelineError::Write {
                                path: path.clone(),
                                source: Box::new(source.into()),
                            },
                            e => e,
                        })?;
                out.commit()?;
                Ok(())
            })
            .map_err(|e| raise(fam, e))?;
            Ok(None)
        }
    }
}

/// Where a stream's bytes are: a file read range by range, or bytes copied in once.
enum Src {
    File(FileSource),
    Memory(Vec<u8>),
}

impl Source for Src {
    fn size(&self) -> u64 {
        match self {
            Src::File(f) => Source::size(f),
            Src::Memory(m) => Source::size(m),
        }
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Cow<'_, [u8]>> {
        match self {
            Src::File(f) => f.read_at(offset, len),
            Src::Memory(m) => Source::read_at(m, offset, len),
        }
    }
    fn immutable(&self) -> bool {
        match self {
            Src::File(f) => f.immutable(),
            Src::Memory(m) => Source::immutable(m),
        }
    }
}

/// An open stream: its header is read and checked; tensors are decoded on request, each
/// touching only its own tiles.
#[pyclass(module = "sparsewire._native", frozen)]
struct Stream {
    reader: Reader<Src>,
    path: Option<PathBuf>,
}

impl Stream {
    fn index(&self, name: &str) -> PyResult<usize> {
        self.reader
            .tensor_index(name)
            .map_err(|_| pyo3::exceptions::PyKeyError::new_err(name.to_string()))
    }

    fn err(&self, e: impl Into<PipelineError>) -> PyErr {
        let e = e.into();
        match &self.path {
            Some(p) => raise(
                Family::Decode,
                match e {
                    PipelineError::StreamBytes(s) => PipelineError::Stream {
                        path: p.clone(),
                        source: Box::new(s),
                    },
                    e => e,
                },
            ),
            None => raise(Family::Decode, e),
        }
    }

    fn array<'py>(py: Python<'py>, v: Vec<u8>) -> Bound<'py, PyArray1<u8>> {
        PyArray1::from_vec(py, v)
    }
}

#[pymethods]
impl Stream {
    /// Opens a `.swire` file (read range by range, never mapped or read whole).
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Stream> {
        let src = FileSource::open(&path).map_err(|e| {
            raise(
                Family::Decode,
                PipelineError::Input {
                    path: path.clone(),
                    source: Box::new(e.into()),
                },
            )
        })?;
        let reader = py.detach(|| Reader::new(Src::File(src))).map_err(|e| {
            raise(
                Family::Decode,
                PipelineError::Stream {
                    path: path.clone(),
                    source: Box::new(e),
                },
            )
        })?;
        Ok(Stream {
            reader,
            path: Some(path),
        })
    }

    /// Reads a stream held in memory (its bytes are copied once).
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Stream> {
        let bytes = data.to_vec();
        let reader = py
            .detach(|| Reader::new(Src::Memory(bytes)))
            .map_err(|e| raise(Family::Decode, PipelineError::StreamBytes(e)))?;
        Ok(Stream { reader, path: None })
    }

    /// Tensor names, in stream order.
    fn keys(&self) -> Vec<String> {
        self.reader
            .header()
            .tensors
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    /// The user metadata, in stream order.
    fn metadata(&self) -> Vec<(String, String)> {
        self.reader.header().user_metadata.clone()
    }

    /// `(dtype, shape, sparsified, reconstruction)` of a tensor.
    fn info(&self, name: &str) -> PyResult<(String, Vec<u64>, bool, String)> {
        let m = self
            .reader
            .meta(self.index(name)?)
            .map_err(|e| self.err(e))?;
        Ok((
            m.dtype.name().to_string(),
            m.shape.clone(),
            m.sparsification.is_some(),
            m.reconstruction.method().name().to_string(),
        ))
    }

    /// A tensor decoded and rebuilt, as flat bytes.
    fn get<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let t = self.index(name)?;
        let v = py
            .detach(|| sparsewire_pipeline::read_tensor(&self.reader, t))
            .map_err(|e| self.err(e))?;
        Ok(Self::array(py, v))
    }

    /// Every tensor decoded and rebuilt, in stream order (the output limit is checked
    /// for all of them first).
    fn get_all<'py>(&self, py: Python<'py>) -> PyResult<Vec<OutTensor<'py>>> {
        let decoded = py
            .detach(|| -> Result<Vec<Vec<u8>>, PipelineError> {
                self.reader.check_decoded_len()?;
                (0..self.reader.header().tensors.len())
                    .map(|t| sparsewire_pipeline::read_tensor(&self.reader, t))
                    .collect()
            })
            .map_err(|e| self.err(e))?;
        Ok(self
            .reader
            .header()
            .tensors
            .iter()
            .zip(decoded)
            .map(|(m, v)| {
                (
                    m.name.clone(),
                    m.dtype.name().to_string(),
                    m.shape.clone(),
                    Self::array(py, v),
                )
            })
            .collect())
    }

    /// Rows `start..stop` of a tensor (first dimension), decoding only the tiles they
    /// cross.
    fn get_rows<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        start: u64,
        stop: u64,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let t = self.index(name)?;
        let v = py
            .detach(|| sparsewire_pipeline::read_rows(&self.reader, t, start..stop))
            .map_err(|e| self.err(e))?;
        Ok(Self::array(py, v))
    }

    /// A sparsified, zero-filled tensor's arrays in a sparse layout (`csr`, `csc`, `coo`
    /// or `bitmask`), straight from its stored mask and values.
    #[pyo3(signature = (name, layout, index="i64"))]
    fn get_sparse<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        layout: &str,
        index: &str,
    ) -> PyResult<Vec<OutTensor<'py>>> {
        let t = self.index(name)?;
        let m = self.reader.meta(t).map_err(|e| self.err(e))?;
        if m.sparsification.is_none() {
            return Err(invalid(format!(
                "tensor {name:?} is stored dense (lossless): it has no mask to export; use get_tensor"
            )));
        }
        if m.reconstruction != Reconstruction::Zero {
            return Err(invalid(format!(
                "tensor {name:?} is rebuilt by {} on decode, so its values are not sparse; a sparse layout is for zero-filled tensors",
                m.reconstruction.method().name()
            )));
        }
        let bitmask = layout.eq_ignore_ascii_case("bitmask");
        let kind = if bitmask {
            LayoutKind::Dense
        } else {
            parse::<LayoutKind>("layout", layout)?
        };
        if kind == LayoutKind::Dense && !bitmask {
            return Err(invalid("layout=\"dense\": use get_tensor"));
        }
        let index = parse::<sparsewire_formats::layout::IndexType>("index", index)?;
        let tile = py
            .detach(|| self.reader.tensor_sparse(t))
            .map_err(|e| self.err(e))?
            .ok_or_else(|| invalid(format!("tensor {name:?} has no mask")))?;
        let arrays = if bitmask {
            vec![
                (
                    format!("{name}.mask"),
                    "U8".to_string(),
                    vec![tile.mask().as_bytes().len() as u64],
                    tile.mask().as_bytes().to_vec(),
                ),
                (
                    format!("{name}.values"),
                    m.dtype.name().to_string(),
                    vec![tile.mask().kept() as u64],
                    tile.values().to_vec(),
                ),
            ]
        } else {
            sparsewire_formats::layout::arrays(&m.name, &m.shape, tile.as_ref(), kind, index)
                .map_err(|e| invalid(e.to_string()))?
                .into_iter()
                .map(|a| (a.name, a.dtype.name().to_string(), a.shape, a.data))
                .collect()
        };
        Ok(arrays
            .into_iter()
            .map(|(n, d, s, v)| (n, d, s, Self::array(py, v)))
            .collect())
    }

    /// Bytes read from the file so far (`None` for a stream in memory).
    fn bytes_read(&self) -> Option<u64> {
        match self.reader.source() {
            Src::File(f) => Some(f.bytes_read()),
            Src::Memory(_) => None,
        }
    }

    /// The `sparsewire inspect --json` report, as JSON text.
    #[pyo3(signature = (entropy=false))]
    fn inspect(&self, py: Python<'_>, entropy: bool) -> PyResult<String> {
        let r = py
            .detach(|| sparsewire_stream::report::inspect(&self.reader, entropy))
            .map_err(|e| self.err(e))?;
        serde_json::to_string(&r).map_err(|e| invalid(e.to_string()))
    }

    /// Decodes every tensor and drops the result: the Rust decode alone, for measuring
    /// what the binding adds.
    fn _decode_only(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| -> Result<u64, PipelineError> {
            let mut n = 0;
            for t in 0..self.reader.header().tensors.len() {
                n += sparsewire_pipeline::read_tensor(&self.reader, t)?.len() as u64;
            }
            Ok(n)
        })
        .map_err(|e| self.err(e))
    }
}

/// Sparsifies an `[rows, cols]` f32 activation block (flat) and codes it as a one-tensor
/// stream with the kept values in `dtype`.
#[pyfunction]
#[pyo3(signature = (values, rows, cols, *, keep=None, topk=None, threshold=None, dtype="F32", profile=None))]
#[allow(clippy::too_many_arguments)]
fn sparsify_activations<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, f32>,
    rows: usize,
    cols: usize,
    keep: Option<f32>,
    topk: Option<usize>,
    threshold: Option<f32>,
    dtype: &str,
    profile: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let policy = match (keep, topk, threshold) {
        (Some(k), None, None) => ActivationPolicy::KeepFraction(k),
        (None, Some(k), None) => ActivationPolicy::TopKPerRow(k),
        (None, None, Some(t)) => ActivationPolicy::Threshold(t),
        _ => {
            return Err(invalid(
                "give exactly one of keep (fraction of each row), topk (per row) and threshold",
            ))
        }
    };
    let d = self::dtype(dtype)?;
    let mut opts = EncodeOptions::default();
    if let Some(p) = profile {
        opts.profile = parse::<Profile>("profile", p)?;
    }
    let a = values
        .as_slice()
        .map_err(|e| invalid(format!("activations: {e}")))?;
    let bytes = py
        .detach(|| sparsewire_pipeline::encode_activations(a, rows, cols, policy, d, &opts))
        .map_err(|e| raise(Family::Encode, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Compresses the model folder `input` into the folder `output` (one stream per shard,
/// an index, the other files copied); returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (input, output, force=false, options=None))]
fn compress_dir(
    py: Python<'_>,
    input: PathBuf,
    output: PathBuf,
    force: bool,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let mut opts = compress_options(options)?;
    opts.force = force;
    let dir = sparsewire_pipeline::checkpoint::model_dir(&input).unwrap_or(input);
    let r = py
        .detach(|| {
            sparsewire_pipeline::checkpoint::compress_dir(&dir, &output, &opts, &mut |_, _, _| {})
        })
        .map_err(|e| raise(Family::Encode, e))?;
    serde_json::to_string(&r).map_err(|e| invalid(e.to_string()))
}

/// Decompresses a folder of streams back into the model folder `output`; returns the
/// report as JSON.
#[pyfunction]
#[pyo3(signature = (input, output, *, force=false))]
fn decompress_dir(
    py: Python<'_>,
    input: PathBuf,
    output: PathBuf,
    force: bool,
) -> PyResult<String> {
    let opts = sparsewire_pipeline::DecompressOptions {
        force,
        ..Default::default()
    };
    let dir = sparsewire_pipeline::checkpoint::model_dir(&input).unwrap_or(input);
    let r = py
        .detach(|| {
            sparsewire_pipeline::checkpoint::decompress_dir(&dir, &output, &opts, &mut |_, _, _| {})
        })
        .map_err(|e| raise(Family::Decode, e))?;
    serde_json::to_string(&r).map_err(|e| invalid(e.to_string()))
}

/// A compressed model folder (or its index file): `(folder, shard file names)`, or
/// `None` when `path` is neither.
#[pyfunction]
fn model_shards(path: PathBuf) -> PyResult<Option<(PathBuf, Vec<String>)>> {
    let Some(dir) = sparsewire_pipeline::checkpoint::model_dir(&path) else {
        return Ok(None);
    };
    let (shards, _) = sparsewire_pipeline::checkpoint::swire_shards(&dir)
        .map_err(|e| raise(Family::Decode, e))?;
    Ok(Some((dir, shards)))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Stream>()?;
    m.add_function(wrap_pyfunction!(save, m)?)?;
    m.add_function(wrap_pyfunction!(sparsify_activations, m)?)?;
    m.add_function(wrap_pyfunction!(model_shards, m)?)?;
    m.add_function(wrap_pyfunction!(compress_dir, m)?)?;
    m.add_function(wrap_pyfunction!(decompress_dir, m)?)?;
    m.add("FORMAT_VERSION", sparsewire_stream::FORMAT_VERSION)?;
    m.add(
        "ACTIVATIONS_TENSOR",
        sparsewire_pipeline::ACTIVATIONS_TENSOR,
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
