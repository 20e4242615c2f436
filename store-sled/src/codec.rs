//! How keys and values are laid out in the trees.
//!
//! Every integer in a key is big-endian with its sign bit flipped, so sled's byte order is
//! the numeric order: a prefix scan of `ready` yields tasks in claim order (priority, then
//! id) and one of `scheduled` yields them by due time. A topic in a key is followed by a
//! 0 byte, which no topic contains (`validate_topic` rejects control characters), so one
//! topic's keys never interleave with another's whose name extends it.

use std::sync::Arc;
use taskmill_core::{
    Counters, Error, Lease, Queue, QueueSizes, Result, TaskId, TaskRecord, Timestamp, TopicStats,
};

/// The key of a task's record in `tasks`, and of its entry in `work`.
pub(crate) fn id_key(id: TaskId) -> [u8; 8] {
    id.get().to_be_bytes()
}

/// The key of a unique key's entry in `unique`: keys are per topic, and a topic holds no
/// control character, so a NUL separates the two unambiguously.
pub(crate) fn unique_key(topic: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(topic.len() + 1 + key.len());
    out.extend_from_slice(topic.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The user's key from an entry key of `unique`.
pub(crate) fn unique_key_name(entry: &[u8]) -> String {
    let key = entry.splitn(2, |b| *b == 0).nth(1).unwrap_or(entry);
    String::from_utf8_lossy(key).into_owned()
}

/// The id at the end of an index key.
pub(crate) fn id_at_end(key: &[u8]) -> Option<TaskId> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(TaskId::new(u64::from_be_bytes(tail)))
}

/// The id of a `tasks` or `work` key.
pub(crate) fn id_of(key: &[u8]) -> Option<TaskId> {
    (key.len() == 8).then(|| id_at_end(key)).flatten()
}

/// A topic's prefix in the per-topic indexes.
pub(crate) fn topic_prefix(topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 19);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key
}

/// The topic a per-topic index key starts with.
pub(crate) fn topic_of(key: &[u8]) -> Option<&str> {
    let end = key.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&key[..end]).ok()
}

fn priority_bytes(priority: i16) -> [u8; 2] {
    ((priority as u16) ^ 0x8000).to_be_bytes()
}

fn priority_from(bytes: [u8; 2]) -> i16 {
    (u16::from_be_bytes(bytes) ^ 0x8000) as i16
}

fn time_bytes(t: Timestamp) -> [u8; 8] {
    ((t.as_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(bytes: [u8; 8]) -> Timestamp {
    Timestamp::from_millis((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// `ready`: topic, 0, priority, id. Due INPUT tasks in claim order.
pub(crate) fn ready_key(topic: &str, priority: i16, id: TaskId) -> Vec<u8> {
    let mut key = topic_prefix(topic);
    key.extend_from_slice(&priority_bytes(priority));
    key.extend_from_slice(&id_key(id));
    key
}

/// `scheduled`: topic, 0, run_at, id; the value is the priority. INPUT tasks not yet known
/// to be due, by due time.
pub(crate) fn scheduled_key(topic: &str, run_at: Timestamp, id: TaskId) -> Vec<u8> {
    let mut key = topic_prefix(topic);
    key.extend_from_slice(&time_bytes(run_at));
    key.extend_from_slice(&id_key(id));
    key
}

/// The upper bound (exclusive) of a topic's `scheduled` keys due at `now`.
pub(crate) fn scheduled_due_end(topic: &str, now: Timestamp) -> Vec<u8> {
    let mut key = topic_prefix(topic);
    key.extend_from_slice(&time_bytes(now + std::time::Duration::from_millis(1)));
    key
}

/// The priority stored as a `scheduled` value.
pub(crate) fn priority_value(priority: i16) -> [u8; 2] {
    priority_bytes(priority)
}

/// Reads a `scheduled` value back.
pub(crate) fn priority_of(value: &[u8]) -> i16 {
    value.try_into().map(priority_from).unwrap_or(0)
}

/// `dead`: topic, 0, id. DEAD tasks of a topic in id order.
pub(crate) fn dead_key(topic: &str, id: TaskId) -> Vec<u8> {
    let mut key = topic_prefix(topic);
    key.extend_from_slice(&id_key(id));
    key
}

/// A `work` entry: a task's claim. While a task is in WORK its record in `tasks` stays as
/// it was in INPUT, and this entry holds what the claim changed (attempt and lease), so a
/// claim, a renewal and a completion never rewrite the record; [`WorkEntry::apply_to`]
/// joins the two. It also lets a corrupt record be claimed, fenced, reaped and salvaged
/// like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkEntry {
    pub token: u64,
    pub deadline: Timestamp,
    pub priority: i16,
    pub attempt: u32,
    pub topic: Arc<str>,
    pub owner: Arc<str>,
}

impl WorkEntry {
    /// The record as it is in WORK: the stored (INPUT) record with this claim applied.
    pub fn apply_to(&self, mut record: TaskRecord) -> TaskRecord {
        record.queue = Queue::Work;
        record.attempt = self.attempt;
        record.lease = Some(Lease {
            owner: self.owner.clone(),
            token: self.token,
            deadline: self.deadline,
        });
        record
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + self.topic.len() + self.owner.len());
        v.extend_from_slice(&self.token.to_be_bytes());
        v.extend_from_slice(&time_bytes(self.deadline));
        v.extend_from_slice(&priority_bytes(self.priority));
        v.extend_from_slice(&self.attempt.to_be_bytes());
        // Topics are at most 200 bytes (`validate_topic`).
        v.extend_from_slice(&(self.topic.len() as u16).to_be_bytes());
        v.extend_from_slice(self.topic.as_bytes());
        v.extend_from_slice(self.owner.as_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Result<WorkEntry> {
        let bad = || Error::corrupt(format!("undecodable work entry ({} bytes)", v.len()));
        let field = |at: usize, len: usize| v.get(at..at + len).ok_or_else(bad);
        let topic_len = u16::from_be_bytes(field(22, 2)?.try_into().map_err(|_| bad())?) as usize;
        let topic = std::str::from_utf8(field(24, topic_len)?).map_err(|e| bad().with_source(e))?;
        let owner = std::str::from_utf8(&v[24 + topic_len..]).map_err(|e| bad().with_source(e))?;
        Ok(WorkEntry {
            token: u64::from_be_bytes(field(0, 8)?.try_into().map_err(|_| bad())?),
            deadline: time_from(field(8, 8)?.try_into().map_err(|_| bad())?),
            priority: priority_from(field(16, 2)?.try_into().map_err(|_| bad())?),
            attempt: u32::from_be_bytes(field(18, 4)?.try_into().map_err(|_| bad())?),
            topic: Arc::from(topic),
            owner: Arc::from(owner),
        })
    }
}

/// One `stats` row: a topic's counters, queue sizes and paused flag, moved in the same
/// transaction as the tasks they count.
pub(crate) fn encode_row(row: &TopicStats) -> Vec<u8> {
    let c = &row.counters;
    let s = &row.sizes;
    let fields = [
        c.enqueued,
        c.started,
        c.retried,
        c.failed,
        c.completed,
        c.recovered,
        c.released,
        c.requeued,
        s.input,
        s.work,
        s.dead,
    ];
    let mut v = Vec::with_capacity(fields.len() * 8 + 1);
    for f in fields {
        v.extend_from_slice(&f.to_be_bytes());
    }
    v.push(u8::from(row.paused));
    v
}

/// Reads a `stats` row back.
pub(crate) fn decode_row(v: &[u8]) -> Result<TopicStats> {
    if v.len() != 11 * 8 + 1 {
        return Err(Error::corrupt(format!(
            "undecodable stats row ({} bytes, expected 89)",
            v.len()
        )));
    }
    let f = |i: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&v[i * 8..i * 8 + 8]);
        u64::from_be_bytes(b)
    };
    Ok(TopicStats {
        counters: Counters {
            enqueued: f(0),
            started: f(1),
            retried: f(2),
            failed: f(3),
            completed: f(4),
            recovered: f(5),
            released: f(6),
            requeued: f(7),
        },
        sizes: QueueSizes {
            input: f(8),
            work: f(9),
            dead: f(10),
        },
        paused: v[88] != 0,
    })
}

/// A task record as stored: its JSON.
pub(crate) fn encode_record(record: &TaskRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(record)
        .map_err(|e| Error::storage(format!("cannot encode task {}", record.id)).with_source(e))
}

/// Reads a stored record; `Corrupt` when it cannot be decoded.
pub(crate) fn decode_record(id: TaskId, bytes: &[u8]) -> Result<TaskRecord> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(format!("cannot decode the stored record of task {id}")).with_source(e)
    })
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

    #[test]
    fn byte_order_is_claim_order() {
        let mut keys = [
            ready_key("t", 5, TaskId::new(1)),
            ready_key("t", -3, TaskId::new(9)),
            ready_key("t", 0, TaskId::new(2)),
            ready_key("t", -3, TaskId::new(4)),
            ready_key("t", i16::MIN, TaskId::new(300)),
            ready_key("t", i16::MAX, TaskId::new(0)),
        ];
        keys.sort();
        let order: Vec<u64> = keys.iter().map(|k| id_at_end(k).unwrap().get()).collect();
        assert_eq!(order, [300, 4, 9, 2, 1, 0]);
    }

    #[test]
    fn byte_order_is_time_order() {
        let times = [-5_000i64, -1, 0, 1, 1_700_000_000_000, i64::MAX, i64::MIN];
        let mut keys: Vec<_> = times
            .iter()
            .map(|t| scheduled_key("t", Timestamp::from_millis(*t), TaskId::new(1)))
            .collect();
        keys.sort();
        let mut sorted = times;
        sorted.sort();
        let back: Vec<i64> = keys
            .iter()
            .map(|k| time_from(k[2..10].try_into().unwrap()).as_millis())
            .collect();
        assert_eq!(back, sorted);
    }

    #[test]
    fn topics_do_not_interleave() {
        let a = ready_key("a", i16::MAX, TaskId::new(u64::MAX));
        let ab = ready_key("ab", i16::MIN, TaskId::new(0));
        assert!(a < ab);
        assert!(!ab.starts_with(&topic_prefix("a")));
        assert_eq!(topic_of(&ab), Some("ab"));
    }

    #[test]
    fn entries_round_trip() {
        let w = WorkEntry {
            token: 77,
            deadline: Timestamp::from_millis(-12),
            priority: -2,
            attempt: 3,
            topic: Arc::from("emails"),
            owner: Arc::from("manager-1"),
        };
        assert_eq!(WorkEntry::decode(&w.encode()).unwrap(), w);
        assert!(WorkEntry::decode(b"short").is_err());
        let mut row = TopicStats::default();
        row.counters.failed = 3;
        row.sizes.dead = u64::MAX;
        row.paused = true;
        assert_eq!(decode_row(&encode_row(&row)).unwrap(), row);
        assert!(decode_row(&[1, 2]).is_err());
    }
}
