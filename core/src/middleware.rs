//! Middleware around runs and enqueues; the trait's docs hold the design.

use crate::error::Result;
use crate::manager::{Processor, TaskContext, TaskError};
use crate::store::{EnqueueOptions, Enqueued, Store};
use crate::task::{Task, TaskRecord};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use std::fmt;
use std::sync::Arc;

/// Code around every run of a task and around every enqueue, for logging, metrics, trace
/// propagation, stamping headers, or refusing work.
///
/// Every method passes straight on by default: implement the one you need.
///
/// # Why a trait of our own, not tower's `Layer` and `Service`
///
/// apalis builds on tower so that users bring existing layers. For a task queue the
/// layers worth bringing do not fit: tower's `Timeout` and `Retry` would duplicate what
/// the manager already does with its own meaning (a timeout here cancels the run through
/// [`TaskContext::cancelled`], a retry goes back to the store with a backoff), and its
/// rate and concurrency limits meet `max_running` and the worker pool. What a task
/// middleware needs is a task's view (id, topic, attempt, args, headers) and its
/// `Result<(), TaskError>`, which a `Service<TaskContext>` would carry with `poll_ready`,
/// a `Clone` bound on every layer, and a boxed service per topic to name the stack's type.
///
/// So a `Middleware` is one object-safe trait whose `run` and `enqueue` are given the rest
/// of the chain as [`Next`] / [`EnqueueNext`] (the shape of reqwest-middleware and tide):
/// code before `next` runs before, code after it sees the outcome, and not calling it
/// short-circuits. A chain is a slice walked by index: per run it costs one boxed future
/// per middleware (the `async_trait` box), and nothing when a topic has none. Measured
/// with `taskmill bench --store memory:// --scenario throughput --middleware 0
/// --middleware 1 --middleware 4` (docs/performance.md, issue 14): about 0.05–0.06 µs of
/// CPU per no-op middleware per run (four middleware add 0.21–0.25 µs per task, in five
/// rounds on two days), against about 0.9 µs for a whole no-op run on the memory store;
/// beside any real processor's work it does not show.
///
/// # What stays outside the chain
///
/// The panic catch, the timeout and the tracing span of a run are not middleware: they
/// wrap the whole chain, so that a middleware that panics is caught like a processor, the
/// timeout bounds the middleware too, and what a middleware logs lands in the run's span.
/// As the outermost middleware they would be the same code plus a box per run, and a user's
/// middleware registered before them would escape them.
///
/// # Order
///
/// The manager's middleware ([`ManagerBuilder::middleware`](crate::ManagerBuilder::middleware))
/// wraps a run first, in the order registered (the first registered is the outermost),
/// then the topic's own ([`TopicOptions::middleware`](crate::TopicOptions::middleware)),
/// then the processor. Enqueues go through a client's middleware in the same order
/// ([`Client::middleware`](crate::Client::middleware); a manager's client has the
/// manager's).
///
/// ```
/// use taskmill_core::{async_trait, Middleware, Next, TaskContext, TaskError};
///
/// /// Logs how long every run takes.
/// struct Timing;
///
/// #[async_trait]
/// impl Middleware for Timing {
///     async fn run(&self, ctx: TaskContext, next: Next<'_>) -> Result<(), TaskError> {
///         let (id, started) = (ctx.id(), std::time::Instant::now());
///         let outcome = next.run(ctx).await;
///         tracing::info!(%id, ok = outcome.is_ok(), took = ?started.elapsed(), "run ended");
///         outcome
///     }
/// }
/// ```
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Runs around one run of a task. Call `next.run(ctx)` to go on to the rest of the
    /// chain and the processor; return without calling it to short-circuit (an `Err`
    /// retries or fails the task as a processor's would, an `Ok` completes it).
    async fn run(&self, ctx: TaskContext, next: Next<'_>) -> Result<(), TaskError> {
        next.run(ctx).await
    }

    /// Sees the run's span (`task`) once it is opened and before it is first entered,
    /// with the task as claimed. This is the one moment a span's OpenTelemetry parent can
    /// still be set (a tracing-opentelemetry layer starts a span when it is entered, and
    /// [`run`](Self::run) is called inside it): a trace-propagation middleware makes the
    /// span a child of the context in the task's [headers](TaskRecord::headers) here. Not
    /// called when no subscriber records the span.
    fn run_span(&self, task: &TaskRecord, span: &tracing::Span) {
        let _ = (task, span);
    }

    /// Runs around one enqueue call of a [`Client`](crate::Client) (a batch of tasks,
    /// possibly of several topics). Change the tasks (stamp
    /// [headers](crate::Task::headers_mut)) and call `next.enqueue(tasks)`, or refuse the
    /// batch with an error. The answer must keep one entry per task, in order.
    async fn enqueue(&self, tasks: Vec<Task>, next: EnqueueNext<'_>) -> Result<Vec<Enqueued>> {
        next.enqueue(tasks).await
    }
}

/// A shared middleware is one: the same instance can wrap a manager's runs and a bare
/// client's enqueues (`Arc::clone(&metrics)` to each).
#[async_trait]
impl<M: Middleware + ?Sized> Middleware for Arc<M> {
    async fn run(&self, ctx: TaskContext, next: Next<'_>) -> Result<(), TaskError> {
        (**self).run(ctx, next).await
    }

    fn run_span(&self, task: &TaskRecord, span: &tracing::Span) {
        (**self).run_span(task, span)
    }

    async fn enqueue(&self, tasks: Vec<Task>, next: EnqueueNext<'_>) -> Result<Vec<Enqueued>> {
        (**self).enqueue(tasks, next).await
    }
}

impl fmt::Debug for dyn Middleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Middleware")
    }
}

/// A chain of middleware, outermost first; cheap to clone.
pub(crate) type Chain = Arc<[Arc<dyn Middleware>]>;

/// The rest of a run's chain: the middleware after this one, then the processor.
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    processor: &'a dyn Processor,
}

impl<'a> Next<'a> {
    pub(crate) fn new(chain: &'a [Arc<dyn Middleware>], processor: &'a dyn Processor) -> Self {
        Next {
            rest: chain,
            processor,
        }
    }

    /// Runs the rest of the chain.
    ///
    /// Returns the next middleware's (or the processor's) own boxed future rather than
    /// wrapping it in one more: a chain of N costs N + 1 boxes per run, not twice that.
    pub fn run(self, ctx: TaskContext) -> BoxFuture<'a, Result<(), TaskError>> {
        match self.rest.split_first() {
            Some((first, rest)) => {
                let next = Next {
                    rest,
                    processor: self.processor,
                };
                first.run(ctx, next)
            }
            None => self.processor.process(ctx),
        }
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("middleware_left", &self.rest.len())
            .finish_non_exhaustive()
    }
}

/// The rest of an enqueue's chain: the middleware after this one, then the store.
pub struct EnqueueNext<'a> {
    rest: &'a [Arc<dyn Middleware>],
    store: &'a dyn Store,
    opts: &'a EnqueueOptions,
}

impl<'a> EnqueueNext<'a> {
    pub(crate) fn new(
        chain: &'a [Arc<dyn Middleware>],
        store: &'a dyn Store,
        opts: &'a EnqueueOptions,
    ) -> Self {
        EnqueueNext {
            rest: chain,
            store,
            opts,
        }
    }

    /// Enqueues `tasks` through the rest of the chain.
    pub fn enqueue(self, tasks: Vec<Task>) -> BoxFuture<'a, Result<Vec<Enqueued>>> {
        match self.rest.split_first() {
            Some((first, rest)) => {
                let next = EnqueueNext { rest, ..self };
                first.enqueue(tasks, next)
            }
            None => self.store.enqueue(tasks, self.opts),
        }
    }
}

impl fmt::Debug for EnqueueNext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnqueueNext")
            .field("middleware_left", &self.rest.len())
            .finish_non_exhaustive()
    }
}
