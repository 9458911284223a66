//! Accelerator side, to a file: a `.swire` stream back to tensors, with what was dropped
//! rebuilt.
//!
//! `stream` reads the stream a range at a time and decodes a row block of tiles ->
//! `re` rebuilds the block's dropped values (a whole tensor for `channels`) -> `formats`
//! writes safetensors (or `.npy`, or a sparse layout's arrays) and commits the output.
//! Memory: a row block of one tensor (a whole tensor for `channels` and for a sparse
//! layout), never the file.

use crate::PipelineError;
use serde::Serialize;
use sparsewire_formats::layout::{self, IndexType, Spec};
use sparsewire_formats::output::{check_output, Output};
use sparsewire_formats::safetensors::{Announce, SafetensorsWriter};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::{view_2d, Reconstruction, TensorMeta};
use sparsewire_sparse::LayoutKind;
use sparsewire_stream::report::tensor_report;
use sparsewire_stream::{DecodeLimits, FileSource, Reader, Source};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to decompress.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecompressOptions {
    pub force: bool,
    pub limits: DecodeLimits,
    /// `Dense` (the tensors as they were), or a sparse layout for sparsified tensors.
    pub layout: Option<LayoutKind>,
    pub index: IndexType,
}

/// One tensor of a decompress report.
#[derive(Debug, Clone, Serialize)]
pub struct DecompressedTensor {
    pub name: String,
    #[serde(serialize_with = "sparsewire_metadata::display::serialize")]
    pub dtype: sparsewire_metadata::Dtype,
    pub shape: Vec<u64>,
    /// Stored bytes in the stream.
    pub input_bytes: u64,
    /// Bytes written for it.
    pub output_bytes: u64,
    /// How it was written: `dense`, `csr`, `csc` or `coo`.
    #[serde(serialize_with = "sparsewire_metadata::display::serialize")]
    pub layout: LayoutKind,
    /// How dropped values were rebuilt (`zero` for a lossless tensor).
    pub reconstruction: sparsewire_metadata::ReconstructionMethod,
}

/// What `decompress` did.
#[derive(Debug, Clone, Serialize)]
pub struct DecompressReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub ratio: f64,
    pub seconds: f64,
    pub tensors: Vec<DecompressedTensor>,
}

/// How tensor `m` is written under `layout`: a sparse layout applies to tensors stored
/// sparse and rebuilt by zero-fill (a rebuilt tensor is no longer sparse: it goes dense).
fn layout_of(m: &TensorMeta, layout: Option<LayoutKind>) -> LayoutKind {
    match layout {
        Some(k) if m.sparsification.is_some() && m.reconstruction == Reconstruction::Zero => k,
        _ => LayoutKind::Dense,
    }
}

/// Decodes `input` into `output` (see the module docs). `progress(done, total)` counts
/// output bytes.
pub fn decompress_file(
    input: &Path,
    output: &Path,
    opts: &DecompressOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<DecompressReport, PipelineError> {
    let t0 = Instant::now();
    check_output(Some(input), output, opts.force)?;
    let src = FileSource::open(input).map_err(|source| PipelineError::Input {
        path: input.to_path_buf(),
        source: Box::new(source.into()),
    })?;
    let reader = Reader::with_limits(src, opts.limits).map_err(PipelineError::stream(input))?;
    let header = reader.header();
    let serr = PipelineError::stream;
    // Refuse a stream that claims more than the limit before writing anything.
    let total = reader.check_decoded_len().map_err(serr(input))?;
    let layouts: Vec<LayoutKind> = header
        .tensors
        .iter()
        .map(|m| layout_of(m, opts.layout))
        .collect();
    let npy = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if npy && header.tensors.len() != 1 {
        return Err(PipelineError::NpyNeedsOneTensor {
            path: output.to_path_buf(),
            count: header.tensors.len(),
        });
    }
    if npy && layouts[0] != LayoutKind::Dense {
        return Err(PipelineError::LayoutNeedsSafetensors {
            path: output.to_path_buf(),
            layout: layouts[0],
        });
    }
    // Every array's name and size, before any data: a sparse layout's nnz from its masks.
    let mut specs: Vec<Vec<Spec>> = Vec::with_capacity(header.tensors.len());
    for (t, (m, &kind)) in header.tensors.iter().zip(&layouts).enumerate() {
        let (rows, cols) = view_2d(&m.shape, m.numel().map_err(|e| serr(input)(e.into()))?);
        let nnz = match kind {
            LayoutKind::Dense => 0,
            _ => reader.kept(t).map_err(serr(input))?,
        };
        let s = layout::specs(
            &m.name, &m.shape, rows, cols, nnz, m.dtype, kind, opts.index,
        );
        specs.push(s);
    }
    let out = Output::create(output, opts.force)?;
    let werr = PipelineError::write;
    let wio = |e: std::io::Error| werr(output)(e.into());
    let mut tensors = Vec::with_capacity(header.tensors.len());
    let (out, written) = if npy {
        let m = &header.tensors[0];
        let mut out = out;
        let head = sparsewire_formats::npy::npy_header(m.dtype, &m.shape).map_err(werr(output))?;
        out.write_all(&head).map_err(wio)?;
        let n = write_dense(&reader, 0, &mut out, (input, output), &mut |_| {})?;
        (out, head.len() as u64 + n)
    } else {
        let ann: Vec<Announce> = specs.iter().flatten().map(Spec::announce).collect();
        let mut metadata = header.user_metadata.clone();
        if let Some(k) = opts.layout.filter(|&k| k != LayoutKind::Dense) {
            metadata.push(("sparsewire.layout".into(), k.to_string()));
        }
        let mut w = SafetensorsWriter::new(out, &ann, &metadata).map_err(werr(output))?;
        for (t, &kind) in layouts.iter().enumerate() {
            let before = w.written();
            let mut tick = |n| progress(before + n, total);
            if kind == LayoutKind::Dense {
                write_dense(&reader, t, &mut w, (input, output), &mut tick)?;
            } else {
                let m = &header.tensors[t];
                let tile = reader.tensor_sparse(t).map_err(serr(input))?;
                let tile = tile.expect("a sparse layout is for sparse tensors");
                for a in layout::arrays(&m.name, &m.shape, tile.as_ref(), kind, opts.index)
                    .map_err(werr(output))?
                {
                    w.write_all(&a.data).map_err(wio)?;
                }
            }
            tensors.push(w.written() - before);
        }
        let n = w.written();
        (w.finish().map_err(werr(output))?, n)
    };
    out.commit()?;
    if npy {
        tensors.push(written);
    }
    let input_bytes = reader.stored_len();
    Ok(DecompressReport {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        input_bytes,
        output_bytes: written,
        ratio: sparsewire_stream::report::ratio(input_bytes, written),
        seconds: t0.elapsed().as_secs_f64(),
        tensors: (header.tensors.iter().zip(tensors).zip(&layouts))
            .map(|((m, n), k)| {
                Ok(DecompressedTensor {
                    name: m.name.clone(),
                    dtype: m.dtype,
                    shape: m.shape.clone(),
                    input_bytes: tensor_report(m)?.output_bytes,
                    output_bytes: n,
                    layout: *k,
                    reconstruction: m.reconstruction.method(),
                })
            })
            .collect::<Result<_, PipelineError>>()?,
    })
}

/// A row block of one tile larger than this is streamed to the output in chunks, not
/// decoded into a buffer (a hostile or careless stream can make one tile of a tensor).
const STREAM_ABOVE: u64 = 16 << 20;

/// Writes tensor `t` decoded and rebuilt, in its dtype, a row block at a time (the whole
/// tensor for `channels`; a large single tile in chunks). Returns the bytes written.
fn write_dense<S: Source + Sync>(
    reader: &Reader<S>,
    t: usize,
    out: &mut dyn Write,
    (input, output): (&Path, &Path),
    progress: &mut dyn FnMut(u64),
) -> Result<u64, PipelineError> {
    let serr = |e| PipelineError::decode(input, output)(e);
    let m = reader.meta(t).map_err(serr)?;
    let grid = reader.grid(t);
    let werr = |e: std::io::Error| PipelineError::Write {
        path: output.to_path_buf(),
        source: Box::new(e.into()),
    };
    if !m.dtype.is_compressible_float() {
        let n = if grid.is_empty() {
            0
        } else {
            reader.write_whole_tile(t, 0, out).map_err(serr)?
        };
        progress(n);
        return Ok(n);
    }
    let elem = (m.dtype.bits() / 8) as usize;
    let cols = grid.cols as usize;
    let rebuild = |v: &mut [u8], mask: Option<sparsewire_sparse::Mask>, whole: bool| {
        let Some(mask) = mask else { return Ok(()) };
        sparsewire_re::rebuild_stored(m.dtype, v, mask.as_ref(), cols, whole, &m.reconstruction)
            .map_err(|source| PipelineError::Rebuild {
                tensor: m.name.clone(),
                source,
            })
    };
    if let Reconstruction::Channels { .. } = m.reconstruction {
        // Rows are rebuilt from other rows: the whole tensor at once.
        let mut data = reader.decode_tensor(t).map_err(serr)?.data;
        let mut mask = sparsewire_sparse::Mask::default();
        for b in 0..grid.row_blocks() {
            if let Some(mb) = reader.rows_mask(t, b).map_err(serr)? {
                mask.extend(mb.as_ref());
            }
        }
        rebuild(&mut data, Some(mask), true)?;
        out.write_all(&data).map_err(werr)?;
        progress(data.len() as u64);
        return Ok(data.len() as u64);
    }
    let mut written = 0u64;
    let mut buf = Vec::new();
    for b in 0..grid.row_blocks() {
        let tiles = grid.row_block(b);
        let rows = grid.rect(tiles.start).rows as usize;
        let bytes = (rows * cols * elem) as u64;
        if tiles.end - tiles.start == 1
            && bytes > STREAM_ABOVE
            && m.reconstruction == Reconstruction::Zero
        {
            written += reader
                .write_tile(t, tiles.start as usize, out)
                .map_err(serr)?;
            progress(written);
            continue;
        }
        reader.check_memory(t, bytes).map_err(serr)?;
        buf.resize(bytes as usize, 0);
        reader.decode_rows(t, b, &mut buf).map_err(serr)?;
        if m.reconstruction != Reconstruction::Zero {
            rebuild(&mut buf, reader.rows_mask(t, b).map_err(serr)?, false)?;
        }
        out.write_all(&buf).map_err(werr)?;
        written += buf.len() as u64;
        progress(written);
    }
    Ok(written)
}

/// Tensor `t` decoded and rebuilt, in its dtype: the library form of what `decompress`
/// writes for it. Its size is checked against the reader's memory budget before anything
/// is allocated.
pub fn read_tensor<S: Source + Sync>(
    reader: &Reader<S>,
    t: usize,
) -> Result<Vec<u8>, PipelineError> {
    let m = reader.meta(t)?;
    let len = m.byte_len().map_err(sparsewire_stream::StreamError::from)?;
    reader.check_memory(t, len)?;
    let mem = Path::new("-");
    let mut data = Vec::with_capacity(len as usize);
    write_dense(reader, t, &mut data, (mem, mem), &mut |_| {})?;
    Ok(data)
}

/// Rows `rows` of tensor `t` (along its first dimension; a tensor of rank < 2 has one
/// row), decoded and rebuilt in its dtype, decoding only the row blocks of tiles that the
/// range crosses. A tensor that is one tile (a non-float dtype) or that is rebuilt whole
/// (`channels`) is decoded whole first.
pub fn read_rows<S: Source + Sync>(
    reader: &Reader<S>,
    t: usize,
    rows: std::ops::Range<u64>,
) -> Result<Vec<u8>, PipelineError> {
    let m = reader.meta(t)?;
    let grid = reader.grid(t);
    let elem = m.dtype.bits() / 8;
    let row_bytes = grid.cols * elem;
    if rows.start > rows.end || rows.end > grid.rows {
        return Err(PipelineError::Rows {
            tensor: m.name.clone(),
            start: rows.start,
            end: rows.end,
            rows: grid.rows,
        });
    }
    let whole = !m.dtype.is_compressible_float()
        || matches!(m.reconstruction, Reconstruction::Channels { .. })
        || m.dtype.bits() % 8 != 0;
    if whole {
        let data = read_tensor(reader, t)?;
        if m.dtype.bits() % 8 != 0 {
            // Sub-byte dtypes: rows are not byte ranges; only the whole tensor.
            if rows != (0..grid.rows) {
                return Err(PipelineError::Rows {
                    tensor: m.name.clone(),
                    start: rows.start,
                    end: rows.end,
                    rows: grid.rows,
                });
            }
            return Ok(data);
        }
        return Ok(
            data[(rows.start * row_bytes) as usize..(rows.end * row_bytes) as usize].to_vec(),
        );
    }
    let need = (rows.end - rows.start) * row_bytes;
    reader.check_memory(t, need)?;
    let mut out = Vec::with_capacity(need as usize);
    if rows.is_empty() {
        return Ok(out);
    }
    let cols = grid.cols as usize;
    let mut buf = Vec::new();
    let (first, last) = (rows.start / grid.tile.rows, (rows.end - 1) / grid.tile.rows);
    for b in first..=last {
        let r0 = b * grid.tile.rows;
        let n = grid.rect(grid.row_block(b).start).rows;
        let bytes = n * row_bytes;
        reader.check_memory(t, bytes)?;
        buf.resize(bytes as usize, 0);
        reader.decode_rows(t, b, &mut buf)?;
        if m.reconstruction != Reconstruction::Zero {
            if let Some(mask) = reader.rows_mask(t, b)? {
                sparsewire_re::rebuild_stored(
                    m.dtype,
                    &mut buf,
                    mask.as_ref(),
                    cols,
                    false,
                    &m.reconstruction,
                )
                .map_err(|source| PipelineError::Rebuild {
                    tensor: m.name.clone(),
                    source,
                })?;
            }
        }
        let (lo, hi) = (rows.start.max(r0) - r0, rows.end.min(r0 + n) - r0);
        out.extend_from_slice(&buf[(lo * row_bytes) as usize..(hi * row_bytes) as usize]);
    }
    Ok(out)
}

/// Decodes stream bytes held in memory into tensors, rebuilding what was dropped.
pub fn decompress(stream: &[u8]) -> Result<TensorFile, PipelineError> {
    let reader = Reader::new(stream)?;
    reader.check_decoded_len()?;
    let tensors = (0..reader.header().tensors.len())
        .map(|t| {
            let m = reader.meta(t)?;
            let data = read_tensor(&reader, t)?;
            Ok(Tensor {
                name: m.name.clone(),
                dtype: m.dtype,
                shape: m.shape.clone(),
                data,
            })
        })
        .collect::<Result<_, PipelineError>>()?;
    Ok(TensorFile {
        tensors,
        metadata: reader.header().user_metadata.clone(),
    })
}
