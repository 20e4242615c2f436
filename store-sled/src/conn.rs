//! The writer thread: the one owner of the sled database, and the commands it runs.
//!
//! sled has no connection to speak of; this thread is the store's: it opens the database,
//! rebuilds the indexes, and runs every call of the store, reads too, one
//! [`Call`] at a time (one variant per operation, carrying its arguments and its own
//! reply sender). Commands come with the caller's [`tracing::Span`] on a bounded channel,
//! and each runs inside its caller's span. Why one dedicated thread rather than
//! `spawn_blocking` per call:
//! - Being the only writer, it can keep the indexes in memory (see `index.rs`): nothing
//!   else changes the records behind them, so each change is one batch of chunk writes.
//! - Group commit: the thread takes every command waiting in its channel, runs each as
//!   its own batch, then makes them durable with one `flush` (an fsync) before it answers
//!   any of them. Under load many claims and outcome batches share one fsync, which is
//!   what makes flush-on-every-write affordable.
//! - One hop per batch, never per task, and no blocking-pool thread is parked on a lock.
//!
//! Events and wake-ups are sent after the flush and before the replies, so a watcher sees a
//! task's enqueue before any claim of it returns, and never sees an enqueue that failed.
//!
//! Cancel safety: a command whose caller's future is dropped before the command was sent
//! never runs; once sent, it runs to completion, and its reply is dropped.

use crate::error::{backend_error, open_error};
use crate::index::Index;
use crate::ops::Writer;
use crate::{layout, FlushPolicy, SledOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use taskmill_core::raw::{Call, LocalBus, Reply};
use taskmill_core::store::Fired;
use taskmill_core::{Error, Queue, Result};
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

/// How many commands may wait for the thread before callers wait to send theirs.
const COMMAND_BUFFER: usize = 128;
/// At most this many commands share one flush, so a flood of them still gets answers.
const MAX_GROUP: usize = 128;

/// What the writer thread serves: a store call, or a flush.
pub(crate) enum Command {
    /// One call of the [`Store`](taskmill_core::Store).
    Store(Call),
    /// Flushes everything committed so far, whatever the policy.
    Flush { reply: Reply<()> },
}

/// The sending end of the writer thread's channel.
///
/// Dropping it closes the channel, which stops the thread; the thread flushes and drops
/// the database (it holds the only handle). The drop blocks until that is done and sled
/// has released the database's lock, so the same path can be opened again right after.
#[derive(Debug)]
pub(crate) struct Conn {
    /// sled's lock file, `db` in the database directory.
    lock: PathBuf,
    commands: Option<mpsc::Sender<(Command, Span)>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // sled's I/O threads may hold the database file, and so its lock, a moment longer:
        // wait for that, so that once the last clone is gone the path opens again at once.
        wait_for_unlock(&self.lock, Duration::from_secs(5));
    }
}

impl Conn {
    /// Starts the writer thread, which opens (creating if needed) the database in `path`
    /// and rebuilds the indexes from it.
    pub async fn open(path: &Path, options: &SledOptions, bus: Arc<LocalBus>) -> Result<Self> {
        let (commands, receiver) = mpsc::channel(COMMAND_BUFFER);
        let (ready, opened) = oneshot::channel::<Result<()>>();
        let dir = path.to_path_buf();
        let options = options.clone();
        let thread = std::thread::Builder::new()
            .name("taskmill-sled".into())
            .spawn(move || match open_db(&dir, &options) {
                Ok((db, writer)) => {
                    let flusher = match Flusher::start(db, options.flush_timeout) {
                        Ok(flusher) => flusher,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let thread = Thread {
                        flusher,
                        writer,
                        bus,
                        policy: options.flush,
                        poisoned: None,
                    };
                    thread.run(receiver);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })
            .map_err(|e| Error::storage("cannot start the sled writer thread").with_source(e))?;
        let stopped = || {
            Error::storage(format!(
                "the sled writer thread for {} stopped while opening it",
                path.display()
            ))
        };
        opened.await.map_err(|_| stopped())??;
        Ok(Conn {
            lock: path.join("db"),
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// Hands `command` to the thread, in the caller's span.
    pub async fn send(&self, command: Command) -> Result<()> {
        let stopped = || Error::unavailable("the sled writer thread has stopped");
        let commands = self.commands.as_ref().ok_or_else(stopped)?;
        commands
            .send((command, Span::current()))
            .await
            .map_err(|_| stopped())
    }
}

/// Opens the database and rebuilds the indexes, on the writer thread. On failure the
/// database is closed again, its lock released, before the error returns.
fn open_db(path: &Path, options: &SledOptions) -> Result<(sled::Db, Writer)> {
    let mut config = sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(options.flush_every.map(|d| d.as_millis().max(1) as u64));
    if let Some(bytes) = options.cache_capacity {
        config = config.cache_capacity(bytes);
    }
    let db = config.open().map_err(|e| open_error(path, e))?;
    let opened = layout::open_tree(&db, path).and_then(|tree| {
        let started = std::time::Instant::now();
        let index = Index::load(&tree)?;
        tracing::debug!(elapsed = ?started.elapsed(), "sled indexes rebuilt");
        Ok(Writer::new(tree, index))
    });
    match opened {
        Ok(writer) => Ok((db, writer)),
        Err(e) => {
            drop(db);
            wait_for_unlock(&path.join("db"), Duration::from_secs(5));
            Err(e)
        }
    }
}

/// Waits (bounded) until nothing in this process holds sled's lock on `path`.
fn wait_for_unlock(path: &Path, limit: Duration) {
    use fs2::FileExt;
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if file.try_lock_exclusive().is_ok() {
            let _ = FileExt::unlock(&file);
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tracing::warn!(path = %path.display(), "the sled database lock outlived its store");
}

/// Finishes a command once its group's flush is done, given the flush's error if any.
type Finish = Box<dyn FnOnce(Option<&Error>) + Send>;

/// What to do once the group's flush is done: send events, wake managers, reply.
struct Deferred {
    durable: bool,
    finish: Finish,
}

fn defer<V: Send + 'static>(
    durable: bool,
    reply: Reply<V>,
    result: Result<V>,
    after: impl FnOnce() + Send + 'static,
) -> Deferred {
    Deferred {
        durable,
        finish: Box::new(move |flush_error| {
            let result = match (result, flush_error) {
                (Ok(_), Some(e)) if durable => Err(Error::storage(format!(
                    "the change was made but could not be flushed to disk: {e}"
                ))),
                (Ok(v), _) => {
                    after();
                    Ok(v)
                }
                (Err(e), _) => Err(e),
            };
            // The caller may have given up (its future was dropped): nothing to do.
            let _ = reply.send(result);
        }),
    }
}

/// sled's flushes, run on a thread of their own and waited for with a deadline.
///
/// After a write the disk refused, sled can wait forever for that write to become stable,
/// and a flush then never returns. Waiting on it on the writer thread would hang every
/// caller of the store; with a deadline the waiting calls fail, the store is poisoned, and
/// only the flush thread stays stuck (it owns a clone of the database and exits when the
/// flush returns, if ever).
struct Flusher {
    requests: std::sync::mpsc::Sender<()>,
    results: std::sync::mpsc::Receiver<sled::Result<usize>>,
    timeout: Duration,
}

impl Flusher {
    fn start(db: sled::Db, timeout: Duration) -> Result<Self> {
        let (requests, asked) = std::sync::mpsc::channel::<()>();
        let (answer, results) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("taskmill-sled-flush".into())
            .spawn(move || {
                for () in asked {
                    if answer.send(db.flush()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::storage("cannot start the sled flush thread").with_source(e))?;
        Ok(Flusher {
            requests,
            results,
            timeout,
        })
    }

    /// Flushes the database, waiting at most the timeout. Not called again once a flush
    /// failed or timed out: the store is poisoned then, and a result still to come from
    /// the stuck flush must not be taken for a new one's.
    fn flush(&self) -> Result<()> {
        let stopped = || Error::storage("the sled flush thread has stopped");
        self.requests.send(()).map_err(|_| stopped())?;
        match self.results.recv_timeout(self.timeout) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(backend_error(e, "cannot flush the sled database")),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::storage(format!(
                "a flush of the sled database did not finish within {:?} (is the disk full?)",
                self.timeout
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(stopped()),
        }
    }
}

/// The error of every write to a poisoned store.
fn refused(poison: &str) -> Error {
    Error::storage(format!(
        "the sled store failed to write earlier ({poison}); reopen it"
    ))
}

/// The writer thread's state.
struct Thread {
    flusher: Flusher,
    writer: Writer,
    bus: Arc<LocalBus>,
    policy: FlushPolicy,
    /// Set when a flush or a write failed: the database may hold changes that are not on
    /// disk, and the indexes changes that are not in the database, so every later write
    /// fails fast with this until the store is reopened.
    poisoned: Option<String>,
}

impl Thread {
    /// Serves commands until every sender is gone, then flushes one last time.
    fn run(mut self, mut commands: mpsc::Receiver<(Command, Span)>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some((first, span)) = commands.blocking_recv() {
            group.push(self.handle(first, &span));
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok((next, span)) => group.push(self.handle(next, &span)),
                    Err(_) => break,
                }
            }
            let flush_error = if !group.iter().any(|d| d.durable) {
                None
            } else if let Some(e) = &self.poisoned {
                Some(refused(e))
            } else {
                self.flusher.flush().err().map(|e| {
                    tracing::error!(error = %e, "sled flush failed; the store refuses writes from now on");
                    self.poisoned = Some(e.to_string());
                    e
                })
            };
            for deferred in group.drain(..) {
                (deferred.finish)(flush_error.as_ref());
            }
        }
        if self.poisoned.is_none() {
            if let Err(e) = self.flusher.flush() {
                tracing::error!(error = %e, "final sled flush failed");
            }
        }
    }

    fn durable(&self, always: bool) -> bool {
        self.writer.dirty
            && match self.policy {
                FlushPolicy::Always => true,
                FlushPolicy::Enqueues => always,
                FlushPolicy::Periodic => false,
            }
    }

    /// Runs a change, unless an earlier one failed.
    fn write<V>(&mut self, change: impl FnOnce(&mut Writer) -> Result<V>) -> Result<V> {
        if let Some(e) = &self.poisoned {
            return Err(refused(e));
        }
        change(&mut self.writer).inspect_err(|e| {
            // A change that fails midway (a read refused by the disk) has moved the
            // indexes of the tasks before it: only a reopen rebuilds them from the disk.
            if self.poisoned.is_none() {
                tracing::error!(error = %e, "sled change failed; the store refuses writes from now on");
                self.poisoned = Some(e.to_string());
            }
            self.writer.reset();
        })
    }

    /// Runs one command in its caller's span; what is left to do after the flush.
    fn handle(&mut self, command: Command, span: &Span) -> Deferred {
        let _entered = span.enter();
        self.writer.dirty = false;
        let call = match command {
            Command::Store(call) => call,
            Command::Flush { reply } => {
                self.writer.dirty = true;
                return defer(true, reply, Ok(()), || {});
            }
        };
        match call {
            Call::Enqueue { tasks, opts, reply } => {
                let with_events = self.bus.has_subscribers();
                let result = self.write(|w| w.enqueue(tasks, &opts, with_events));
                let (result, events) = match result {
                    Ok((r, e)) => (Ok(r), e),
                    Err(e) => (Err(e), Vec::new()),
                };
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if !events.is_empty() {
                        bus.publish(events);
                    }
                    bus.wake();
                })
            }
            Call::Claim { opts, reply } => {
                let result = self.write(|w| w.claim(&opts));
                // A claim lost in a crash leaves its tasks in INPUT, where they run again:
                // what a flushed claim would give too, after its lease expired. Its
                // batch reaches the disk with the next flush (sled's log is
                // sequential), so an fsync here would buy nothing.
                defer(false, reply, result, || {})
            }
            Call::Renew {
                leases,
                opts,
                reply,
            } => {
                let result = self.write(|w| w.renew(&leases, opts.deadline));
                // A lost renewal only makes a lease end sooner after a crash, and a crash
                // ends every lease of this process anyway: never worth an fsync.
                defer(false, reply, result, || {})
            }
            Call::Apply {
                outcomes,
                opts,
                reply,
            } => {
                let result = self.write(|w| w.apply(&outcomes, opts.now));
                let (result, wake) = match result {
                    Ok((applied, wake)) => (Ok(applied), wake),
                    Err(e) => (Err(e), false),
                };
                let bus = self.bus.clone();
                defer(self.durable(false), reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Call::Recover { opts, reply } => {
                // Like a claim: a recovery lost in a crash is made again by the next reaper.
                let result = self.write(|w| w.recover(opts.now, opts.limit));
                let wake = result
                    .as_ref()
                    .is_ok_and(|r| r.iter().any(|r| r.queue == Queue::Input));
                let bus = self.bus.clone();
                defer(false, reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Call::Progress { updates, reply } => {
                let result = self.write(|w| w.progress(&updates));
                // Like a renewal: progress lost in a crash belongs to a run the crash
                // ended, and the next run reports its own.
                defer(false, reply, result, || {})
            }
            Call::Prune { opts, reply } => {
                // Like a recovery: records a crash brings back are pruned again by the next
                // pruning. A flushed call after it (an enqueue reusing a freed unique key)
                // flushes it too, as sled's log is sequential.
                let result = self.write(|w| w.prune(&opts));
                defer(false, reply, result, || {})
            }
            Call::Cancel { ids, opts, reply } => {
                let with_events = self.bus.has_subscribers();
                let result = self.write(|w| w.cancel(&ids, &opts, with_events));
                let (result, events, running) = match result {
                    Ok((r, e, running)) => (Ok(r), e, running),
                    Err(e) => (Err(e), Vec::new(), Vec::new()),
                };
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if !events.is_empty() {
                        bus.publish(events);
                    }
                    bus.request_cancel(running);
                })
            }
            Call::Requeue { ids, opts, reply } => {
                let result = self.write(|w| w.requeue(&ids, opts.now));
                let wake = result.as_ref().is_ok_and(|r| r.contains(&true));
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Call::Delete { ids, reply } => {
                let result = self.write(|w| w.delete(&ids));
                defer(self.durable(true), reply, result, || {})
            }
            Call::SetPaused {
                topic,
                paused,
                reply,
            } => {
                let result = self.write(|w| w.set_paused(&topic, paused));
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if !paused {
                        bus.wake()
                    }
                })
            }
            Call::Stats { opts, reply } => {
                defer(false, reply, Ok(self.writer.stats(opts.now)), || {})
            }
            Call::Get { id, reply } => defer(false, reply, self.writer.get(id), || {}),
            Call::List { opts, reply } => defer(false, reply, self.writer.list(&opts), || {}),
            Call::RegisterSchedules {
                entries,
                opts,
                reply,
            } => {
                // Flushed as a pause is: what a manager registered is there after a crash.
                let result = self.write(|w| w.register_schedules(&entries, opts.now));
                defer(self.durable(true), reply, result, || {})
            }
            Call::Fire { ticks, opts, reply } => {
                // An enqueue, with the ticks' states in its batch: flushed, events and
                // wake-ups as an enqueue's.
                let with_events = self.bus.has_subscribers();
                let result = self.write(|w| w.fire(ticks, &opts, with_events));
                let (result, events) = match result {
                    Ok((r, e)) => (Ok(r), e),
                    Err(e) => (Err(e), Vec::new()),
                };
                let wake = result.as_ref().is_ok_and(|fired| {
                    fired
                        .iter()
                        .any(|f| matches!(f, Fired::Enqueued(e) if e.is_new()))
                });
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if !events.is_empty() {
                        bus.publish(events);
                    }
                    if wake {
                        bus.wake();
                    }
                })
            }
            Call::Schedules { reply } => defer(false, reply, Ok(self.writer.schedules()), || {}),
            Call::SetSchedulePaused {
                name,
                paused,
                reply,
            } => {
                let result = self.write(|w| w.set_schedule_paused(&name, paused));
                defer(self.durable(true), reply, result, || {})
            }
            Call::PruneSchedules { opts, reply } => {
                // Like a pruning of tasks: states a crash brings back are pruned again by
                // the next pruning, and a flushed call after it flushes it too.
                let result = self.write(|w| w.prune_schedules(opts.seen_before));
                defer(false, reply, result, || {})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::SledStore;
    use taskmill_core::Store;
    use taskmill_testkit::EnteredSpans;
    use tracing::Instrument;

    #[tokio::test(flavor = "current_thread")]
    async fn commands_run_in_the_callers_span() {
        let entered = EnteredSpans::record();
        let dir = taskmill_testkit::temp_dir();
        let store = SledStore::open(dir.path().join("db")).await.unwrap();
        store
            .stats(&taskmill_testkit::all_due())
            .instrument(tracing::info_span!("caller"))
            .await
            .unwrap();
        assert!(
            entered.contains("caller", "taskmill-sled"),
            "the writer thread did not enter the caller's span: {entered:?}"
        );
    }
}
