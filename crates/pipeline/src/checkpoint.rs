//! Model folders as users have them (the Hugging Face layout): `config.json` and friends
//! beside `model.safetensors`, or shards listed in `model.safetensors.index.json`.
//!
//! [`compress_dir`] writes one `.swire` stream per shard (`NAME.safetensors` ->
//! `NAME.swire`, through [`crate::compress_file`]), an index mapping each tensor to its
//! stream ([`SWIRE_INDEX`]), and copies every other file (the Hugging Face index
//! included, verbatim; sub-folders too). [`decompress_dir`] undoes it: the same layout
//! back, each tensor bit for bit. Both write the output folder under a temporary name and
//! rename it into place at the end ([`OutputDir`]), so it appears complete or not at all.
//! PyTorch pickles (`.bin`, `.pt`, ...) are refused, never unpickled.
//!
//! A shard name from an index must be a plain file name in the folder (no path
//! separators, no `..`): an index cannot make the tool read or write elsewhere.

use crate::{
    compress_file, decompress_file, CompressOptions, CompressReport, DecompressOptions,
    DecompressReport, PipelineError,
};
use serde::{Deserialize, Serialize};
use sparsewire_formats::output::OutputDir;
use sparsewire_formats::FormatError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The Hugging Face shard index.
pub const HF_INDEX: &str = "model.safetensors.index.json";
/// sparsewire's shard index, written beside the streams.
pub const SWIRE_INDEX: &str = "model.swire.index.json";
/// Extensions of PyTorch pickles, which are refused.
const PICKLES: [&str; 5] = ["bin", "pt", "pth", "ckpt", "pkl"];
/// Largest index file read (an index of a few thousand tensors is ~100 KB).
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// sparsewire's shard index ([`SWIRE_INDEX`]): each tensor's stream, and the Hugging Face
/// index's metadata when there was one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwireIndex {
    pub format: String,
    pub format_version: u32,
    #[serde(default)]
    pub metadata: serde_json::Value,
    pub weight_map: BTreeMap<String, String>,
}

/// What [`compress_dir`] or [`decompress_dir`] did: each shard's own report, and the
/// files copied as they were.
#[derive(Debug, Clone, Serialize)]
pub struct DirReport<R> {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Tensor bytes in, stream bytes out (compress), or the reverse (decompress).
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub ratio: f64,
    pub seconds: f64,
    pub shards: Vec<R>,
    /// Other files copied unchanged (relative paths).
    pub copied: Vec<PathBuf>,
}

impl<R> DirReport<R> {
    /// Totals over `shards` (`bytes` gives a shard's input and output bytes); the ratio
    /// is stream over tensor bytes, the output's when `compressing`, else the input's.
    fn new(
        (input, output): (&Path, &Path),
        t0: Instant,
        shards: Vec<R>,
        copied: Vec<PathBuf>,
        bytes: impl Fn(&R) -> (u64, u64),
        compressing: bool,
    ) -> DirReport<R> {
        let (input_bytes, output_bytes) = shards
            .iter()
            .map(bytes)
            .fold((0, 0), |(a, b), (i, o)| (a + i, b + o));
        let (stream, tensors) = if compressing {
            (output_bytes, input_bytes)
        } else {
            (input_bytes, output_bytes)
        };
        DirReport {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            input_bytes,
            output_bytes,
            ratio: sparsewire_stream::report::ratio(stream, tensors),
            seconds: t0.elapsed().as_secs_f64(),
            shards,
            copied,
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> PipelineError {
    PipelineError::Folder {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |e| PipelineError::Input {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

/// A shard name from an index: a plain file name in the folder, which exists.
fn shard_name(dir: &Path, index: &Path, name: &str) -> Result<String, PipelineError> {
    let plain =
        !name.is_empty() && !name.contains(['/', '\\', '\0']) && name != "." && name != "..";
    if !plain {
        return Err(bad(
            index,
            format!("shard {name:?} is not a file name in the model folder"),
        ));
    }
    if !dir.join(name).is_file() {
        return Err(bad(
            index,
            format!("lists shard {name:?}, which is not there"),
        ));
    }
    Ok(name.to_string())
}

fn read_index(path: &Path) -> Result<serde_json::Value, PipelineError> {
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    if len > MAX_INDEX_BYTES {
        return Err(bad(
            path,
            format!("index is {len} bytes, over the cap of {MAX_INDEX_BYTES}"),
        ));
    }
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|e| bad(path, format!("not JSON: {e}")))
}

/// The top-level files of `dir` with extension `ext`, sorted.
fn files_with(dir: &Path, ext: &str) -> Result<Vec<String>, PipelineError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_ext = Path::new(name)
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case(ext));
        if is_ext && e.path().is_file() && !name.starts_with(".sparsewire-") {
            v.push(name.to_string());
        }
    }
    v.sort();
    Ok(v)
}

/// Refuses a folder whose weights are only PyTorch pickles, saying what to do.
fn no_weights(dir: &Path, want: &str) -> PipelineError {
    for ext in PICKLES {
        if files_with(dir, ext).is_ok_and(|v| !v.is_empty()) {
            return PipelineError::Input {
                path: dir.to_path_buf(),
                source: Box::new(FormatError::Pickle {
                    ext: ext.to_string(),
                }),
            };
        }
    }
    bad(dir, format!("no model found: expected {want}"))
}

/// The safetensors shards of a model folder: those its [`HF_INDEX`] lists, else its
/// top-level `*.safetensors` files.
pub fn safetensors_shards(dir: &Path) -> Result<Vec<String>, PipelineError> {
    let index = dir.join(HF_INDEX);
    if index.is_file() {
        let v = read_index(&index)?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad(&index, "has no \"weight_map\" object"))?;
        let mut shards: Vec<String> = Vec::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(&index, format!("tensor {tensor:?}: shard is not a string")))?;
            if !shards.iter().any(|s| s == file) {
                shards.push(shard_name(dir, &index, file)?);
            }
        }
        shards.sort();
        return Ok(shards);
    }
    let v = files_with(dir, "safetensors")?;
    if v.is_empty() {
        return Err(no_weights(
            dir,
            "model.safetensors, other *.safetensors shards, or model.safetensors.index.json",
        ));
    }
    Ok(v)
}

/// The streams of a compressed model folder: those its [`SWIRE_INDEX`] lists, else its
/// top-level `*.swire` files; with the index, when there is one.
pub fn swire_shards(dir: &Path) -> Result<(Vec<String>, Option<SwireIndex>), PipelineError> {
    let index_path = dir.join(SWIRE_INDEX);
    if index_path.is_file() {
        let index: SwireIndex = serde_json::from_value(read_index(&index_path)?)
            .map_err(|e| bad(&index_path, format!("not a sparsewire index: {e}")))?;
        let mut shards: Vec<String> = Vec::new();
        for file in index.weight_map.values() {
            if !shards.contains(file) {
                shards.push(shard_name(dir, &index_path, file)?);
            }
        }
        shards.sort();
        return Ok((shards, Some(index)));
    }
    let v = files_with(dir, "swire")?;
    if v.is_empty() {
        if files_with(dir, "safetensors").is_ok_and(|s| !s.is_empty()) {
            return Err(bad(
                dir,
                "holds .safetensors, not .swire streams: compress it first (sparsewire compress DIR)",
            ));
        }
        return Err(no_weights(dir, "*.swire streams or model.swire.index.json"));
    }
    Ok((v, None))
}

/// The model folder `path` names: the folder itself, or the folder of a shard index file
/// (`*.safetensors.index.json`, [`SWIRE_INDEX`]); `None` for anything else.
pub fn model_dir(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        return Some(path.to_path_buf());
    }
    let name = path.file_name()?.to_str()?;
    let index = name.ends_with(".safetensors.index.json") || name == SWIRE_INDEX;
    if index && path.is_file() {
        return Some(match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        });
    }
    None
}

/// `NAME.from` -> `NAME.to`.
fn renamed(name: &str, to: &str) -> String {
    let stem = Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name);
    format!("{stem}.{to}")
}

/// Copies every file under `from` except the top-level names in `skip` into `to`,
/// keeping sub-folders; returns the relative paths copied. Symbolic links are followed
/// (a Hugging Face cache links to its blobs).
fn copy_others(from: &Path, to: &Path, skip: &[String]) -> Result<Vec<PathBuf>, PipelineError> {
    let mut copied = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = from.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .collect::<Result<_, _>>()
            .map_err(io(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let r = rel.join(&name);
            let top = rel.as_os_str().is_empty();
            let name_str = name.to_string_lossy();
            if top && (skip.iter().any(|s| *s == name_str) || name_str.starts_with(".sparsewire-"))
            {
                continue;
            }
            let src = from.join(&r);
            let dst = to.join(&r);
            if src.is_dir() {
                std::fs::create_dir(&dst).map_err(|e| PipelineError::Write {
                    path: dst.clone(),
                    source: Box::new(e.into()),
                })?;
                stack.push(r);
            } else if src.is_file() {
                std::fs::copy(&src, &dst).map_err(|e| PipelineError::Write {
                    path: dst.clone(),
                    source: Box::new(e.into()),
                })?;
                copied.push(r);
            }
            // Sockets, devices, dangling links: not model files; left out.
        }
    }
    copied.sort();
    Ok(copied)
}

/// Refuses an output folder that is the input or inside it.
fn check_dirs(input: &Path, output: &Path) -> Result<(), PipelineError> {
    let inp = input.canonicalize().map_err(io(input))?;
    let out_parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let (Ok(p), Some(name)) = (out_parent.canonicalize(), output.file_name()) {
        let out = p.join(name);
        if out == inp || out.starts_with(&inp) {
            return Err(PipelineError::Output(
                sparsewire_formats::output::OutputError::IsInput {
                    path: output.to_path_buf(),
                },
            ));
        }
    }
    Ok(())
}

/// Compresses the model folder `input` into the folder `output` (see the module docs).
/// `progress(shard, shards, report)` is called after each shard.
pub fn compress_dir(
    input: &Path,
    output: &Path,
    opts: &CompressOptions,
    progress: &mut dyn FnMut(usize, usize, &CompressReport),
) -> Result<DirReport<CompressReport>, PipelineError> {
    let t0 = Instant::now();
    if let Some(sparsewire_se::SparsifyOptions {
        budget: sparsewire_se::Budget::TargetBytes(_),
        ..
    }) = &opts.sparsify
    {
        return Err(PipelineError::DirBudget {
            path: input.to_path_buf(),
        });
    }
    check_dirs(input, output)?;
    let shards = safetensors_shards(input)?;
    let hf_index = input.join(HF_INDEX);
    let metadata = if hf_index.is_file() {
        read_index(&hf_index)?
            .get("metadata")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::Null
    };
    let out = OutputDir::create(output, opts.force)?;
    let shard_opts = CompressOptions {
        force: false,
        ..opts.clone()
    };
    let mut reports = Vec::with_capacity(shards.len());
    let mut weight_map = BTreeMap::new();
    for (i, s) in shards.iter().enumerate() {
        let name = renamed(s, "swire");
        let r = compress_file(
            &input.join(s),
            &out.staging().join(&name),
            &shard_opts,
            &mut |_| {},
        )?;
        for t in &r.tensors {
            if let Some(prev) = weight_map.insert(t.stream.name.clone(), name.clone()) {
                return Err(bad(
                    input,
                    format!("tensor {:?} is in both {prev} and {name}", t.stream.name),
                ));
            }
        }
        progress(i + 1, shards.len(), &r);
        reports.push(CompressReport {
            input: PathBuf::from(s),
            output: PathBuf::from(&name),
            ..r
        });
    }
    let index = SwireIndex {
        format: "sparsewire".into(),
        format_version: sparsewire_stream::FORMAT_VERSION,
        metadata,
        weight_map,
    };
    let index_path = out.staging().join(SWIRE_INDEX);
    let json = serde_json::to_vec_pretty(&index).expect("an index serialises");
    sparsewire_formats::output::write_file(&index_path, &json, false)?;
    let copied = copy_others(input, out.staging(), &shards)?;
    out.commit()?;
    let bytes = |r: &CompressReport| (r.input_bytes, r.output_bytes);
    Ok(DirReport::new(
        (input, output),
        t0,
        reports,
        copied,
        bytes,
        true,
    ))
}

/// Decompresses the folder `input` (written by [`compress_dir`], or any folder of
/// `.swire` streams) into the model folder `output`: `NAME.swire` -> `NAME.safetensors`,
/// the other files copied (sparsewire's index left out).
pub fn decompress_dir(
    input: &Path,
    output: &Path,
    opts: &DecompressOptions,
    progress: &mut dyn FnMut(usize, usize, &DecompressReport),
) -> Result<DirReport<DecompressReport>, PipelineError> {
    let t0 = Instant::now();
    check_dirs(input, output)?;
    let (shards, _) = swire_shards(input)?;
    let out = OutputDir::create(output, opts.force)?;
    let shard_opts = DecompressOptions {
        force: false,
        ..*opts
    };
    let mut reports = Vec::with_capacity(shards.len());
    for (i, s) in shards.iter().enumerate() {
        let name = renamed(s, "safetensors");
        let r = decompress_file(
            &input.join(s),
            &out.staging().join(&name),
            &shard_opts,
            &mut |_, _| {},
        )?;
        progress(i + 1, shards.len(), &r);
        reports.push(DecompressReport {
            input: PathBuf::from(s),
            output: PathBuf::from(&name),
            ..r
        });
    }
    let mut skip = shards.clone();
    skip.push(SWIRE_INDEX.to_string());
    let copied = copy_others(input, out.staging(), &skip)?;
    out.commit()?;
    let bytes = |r: &DecompressReport| (r.input_bytes, r.output_bytes);
    Ok(DirReport::new(
        (input, output),
        t0,
        reports,
        copied,
        bytes,
        false,
    ))
}
