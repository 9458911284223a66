//! The small-MLP predictor (SPEC §6.2 `Mlp`): the seed's "small NN" approximation
//! function, run on the CPU at rebuild time.
//!
//! A dropped element's inputs come from the kept elements of its row, as for `Learned`,
//! divided by the row's scale `s` (the root mean square of the row's kept values), so one
//! network serves rows of any magnitude:
//!
//! `x = [interp, l1, r1, l2, r2] / s ++ [1/dl1, 1/dr1, 1/s]` (a missing neighbour gives
//! 0; `1/s` lets the output hold an offset that does not scale with the row, such as the
//! negative bias of dropped post-GELU activations),
//!
//! then `h = relu(W1 x + b1)` with `hidden` units and the prediction is
//! `s * (w2 · h + b2)`; a row with no kept value (or `s = 0`) predicts 0. Parameters, in
//! order: `W1` row-major (`hidden x 8`), `b1`, `w2`, `b2`: `10 * hidden + 1` values.
//! Arithmetic is f64 in that order, so every reader rebuilds the same bits.

use crate::methods::{rows_with_drops, RowContext};

/// Inputs per dropped element.
pub const MLP_INPUTS: usize = 8;
/// The largest hidden width a stream may carry (a header value: checked before use).
pub const MLP_MAX_HIDDEN: u32 = 256;

/// The number of parameters of a network with `hidden` units.
pub fn mlp_params(hidden: usize) -> usize {
    hidden * (MLP_INPUTS + 2) + 1
}

/// A checked view of an `Mlp`'s parameters.
#[derive(Debug, Clone, Copy)]
pub struct MlpRef<'a> {
    hidden: usize,
    params: &'a [f32],
}

impl<'a> MlpRef<'a> {
    /// Checks the width and the parameter count; every parameter must be finite.
    pub fn new(hidden: u32, params: &'a [f32]) -> Result<Self, String> {
        if hidden == 0 || hidden > MLP_MAX_HIDDEN {
            return Err(format!(
                "hidden width {hidden} is outside 1..={MLP_MAX_HIDDEN}"
            ));
        }
        let h = hidden as usize;
        if params.len() != mlp_params(h) {
            return Err(format!(
                "{} parameters, {} expected for {h} hidden units",
                params.len(),
                mlp_params(h)
            ));
        }
        if let Some(i) = params.iter().position(|p| !p.is_finite()) {
            return Err(format!("parameter {i} is not finite"));
        }
        Ok(Self { hidden: h, params })
    }

    /// Hidden units.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The hidden layer's activations for `x`, into `h` (`hidden` long).
    pub fn hidden_of(&self, x: &[f64; MLP_INPUTS], h: &mut [f64]) {
        let (w1, rest) = self.params.split_at(self.hidden * MLP_INPUTS);
        let b1 = &rest[..self.hidden];
        for ((hk, wk), &bk) in h.iter_mut().zip(w1.chunks_exact(MLP_INPUTS)).zip(b1) {
            let mut z = bk as f64;
            for (&w, &xi) in wk.iter().zip(x) {
                z += w as f64 * xi;
            }
            *hk = z.max(0.0);
        }
    }

    /// The network's output for `x` (before the row scale).
    pub fn eval(&self, x: &[f64; MLP_INPUTS], h: &mut [f64]) -> f64 {
        self.hidden_of(x, h);
        let out = &self.params[self.hidden * (MLP_INPUTS + 1)..];
        let (w2, b2) = out.split_at(self.hidden);
        let mut y = b2[0] as f64;
        for (&w, &hk) in w2.iter().zip(h.iter()) {
            y += w as f64 * hk;
        }
        y
    }
}

/// A row's scale: the root mean square of its kept values (0 when none is kept).
pub fn row_scale(vals: &[f32], keep: &[bool]) -> f64 {
    let (mut sum, mut n) = (0f64, 0usize);
    for (&v, _) in vals.iter().zip(keep).filter(|(_, &k)| k) {
        sum += v as f64 * v as f64;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64).sqrt()
    }
}

/// The inputs of position `j` of a row whose scale is `scale` (> 0).
pub fn mlp_inputs(vals: &[f32], keep: &[bool], j: usize, scale: f64) -> [f64; MLP_INPUTS] {
    let c = RowContext::new(vals, keep, j);
    let v = |n: Option<(usize, f64)>| n.map_or(0.0, |n| n.1) / scale;
    let inv = |n: Option<(usize, f64)>| n.map_or(0.0, |n| 1.0 / n.0 as f64);
    [
        c.interp() / scale,
        v(c.left[0]),
        v(c.right[0]),
        v(c.left[1]),
        v(c.right[1]),
        inv(c.left[0]),
        inv(c.right[0]),
        1.0 / scale,
    ]
}

/// Rebuilds the dropped elements of whole rows (`values` row-major, `cols` wide;
/// `kept(i)` says whether element `i` was kept).
pub(crate) fn rebuild_rows(
    values: &mut [f32],
    kept: impl Fn(usize) -> bool,
    cols: usize,
    net: MlpRef<'_>,
) {
    let mut h = vec![0f64; net.hidden()];
    rows_with_drops(values, kept, cols, |row, src, krow| {
        let s = row_scale(src, krow);
        for j in 0..row.len() {
            if !krow[j] {
                row[j] = if s > 0.0 {
                    (s * net.eval(&mlp_inputs(src, krow, j, s), &mut h)) as f32
                } else {
                    0.0
                };
            }
        }
    });
}
