//! How keys and values are laid out in the one tree (layout 3).
//!
//! Three kinds of entry, told apart by their first byte:
//! - `c`, first id, last id → a chunk: the entries of up to [`MAX_CHUNK_TASKS`] tasks of
//!   one topic enqueued by one call, in id order, the first `first` and the last `last`
//!   (those still live). Claims take a topic's tasks in id order, so a chunk per topic keeps
//!   a claim to few chunks when a batch mixes topics. The chunks of one call may overlap in
//!   ids, never by more than [`MAX_CHUNK_SPAN`]. Each entry holds what the task never
//!   changes (id, priority, topic, unique key) ahead of its record, so an entry whose record
//!   is garbage can still be indexed, claimed, salvaged and deleted like any other; and the
//!   key alone bounds the ids a chunk whose bytes are garbage held.
//! - `s`, topic → the topic's counters and paused flag.
//! - `m`, name → `last_id`, `last_token`, `schema`.
//!
//! Integers in keys are big-endian, so the chunks are in id order, which `list` pages
//! through. Integers in values are little-endian.

use std::ops::Range;
use std::sync::Arc;
use taskmill_core::raw::PayloadExt;
use taskmill_core::{
    Counters, Error, Lease, Payload, Queue, Result, TaskId, TaskRecord, Timestamp,
};

const CHUNK: u8 = b'c';
const STATS: u8 = b's';
const META: u8 = b'm';

/// The `meta` key of the last task id handed out.
pub(crate) const LAST_ID: &[u8] = b"mlast_id";
/// The `meta` key of the last fencing token handed out.
pub(crate) const LAST_TOKEN: &[u8] = b"mlast_token";
/// The `meta` key of the on-disk layout version.
pub(crate) const SCHEMA: &[u8] = b"mschema";
/// The prefix of every chunk key.
pub(crate) const CHUNKS: &[u8] = &[CHUNK];
/// The prefix of every stats row key.
pub(crate) const ROWS: &[u8] = &[STATS];
const _: () = assert!(LAST_ID[0] == META && SCHEMA[0] == META && LAST_TOKEN[0] == META);

/// An enqueue closes a chunk at this many tasks…
pub(crate) const MAX_CHUNK_TASKS: usize = 32;
/// …or once its value reaches this many bytes. sled keeps up to 17 entries in a leaf and
/// stores a leaf of more than 128 KiB (a quarter of its 512 KiB segment) out of line, as a
/// blob file; chunks of a few KiB, even after claims and errors grow their records, keep
/// leaves well below that. It also bounds what rewriting a chunk for one task costs.
pub(crate) const MAX_CHUNK_BYTES: usize = 2048;
/// …or before its ids would span more than this: a chunk holding id `x` starts after
/// `x - MAX_CHUNK_SPAN`, which is how far `list` looks back. Room for 32 topics interleaved
/// one by one in a call.
pub(crate) const MAX_CHUNK_SPAN: u64 = 1024;

/// The topic of the DEAD placeholder that stands for the unreadable part of a chunk.
pub(crate) const CORRUPT_TOPIC: &str = "(corrupt)";

/// The first byte of every chunk value; another value is a chunk of a later format.
const CHUNK_FORMAT: u8 = 3;
/// The format byte and the entry count.
const CHUNK_HEAD: usize = 5;
/// The first byte of every record; another value is a record of a later format.
const FORMAT: u8 = 1;

/// The key of the chunk of ids `first..=last`.
pub(crate) fn chunk_key(first: u64, last: u64) -> [u8; 17] {
    let mut key = [CHUNK; 17];
    key[1..9].copy_from_slice(&first.to_be_bytes());
    key[9..].copy_from_slice(&last.to_be_bytes());
    key
}

/// The id range of a chunk key; `None` when `key` is not one this code wrote.
pub(crate) fn decode_chunk_key(key: &[u8]) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(CHUNKS)?;
    let (first, last) = (rest.get(..8)?, rest.get(8..)?);
    let first = u64::from_be_bytes(first.try_into().ok()?);
    let last = u64::from_be_bytes(last.try_into().ok()?);
    (first <= last && first > 0).then_some((first, last))
}

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
                    next = id.get() + 1;
                    at = range.end;
                    chunk.entries.push((id, range));
                }
                None => break,
            }
        }
        // A chunk cut at an entry's end is caught by its count.
        if !ok || at < value.len() || Some(chunk.entries.len()) != count {
            // Without a readable head, every byte is kept.
            chunk.broken_at = Some(if ok { at } else { 0 });
            chunk.placeholder = (next <= last).then(|| TaskId::new(last));
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
        record.last_error = Some(
            format!(
                "corrupt data: the stored chunk of tasks {first}..={last} cannot be read \
                 from byte {broken_at} of {}: its unfinished tasks among {from}..={last} \
                 are lost (their topics and arguments are unknown); the bytes are kept as \
                 this record's arguments. Delete this record once seen.",
                value.len()
            )
            .into(),
        );
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

const HAS_LEASE: u8 = 1;
const HAS_EXTERNAL_ID: u8 = 2;
const HAS_LAST_ERROR: u8 = 4;
const HAS_FAILED_AT: u8 = 8;

fn queue_byte(queue: Queue) -> u8 {
    match queue {
        Queue::Input => 0,
        Queue::Work => 1,
        Queue::Dead => 2,
    }
}

/// A record's value: format, queue, flags, attempt, max retries, enqueued at, run at, then
/// the optional lease (token, deadline, owner), external id, last error and failure time,
/// and the arguments' JSON as the rest. Little-endian; strings carry a u32 length. Appended
/// to `out`.
pub(crate) fn encode_record(record: &TaskRecord, out: &mut Vec<u8>) {
    let flags = [
        (record.lease.is_some(), HAS_LEASE),
        (record.external_id.is_some(), HAS_EXTERNAL_ID),
        (record.last_error.is_some(), HAS_LAST_ERROR),
        (record.failed_at.is_some(), HAS_FAILED_AT),
    ]
    .iter()
    .fold(
        0,
        |flags, &(set, flag)| if set { flags | flag } else { flags },
    );
    out.extend_from_slice(&[FORMAT, queue_byte(record.queue), flags]);
    out.extend_from_slice(&record.attempt.to_le_bytes());
    out.extend_from_slice(&record.max_retries.to_le_bytes());
    out.extend_from_slice(&record.enqueued_at.as_millis().to_le_bytes());
    out.extend_from_slice(&record.run_at.as_millis().to_le_bytes());
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    if let Some(lease) = &record.lease {
        out.extend_from_slice(&lease.token.to_le_bytes());
        out.extend_from_slice(&lease.deadline.as_millis().to_le_bytes());
        string(out, &lease.owner);
    }
    if let Some(x) = &record.external_id {
        string(out, x);
    }
    if let Some(e) = &record.last_error {
        string(out, e);
    }
    if let Some(t) = record.failed_at {
        out.extend_from_slice(&t.as_millis().to_le_bytes());
    }
    out.extend_from_slice(record.args.as_str().as_bytes());
}

/// Reads a value front to back; every read past the end is `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
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
}

/// What the indexes need of a record, read without decoding the rest of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    pub queue: Queue,
    pub run_at: Timestamp,
    /// The lease's token and deadline.
    pub lease: Option<(u64, Timestamp)>,
}

/// The [`State`] of a stored record; `None` when it cannot be decoded.
pub(crate) fn decode_state(bytes: &[u8]) -> Option<State> {
    let mut r = Reader(bytes);
    let [format, queue, flags] = r.take(3)?.try_into().ok()?;
    if format != FORMAT {
        return None;
    }
    let queue = match queue {
        0 => Queue::Input,
        1 => Queue::Work,
        2 => Queue::Dead,
        _ => return None,
    };
    r.take(16)?;
    let run_at = r.time()?;
    let lease = if flags & HAS_LEASE != 0 {
        Some((r.u64()?, r.time()?))
    } else {
        None
    };
    Some(State {
        queue,
        run_at,
        lease,
    })
}

/// Reads a stored record back; `Corrupt` when it cannot be decoded. `topic` is the key's,
/// shared rather than allocated per record.
pub(crate) fn decode_record(
    key: &KeyParts<'_>,
    topic: &Arc<str>,
    bytes: &[u8],
) -> Result<TaskRecord> {
    let decode = || {
        let state = decode_state(bytes)?;
        let mut r = Reader(bytes);
        let flags = r.take(3)?[2];
        let attempt = r.u32()?;
        let max_retries = r.u32()?;
        let enqueued_at = r.time()?;
        r.take(8)?;
        let lease = match state.lease {
            Some((token, deadline)) => {
                r.take(16)?;
                Some(Lease {
                    owner: r.str()?.into(),
                    token,
                    deadline,
                })
            }
            None => None,
        };
        let mut optional = |flag: u8| match flags & flag {
            0 => Some(None),
            _ => r.str().map(Some),
        };
        let external_id = optional(HAS_EXTERNAL_ID)?.map(Box::from);
        let last_error = optional(HAS_LAST_ERROR)?.map(Box::from);
        let failed_at = match flags & HAS_FAILED_AT {
            0 => None,
            _ => Some(r.time()?),
        };
        let args = std::str::from_utf8(r.0).ok()?;
        let mut record = TaskRecord::new(key.id, topic.clone(), Payload::from_stored(args));
        record.queue = state.queue;
        record.external_id = external_id;
        record.attempt = attempt;
        record.max_retries = max_retries;
        record.priority = key.priority;
        record.enqueued_at = enqueued_at;
        record.run_at = state.run_at;
        record.unique_key = key.unique.map(Box::from);
        record.last_error = last_error;
        record.failed_at = failed_at;
        record.lease = lease;
        Some(record)
    };
    decode().ok_or_else(|| {
        Error::corrupt(format!(
            "cannot decode the stored record of task {} ({} bytes)",
            key.id,
            bytes.len()
        ))
    })
}

/// A topic's stats row key.
pub(crate) fn row_key(topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic.len());
    key.push(STATS);
    key.extend_from_slice(topic.as_bytes());
    key
}

/// One stats row: a topic's counters and paused flag. Queue sizes are not stored: the
/// indexes rebuilt at open count them.
pub(crate) fn encode_row(counters: &Counters, paused: bool) -> Vec<u8> {
    let c = counters;
    let fields = [
        c.enqueued,
        c.started,
        c.retried,
        c.failed,
        c.completed,
        c.recovered,
        c.released,
        c.requeued,
    ];
    let mut v = Vec::with_capacity(fields.len() * 8 + 1);
    for f in fields {
        v.extend_from_slice(&f.to_be_bytes());
    }
    v.push(u8::from(paused));
    v
}

/// Reads a stats row back.
pub(crate) fn decode_row(v: &[u8]) -> Result<(Counters, bool)> {
    if v.len() != 8 * 8 + 1 {
        return Err(Error::corrupt(format!(
            "undecodable stats row ({} bytes, expected 65)",
            v.len()
        )));
    }
    let f = |i: usize| u64::from_be_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let mut c = Counters::default();
    c.enqueued = f(0);
    c.started = f(1);
    c.retried = f(2);
    c.failed = f(3);
    c.completed = f(4);
    c.recovered = f(5);
    c.released = f(6);
    c.requeued = f(7);
    Ok((c, v[64] != 0))
}

/// A big-endian u64 counter value in `meta`.
pub(crate) fn decode_u64(v: &[u8]) -> Result<u64> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::corrupt(format!("undecodable counter ({} bytes)", v.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TaskRecord {
        let args = Payload::from_stored(r#"{"to":"ada"}"#);
        let mut r = TaskRecord::new(TaskId::new(42), "emails", args);
        r.queue = Queue::Work;
        r.external_id = Some("ext".into());
        r.attempt = 3;
        r.max_retries = 7;
        r.priority = -2;
        r.enqueued_at = Timestamp::from_millis(-12);
        r.run_at = Timestamp::from_millis(1_700_000_000_000);
        r.unique_key = Some("k".into());
        r.last_error = Some("boom".into());
        r.failed_at = Some(Timestamp::from_millis(5));
        r.lease = Some(Lease {
            owner: "m1".into(),
            token: 77,
            deadline: Timestamp::from_millis(99),
        });
        r
    }

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        let full = record();
        let mut bare = record();
        bare.queue = Queue::Input;
        bare.external_id = None;
        bare.unique_key = None;
        bare.last_error = None;
        bare.failed_at = None;
        bare.lease = None;
        for r in [full, bare] {
            start_chunk(&mut out);
            KeyParts::of(&r).encode_entry(&r, &mut out);
            end_chunk(&mut out, 1);
            let chunk = Chunk::parse(r.id.get(), r.id.get(), &out);
            assert_eq!((chunk.broken_at, chunk.placeholder), (None, None));
            let (parts, bytes) = KeyParts::decode(&out[chunk.find(r.id).unwrap()]).unwrap();
            assert_eq!(parts, KeyParts::of(&r));
            assert_eq!(decode_record(&parts, &r.topic, bytes).unwrap(), r);
            let state = decode_state(bytes).unwrap();
            assert_eq!(
                (state.queue, state.run_at, state.lease),
                (
                    r.queue,
                    r.run_at,
                    r.lease.as_ref().map(|l| (l.token, l.deadline))
                )
            );
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let r = record();
        let mut out = Vec::new();
        encode_record(&r, &mut out);
        let key = KeyParts::of(&r);
        // Every truncation, and a few bytes of garbage, fail cleanly.
        for len in 0..out.len() - r.args.as_str().len() {
            assert!(decode_record(&key, &r.topic, &out[..len]).is_err(), "{len}");
        }
        let err = decode_record(&key, &r.topic, b"\xff\x00garbage{").unwrap_err();
        assert_eq!(err.kind(), taskmill_core::ErrorKind::Corrupt);
        assert!(decode_state(b"").is_none());
        assert!(KeyParts::decode(b"t\0\0").is_none());
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
        assert!(dead.last_error.unwrap().contains("among 12..=12"));
        assert!(Chunk::parse(10, 13, &trailing)
            .placeholder(10, 13, &trailing)
            .is_none());
    }

    #[test]
    fn chunk_keys_are_in_id_order() {
        let mut keys = [chunk_key(300, 301), chunk_key(2, 299), chunk_key(256, 256)];
        keys.sort();
        let ranges: Vec<_> = keys.iter().map(|k| decode_chunk_key(k).unwrap()).collect();
        assert_eq!(ranges, [(2, 299), (256, 256), (300, 301)]);
        assert_eq!(decode_chunk_key(b"c\0"), None);
        assert_eq!(decode_chunk_key(&chunk_key(5, 4)), None);
    }

    #[test]
    fn rows_round_trip() {
        let mut counters = Counters::default();
        counters.failed = 3;
        counters.requeued = u64::MAX;
        assert_eq!(
            decode_row(&encode_row(&counters, true)).unwrap(),
            (counters, true)
        );
        assert!(decode_row(&[1, 2]).is_err());
    }
}
