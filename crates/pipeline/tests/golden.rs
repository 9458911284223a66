//! Committed golden streams decode to their cases, and the encoder still writes them
//! byte for byte (see `sparsewire_pipeline::golden`).

#[test]
fn golden_streams_are_stable() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    match sparsewire_pipeline::golden::check(&dir, false) {
        Ok(lines) => assert_eq!(lines.len(), sparsewire_pipeline::golden::cases().len()),
        Err(e) => panic!("{e}"),
    }
}
