//! How keys and values are laid out in the one tree.
//!
//! Three kinds of entry, told apart by their first byte:
//! - `t`, id, priority, topic, 0, [1, unique key] → the task's record (binary, below). The
//!   fields a task never changes live in the key, so a record whose value is garbage can
//!   still be indexed, claimed, salvaged and deleted like any other.
//! - `s`, topic → the topic's counters and paused flag.
//! - `m`, name → `last_id`, `last_token`, `schema`.
//!
//! Integers in keys are big-endian (priorities with the sign bit flipped), so the records
//! are in id order, which `list` pages through.

use std::sync::Arc;
use taskmill_core::{
    Counters, Error, Lease, Payload, Queue, Result, TaskId, TaskRecord, Timestamp,
};

const TASK: u8 = b't';
const STATS: u8 = b's';
const META: u8 = b'm';

/// The `meta` key of the last task id handed out.
pub(crate) const LAST_ID: &[u8] = b"mlast_id";
/// The `meta` key of the last fencing token handed out.
pub(crate) const LAST_TOKEN: &[u8] = b"mlast_token";
/// The `meta` key of the on-disk layout version.
pub(crate) const SCHEMA: &[u8] = b"mschema";
/// The prefix of every record key.
pub(crate) const TASKS: &[u8] = &[TASK];
/// The prefix of every stats row key.
pub(crate) const ROWS: &[u8] = &[STATS];
const _: () = assert!(LAST_ID[0] == META && SCHEMA[0] == META && LAST_TOKEN[0] == META);

/// The first byte of every record value; another value is a record of a later format.
const FORMAT: u8 = 1;

/// The unchanging part of a task, kept in its record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyParts<'a> {
    pub id: TaskId,
    pub priority: i16,
    pub topic: &'a str,
    pub unique: Option<&'a str>,
}

impl KeyParts<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let unique = self.unique.map_or(0, |u| u.len() + 1);
        let mut key = Vec::with_capacity(12 + self.topic.len() + unique);
        key.push(TASK);
        key.extend_from_slice(&self.id.get().to_be_bytes());
        key.extend_from_slice(&((self.priority as u16) ^ 0x8000).to_be_bytes());
        key.extend_from_slice(self.topic.as_bytes());
        // No topic holds a control character (`validate_topic`), so the 0 ends it.
        key.push(0);
        if let Some(u) = self.unique {
            key.push(1);
            key.extend_from_slice(u.as_bytes());
        }
        key
    }

    /// `None` when `key` is not a record key this code wrote.
    pub fn decode(key: &[u8]) -> Option<KeyParts<'_>> {
        let rest = key.strip_prefix(TASKS)?;
        let id = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let priority = (u16::from_be_bytes(rest.get(8..10)?.try_into().ok()?) ^ 0x8000) as i16;
        let rest = rest.get(10..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        let topic = std::str::from_utf8(&rest[..end]).ok()?;
        let unique = match &rest[end + 1..] {
            [] => None,
            [1, u @ ..] => Some(std::str::from_utf8(u).ok()?),
            _ => return None,
        };
        Some(KeyParts {
            id: TaskId::new(id),
            priority,
            topic,
            unique,
        })
    }

    /// The key of `record`.
    pub fn of(record: &TaskRecord) -> KeyParts<'_> {
        KeyParts {
            id: record.id,
            priority: record.priority,
            topic: &record.topic,
            unique: record.unique_key.as_deref(),
        }
    }
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
/// and the arguments' JSON as the rest. Little-endian; strings carry a u32 length.
pub(crate) fn encode_record(record: &TaskRecord, out: &mut Vec<u8>) {
    out.clear();
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
        Some(TaskRecord {
            id: key.id,
            queue: state.queue,
            topic: topic.clone(),
            external_id,
            args: Payload::from_stored(args),
            attempt,
            max_retries,
            priority: key.priority,
            enqueued_at,
            run_at: state.run_at,
            unique_key: key.unique.map(Box::from),
            last_error,
            failed_at,
            lease,
        })
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
    let counters = Counters {
        enqueued: f(0),
        started: f(1),
        retried: f(2),
        failed: f(3),
        completed: f(4),
        recovered: f(5),
        released: f(6),
        requeued: f(7),
    };
    Ok((counters, v[64] != 0))
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
        TaskRecord {
            id: TaskId::new(42),
            queue: Queue::Work,
            topic: "emails".into(),
            external_id: Some("ext".into()),
            args: Payload::from_stored(r#"{"to":"ada"}"#),
            attempt: 3,
            max_retries: 7,
            priority: -2,
            enqueued_at: Timestamp::from_millis(-12),
            run_at: Timestamp::from_millis(1_700_000_000_000),
            unique_key: Some("k".into()),
            last_error: Some("boom".into()),
            failed_at: Some(Timestamp::from_millis(5)),
            lease: Some(Lease {
                owner: "m1".into(),
                token: 77,
                deadline: Timestamp::from_millis(99),
            }),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        let full = record();
        let bare = TaskRecord {
            queue: Queue::Input,
            external_id: None,
            unique_key: None,
            last_error: None,
            failed_at: None,
            lease: None,
            ..record()
        };
        for r in [full, bare] {
            let key = KeyParts::of(&r).encode();
            let parts = KeyParts::decode(&key).unwrap();
            assert_eq!(parts, KeyParts::of(&r));
            encode_record(&r, &mut out);
            assert_eq!(decode_record(&parts, &r.topic, &out).unwrap(), r);
            let state = decode_state(&out).unwrap();
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

    #[test]
    fn keys_are_in_id_order() {
        let key = |id, priority, topic| {
            KeyParts {
                id: TaskId::new(id),
                priority,
                topic,
                unique: None,
            }
            .encode()
        };
        let mut keys = [
            key(300, 5, "b"),
            key(2, i16::MAX, "a"),
            key(256, i16::MIN, "zz"),
        ];
        keys.sort();
        let ids: Vec<u64> = keys
            .iter()
            .map(|k| KeyParts::decode(k).unwrap().id.get())
            .collect();
        assert_eq!(ids, [2, 256, 300]);
        assert_eq!(KeyParts::decode(&key(1, -3, "t")).unwrap().priority, -3);
    }

    #[test]
    fn rows_round_trip() {
        let counters = Counters {
            failed: 3,
            requeued: u64::MAX,
            ..Counters::default()
        };
        assert_eq!(
            decode_row(&encode_row(&counters, true)).unwrap(),
            (counters, true)
        );
        assert!(decode_row(&[1, 2]).is_err());
    }
}
