//! The Lua scripts, one per state change, loaded once and called by their SHA.
//!
//! Each script is `scripts/common.lua` (key layout and shared helpers) followed by its own
//! file. The sources stay `.lua` files so they can be read, linted and tried with
//! `redis-cli --eval` on their own.

use std::sync::LazyLock;

const COMMON: &str = include_str!("scripts/common.lua");

/// One script: its full source and the SHA-1 Redis knows it by.
#[derive(Debug)]
pub(crate) struct Script {
    pub name: &'static str,
    pub source: String,
    pub sha: String,
}

impl Script {
    fn new(name: &'static str, body: &str) -> Self {
        let source = format!("{COMMON}\n{body}");
        let sha = redis::Script::new(&source).get_hash().to_owned();
        Script { name, source, sha }
    }
}

/// Every script of the store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
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
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: Script::new("enqueue", include_str!("scripts/enqueue.lua")),
    claim: Script::new("claim", include_str!("scripts/claim.lua")),
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
});
