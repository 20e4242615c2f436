//! The record codec (`codec.rs`) and the event channel's decoder (`bus.rs`) for the fuzz
//! targets in `fuzz/` (issue #17): what the store reads from Redis, reachable from
//! outside the crate. Not part of the API: hidden, unstable, and nothing here connects.

use crate::codec::{self, Run};
use redis::Value;
use std::sync::Arc;
use taskmill_core::store::ScheduleState;
use taskmill_core::{Event, Queue, Result, TaskId, TaskRecord};

/// The task every record here is read as: task 1 of topic `t`.
const ID: TaskId = TaskId::new(1);

fn topic() -> Arc<str> {
    Arc::from("t")
}

/// A hash field's reply: nil for `None`, else its bytes.
fn reply(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Nil, |b| Value::BulkString(b.to_vec()))
}

/// Reads `record` (a `tasks` hash value, optionally followed by RS and the `ends` entry
/// of its completion, as the scripts return it) as task 1 of topic `t` in `queue`, with
/// its run's `leases`, `cancels` and `progress` entries (nil for `None`) applied as a
/// `get` does: `Corrupt` when any of them cannot be read.
pub fn decode_record(
    record: &[u8],
    queue: Queue,
    lease: Option<&[u8]>,
    request: Option<&[u8]>,
    progress: Option<&[u8]>,
) -> Result<TaskRecord> {
    let run = Run::from_values(reply(lease), reply(request), reply(progress))?;
    codec::decode_stored(Some(record), ID, &topic(), queue, &run)
}

/// The same for listing, which never fails: what cannot be read is shown with defaults.
pub fn decode_lenient(
    record: &[u8],
    queue: Queue,
    lease: Option<&[u8]>,
    request: Option<&[u8]>,
    progress: Option<&[u8]>,
) -> TaskRecord {
    let run = Run::lenient(reply(lease), reply(request), reply(progress));
    codec::decode_lenient(Some(record), ID, &topic(), queue, &run)
}

/// The `tasks` hash value of `record` (its queue and run are stored elsewhere).
pub fn encode_record(record: &TaskRecord) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_record(record, &mut out);
    out
}

/// Reads a schedule's `schedules` hash value; `Corrupt` when it cannot be decoded.
pub fn decode_schedule(name: &str, stored: &[u8]) -> Result<ScheduleState> {
    codec::decode_schedule(name, stored)
}

/// Decodes a message of the event channel as the subscription does: the events it holds
/// (an undecodable one in an array is skipped), or why the message is not events.
pub fn decode_events(message: &[u8]) -> std::result::Result<Vec<Event>, String> {
    crate::bus::decode_events(message)
}

/// Parses a store URL as [`RedisStore::open`](crate::RedisStore::open) does and builds its
/// client, without connecting: `Misuse` for a URL it does not take.
pub fn parse_url(url: &str) -> Result<()> {
    let (target, options) = crate::options::parse_url(url, crate::RedisOptions::default())?;
    match target {
        crate::options::Target::Single(info) => {
            crate::options::open_client(info, &options)?;
        }
        crate::options::Target::Cluster(nodes) => {
            crate::options::open_cluster_client(nodes, &options)?;
        }
    }
    Ok(())
}
