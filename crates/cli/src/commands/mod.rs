//! One file per subcommand: its arguments, what it asks the libraries for, what it prints.

pub mod bench;
pub mod compress;
pub mod decompress;
pub mod demo;
pub mod inspect;
pub mod matmul;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod train;
