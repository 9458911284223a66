//! Where a tensor's bytes are: in memory, or in a file read a piece at a time.
//!
//! The stream writer asks for one tile's bytes at a time ([`TensorBytes::read`]), so a file
//! of any size is compressed in memory bounded by the tiles in flight: a slice lends its
//! bytes, a [`FileRange`] reads them with one positioned read (no mmap, so the pages read
//! do not stay in the process's resident set).

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::sync::Arc;

/// A tensor's bytes, read by range.
pub trait TensorBytes: Sync {
    /// Total bytes.
    fn size(&self) -> u64;

    /// Bytes `offset..offset + len`: borrowed when they are in memory, read otherwise.
    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>>;
}

fn out_of_range(offset: u64, len: usize, total: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "bytes {offset}..{} requested of {total}",
            offset + len as u64
        ),
    )
}

impl TensorBytes for [u8] {
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        let start =
            usize::try_from(offset).map_err(|_| out_of_range(offset, len, self.len() as u64))?;
        self.get(start..start.saturating_add(len))
            .map(Cow::Borrowed)
            .ok_or_else(|| out_of_range(offset, len, <[u8]>::len(self) as u64))
    }
}

impl TensorBytes for Vec<u8> {
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        self.as_slice().read(offset, len)
    }
}

/// `len` bytes of a file starting at `offset`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

/// Reads exactly `buf.len()` bytes at `offset` of `file`.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    read_exact_at_raw(file, buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            // The file was shorter than its header said when it was opened: it changed.
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ends before byte {}: was it truncated or replaced while being read?",
                    offset + buf.len() as u64
                ),
            )
        } else {
            e
        }
    })
}

fn read_exact_at_raw(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

impl TensorBytes for FileRange {
    fn size(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(out_of_range(offset, len, self.len));
        }
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, self.offset + offset)?;
        Ok(Cow::Owned(buf))
    }
}
