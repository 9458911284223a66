//! The README's library example runs and its assertions hold.

#[path = "../examples/library.rs"]
mod library;

#[test]
fn the_library_example_runs() {
    library::main().unwrap();
}
