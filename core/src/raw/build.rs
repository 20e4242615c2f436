//! How a backend builds the values it hands back: a new task's record, a payload read
//! from storage.

use super::sealed::Sealed;
use crate::headers::Headers;
use crate::store::EnqueueOptions;
use crate::task::{Payload, Task, TaskId, TaskRecord};
use std::sync::Arc;

/// Turns an enqueued [`Task`] into the record a store keeps.
pub trait TaskExt: Sealed {
    /// The record a store keeps for this task, given its id and the enqueue's options: in
    /// INPUT with attempt 0, enqueued at `opts.now`, due at its `run_at` (or `opts.now`
    /// plus its delay, or `opts.now`), its retry limit unset unless it sets one.
    ///
    /// Every store builds records through this, so defaults are resolved identically
    /// everywhere.
    fn into_record(self, id: TaskId, opts: &EnqueueOptions) -> TaskRecord;
}

impl Sealed for Task {}

impl TaskExt for Task {
    fn into_record(self, id: TaskId, opts: &EnqueueOptions) -> TaskRecord {
        self.resolve(id, opts.now)
    }
}

/// Rebuilds a [`Payload`] from stored text.
pub trait PayloadExt: Sealed {
    /// A payload read back from storage, not validated: a payload corrupted at rest fails
    /// when it is decoded, as the failure of its one task.
    fn from_stored(json: impl Into<Arc<str>>) -> Self;
}

impl Sealed for Payload {}

impl PayloadExt for Payload {
    fn from_stored(json: impl Into<Arc<str>>) -> Self {
        Payload(json.into())
    }
}

/// Rebuilds [`Headers`] from stored entries.
pub trait HeadersExt: Sealed {
    /// Headers read back from storage, not validated against the key and size rules (a
    /// record written by another version still reads): put in key order, the last value
    /// of a repeated key kept.
    fn from_stored(entries: Vec<(Box<str>, Box<str>)>) -> Self;
}

impl Sealed for Headers {}

impl HeadersExt for Headers {
    fn from_stored(entries: Vec<(Box<str>, Box<str>)>) -> Self {
        Headers::from_stored(entries)
    }
}
