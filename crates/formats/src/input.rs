//! Opening an input file by its header alone.
//!
//! [`InputFile::open`] reads the first bytes of a file, tells its format (by content, then
//! extension), parses its header and keeps the file open: each tensor is then lent as a
//! [`TensorRef`] whose bytes are read by range, or loaded whole ([`InputFile::read_tensor`]).
//! Inputs that are not tensor files get an error that says what they are instead: a
//! directory, a `.swire` stream, a PyTorch pickle (never unpickled).

use crate::safetensors::{header_len, parse_header, TensorEntry};
use crate::source::{read_exact_at, FileRange};
use crate::{npy, FormatError, Tensor, TensorFile, TensorRef};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// What kind of file it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Safetensors,
    Npy,
}

/// An open tensor file.
#[derive(Debug)]
pub struct InputFile {
    kind: Kind,
    tensors: Vec<TensorEntry>,
    ranges: Vec<FileRange>,
    metadata: Vec<(String, String)>,
    len: u64,
}

fn ext(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// First bytes of a `.swire` stream (kept here so an input can be recognised without the
/// stream crate).
const SWIRE_MAGIC: &[u8; 8] = b"\x89SWIRE\r\n";

impl InputFile {
    /// Opens `path` and parses its header.
    pub fn open(path: &Path) -> Result<InputFile, FormatError> {
        if path.is_dir() {
            return Err(FormatError::IsDirectory);
        }
        let e = ext(path);
        if ["bin", "pt", "pth", "ckpt", "pkl", "pickle"].contains(&e.as_str()) {
            return Err(FormatError::Pickle {
                ext: format!(".{e}"),
            });
        }
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = vec![0u8; len.min(16) as usize];
        read_exact_at(&file, &mut head, 0)?;
        let file = Arc::new(file);
        let (kind, tensors, metadata) = if head.starts_with(SWIRE_MAGIC) || e == "swire" {
            return Err(FormatError::IsStream);
        } else if head.starts_with(npy::MAGIC) || e == "npy" {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("array")
                .to_string();
            let mut h = vec![0u8; len.min(npy::MAX_HEADER as u64 + 12) as usize];
            read_exact_at(&file, &mut h, 0)?;
            let (dtype, shape, start) = npy::parse_header(&h)?;
            let entry = TensorEntry {
                len: crate::byte_len(&name, dtype, &shape)?,
                name,
                dtype,
                shape,
                offset: start as u64,
            };
            if entry.offset + entry.len != len {
                return Err(FormatError::ByteLength {
                    name: entry.name,
                    dtype,
                    shape: entry.shape,
                    expected: entry.len,
                    got: len.saturating_sub(entry.offset),
                });
            }
            (Kind::Npy, vec![entry], vec![])
        } else if e == "safetensors" || (head.len() >= 9 && head[8] == b'{') {
            let prefix: [u8; 8] = head
                .get(..8)
                .ok_or_else(|| FormatError::Header {
                    reason: "shorter than its 8-byte length prefix".into(),
                })?
                .try_into()
                .expect("8 bytes");
            let n = header_len(&prefix)?;
            if 8 + n > len {
                return Err(FormatError::Header {
                    reason: format!("header of {n} bytes runs past the end of the file"),
                });
            }
            let mut json = vec![0u8; n as usize];
            read_exact_at(&file, &mut json, 8)?;
            let h = parse_header(&json, len)?;
            (Kind::Safetensors, h.tensors, h.metadata)
        } else {
            return Err(FormatError::UnknownFormat);
        };
        let ranges = tensors
            .iter()
            .map(|t| FileRange {
                file: file.clone(),
                offset: t.offset,
                len: t.len,
            })
            .collect();
        Ok(InputFile {
            kind,
            tensors,
            ranges,
            metadata,
            len,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The tensors, in file order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// The `__metadata__`, sorted by key.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// Bytes of the whole file.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Bytes of all tensors.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.len).sum()
    }

    /// Tensor `i`, its bytes read by range.
    pub fn tensor(&self, i: usize) -> TensorRef<'_> {
        let e = &self.tensors[i];
        TensorRef {
            name: &e.name,
            dtype: e.dtype,
            shape: &e.shape,
            bytes: &self.ranges[i],
        }
    }

    /// Every tensor, by reference.
    pub fn tensors(&self) -> Vec<TensorRef<'_>> {
        (0..self.tensors.len()).map(|i| self.tensor(i)).collect()
    }

    /// Tensor `i`, loaded.
    pub fn read_tensor(&self, i: usize) -> Result<Tensor, FormatError> {
        self.tensor(i).to_tensor()
    }

    /// Everything, loaded.
    pub fn read_all(&self) -> Result<TensorFile, FormatError> {
        Ok(TensorFile {
            tensors: (0..self.tensors.len())
                .map(|i| self.read_tensor(i))
                .collect::<Result<_, _>>()?,
            metadata: self.metadata.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_each_kind_and_names_what_is_not_a_tensor_file() {
        let d = tempfile::tempdir().unwrap();
        let file = TensorFile {
            tensors: vec![
                Tensor::from_f32("a", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                Tensor::from_f32("b", vec![1], &[9.0]),
            ],
            metadata: vec![("k".into(), "v".into())],
        };
        let st = d.path().join("m.safetensors");
        std::fs::write(&st, crate::write_safetensors(&file).unwrap()).unwrap();
        let f = InputFile::open(&st).unwrap();
        assert_eq!(f.kind(), Kind::Safetensors);
        assert_eq!(f.read_all().unwrap(), file);
        // A tile's worth of bytes, read by range.
        let b = f.tensor(0).bytes.read(4, 8).unwrap();
        assert_eq!(&b[..], &file.tensors[0].data[4..12]);
        assert!(f.tensor(0).bytes.read(20, 8).is_err());

        let np = d.path().join("arr.npy");
        std::fs::write(&np, npy::write_npy(&file.tensors[0]).unwrap()).unwrap();
        let f = InputFile::open(&np).unwrap();
        assert_eq!(f.kind(), Kind::Npy);
        assert_eq!(f.read_tensor(0).unwrap().data, file.tensors[0].data);
        assert_eq!(f.entries()[0].name, "arr");

        assert!(matches!(
            InputFile::open(d.path()),
            Err(FormatError::IsDirectory)
        ));
        let sw = d.path().join("x.swire");
        std::fs::write(&sw, b"\x89SWIRE\r\n rest").unwrap();
        assert!(matches!(InputFile::open(&sw), Err(FormatError::IsStream)));
        let pt = d.path().join("model.bin");
        std::fs::write(&pt, b"PK").unwrap();
        assert!(matches!(
            InputFile::open(&pt),
            Err(FormatError::Pickle { .. })
        ));
        let junk = d.path().join("junk");
        std::fs::write(&junk, b"hello there").unwrap();
        assert!(matches!(
            InputFile::open(&junk),
            Err(FormatError::UnknownFormat)
        ));
        // A truncated safetensors file.
        let bytes = std::fs::read(&st).unwrap();
        std::fs::write(&st, &bytes[..bytes.len() - 1]).unwrap();
        assert!(InputFile::open(&st).is_err());
    }
}
