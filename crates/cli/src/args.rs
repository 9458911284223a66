//! Argument groups shared by subcommands, and range-checked value parsers: every numeric
//! option is checked when it is parsed, with the accepted range in the message.

use clap::Args;
use sparsewire_formats::tiling::DEFAULT_TILE_ELEMS;
use sparsewire_metadata::TileShape;
use sparsewire_stream::{EncodeOptions, Profile};

/// A whole number of at least 1.
pub fn at_least_one(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("{s:?}: expected a whole number >= 1")),
    }
}

/// As [`at_least_one`], for counts.
pub fn count(s: &str) -> std::result::Result<usize, String> {
    at_least_one(s).map(|v| v as usize)
}

/// A positive, finite number.
pub fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?}: expected a positive finite number")),
    }
}

/// A sparsity in [0, 1).
pub fn sparsity(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: expected a fraction in [0, 1) (0.5 drops half of each tensor)"
        )),
    }
}

/// A fraction of the original size in (0, 1].
pub fn ratio(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!(
            "{s:?}: expected a fraction in (0, 1] of the input's size"
        )),
    }
}

/// A zstd level.
pub fn zstd_level(s: &str) -> std::result::Result<i32, String> {
    match s.parse::<i32>() {
        Ok(v) if (1..=22).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected a zstd level in 1..=22")),
    }
}

/// `ROWSxCOLS`, sides at least 1.
pub fn tile(s: &str) -> std::result::Result<TileShape, String> {
    let (r, c) = s
        .split_once(['x', 'X'])
        .ok_or("expected ROWSxCOLS, for example 64x384")?;
    Ok(TileShape {
        rows: at_least_one(r)?,
        cols: at_least_one(c)?,
    })
}

/// How tensors are tiled and coded.
#[derive(Args)]
pub struct CodecArgs {
    /// Elements per tile the default tile shape aims at (whole rows when they fit).
    #[arg(long, default_value_t = DEFAULT_TILE_ELEMS, value_parser = at_least_one)]
    tile_elems: u64,
    /// Fixed tile shape ROWSxCOLS for every float tensor (overrides --tile-elems).
    #[arg(long, value_parser = tile)]
    tile: Option<TileShape>,
    /// Do not try zstd per tensor (it is kept only where it beats the float planes).
    #[arg(long)]
    no_lz: bool,
    /// zstd level for that trial (1..=22).
    #[arg(long, default_value_t = 3, value_parser = zstd_level)]
    zstd_level: i32,
    /// small: entropy-coded values and masks, for a slow link (storage, network, PCIe).
    /// fast: raw bitmask + packed values, no entropy stage, so `matmul` multiplies straight
    /// from the stored bytes at memory speed.
    #[arg(long, default_value = "small")]
    profile: Profile,
}

impl CodecArgs {
    pub fn options(&self) -> EncodeOptions {
        EncodeOptions {
            tile_elems: self.tile_elems,
            tile_shape: self.tile,
            try_lz: !self.no_lz,
            zstd_level: self.zstd_level,
            profile: self.profile,
        }
    }
}

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
