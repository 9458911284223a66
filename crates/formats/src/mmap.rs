//! Read-only memory maps: the crate's one `unsafe` call.
//!
//! Used where bytes must be borrowed in place, such as a matrix multiply straight from a
//! stream's stored tiles. Reading a file piece by piece ([`crate::source::FileRange`]) is
//! preferred everywhere else: mapped pages that were read stay in the process's resident
//! set, so a long sequential pass over a large mapped file grows it.

use std::fs::File;
use std::io;
use std::path::Path;

/// Maps `path` read-only.
pub fn map_file(path: &Path) -> io::Result<memmap2::Mmap> {
    let f = File::open(path)?;
    map(&f)
}

/// Maps an open file read-only.
#[allow(unsafe_code)]
pub fn map(f: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: memmap2's `map` is unsafe because another process may change the file while
    // it is mapped, which Rust cannot see. The map is read-only and every stream tile is
    // checksummed before it is decoded; a file truncated underneath can still raise
    // SIGBUS, as with any mmap reader.
    unsafe { memmap2::Mmap::map(f) }
}
