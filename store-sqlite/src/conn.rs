//! The connection thread: the store's one SQLite connection, and the commands it runs.
//!
//! Every [`SqliteStore`](crate::SqliteStore) owns one connection, driven by a dedicated
//! thread, the way sqlx drives SQLite. Each call of the store becomes a [`Call`] (one
//! variant per operation, carrying its arguments and its own reply sender), sent with the
//! caller's [`tracing::Span`] on a bounded channel. The thread runs the commands one
//! after another, each inside its caller's span and each that writes as one transaction
//! (see `ops.rs`), so no call blocks the async runtime and one call is one round trip
//! whatever the size of its batch.
//!
//! - **Bounded**: once [`COMMAND_BUFFER`] commands wait, callers wait (asynchronously) for
//!   room instead of queueing work without limit.
//! - **Cancel safety**: a command whose caller's future is dropped before the command was
//!   sent never runs; once sent, it runs to completion, and its reply is dropped. A
//!   transaction is never cut in half.
//! - **Panics**: a command that panics (a bug) rolls its transaction back as the panic
//!   unwinds through it, and fails only its own call: the thread goes on with the next.
//! - Events are published and managers woken on this thread, right after the transaction
//!   that made them commits and before any later command runs: a watcher sees a task's
//!   enqueue before its start.

use crate::codec::Decoded;
use crate::error::backend_error;
use crate::{layout, ops, Durability, SqliteOptions};
use rusqlite::{Connection, OpenFlags};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::raw::{Call, LocalBus, Reply};
use taskmill_core::store::Fired;
use taskmill_core::{Error, Queue, Result};
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

/// How many commands may wait for the thread before callers wait to send theirs. A
/// manager has a handful of calls in flight (a claim, an outcome batch, a renewal, the
/// reaper); this leaves room for many managers and clients on one store.
pub(crate) const COMMAND_BUFFER: usize = 64;

/// The sending end of the connection thread's channel. The thread stops, and the
/// connection closes (checkpointing the log), when the last `Conn` is dropped.
pub(crate) struct Conn {
    commands: mpsc::Sender<(Call, Span)>,
}

impl Conn {
    /// Starts the connection thread, which opens the database at `path` (`:memory:` for
    /// a fresh in-memory one) and creates or checks its schema.
    pub async fn open(path: &Path, options: SqliteOptions, bus: Arc<LocalBus>) -> Result<Self> {
        let (commands, receiver) = mpsc::channel(COMMAND_BUFFER);
        let (ready, opened) = oneshot::channel::<Result<()>>();
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("taskmill-sqlite".into())
            .spawn(move || match connect(&thread_path, &options) {
                Ok(conn) => {
                    let _ = ready.send(Ok(()));
                    run(conn, receiver, &bus);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })
            .map_err(|e| {
                Error::unavailable("cannot start the SQLite connection thread").with_source(e)
            })?;
        opened.await.map_err(|_| {
            Error::storage(format!(
                "the SQLite connection thread for {} stopped while opening it",
                path.display()
            ))
        })??;
        Ok(Conn { commands })
    }

    /// Hands `call` to the thread, in the caller's span.
    pub async fn send(&self, call: Call) -> Result<()> {
        self.commands
            .send((call, Span::current()))
            .await
            .map_err(|_| {
                Error::unavailable("the SQLite connection thread has stopped; reopen the store")
            })
    }
}

/// The connection thread: runs commands until every [`Conn`] is gone.
fn run(mut conn: Connection, mut commands: mpsc::Receiver<(Call, Span)>, bus: &LocalBus) {
    while let Some((command, span)) = commands.blocking_recv() {
        let _entered = span.enter();
        // A panic drops the command's reply sender as it unwinds, which fails its call.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| handle(&mut conn, bus, command)));
    }
}

/// Runs one command and sends its result.
fn handle(conn: &mut Connection, bus: &LocalBus, command: Call) {
    match command {
        Call::Enqueue { tasks, opts, reply } => {
            let result = ops::enqueue(conn, tasks, &opts, bus.has_subscribers()).map(|done| {
                bus.publish(done.events);
                if done.results.iter().any(|r| r.is_new()) {
                    bus.wake();
                }
                done.results
            });
            send(reply, result, "cannot enqueue tasks");
        }
        Call::Claim { opts, reply } => {
            send(reply, ops::claim(conn, &opts), "cannot claim tasks");
        }
        Call::Renew {
            leases,
            opts,
            reply,
        } => {
            let result = ops::renew(conn, &leases, opts.deadline);
            send(reply, result, "cannot renew leases");
        }
        Call::Progress { updates, reply } => {
            send(
                reply,
                ops::progress(conn, &updates),
                "cannot store progress",
            );
        }
        Call::Apply {
            outcomes,
            opts,
            reply,
        } => {
            let result = ops::apply(conn, &outcomes, opts.now).map(|(applied, to_input)| {
                if to_input {
                    bus.wake();
                }
                applied
            });
            send(reply, result, "cannot store task outcomes");
        }
        Call::Recover { opts, reply } => {
            let result = ops::recover(conn, opts.now, opts.limit).inspect(|recovered| {
                if recovered.iter().any(|r| r.queue == Queue::Input) {
                    bus.wake();
                }
            });
            send(reply, result, "cannot recover expired leases");
        }
        Call::Prune { opts, reply } => {
            send(
                reply,
                ops::prune(conn, &opts),
                "cannot prune finished tasks",
            );
        }
        Call::Stats { opts, reply } => send(reply, ops::stats(conn, opts.now), "cannot read stats"),
        Call::Get { id, reply } => {
            let result = ops::get(conn, id).map_err(|e| backend_error(e, "cannot read a task"));
            let _ = reply.send(result.and_then(|d| d.map(Decoded::strict).transpose()));
        }
        Call::List { opts, reply } => {
            send(reply, ops::list(conn, &opts), "cannot list tasks");
        }
        Call::Requeue { ids, opts, reply } => {
            let result = ops::requeue(conn, &ids, opts.now).inspect(|moved| {
                if moved.contains(&true) {
                    bus.wake();
                }
            });
            send(reply, result, "cannot requeue tasks");
        }
        Call::Delete { ids, reply } => {
            send(reply, ops::delete(conn, &ids), "cannot delete tasks");
        }
        Call::Cancel { ids, opts, reply } => {
            let result = ops::cancel(conn, &ids, &opts, bus.has_subscribers()).map(|done| {
                bus.publish(done.events);
                // A manager in this process stops the run at once; one in another
                // process learns of the request when its renewal is refused.
                bus.request_cancel(done.requested);
                done.results
            });
            send(reply, result, "cannot cancel tasks");
        }
        Call::SetPaused {
            topic,
            paused,
            reply,
        } => {
            let result = ops::set_paused(conn, &topic, paused).inspect(|()| {
                if !paused {
                    bus.wake();
                }
            });
            send(reply, result, "cannot pause or resume a topic");
        }
        Call::RegisterSchedules {
            entries,
            opts,
            reply,
        } => {
            send(
                reply,
                ops::register_schedules(conn, &entries, opts.now),
                "cannot register schedules",
            );
        }
        Call::Fire { ticks, opts, reply } => {
            let want_events = bus.has_subscribers();
            // Published once the batch has committed, as after an enqueue.
            let result = ops::fire(conn, ticks, &opts, want_events).map(|(fired, events)| {
                bus.publish(events);
                if fired
                    .iter()
                    .any(|f| matches!(f, Fired::Enqueued(e) if e.is_new()))
                {
                    bus.wake();
                }
                fired
            });
            send(reply, result, "cannot fire schedule ticks");
        }
        Call::Schedules { reply } => {
            send(reply, ops::schedules(conn), "cannot read schedules");
        }
        Call::SetSchedulePaused {
            name,
            paused,
            reply,
        } => {
            send(
                reply,
                ops::set_schedule_paused(conn, &name, paused),
                "cannot pause or resume a schedule",
            );
        }
        Call::PruneSchedules { opts, reply } => {
            send(
                reply,
                ops::prune_schedules(conn, opts.seen_before),
                "cannot prune schedules",
            );
        }
    }
}

/// Sends a result, its SQLite error mapped with `context`. A caller that gave up (its
/// future was dropped) is not waiting: nothing to do then.
fn send<T>(reply: Reply<T>, result: rusqlite::Result<T>, context: &'static str) {
    let _ = reply.send(result.map_err(|e| backend_error(e, context)));
}

/// Opens and sets up the connection, on the connection thread.
fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let in_memory = is_in_memory(path);
    let conn = if in_memory {
        Connection::open_in_memory()
    } else {
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        flags |= if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        Connection::open_with_flags(path, flags)
    };
    let mut conn = conn.map_err(|e| {
        backend_error(
            e,
            format!("cannot open the SQLite database {}", path.display()),
        )
    })?;
    configure(&conn, path, options, in_memory)?;
    layout::migrate(&mut conn, path, options.read_only)?;
    Ok(conn)
}

/// Whether `path` names a fresh in-memory database rather than a file.
fn is_in_memory(path: &Path) -> bool {
    path == Path::new(":memory:")
}

/// Pages of write-ahead log (4 KiB each by default, so about 40 MiB) after which a commit
/// checkpoints it into the database file (SQLite's default is 1,000).
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// Sets the connection's pragmas: WAL, the durability level, the busy timeout, the
/// checkpoint interval.
fn configure(conn: &Connection, path: &Path, opts: &SqliteOptions, in_memory: bool) -> Result<()> {
    let ctx = |what: &str| format!("cannot {what} on {}", path.display());
    conn.busy_timeout(opts.busy_timeout)
        .map_err(|e| backend_error(e, ctx("set the busy timeout")))?;
    conn.set_prepared_statement_cache_capacity(64);
    if !opts.read_only && !in_memory {
        // WAL lets readers in other processes work while a writer commits, and makes a
        // commit one append to the log instead of a rewrite of the pages.
        let mode = wal(conn, opts.busy_timeout)
            .map_err(|e| backend_error(e, ctx("switch to WAL mode")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::storage(format!(
                "{} cannot use WAL mode (journal mode stays {mode:?})",
                path.display()
            )));
        }
    }
    let synchronous = match opts.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(|e| backend_error(e, ctx("set PRAGMA synchronous")))?;
    // A checkpoint (copying the log's pages into the file, with an fsync of each) every
    // WAL_CHECKPOINT_PAGES pages of log instead of SQLite's 1,000: a claim, a batch of
    // outcomes or an enqueue over many topics dirties a page per topic or per task
    // (their rows and index entries lie apart), so at 1,000 pages nearly every commit
    // ran a checkpoint; with a longer log, the pages written again and again between
    // two checkpoints are copied once.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
        .map_err(|e| backend_error(e, ctx("set PRAGMA wal_autocheckpoint")))?;
    if let Some(max) = opts.max_size {
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| backend_error(e, ctx("read the page size")))?;
        let pages = (max / page_size.max(512) as u64).max(1);
        conn.pragma_update(None, "max_page_count", pages as i64)
            .map_err(|e| backend_error(e, ctx("set PRAGMA max_page_count")))?;
    }
    Ok(())
}

/// Switches to WAL and returns the journal mode now in force.
///
/// Changing the mode of a fresh file needs a moment of exclusive access, and SQLite does
/// not call the busy handler for it: when several processes open a new file at once, the
/// losers get `SQLITE_BUSY` at once. They retry for up to the busy timeout.
fn wal(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<String> {
    let deadline = Instant::now() + busy_timeout;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LAYOUT_VERSION;
    use crate::SqliteStore;
    use taskmill_core::Store;
    use taskmill_testkit::EnteredSpans;
    use tracing::Instrument;

    fn pragma(conn: &Connection, name: &str) -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .unwrap()
    }

    #[test]
    fn connections_use_wal_and_the_chosen_durability() {
        let dir = taskmill_testkit::temp_dir();
        let path = dir.path().join("t.db");
        let conn = connect(&path, &SqliteOptions::default()).unwrap();
        assert_eq!(pragma(&conn, "journal_mode"), "wal");
        assert_eq!(pragma(&conn, "synchronous"), "1", "NORMAL");
        assert_eq!(pragma(&conn, "busy_timeout"), "5000");
        assert_eq!(
            pragma(&conn, "wal_autocheckpoint"),
            WAL_CHECKPOINT_PAGES.to_string()
        );
        assert_eq!(pragma(&conn, "user_version"), LAYOUT_VERSION.to_string());
        let full = SqliteOptions::default()
            .durability(Durability::Full)
            .busy_timeout(Duration::from_millis(250));
        let conn = connect(&path, &full).unwrap();
        assert_eq!(pragma(&conn, "synchronous"), "2", "FULL");
        assert_eq!(pragma(&conn, "busy_timeout"), "250");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn commands_run_in_the_callers_span() {
        let entered = EnteredSpans::record();
        let store = SqliteStore::open(":memory:").await.unwrap();
        store
            .stats(&taskmill_testkit::all_due())
            .instrument(tracing::info_span!("caller"))
            .await
            .unwrap();
        assert!(
            entered.contains("caller", "taskmill-sqlite"),
            "the connection thread did not enter the caller's span: {entered:?}"
        );
    }
}
