//! Just enough of the Redis protocol to remove a benchmark's namespace afterwards.
//!
//! The benchmark sees stores only as `Arc<dyn Store>`, which has no "drop everything"
//! operation (counters and topic sets outlive the tasks), so it cleans up on its own
//! connection: `SCAN MATCH` every key containing the namespace, and `UNLINK`. The namespace carries the process id and a
//! run counter, so the pattern matches this run's keys and nothing else, whatever the
//! store's key layout (hash tags included).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use taskmill::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(10);
/// SCAN passes; each visits up to 1,000 slots, so this bounds the loop far above any
/// benchmark's key count.
const MAX_SCANS: usize = 1_000_000;

/// Deletes every key whose name contains `namespace` in the database `url` names.
pub fn delete_matching(url: &str, namespace: &str) -> Result<()> {
    let addr = Address::parse(url)?;
    let mut conn = Conn::connect(&addr)?;
    if let Some(password) = &addr.password {
        match &addr.user {
            Some(user) => conn.call(&["AUTH", user, password])?,
            None => conn.call(&["AUTH", password])?,
        };
    }
    if addr.db != 0 {
        conn.call(&["SELECT", &addr.db.to_string()])?;
    }
    // The namespace ends in a run number, so `…-bench-7-1` must not match `…-bench-7-10`:
    // a key either ends with the namespace or continues with a non-digit (`:`, `}`).
    let escaped = glob_escape(namespace);
    for pattern in [format!("*{escaped}[^0-9]*"), format!("*{escaped}")] {
        delete_pattern(&mut conn, &pattern)?;
    }
    Ok(())
}

fn delete_pattern(conn: &mut Conn, pattern: &str) -> Result<()> {
    let mut cursor = "0".to_string();
    for _ in 0..MAX_SCANS {
        let reply = conn.call(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"])?;
        let Reply::Array(mut parts) = reply else {
            return Err(protocol("SCAN did not return an array"));
        };
        let (Some(Reply::Array(keys)), Some(Reply::Bulk(next))) = (parts.pop(), parts.pop()) else {
            return Err(protocol("SCAN returned an unexpected shape"));
        };
        let keys: Vec<String> = keys
            .into_iter()
            .filter_map(|k| match k {
                Reply::Bulk(k) => Some(k),
                _ => None,
            })
            .collect();
        if !keys.is_empty() {
            let mut args = vec!["UNLINK"];
            args.extend(keys.iter().map(String::as_str));
            conn.call(&args)?;
        }
        if next == "0" {
            return Ok(());
        }
        cursor = next;
    }
    Err(protocol("SCAN did not finish"))
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn protocol(message: &str) -> Error {
    Error::storage(format!("redis cleanup: {message}"))
}

#[derive(Debug, PartialEq, Eq)]
struct Address {
    host: String,
    port: u16,
    db: u32,
    user: Option<String>,
    password: Option<String>,
}

impl Address {
    fn parse(url: &str) -> Result<Address> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            Error::unsupported(format!(
                "benchmark cleanup speaks plain redis:// only, not {url:?}"
            ))
        })?;
        let rest = rest.split('?').next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or(("", u))) {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_string()),
                (!password.is_empty()).then(|| password.to_string()),
            ),
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse()
                    .map_err(|e| Error::misuse(format!("bad port in {url:?}")).with_source(e))?,
            ),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let db = match path.trim_end_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|e| Error::misuse(format!("bad database in {url:?}")).with_source(e))?,
        };
        Ok(Address {
            host: if host.is_empty() { "127.0.0.1" } else { host }.to_string(),
            port,
            db,
            user,
            password,
        })
    }
}

#[derive(Debug)]
enum Reply {
    Simple,
    Int,
    Bulk(String),
    Nil,
    Array(Vec<Reply>),
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn connect(addr: &Address) -> Result<Conn> {
        let unavailable =
            |e: std::io::Error| Error::unavailable("redis cleanup: cannot connect").with_source(e);
        let sock = (addr.host.as_str(), addr.port)
            .to_socket_addrs()
            .map_err(unavailable)?
            .next()
            .ok_or_else(|| Error::unavailable(format!("cannot resolve {}", addr.host)))?;
        let stream = TcpStream::connect_timeout(&sock, TIMEOUT).map_err(unavailable)?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(unavailable)?;
        stream
            .set_write_timeout(Some(TIMEOUT))
            .map_err(unavailable)?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone().map_err(unavailable)?),
            writer: stream,
        })
    }

    fn call(&mut self, args: &[&str]) -> Result<Reply> {
        let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            cmd.extend_from_slice(a.as_bytes());
            cmd.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&cmd)
            .map_err(|e| Error::unavailable("redis cleanup: write failed").with_source(e))?;
        self.read(0)
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| Error::unavailable("redis cleanup: read failed").with_source(e))?;
        if !line.ends_with("\r\n") {
            return Err(protocol("connection closed mid-reply"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read(&mut self, depth: usize) -> Result<Reply> {
        if depth > 4 {
            return Err(protocol("reply nested too deep"));
        }
        let line = self.line()?;
        let (kind, body) = line.split_at(line.len().min(1));
        let len = || -> Result<i64> { body.parse().map_err(|_| protocol("bad length")) };
        match kind {
            "+" => Ok(Reply::Simple),
            ":" => Ok(Reply::Int),
            "-" => Err(Error::storage(format!("redis cleanup: {body}"))),
            "$" => match len()? {
                n if n < 0 => Ok(Reply::Nil),
                n => {
                    let mut buf = vec![0; n as usize + 2];
                    std::io::Read::read_exact(&mut self.reader, &mut buf).map_err(|e| {
                        Error::unavailable("redis cleanup: read failed").with_source(e)
                    })?;
                    buf.truncate(n as usize);
                    Ok(Reply::Bulk(String::from_utf8_lossy(&buf).into_owned()))
                }
            },
            "*" => match len()? {
                n if n < 0 => Ok(Reply::Nil),
                n => (0..n)
                    .map(|_| self.read(depth + 1))
                    .collect::<Result<Vec<_>>>()
                    .map(Reply::Array),
            },
            _ => Err(protocol("unknown reply type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let a = Address::parse("redis://127.0.0.1:6390/2?namespace=x").unwrap();
        assert_eq!(
            a,
            Address {
                host: "127.0.0.1".into(),
                port: 6390,
                db: 2,
                user: None,
                password: None
            }
        );
        let a = Address::parse("redis://:secret@localhost").unwrap();
        assert_eq!((a.port, a.db), (6379, 0));
        assert_eq!(a.password.as_deref(), Some("secret"));
        let a = Address::parse("redis://bob:pw@[::1]:7000/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 7000));
        assert_eq!(a.user.as_deref(), Some("bob"));
        assert!(Address::parse("rediss://h").is_err());
        assert!(Address::parse("redis://h:notaport").is_err());
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    /// A redis-server of this test's own on a free loopback port, stopped on drop.
    struct Server {
        child: std::process::Child,
        port: u16,
    }

    impl Server {
        fn start() -> Server {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is not installed: `apt-get install redis-server`");
            let server = Server { child, port };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while server.conn().is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            server
        }

        fn conn(&self) -> Result<Conn> {
            let mut conn = Conn::connect(&Address::parse(&self.url())?)?;
            conn.call(&["PING"])?;
            Ok(conn)
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/3?namespace=x", self.port)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn deletes_exactly_the_namespace_keys() {
        let server = Server::start();
        let mut conn = server.conn().unwrap();
        conn.call(&["SELECT", "3"]).unwrap();
        let ns = "app-bench-42-1";
        let mine: Vec<String> = (0..2500)
            .map(|i| format!("{{{ns}:topic-{}}}:task:{i}", i % 5))
            .chain([format!("{ns}:stats"), format!("{ns}:topics")])
            .collect();
        for key in &mine {
            conn.call(&["SET", key, "1"]).unwrap();
        }
        // Another run's namespace (a longer run number) and other keys stay.
        conn.call(&["SET", "app-bench-42-10:stats", "1"]).unwrap();
        conn.call(&["SET", "{app}:stats", "1"]).unwrap();
        conn.call(&["SET", ns, "1"]).unwrap();
        delete_matching(&server.url(), ns).unwrap();
        let dbsize = |conn: &mut Conn| match conn.read_dbsize() {
            Some(n) => n,
            None => panic!("DBSIZE gave no integer"),
        };
        assert_eq!(dbsize(&mut conn), 2);
        // Idempotent: nothing left to delete is fine.
        delete_matching(&server.url(), ns).unwrap();
        assert_eq!(dbsize(&mut conn), 2);
    }

    impl Conn {
        fn read_dbsize(&mut self) -> Option<i64> {
            self.writer.write_all(b"*1\r\n$6\r\nDBSIZE\r\n").ok()?;
            self.line().ok()?.strip_prefix(':')?.parse().ok()
        }
    }
}
