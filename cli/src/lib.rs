//! The library behind the `taskmill` command.
//!
//! The command's subcommands are implemented here so tests (and other programs) can call
//! them directly; `main.rs` only parses arguments. So far: [`bench`](mod@bench), the benchmark every
//! store is measured with.
#![warn(missing_docs)]

pub mod bench;
