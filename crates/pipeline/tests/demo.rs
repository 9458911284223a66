//! `sparsewire demo` checks what it reports.

use sparsewire_pipeline::demo;

#[test]
fn the_demo_verifies_what_it_claims() {
    let r = demo::run(None).unwrap();
    assert!(r.bit_exact && r.sparsified_decodes_exactly);
    assert!(r.ratio < 0.9 && r.sparsified_ratio < r.ratio);
    assert_eq!(r.sparsified_tensors, 4, "the four weight matrices");
    assert!(r.matmul.max_abs_error_vs_reference < 1e-3, "{:?}", r.matmul);
}
