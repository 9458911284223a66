// The same data check as the pipeline's (one list of what the tests read).
include!("../pipeline/build.rs");
