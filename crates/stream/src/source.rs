//! Where a stream's bytes are.
//!
//! A [`Reader`](crate::Reader) reads only what it is asked for: the preamble, the trailer
//! and the header when it opens a stream, then one tile at a time. A [`Source`] hands out
//! byte ranges: anything `AsRef<[u8]>` (a `Vec`, a slice, a memory map) lends them, which
//! is what a consumer that multiplies straight from stored bytes needs
//! ([`Reader::raw_tile`](crate::Reader::raw_tile)); a [`FileSource`] reads each range from
//! the file, so decoding a file of any size keeps only the tiles in flight in memory, and
//! counts what it read ([`FileSource::bytes_read`]).

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A stream's bytes, read by range.
pub trait Source: Send + Sync {
    /// Total bytes. (Not `len`: the blanket implementation for `AsRef<[u8]>` types would
    /// shadow a slice's own `len` wherever this trait is in scope.)
    fn size(&self) -> u64;

    /// Bytes `offset..offset + len`; the caller has checked the range against [`Self::size`].
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>>;

    /// Whether the bytes cannot change while they are read (memory, a private map): then a
    /// tile's checksum is verified on its first read only. A file is read again on every
    /// access, so its tiles are verified every time.
    fn immutable(&self) -> bool {
        true
    }
}

impl<B: AsRef<[u8]> + Send + Sync> Source for B {
    fn size(&self) -> u64 {
        self.as_ref().len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        let start = offset as usize;
        self.as_ref()
            .get(start..start + len)
            .map(Cow::Borrowed)
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
}

/// A stream in a file, read range by range (no memory map).
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
    read: AtomicU64,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a directory, not a .swire stream",
            ));
        }
        Ok(FileSource {
            len: meta.len(),
            file,
            read: AtomicU64::new(0),
        })
    }

    /// Bytes read from the file so far (random access touches only what it needs).
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        let mut buf = vec![0u8; len];
        sparsewire_formats::source::read_exact_at(&self.file, &mut buf, offset)?;
        self.read.fetch_add(len as u64, Ordering::Relaxed);
        Ok(Cow::Owned(buf))
    }

    fn immutable(&self) -> bool {
        false
    }
}
