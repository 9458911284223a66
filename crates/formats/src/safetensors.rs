//! Safetensors files: the header parsed on its own (so a file is read a tensor, or a tile,
//! at a time) and a writer that streams tensor data after a header written first.
//!
//! Reading is the `safetensors` crate's own header validation (offsets contiguous, sizes
//! matching dtype and shape) plus what it lets pass: a name that appears twice in the
//! header JSON (its map keeps the last one silently; here it is an error), and the order of
//! empty tensors that share an offset (its order follows a hash map; here it is by name, so
//! the same file always gives the same tensor order and the same stream).

use crate::{Dtype, FormatError, Tensor, TensorFile};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::io::Write;

/// Largest header accepted: the `safetensors` crate's own cap.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Byte offset of the data from the start of the file.
    pub offset: u64,
    pub len: u64,
}

/// A parsed header: tensors in file order and the `__metadata__` (sorted by key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub tensors: Vec<TensorEntry>,
    pub metadata: Vec<(String, String)>,
    /// Where the data section starts.
    pub data_start: u64,
}

/// The 8-byte length prefix: the header's byte count, checked against the cap.
pub fn header_len(prefix: &[u8; 8]) -> Result<u64, FormatError> {
    let n = u64::from_le_bytes(*prefix);
    if n > MAX_HEADER_BYTES {
        return Err(FormatError::Header {
            reason: format!("header of {n} bytes is over the cap of {MAX_HEADER_BYTES}"),
        });
    }
    Ok(n)
}

/// The keys of a JSON object, in order, values skipped.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses header JSON `json` of a file of `file_len` bytes whose header is `json.len()`
/// bytes after the 8-byte prefix.
pub fn parse_header(json: &[u8], file_len: u64) -> Result<Header, FormatError> {
    let bad = |reason: String| FormatError::Header { reason };
    let keys: Keys = serde_json::from_slice(json).map_err(|e| bad(format!("{e}")))?;
    let mut seen = std::collections::HashSet::new();
    for k in &keys.0 {
        if !seen.insert(k.as_str()) {
            return Err(FormatError::DuplicateName { name: k.clone() });
        }
    }
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(json).map_err(|e| {
        FormatError::SafeTensors(safetensors::SafeTensorError::InvalidHeaderDeserialization(
            e,
        ))
    })?;
    let data_start = 8 + json.len() as u64;
    if data_start + meta.data_len() as u64 != file_len {
        return Err(bad(format!(
            "the header describes {} bytes of data, the file holds {}",
            meta.data_len(),
            file_len.saturating_sub(data_start)
        )));
    }
    let mut tensors = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            Ok(TensorEntry {
                dtype: crate::from_st_dtype(info.dtype)?,
                shape: info.shape.iter().map(|&d| d as u64).collect(),
                offset: data_start + info.data_offsets.0 as u64,
                len: (info.data_offsets.1 - info.data_offsets.0) as u64,
                name,
            })
        })
        .collect::<Result<Vec<_>, FormatError>>()?;
    tensors.sort_by(|a, b| (a.offset, &a.name).cmp(&(b.offset, &b.name)));
    let mut metadata: Vec<(String, String)> = meta
        .metadata()
        .clone()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    metadata.sort();
    Ok(Header {
        tensors,
        metadata,
        data_start,
    })
}

/// Reads a safetensors file held in memory.
pub fn read_safetensors(bytes: &[u8]) -> Result<TensorFile, FormatError> {
    let too_short = || FormatError::Header {
        reason: "shorter than its length prefix and header".into(),
    };
    let prefix: &[u8; 8] = bytes
        .get(..8)
        .ok_or_else(too_short)?
        .try_into()
        .expect("8 bytes");
    let n = header_len(prefix)? as usize;
    let json = bytes.get(8..8 + n).ok_or_else(too_short)?;
    let h = parse_header(json, bytes.len() as u64)?;
    let tensors = h
        .tensors
        .into_iter()
        .map(|e| {
            let data = bytes[e.offset as usize..(e.offset + e.len) as usize].to_vec();
            Tensor::new(e.name, e.dtype, e.shape, data)
        })
        .collect::<Result<_, _>>()?;
    Ok(TensorFile {
        tensors,
        metadata: h.metadata,
    })
}

/// Writes a safetensors file: the header first (from names, dtypes and shapes), then each
/// tensor's data in order, through [`SafetensorsWriter::write`], in pieces of any size.
#[derive(Debug)]
pub struct SafetensorsWriter<W: Write> {
    out: W,
    /// Bytes of data announced and written so far.
    total: u64,
    written: u64,
}

/// One tensor a [`SafetensorsWriter`] will write.
#[derive(Debug, Clone, Copy)]
pub struct Announce<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [u64],
}

impl<W: Write> SafetensorsWriter<W> {
    /// Writes the header for `tensors` (their data will follow in this order).
    pub fn new(
        mut out: W,
        tensors: &[Announce<'_>],
        metadata: &[(String, String)],
    ) -> Result<Self, FormatError> {
        let mut seen = std::collections::HashSet::new();
        let mut json = String::from("{");
        let mut first = true;
        let mut sep = |json: &mut String| {
            if !std::mem::take(&mut first) {
                json.push(',');
            }
        };
        if !metadata.is_empty() {
            sep(&mut json);
            let map: serde_json::Map<String, serde_json::Value> = metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            json.push_str("\"__metadata__\":");
            json.push_str(&serde_json::to_string(&map).expect("strings serialise"));
        }
        let mut at = 0u64;
        for t in tensors {
            if !seen.insert(t.name) || t.name == "__metadata__" {
                return Err(FormatError::DuplicateName {
                    name: t.name.to_string(),
                });
            }
            let len = crate::byte_len(t.name, t.dtype, t.shape)?;
            sep(&mut json);
            json.push_str(&serde_json::to_string(t.name).expect("strings serialise"));
            json.push_str(&format!(
                ":{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{},{}]}}",
                t.dtype.name(),
                serde_json::to_string(t.shape).expect("numbers serialise"),
                at,
                at + len
            ));
            at += len;
        }
        json.push('}');
        // Pad with spaces so the data starts 8-byte aligned, as safetensors does.
        while (json.len() + 8) % 8 != 0 {
            json.push(' ');
        }
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(json.as_bytes())?;
        Ok(SafetensorsWriter {
            out,
            total: at,
            written: 0,
        })
    }

    /// Appends data (the tensors' bytes, in the announced order).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        if self.written + bytes.len() as u64 > self.total {
            return Err(FormatError::Header {
                reason: format!(
                    "{} bytes of tensor data written where the header announced {}",
                    self.written + bytes.len() as u64,
                    self.total
                ),
            });
        }
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes of tensor data written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks that every announced byte was written, and hands the output back.
    pub fn finish(mut self) -> Result<W, FormatError> {
        if self.written != self.total {
            return Err(FormatError::Header {
                reason: format!(
                    "{} bytes of tensor data written where the header announced {}",
                    self.written, self.total
                ),
            });
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SafetensorsWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SafetensorsWriter::write(self, buf).map_err(|e| match e {
            FormatError::Io(e) => e,
            e => std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes tensors held in memory as a safetensors file.
pub fn write_safetensors(file: &TensorFile) -> Result<Vec<u8>, FormatError> {
    let ann: Vec<Announce> = file
        .tensors
        .iter()
        .map(|t| Announce {
            name: &t.name,
            dtype: t.dtype,
            shape: &t.shape,
        })
        .collect();
    let mut w = SafetensorsWriter::new(Vec::new(), &ann, &file.metadata)?;
    for t in &file.tensors {
        w.write(&t.data)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_metadata_order_and_odd_dtypes() {
        let file = TensorFile {
            tensors: vec![
                Tensor::from_f32("w", vec![2, 3], &[1.0, -2.0, 0.5, 0.0, -0.0, 7.0]),
                Tensor::new(
                    "ids",
                    Dtype::I64,
                    vec![2],
                    vec![1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
                )
                .unwrap(),
                Tensor::new("scalar", Dtype::BF16, vec![], vec![0x80, 0x3f]).unwrap(),
                Tensor::new("empty", Dtype::F16, vec![0, 4], vec![]).unwrap(),
                Tensor::new("empty2", Dtype::F32, vec![0], vec![]).unwrap(),
                Tensor::new("quote\"d", Dtype::U8, vec![1], vec![9]).unwrap(),
            ],
            metadata: vec![("format".into(), "pt".into())],
        };
        let bytes = write_safetensors(&file).unwrap();
        // The reference reader agrees.
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("w").unwrap().shape(), &[2, 3]);
        let back = read_safetensors(&bytes).unwrap();
        assert_eq!(back.metadata, file.metadata);
        // File order, empty tensors sharing an offset by name: the same every time.
        let names: Vec<&str> = back.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["w", "ids", "scalar", "empty", "empty2", "quote\"d"]);
        for t in &file.tensors {
            assert!(back.tensors.contains(t), "{} lost", t.name);
        }
    }

    #[test]
    fn duplicate_names_and_short_writes_are_errors() {
        let json = br#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(json);
        file.extend_from_slice(&[1, 2]);
        assert!(matches!(
            read_safetensors(&file),
            Err(FormatError::DuplicateName { .. })
        ));
        let t = [Announce {
            name: "x",
            dtype: Dtype::F32,
            shape: &[2],
        }];
        let mut w = SafetensorsWriter::new(Vec::new(), &t, &[]).unwrap();
        w.write(&[0; 4]).unwrap();
        assert!(w.finish().is_err());
        let mut w = SafetensorsWriter::new(Vec::new(), &t, &[]).unwrap();
        assert!(w.write(&[0; 12]).is_err());
        let twice = [t[0], t[0]];
        assert!(SafetensorsWriter::new(Vec::new(), &twice, &[]).is_err());
    }
}
