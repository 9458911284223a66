//! NumPy `.npy` single arrays (format versions 1.0-3.0, little-endian, C order).
//!
//! Read: `<f4`, `<f2`, `<f8`, `<i8`, `<i4`, `<i2`, `|i1`, `|u1`, `<u2`, `<u4`, `<u8`, `|b1`.
//! Written: version 1.0 (2.0 when the header needs it).

use crate::{Dtype, FormatError, Tensor};

/// First bytes of every `.npy` file.
pub const MAGIC: &[u8] = b"\x93NUMPY";
/// Largest header accepted (numpy itself caps it near this).
pub const MAX_HEADER: usize = 1 << 16;

fn err(reason: impl Into<String>) -> FormatError {
    FormatError::Npy {
        reason: reason.into(),
    }
}

fn descr_dtype(descr: &str) -> Option<Dtype> {
    Some(match descr {
        "<f4" => Dtype::F32,
        "<f2" => Dtype::F16,
        "<f8" => Dtype::F64,
        "<i8" => Dtype::I64,
        "<i4" => Dtype::I32,
        "<i2" => Dtype::I16,
        "|i1" => Dtype::I8,
        "|u1" => Dtype::U8,
        "<u2" => Dtype::U16,
        "<u4" => Dtype::U32,
        "<u8" => Dtype::U64,
        "|b1" => Dtype::BOOL,
        _ => return None,
    })
}

fn dtype_descr(d: Dtype) -> Option<&'static str> {
    Some(match d {
        Dtype::F32 => "<f4",
        Dtype::F16 => "<f2",
        Dtype::F64 => "<f8",
        Dtype::I64 => "<i8",
        Dtype::I32 => "<i4",
        Dtype::I16 => "<i2",
        Dtype::I8 => "|i1",
        Dtype::U8 => "|u1",
        Dtype::U16 => "<u2",
        Dtype::U32 => "<u4",
        Dtype::U64 => "<u8",
        Dtype::BOOL => "|b1",
        _ => return None,
    })
}

/// Value of `'key': value` in the header dict, as raw text up to the next top-level comma.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k = format!("'{key}':");
    let start = header.find(&k)? + k.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// Parses the header at the start of `bytes` (at least the header; the data may follow):
/// the dtype, the shape and where the data starts.
pub fn parse_header(bytes: &[u8]) -> Result<(Dtype, Vec<u64>, usize), FormatError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err("not an .npy file (bad magic)"));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(err(format!("unsupported .npy version {v}"))),
    };
    if hlen > MAX_HEADER || hstart + hlen > bytes.len() {
        return Err(err("header length beyond the file"));
    }
    let header = std::str::from_utf8(&bytes[hstart..hstart + hlen])
        .map_err(|_| err("header is not text"))?;
    let descr = field(header, "descr")
        .ok_or_else(|| err("no 'descr' in header"))?
        .trim_matches(|c| c == '\'' || c == '"');
    let dtype = descr_dtype(descr).ok_or_else(|| FormatError::UnsupportedDtype {
        dtype: descr.to_string(),
        what: ".npy input (little-endian numeric only)",
    })?;
    if field(header, "fortran_order") != Some("False") {
        return Err(err(
            "only C-order arrays are supported (fortran_order is not False)",
        ));
    }
    let shape_txt = field(header, "shape").ok_or_else(|| err("no 'shape' in header"))?;
    let shape: Vec<u64> = shape_txt
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| err(format!("bad shape entry {s:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((dtype, shape, hstart + hlen))
}

/// Parses a `.npy` file held in memory into a tensor called `name`.
pub fn read_npy(bytes: &[u8], name: &str) -> Result<Tensor, FormatError> {
    let (dtype, shape, start) = parse_header(bytes)?;
    Tensor::new(name, dtype, shape, bytes[start..].to_vec())
}

/// The header of a `.npy` file for an array of `dtype` and `shape` (the data follows it).
pub fn npy_header(dtype: Dtype, shape: &[u64]) -> Result<Vec<u8>, FormatError> {
    let descr = dtype_descr(dtype).ok_or_else(|| FormatError::UnsupportedDtype {
        dtype: dtype.to_string(),
        what: ".npy output",
    })?;
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so the data starts 64-byte aligned; end with a newline.
    let v1 = header.len() + 11 <= u16::MAX as usize;
    let pre = if v1 { 10 } else { 12 };
    let total = (pre + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - pre - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// Writes a tensor as `.npy`.
pub fn write_npy(t: &Tensor) -> Result<Vec<u8>, FormatError> {
    let mut out = npy_header(t.dtype, &t.shape)?;
    out.extend_from_slice(&t.data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for shape in [vec![], vec![3], vec![2, 2]] {
            let n: u64 = shape.iter().product();
            let t = Tensor::from_f32("a", shape.clone(), &vec![1.5; n as usize]);
            let b = write_npy(&t).unwrap();
            assert_eq!(read_npy(&b, "a").unwrap(), t);
        }
        assert!(read_npy(b"hello world", "a").is_err());
        let mut b = write_npy(&Tensor::from_f32("a", vec![4], &[0.0; 4])).unwrap();
        b.pop();
        assert!(matches!(
            read_npy(&b, "a"),
            Err(FormatError::ByteLength { .. })
        ));
    }
}
