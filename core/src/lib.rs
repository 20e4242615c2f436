//! taskmill-core: the types every taskmill backend and application shares.
//!
//! - [`Task`] is what an application enqueues; [`TaskRecord`] is what a store keeps.
//! - [`Store`] is the contract a backend implements; [`StoreExt`] adds conveniences.
//! - [`Manager`] claims tasks from a store and runs them on registered [`Processor`]s;
//!   [`Client`] enqueues, looks up, cancels and administers tasks without running any.
//! - [`Event`], [`Stats`], [`Backoff`], and the one [`Error`] type with its [`ErrorKind`].
//!
//! Applications normally depend on the `taskmill` crate, which re-exports all of this and
//! picks backends by cargo feature. Backend authors also use [`raw`], the building blocks
//! of a [`Store`] implementation, which the crate root leaves out.
#![warn(missing_docs)]

mod backoff;
mod client;
mod error;
mod event;
mod headers;
mod manager;
mod middleware;
mod observer;
pub mod raw;
mod schedule;
mod stats;
pub mod store;
mod task;
mod time;

pub use backoff::Backoff;
pub use client::{Client, ScheduleInfo, TaskInfo, BULK_PAGE};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use event::{Event, EventStream};
pub use headers::{Headers, MAX_HEADERS, MAX_HEADERS_BYTES, MAX_HEADER_KEY_BYTES};
pub use manager::{
    Manager, ManagerBuilder, Processor, TaskContext, TaskError, TopicOptions, Typed,
    DEFAULT_MAX_RESULT_BYTES, DEFAULT_RETENTION,
};
pub use middleware::{EnqueueNext, Middleware, Next};
pub use observer::{RunEnd, RunObserver};
pub use schedule::{
    Cadence, Missed, Overlap, Schedule, ScheduleTick, MAX_SCHEDULE_NAME_BYTES, MIN_INTERVAL,
    SCHEDULE_HEADER, SCHEDULE_RETENTION, TICK_GRACE, TICK_HEADER,
};
pub use stats::{Counters, QueueSizes, Stats, TopicStats};
pub use store::{Store, StoreExt, LEASE_EXPIRED_ERROR};
pub use task::{
    AttemptError, Lease, Payload, Queue, Task, TaskId, TaskRecord, TaskStatus, MAX_ERROR_BYTES,
    MAX_KEPT_ERRORS,
};
pub use time::{Clock, Timestamp};

/// The async-trait attribute, re-exported so backends implement [`Store`] with the same
/// version the trait was declared with.
pub use async_trait::async_trait;
