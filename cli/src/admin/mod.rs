//! The operator's commands: look at a store (`stats`, `ls`, `show`, `cron ls`, `watch`)
//! and steer it (`enqueue`, `retry`, `delete`, `cancel`, `pause`, `resume`, `cron pause`,
//! `cron resume`), each on a [`Client`] of the store named by `--store` or
//! `TASKMILL_STORE`.
//!
//! Each command is an `Args` struct (parsed by clap in `main.rs`) with a `run` that prints
//! to stdout and returns a [`Failure`] for stderr and the exit status.

pub mod cron;
pub mod format;
pub mod inspect;
pub mod steer;
pub mod watch;

use clap::Args;
use std::fmt;
use std::io::Write;
use std::sync::Arc;
use taskmill::{Client, Store};

/// Exit status of bad usage: clap's own for a malformed command line, and ours for input
/// the command line parsed but the command cannot take (no store, invalid JSON, …).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of an operation that failed: the store is unreachable, an id is unknown, a
/// task was not in the state the command needs.
pub const EXIT_FAILED: u8 = 1;

/// Why a command did not do what it was asked, with the exit status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// [`EXIT_USAGE`] or [`EXIT_FAILED`].
    pub code: u8,
    /// For stderr, after the command's name.
    pub message: String,
}

impl Failure {
    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A failed operation (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An error of the store is a failed operation, unless the store says the request itself
/// was wrong (`Misuse`: an invalid topic, say), which is bad usage.
impl From<taskmill::Error> for Failure {
    fn from(e: taskmill::Error) -> Self {
        match e.kind() {
            taskmill::ErrorKind::Misuse => Failure::usage(e.to_string()),
            _ => Failure::failed(e.to_string()),
        }
    }
}

/// What a command returns.
pub type Outcome = Result<(), Failure>;

/// The store a command works on.
#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// The store's URL (memory://, sqlite://PATH, sled://DIR, redis://HOST:PORT/DB, …).
    #[arg(
        long = "store",
        value_name = "URL",
        env = "TASKMILL_STORE",
        hide_env_values = true
    )]
    pub url: Option<String>,
}

impl StoreArg {
    /// The URL, or a usage error naming both ways to give one.
    pub fn url(&self) -> Result<&str, Failure> {
        match self.url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => Ok(url),
            _ => Err(Failure::usage(
                "no store given: pass --store URL or set TASKMILL_STORE \
                 (e.g. sqlite://tasks.db, redis://127.0.0.1:6379/0)",
            )),
        }
    }

    /// Opens the store. A URL the facade cannot parse, or a scheme this build lacks, is
    /// bad usage; a store that cannot be reached is a failed operation.
    pub async fn open(&self) -> Result<Arc<dyn Store>, Failure> {
        let url = self.url()?;
        taskmill::open(url).await.map_err(|e| {
            // Redacted: a Redis URL may carry a password, and stderr ends up in logs.
            let shown = taskmill::raw::StoreUrl::redact(url);
            let message = format!("cannot open the store {shown}: {e}");
            match e.kind() {
                taskmill::ErrorKind::Misuse | taskmill::ErrorKind::Unsupported => {
                    Failure::usage(message)
                }
                _ => Failure::failed(message),
            }
        })
    }

    /// A client on the store, cancelling as `taskmill-cli:<user>`.
    pub async fn client(&self) -> Result<Client, Failure> {
        let store = self.open().await?;
        Ok(Client::shared(store).by(operator()))
    }
}

/// Who the command acts as, on cancelled records: `taskmill-cli:<user>` (from `USER`), or
/// `taskmill-cli:<pid>`.
fn operator() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("taskmill-cli:{user}"),
        _ => format!("taskmill-cli:{}", std::process::id()),
    }
}

/// Writes a command's whole output to stdout. A closed pipe (`| head`) is not an error.
pub(crate) fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `value` as one JSON document and a newline.
pub(crate) fn print_json(value: &serde_json::Value) {
    print(&format!("{value}\n"));
}

/// Resolves on Ctrl-C, or on SIGTERM where there are signals: how `watch` and `serve` are
/// stopped.
///
/// On Unix the handlers are installed by this call, not when the future is first polled:
/// a command calls it before it says it is ready (`serve`'s `serving on` line), so that a
/// SIGINT sent as soon as that line is read finds them installed rather than ending the
/// process by the default action. If a handler cannot be installed, that signal keeps its
/// default action (which still ends the process).
pub(crate) fn interrupted() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {}
                _ = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
