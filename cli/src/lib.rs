//! The library behind the `taskmill` command.
//!
//! The command's subcommands are implemented here so tests (and other programs) can call
//! them directly; `main.rs` only parses arguments and turns a [`Failure`](admin::Failure)
//! into stderr and an exit status:
//!
//! - [`admin`]: the operator's commands (`stats`, `ls`, `show`, `enqueue`, `retry`,
//!   `delete`, `cancel`, `pause`, `resume`, `cron ls|pause|resume`,
//!   `watch`), each on a `Client` of the store;
//! - [`serve`](mod@serve): the dashboard and `/metrics` on one server;
//! - [`bench`](mod@bench): the benchmark every store is measured with.
#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod serve;
