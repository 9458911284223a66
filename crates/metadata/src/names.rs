//! Names of the header's enums, both ways (`Display` and `FromStr`): what the command line,
//! the reports and `sparsewire-eval` print and accept. One parser for every front end.

use crate::{
    Criterion, Dtype, MaskEncoding, Pattern, Plane, Reconstruction, StreamCodec, ValueCodec,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Criterion::Magnitude => "magnitude",
            Criterion::Taylor => "taylor",
            Criterion::Wanda => "wanda",
            Criterion::SparseGpt => "sparsegpt",
            Criterion::Correlation => "correlation",
            Criterion::Predictable => "predictable",
            Criterion::Movement => "movement",
            Criterion::Scorer => "scorer",
        })
    }
}

impl FromStr for Criterion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "magnitude" => Criterion::Magnitude,
            "taylor" | "gradient" => Criterion::Taylor,
            "wanda" => Criterion::Wanda,
            "sparsegpt" => Criterion::SparseGpt,
            "correlation" => Criterion::Correlation,
            "predictable" => Criterion::Predictable,
            "movement" => Criterion::Movement,
            "scorer" => Criterion::Scorer,
            _ => {
                return Err(format!(
                "unknown criterion {s:?} (magnitude, taylor, wanda, sparsegpt, correlation, predictable, movement, scorer)"
            ))
            }
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Unstructured => f.write_str("unstructured"),
            Pattern::UnstructuredPerRow => f.write_str("row"),
            Pattern::NM { n, m } => write!(f, "{n}:{m}"),
            Pattern::Block { rows, cols } => write!(f, "block:{rows}x{cols}"),
            Pattern::Channel => f.write_str("channel"),
        }
    }
}

impl FromStr for Pattern {
    type Err = String;
    /// `unstructured`, `row`, `N:M` (0 < N < M <= 16), `block:RxC` (sides >= 1), `channel`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        if let Some(b) = s.strip_prefix("block:") {
            let (r, c) = b.split_once('x').ok_or_else(|| {
                format!("block pattern {s:?}: expected block:RxC, e.g. block:4x4")
            })?;
            let side = |v: &str| {
                v.parse::<u32>()
                    .ok()
                    .filter(|&x| x >= 1)
                    .ok_or_else(|| format!("block pattern {s:?}: sides must be whole numbers >= 1"))
            };
            return Ok(Pattern::Block {
                rows: side(r)?,
                cols: side(c)?,
            });
        }
        if let Some((n, m)) = s.split_once(':') {
            let (n, m): (u8, u8) = (
                n.parse().map_err(|_| format!("bad N in {s:?}"))?,
                m.parse().map_err(|_| format!("bad M in {s:?}"))?,
            );
            if !(n > 0 && n < m && m <= 16) {
                return Err(format!("N:M needs 0 < N < M <= 16, got {n}:{m}"));
            }
            return Ok(Pattern::NM { n, m });
        }
        Ok(match s.as_str() {
            "unstructured" => Pattern::Unstructured,
            "row" | "per-row" => Pattern::UnstructuredPerRow,
            "channel" => Pattern::Channel,
            _ => {
                return Err(format!(
                    "unknown pattern {s:?} (unstructured, row, N:M, block:RxC, channel)"
                ))
            }
        })
    }
}

impl fmt::Display for MaskEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaskEncoding::Bitmask => "bitmask",
            MaskEncoding::RunLength => "run-length",
            MaskEncoding::DeltaIndices => "delta-indices",
            MaskEncoding::NMCodes => "nm-codes",
        })
    }
}

impl fmt::Display for Plane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plane::Whole => f.write_str("whole"),
            Plane::Head => f.write_str("head"),
            Plane::TailBits => f.write_str("tail_bits"),
            Plane::Byte(k) => write!(f, "byte{k}"),
            Plane::Mask(_) => f.write_str("mask"),
        }
    }
}

impl fmt::Display for StreamCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamCodec::Raw => "raw",
            StreamCodec::Constant { .. } => "constant",
            StreamCodec::RansShared { .. } => "rans-shared",
            StreamCodec::RansLocal => "rans-local",
            StreamCodec::Zstd => "zstd",
        })
    }
}

impl fmt::Display for ValueCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueCodec::Raw => "raw",
            ValueCodec::Zstd => "zstd",
            ValueCodec::FloatPlanes => "float-planes",
        })
    }
}

/// `#[serde(serialize_with = "sparsewire_metadata::display::serialize")]`: a value as its
/// `Display` name in reports (`"magnitude"`, `"2:4"`, `"head"`).
pub mod display {
    /// Serialises `v` as a string.
    pub fn serialize<T: std::fmt::Display, S: serde::Serializer>(
        v: &T,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// The same for an `Option`.
    pub fn serialize_opt<T: std::fmt::Display, S: serde::Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }
}

impl FromStr for Dtype {
    type Err = String;
    /// Safetensors names (`F32`, `BF16`, ...), any case.
    fn from_str(s: &str) -> Result<Self, String> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown dtype {s:?}"))
    }
}

/// A reconstruction method without its parameters: what reports show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconstructionMethod {
    Zero,
    Linear,
    Learned,
    Dictionary,
    Channels,
    Spatial,
    Mlp,
}

impl ReconstructionMethod {
    /// `zero`, `linear`, `learned`, `dictionary`, `channels`, `spatial` or `mlp`.
    pub fn name(self) -> &'static str {
        match self {
            ReconstructionMethod::Zero => "zero",
            ReconstructionMethod::Linear => "linear",
            ReconstructionMethod::Learned => "learned",
            ReconstructionMethod::Dictionary => "dictionary",
            ReconstructionMethod::Channels => "channels",
            ReconstructionMethod::Spatial => "spatial",
            ReconstructionMethod::Mlp => "mlp",
        }
    }
}

impl std::fmt::Display for ReconstructionMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Reconstruction {
    /// The method, without its parameters.
    pub fn method(&self) -> ReconstructionMethod {
        match self {
            Reconstruction::Zero => ReconstructionMethod::Zero,
            Reconstruction::Linear => ReconstructionMethod::Linear,
            Reconstruction::Learned { .. } => ReconstructionMethod::Learned,
            Reconstruction::Dictionary { .. } => ReconstructionMethod::Dictionary,
            Reconstruction::Channels { .. } => ReconstructionMethod::Channels,
            Reconstruction::Spatial { .. } => ReconstructionMethod::Spatial,
            Reconstruction::Mlp { .. } => ReconstructionMethod::Mlp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in [
            Criterion::Magnitude,
            Criterion::Taylor,
            Criterion::Wanda,
            Criterion::SparseGpt,
            Criterion::Correlation,
            Criterion::Predictable,
            Criterion::Movement,
            Criterion::Scorer,
        ] {
            assert_eq!(c.to_string().parse::<Criterion>(), Ok(c));
        }
        for p in [
            Pattern::Unstructured,
            Pattern::UnstructuredPerRow,
            Pattern::NM { n: 2, m: 4 },
            Pattern::Block { rows: 4, cols: 8 },
            Pattern::Channel,
        ] {
            assert_eq!(p.to_string().parse::<Pattern>(), Ok(p));
        }
        assert!("4:4".parse::<Pattern>().is_err());
        assert!("block:0x4".parse::<Pattern>().is_err());
        assert!("nope".parse::<Criterion>().is_err());
        assert_eq!("bf16".parse::<Dtype>(), Ok(Dtype::BF16));
    }
}
