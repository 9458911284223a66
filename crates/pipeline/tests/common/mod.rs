//! Shared by the integration tests.

use std::path::PathBuf;

/// The real tensors (../shared/data, or $SPARSEWIRE_DATA), found by the build script: a
/// test that calls this is marked `#[cfg_attr(not(shared_data), ignore = ...)]`, so it is
/// reported as ignored, with the reason, where the data is absent.
#[allow(dead_code)]
pub fn data_dir() -> PathBuf {
    match option_env!("SPARSEWIRE_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => panic!("the shared tensors were not found at build time (set SPARSEWIRE_DATA)"),
    }
}
