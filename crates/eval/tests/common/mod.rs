//! What the eval tests share.

use std::path::PathBuf;

/// The real tensors (../shared/data, or $SPARSEWIRE_DATA), found by the build script: the
/// tests that call this are ignored, with the reason, where the data is absent.
pub fn data_dir() -> PathBuf {
    match option_env!("SPARSEWIRE_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => panic!("the shared tensors were not found at build time (set SPARSEWIRE_DATA)"),
    }
}
