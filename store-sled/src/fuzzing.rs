//! The record codec (`codec.rs`) for the fuzz targets in `fuzz/` (issue #17): what the
//! store reads from disk, reachable from outside the crate. Not part of the API: hidden,
//! unstable, and no store is opened by anything here.

use crate::codec::{self, Chunk, KeyParts, State};
use std::sync::Arc;
use taskmill_core::store::ScheduleState;
use taskmill_core::{Counters, Result, TaskId, TaskRecord, Timestamp};

/// The topic and key of the task [`decode_record`] and [`complete_in_place`] read a bare
/// record as: task 1 of topic `t`, priority 0, no unique key.
fn key() -> KeyParts<'static> {
    KeyParts {
        id: TaskId::new(1),
        priority: 0,
        topic: "t",
        unique: None,
    }
}

/// Reads the value of the chunk key `first..=last` as the store does: each entry whose
/// head is readable, decoded (or its `Corrupt` error), in id order, then the DEAD
/// placeholder that stands for the unreadable rest, if anything was lost.
pub fn decode_chunk(first: u64, last: u64, value: &[u8]) -> Vec<Result<TaskRecord>> {
    let chunk = Chunk::parse(first, last, value);
    let mut out: Vec<_> = chunk
        .entries
        .iter()
        .map(|(_, range)| {
            // `parse` kept only entries whose head reads.
            let (parts, bytes) = KeyParts::decode(&value[range.clone()]).expect("parsed");
            let topic: Arc<str> = parts.topic.into();
            codec::decode_record(&parts, &topic, bytes)
        })
        .collect();
    out.extend(chunk.placeholder(first, last, value).map(Ok));
    out
}

/// The chunk value holding `records`, in the order given, as the store writes it.
pub fn encode_chunk(records: &[TaskRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::start_chunk(&mut out);
    for r in records {
        KeyParts::of(r).encode_entry(r, &mut out);
    }
    codec::end_chunk(&mut out, records.len());
    out
}

/// Reads `bytes` as the stored record (an entry's bytes after its head) of task 1 of
/// topic `t`; `Corrupt` when it cannot be decoded.
pub fn decode_record(bytes: &[u8]) -> Result<TaskRecord> {
    let key = key();
    codec::decode_record(&key, &Arc::from(key.topic), bytes)
}

/// The stored form of `record` (without the entry head that holds its id, priority,
/// topic and unique key).
pub fn encode_record(record: &TaskRecord) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_record(record, &mut out);
    out
}

/// Whether what the indexes read of `bytes` at open (without decoding the rest) is what
/// `record`, decoded from them, says. Records of format 1 are the documented exception:
/// their failure time is `finished_at` in the record but not read for the indexes.
pub fn state_agrees(bytes: &[u8], record: &TaskRecord) -> bool {
    let mut expected = State::of(record);
    if bytes.first() == Some(&1) {
        expected.finished_at = None;
    }
    codec::decode_state(bytes) == Some(expected)
}

/// `codec::complete_in_place` (the kept completion of `apply`, made on the record's
/// bytes) on the stored record `bytes` (of the task [`decode_record`] reads): the new
/// record's bytes and whether it keeps its unique key, or `None` when the store takes the
/// decoding way.
pub fn complete_in_place(
    bytes: &[u8],
    now: Timestamp,
    result: Option<&str>,
) -> Option<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let keeps_unique = codec::complete_in_place(bytes, now, result, &mut out)?;
    Some((out, keeps_unique))
}

/// Reads the state of the schedule named by the key bytes `name`; `Corrupt` when it
/// cannot be decoded.
pub fn decode_schedule(name: &[u8], value: &[u8]) -> Result<ScheduleState> {
    codec::decode_schedule(name, value)
}

/// The stored form of a schedule's state (its name is the key's).
pub fn encode_schedule(state: &ScheduleState) -> Vec<u8> {
    codec::encode_schedule(state)
}

/// Reads a stats row: a topic's counters and paused flag; `Corrupt` when it cannot be
/// decoded.
pub fn decode_row(value: &[u8]) -> Result<(Counters, bool)> {
    codec::decode_row(value)
}

/// The stored form of a stats row.
pub fn encode_row(counters: &Counters, paused: bool) -> Vec<u8> {
    codec::encode_row(counters, paused)
}

/// Parses a store URL as [`SledStore::from_url`](crate::SledStore::from_url) does, without
/// opening anything: the directory, or `Misuse` for a URL it does not take.
pub fn parse_url(url: &str) -> Result<std::path::PathBuf> {
    crate::options::parse_url(url).map(|(path, _)| path)
}
