//! Tells the tests whether the real tensors of ../shared/data are there: `cfg(shared_data)`
//! when they are, so a test that needs them is marked ignored (with the reason) on a
//! checkout without them, instead of passing without checking anything. CI sets
//! SPARSEWIRE_REQUIRE_DATA=1: then their absence fails the build.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_data)");
    println!("cargo::rerun-if-env-changed=SPARSEWIRE_DATA");
    println!("cargo::rerun-if-env-changed=SPARSEWIRE_REQUIRE_DATA");
    let dir = std::env::var_os("SPARSEWIRE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
                .join("../../../shared/data")
        });
    println!("cargo::rerun-if-changed={}", dir.display());
    if dir.join("minilm_l6_v2.bf16.safetensors").is_file() {
        println!("cargo::rustc-cfg=shared_data");
        println!("cargo::rustc-env=SPARSEWIRE_DATA_DIR={}", dir.display());
    } else if std::env::var_os("SPARSEWIRE_REQUIRE_DATA").is_some_and(|v| v == "1") {
        panic!(
            "SPARSEWIRE_REQUIRE_DATA=1 but the shared tensors are not in {} (set SPARSEWIRE_DATA)",
            dir.display()
        );
    }
}
