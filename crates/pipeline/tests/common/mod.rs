//! Shared by the integration tests.

use std::path::PathBuf;

/// ../shared/data beside the project (or $SPARSEWIRE_DATA), if it is there. Tests that
/// need it say so and check nothing without it.
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SPARSEWIRE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    dir.is_dir().then_some(dir)
}
