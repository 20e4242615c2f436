//! The data layout: the keys of the one tree, what each holds, and the layout's version.
//!
//! Everything is in one tree, [`TREE`], with four kinds of entry told apart by the first
//! byte of their key:
//! - `c`, first id, last id → a chunk: the entries of up to [`MAX_CHUNK_TASKS`] tasks of
//!   one topic enqueued by one call, in id order, the first `first` and the last `last`
//!   (those still stored: waiting, running, dead, or finished and kept). Claims take a topic's tasks in id order, so a chunk per topic keeps
//!   a claim to few chunks when a batch mixes topics. The chunks of one call may overlap in
//!   ids, never by more than [`MAX_CHUNK_SPAN`]. Each entry holds what the task never
//!   changes (id, priority, topic, unique key) ahead of its record, so an entry whose record
//!   is garbage can still be indexed, claimed, salvaged and deleted like any other; and the
//!   key alone bounds the ids a chunk whose bytes are garbage held.
//! - `s`, topic → the topic's counters and paused flag.
//! - `r`, name → a schedule's state (the name's UTF-8 bytes as they are: sled keys are
//!   any bytes, so a name with ':', '/', spaces or any other character needs no escaping,
//!   and the keys sort by name in byte order).
//! - `m`, name → `last_id`, `last_token`, and the layout version (`schema`).
//!
//! Schedules are entries of the same tree, not a tree of their own, so that a fire (its
//! task's chunk, its topic's counters, the id counter and the schedule's new state) is one
//! `apply_batch` like every other move, which sled's recovery replays whole or not at all;
//! across two trees that would take a sled transaction.
//!
//! Integers in keys are big-endian, so the chunks are in id order, which `list` pages
//! through. The values' encoding is `codec.rs`.

use crate::codec;
use crate::error::backend_error;
use std::path::Path;
use taskmill_core::{Error, ErrorKind, Result};

/// The version of the data layout this code writes, kept under the key `mschema`: 6,
/// several tasks per key, finished tasks kept, headers kept (records of format 3, stats
/// rows with the `cancelled` counter), schedules kept (`r` entries).
///
/// Layout 5 is the same without schedules, layout 4 also with records of format 2 (no
/// headers), and layout 3 with records of format 1 and stats rows of eight counters: this
/// code reads all three as they are (none holds an `r` entry, so none has a schedule to
/// convert), and marks the database 6 when it opens it, since an older reader would take
/// the records it writes from then on for corrupt ones, or not see its schedules. Layout 1 (eight trees, the indexes stored
/// beside the records) kept its version in a `meta` tree; layout 2 (one key per task) in
/// this tree; neither is read.
pub const LAYOUT_VERSION: u32 = 6;

/// The oldest layout this code reads (and upgrades in place; see [`LAYOUT_VERSION`]).
const OLDEST_READ: u32 = 3;

/// The tree that holds everything.
pub(crate) const TREE: &str = "taskmill";

const CHUNK: u8 = b'c';
const STATS: u8 = b's';
const SCHEDULE: u8 = b'r';
const META: u8 = b'm';

/// The `meta` key of the last task id handed out.
pub(crate) const LAST_ID: &[u8] = b"mlast_id";
/// The `meta` key of the last fencing token handed out.
pub(crate) const LAST_TOKEN: &[u8] = b"mlast_token";
/// The `meta` key of the layout version.
pub(crate) const VERSION: &[u8] = b"mschema";
/// The prefix of every chunk key.
pub(crate) const CHUNKS: &[u8] = &[CHUNK];
/// The prefix of every stats row key.
pub(crate) const ROWS: &[u8] = &[STATS];
/// The prefix of every schedule key.
pub(crate) const SCHEDULES: &[u8] = &[SCHEDULE];
const _: () = assert!(LAST_ID[0] == META && VERSION[0] == META && LAST_TOKEN[0] == META);

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

/// A topic's stats row key.
pub(crate) fn row_key(topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic.len());
    key.push(STATS);
    key.extend_from_slice(topic.as_bytes());
    key
}

/// A schedule's key: its name's bytes, as they are, after the prefix.
pub(crate) fn schedule_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(SCHEDULE);
    key.extend_from_slice(name.as_bytes());
    key
}

/// Opens the tree, checking (and on a new database writing) the layout version.
pub(crate) fn open_tree(db: &sled::Db, path: &Path) -> Result<sled::Tree> {
    let ctx = || format!("cannot open the sled database at {}", path.display());
    // Checked before opening the tree, which would add it to an old database.
    if db.tree_names().iter().any(|name| name == b"meta") {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the sled database at {} has layout version 1, which this taskmill-sled \
                 (layout {LAYOUT_VERSION}) does not read: drain it with the taskmill version \
                 that wrote it, or move it aside",
                path.display()
            ),
        ));
    }
    let tree = db.open_tree(TREE).map_err(|e| backend_error(e, ctx()))?;
    match tree.get(VERSION).map_err(|e| backend_error(e, ctx()))? {
        Some(v) => {
            let version = codec::decode_u64(&v)?;
            let current = u64::from(LAYOUT_VERSION);
            if version < u64::from(OLDEST_READ) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the sled database at {} has layout version {version} (one key per \
                         task), which this taskmill-sled (layout {LAYOUT_VERSION}) does not \
                         read: drain it with the taskmill version that wrote it, or move it \
                         aside",
                        path.display()
                    ),
                ));
            }
            if version > current {
                return Err(Error::corrupt(format!(
                    "the sled database at {} has layout version {version}, newer than this \
                     taskmill-sled understands ({LAYOUT_VERSION}): upgrade taskmill",
                    path.display()
                )));
            }
            if version < current {
                tracing::info!(path = %path.display(), from = version, to = current,
                    "upgrading the sled database's layout in place (its records are read as they are)");
                write_version(db, &tree, path)?;
            }
        }
        None => write_version(db, &tree, path)?,
    }
    Ok(tree)
}

/// Marks the database as of [`LAYOUT_VERSION`], on disk before anything else is written.
fn write_version(db: &sled::Db, tree: &sled::Tree, path: &Path) -> Result<()> {
    let ctx = || format!("cannot open the sled database at {}", path.display());
    tree.insert(VERSION, &u64::from(LAYOUT_VERSION).to_be_bytes())
        .map_err(|e| backend_error(e, ctx()))?;
    db.flush().map_err(|e| backend_error(e, ctx()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn schedule_keys_are_in_name_order_apart_from_the_rest() {
        let names = ["a:b/c", "a", "ü nightly", "a b", ""];
        let mut keys: Vec<_> = names.iter().map(|n| schedule_key(n)).collect();
        keys.sort();
        let mut sorted = names.to_vec();
        sorted.sort();
        let back: Vec<_> = keys
            .iter()
            .map(|k| std::str::from_utf8(&k[1..]).unwrap())
            .collect();
        assert_eq!(back, sorted);
        assert!(keys.iter().all(|k| k.starts_with(SCHEDULES)
            && !k.starts_with(CHUNKS)
            && !k.starts_with(ROWS)
            && k[0] != META));
    }
}
