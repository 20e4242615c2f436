//! A private `redis-server` for tests: started on a free loopback port, killed on drop (or,
//! with [`ServerConfig::die_with_process`], when the process exits).
//!
//! Never touches a Redis the user runs (6379 or any other): each server gets its own port
//! and its own temporary directory.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Where the server binary is looked for (then `$PATH`), unless `REDIS_SERVER` names one.
const DEFAULT_BINARY: &str = "/usr/bin/redis-server";
/// How long a server may take to answer PING after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How to install the binary, for the messages that say it is missing.
const INSTALL: &str = "install it with `apt-get install redis-server`";
/// How long [`RedisServer::kill`] waits for a server launched through the watchdog shell to
/// go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The watchdog shell of [`ServerConfig::die_with_process`], run as
/// `sh -c WATCHDOG sh DIR redis-server ARGS…` with its stdin a pipe this process holds.
///
/// It starts the server in the background, and a reader that waits on the pipe: a line
/// (what [`RedisServer::kill`] writes) SIGKILLs the server; end of file, which comes when
/// this process exits however it exits (a static is never dropped, a process killed runs no
/// destructor), SIGKILLs it and removes its directory too. The shell itself waits for the
/// server and exits with its status, so that a server that could not start is seen.
const WATCHDOG: &str = r#"d=$1; shift
exec 3<&0
"$@" </dev/null &
c=$!
{ if read line <&3; then kill -9 "$c"; else kill -9 "$c"; rm -rf "$d"; fi; } &
wait "$c"
"#;

/// How to start a test server.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Persist with an append-only file (`appendonly yes`, `appendfsync everysec`), so a
    /// restart after SIGKILL keeps every acknowledged write.
    pub appendonly: bool,
    /// More command-line arguments for the server (e.g. `--tls-port …`).
    pub args: Vec<String>,
    /// The port to listen on; a free one when `None`.
    pub port: Option<u16>,
    /// Run as a Redis Cluster node: `--cluster-enabled yes`, its cluster config file
    /// `nodes-PORT.conf` in the server's directory, and its cluster bus on a free port of
    /// its own (`--cluster-port`; the default, port + 10000, may be past 65535). The cluster
    /// module starts its nodes so.
    pub cluster: bool,
    /// Make the server die when this process exits, even if the [`RedisServer`] is never
    /// dropped (one in a `static`) or the process is killed: it is launched through a
    /// watchdog shell holding a pipe from this process, whose end of file SIGKILLs the
    /// server and removes its directory.
    pub die_with_process: bool,
}

impl ServerConfig {
    /// With the append-only file on.
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// On this port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// As a Redis Cluster node (see [`cluster`](Self::cluster)).
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// Dying with this process (see [`die_with_process`](Self::die_with_process)).
    pub fn die_with_process(mut self, on: bool) -> Self {
        self.die_with_process = on;
        self
    }

    /// With more command-line arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// A running `redis-server` owned by a test; SIGKILLed and its directory removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// The cluster bus port of a cluster node, kept across restarts; 0 when not chosen yet
    /// (or not a cluster node).
    bus_port: u16,
    dir: TempDir,
    config: ServerConfig,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(path);
    }
    if Path::new(DEFAULT_BINARY).exists() {
        return PathBuf::from(DEFAULT_BINARY);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("redis-server"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found (looked at {DEFAULT_BINARY}, $REDIS_SERVER and \
                 $PATH): {INSTALL}"
            )
        })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// A Redis namespace no other test of this process uses.
pub fn fresh_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl RedisServer {
    /// Starts a server without persistence.
    ///
    /// # Panics
    /// When `redis-server` is missing (the message says how to install it) or does not
    /// answer within 15 s.
    pub fn start() -> Self {
        Self::start_with(ServerConfig::default())
    }

    /// Starts a server as configured.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_with(config: ServerConfig) -> Self {
        let mut server = RedisServer {
            child: None,
            port: 0,
            bus_port: 0,
            dir: tempfile::Builder::new()
                .prefix("taskmill-redis-")
                .tempdir()
                .expect("create the server's temp dir"),
            config,
        };
        // The port is free when asked, but another process may take it before the server
        // binds it: a few tries cover that.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = server.config.port.unwrap_or_else(free_port);
            server.bus_port = 0;
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("cannot start redis-server: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = if self.config.die_with_process {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(WATCHDOG)
                .arg("sh")
                .arg(self.dir.path())
                .arg(binary());
            sh
        } else {
            Command::new(binary())
        };
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--maxmemory-policy", "noeviction"]);
        if self.config.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if self.config.cluster {
            if self.bus_port == 0 {
                // Bounded: two free ports in a row are rarely the same.
                self.bus_port = (0..100)
                    .map(|_| free_port())
                    .find(|&p| p != self.port)
                    .ok_or("no free port for the cluster bus")?;
            }
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(self.dir.path().join(format!("nodes-{}.conf", self.port)))
                .arg("--cluster-port")
                .arg(self.bus_port.to_string());
        }
        cmd.args(&self.config.args);
        let log = std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.port)))
            .map_err(|e| e.to_string())?;
        let stdin = if self.config.die_with_process {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.stdin(stdin).stdout(log).stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run redis-server ({e}): {INSTALL}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_ping() {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Under the watchdog, its reader still waits: a line sends it away.
                Self::end(&mut child);
                return Err(format!(
                    "redis-server exited with {status} on port {}",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                Self::end(&mut child);
                return Err(format!(
                    "redis-server did not answer PING on port {} within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the server answers PING (within a fraction of a second).
    pub fn answers_ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.plain_url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .is_ok_and(|pong| pong == "PONG")
    }

    /// The server's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A store URL for this server and `namespace`.
    pub fn url(&self, namespace: &str) -> String {
        format!("redis://127.0.0.1:{}/0?namespace={namespace}", self.port)
    }

    /// The URL of database 0 without a namespace, for a plain Redis client.
    pub fn plain_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A plain connection to database 0, for a test that reads or writes keys behind the
    /// store's back.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn connect(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.plain_url())
            .expect("a loopback redis:// URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to the test redis-server")
    }

    /// Makes the default user need `password` from now on, set on `admin` (a connection
    /// opened before, from [`connect`](Self::connect), which stays authenticated):
    /// `CONFIG SET requirepass`, what `--requirepass` sets. (The launcher waits for an
    /// unauthenticated PING, so the password cannot be given at start.)
    ///
    /// # Panics
    /// When the server refuses it.
    pub async fn require_password(admin: &mut redis::aio::MultiplexedConnection, password: &str) {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(password)
            .query_async::<()>(admin)
            .await
            .expect("CONFIG SET requirepass");
    }

    /// How many keys database 0 holds.
    ///
    /// # Panics
    /// When the server does not answer.
    pub fn dbsize(&self) -> u64 {
        let mut conn = redis::Client::open(self.plain_url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connecting to the test redis-server");
        redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE")
    }

    /// The cluster bus port of a cluster node ([`ServerConfig::cluster`]); 0 otherwise.
    pub fn bus_port(&self) -> u16 {
        self.bus_port
    }

    /// Whether the server was started and not killed since (it may still have died).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server with SIGKILL and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            Self::end(&mut child);
        }
    }

    /// SIGKILLs the server `child` runs and reaps it. Under the watchdog shell, `child` is
    /// the shell: a line on its stdin makes it SIGKILL the server (keeping the directory),
    /// and the shell exits once the server is gone.
    fn end(child: &mut Child) {
        let Some(mut stdin) = child.stdin.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return;
        };
        // The reader may be gone already (the server exited by itself): then the write
        // fails, and there is nothing left to stop.
        let _ = stdin.write_all(b"kill\n");
        drop(stdin);
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    // Not expected: the shell goes once its server is gone. Killing the
                    // shell leaves the server to the reader's end of file.
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Starts the server again on the same port, with the same directory (and so the same
    /// append-only file).
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        // The old socket may linger for a moment; a few tries cover it.
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot restart redis-server on port {}: {last}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
