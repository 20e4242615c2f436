//! The Lua scripts, one per state change, loaded once and called by their SHA.
//!
//! Each script of a topic is `scripts/common.lua` (key layout and shared helpers) followed
//! by its own file; those that enqueue (`enqueue`, `enqueue_many`, `fire`, `fire_enqueue`) share
//! `enqueue_body.lua`, so a fired tick's task is enqueued by the very code of an enqueue,
//! and the two that claim (`claim`, `claim_many`) share `claim_body.lua`. The
//! schedule scripts share `schedule.lua` (the state's format). The sources stay `.lua`
//! files so they can be read, linted and tried with `redis-cli --eval` on their own.

use std::sync::LazyLock;

const COMMON: &str = include_str!("scripts/common.lua");
const ENQUEUE_BODY: &str = include_str!("scripts/enqueue_body.lua");
const SCHEDULE: &str = include_str!("scripts/schedule.lua");
const CLAIM_BODY: &str = include_str!("scripts/claim_body.lua");

/// One script: its full source and the SHA-1 Redis knows it by.
#[derive(Debug)]
pub(crate) struct Script {
    pub name: &'static str,
    pub source: String,
    pub sha: String,
}

impl Script {
    /// A script of one topic: `common.lua`, then `body`.
    fn new(name: &'static str, body: &str) -> Self {
        Self::of(name, &[COMMON, body])
    }

    /// A script made of `parts`, in order.
    fn of(name: &'static str, parts: &[&str]) -> Self {
        let source = parts.join("\n");
        let sha = redis::Script::new(&source).get_hash().to_owned();
        Script { name, source, sha }
    }
}

/// Every script of the store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
    /// Claims from several topics in one call (standalone Redis only: it builds their keys).
    pub claim_many: Script,
    /// Enqueues to several topics in one call (standalone Redis only).
    pub enqueue_many: Script,
    /// Builds the waiting-topic index from every topic (standalone Redis only).
    pub reindex: Script,
    pub renew: Script,
    pub progress: Script,
    pub apply: Script,
    pub recover: Script,
    pub prune: Script,
    pub requeue: Script,
    pub delete: Script,
    pub cancel: Script,
    pub pause: Script,
    pub stats: Script,
    pub list: Script,
    pub get: Script,
    /// The schedule scripts: `register`, `pause_schedule` and `prune_schedules` touch only
    /// the namespace's schedule hash (no `common.lua`: they take no topic's keys); `fire`
    /// is a topic's script that also reads and writes it.
    pub register: Script,
    pub fire: Script,
    /// `fire` in three steps, for a Redis Cluster, where the schedule hash and a topic are
    /// in different slots: `fire_decide` and `fire_commit` on the schedule hash, between
    /// them `fire_enqueue` on the topic (see `ops::fire`).
    pub fire_decide: Script,
    pub fire_enqueue: Script,
    pub fire_commit: Script,
    pub pause_schedule: Script,
    pub prune_schedules: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: Script::of(
        "enqueue",
        &[COMMON, ENQUEUE_BODY, include_str!("scripts/enqueue.lua")],
    ),
    claim: Script::of(
        "claim",
        &[COMMON, CLAIM_BODY, include_str!("scripts/claim.lua")],
    ),
    claim_many: Script::of(
        "claim_many",
        &[COMMON, CLAIM_BODY, include_str!("scripts/claim_many.lua")],
    ),
    enqueue_many: Script::of(
        "enqueue_many",
        &[
            COMMON,
            ENQUEUE_BODY,
            include_str!("scripts/enqueue_many.lua"),
        ],
    ),
    reindex: Script::new("reindex", include_str!("scripts/reindex.lua")),
    renew: Script::new("renew", include_str!("scripts/renew.lua")),
    progress: Script::new("progress", include_str!("scripts/progress.lua")),
    apply: Script::new("apply", include_str!("scripts/apply.lua")),
    recover: Script::new("recover", include_str!("scripts/recover.lua")),
    prune: Script::new("prune", include_str!("scripts/prune.lua")),
    requeue: Script::new("requeue", include_str!("scripts/requeue.lua")),
    delete: Script::new("delete", include_str!("scripts/delete.lua")),
    cancel: Script::new("cancel", include_str!("scripts/cancel.lua")),
    pause: Script::new("pause", include_str!("scripts/pause.lua")),
    stats: Script::new("stats", include_str!("scripts/stats.lua")),
    list: Script::new("list", include_str!("scripts/list.lua")),
    get: Script::new("get", include_str!("scripts/get.lua")),
    register: Script::of(
        "register",
        &[SCHEDULE, include_str!("scripts/register.lua")],
    ),
    fire: Script::of(
        "fire",
        &[
            COMMON,
            ENQUEUE_BODY,
            SCHEDULE,
            include_str!("scripts/fire.lua"),
        ],
    ),
    fire_decide: Script::of(
        "fire_decide",
        &[SCHEDULE, include_str!("scripts/fire_decide.lua")],
    ),
    fire_enqueue: Script::of(
        "fire_enqueue",
        &[
            COMMON,
            ENQUEUE_BODY,
            SCHEDULE,
            include_str!("scripts/fire_enqueue.lua"),
        ],
    ),
    fire_commit: Script::of(
        "fire_commit",
        &[SCHEDULE, include_str!("scripts/fire_commit.lua")],
    ),
    pause_schedule: Script::of(
        "pause_schedule",
        &[SCHEDULE, include_str!("scripts/pause_schedule.lua")],
    ),
    prune_schedules: Script::of(
        "prune_schedules",
        &[SCHEDULE, include_str!("scripts/prune_schedules.lua")],
    ),
});
