//! The data layout: the keys of a namespace and of each of its topics.
//!
//! The README's "Data layout" section says what each key holds; `codec.rs` how a record
//! is written. Every key of one topic shares the hash tag `{namespace:topic}`, so a
//! topic's script touches keys of one hash slot, and the namespace's waiting-topic index
//! (`Keys::waiting`) besides.
//!
//! There is no layout version: Redis keeps none, and a namespace written by an older
//! layout is read as it is (see the README's "Old namespaces"). One written before
//! schedules has no `ns:schedules` hash, which reads as no schedules; the first
//! registration or fire creates it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The namespace's global keys and channels, and a cache of per-topic key sets.
#[derive(Debug)]
pub(crate) struct Keys {
    namespace: String,
    /// Whether the namespace is on a Redis Cluster: a topic's scripts then get only the
    /// keys of its own slot (not `waiting`).
    cluster: bool,
    /// STRING: the last task id handed out (INCRBY once per enqueue batch).
    pub ids: String,
    /// SET: every topic that was ever enqueued to or paused.
    pub topics: String,
    /// Channel: a message whenever work may have become available.
    pub wake: String,
    /// Channel: JSON arrays of events.
    pub events: String,
    /// Channel: JSON arrays of the ids of running tasks whose cancel was requested.
    pub cancel: String,
    /// HASH: every schedule's state, name -> the state (see `scripts/schedule.lua`). One
    /// hash rather than a key per schedule: a name, which may hold any character but
    /// controls (`{}` `:` `*` quotes, unicode), is a field and never part of a key, so it
    /// needs no escaping and cannot act as a hash tag; listing is one `HGETALL` (no
    /// `SCAN`), and a fire reads and writes one field.
    pub schedules: String,
    /// ZSET: the waiting-topic index: each topic that may have due INPUT work, member its
    /// hash tag `{ns:T}`, score at most the earliest `run_at` in its INPUT (`-inf` for one
    /// with due work now). Written by the topic scripts (as `KEYS[18]`) and read once per
    /// claim, so that a claim visits only due topics. It spans slots: under Redis Cluster
    /// the topic scripts could no longer write it (see the README's "Waiting topics").
    pub waiting: String,
    /// STRING: `1` once `waiting` was built from every topic (see `scripts/reindex.lua`);
    /// absent in a namespace written before the index.
    pub waiting_built: String,
    cache: Mutex<HashMap<Arc<str>, Arc<TopicKeys>>>,
}

/// The keys of one topic, in the order every script takes them, plus the script preamble
/// arguments (see `scripts/common.lua`).
#[derive(Debug)]
pub(crate) struct TopicKeys {
    /// meta, ready, scheduled, dead, later, unique, leases, tasks, fresh, completed,
    /// cancelled, finished, cancels, progress, due, finish_log, ends, then the namespace's
    /// waiting-topic index (`Keys::waiting`, the one key of another slot).
    pub keys: [String; 18],
    /// The hash tag `{ns:T}` every key of the topic starts with: its member in the
    /// waiting-topic index.
    pub tag: String,
    /// The topic as a JSON string, for events built inside scripts.
    pub topic_json: String,
}

impl TopicKeys {
    /// The `finished` sorted set: the topic's COMPLETED and CANCELLED tasks by
    /// `finished_at` that are not in `finish_log`.
    pub fn finished(&self) -> &str {
        &self.keys[11]
    }

    /// The `finish_log` list: the topic's COMPLETED and CANCELLED tasks as they finished,
    /// `finished_at:id` entries whose times never decrease and (once `meta` has
    /// `log_ids`) whose ids strictly ascend, so that it lists COMPLETED by id too.
    pub fn finish_log(&self) -> &str {
        &self.keys[15]
    }

    /// The `leases` hash: the topic's WORK.
    pub fn leases(&self) -> &str {
        &self.keys[6]
    }

    /// The keys telling whether a task is unfinished (in INPUT or WORK): `leases`,
    /// `ready`, `scheduled` and `fresh`, the order `scripts/fire.lua` takes them in for
    /// the topic of a schedule's last task.
    pub fn unfinished(&self) -> [&str; 4] {
        [&self.keys[6], &self.keys[1], &self.keys[2], &self.keys[8]]
    }
}

impl Keys {
    pub fn new(namespace: &str, cluster: bool) -> Self {
        Keys {
            namespace: namespace.to_owned(),
            cluster,
            ids: format!("{namespace}:ids"),
            topics: format!("{namespace}:topics"),
            wake: format!("{namespace}:wake"),
            events: format!("{namespace}:events"),
            cancel: format!("{namespace}:cancel"),
            schedules: format!("{namespace}:schedules"),
            waiting: format!("{namespace}:waiting"),
            waiting_built: format!("{namespace}:waiting_built"),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The event channel as a topic's script gets it: on a cluster `''`, so that scripts
    /// publish no events (see `scripts/common.lua`, `listening`). Events a script would
    /// publish on its topic's node could reach a subscriber on another node out of order
    /// with those published on other nodes; the store publishes them itself instead, all
    /// through one node.
    pub fn events_for_scripts(&self) -> &str {
        if self.cluster {
            ""
        } else {
            &self.events
        }
    }

    /// The keys a script of `topic` gets: all 18, or on a cluster the 17 of the topic's
    /// own slot, without the waiting-topic index (the scripts then leave it alone).
    pub fn of_topic<'t>(&self, topic: &'t TopicKeys) -> &'t [String] {
        if self.cluster {
            &topic.keys[..17]
        } else {
            &topic.keys[..]
        }
    }

    /// The topic a member of the waiting-topic index names (its hash tag `{ns:T}`), or
    /// `None` for a member of another form.
    pub fn topic_of_tag<'a>(&self, tag: &'a str) -> Option<&'a str> {
        tag.strip_prefix('{')?
            .strip_prefix(self.namespace.as_str())?
            .strip_prefix(':')?
            .strip_suffix('}')
    }

    /// `SCAN MATCH` patterns that match every key of the namespace and no other: keys are
    /// `ns:…` or `{ns:…`, and a namespace holds neither `:` nor a glob character, so no
    /// other namespace's key starts the same way.
    pub fn patterns(&self) -> [String; 2] {
        let namespace = &self.namespace;
        [format!("{namespace}:*"), format!("{{{namespace}:*")]
    }

    /// The keys of `topic`, all under the hash tag `{namespace:topic}`.
    pub fn topic(&self, topic: &Arc<str>) -> Arc<TopicKeys> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = cache.get(topic) {
            return keys.clone();
        }
        // Bounded: a process that sees endless distinct topics does not grow without end.
        if cache.len() > 10_000 {
            cache.clear();
        }
        let tag = format!("{{{}:{}}}", self.namespace, topic);
        let mut names = [
            "meta",
            "ready",
            "scheduled",
            "dead",
            "later",
            "unique",
            "leases",
            "tasks",
            "fresh",
            "completed",
            "cancelled",
            "finished",
            "cancels",
            "progress",
            "due",
            "finish_log",
            "ends",
            "",
        ]
        .map(|suffix| format!("{tag}:{suffix}"));
        names[17] = self.waiting.clone();
        let keys = Arc::new(TopicKeys {
            keys: names,
            tag: tag.clone(),
            topic_json: serde_json::to_string(&**topic).unwrap_or_else(|_| "\"\"".to_owned()),
        });
        cache.insert(topic.clone(), keys.clone());
        keys
    }
}
