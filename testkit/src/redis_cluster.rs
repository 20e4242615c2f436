//! A private Redis Cluster for tests: `redis-server` nodes on free loopback ports, formed
//! with `redis-cli --cluster create`, killed on drop (or, for [`RedisCluster::shared`], when
//! the test process exits).
//!
//! Besides starting and stopping, it does to a cluster what an operator does, with the real
//! protocol, so that a store sees what clients see: moving one slot with its keys
//! ([`RedisCluster::migrate_slot`], ASK and MOVED redirections on the way), killing a
//! primary and waiting for its replica to take over ([`RedisCluster::kill_primary_of`],
//! [`RedisCluster::wait_failover`]), waiting for replication
//! ([`RedisCluster::wait_replicated`]). It also counts keys per node and tells slots and
//! their owners.
//!
//! Every method blocks (plain connections, one per request); from an async test that must
//! keep running meanwhile, call the slow ones (migrations, failovers) in
//! `tokio::task::spawn_blocking` on an `Arc<RedisCluster>` (or the `&'static` shared one).
//!
//! Never touches a Redis the user runs: each node has its own free port, cluster bus port
//! and temporary directory, and everything is on 127.0.0.1.

use crate::redis::{RedisServer, ServerConfig};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Where `redis-cli` is looked for first (then `$PATH`).
const DEFAULT_CLI: &str = "/usr/bin/redis-cli";
/// How to install `redis-cli`, for the message that says it is missing.
const INSTALL_CLI: &str = "install it with `apt-get install redis-tools` (the `redis-server` \
                           package brings it too)";
/// The number of hash slots of every Redis Cluster.
pub const SLOTS: u32 = 16384;
/// How long a new cluster may take to agree on its slots and sync its replicas.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `redis-cli --cluster create` may run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the waits look again.
const POLL: Duration = Duration::from_millis(20);
/// Connect, read and write timeout of the plain connections to the nodes.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The MIGRATE timeout, in milliseconds: how long one batch of keys may take to move.
const MIGRATE_TIMEOUT_MS: u64 = 5_000;
/// Keys moved per MIGRATE by [`RedisCluster::migrate_slot`].
const DEFAULT_BATCH: usize = 10;
/// The node settings every node starts with, besides the cluster ones `ServerConfig`
/// adds: a node is marked failed after 1 s of silence; replicas sync at once (diskless,
/// without the 5 s wait for more replicas); a replica fails over however long it was cut
/// off, and never wanders to another primary.
const NODE_ARGS: [&str; 8] = [
    "--cluster-node-timeout",
    "1000",
    "--repl-diskless-sync-delay",
    "0",
    "--cluster-replica-validity-factor",
    "0",
    "--cluster-allow-replica-migration",
    "no",
];

/// A running Redis Cluster owned by a test; its nodes are SIGKILLed and their directories
/// removed on drop.
///
/// Nodes are numbered in the order they were started; `redis-cli --cluster create` makes
/// the first `primaries` of them primaries, and the others replicas. Failovers change who
/// is a primary: [`primaries`](Self::primaries) and [`nodes`](Self::nodes) ask the
/// cluster.
#[derive(Debug)]
pub struct RedisCluster {
    ports: Vec<u16>,
    ids: Vec<String>,
    replicas_per_primary: usize,
    /// The process-wide cluster of [`shared`](Self::shared): nobody may kill its nodes.
    shared: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    servers: Vec<RedisServer>,
    /// The primaries killed by [`RedisCluster::kill_primary_of`], with their replicas at
    /// that moment, for [`RedisCluster::wait_failover`].
    killed: Vec<Killed>,
}

#[derive(Debug, Clone)]
struct Killed {
    port: u16,
    id: String,
    replicas: Vec<String>,
}

/// One node as the cluster sees it: a line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterNode {
    /// The node id (40 hex digits).
    pub id: String,
    /// Its client port on 127.0.0.1 (0 when the node has no address yet).
    pub port: u16,
    /// Whether it is a primary (`master`).
    pub primary: bool,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// Whether it is flagged `fail` or `fail?` (failing or suspected).
    pub failing: bool,
    /// The slot ranges it serves (for a primary).
    pub slots: Vec<RangeInclusive<u16>>,
}

impl ClusterNode {
    /// Parses one line of `CLUSTER NODES`; also whether the line is the answering node's
    /// own (`myself`).
    fn parse(line: &str) -> Option<(ClusterNode, bool)> {
        let mut fields = line.split_whitespace();
        let id = fields.next()?.to_string();
        let address = fields.next()?;
        let flags: Vec<&str> = fields.next()?.split(',').collect();
        let primary_id = fields.next()?;
        // ping-sent, pong-recv, config-epoch, link-state
        let mut fields = fields.skip(4);
        let mut slots = Vec::new();
        for slot in fields.by_ref() {
            // `[slot->-id]` and `[slot-<-id]`: a slot being moved, on its own node's line.
            if slot.starts_with('[') {
                continue;
            }
            let range = match slot.split_once('-') {
                Some((a, b)) => a.parse().ok()?..=b.parse().ok()?,
                None => {
                    let s = slot.parse().ok()?;
                    s..=s
                }
            };
            slots.push(range);
        }
        let host_port = address.split(['@', ',']).next()?;
        let port = host_port.rsplit_once(':')?.1.parse().unwrap_or(0);
        let node = ClusterNode {
            id,
            port,
            primary: flags.contains(&"master"),
            primary_id: (primary_id != "-").then(|| primary_id.to_string()),
            failing: flags.contains(&"fail") || flags.contains(&"fail?"),
            slots,
        };
        Some((node, flags.contains(&"myself")))
    }

    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|r| r.contains(&slot))
    }
}

/// Where a migration is, for the hook of [`RedisCluster::migrate_slot_with`], called after
/// each batch of keys moved while the slot is half-moved (MIGRATING on its old owner,
/// IMPORTING on its new one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStep {
    /// The slot being moved.
    pub slot: u16,
    /// Its old owner's port.
    pub from: u16,
    /// Its new owner's port.
    pub to: u16,
    /// How many batches were moved so far (1 at the first call).
    pub batches: usize,
    /// How many keys were moved so far.
    pub moved: usize,
    /// How many keys of the slot the old owner still holds.
    pub left: u64,
}

fn cli_binary() -> PathBuf {
    if Path::new(DEFAULT_CLI).exists() {
        return PathBuf::from(DEFAULT_CLI);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("redis-cli"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("redis-cli not found (looked at {DEFAULT_CLI} and $PATH): {INSTALL_CLI}")
        })
}

/// A plain connection to the node on `port`, with timeouts.
fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?;
    let conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

/// Runs `cmd` on the node on `port`, on a connection of its own.
fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    cmd.query(&mut connect(port)?)
}

/// As [`query`], failing the test with what was asked on an error.
fn must<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd, what: &str) -> T {
    query(port, cmd).unwrap_or_else(|e| panic!("{what} on node 127.0.0.1:{port}: {e}"))
}

fn cluster_cmd(sub: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg(sub);
    cmd
}

/// The `field:value` lines of an INFO-style answer (`CLUSTER INFO`, `INFO replication`).
fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `CLUSTER NODES` of the node on `port`: every node as it sees them, and itself.
fn view(port: u16) -> redis::RedisResult<(Vec<ClusterNode>, ClusterNode)> {
    let text: String = query(port, &cluster_cmd("NODES"))?;
    let mut nodes = Vec::new();
    let mut me = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((node, myself)) = ClusterNode::parse(line) else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::ParseError,
                "an unreadable CLUSTER NODES line",
                line.to_string(),
            )));
        };
        if myself {
            me = Some(node.clone());
        }
        nodes.push(node);
    }
    let me = me.ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::ParseError,
            "CLUSTER NODES without a myself line",
        ))
    })?;
    Ok((nodes, me))
}

/// Which node id serves each slot range (first slot, last slot, id), sorted.
type SlotMap = Vec<(u16, u16, String)>;

/// The slot map of a view: what every node must agree on.
fn slot_map(nodes: &[ClusterNode]) -> SlotMap {
    let mut map: SlotMap = nodes
        .iter()
        .filter(|n| n.primary)
        .flat_map(|n| n.slots.iter().map(|r| (*r.start(), *r.end(), n.id.clone())))
        .collect();
    map.sort();
    map
}

impl RedisCluster {
    /// Starts `primaries * (1 + replicas_per_primary)` nodes, forms a cluster of them with
    /// `redis-cli --cluster create` (slots spread evenly over the primaries, each primary
    /// with `replicas_per_primary` replicas), and waits until every node says
    /// `cluster_state:ok` with all 16384 slots assigned, every node agrees on who serves
    /// them, and every replica is linked to its primary.
    ///
    /// # Panics
    /// When `primaries` is below 3 (Redis Cluster's minimum), when `redis-server` or
    /// `redis-cli` is missing (the message says how to install them), or when the cluster
    /// does not form within 30 s (the message says what was still wrong).
    pub fn start(primaries: usize, replicas_per_primary: usize) -> Self {
        Self::launch(primaries, replicas_per_primary, false)
    }

    /// The cluster of this test process: 3 primaries without replicas, started at the first
    /// call, shared by every test of the process, each in namespaces of its own. It is
    /// never dropped: its nodes die when the process exits, however it exits (see
    /// [`ServerConfig::die_with_process`]). Its nodes cannot be killed and its slots should
    /// not be moved: a test that does either starts a cluster of its own.
    ///
    /// # Panics
    /// As [`start`](Self::start), in every test that calls it while the cluster cannot be
    /// started.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(|| Self::launch(3, 0, true))
    }

    fn launch(primaries: usize, replicas_per_primary: usize, shared: bool) -> Self {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries, not {primaries}"
        );
        let cli = cli_binary();
        let total = primaries * (1 + replicas_per_primary);
        let config = ServerConfig::default()
            .cluster(true)
            .die_with_process(true)
            .args(NODE_ARGS);
        let servers: Vec<RedisServer> = (0..total)
            .map(|_| RedisServer::start_with(config.clone()))
            .collect();
        let ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
        let ids = ports
            .iter()
            .map(|&port| must(port, &cluster_cmd("MYID"), "CLUSTER MYID"))
            .collect();
        let cluster = RedisCluster {
            ports,
            ids,
            replicas_per_primary,
            shared,
            state: Mutex::new(State {
                servers,
                killed: Vec::new(),
            }),
        };
        cluster.create(&cli, replicas_per_primary);
        cluster.wait_formed(FORM_TIMEOUT);
        cluster
    }

    /// Runs `redis-cli --cluster create` on every node, bounded by [`CREATE_TIMEOUT`].
    fn create(&self, cli: &Path, replicas: usize) {
        let mut cmd = Command::new(cli);
        cmd.args(["--cluster", "create"])
            .args(self.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}): {INSTALL_CLI}", cli.display()));
        let deadline = Instant::now() + CREATE_TIMEOUT;
        // Its output is a few kilobytes, well within a pipe's buffer, so it cannot block on
        // it while this loop waits.
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => {
                    let _ = child.kill();
                    break;
                }
                Err(e) => panic!("waiting for redis-cli: {e}"),
            }
        }
        let out = child.wait_with_output().expect("redis-cli's output");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}) within {CREATE_TIMEOUT:?}:\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until [`problem`](Self::problem) finds nothing, with the replicas
    /// `redis-cli` made.
    fn wait_formed(&self, limit: Duration) {
        self.wait_for("the new cluster to form", limit, || {
            self.problem(Some(self.replicas_per_primary), Some(self.ports.len()))
        });
    }

    /// Polls `problem` until it answers `None`, failing the test with its last answer after
    /// `limit`.
    fn wait_for(&self, what: &str, limit: Duration, mut problem: impl FnMut() -> Option<String>) {
        let deadline = Instant::now() + limit;
        loop {
            let Some(problem) = problem() else {
                return;
            };
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}: {problem}\n(node logs: {})",
                self.logs()
            );
            std::thread::sleep(POLL);
        }
    }

    /// What is not right yet with the live nodes, or `None` when: every one says
    /// `cluster_state:ok` with 16384 slots assigned and ok; all agree on which node serves
    /// each slot, and that node is a live one; every live replica is linked to its
    /// primary and synced. With `replicas`, every primary serving slots also has that
    /// many live, linked replicas; with `known`, every node knows that many nodes.
    fn problem(&self, replicas: Option<usize>, known: Option<usize>) -> Option<String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, SlotMap)> = None;
        let mut linked_replicas: BTreeMap<String, usize> = BTreeMap::new();
        for &port in &live {
            let info: String = match query(port, &cluster_cmd("INFO")) {
                Ok(info) => info,
                Err(e) => return Some(format!("127.0.0.1:{port} did not answer: {e}")),
            };
            let info = fields(&info);
            for (field, want) in [
                ("cluster_state", "ok".to_string()),
                ("cluster_slots_assigned", SLOTS.to_string()),
                ("cluster_slots_ok", SLOTS.to_string()),
            ] {
                let got = info.get(field).map(String::as_str).unwrap_or("(none)");
                if got != want {
                    return Some(format!("127.0.0.1:{port} says {field}:{got}"));
                }
            }
            if let Some(known) = known {
                let got = info.get("cluster_known_nodes").map(String::as_str);
                if got != Some(known.to_string().as_str()) {
                    return Some(format!("127.0.0.1:{port} knows {got:?} nodes, not {known}"));
                }
            }
            let (nodes, me) = match view(port) {
                Ok(v) => v,
                Err(e) => return Some(format!("CLUSTER NODES on 127.0.0.1:{port}: {e}")),
            };
            let map = slot_map(&nodes);
            if let Some(owner) = map.iter().find(|(_, _, id)| !self.is_live_id(id, &live)) {
                return Some(format!(
                    "127.0.0.1:{port} has slots {}-{} on node {}, which is dead",
                    owner.0, owner.1, owner.2
                ));
            }
            match &agreed {
                None => agreed = Some((port, map)),
                Some((first, first_map)) if *first_map != map => {
                    return Some(format!(
                        "127.0.0.1:{port} and 127.0.0.1:{first} disagree on the slots"
                    ))
                }
                Some(_) => {}
            }
            if !me.primary {
                let repl: String = match query(port, redis::cmd("INFO").arg("replication")) {
                    Ok(text) => text,
                    Err(e) => return Some(format!("INFO on 127.0.0.1:{port}: {e}")),
                };
                let repl = fields(&repl);
                let link = repl.get("master_link_status").map(String::as_str);
                let syncing = repl.get("master_sync_in_progress").map(String::as_str);
                if link != Some("up") || syncing != Some("0") {
                    return Some(format!(
                        "replica 127.0.0.1:{port}: master_link_status {link:?}, \
                         master_sync_in_progress {syncing:?}"
                    ));
                }
                if let Some(primary) = me.primary_id {
                    *linked_replicas.entry(primary).or_default() += 1;
                }
            }
        }
        if let (Some(want), Some((_, map))) = (replicas, &agreed) {
            let serving: std::collections::BTreeSet<&String> =
                map.iter().map(|(_, _, id)| id).collect();
            for id in serving {
                let got = linked_replicas.get(id).copied().unwrap_or(0);
                if got != want {
                    return Some(format!(
                        "primary {id} has {got} linked replicas, not {want}"
                    ));
                }
            }
        }
        None
    }

    fn is_live_id(&self, id: &str, live: &[u16]) -> bool {
        self.ids
            .iter()
            .zip(&self.ports)
            .any(|(i, p)| i == id && live.contains(p))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding it left nothing half-done that matters here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ports of the nodes not killed, in start order.
    fn live_ports(&self) -> Vec<u16> {
        self.state()
            .servers
            .iter()
            .filter(|s| s.is_running())
            .map(RedisServer::port)
            .collect()
    }

    /// Where the nodes' logs are, for failure messages.
    fn logs(&self) -> String {
        let state = self.state();
        state
            .servers
            .iter()
            .map(|s| s.dir().display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first live node, to ask about the cluster.
    fn any_live(&self) -> u16 {
        *self
            .live_ports()
            .first()
            .expect("every node of the cluster was killed")
    }

    /// A store URL for this cluster and `namespace`:
    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…/?namespace=NS`, every current primary
    /// a seed.
    ///
    /// # Panics
    /// When no node answers.
    pub fn url(&self, namespace: &str) -> String {
        let seeds: Vec<String> = self
            .primaries()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}/?namespace={namespace}", seeds.join(","))
    }

    /// The plain URL of node `i` (start order), `redis://127.0.0.1:P/0`, for a client that
    /// talks to that node alone.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn node_url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/0", self.ports[i])
    }

    /// Every node's port, in start order (killed ones too).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Every node's id, in start order (killed ones too).
    pub fn node_ids(&self) -> &[String] {
        &self.ids
    }

    /// The id of the node on `port`.
    ///
    /// # Panics
    /// When no node of the cluster has that port.
    pub fn id_of(&self, port: u16) -> &str {
        let i = self.index_of(port);
        &self.ids[i]
    }

    fn index_of(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|&p| p == port)
            .unwrap_or_else(|| panic!("no node of the cluster has port {port}"))
    }

    /// Every node, as the first live node sees them (`CLUSTER NODES`).
    ///
    /// # Panics
    /// When that node does not answer.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let port = self.any_live();
        view(port)
            .unwrap_or_else(|e| panic!("CLUSTER NODES on 127.0.0.1:{port}: {e}"))
            .0
    }

    /// The ports of the current primaries, in start order: the live nodes that say they
    /// are one (after a failover, the promoted replica; never a killed node).
    ///
    /// # Panics
    /// When a live node does not answer.
    pub fn primaries(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&port| {
                view(port)
                    .unwrap_or_else(|e| panic!("CLUSTER NODES on 127.0.0.1:{port}: {e}"))
                    .1
                    .primary
            })
            .collect()
    }

    /// How many keys match `pattern` (a `SCAN … MATCH` glob, e.g. `{ns:*`) on each current
    /// primary: `(port, count)` in start order.
    ///
    /// # Panics
    /// When a primary does not answer, or its SCAN does not end after as many rounds as it
    /// could need.
    pub fn keys_per_node(&self, pattern: &str) -> Vec<(u16, u64)> {
        const COUNT: u64 = 1000;
        self.primaries()
            .into_iter()
            .map(|port| {
                let mut conn =
                    connect(port).unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
                let size: u64 = redis::cmd("DBSIZE")
                    .query(&mut conn)
                    .unwrap_or_else(|e| panic!("DBSIZE on 127.0.0.1:{port}: {e}"));
                // SCAN ends after about size / COUNT rounds; the slack covers keys written
                // meanwhile and rehashing.
                let rounds = size / COUNT * 4 + 1000;
                let (mut cursor, mut count) = (0u64, 0u64);
                for _ in 0..rounds {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(COUNT)
                        .query(&mut conn)
                        .unwrap_or_else(|e| panic!("SCAN on 127.0.0.1:{port}: {e}"));
                    count += keys.len() as u64;
                    cursor = next;
                    if cursor == 0 {
                        return (port, count);
                    }
                }
                panic!("SCAN on 127.0.0.1:{port} did not end after {rounds} rounds");
            })
            .collect()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    ///
    /// # Panics
    /// When no node answers.
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.any_live();
        must(port, cluster_cmd("KEYSLOT").arg(key), "CLUSTER KEYSLOT")
    }

    /// The port of the live primary that serves `slot`, by its own account.
    ///
    /// # Panics
    /// When no live primary, or more than one, says it serves `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> u16 {
        let owners: Vec<u16> = self
            .live_ports()
            .into_iter()
            .filter(|&port| {
                let (_, me) =
                    view(port).unwrap_or_else(|e| panic!("CLUSTER NODES on 127.0.0.1:{port}: {e}"));
                me.primary && me.serves(slot)
            })
            .collect();
        match owners[..] {
            [owner] => owner,
            _ => panic!("slot {slot} has not one live owner but {owners:?}"),
        }
    }

    /// Moves `slot` with its keys to the primary on `to`: [`migrate_slot_with`] in batches
    /// of 10 keys, without a pause between them.
    ///
    /// [`migrate_slot_with`]: Self::migrate_slot_with
    ///
    /// # Panics
    /// As [`migrate_slot_with`](Self::migrate_slot_with).
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        self.migrate_slot_with(slot, to, DEFAULT_BATCH, |_| {});
    }

    /// Moves `slot` with its keys from its owner to the primary on `to`, as `redis-cli
    /// --cluster reshard` does, so that clients meanwhile meet what they meet in
    /// production:
    ///
    /// 1. `CLUSTER SETSLOT slot IMPORTING` on `to`, `MIGRATING` on the owner: from now on
    ///    the owner answers `ASK` for keys it no longer holds, and `TRYAGAIN` for a command
    ///    on several keys of which it holds only some;
    /// 2. in rounds, `CLUSTER GETKEYSINSLOT` then `MIGRATE … KEYS` of up to `batch` keys,
    ///    calling `between` after each round (the slot is half-moved then: a test may keep
    ///    load running there, or wait for something, before the next batch);
    /// 3. once the owner holds none, `CLUSTER SETSLOT slot NODE` on `to`, on the old owner,
    ///    then on every other primary: clients that ask elsewhere now get `MOVED`.
    ///
    /// # Panics
    /// When `to` is not a live primary or already serves `slot`, when a step is refused,
    /// or when the keys keep coming for longer than the rounds a slot's keys could need.
    pub fn migrate_slot_with(
        &self,
        slot: u16,
        to: u16,
        batch: usize,
        mut between: impl FnMut(&MigrationStep),
    ) {
        assert!(batch > 0, "a batch of 0 keys moves nothing");
        let from = self.owner_of_slot(slot);
        assert_ne!(from, to, "slot {slot} is on 127.0.0.1:{to} already");
        let primaries = self.primaries();
        assert!(
            primaries.contains(&to),
            "127.0.0.1:{to} is not a live primary (those are {primaries:?})"
        );
        let (from_id, to_id) = (self.id_of(from).to_string(), self.id_of(to).to_string());
        let setslot = |state: &str, id: &str| {
            let mut cmd = cluster_cmd("SETSLOT");
            cmd.arg(slot).arg(state).arg(id);
            cmd
        };
        let _: () = must(
            to,
            &setslot("IMPORTING", &from_id),
            "CLUSTER SETSLOT IMPORTING",
        );
        let _: () = must(
            from,
            &setslot("MIGRATING", &to_id),
            "CLUSTER SETSLOT MIGRATING",
        );
        let mut source = connect(from).unwrap_or_else(|e| panic!("connecting to {from}: {e}"));
        let (mut batches, mut moved) = (0usize, 0usize);
        // Bounded: the old owner takes no new keys of the slot while it is MIGRATING (it
        // sends them to `to`), so the rounds it needs are its keys / batch; the cap is far
        // above that and ends a loop that would not.
        let cap = 1_000_000usize;
        for _ in 0..cap {
            let keys: Vec<String> = cluster_cmd("GETKEYSINSLOT")
                .arg(slot)
                .arg(batch)
                .query(&mut source)
                .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT on {from}: {e}"));
            if keys.is_empty() {
                let _: () = must(
                    to,
                    &setslot("NODE", &to_id),
                    "CLUSTER SETSLOT NODE (new owner)",
                );
                match query::<()>(from, &setslot("NODE", &to_id)) {
                    Ok(()) => {}
                    // A key came in after GETKEYSINSLOT: move it too, then try again.
                    Err(e) if e.to_string().contains("still hold keys") => continue,
                    Err(e) => panic!("CLUSTER SETSLOT NODE on the old owner {from}: {e}"),
                }
                for port in self.primaries() {
                    if port != from && port != to {
                        let _: () = must(
                            port,
                            &setslot("NODE", &to_id),
                            "CLUSTER SETSLOT NODE (others)",
                        );
                    }
                }
                return;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(MIGRATE_TIMEOUT_MS)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut source)
                .unwrap_or_else(|e| panic!("MIGRATE from {from} to {to}: {e}"));
            batches += 1;
            moved += keys.len();
            let left: u64 = cluster_cmd("COUNTKEYSINSLOT")
                .arg(slot)
                .query(&mut source)
                .unwrap_or_else(|e| panic!("CLUSTER COUNTKEYSINSLOT on {from}: {e}"));
            between(&MigrationStep {
                slot,
                from,
                to,
                batches,
                moved,
                left,
            });
        }
        panic!("slot {slot} still had keys on {from} after {cap} rounds of MIGRATE");
    }

    /// SIGKILLs the primary that serves `slot` and returns its port; its replicas, if any,
    /// then elect one of them, which [`wait_failover`](Self::wait_failover) waits for.
    ///
    /// # Panics
    /// On the [`shared`](Self::shared) cluster, or as [`owner_of_slot`](Self::owner_of_slot).
    pub fn kill_primary_of(&self, slot: u16) -> u16 {
        assert!(
            !self.shared,
            "the shared cluster's nodes are every test's: start a cluster of your own to \
             kill one"
        );
        let port = self.owner_of_slot(slot);
        let id = self.id_of(port).to_string();
        let replicas = self
            .nodes()
            .into_iter()
            .filter(|n| n.primary_id.as_deref() == Some(id.as_str()))
            .map(|n| n.id)
            .collect();
        let mut state = self.state();
        let i = self.index_of(port);
        state.servers[i].kill();
        state.killed.push(Killed { port, id, replicas });
        port
    }

    /// Waits until a replica of the primary last killed by
    /// [`kill_primary_of`](Self::kill_primary_of) serves its slots, and the surviving nodes
    /// are healthy again (as [`start`](Self::start) waits for, without counting replicas:
    /// the promoted one has none now); returns the promoted node's port.
    ///
    /// # Panics
    /// When no primary was killed, when it had no replica, or when that is not so within
    /// `limit` (the message says what was still wrong).
    pub fn wait_failover(&self, limit: Duration) -> u16 {
        let killed = self
            .state()
            .killed
            .last()
            .cloned()
            .expect("no primary was killed: call kill_primary_of first");
        assert!(
            !killed.replicas.is_empty(),
            "the killed primary 127.0.0.1:{} had no replica to take over",
            killed.port
        );
        let mut promoted = 0;
        self.wait_for(
            &format!("a replica of 127.0.0.1:{} to take over", killed.port),
            limit,
            || {
                let port = self.any_live();
                let nodes = match view(port) {
                    Ok((nodes, _)) => nodes,
                    Err(e) => return Some(format!("CLUSTER NODES on 127.0.0.1:{port}: {e}")),
                };
                let Some(new) = nodes
                    .iter()
                    .find(|n| n.primary && killed.replicas.contains(&n.id) && !n.slots.is_empty())
                else {
                    return Some(format!(
                        "no replica of {} serves slots yet (flags of the killed node as \
                         127.0.0.1:{port} sees them: failing = {:?})",
                        killed.id,
                        nodes.iter().find(|n| n.id == killed.id).map(|n| n.failing)
                    ));
                };
                promoted = new.port;
                self.problem(None, None)
            },
        );
        promoted
    }

    /// Waits until every write each current primary took so far is acknowledged by all its
    /// linked replicas, so that a failover from now on loses none of them: on each primary
    /// with replicas, a probe key of one of its slots is written and deleted, then `WAIT`
    /// (replication is in order: the probe acknowledged means everything before it is).
    ///
    /// # Panics
    /// When fewer replicas than a primary has acknowledge within `limit`.
    pub fn wait_replicated(&self, limit: Duration) {
        for port in self.primaries() {
            let mut conn = connect(port).unwrap_or_else(|e| panic!("connecting to {port}: {e}"));
            let repl: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("INFO replication on {port}: {e}"));
            let replicas: u64 = fields(&repl)
                .get("connected_slaves")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if replicas == 0 {
                continue;
            }
            let probe = self.probe_key(port);
            let _: () = redis::cmd("SET")
                .arg(&probe)
                .arg(1)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("SET {probe} on {port}: {e}"));
            let _: () = redis::cmd("DEL")
                .arg(&probe)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("DEL {probe} on {port}: {e}"));
            let acked: u64 = redis::cmd("WAIT")
                .arg(replicas)
                .arg(limit.as_millis() as u64)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("WAIT on {port}: {e}"));
            assert!(
                acked >= replicas,
                "only {acked} of the {replicas} replicas of 127.0.0.1:{port} acknowledged its \
                 writes within {limit:?}"
            );
        }
    }

    /// A key of one of the slots the primary on `port` serves.
    fn probe_key(&self, port: u16) -> String {
        let (_, me) =
            view(port).unwrap_or_else(|e| panic!("CLUSTER NODES on 127.0.0.1:{port}: {e}"));
        // Each try lands in its slots with the share of the slots it serves.
        (0..100_000)
            .map(|n| format!("taskmill-testkit:probe:{n}"))
            .find(|key| me.serves(self.slot_of(key)))
            .unwrap_or_else(|| panic!("no probe key for 127.0.0.1:{port}, which serves no slot"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When set, [`shared_cluster_of_a_child`] starts the shared cluster, prints its ports
    /// and returns: the process exits without dropping it.
    const CHILD_VAR: &str = "TASKMILL_TESTKIT_CLUSTER_CHILD";

    fn answers(port: u16) -> bool {
        let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/0")) else {
            return false;
        };
        client
            .get_connection_with_timeout(Duration::from_millis(200))
            .is_ok_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
    }

    #[test]
    fn parses_cluster_nodes_lines() {
        let (node, me) = ClusterNode::parse(
            "07c3 127.0.0.1:30004@31004,host master,fail - 0 1 4 connected 0-5 7 [8->-e7d1]",
        )
        .unwrap();
        assert!(!me);
        assert_eq!(node.port, 30004);
        assert!(node.primary && node.failing);
        assert_eq!(node.primary_id, None);
        assert_eq!(node.slots, vec![0..=5, 7..=7]);
        let (node, me) =
            ClusterNode::parse("e7d1 127.0.0.1:30002@31002 myself,slave 07c3 0 0 1 connected")
                .unwrap();
        assert!(me && !node.primary && !node.failing);
        assert_eq!(node.primary_id.as_deref(), Some("07c3"));
        assert!(node.slots.is_empty());
    }

    /// Three primaries form a cluster that serves every slot, and a slot moved with
    /// migrate_slot takes its key to its new owner, which the old one now redirects to.
    #[test]
    fn three_primaries_form_a_cluster_and_move_a_slot() {
        let cluster = RedisCluster::start(3, 0);
        assert_eq!(cluster.primaries(), cluster.ports());
        for &port in cluster.ports() {
            let info = fields(&must::<String>(port, &cluster_cmd("INFO"), "CLUSTER INFO"));
            assert_eq!(info["cluster_state"], "ok");
            assert_eq!(info["cluster_slots_assigned"], "16384");
            assert_eq!(info["cluster_known_nodes"], "3");
        }
        let url = cluster.url("ns");
        let seeds: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        assert_eq!(
            url,
            format!("redis+cluster://{}/?namespace=ns", seeds.join(","))
        );

        let key = "{ns:topic}:meta";
        let slot = cluster.slot_of(key);
        assert_eq!(
            slot,
            cluster.slot_of("{ns:topic}:tasks"),
            "one hash tag, one slot"
        );
        let from = cluster.owner_of_slot(slot);
        let to = *cluster.ports().iter().find(|&&p| p != from).unwrap();
        let _: () = must(from, redis::cmd("SET").arg(key).arg("v"), "SET");
        for n in 0..25 {
            let _: () = must(
                from,
                redis::cmd("SET").arg(format!("{{ns:topic}}:{n}")).arg(n),
                "SET",
            );
        }
        assert_eq!(
            cluster.keys_per_node("{ns:*"),
            cluster
                .ports()
                .iter()
                .map(|&p| (p, if p == from { 26 } else { 0 }))
                .collect::<Vec<_>>()
        );
        let keys: Vec<String> = std::iter::once(key.to_string())
            .chain((0..25).map(|n| format!("{{ns:topic}}:{n}")))
            .collect();
        let mut steps = Vec::new();
        cluster.migrate_slot_with(slot, to, 10, |step| {
            // Half-moved: the old owner still serves the keys it holds, and answers ASK
            // (go to the new owner for this one request) for those it gave away.
            let (mut here, mut asked) = (0, 0);
            for k in &keys {
                match query::<Option<String>>(step.from, redis::cmd("GET").arg(k)) {
                    Ok(Some(_)) => here += 1,
                    Err(e) if e.code() == Some("ASK") => asked += 1,
                    other => panic!("GET {k} on the old owner mid-migration: {other:?}"),
                }
            }
            assert_eq!((asked, here as u64), (step.moved, step.left), "{step:?}");
            steps.push((step.moved, step.left));
        });
        assert_eq!(
            steps,
            [(10, 16), (20, 6), (26, 0)],
            "26 keys in batches of 10"
        );
        assert_eq!(cluster.owner_of_slot(slot), to);
        assert_eq!(must::<String>(to, redis::cmd("GET").arg(key), "GET"), "v");
        let err = query::<String>(from, redis::cmd("GET").arg(key)).unwrap_err();
        assert_eq!(err.code(), Some("MOVED"), "{err}");
        for port in cluster.ports().iter().copied() {
            let (_, me) = view(port).unwrap();
            assert_eq!(me.serves(slot), port == to, "{port}");
        }
        assert!(cluster.problem(Some(0), Some(3)).is_none());
    }

    /// A primary killed with its writes replicated: its replica takes over, with the key.
    #[test]
    fn a_replica_takes_over_a_killed_primary() {
        let cluster = RedisCluster::start(3, 1);
        assert_eq!(cluster.ports().len(), 6);
        assert_eq!(cluster.primaries().len(), 3);
        let key = "{ns:failover}:k";
        let slot = cluster.slot_of(key);
        let owner = cluster.owner_of_slot(slot);
        let _: () = must(owner, redis::cmd("SET").arg(key).arg("kept"), "SET");
        cluster.wait_replicated(Duration::from_secs(5));
        let started = Instant::now();
        let killed = cluster.kill_primary_of(slot);
        assert_eq!(killed, owner);
        assert!(!answers(killed));
        let promoted = cluster.wait_failover(Duration::from_secs(30));
        eprintln!("failover took {:?}", started.elapsed());
        assert_ne!(promoted, killed);
        assert_eq!(cluster.owner_of_slot(slot), promoted);
        assert!(!cluster.primaries().contains(&killed));
        assert!(cluster.primaries().contains(&promoted));
        assert_eq!(
            must::<String>(promoted, redis::cmd("GET").arg(key), "GET"),
            "kept"
        );
    }

    /// Not a test of its own: the child process of [`shared_cluster_dies_with_its_process`].
    #[test]
    fn shared_cluster_of_a_child() {
        if std::env::var_os(CHILD_VAR).is_none() {
            return;
        }
        let cluster = RedisCluster::shared();
        assert!(
            std::ptr::eq(cluster, RedisCluster::shared()),
            "started once"
        );
        println!("ports {:?}", cluster.ports());
        println!("dirs {}", cluster.logs());
    }

    /// The shared cluster lives in a static, never dropped: its nodes go when its process
    /// exits all the same, and their directories with them.
    #[test]
    fn shared_cluster_dies_with_its_process() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "redis_cluster::tests::shared_cluster_of_a_child"])
            .args(["--nocapture", "--test-threads", "1"])
            .env(CHILD_VAR, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ports: Vec<u16> = stdout
            .lines()
            .find_map(|l| l.split_once("ports [").map(|(_, rest)| rest))
            .and_then(|l| l.strip_suffix(']'))
            .unwrap_or_else(|| panic!("the child prints its ports: {stdout}"))
            .split(", ")
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(ports.len(), 3);
        let dirs: Vec<&str> = stdout
            .lines()
            .find_map(|l| l.split_once("dirs ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("the child prints its directories: {stdout}"))
            .split(", ")
            .collect();
        assert_eq!(dirs.len(), 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports.iter().any(|&p| answers(p)) {
            assert!(
                Instant::now() < deadline,
                "the shared cluster's nodes outlived their process by 10 s"
            );
            std::thread::sleep(POLL);
        }
        // The watchdogs remove the directories just after killing the servers.
        while dirs.iter().any(|d| Path::new(d).exists()) {
            assert!(
                Instant::now() < deadline,
                "the shared cluster's directories outlived their process by 10 s: {dirs:?}"
            );
            std::thread::sleep(POLL);
        }
    }
}
