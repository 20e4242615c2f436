//! What users register per topic: processors, the context a run gets, and task errors.

use super::run::Run;
use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::event::Event;
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
pub struct TaskContext {
    pub(crate) run: Arc<Run>,
    /// The worker's own handle on the store (see the worker for why it is its own).
    pub(crate) store: Arc<Arc<dyn Store>>,
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

    /// The whole task as stored.
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

    /// Whether the run has been cancelled (shutdown, or the lease was lost).
    pub fn is_cancelled(&self) -> bool {
        self.run.is_cancelled()
    }

    /// Resolves when the run is cancelled. A processor that ignores it is dropped at its
    /// next `.await` all the same; this lets it stop at a point of its choosing.
    pub async fn cancelled(&self) {
        self.run.cancelled().await
    }

    /// Publishes a [`Event::TaskProgress`] with `progress`.
    pub async fn progress<T: Serialize + ?Sized>(&self, progress: &T) -> Result<()> {
        let event = Event::TaskProgress {
            id: self.run.record.id,
            topic: self.run.record.topic.clone(),
            progress: Payload::new(progress)?,
        };
        self.store.publish(std::slice::from_ref(&event)).await
    }

    /// Sets the result reported in the task's [`Event::TaskCompletion`].
    pub fn set_result<T: Serialize + ?Sized>(&self, result: &T) -> Result<()> {
        self.run.set_result(Payload::new(result)?);
        Ok(())
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
