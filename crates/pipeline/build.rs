// Tells the tests whether the real tensors of ../shared/data are there: `cfg(shared_data)`
// when every file the tests read is, so a test that needs them is marked ignored (with the
// reason) on a checkout without them, instead of passing without checking anything. CI
// sets SPARSEWIRE_REQUIRE_DATA=1: then their absence fails the build, naming what is
// missing. (scripts/fetch-models.sh produces all but the activations: see the README.)

use std::path::PathBuf;

/// What the tests read, relative to the data folder.
const NEEDED: [&str; 7] = [
    "minilm_l6_v2.bf16.safetensors",
    "minilm_l6_v2.f32.safetensors",
    "minilm_l6_v2_activations.f32.safetensors",
    "minilm_l6_v2_activations_tokens.safetensors",
    "minilm_l6_v2_tokenizer/tokenizer.json",
    "ppocrv4_det.f32.safetensors",
    "sklearn_digits.safetensors",
];

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
    let missing: Vec<&str> = NEEDED
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        println!("cargo::rustc-cfg=shared_data");
        println!("cargo::rustc-env=SPARSEWIRE_DATA_DIR={}", dir.display());
    } else if std::env::var_os("SPARSEWIRE_REQUIRE_DATA").is_some_and(|v| v == "1") {
        panic!(
            "SPARSEWIRE_REQUIRE_DATA=1 but {} lacks {} (set SPARSEWIRE_DATA)",
            dir.display(),
            missing.join(", ")
        );
    }
}
