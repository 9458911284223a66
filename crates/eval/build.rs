// The same data check as the pipeline's tests use (one list of the files the tests read).
include!("../pipeline/build.rs");
