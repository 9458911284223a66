//! The header as JSON, both ways: [`Header::to_json`] for people and scripts (what
//! `sparsewire inspect --header-json` prints) and [`Header::from_json`] to read it back.
//! Reading back what was printed gives the same header, so the same postcard bytes.
//!
//! JSON has no NaN or infinity, while a header's floats (errors, rebuild parameters) may
//! hold them, so in JSON a non-finite `f32` is the string `"NaN"`, `"inf"` or `"-inf"`.
//! The binary (postcard) encoding is not affected: these helpers write plain `f32` for
//! formats that are not human-readable.

use crate::{Header, MetadataError};

impl Header {
    /// The header as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("header types always serialise to JSON")
    }

    /// Reads [`Header::to_json`]'s output back and validates it.
    pub fn from_json(text: &str) -> Result<Header, MetadataError> {
        let h: Header = serde_json::from_str(text).map_err(|e| MetadataError::Decode {
            reason: format!("JSON header: {e}"),
        })?;
        h.validate()?;
        Ok(h)
    }
}

/// One `f32` as a JSON number, or a string when it is not finite.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum JsonFloat {
    Number(f32),
    Text(String),
}

fn to_json_float(v: f32) -> JsonFloat {
    if v.is_nan() {
        JsonFloat::Text("NaN".into())
    } else if v.is_infinite() {
        JsonFloat::Text(if v > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        JsonFloat::Number(v)
    }
}

fn from_json_float<E: serde::de::Error>(v: JsonFloat) -> Result<f32, E> {
    match v {
        JsonFloat::Number(x) => Ok(x),
        JsonFloat::Text(s) => match s.as_str() {
            "NaN" => Ok(f32::NAN),
            "inf" => Ok(f32::INFINITY),
            "-inf" => Ok(f32::NEG_INFINITY),
            _ => Err(E::custom(format!(
                "expected a number, \"NaN\", \"inf\" or \"-inf\", got {s:?}"
            ))),
        },
    }
}

/// `#[serde(with)]` for an `f32`.
pub mod float {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            to_json_float(*v).serialize(s)
        } else {
            s.serialize_f32(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        if d.is_human_readable() {
            from_json_float(JsonFloat::deserialize(d)?)
        } else {
            f32::deserialize(d)
        }
    }
}

/// `#[serde(with)]` for an `Option<f32>`.
pub mod float_opt {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.map(to_json_float).serialize(s)
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        if d.is_human_readable() {
            Option::<JsonFloat>::deserialize(d)?
                .map(from_json_float)
                .transpose()
        } else {
            Option::<f32>::deserialize(d)
        }
    }
}

/// `#[serde(with)]` for a `Vec<f32>`.
pub mod floats {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_seq(v.iter().map(|&x| to_json_float(x)))
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        if d.is_human_readable() {
            Vec::<JsonFloat>::deserialize(d)?
                .into_iter()
                .map(from_json_float)
                .collect()
        } else {
            Vec::<f32>::deserialize(d)
        }
    }
}
