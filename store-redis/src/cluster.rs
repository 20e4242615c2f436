//! The connection to a Redis Cluster (the `Cluster` side of [`Conn`](crate::conn::Conn)).
//!
//! Two paths. The fast one sends the script calls bound for one node in one pipeline over
//! a plain connection to that node, as the slot map (`CLUSTER SLOTS`) last said: a batch
//! over many topics costs a round trip per node, not a request per topic. A pipeline is
//! never sent again whole: each reply is looked at, and a call the node did not run
//! (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `NOSCRIPT`, or its connection failing) goes,
//! with the later calls of its slot, to the slow path: redis-rs's cluster connection, one
//! command at a time, which follows redirects, waits out a failover and reloads scripts.
//! Plain commands take the slow path always.
//!
//! Order: the calls of one slot run one after another in the order given (a pipeline holds
//! at most one call of a slot: the next goes in the next round); calls of different slots
//! run at once.

use crate::codec::{array, int, string};
use crate::conn::Call;
use crate::error::{backend_error, cluster_error};
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::{Error, Result};

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// A node's address.
type Address = (String, u16);

/// The connection to a Redis Cluster: redis-rs's cluster connection (the slow path, opened
/// on first use) and plain connections to single nodes (the fast path, and what a node
/// answers for itself alone, such as `PUBSUB NUMSUB`).
pub(crate) struct Cluster {
    client: redis::cluster::ClusterClient,
    connection: tokio::sync::OnceCell<ClusterConnection>,
    connection_timeout: Duration,
    response_timeout: Duration,
    /// The seed nodes, for `Debug`.
    seeds: Vec<String>,
    /// How to connect to one node: a seed's settings, for another address.
    node: redis::ConnectionInfo,
    /// Plain connections to single nodes, made on first use and dropped when they fail.
    /// (redis-rs's cluster connection answers the first command it routes to a replica
    /// only at the response timeout, and cannot pipeline across slots.)
    direct: tokio::sync::Mutex<HashMap<Address, MultiplexedConnection>>,
    /// Which node serves each slot, as `CLUSTER SLOTS` last said; `None` until read, and
    /// again after a redirect said it is stale.
    slots: std::sync::Mutex<Option<Arc<SlotMap>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

/// Which node serves each slot.
#[derive(Debug, Default)]
struct SlotMap {
    /// Ranges of slots `(first, last, node)`, sorted; `node` indexes `nodes`.
    ranges: Vec<(u16, u16, usize)>,
    nodes: Vec<Address>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id], replicas…], …]`.
    fn parse(reply: Value) -> Result<SlotMap> {
        let mut map = SlotMap::default();
        for range in array(reply, "CLUSTER SLOTS")? {
            let mut range = array(range, "CLUSTER SLOTS")?.into_iter();
            let (Some(first), Some(last), Some(primary)) =
                (range.next(), range.next(), range.next())
            else {
                return Err(Error::storage("CLUSTER SLOTS returned a short range"));
            };
            let mut primary = array(primary, "CLUSTER SLOTS")?.into_iter();
            let (Some(host), Some(port)) = (primary.next(), primary.next()) else {
                return Err(Error::storage(
                    "CLUSTER SLOTS returned a node without an address",
                ));
            };
            let address = (string(host, "CLUSTER SLOTS")?, port_of(&port)?);
            let node = match map.nodes.iter().position(|n| *n == address) {
                Some(node) => node,
                None => {
                    map.nodes.push(address);
                    map.nodes.len() - 1
                }
            };
            let slot = |v: &Value| -> Result<u16> {
                u16::try_from(int(v, "CLUSTER SLOTS")?)
                    .ok()
                    .filter(|s| *s < SLOTS)
                    .ok_or_else(|| Error::storage("CLUSTER SLOTS returned a bad slot"))
            };
            map.ranges.push((slot(&first)?, slot(&last)?, node));
        }
        map.ranges.sort_unstable();
        Ok(map)
    }

    /// The node serving `slot`, if any.
    fn node_of(&self, slot: u16) -> Option<usize> {
        let at = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (first, last, node) = *self.ranges.get(at.checked_sub(1)?)?;
        (first..=last).contains(&slot).then_some(node)
    }
}

fn port_of(value: &Value) -> Result<u16> {
    u16::try_from(int(value, "CLUSTER SLOTS")?)
        .map_err(|_| Error::storage("CLUSTER SLOTS returned a bad port"))
}

/// Whether a node answered `reply` to a call without running it: the call may be sent
/// again (to where the slot now is, once the cluster is up, with the script loaded).
fn not_run(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e)
        if matches!(e.code(), "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "NOSCRIPT"))
}

impl Cluster {
    pub fn new(
        client: redis::cluster::ClusterClient,
        seeds: Vec<String>,
        node: redis::ConnectionInfo,
        connection_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        Cluster {
            client,
            connection: tokio::sync::OnceCell::new(),
            connection_timeout,
            response_timeout,
            seeds,
            node,
            direct: tokio::sync::Mutex::new(HashMap::new()),
            slots: std::sync::Mutex::new(None),
        }
    }

    /// The cluster connection (a cheap clone of a handle), opened on first use.
    async fn connection(&self) -> Result<ClusterConnection> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let limit = self.connection_timeout * 2;
                match tokio::time::timeout(limit, self.client.get_async_connection()).await {
                    Ok(Ok(connection)) => Ok(connection),
                    Ok(Err(e)) => Err(cluster_error(e, "cannot connect to the redis cluster")),
                    Err(_) => Err(Error::unavailable(format!(
                        "cannot connect to the redis cluster: timed out after {limit:?}"
                    ))),
                }
            })
            .await?;
        Ok(connection.clone())
    }

    /// A plain connection to the node at `address`.
    async fn direct(&self, address: &Address) -> Result<MultiplexedConnection> {
        if let Some(connection) = self.direct.lock().await.get(address) {
            return Ok(connection.clone());
        }
        let mut info = self.node.clone();
        info.addr = redis::ConnectionAddr::Tcp(address.0.clone(), address.1);
        let client = redis::Client::open(info)
            .map_err(|e| Error::misuse("invalid redis settings").with_source(e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.connection_timeout)
            .set_response_timeout(self.response_timeout)
            .set_tcp_settings(crate::conn::tcp_settings());
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| backend_error(e, "cannot connect to a cluster node"))?;
        self.direct
            .lock()
            .await
            .insert(address.clone(), connection.clone());
        Ok(connection)
    }

    /// Forgets the plain connection to `address`, which failed.
    async fn drop_direct(&self, address: &Address) {
        self.direct.lock().await.remove(address);
    }

    /// The slot map, read now if it is not known.
    async fn slot_map(&self) -> Result<Arc<SlotMap>> {
        if let Some(map) = self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(map);
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let map = Arc::new(SlotMap::parse(self.command_at_any(&cmd).await?)?);
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) = Some(map.clone());
        Ok(map)
    }

    /// A client for the primary that serves the slot of `key`, as the cluster says now.
    pub async fn client_for_slot_of(&self, key: &str) -> Result<redis::Client> {
        // Asked after a connection was lost, when the slot may have moved: read afresh.
        self.forget_slot_map();
        let map = self.slot_map().await?;
        let node = map
            .node_of(key_slot(key.as_bytes()))
            .ok_or_else(|| Error::unavailable("no node serves the slot"))?;
        let (host, port) = &map.nodes[node];
        let mut info = self.node.clone();
        info.addr = redis::ConnectionAddr::Tcp(host.clone(), *port);
        redis::Client::open(info)
            .map_err(|e| Error::misuse("invalid redis settings").with_source(e))
    }

    /// Forgets the slot map: a redirect or a failed node says it is stale.
    fn forget_slot_map(&self) {
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub async fn command(&self, cmd: &Cmd) -> Result<Value> {
        let mut connection = self.connection().await?;
        connection
            .req_packed_command(cmd)
            .await
            .map_err(|e| cluster_error(e, "redis command failed"))
    }

    /// Runs `cmd` (a command of no key) on any node.
    pub async fn command_at_any(&self, cmd: &Cmd) -> Result<Value> {
        self.route(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await
    }

    /// Runs `cmd` on the node at `host:port`, through the cluster connection.
    pub async fn command_at(&self, cmd: &Cmd, host: &str, port: u16) -> Result<Value> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port,
        });
        self.route(cmd, routing).await
    }

    async fn route(&self, cmd: &Cmd, routing: RoutingInfo) -> Result<Value> {
        let mut connection = self.connection().await?;
        connection
            .route_command(cmd, routing)
            .await
            .map_err(|e| cluster_error(e, "redis command failed"))
    }

    /// Runs `cmd` on the node at `host:port` itself, over a plain connection of its own; a
    /// connection that fails is dropped, and the next call dials again.
    pub async fn command_on_node(&self, cmd: &Cmd, host: &str, port: u16) -> Result<Value> {
        let address = (host.to_owned(), port);
        let mut connection = self.direct(&address).await?;
        match connection.req_packed_command(cmd).await {
            Ok(value) => Ok(value),
            Err(e) => {
                self.drop_direct(&address).await;
                Err(backend_error(e, "redis command failed"))
            }
        }
    }

    /// Runs `cmd` on the primary serving the slot of `key` (which `cmd` need not name).
    pub async fn command_on_slot_of(&self, cmd: &Cmd, key: &str) -> Result<Value> {
        let route = Route::new(key_slot(key.as_bytes()), SlotAddr::Master);
        self.route(
            cmd,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
        )
        .await
    }

    /// `WAIT` (a command of no key) on the primary of each of `keys`' slots; the replies.
    pub async fn wait_on_primaries(&self, keys: &[&str], wait: &Cmd) -> Result<Vec<Value>> {
        let mut slots: Vec<u16> = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
        slots.sort_unstable();
        slots.dedup();
        let waits = slots.into_iter().map(|slot| {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                slot,
                SlotAddr::Master,
            )));
            self.route(wait, route)
        });
        join_all(waits).await.into_iter().collect()
    }

    /// The addresses of the cluster's nodes (`CLUSTER NODES`), only the primaries with
    /// `primaries`, leaving out those marked failed.
    pub async fn nodes(&self, primaries: bool) -> Result<Vec<Address>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text = string(self.command_at_any(&cmd).await?, "CLUSTER NODES")?;
        let mut nodes = Vec::new();
        for line in text.lines() {
            // <id> <ip:port@cport[,hostname]> <flags> …
            let mut fields = line.split(' ');
            let (Some(_), Some(addr), Some(flags)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let flags: Vec<&str> = flags.split(',').collect();
            let failed = flags
                .iter()
                .any(|f| f.starts_with("fail") || *f == "noaddr");
            if failed || (primaries && !flags.contains(&"master")) {
                continue;
            }
            let addr = addr.split(['@', ',']).next().unwrap_or_default();
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    nodes.push((host.to_owned(), port));
                }
            }
        }
        if nodes.is_empty() {
            return Err(Error::storage("CLUSTER NODES listed no node"));
        }
        Ok(nodes)
    }

    /// Plain commands, each on its own through the cluster connection, all at once.
    pub async fn query(&self, pipe: &Pipeline) -> Result<Vec<Value>> {
        join_all(pipe.cmd_iter().map(|cmd| self.command(cmd)))
            .await
            .into_iter()
            .collect()
    }

    /// Script calls: the fast path first, then the slow one for what it left (see the
    /// module's doc). Any error fails the whole call, once every call has answered.
    pub async fn eval(&self, calls: &[Call<'_>]) -> Result<Vec<Value>> {
        // Each slot's calls, in order.
        let mut queues: Vec<(u16, VecDeque<usize>)> = Vec::new();
        let mut places: HashMap<u16, usize> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            let slot = key_slot(call.first_key.as_bytes());
            let at = *places.entry(slot).or_insert_with(|| {
                queues.push((slot, VecDeque::new()));
                queues.len() - 1
            });
            queues[at].1.push_back(i);
        }
        let mut replies: Vec<Option<Value>> = vec![None; calls.len()];
        let mut failure: Option<Error> = None;
        // The calls left to the slow path, per slot in order.
        let mut slow: Vec<VecDeque<usize>> = Vec::new();
        match self.slot_map().await {
            Ok(map) => {
                self.fast(calls, &map, &mut queues, &mut replies, &mut failure)
                    .await;
            }
            Err(e) => tracing::debug!(error = %e, "no slot map: every call goes one by one"),
        }
        slow.extend(queues.into_iter().map(|(_, q)| q).filter(|q| !q.is_empty()));
        let runs = slow.iter().map(|queue| async move {
            let mut done = Vec::with_capacity(queue.len());
            for &i in queue {
                let reply = self.eval_call(&calls[i]).await;
                let failed = reply.is_err();
                done.push((i, reply));
                if failed {
                    break;
                }
            }
            done
        });
        for (i, reply) in join_all(runs).await.into_iter().flatten() {
            match reply {
                Ok(value) => replies[i] = Some(value),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        replies
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::storage("a script call got no reply")))
            .collect()
    }

    /// The fast path: rounds of one pipeline per node, each holding the next call of every
    /// slot the node serves. What it leaves in `queues` (a slot whose call was not run, and
    /// every later call of that slot; a slot no node is known for) is for the slow path.
    async fn fast(
        &self,
        calls: &[Call<'_>],
        map: &SlotMap,
        queues: &mut [(u16, VecDeque<usize>)],
        replies: &mut [Option<Value>],
        failure: &mut Option<Error>,
    ) {
        // Slots whose calls go the slow way from now on.
        let mut diverted = vec![false; queues.len()];
        loop {
            // This round's calls by node: (queue, call).
            let mut by_node: Vec<Vec<(usize, usize)>> = vec![Vec::new(); map.nodes.len()];
            for (q, (slot, queue)) in queues.iter().enumerate() {
                if diverted[q] {
                    continue;
                }
                match (queue.front(), map.node_of(*slot)) {
                    (Some(&i), Some(node)) => by_node[node].push((q, i)),
                    (Some(_), None) => diverted[q] = true,
                    (None, _) => {}
                }
            }
            if by_node.iter().all(Vec::is_empty) {
                return;
            }
            let sends = by_node
                .iter()
                .enumerate()
                .filter(|(_, round)| !round.is_empty())
                .map(|(node, round)| async move {
                    let address = &map.nodes[node];
                    let mut pipe = redis::pipe();
                    for &(_, i) in round {
                        pipe.add_command(calls[i].cmd.clone());
                    }
                    let sent = match self.direct(address).await {
                        Ok(mut connection) => connection
                            .req_packed_commands(&pipe, 0, round.len())
                            .await
                            .map_err(|e| (true, e)),
                        Err(_) => Err((
                            false,
                            RedisError::from(std::io::Error::other("no connection")),
                        )),
                    };
                    (node, round, sent)
                });
            for (node, round, sent) in join_all(sends).await {
                let values = match sent {
                    Ok(values) if values.len() == round.len() => values,
                    // The connection failed (or never was): whether the calls ran is
                    // unknown, so they go the slow way, where a call may run twice, as
                    // the README says of a reply lost to a failover.
                    other => {
                        if let Err((true, e)) = other {
                            tracing::debug!(error = %e, "a cluster node's pipeline failed");
                        }
                        self.drop_direct(&map.nodes[node]).await;
                        self.forget_slot_map();
                        for &(q, _) in round {
                            diverted[q] = true;
                        }
                        continue;
                    }
                };
                for (&(q, i), value) in round.iter().zip(values) {
                    if not_run(&value) {
                        if matches!(&value, Value::ServerError(e) if matches!(e.code(), "MOVED" | "ASK"))
                        {
                            self.forget_slot_map();
                        }
                        diverted[q] = true;
                        continue;
                    }
                    queues[q].1.pop_front();
                    match value {
                        Value::ServerError(e) => {
                            let name = calls[i].script.name;
                            let e =
                                cluster_error(RedisError::from(e), format!("redis refused {name}"));
                            *failure = failure.take().or(Some(e));
                            // The slot's later calls are not sent: the call fails anyway.
                            queues[q].1.clear();
                        }
                        value => replies[i] = Some(value),
                    }
                }
            }
        }
    }

    /// One script call through the cluster connection; a script the node does not know is
    /// loaded (on every node) and the call sent again.
    async fn eval_call(&self, call: &Call<'_>) -> Result<Value> {
        let mut connection = self.connection().await?;
        let refused = |e| cluster_error(e, format!("redis refused {}", call.script.name));
        match connection.req_packed_command(&call.cmd).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(&call.script.source);
                connection
                    .req_packed_command(&load)
                    .await
                    .map_err(|e| cluster_error(e, "cannot load a script"))?;
                connection
                    .req_packed_command(&call.cmd)
                    .await
                    .map_err(refused)
            }
            reply => reply.map_err(refused),
        }
    }
}

/// The cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (what is between the
/// first `{` and the next `}`, when that is not empty) or of the whole key, mod 16384.
fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::{key_slot, SlotMap};

    #[test]
    fn slots_are_those_redis_computes() {
        // What `CLUSTER KEYSLOT` answers on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{taskmill:emails}:meta"), 12821);
        assert_eq!(key_slot(b"{taskmill:emails}:ready"), 12821);
        assert_eq!(key_slot(b"a{}b"), 13694);
        assert_eq!(key_slot(b"taskmill:ids"), 8438);
    }

    #[test]
    fn the_slot_map_finds_each_slots_node() {
        use redis::Value::{Array, BulkString, Int};
        let node = |port: i64| {
            Array(vec![
                BulkString(b"127.0.0.1".to_vec()),
                Int(port),
                BulkString(b"id".to_vec()),
            ])
        };
        let reply = Array(vec![
            Array(vec![Int(5461), Int(10922), node(7001), node(7004)]),
            Array(vec![Int(0), Int(5460), node(7000)]),
            Array(vec![Int(10923), Int(16383), node(7002)]),
        ]);
        let map = SlotMap::parse(reply).unwrap();
        let port = |slot| map.node_of(slot).map(|n| map.nodes[n].1);
        assert_eq!(port(0), Some(7000));
        assert_eq!(port(5460), Some(7000));
        assert_eq!(port(5461), Some(7001));
        assert_eq!(port(10922), Some(7001));
        assert_eq!(port(16383), Some(7002));
        let gap = SlotMap::parse(Array(vec![Array(vec![Int(10), Int(20), node(7000)])])).unwrap();
        assert_eq!(gap.node_of(9), None);
        assert_eq!(gap.node_of(21), None);
        assert!(SlotMap::parse(Array(vec![Array(vec![Int(0)])])).is_err());
    }
}
