//! What users register per topic: processors, the context a run gets, and task errors.

use super::run::Run;
use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::event::Event;
use crate::headers::Headers;
use crate::store::Store;
use crate::task::{Payload, TaskId, TaskRecord};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

/// Runs the tasks of one topic.
///
/// Any `Fn(TaskContext) -> impl Future<Output = Result<(), E>>` is a processor, for any
/// error `E` that converts into a [`TaskError`]; implement the trait directly for a
/// processor with state of its own.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Runs one attempt of a task. `Ok` completes it; `Err` retries it, or sends it to
    /// DEAD when it has no retries left or the error is [permanent](TaskError::permanent).
    async fn process(&self, ctx: TaskContext) -> Result<(), TaskError>;
}

#[async_trait]
impl<F, Fut, E> Processor for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<TaskError> + 'static,
{
    async fn process(&self, ctx: TaskContext) -> Result<(), TaskError> {
        (self)(ctx).await.map_err(Into::into)
    }
}

/// A processor whose arguments are deserialized into `T` first; built by
/// [`Manager::register_typed`](crate::Manager::register_typed).
///
/// Arguments that do not decode into `T` fail the task for good, without retries: the
/// same payload would fail the same way every time.
pub struct Typed<T, F> {
    f: F,
    _args: PhantomData<fn() -> T>,
}

impl<T, F> Typed<T, F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Typed {
            f,
            _args: PhantomData,
        }
    }
}

#[async_trait]
impl<T, F, Fut, E> Processor for Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<TaskError> + 'static,
{
    async fn process(&self, ctx: TaskContext) -> Result<(), TaskError> {
        let args = ctx.args()?;
        (self.f)(args, ctx).await.map_err(Into::into)
    }
}

/// Why a run failed.
///
/// Converts from any `std::error::Error`, taskmill's [`Error`] among them, so `?` works in
/// processors; [`TaskError::msg`] makes one from text.
///
/// A conversion is an ordinary failure, retried while the task has retries left, unless
/// the error or one of its sources is an [`Error`] of kind
/// [`Corrupt`](ErrorKind::Corrupt): data that cannot be decoded fails the same way on
/// every attempt, so that failure is [permanent](Self::permanent). This is what makes
/// `ctx.args()?` send a task whose arguments do not decode straight to DEAD.
pub struct TaskError {
    error: BoxError,
    permanent: bool,
}

impl TaskError {
    /// A failure described by `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        TaskError {
            error: message.to_string().into(),
            permanent: false,
        }
    }

    /// A failure that retrying cannot fix: the task goes straight to DEAD.
    pub fn permanent(error: impl Into<TaskError>) -> Self {
        let mut e = error.into();
        e.permanent = true;
        e
    }

    /// Whether the task should skip its remaining retries.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The underlying error.
    pub fn into_inner(self) -> BoxError {
        self.error
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        let error: BoxError = Box::new(error);
        let permanent = is_undecodable(&*error);
        TaskError { error, permanent }
    }
}

/// Whether `error` or one of its sources is a taskmill [`Error`] of kind `Corrupt`.
fn is_undecodable(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<Error>())
        .any(|e| e.kind() == ErrorKind::Corrupt)
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("error", &self.error)
            .field("permanent", &self.permanent)
            .finish()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)?;
        let mut source = self.error.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// What a processor gets for one run: the task, a cancellation signal, and ways to report
/// progress and a result.
///
/// Cheap to clone (two reference counts), so a [`Middleware`](crate::Middleware) can keep
/// one after handing the context on.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) run: Arc<Run>,
    /// The worker's own handle on the store (see the worker for why it is its own).
    pub(crate) store: Arc<Arc<dyn Store>>,
    /// The largest result or progress value, in bytes of JSON.
    pub(crate) max_value_bytes: usize,
    /// When the worker started the run (the clock read its duration is measured from).
    pub(crate) started: tokio::time::Instant,
}

impl TaskContext {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.run.record.id
    }

    /// The task's topic.
    pub fn topic(&self) -> &str {
        &self.run.record.topic
    }

    /// This run's attempt number: 1 for the first run.
    pub fn attempt(&self) -> u32 {
        self.run.record.attempt
    }

    /// When the run started, on the clock the manager measures run durations with
    /// (`TASK_COMPLETION`'s `duration_ms`): a middleware timing runs reads
    /// `ctx.started().elapsed()` instead of reading the clock once more. Tokio's clock, so
    /// tests on paused time see it move with the time they advance.
    pub fn started(&self) -> tokio::time::Instant {
        self.started
    }

    /// The headers the task was enqueued with ([`Task::header`](crate::Task::header)).
    pub fn headers(&self) -> &Headers {
        &self.run.record.headers
    }

    /// The whole task as claimed for this run.
    pub fn record(&self) -> &TaskRecord {
        &self.run.record
    }

    /// The arguments as JSON text.
    pub fn raw_args(&self) -> &str {
        self.run.record.args.as_str()
    }

    /// The arguments deserialized into `T`.
    ///
    /// Fails with [`ErrorKind::Corrupt`] when they do not decode into `T`; `?` turns that
    /// into a [permanent](TaskError::permanent) failure, so the task goes to DEAD without
    /// retries.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T> {
        self.run.record.args.decode()
    }

    /// Whether the run has been told to stop: see [`cancelled`](Self::cancelled).
    pub fn is_cancelled(&self) -> bool {
        self.run.is_cancelled()
    }

    /// Resolves when the run is told to stop, for one of three reasons:
    ///
    /// - the task was cancelled ([`Client::cancel`](crate::Client::cancel)): the task ends
    ///   CANCELLED, not retried, whatever the processor returns now. A cancel made in this
    ///   process arrives at once, one from another process through the store's pub/sub
    ///   (Redis) or at the manager's next lease renewal (within its renew interval);
    /// - the manager is shutting down and the grace period is over: the task goes back to
    ///   INPUT without using an attempt;
    /// - the lease was lost (the store no longer gives this run the task): its outcome
    ///   will change nothing.
    ///
    /// Once it fires, the processor is polled once more, so that one that awaits this can
    /// clean up and return, and then dropped at its next `.await` if it has not returned. A
    /// processor that never awaits cannot be dropped; it is recorded as above when it
    /// returns, and a cancelled task's lease is no longer renewed meanwhile, so the reaper
    /// ends it CANCELLED once the lease runs out if it has not returned by then.
    pub async fn cancelled(&self) {
        self.run.cancelled().await
    }

    /// Reports the run's progress: publishes a [`Event::TaskProgress`] with `progress`,
    /// and keeps it as the task's latest, which the manager writes to the record at most
    /// once per [progress interval](crate::ManagerBuilder::progress_interval) (and with the
    /// run's outcome), where [`Client::status`](crate::Client::status) shows it.
    ///
    /// Fails with [`ErrorKind::Misuse`] when `progress` serializes to more than the
    /// manager's [`max_result_bytes`](crate::ManagerBuilder::max_result_bytes); nothing is
    /// then published or kept.
    pub async fn progress<T: Serialize + ?Sized>(&self, progress: &T) -> Result<()> {
        let progress = self.bounded(progress, "progress value")?;
        self.run.set_progress(progress.clone());
        let event = Event::TaskProgress {
            id: self.run.record.id,
            topic: self.run.record.topic.clone(),
            progress,
        };
        self.store.publish(std::slice::from_ref(&event)).await
    }

    /// Sets the task's result: stored on its record when the run completes (where
    /// [`Client::status`](crate::Client::status) shows it for as long as the task is
    /// kept), and carried by its [`Event::TaskCompletion`]. A later call replaces it.
    ///
    /// Fails with [`ErrorKind::Misuse`] when `result` serializes to more than the
    /// manager's [`max_result_bytes`](crate::ManagerBuilder::max_result_bytes); the
    /// result is then left as it was, and the run still completes when it returns `Ok`.
    pub fn set_result<T: Serialize + ?Sized>(&self, result: &T) -> Result<()> {
        let result = self.bounded(result, "result")?;
        self.run.set_result(result);
        Ok(())
    }

    /// `value` as JSON, if it is within the size limit.
    fn bounded<T: Serialize + ?Sized>(&self, value: &T, what: &str) -> Result<Payload> {
        let payload = Payload::new(value)?;
        let (size, limit) = (payload.as_str().len(), self.max_value_bytes);
        if size > limit {
            return Err(Error::misuse(format!(
                "task {}: the {what} is {size} bytes of JSON, more than the limit of {limit} \
                 bytes (ManagerBuilder::max_result_bytes); it is not kept",
                self.run.record.id
            )));
        }
        Ok(payload)
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.run.record.id)
            .field("topic", &self.run.record.topic)
            .field("attempt", &self.run.record.attempt)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undecodable() -> Payload {
        Payload::new("not a number").unwrap()
    }

    /// What `ctx.args()?` does in a processor: the same decode, the same conversion.
    fn args_of(payload: &Payload) -> Result<u64, TaskError> {
        Ok(payload.decode::<u64>()?)
    }

    #[test]
    fn a_decode_error_through_question_mark_is_permanent() {
        let error = args_of(&undecodable()).unwrap_err();
        assert!(error.is_permanent(), "{error}");
        assert!(error.to_string().contains("cannot decode task arguments"));
    }

    #[test]
    fn a_decode_error_stays_permanent_inside_an_error_of_the_users() {
        #[derive(Debug)]
        struct Wrapped(Error);
        impl fmt::Display for Wrapped {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the user's own error")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let decode = undecodable().decode::<u64>().unwrap_err();
        assert!(TaskError::from(Wrapped(decode)).is_permanent());
    }

    #[test]
    fn other_errors_are_retried() {
        assert!(!TaskError::from(Error::unavailable("the store is down")).is_permanent());
        assert!(!TaskError::from(std::io::Error::other("disk full")).is_permanent());
        assert!(!TaskError::msg("not yet").is_permanent());
        assert!(TaskError::permanent(TaskError::msg("bad input")).is_permanent());
    }
}
