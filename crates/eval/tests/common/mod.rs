//! What the eval tests share.

use std::path::{Path, PathBuf};

/// ../shared/data when it holds `file` (the real model files); `None` (the test is
/// skipped, and says so) on a checkout without it.
pub fn data(file: &str) -> Option<PathBuf> {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    if p.join(file).exists() {
        Some(p.to_path_buf())
    } else {
        eprintln!("skipped: ../shared/data is not here");
        None
    }
}
