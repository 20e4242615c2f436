//! The record codec: chunk values, the entries in them, task records, stats rows and
//! schedule states, to and from bytes. Where each kind of value is stored (its key) is `layout.rs`.
//!
//! Integers in values are little-endian, but for the stats rows and the counters in
//! `meta` (big-endian).

use std::ops::Range;
use std::sync::Arc;
use taskmill_core::raw::{HeadersExt, PayloadExt};
use taskmill_core::store::{ScheduleEntry, ScheduleState};
use taskmill_core::{
    AttemptError, Counters, Error, Headers, Lease, Payload, Queue, Result, TaskId, TaskRecord,
    Timestamp,
};

/// The topic of the DEAD placeholder that stands for the unreadable part of a chunk.
pub(crate) const CORRUPT_TOPIC: &str = "(corrupt)";

/// The first byte of every chunk value; another value is a chunk of a later format.
const CHUNK_FORMAT: u8 = 3;
/// The format byte and the entry count.
const CHUNK_HEAD: usize = 5;
/// The first byte of every record this code writes: format 3, which is format 2 with the
/// [`flag::HEADERS`] flag. Records of format 2 (written before headers were kept; they
/// read with none) and of format 1 (before COMPLETED and CANCELLED were kept) are read
/// too; another value is a later format.
const FORMAT: u8 = 3;
/// Records of format 2: as [`FORMAT`], without headers.
const FORMAT_2: u8 = 2;

/// A chunk's value split into its entries, as far as it can be read.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Each readable entry: its task and where its bytes are in the value.
    pub entries: Vec<(TaskId, Range<usize>)>,
    /// Where the value stops making sense, when it does before its end: the entries from
    /// there on are lost.
    pub broken_at: Option<usize>,
    /// The id that stands for the lost entries (see [`Chunk::placeholder`]): the key's
    /// last, which no other chunk holds, unless it was read (then nothing is lost).
    pub placeholder: Option<TaskId>,
    /// The first id that may be lost: after the last entry read.
    lost_from: u64,
}

impl Chunk {
    /// Splits the value of the chunk `first..=last`. Never fails: what cannot be read is
    /// `broken_at`.
    pub fn parse(first: u64, last: u64, value: &[u8]) -> Chunk {
        let mut chunk = Chunk::default();
        let mut at = CHUNK_HEAD;
        let mut next = first;
        // Whether the entry of id `u64::MAX` was read: no id can follow it, so `next`
        // cannot say so (found by the `sled_record` fuzz target: `next` overflowed).
        let mut read_the_last_id = false;
        let count = match value.get(..CHUNK_HEAD) {
            Some([CHUNK_FORMAT, count @ ..]) => {
                Some(u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize)
            }
            _ => None,
        };
        let ok = count.is_some();
        while ok && at < value.len() {
            let entry = value
                .get(at..at + 4)
                .map(|len| u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize)
                .and_then(|len| Some(at + 4..(at + 4).checked_add(len)?))
                .filter(|range| range.end <= value.len())
                .and_then(|range| Some((KeyParts::decode(&value[range.clone()])?.0.id, range)));
            // Ids are increasing and inside the key's range.
            match entry.filter(|(id, _)| (next..=last).contains(&id.get())) {
                Some((id, range)) => {
                    at = range.end;
                    chunk.entries.push((id, range));
                    match id.get().checked_add(1) {
                        Some(id) => next = id,
                        None => {
                            read_the_last_id = true;
                            break;
                        }
                    }
                }
                None => break,
            }
        }
        // A chunk cut at an entry's end is caught by its count.
        if !ok || at < value.len() || Some(chunk.entries.len()) != count {
            // Without a readable head, every byte is kept.
            chunk.broken_at = Some(if ok { at } else { 0 });
            chunk.placeholder = (!read_the_last_id && next <= last).then(|| TaskId::new(last));
            chunk.lost_from = next;
        }
        chunk
    }

    /// The DEAD record that stands for the unreadable part of this chunk, the value of the
    /// chunk `first..=last`, if anything was lost: the tasks that were there (some of the
    /// ids after the last entry read; the key does not say which, nor which had finished)
    /// are lost, and this tells a human so. Its arguments are the unreadable bytes, as
    /// text. Made the same way at every read, so it does not change when the chunk is
    /// rewritten with it.
    pub fn placeholder(&self, first: u64, last: u64, value: &[u8]) -> Option<TaskRecord> {
        let (id, broken_at) = (self.placeholder?, self.broken_at?);
        let tail = &value[broken_at.min(value.len())..];
        let from = self.lost_from;
        let args = Payload::from_stored(String::from_utf8_lossy(tail).into_owned());
        let mut record = TaskRecord::new(id, CORRUPT_TOPIC, args);
        record.queue = Queue::Dead;
        let message = format!(
            "corrupt data: the stored chunk of tasks {first}..={last} cannot be read \
                 from byte {broken_at} of {}: the tasks it still held among \
                 {from}..={last} are lost (their topics and arguments are unknown); the \
                 bytes are kept as this record's arguments. Delete this record once seen.",
            value.len()
        );
        // Attempt 0 at the epoch: it never ran, and the record is made the same at every
        // read.
        record.errors = vec![AttemptError {
            attempt: 0,
            at: Timestamp::EPOCH,
            message: message.into(),
        }];
        Some(record)
    }

    /// Where the entry of `id` is, if it is readable.
    pub fn find(&self, id: TaskId) -> Option<Range<usize>> {
        let i = self.entries.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        Some(self.entries[i].1.clone())
    }
}

/// The unchanging part of a task, kept at the head of its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyParts<'a> {
    pub id: TaskId,
    pub priority: i16,
    pub topic: &'a str,
    pub unique: Option<&'a str>,
}

impl KeyParts<'_> {
    /// Appends the entry of this task with `record`: its length, then id, priority, topic,
    /// unique key and the record.
    pub fn encode_entry(&self, record: &TaskRecord, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.id.get().to_le_bytes());
        out.extend_from_slice(&self.priority.to_le_bytes());
        out.extend_from_slice(&(self.topic.len() as u32).to_le_bytes());
        out.extend_from_slice(self.topic.as_bytes());
        match self.unique {
            None => out.push(0),
            Some(u) => {
                out.push(1);
                out.extend_from_slice(&(u.len() as u32).to_le_bytes());
                out.extend_from_slice(u.as_bytes());
            }
        }
        encode_record(record, out);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// An entry (without its length) split into its head and its record's bytes; `None`
    /// when the head cannot be read.
    pub fn decode(entry: &[u8]) -> Option<(KeyParts<'_>, &[u8])> {
        let mut r = Reader(entry);
        let id = r.u64()?;
        let priority = i16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let topic = r.str()?;
        let unique = match r.take(1)? {
            [0] => None,
            [1] => Some(r.str()?),
            _ => return None,
        };
        let parts = KeyParts {
            id: TaskId::new(id),
            priority,
            topic,
            unique,
        };
        Some((parts, r.0))
    }

    /// The unchanging part of `record`.
    pub fn of(record: &TaskRecord) -> KeyParts<'_> {
        KeyParts {
            id: record.id,
            priority: record.priority,
            topic: &record.topic,
            unique: record.unique_key.as_deref(),
        }
    }
}

/// Starts a chunk's value: its format and, once [`end_chunk`] sets it, its entry count.
pub(crate) fn start_chunk(out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[CHUNK_FORMAT, 0, 0, 0, 0]);
}

/// Sets the entry count of the chunk in `out`.
pub(crate) fn end_chunk(out: &mut [u8], count: usize) {
    out[1..CHUNK_HEAD].copy_from_slice(&(count as u32).to_le_bytes());
}

/// The flags of a record (formats 2 and 3): which optional fields follow, and
/// [`TaskRecord::unique_while_kept`].
mod flag {
    pub const LEASE: u16 = 1;
    pub const EXTERNAL_ID: u16 = 1 << 1;
    pub const FINISHED_AT: u16 = 1 << 2;
    pub const MAX_RETRIES: u16 = 1 << 3;
    pub const FIRST_STARTED_AT: u16 = 1 << 4;
    pub const STARTED_AT: u16 = 1 << 5;
    /// Also the cancel request of a task in WORK, which the indexes read at open.
    pub const CANCELLED_BY: u16 = 1 << 6;
    pub const ERRORS: u16 = 1 << 7;
    pub const RESULT: u16 = 1 << 8;
    pub const PROGRESS: u16 = 1 << 9;
    pub const UNIQUE_WHILE_KEPT: u16 = 1 << 10;
    /// Format 3 only: the record carries headers. Unset when a task has none, so a task
    /// without headers costs no byte for them.
    pub const HEADERS: u16 = 1 << 11;
    /// Every flag this code writes; a record with another one set is of a later format.
    pub const KNOWN: u16 = (1 << 12) - 1;
    /// Every flag of format 2.
    pub const KNOWN_2: u16 = HEADERS - 1;
}

/// The flags of a record of format 1, the layout-3 codec before history was kept.
mod v1 {
    pub const FORMAT: u8 = 1;
    pub const HAS_LEASE: u8 = 1;
    pub const HAS_EXTERNAL_ID: u8 = 2;
    pub const HAS_LAST_ERROR: u8 = 4;
    pub const HAS_FAILED_AT: u8 = 8;
}

fn queue_byte(queue: Queue) -> u8 {
    match queue {
        Queue::Input => 0,
        Queue::Work => 1,
        Queue::Dead => 2,
        Queue::Completed => 3,
        Queue::Cancelled => 4,
        // `Queue` is non-exhaustive, but no transition of this store's core version moves
        // a task elsewhere; a queue it does not know is stored as DEAD, for a human.
        _ => 2,
    }
}

fn byte_queue(byte: u8) -> Option<Queue> {
    Some(match byte {
        0 => Queue::Input,
        1 => Queue::Work,
        2 => Queue::Dead,
        3 => Queue::Completed,
        4 => Queue::Cancelled,
        _ => return None,
    })
}

/// Appends a string with its u32 length.
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    out.extend_from_slice(&t.as_millis().to_le_bytes());
}

/// A record's value (format 3): format, queue, flags (u16), attempt, enqueued at, run at,
/// then the optional fields in this order, each when its flag is set: finished at, the
/// lease (token, deadline, owner), max retries, first and latest start, external id,
/// cancelled by, the errors (a u32 count, then each one's attempt, time and message), the
/// result, the progress, the headers (a u32 count, then each key and value, in key
/// order); and the arguments' JSON as the rest. Format 2 is the same without headers. What the indexes read at
/// open (queue, due time, finish time, lease, flags) comes first, at fixed places or
/// after fixed-size fields only. Little-endian; strings carry a u32 length. Appended to
/// `out`.
pub(crate) fn encode_record(record: &TaskRecord, out: &mut Vec<u8>) {
    let r = record;
    let flags = [
        (r.lease.is_some(), flag::LEASE),
        (r.external_id.is_some(), flag::EXTERNAL_ID),
        (r.finished_at.is_some(), flag::FINISHED_AT),
        (r.max_retries.is_some(), flag::MAX_RETRIES),
        (r.first_started_at.is_some(), flag::FIRST_STARTED_AT),
        (r.started_at.is_some(), flag::STARTED_AT),
        (r.cancelled_by.is_some(), flag::CANCELLED_BY),
        (!r.errors.is_empty(), flag::ERRORS),
        (r.result.is_some(), flag::RESULT),
        (r.progress.is_some(), flag::PROGRESS),
        (r.unique_while_kept, flag::UNIQUE_WHILE_KEPT),
        (!r.headers.is_empty(), flag::HEADERS),
    ]
    .iter()
    .fold(0u16, |flags, &(set, f)| if set { flags | f } else { flags });
    out.extend_from_slice(&[FORMAT, queue_byte(r.queue)]);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&r.attempt.to_le_bytes());
    put_time(out, r.enqueued_at);
    put_time(out, r.run_at);
    if let Some(t) = r.finished_at {
        put_time(out, t);
    }
    if let Some(lease) = &r.lease {
        out.extend_from_slice(&lease.token.to_le_bytes());
        put_time(out, lease.deadline);
        put_str(out, &lease.owner);
    }
    if let Some(n) = r.max_retries {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for t in [r.first_started_at, r.started_at].into_iter().flatten() {
        put_time(out, t);
    }
    for s in [&r.external_id, &r.cancelled_by].into_iter().flatten() {
        put_str(out, s);
    }
    if !r.errors.is_empty() {
        out.extend_from_slice(&(r.errors.len() as u32).to_le_bytes());
        for e in &r.errors {
            out.extend_from_slice(&e.attempt.to_le_bytes());
            put_time(out, e.at);
            put_str(out, &e.message);
        }
    }
    for p in [&r.result, &r.progress].into_iter().flatten() {
        put_str(out, p.as_str());
    }
    if !r.headers.is_empty() {
        out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
        for (key, value) in r.headers.iter() {
            put_str(out, key);
            put_str(out, value);
        }
    }
    out.extend_from_slice(r.args.as_str().as_bytes());
}

/// The record a kept completion makes of a stored record in WORK, appended to `out`, made
/// from its bytes without decoding them: the bytes of
/// [`RecordExt::apply_outcome`](taskmill_core::raw::RecordExt::apply_outcome) applied to
/// the decoded record with `Complete { result }`, no progress, kept, at `now`, re-encoded
/// (format 3, COMPLETED, `finished_at = now`, no lease, the result). Whether it keeps its
/// unique key once finished (`unique_while_kept`) is the answer.
///
/// `None`, with `out` as it was, for a record this does not handle, which the caller
/// then decodes: of format 1, not in WORK, with a cancel request (it ends CANCELLED) or a
/// result already, or one that would not decode. Every field is walked, so a record that
/// would not decode is never rewritten here; but for the lease's owner, which is dropped
/// unread (its length is checked, not its text).
pub(crate) fn complete_in_place(
    bytes: &[u8],
    now: Timestamp,
    result: Option<&str>,
    out: &mut Vec<u8>,
) -> Option<bool> {
    let mut r = Reader(bytes);
    let [format, queue] = r.take(2)?.try_into().ok()?;
    let flags = r.u16()?;
    let known = match format {
        FORMAT => flag::KNOWN,
        FORMAT_2 => flag::KNOWN_2,
        _ => return None,
    };
    let refused = !known | flag::CANCELLED_BY | flag::RESULT;
    if byte_queue(queue)? != Queue::Work || flags & refused != 0 {
        return None;
    }
    let has = |f: u16| flags & f != 0;
    // Attempt, enqueued at, run at: kept as they are.
    let fixed = r.take(4 + 8 + 8)?;
    r.optional(has(flag::FINISHED_AT), Reader::time)?;
    r.optional(has(flag::LEASE), |r| {
        r.take(16)?;
        let len = r.u32()? as usize;
        r.take(len)
    })?;
    let kept_from = bytes.len() - r.0.len();
    r.optional(has(flag::MAX_RETRIES), Reader::u32)?;
    r.optional(has(flag::FIRST_STARTED_AT), Reader::time)?;
    r.optional(has(flag::STARTED_AT), Reader::time)?;
    r.optional(has(flag::EXTERNAL_ID), Reader::str)?;
    if has(flag::ERRORS) {
        for _ in 0..r.u32()? {
            r.take(4 + 8)?;
            r.str()?;
        }
    }
    // The result goes here, between the errors and the progress.
    let result_at = bytes.len() - r.0.len();
    r.optional(has(flag::PROGRESS), Reader::str)?;
    if has(flag::HEADERS) {
        for _ in 0..r.u32()? {
            r.str()?;
            r.str()?;
        }
    }
    // Arguments are JSON, nearly always ASCII, which is checked faster.
    if !r.0.is_ascii() {
        std::str::from_utf8(r.0).ok()?;
    }
    let set = flag::FINISHED_AT | if result.is_some() { flag::RESULT } else { 0 };
    let flags = (flags | set) & !flag::LEASE;
    out.extend_from_slice(&[FORMAT, queue_byte(Queue::Completed)]);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(fixed);
    put_time(out, now);
    out.extend_from_slice(&bytes[kept_from..result_at]);
    if let Some(result) = result {
        put_str(out, result);
    }
    out.extend_from_slice(&bytes[result_at..]);
    Some(has(flag::UNIQUE_WHILE_KEPT))
}

/// Reads a value front to back; every read past the end is `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn time(&mut self) -> Option<Timestamp> {
        Some(Timestamp::from_millis(self.u64()? as i64))
    }
    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
    /// The field when `set`: `Some(None)` when not, `None` when it cannot be read.
    fn optional<T>(
        &mut self,
        set: bool,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if set {
            read(self).map(Some)
        } else {
            Some(None)
        }
    }
}

/// What the indexes need of a record, read without decoding the rest of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    pub queue: Queue,
    pub run_at: Timestamp,
    /// When it moved to DEAD, COMPLETED or CANCELLED (not read from records of format 1,
    /// which kept it for DEAD only, where the indexes do not need it).
    pub finished_at: Option<Timestamp>,
    /// The lease's token and deadline.
    pub lease: Option<(u64, Timestamp)>,
    /// Whether a cancel was requested (or it was cancelled).
    pub cancel_requested: bool,
    /// Whether it holds its unique key while kept once finished.
    pub unique_while_kept: bool,
    /// Whether it ran before (`attempt > 0`): in INPUT and not yet due, it is retrying.
    pub ran: bool,
}

impl State {
    /// The state of a record in memory, as [`decode_state`] reads it back once stored.
    pub fn of(record: &TaskRecord) -> State {
        State {
            queue: record.queue,
            run_at: record.run_at,
            finished_at: record.finished_at,
            lease: record.lease.as_ref().map(|l| (l.token, l.deadline)),
            cancel_requested: record.is_cancel_requested(),
            unique_while_kept: record.unique_while_kept,
            ran: record.attempt > 0,
        }
    }
}

/// The [`State`] of a stored record; `None` when it cannot be decoded.
pub(crate) fn decode_state(bytes: &[u8]) -> Option<State> {
    let mut r = Reader(bytes);
    let [format, queue] = r.take(2)?.try_into().ok()?;
    let queue = byte_queue(queue)?;
    if format == v1::FORMAT {
        return decode_state_v1(queue, r);
    }
    let flags = r.u16()?;
    let known = match format {
        FORMAT => flag::KNOWN,
        FORMAT_2 => flag::KNOWN_2,
        _ => return None,
    };
    if flags & !known != 0 {
        return None;
    }
    let attempt = r.u32()?;
    r.take(8)?;
    let run_at = r.time()?;
    let finished_at = r.optional(flags & flag::FINISHED_AT != 0, Reader::time)?;
    let lease = r.optional(flags & flag::LEASE != 0, |r| Some((r.u64()?, r.time()?)))?;
    Some(State {
        queue,
        run_at,
        finished_at,
        lease,
        cancel_requested: flags & flag::CANCELLED_BY != 0,
        unique_while_kept: flags & flag::UNIQUE_WHILE_KEPT != 0,
        ran: attempt > 0,
    })
}

/// [`decode_state`] of a record of format 1: format, queue, flags (u8), attempt, max
/// retries, enqueued at, run at, then the lease, external id, last error and failure
/// time when present, and the arguments. It knew INPUT, WORK and DEAD only.
fn decode_state_v1(queue: Queue, mut r: Reader<'_>) -> Option<State> {
    let flags = r.take(1)?[0];
    if queue.is_finished() {
        return None;
    }
    let attempt = r.u32()?;
    r.take(12)?;
    let run_at = r.time()?;
    let lease = r.optional(flags & v1::HAS_LEASE != 0, |r| Some((r.u64()?, r.time()?)))?;
    Some(State {
        queue,
        run_at,
        finished_at: None,
        lease,
        cancel_requested: false,
        unique_while_kept: false,
        ran: attempt > 0,
    })
}

/// Reads a stored record back; `Corrupt` when it cannot be decoded. `topic` is the key's,
/// shared rather than allocated per record. Records of format 1 read as they would have
/// been written now: their retry limit set, their failure time as `finished_at`, their
/// last error as the one error they remember.
pub(crate) fn decode_record(
    key: &KeyParts<'_>,
    topic: &Arc<str>,
    bytes: &[u8],
) -> Result<TaskRecord> {
    let decoded = match bytes.first() {
        Some(&v1::FORMAT) => decode_v1(key, topic, bytes),
        _ => decode_v2(key, topic, bytes),
    };
    decoded.ok_or_else(|| {
        Error::corrupt(format!(
            "cannot decode the stored record of task {} ({} bytes)",
            key.id,
            bytes.len()
        ))
    })
}

/// A record of the fields every format has, the rest empty.
fn base_record(
    key: &KeyParts<'_>,
    topic: &Arc<str>,
    state: &State,
    attempt: u32,
    enqueued_at: Timestamp,
    lease: Option<Lease>,
    args: &str,
) -> TaskRecord {
    let mut record = TaskRecord::new(key.id, topic.clone(), Payload::from_stored(args));
    record.queue = state.queue;
    record.attempt = attempt;
    record.priority = key.priority;
    record.enqueued_at = enqueued_at;
    record.run_at = state.run_at;
    record.unique_key = key.unique.map(Box::from);
    record.unique_while_kept = state.unique_while_kept;
    record.finished_at = state.finished_at;
    record.lease = lease;
    record
}

/// Reads a record of format 3 or 2 (which [`decode_state`] tells apart by their flags).
fn decode_v2(key: &KeyParts<'_>, topic: &Arc<str>, bytes: &[u8]) -> Option<TaskRecord> {
    let state = decode_state(bytes)?;
    let mut r = Reader(bytes);
    r.take(2)?;
    let flags = r.u16()?;
    let has = |f: u16| flags & f != 0;
    let attempt = r.u32()?;
    let enqueued_at = r.time()?;
    // The due and finish times, and the lease's token and deadline, are in `state`.
    r.take(8 + if has(flag::FINISHED_AT) { 8 } else { 0 })?;
    let lease = match state.lease {
        Some((token, deadline)) => {
            r.take(16)?;
            let owner = r.str()?.into();
            Some(Lease {
                owner,
                token,
                deadline,
            })
        }
        None => None,
    };
    let max_retries = r.optional(has(flag::MAX_RETRIES), Reader::u32)?;
    let first_started_at = r.optional(has(flag::FIRST_STARTED_AT), Reader::time)?;
    let started_at = r.optional(has(flag::STARTED_AT), Reader::time)?;
    let external_id = r.optional(has(flag::EXTERNAL_ID), Reader::str)?;
    let cancelled_by = r.optional(has(flag::CANCELLED_BY), Reader::str)?;
    let mut errors = Vec::new();
    if has(flag::ERRORS) {
        // Not preallocated: the count is as untrusted as the rest of the bytes.
        for _ in 0..r.u32()? {
            let attempt = r.u32()?;
            let at = r.time()?;
            let message = r.str()?.into();
            errors.push(AttemptError {
                attempt,
                at,
                message,
            });
        }
    }
    let result = r.optional(has(flag::RESULT), Reader::str)?;
    let progress = r.optional(has(flag::PROGRESS), Reader::str)?;
    let mut headers = Vec::new();
    if has(flag::HEADERS) {
        // Not preallocated either; put in key order by `from_stored`.
        for _ in 0..r.u32()? {
            let key = r.str()?.into();
            let value = r.str()?.into();
            headers.push((key, value));
        }
    }
    let args = std::str::from_utf8(r.0).ok()?;
    let mut record = base_record(key, topic, &state, attempt, enqueued_at, lease, args);
    record.max_retries = max_retries;
    record.first_started_at = first_started_at;
    record.started_at = started_at;
    record.external_id = external_id.map(Box::from);
    record.cancelled_by = cancelled_by.map(Box::from);
    record.errors = errors;
    record.result = result.map(Payload::from_stored);
    record.progress = progress.map(Payload::from_stored);
    if !headers.is_empty() {
        record.headers = Headers::from_stored(headers);
    }
    Some(record)
}

fn decode_v1(key: &KeyParts<'_>, topic: &Arc<str>, bytes: &[u8]) -> Option<TaskRecord> {
    let state = decode_state(bytes)?;
    let mut r = Reader(bytes);
    let flags = r.take(3)?[2];
    let has = |f: u8| flags & f != 0;
    let attempt = r.u32()?;
    let max_retries = r.u32()?;
    let enqueued_at = r.time()?;
    r.take(8)?;
    let lease = match state.lease {
        Some((token, deadline)) => {
            r.take(16)?;
            let owner = r.str()?.into();
            Some(Lease {
                owner,
                token,
                deadline,
            })
        }
        None => None,
    };
    let external_id = r.optional(has(v1::HAS_EXTERNAL_ID), Reader::str)?;
    let last_error = r.optional(has(v1::HAS_LAST_ERROR), Reader::str)?;
    let failed_at = r.optional(has(v1::HAS_FAILED_AT), Reader::time)?;
    let args = std::str::from_utf8(r.0).ok()?;
    let mut record = base_record(key, topic, &state, attempt, enqueued_at, lease, args);
    record.max_retries = Some(max_retries);
    record.external_id = external_id.map(Box::from);
    // Format 1 set the failure time on the move to DEAD only, and cleared it on requeue.
    record.finished_at = failed_at;
    record.errors = last_error
        .map(|message| AttemptError {
            attempt,
            at: failed_at.unwrap_or(enqueued_at),
            message: message.into(),
        })
        .into_iter()
        .collect();
    Some(record)
}

/// The counters of a stats row, in their stored order.
fn row_fields(c: &Counters) -> [u64; ROW_COUNTERS] {
    [
        c.enqueued,
        c.started,
        c.retried,
        c.failed,
        c.completed,
        c.recovered,
        c.released,
        c.requeued,
        c.cancelled,
    ]
}

/// How many counters a stats row holds; rows written before `cancelled` was counted hold
/// the first eight.
const ROW_COUNTERS: usize = 9;
const OLD_ROW_COUNTERS: usize = 8;

/// One stats row: a topic's counters (big-endian) and paused flag. Queue sizes are not
/// stored: the indexes rebuilt at open count them.
pub(crate) fn encode_row(counters: &Counters, paused: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(ROW_COUNTERS * 8 + 1);
    for f in row_fields(counters) {
        v.extend_from_slice(&f.to_be_bytes());
    }
    v.push(u8::from(paused));
    v
}

/// Reads a stats row back; a row of eight counters (written before cancels were counted)
/// reads with `cancelled` at 0.
pub(crate) fn decode_row(v: &[u8]) -> Result<(Counters, bool)> {
    let count = (v.len().wrapping_sub(1)) / 8;
    if !(count == ROW_COUNTERS || count == OLD_ROW_COUNTERS) || v.len() != count * 8 + 1 {
        return Err(Error::corrupt(format!(
            "undecodable stats row ({} bytes, expected {} or {})",
            v.len(),
            ROW_COUNTERS * 8 + 1,
            OLD_ROW_COUNTERS * 8 + 1
        )));
    }
    let f = |i: usize| {
        v.get(i * 8..i * 8 + 8)
            .filter(|_| i < count)
            .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    };
    let mut c = Counters::default();
    c.enqueued = f(0);
    c.started = f(1);
    c.retried = f(2);
    c.failed = f(3);
    c.completed = f(4);
    c.recovered = f(5);
    c.released = f(6);
    c.requeued = f(7);
    c.cancelled = f(8);
    Ok((c, v[count * 8] != 0))
}

/// A big-endian u64 counter value in `meta`.
pub(crate) fn decode_u64(v: &[u8]) -> Result<u64> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::corrupt(format!("undecodable counter ({} bytes)", v.len())))
}

/// The first byte of every schedule state this code writes: format 1; another value is a
/// later format.
const SCHEDULE_FORMAT: u8 = 1;

/// The flags byte of a schedule state: whether it is paused, and which optional fields
/// follow.
mod schedule_flag {
    pub const PAUSED: u8 = 1;
    pub const LAST_TICK: u8 = 1 << 1;
    pub const LAST_TASK: u8 = 1 << 2;
    pub const FIRED_AT: u8 = 1 << 3;
    /// Every flag this code knows; a value with another is corrupt (or of a later format).
    pub const KNOWN: u8 = (1 << 4) - 1;
}

/// A schedule's state as stored under its name (format 1): format, flags (paused, and
/// which of the last tick, last task and fired-at time are set), seen at, then each of
/// those three when its flag is set, then the spec, the zone and the topic, each with a
/// u32 length. The name is the key's (see `layout.rs`), not repeated here. Little-endian,
/// as records are: 22 bytes, 8 more per time or id set, and the strings.
pub(crate) fn encode_schedule(state: &ScheduleState) -> Vec<u8> {
    use schedule_flag::*;
    let flags = [
        (state.paused, PAUSED),
        (state.last_tick.is_some(), LAST_TICK),
        (state.last_task.is_some(), LAST_TASK),
        (state.fired_at.is_some(), FIRED_AT),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |flags, (_, flag)| flags | flag);
    let strings = state.spec.len() + state.zone.len() + state.topic.len();
    let mut out = Vec::with_capacity(2 + 4 * 8 + 3 * 4 + strings);
    out.extend_from_slice(&[SCHEDULE_FORMAT, flags]);
    put_time(&mut out, state.seen_at);
    if let Some(tick) = state.last_tick {
        put_time(&mut out, tick);
    }
    if let Some(task) = state.last_task {
        out.extend_from_slice(&task.get().to_le_bytes());
    }
    if let Some(fired) = state.fired_at {
        put_time(&mut out, fired);
    }
    for s in [&state.spec, &state.zone, &state.topic] {
        put_str(&mut out, s);
    }
    out
}

/// Reads back the state [`encode_schedule`] stored for the schedule whose name is the
/// bytes `name`. `Corrupt`, never a panic, for anything it did not write: a name that is
/// not UTF-8, another format, a flag it does not know, a value cut short or with bytes
/// left over, a string that is not UTF-8, a last task of id 0.
pub(crate) fn decode_schedule(name: &[u8], value: &[u8]) -> Result<ScheduleState> {
    let corrupt = || {
        Error::corrupt(format!(
            "undecodable state of schedule {:?} ({} bytes)",
            String::from_utf8_lossy(name),
            value.len()
        ))
    };
    let name = std::str::from_utf8(name).map_err(|_| corrupt())?;
    decode_schedule_fields(name, value).ok_or_else(corrupt)
}

fn decode_schedule_fields(name: &str, value: &[u8]) -> Option<ScheduleState> {
    use schedule_flag::*;
    let mut r = Reader(value);
    let [SCHEDULE_FORMAT, flags] = r.take(2)? else {
        return None;
    };
    let flags = *flags;
    if flags & !KNOWN != 0 {
        return None;
    }
    let has = |flag: u8| flags & flag != 0;
    let seen_at = r.time()?;
    let last_tick = r.optional(has(LAST_TICK), Reader::time)?;
    let last_task = r.optional(has(LAST_TASK), |r| r.u64().filter(|id| *id > 0))?;
    let fired_at = r.optional(has(FIRED_AT), Reader::time)?;
    let (spec, zone, topic) = (r.str()?, r.str()?, r.str()?);
    if !r.0.is_empty() {
        return None;
    }
    let mut state = ScheduleState::new(&ScheduleEntry::new(name, spec, zone, topic), seen_at);
    state.paused = has(PAUSED);
    state.last_tick = last_tick;
    state.last_task = last_task.map(TaskId::new);
    state.fired_at = fired_at;
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with every field set.
    fn record() -> TaskRecord {
        let args = Payload::from_stored(r#"{"to":"ada"}"#);
        let mut r = TaskRecord::new(TaskId::new(42), "emails", args);
        r.queue = Queue::Work;
        r.external_id = Some("ext".into());
        r.attempt = 3;
        r.max_retries = Some(7);
        r.priority = -2;
        r.enqueued_at = Timestamp::from_millis(-12);
        r.run_at = Timestamp::from_millis(1_700_000_000_000);
        r.unique_key = Some("k".into());
        r.unique_while_kept = true;
        r.first_started_at = Some(Timestamp::from_millis(3));
        r.started_at = Some(Timestamp::from_millis(4));
        r.finished_at = Some(Timestamp::from_millis(5));
        r.errors = vec![
            AttemptError {
                attempt: 1,
                at: Timestamp::from_millis(1),
                message: "boom".into(),
            },
            AttemptError {
                attempt: 2,
                at: Timestamp::from_millis(2),
                message: "encore é".into(),
            },
        ];
        r.result = Some(Payload::from_stored(r#"{"sent":true}"#));
        r.progress = Some(Payload::from_stored("0.5"));
        r.cancelled_by = Some("ops".into());
        r.lease = Some(Lease {
            owner: "m1".into(),
            token: 77,
            deadline: Timestamp::from_millis(99),
        });
        r.headers = headers(&[
            ("traceparent", "00-ab-cd-01"),
            ("x-note", "é \"q\" {}"),
            ("e", ""),
        ]);
        r
    }

    fn headers(entries: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::new();
        for (key, value) in entries {
            headers.insert(*key, *value).unwrap();
        }
        headers
    }

    /// A record with every optional field empty.
    fn bare() -> TaskRecord {
        let mut r = record();
        r.queue = Queue::Input;
        r.external_id = None;
        r.max_retries = None;
        r.unique_key = None;
        r.unique_while_kept = false;
        r.first_started_at = None;
        r.started_at = None;
        r.finished_at = None;
        r.errors.clear();
        r.result = None;
        r.progress = None;
        r.cancelled_by = None;
        r.lease = None;
        r.headers = Headers::new();
        r
    }

    /// Stores `r` in a chunk of its own and reads it back, with its state.
    fn round_trip(r: &TaskRecord) -> (TaskRecord, State) {
        let mut out = Vec::new();
        start_chunk(&mut out);
        KeyParts::of(r).encode_entry(r, &mut out);
        end_chunk(&mut out, 1);
        let chunk = Chunk::parse(r.id.get(), r.id.get(), &out);
        assert_eq!((chunk.broken_at, chunk.placeholder), (None, None));
        let (parts, bytes) = KeyParts::decode(&out[chunk.find(r.id).unwrap()]).unwrap();
        assert_eq!(parts, KeyParts::of(r));
        let state = decode_state(bytes).expect("the state decodes");
        (decode_record(&parts, &r.topic, bytes).unwrap(), state)
    }

    #[test]
    fn records_round_trip() {
        for r in [record(), bare()] {
            for queue in Queue::ALL {
                let mut r = r.clone();
                r.queue = queue;
                let (back, state) = round_trip(&r);
                assert_eq!(back, r);
                assert_eq!(state, State::of(&r));
            }
        }
    }

    /// What a completed task kept without a result costs in its chunk, for the benchmark's
    /// shape (a topic of 7 bytes, 16 bytes of arguments): the figure in the README.
    #[test]
    fn a_kept_completed_entry_is_94_bytes() {
        let mut r = TaskRecord::new(
            TaskId::new(1),
            "bench-0",
            Payload::from_stored("x".repeat(16)),
        );
        r.queue = Queue::Completed;
        r.attempt = 1;
        r.max_retries = Some(25);
        r.first_started_at = Some(Timestamp::from_millis(1));
        r.started_at = r.first_started_at;
        r.finished_at = Some(Timestamp::from_millis(2));
        let mut out = Vec::new();
        KeyParts::of(&r).encode_entry(&r, &mut out);
        // Head 26 (length, id, priority, topic, no unique key), record 52, arguments 16:
        // no headers, no byte for them.
        assert_eq!(out.len(), 94);
    }

    /// Headers cost their bytes only: a count, then each key and value with its length.
    #[test]
    fn headers_cost_only_their_bytes() {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let mut r = bare();
        encode_record(&r, &mut without);
        r.headers = headers(&[("ab", "xyz")]);
        encode_record(&r, &mut with);
        assert_eq!(with.len() - without.len(), 4 + (4 + 2) + (4 + 3));
        assert_eq!(
            u16::from_le_bytes([without[2], without[3]]) & flag::HEADERS,
            0
        );
    }

    /// A record of format 2, written before headers were kept, is a record of format 3
    /// without them: it reads with none, and format 2 knows no headers flag.
    #[test]
    fn records_of_format_2_decode_without_headers() {
        for mut r in [record(), bare()] {
            r.headers = Headers::new();
            let owner = r.clone();
            let key = KeyParts::of(&owner);
            let mut bytes = Vec::new();
            encode_record(&r, &mut bytes);
            assert_eq!(bytes[0], FORMAT);
            bytes[0] = FORMAT_2;
            assert_eq!(decode_record(&key, &r.topic, &bytes).unwrap(), r);
            assert_eq!(decode_state(&bytes), Some(State::of(&r)));
            // Headers in a record marked format 2 are of no format this code knows.
            r.headers = headers(&[("k", "v")]);
            let mut bytes = Vec::new();
            encode_record(&r, &mut bytes);
            bytes[0] = FORMAT_2;
            assert!(decode_state(&bytes).is_none());
            assert!(decode_record(&key, &r.topic, &bytes).is_err());
        }
    }

    /// Headers stored out of key order or with a key twice (by another version, or by
    /// hand) read in key order, the last value of a key kept.
    #[test]
    fn stored_headers_are_put_in_key_order() {
        let mut r = bare();
        r.headers = headers(&[("a", "1")]);
        let mut bytes = Vec::new();
        encode_record(&r, &mut bytes);
        let args = r.args.as_str().len();
        let mut tail = Vec::new();
        tail.extend_from_slice(&3u32.to_le_bytes());
        for s in ["b", "2", "a", "1", "b", "3"] {
            put_str(&mut tail, s);
        }
        let at = bytes.len() - args - (4 + 5 + 5);
        bytes.splice(at..bytes.len() - args, tail);
        let back = decode_record(&KeyParts::of(&r), &r.topic, &bytes).unwrap();
        let read: Vec<_> = back.headers.iter().collect();
        assert_eq!(read, [("a", "1"), ("b", "3")]);
    }

    /// A small deterministic generator (xorshift), so the property test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn coin(&mut self) -> bool {
            self.next() & 1 == 1
        }
        fn time(&mut self) -> Timestamp {
            Timestamp::from_millis(self.next() as i64 >> self.below(64))
        }
        fn text(&mut self) -> String {
            const PIECES: [&str; 6] = ["a", "é", "\"", "{}", "\u{1F600}", " "];
            let len = self.below(12);
            (0..len).map(|_| PIECES[self.below(6) as usize]).collect()
        }
        fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
            if self.coin() {
                Some(f(self))
            } else {
                None
            }
        }
    }

    fn random_record(rng: &mut Rng) -> TaskRecord {
        let args = Payload::from_stored(rng.text());
        let mut r = TaskRecord::new(TaskId::new(rng.next()), rng.text(), args);
        r.queue = Queue::ALL[rng.below(5) as usize];
        r.external_id = rng.maybe(|g| g.text().into());
        r.attempt = rng.next() as u32;
        r.max_retries = rng.maybe(|g| g.next() as u32);
        r.priority = rng.next() as i16;
        r.enqueued_at = rng.time();
        r.run_at = rng.time();
        r.unique_key = rng.maybe(|g| g.text().into());
        r.unique_while_kept = rng.coin();
        r.first_started_at = rng.maybe(Rng::time);
        r.started_at = rng.maybe(Rng::time);
        r.finished_at = rng.maybe(Rng::time);
        r.errors = (0..rng.below(4))
            .map(|_| AttemptError {
                attempt: rng.next() as u32,
                at: rng.time(),
                message: rng.text().into(),
            })
            .collect();
        r.result = rng.maybe(|g| Payload::from_stored(g.text()));
        r.progress = rng.maybe(|g| Payload::from_stored(g.text()));
        r.cancelled_by = rng.maybe(|g| g.text().into());
        r.lease = rng.maybe(|g| Lease {
            owner: g.text().into(),
            token: g.next(),
            deadline: g.time(),
        });
        for i in 0..rng.below(4) {
            // Keys follow the rules; values are any text.
            let key = format!("k{i}-{}", rng.below(3));
            r.headers.insert(key, rng.text()).unwrap();
        }
        r
    }

    /// A kept completion on the bytes is the completion on the decoded record, re-encoded,
    /// for every record it takes; it takes every readable record in WORK without a cancel
    /// request or a result, whatever its other fields, and leaves the others alone.
    #[test]
    fn completing_in_place_is_completing_the_decoded_record() {
        use taskmill_core::raw::RecordExt;
        use taskmill_core::store::{LeaseRef, Outcome, OutcomeKind};
        let mut rng = Rng(0x51ed_270b_2791_1f2f);
        let now = Timestamp::from_millis(123_456);
        let (mut taken, mut left) = (0, 0);
        for i in 0..5_000 {
            let mut r = random_record(&mut rng);
            if i % 4 != 0 {
                r.queue = Queue::Work;
            }
            if i % 2 == 0 {
                (r.cancelled_by, r.result) = (None, None);
            }
            let mut bytes = Vec::new();
            encode_record(&r, &mut bytes);
            if i % 3 == 0 {
                // Format 2 when it has no headers: written before headers were kept.
                if r.headers.is_empty() {
                    bytes[0] = FORMAT_2;
                }
            }
            let result = rng.maybe(|g| g.text());
            let mut out = vec![9];
            let done = complete_in_place(&bytes, now, result.as_deref(), &mut out);
            let takes = r.queue == Queue::Work && r.cancelled_by.is_none() && r.result.is_none();
            assert_eq!(done.is_some(), takes, "{r:?}");
            let Some(keeps_unique) = done else {
                assert_eq!(out, [9], "left as it was");
                left += 1;
                continue;
            };
            taken += 1;
            let mut want = r.clone();
            let outcome = Outcome::new(
                LeaseRef {
                    id: r.id,
                    topic: r.topic.clone(),
                    token: 0,
                },
                OutcomeKind::complete_with(result.map(Payload::from_stored)),
            );
            let mut counters = Counters::default();
            let queue = want.apply_outcome(&outcome, now, &mut counters);
            assert_eq!((queue, counters.completed), (Some(Queue::Completed), 1));
            let mut expected = vec![9];
            encode_record(&want, &mut expected);
            assert_eq!(out, expected, "{r:?}");
            assert_eq!(keeps_unique, r.unique_while_kept);
        }
        assert!(taken > 1_000 && left > 1_000, "{taken} taken, {left} left");
        // A record cut anywhere, or of format 1, is left to the decoder.
        let mut r = record();
        (r.cancelled_by, r.result) = (None, None);
        let mut bytes = Vec::new();
        encode_record(&r, &mut bytes);
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let mut out = Vec::new();
            let done = complete_in_place(cut, now, None, &mut out);
            let decodes = decode_record(&KeyParts::of(&r), &r.topic, cut).is_ok();
            assert_eq!(done.is_some(), decodes, "{len}");
        }
        // The lease's owner is dropped unread: one that is not text does not matter.
        let at = bytes
            .windows(2)
            .position(|w| w == b"m1")
            .expect("the owner");
        bytes[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
        let mut out = Vec::new();
        assert!(complete_in_place(&bytes, now, None, &mut out).is_some());
        let done = decode_record(&KeyParts::of(&r), &r.topic, &out).unwrap();
        assert_eq!((done.queue, done.lease), (Queue::Completed, None));
        let mut v1 = Vec::new();
        encode_v1(&r, 3, None, None, &mut v1);
        assert_eq!(complete_in_place(&v1, now, None, &mut Vec::new()), None);
    }

    #[test]
    fn random_records_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            let r = random_record(&mut rng);
            let (back, state) = round_trip(&r);
            assert_eq!(back, r);
            assert_eq!(state, State::of(&r));
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let r = record();
        let mut out = Vec::new();
        encode_record(&r, &mut out);
        let key = KeyParts::of(&r);
        // Every truncation before the arguments, and a few bytes of garbage, fail cleanly.
        for len in 0..out.len() - r.args.as_str().len() {
            assert!(decode_record(&key, &r.topic, &out[..len]).is_err(), "{len}");
        }
        let err = decode_record(&key, &r.topic, b"\xff\x00garbage{").unwrap_err();
        assert_eq!(err.kind(), taskmill_core::ErrorKind::Corrupt);
        assert!(decode_state(b"").is_none());
        assert!(KeyParts::decode(b"t\0\0").is_none());
        // A flag this code does not know, or a count of errors the bytes cannot hold.
        let mut unknown = out.clone();
        unknown[3] |= 0x80;
        assert!(decode_state(&unknown).is_none());
        assert!(decode_record(&key, &r.topic, &unknown).is_err());
        let (mut none, mut out) = (Vec::new(), Vec::new());
        encode_record(&bare(), &mut none);
        let mut only_errors = bare();
        only_errors.errors = record().errors;
        encode_record(&only_errors, &mut out);
        // The count is where the arguments of the record without errors start.
        let count = none.len() - bare().args.as_str().len();
        assert_eq!(out[count..count + 4], 2u32.to_le_bytes());
        out[count..count + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_record(&key, &r.topic, &out).is_err());
        // Any byte changed to any value decodes to something or fails: it never panics.
        let mut rng = Rng(7);
        let mut full = Vec::new();
        encode_record(&r, &mut full);
        for _ in 0..20_000 {
            let mut bytes = full.clone();
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
            let _ = decode_state(&bytes);
            let _ = decode_record(&key, &r.topic, &bytes);
        }
    }

    /// The record codec of format 1 as layout 3 wrote it before history was kept, byte for
    /// byte: what a database written then holds.
    fn encode_v1(
        r: &TaskRecord,
        max_retries: u32,
        last_error: Option<&str>,
        failed_at: Option<Timestamp>,
        out: &mut Vec<u8>,
    ) {
        let flags = [
            (r.lease.is_some(), 1),
            (r.external_id.is_some(), 2),
            (last_error.is_some(), 4),
            (failed_at.is_some(), 8),
        ]
        .iter()
        .fold(0u8, |f, &(set, bit)| if set { f | bit } else { f });
        out.extend_from_slice(&[1, queue_byte(r.queue), flags]);
        out.extend_from_slice(&r.attempt.to_le_bytes());
        out.extend_from_slice(&max_retries.to_le_bytes());
        put_time(out, r.enqueued_at);
        put_time(out, r.run_at);
        if let Some(lease) = &r.lease {
            out.extend_from_slice(&lease.token.to_le_bytes());
            put_time(out, lease.deadline);
            put_str(out, &lease.owner);
        }
        if let Some(x) = &r.external_id {
            put_str(out, x);
        }
        if let Some(e) = last_error {
            put_str(out, e);
        }
        if let Some(t) = failed_at {
            put_time(out, t);
        }
        out.extend_from_slice(r.args.as_str().as_bytes());
    }

    #[test]
    fn records_of_format_1_decode() {
        let enqueued = Timestamp::from_millis(-12);
        let failed = Timestamp::from_millis(5);
        // DEAD with its error and failure time; a retry in INPUT with its error but no
        // failure time (format 1 had none for retries); WORK under a lease; and bare.
        let mut dead = bare();
        dead.queue = Queue::Dead;
        dead.external_id = Some("ext".into());
        dead.unique_key = Some("k".into());
        let mut retrying = bare();
        retrying.attempt = 2;
        let mut working = record();
        working.queue = Queue::Work;
        let cases = [
            (dead, Some("boom"), Some(failed)),
            (retrying, Some("again"), None),
            (working, None, None),
            (bare(), None, None),
        ];
        for (r, last_error, failed_at) in cases {
            let mut bytes = Vec::new();
            encode_v1(&r, 7, last_error, failed_at, &mut bytes);
            let key = KeyParts::of(&r);
            let back = decode_record(&key, &r.topic, &bytes).unwrap();
            let mut want = TaskRecord::new(r.id, r.topic.clone(), r.args.clone());
            want.queue = r.queue;
            want.external_id = r.external_id.clone();
            want.attempt = r.attempt;
            want.max_retries = Some(7);
            want.priority = r.priority;
            want.enqueued_at = enqueued;
            want.run_at = r.run_at;
            want.unique_key = r.unique_key.clone();
            want.lease = r.lease.clone();
            want.finished_at = failed_at;
            want.errors = last_error
                .map(|message| AttemptError {
                    attempt: r.attempt,
                    at: failed_at.unwrap_or(enqueued),
                    message: message.into(),
                })
                .into_iter()
                .collect();
            assert_eq!(back, want);
            let state = decode_state(&bytes).unwrap();
            assert_eq!(
                (state.queue, state.run_at, state.lease),
                (
                    r.queue,
                    r.run_at,
                    r.lease.as_ref().map(|l| (l.token, l.deadline))
                )
            );
            assert!(!state.cancel_requested && !state.unique_while_kept);
            // Re-encoded, it is a record of the current format like any other.
            let mut again = Vec::new();
            encode_record(&back, &mut again);
            assert_eq!(again[0], FORMAT);
            assert_eq!(decode_record(&key, &r.topic, &again).unwrap(), back);
            for len in 0..bytes.len() - r.args.as_str().len() {
                assert!(
                    decode_record(&key, &r.topic, &bytes[..len]).is_err(),
                    "{len}"
                );
            }
        }
        // Format 1 knew no finished queue.
        let mut bytes = Vec::new();
        let mut completed = bare();
        completed.queue = Queue::Completed;
        encode_v1(&completed, 7, None, None, &mut bytes);
        assert!(decode_state(&bytes).is_none());
    }

    /// A chunk of ids 10..=13 holding 10, 11 and 13 (12 finished).
    fn chunk_of_three() -> Vec<u8> {
        let mut out = Vec::new();
        start_chunk(&mut out);
        for id in [10, 11, 13] {
            let mut r = record();
            r.id = TaskId::new(id);
            KeyParts::of(&r).encode_entry(&r, &mut out);
        }
        end_chunk(&mut out, 3);
        out
    }

    #[test]
    fn a_broken_chunk_keeps_what_it_can() {
        let whole = chunk_of_three();
        let ids = |c: &Chunk| c.entries.iter().map(|(id, _)| id.get()).collect::<Vec<_>>();
        let chunk = Chunk::parse(10, 13, &whole);
        assert_eq!((ids(&chunk), chunk.broken_at), (vec![10, 11, 13], None));
        // Every truncation keeps the entries before the cut; the rest gets a placeholder
        // id, the key's last.
        for len in 0..whole.len() {
            let chunk = Chunk::parse(10, 13, &whole[..len]);
            let read = ids(&chunk);
            assert!(chunk.broken_at.is_some(), "{len}");
            assert_eq!(chunk.placeholder, Some(TaskId::new(13)), "{len}");
            assert!([10, 11, 13].starts_with(&read), "{len}");
        }
        // Garbage: nothing read, the placeholder is the first id, every byte is kept.
        let chunk = Chunk::parse(10, 13, b"\xff\x00garbage{");
        assert_eq!(
            (ids(&chunk), chunk.placeholder),
            (vec![], Some(TaskId::new(13)))
        );
        assert_eq!(chunk.broken_at, Some(0));
        // Garbage after the last id: no id is left for a placeholder, nothing is lost.
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"junk");
        let chunk = Chunk::parse(10, 13, &trailing);
        assert_eq!(ids(&chunk), [10, 11, 13]);
        assert_eq!(
            (chunk.broken_at, chunk.placeholder),
            (Some(whole.len()), None)
        );
        // An id outside the key's range is garbage too.
        let chunk = Chunk::parse(10, 12, &whole);
        assert_eq!(
            (ids(&chunk), chunk.placeholder),
            (vec![10, 11], Some(TaskId::new(12)))
        );
        let dead = chunk.placeholder(10, 12, &whole).unwrap();
        assert_eq!((dead.id.get(), dead.queue), (12, Queue::Dead));
        assert_eq!(&*dead.topic, CORRUPT_TOPIC);
        assert!(dead.last_error().unwrap().contains("among 12..=12"));
        // Made the same at every read, and stored readable.
        assert_eq!(chunk.placeholder(10, 12, &whole), Some(dead.clone()));
        assert_eq!(round_trip(&dead).0, dead);
        assert!(Chunk::parse(10, 13, &trailing)
            .placeholder(10, 13, &trailing)
            .is_none());
    }

    /// Found by the `sled_record` fuzz target: a chunk whose key ends at `u64::MAX`
    /// holding the entry of that id overflowed the next id expected (a panic in debug
    /// builds; in release, entries after it were read again from id 0, out of order).
    /// Nothing can follow that entry: what does is broken, and no task is lost.
    #[test]
    fn an_entry_of_the_last_id_ends_its_chunk() {
        let mut last = bare();
        last.id = TaskId::new(u64::MAX);
        let mut after = bare();
        after.id = TaskId::new(5);
        let mut value = Vec::new();
        start_chunk(&mut value);
        KeyParts::of(&last).encode_entry(&last, &mut value);
        let one = value.len();
        KeyParts::of(&after).encode_entry(&after, &mut value);
        end_chunk(&mut value, 2);
        let chunk = Chunk::parse(1, u64::MAX, &value);
        assert_eq!(chunk.entries.len(), 1);
        assert_eq!(chunk.entries[0].0, last.id);
        assert_eq!((chunk.broken_at, chunk.placeholder), (Some(one), None));
        assert!(chunk.placeholder(1, u64::MAX, &value).is_none());
        // Cut after it, the count says an entry is missing, which no id can be.
        let chunk = Chunk::parse(1, u64::MAX, &value[..one]);
        assert_eq!((chunk.entries.len(), chunk.broken_at), (1, Some(one)));
        assert_eq!(chunk.placeholder, None);
    }

    #[test]
    fn rows_round_trip() {
        let mut counters = Counters::default();
        counters.failed = 3;
        counters.requeued = u64::MAX;
        counters.cancelled = 9;
        assert_eq!(
            decode_row(&encode_row(&counters, true)).unwrap(),
            (counters, true)
        );
        assert!(decode_row(&[1, 2]).is_err());
        assert!(decode_row(&[]).is_err());
        // A row of eight counters, as written before cancels were counted.
        let mut old = encode_row(&counters, true);
        old.drain(64..72);
        counters.cancelled = 0;
        assert_eq!(decode_row(&old).unwrap(), (counters, true));
    }

    /// A schedule state with every field set, under a name a key must carry as it is.
    fn schedule() -> ScheduleState {
        let entry = ScheduleEntry::new("nightly: a/b ü", "0 3 * * *", "Europe/Paris", "reports");
        let mut state = ScheduleState::new(&entry, Timestamp::from_millis(1_000));
        state.paused = true;
        state.last_tick = Some(Timestamp::from_millis(-5));
        state.last_task = Some(TaskId::new(u64::MAX));
        state.fired_at = Some(Timestamp::from_millis(i64::MAX));
        state
    }

    #[test]
    fn schedules_round_trip() {
        let full = schedule();
        let name = full.name.as_bytes();
        assert_eq!(
            decode_schedule(name, &encode_schedule(&full)).unwrap(),
            full
        );
        // Never fired, not paused, empty spec and zone (fired before being registered).
        let entry = ScheduleEntry::new("", "", "", "t");
        let bare = ScheduleState::new(&entry, Timestamp::EPOCH);
        let bytes = encode_schedule(&bare);
        assert_eq!(bytes.len(), 10 + 3 * 4 + 1);
        assert_eq!(decode_schedule(b"", &bytes).unwrap(), bare);
        // Each optional field alone.
        for i in 0..4 {
            let mut state = bare.clone();
            match i {
                0 => state.paused = true,
                1 => state.last_tick = full.last_tick,
                2 => state.last_task = full.last_task,
                _ => state.fired_at = full.fired_at,
            }
            assert_eq!(
                decode_schedule(b"", &encode_schedule(&state)).unwrap(),
                state
            );
        }
    }

    #[test]
    fn a_corrupt_schedule_is_corrupt_not_a_panic() {
        let state = schedule();
        let name = state.name.as_bytes();
        let bytes = encode_schedule(&state);
        let corrupt = |name: &[u8], value: &[u8]| match decode_schedule(name, value) {
            Err(e) => e.kind() == taskmill_core::ErrorKind::Corrupt,
            Ok(_) => false,
        };
        // Every truncation, and any byte more.
        for len in 0..bytes.len() {
            assert!(corrupt(name, &bytes[..len]), "cut at {len}");
        }
        assert!(corrupt(name, &[bytes.as_slice(), b"x"].concat()));
        // Another format, an unknown flag, a name or a string that is not UTF-8, task 0.
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(corrupt(name, &other));
        let mut unknown = bytes.clone();
        unknown[1] |= 0x10;
        assert!(corrupt(name, &unknown));
        assert!(corrupt(b"\xff\xfe", &bytes));
        let mut topic = bytes.clone();
        let last = topic.len() - 1;
        topic[last] = 0xff;
        assert!(corrupt(name, &topic));
        let mut zero = ScheduleState::new(&ScheduleEntry::new("z", "", "", "t"), Timestamp::EPOCH);
        zero.last_task = Some(TaskId::new(0));
        assert!(corrupt(b"z", &encode_schedule(&zero)));
        // A string length past the end, then garbage.
        let mut long = bytes.clone();
        let spec_len = 2 + 4 * 8;
        long[spec_len..spec_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(corrupt(name, &long));
        assert!(corrupt(name, b"\x01\x00garbage{"));
        // Any byte changed to any value decodes to something or fails: it never panics.
        let mut rng = Rng(11);
        for _ in 0..20_000 {
            let mut changed = bytes.clone();
            let at = rng.below(changed.len() as u64) as usize;
            changed[at] = rng.next() as u8;
            let _ = decode_schedule(name, &changed);
        }
    }
}

/// Property tests of the record and schedule codecs (issue #17): what is encoded decodes
/// equal, and no bytes (arbitrary, or a valid encoding cut or changed) make a decoder
/// panic; what it cannot read is `Corrupt`. Cases: proptest's default (256), or
/// `PROPTEST_CASES`, which the default config reads.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use taskmill_core::ErrorKind;

    fn time() -> impl Strategy<Value = Timestamp> {
        any::<i64>().prop_map(Timestamp::from_millis)
    }

    /// Any text, control characters and non-ASCII included.
    fn text() -> impl Strategy<Value = String> {
        ".{0,12}"
    }

    /// JSON-shaped text as stored arguments or a result (strings quoted as Rust's `Debug`
    /// does, not always valid JSON: the codec stores the text as it is).
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            text().prop_map(|s| format!("{s:?}")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((text(), inner), 0..4).prop_map(|v| {
                    let fields: Vec<_> = v.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    fn error() -> impl Strategy<Value = AttemptError> {
        (any::<u32>(), time(), text()).prop_map(|(attempt, at, message)| AttemptError {
            attempt,
            at,
            message: message.into(),
        })
    }

    prop_compose! {
        /// A record built through the public API with every field arbitrary; headers are
        /// those `Headers::insert` accepts (it refuses bad keys and control characters).
        fn record()(
            (id, topic, args, queue) in (any::<u64>(), text(), json(), 0..Queue::ALL.len()),
            (external_id, attempt, max_retries, priority) in
                (proptest::option::of(text()), any::<u32>(), proptest::option::of(any::<u32>()), any::<i16>()),
            (enqueued_at, run_at, unique_key, unique_while_kept) in
                (time(), time(), proptest::option::of(text()), any::<bool>()),
            (first_started_at, started_at, finished_at) in
                (proptest::option::of(time()), proptest::option::of(time()), proptest::option::of(time())),
            errors in prop::collection::vec(error(), 0..4),
            (result, progress, cancelled_by) in
                (proptest::option::of(json()), proptest::option::of(json()), proptest::option::of(text())),
            lease in proptest::option::of((text(), any::<u64>(), time())),
            headers in prop::collection::vec(("[a-z][a-z0-9-]{0,6}", text()), 0..4),
        ) -> TaskRecord {
            let mut r = TaskRecord::new(TaskId::new(id), topic, Payload::from_stored(args));
            r.queue = Queue::ALL[queue];
            r.external_id = external_id.map(Into::into);
            r.attempt = attempt;
            r.max_retries = max_retries;
            r.priority = priority;
            r.enqueued_at = enqueued_at;
            r.run_at = run_at;
            r.unique_key = unique_key.map(Into::into);
            r.unique_while_kept = unique_while_kept;
            r.first_started_at = first_started_at;
            r.started_at = started_at;
            r.finished_at = finished_at;
            r.errors = errors;
            r.result = result.map(Payload::from_stored);
            r.progress = progress.map(Payload::from_stored);
            r.cancelled_by = cancelled_by.map(Into::into);
            r.lease = lease.map(|(owner, token, deadline)| Lease { owner: owner.into(), token, deadline });
            for (key, value) in headers {
                // A value the rules refuse is left out: the codec stores what they allow.
                let _ = r.headers.insert(key, value);
            }
            r
        }
    }

    prop_compose! {
        fn schedule()(
            (name, spec, zone, topic) in (text(), text(), text(), text()),
            (seen_at, paused) in (time(), any::<bool>()),
            (last_tick, last_task, fired_at) in (
                proptest::option::of(time()),
                proptest::option::of(1..=u64::MAX),
                proptest::option::of(time()),
            ),
        ) -> ScheduleState {
            let entry = ScheduleEntry::new(name, spec, zone, topic);
            let mut state = ScheduleState::new(&entry, seen_at);
            state.paused = paused;
            state.last_tick = last_tick;
            state.last_task = last_task.map(TaskId::new);
            state.fired_at = fired_at;
            state
        }
    }

    /// The entry of `r` in a chunk of its own.
    fn chunk_of(r: &TaskRecord) -> Vec<u8> {
        let mut out = Vec::new();
        start_chunk(&mut out);
        KeyParts::of(r).encode_entry(r, &mut out);
        end_chunk(&mut out, 1);
        out
    }

    /// Decodes `bytes` as a record under `key` and as a state: either may fail, but a
    /// record's failure is `Corrupt`, and a record that decodes has the state read apart.
    fn decode_any(key: &KeyParts<'_>, topic: &Arc<str>, bytes: &[u8]) -> Result<(), TestCaseError> {
        let state = decode_state(bytes);
        match decode_record(key, topic, bytes) {
            Ok(r) => prop_assert_eq!(state, Some(State::of(&r))),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Corrupt),
        }
        Ok(())
    }

    /// Splits any bytes as a chunk and reads every entry it finds: never a panic, and the
    /// placeholder (if any) is a DEAD record.
    fn read_chunk(first: u64, last: u64, value: &[u8]) -> Result<(), TestCaseError> {
        let chunk = Chunk::parse(first, last, value);
        for (id, range) in &chunk.entries {
            let (parts, bytes) = KeyParts::decode(&value[range.clone()]).expect("parsed");
            prop_assert_eq!(parts.id, *id);
            let topic: Arc<str> = parts.topic.into();
            decode_any(&parts, &topic, bytes)?;
        }
        if let Some(p) = chunk.placeholder(first, last, value) {
            prop_assert_eq!(p.queue, Queue::Dead);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn records_round_trip(r in record()) {
            let out = chunk_of(&r);
            let chunk = Chunk::parse(r.id.get(), r.id.get(), &out);
            prop_assert_eq!((chunk.broken_at, chunk.placeholder), (None, None));
            let (parts, bytes) = KeyParts::decode(&out[chunk.find(r.id).unwrap()]).unwrap();
            prop_assert_eq!(parts, KeyParts::of(&r));
            prop_assert_eq!(decode_state(bytes), Some(State::of(&r)));
            prop_assert_eq!(decode_record(&parts, &r.topic, bytes).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_are_a_record_or_corrupt(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            format in prop_oneof![Just(None), (1u8..=3).prop_map(Some)],
        ) {
            let r = TaskRecord::new(TaskId::new(1), "t", Payload::from_stored("1"));
            let mut bytes = bytes;
            // A known format byte gets the bytes past the first check.
            if let (Some(f), Some(b)) = (format, bytes.first_mut()) {
                *b = f;
            }
            decode_any(&KeyParts::of(&r), &r.topic, &bytes)?;
            read_chunk(0, u64::MAX, &bytes)?;
            let _ = KeyParts::decode(&bytes);
        }

        #[test]
        fn cut_or_changed_records_never_panic(
            r in record(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = Vec::new();
            encode_record(&r, &mut bytes);
            let key = KeyParts::of(&r);
            for len in 0..bytes.len() {
                decode_any(&key, &r.topic, &bytes[..len])?;
            }
            let mut changed = bytes.clone();
            for (at, value) in &flips {
                changed[at.index(bytes.len())] = *value;
            }
            decode_any(&key, &r.topic, &changed)?;
            // The same for the whole chunk: its head, the entry's head and the record.
            let chunk = chunk_of(&r);
            for len in 0..chunk.len() {
                read_chunk(r.id.get(), r.id.get(), &chunk[..len])?;
            }
            let mut changed = chunk.clone();
            for (at, value) in &flips {
                changed[at.index(chunk.len())] = *value;
            }
            read_chunk(r.id.get(), r.id.get(), &changed)?;
        }

        #[test]
        fn schedules_round_trip(state in schedule()) {
            let bytes = encode_schedule(&state);
            prop_assert_eq!(decode_schedule(state.name.as_bytes(), &bytes).unwrap(), state);
        }

        #[test]
        fn arbitrary_bytes_are_a_schedule_or_corrupt(
            name in prop::collection::vec(any::<u8>(), 0..16),
            mut value in prop::collection::vec(any::<u8>(), 0..128),
            known in any::<bool>(),
        ) {
            if let (true, Some(b)) = (known, value.first_mut()) {
                *b = SCHEDULE_FORMAT;
            }
            if let Err(e) = decode_schedule(&name, &value) {
                prop_assert_eq!(e.kind(), ErrorKind::Corrupt);
            }
        }

        #[test]
        fn cut_or_changed_schedules_never_panic(
            state in schedule(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let name = state.name.as_bytes();
            let bytes = encode_schedule(&state);
            // Every cut is short of a field or a string: corrupt, never a panic.
            for len in 0..bytes.len() {
                let e = decode_schedule(name, &bytes[..len]).unwrap_err();
                prop_assert_eq!(e.kind(), ErrorKind::Corrupt);
            }
            let mut changed = bytes.clone();
            for (at, value) in &flips {
                changed[at.index(bytes.len())] = *value;
            }
            if let Err(e) = decode_schedule(name, &changed) {
                prop_assert_eq!(e.kind(), ErrorKind::Corrupt);
            }
        }
    }
}
