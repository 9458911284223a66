//! Applying a method to expanded values.

use crate::{RebuildError, Reconstruction};
use sparsewire_sparse::{expand_f32, MaskRef, Values};

/// Where a tile sits in its tensor's 2-D view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlace {
    /// The tile's first column in the tensor.
    pub col0: usize,
    /// Columns of the tensor's 2-D view.
    pub full_cols: usize,
}

/// Expands a stored tile into `out` (resized to the tile) and rebuilds its dropped
/// elements by `method`. A dense tile (nothing dropped) is only expanded.
pub fn rebuild_tile(
    values: Values<'_>,
    method: &Reconstruction,
    place: TilePlace,
    out: &mut Vec<f32>,
) -> Result<(), RebuildError> {
    let n = values
        .elements()
        .ok_or(sparsewire_sparse::SparseError::NotFloat {
            dtype: values.dtype(),
        })?;
    out.resize(n, 0.0);
    expand_f32(values, out)?;
    let Values::Sparse(tile) = values else {
        return Ok(());
    };
    apply(out, tile.mask(), tile.cols(), place, false, method)
}

/// Rebuilds the dropped elements of an already expanded (zero-filled) tile of `cols`
/// columns in place: [`rebuild_tile`] without the expansion, for a caller that expanded
/// the tile itself (the scalar reference does).
pub fn rebuild_expanded(
    values: &mut [f32],
    mask: MaskRef<'_>,
    cols: usize,
    place: TilePlace,
    method: &Reconstruction,
) -> Result<(), RebuildError> {
    apply(values, mask, cols, place, false, method)
}

/// Rebuilds, in place, the dropped elements of whole rows stored as little-endian `dtype`
/// bytes (a decoded row block, or with `whole_tensor` a whole tensor for `Channels`):
/// through f32, rounded back to the dtype as the reader would store them.
pub fn rebuild_stored(
    dtype: sparsewire_metadata::Dtype,
    bytes: &mut [u8],
    mask: MaskRef<'_>,
    cols: usize,
    whole_tensor: bool,
    method: &Reconstruction,
) -> Result<(), RebuildError> {
    if *method == Reconstruction::Zero {
        return Ok(());
    }
    let not_float = || sparsewire_sparse::SparseError::NotFloat { dtype };
    let mut f = sparsewire_formats::to_f32(dtype, bytes).ok_or_else(not_float)?;
    let place = TilePlace {
        col0: 0,
        full_cols: cols,
    };
    apply(&mut f, mask, cols, place, whole_tensor, method)?;
    bytes.copy_from_slice(&sparsewire_formats::from_f32(dtype, &f).ok_or_else(not_float)?);
    Ok(())
}

/// Rebuilds the dropped elements of whole rows (zero-filled, row-major, `cols` wide) of a
/// tensor: every method but `Channels`, which needs the whole tensor.
pub fn rebuild_rows(
    values: &mut [f32],
    mask: MaskRef<'_>,
    cols: usize,
    method: &Reconstruction,
) -> Result<(), RebuildError> {
    let place = TilePlace {
        col0: 0,
        full_cols: cols,
    };
    apply(values, mask, cols, place, false, method)
}

/// Rebuilds the dropped elements of a whole tensor's 2-D view (zero-filled, row-major).
pub fn rebuild_tensor(
    values: &mut [f32],
    mask: MaskRef<'_>,
    cols: usize,
    method: &Reconstruction,
) -> Result<(), RebuildError> {
    let place = TilePlace {
        col0: 0,
        full_cols: cols,
    };
    apply(values, mask, cols, place, true, method)
}

fn apply(
    values: &mut [f32],
    mask: MaskRef<'_>,
    cols: usize,
    place: TilePlace,
    whole_tensor: bool,
    method: &Reconstruction,
) -> Result<(), RebuildError> {
    if mask.len() != values.len() {
        return Err(RebuildError::MaskLength {
            values: values.len(),
            mask: mask.len(),
        });
    }
    let params = |reason: String| RebuildError::Params {
        method: method.method().name(),
        reason,
    };
    let whole_rows = |method: &'static str| {
        if place.col0 != 0 || cols != place.full_cols {
            return Err(RebuildError::NeedsWholeRows {
                method,
                col0: place.col0,
                cols,
                full_cols: place.full_cols,
            });
        }
        Ok(())
    };
    // Row methods are a dot product with the features: `Linear` is [1, 0, 0, 0].
    let p: [f64; 4] = match method {
        Reconstruction::Zero => return Ok(()),
        Reconstruction::Channels { combinations } => {
            if !whole_tensor {
                return Err(RebuildError::NeedsWholeTensor { method: "channels" });
            }
            return rebuild_channels(values, cols, combinations);
        }
        Reconstruction::Dictionary { entry_len, entries } => {
            if entries.len() != *entry_len as usize || entries.len() != place.full_cols {
                return Err(params(format!(
                    "{} entries (entry_len {entry_len}) for a tensor of {} columns",
                    entries.len(),
                    place.full_cols
                )));
            }
            if place.col0 + cols > entries.len() {
                return Err(params(format!(
                    "columns {}..{} beyond the {} entries",
                    place.col0,
                    place.col0 + cols,
                    entries.len()
                )));
            }
            let e = &entries[place.col0..place.col0 + cols];
            for (r, row) in values.chunks_mut(cols.max(1)).enumerate() {
                for (c, (v, &d)) in row.iter_mut().zip(e).enumerate() {
                    if !mask.is_kept(r * cols + c) {
                        *v = d;
                    }
                }
            }
            return Ok(());
        }
        Reconstruction::Spatial { kh, kw } => {
            let ks = (*kh as usize) * (*kw as usize);
            if ks == 0 || !cols.is_multiple_of(ks) || !place.col0.is_multiple_of(ks) {
                return Err(params(format!(
                    "kernels of {kh}x{kw} do not tile columns {}..{}",
                    place.col0,
                    place.col0 + cols
                )));
            }
            for (i, kern) in values.chunks_mut(ks).enumerate() {
                let keep: Vec<bool> = (0..ks).map(|j| mask.is_kept(i * ks + j)).collect();
                spatial(kern, &keep, *kh as usize, *kw as usize);
            }
            return Ok(());
        }
        Reconstruction::Mlp { hidden, params: ps } => {
            whole_rows("mlp")?;
            let net = crate::mlp::MlpRef::new(*hidden, ps).map_err(params)?;
            crate::mlp::rebuild_rows(values, |i| mask.is_kept(i), cols, net);
            return Ok(());
        }
        Reconstruction::Linear => {
            whole_rows("linear")?;
            [1.0, 0.0, 0.0, 0.0]
        }
        Reconstruction::Learned { params: ps } => {
            whole_rows("learned")?;
            match ps[..] {
                [a, b, c, d] => [a as f64, b as f64, c as f64, d as f64],
                _ => return Err(params(format!("{} parameters, 4 expected", ps.len()))),
            }
        }
    };
    let predict = |f: &[f64; 4]| -> f64 { p.iter().zip(f).map(|(a, b)| a * b).sum() };
    rows_with_drops(
        values,
        |i| mask.is_kept(i),
        cols,
        |row, src, krow| {
            for j in 0..row.len() {
                if !krow[j] {
                    row[j] = predict(&features(src, krow, j)) as f32;
                }
            }
        },
    );
    Ok(())
}

/// Calls `fill(row, src, keep)` for every row of `values` (`cols` wide) that dropped
/// something: `row` to write, `src` its values as they were (so predictions read only kept
/// values as decoded), `keep` which were kept (`kept(i)` for element `i`). The row
/// methods' common loop.
pub(crate) fn rows_with_drops(
    values: &mut [f32],
    kept: impl Fn(usize) -> bool,
    cols: usize,
    mut fill: impl FnMut(&mut [f32], &[f32], &[bool]),
) {
    for (r, row) in values.chunks_mut(cols.max(1)).enumerate() {
        let krow: Vec<bool> = (0..row.len()).map(|c| kept(r * cols + c)).collect();
        if krow.iter().all(|&k| k) {
            continue;
        }
        let src = row.to_vec();
        fill(row, &src, &krow);
    }
}

/// Rebuilds dropped rows of a `[rows, cols]` matrix (row-major f32) from their stored
/// combinations of kept rows. Every index comes from a header, so each is checked.
fn rebuild_channels(
    values: &mut [f32],
    cols: usize,
    combinations: &[sparsewire_metadata::ChannelCombination],
) -> Result<(), RebuildError> {
    let rows = values.len() / cols.max(1);
    for c in combinations {
        let bad = |source_row: u32| RebuildError::BadCombination {
            row: c.row,
            source_row,
            rows,
            sources: c.sources.len(),
            coefs: c.coefs.len(),
        };
        if c.sources.len() != c.coefs.len() || c.row as usize >= rows {
            return Err(bad(c.row));
        }
        if let Some(&s) = c.sources.iter().find(|&&s| s as usize >= rows) {
            return Err(bad(s));
        }
        let mut acc = vec![0f64; cols];
        for (&s, &k) in c.sources.iter().zip(&c.coefs) {
            let src = &values[s as usize * cols..(s as usize + 1) * cols];
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += k as f64 * v as f64;
            }
        }
        let dst = &mut values[c.row as usize * cols..(c.row as usize + 1) * cols];
        for (d, a) in dst.iter_mut().zip(acc) {
            *d = a as f32;
        }
    }
    Ok(())
}

/// The two nearest kept elements on each side of position `j` of a row (other than `j`
/// itself), nearest first, as (distance, value): the row context of SPEC §6.2.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowContext {
    pub left: [Option<(usize, f64)>; 2],
    pub right: [Option<(usize, f64)>; 2],
}

impl RowContext {
    pub fn new(vals: &[f32], keep: &[bool], j: usize) -> Self {
        let mut left = [None; 2];
        for (slot, k) in left
            .iter_mut()
            .zip((0..j).rev().filter(|&k| keep[k]).take(2))
        {
            *slot = Some((j - k, vals[k] as f64));
        }
        let mut right = [None; 2];
        for (slot, k) in right
            .iter_mut()
            .zip((j + 1..vals.len()).filter(|&k| keep[k]).take(2))
        {
            *slot = Some((k - j, vals[k] as f64));
        }
        Self { left, right }
    }

    /// `Linear`'s value: interpolation between the nearest kept values on both sides, else
    /// extrapolation from the two nearest on one side, else the one kept value, else 0.
    pub fn interp(&self) -> f64 {
        match (self.left[0], self.right[0]) {
            (Some((dl, l)), Some((dr, r))) => (dr as f64 * l + dl as f64 * r) / (dl + dr) as f64,
            (Some((d1, v1)), None) | (None, Some((d1, v1))) => {
                let side = if self.left[0].is_some() {
                    &self.left
                } else {
                    &self.right
                };
                match side[1] {
                    // Extrapolate along the line through the two nearest.
                    Some((d2, v2)) => v1 + (v1 - v2) * d1 as f64 / (d2 - d1) as f64,
                    None => v1,
                }
            }
            (None, None) => 0.0,
        }
    }
}

/// Features of position `j` from the kept elements of its row (other than `j` itself):
/// `[interpolation, nearest left, nearest right, 1]`.
pub(crate) fn features(vals: &[f32], keep: &[bool], j: usize) -> [f64; 4] {
    let c = RowContext::new(vals, keep, j);
    [
        c.interp(),
        c.left[0].map_or(0.0, |x| x.1),
        c.right[0].map_or(0.0, |x| x.1),
        1.0,
    ]
}

fn spatial(kern: &mut [f32], keep: &[bool], kh: usize, kw: usize) {
    let src = kern.to_vec();
    let (mut sum, mut n) = (0f64, 0usize);
    for (&v, &k) in src.iter().zip(keep) {
        if k {
            sum += v as f64;
            n += 1;
        }
    }
    let mean = if n > 0 { sum / n as f64 } else { 0.0 };
    for y in 0..kh {
        for x in 0..kw {
            let i = y * kw + x;
            if keep[i] {
                continue;
            }
            let (mut s, mut m) = (0f64, 0usize);
            let mut add = |j: usize| {
                if keep[j] {
                    s += src[j] as f64;
                    m += 1;
                }
            };
            if x > 0 {
                add(i - 1);
            }
            if x + 1 < kw {
                add(i + 1);
            }
            if y > 0 {
                add(i - kw);
            }
            if y + 1 < kh {
                add(i + kw);
            }
            kern[i] = if m > 0 {
                (s / m as f64) as f32
            } else {
                mean as f32
            };
        }
    }
}
