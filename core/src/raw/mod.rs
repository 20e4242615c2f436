//! For backend authors: the building blocks a [`Store`](crate::Store) implementation uses
//! and an application never needs.
//!
//! Applications enqueue, run and inspect tasks through the crate root and
//! [`store`](crate::store); this module holds what only a backend touches, so that the
//! application API stays small. A store crate imports it by name:
//!
//! ```
//! use taskmill_core::raw::{LocalBus, RecordExt, TaskExt};
//! ```
//!
//! - Records: [`TaskExt::into_record`] builds a new task's record,
//!   [`PayloadExt::from_stored`] and [`HeadersExt::from_stored`] rebuild a payload and
//!   headers read from storage, and [`RecordExt`]
//!   moves a record between the queues (`claim`, `apply_outcome`, `recover`, `requeue`),
//!   counting each move, for stores that keep whole records.
//! - [`validate_topic`]: the one rule for topic names, which backends put inside keys and
//!   file names.
//! - [`LocalBus`]: in-process events and wake-ups, for stores with no bus of their own.
//! - [`Call`], [`CallThread`] and [`store_via_calls!`](crate::store_via_calls): the
//!   `Store` impl of a store that runs every call on a thread of its own, written once.
//! - [`IdMap`], [`IdSet`], [`IdHasher`]: hash tables keyed by task id.
//! - [`StoreUrl`] and [`ServerAddress`]: the parser of the `scheme://location?key=value`
//!   URLs of `from_url`, and the address of a server one names.
//!
//! The extension traits are sealed: they are implemented for taskmill's own types only,
//! so a method can be added to them without breaking anyone.

mod build;
mod call;
mod id_map;
mod lifecycle;
mod local_bus;

pub use crate::store::url::{ServerAddress, StoreUrl};
pub use crate::task::validate_topic;
pub use build::{HeadersExt, PayloadExt, TaskExt};
pub use call::{call, Call, CallThread, Reply};
pub use id_map::{IdHasher, IdMap, IdSet};
pub use lifecycle::RecordExt;
pub use local_bus::{LocalBus, DEFAULT_EVENT_BUFFER};

pub(crate) mod sealed {
    /// Keeps the `raw` extension traits implemented by taskmill's own types alone.
    pub trait Sealed {}
}
