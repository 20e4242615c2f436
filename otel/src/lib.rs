//! taskmill-otel: OpenTelemetry trace propagation for taskmill, so that a task's runs
//! continue the trace of the code that enqueued it, across processes and stores.
//!
//! taskmill opens a span per enqueue (`taskmill.enqueue`, OpenTelemetry kind `producer`,
//! named `send <topic>`) and per run (`task`, kind `consumer`, named `process <topic>`),
//! with the fields [tracing-opentelemetry](tracing_opentelemetry) turns into span names,
//! kinds and `messaging.*` attributes. Without this crate each run's span starts a trace of
//! its own. The [`TraceContext`] middleware links them:
//!
//! - on enqueue it writes the OpenTelemetry context of the current span (the
//!   `taskmill.enqueue` span, itself a child of whatever span the caller is in) into each
//!   task's [headers](taskmill_core::Headers), as W3C `traceparent` and, when there is one,
//!   `tracestate`;
//! - on run it reads them back and makes the run's span a child of that context, so the
//!   trace goes on: request → `send emails` → `process emails` → what the processor
//!   does.
//!
//! A task without trace headers, or with ones that do not parse, runs in a trace of its
//! own, as it would without the middleware; the middleware never fails a run or an enqueue.
//!
//! # Wiring
//!
//! Three pieces, in every process that enqueues or runs tasks:
//!
//! 1. a tracing subscriber with the [`tracing_opentelemetry`] layer over your tracer
//!    provider (the OTLP exporter, usually);
//! 2. the middleware on the manager, as its **first** middleware
//!    ([`ManagerBuilder::middleware`](taskmill_core::ManagerBuilder::middleware)): the
//!    manager's own client gets it too;
//! 3. the middleware on every producer's [`Client`](taskmill_core::Client)
//!    ([`Client::middleware`](taskmill_core::Client::middleware)).
//!
//! Whatever filter the subscriber has must let the INFO spans of `taskmill_core` reach the
//! OpenTelemetry layer: a run span it filters out has no parent to set, and an enqueue
//! span it filters out has no context to carry. The sampled flag travels with the context,
//! so a parent-based sampler keeps or drops a task's runs with the trace that enqueued it.
//!
//! ```
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use taskmill_core::{Client, Manager, TaskContext, TaskError};
//! use taskmill_otel::TraceContext;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In production: `.with_batch_exporter(opentelemetry_otlp::SpanExporter::builder()…)`.
//! let provider = SdkTracerProvider::builder()
//!     .with_simple_exporter(InMemorySpanExporter::default())
//!     .build();
//! let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("my-service"));
//! tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel))?;
//!
//! let store = taskmill_memory::MemoryStore::new();
//! // The worker side: every run continues the trace its task was enqueued in.
//! let manager = Manager::builder(store.clone())
//!     .middleware(TraceContext::new())
//!     .build();
//! manager.register("emails", |_ctx: TaskContext| async move {
//!     // Spans opened here are children of the run's span.
//!     Ok::<(), TaskError>(())
//! })?;
//! // The producer side (a web server, say): every enqueue stamps the caller's trace.
//! let client = Client::new(store).middleware(TraceContext::new());
//! # let _ = (manager, client);
//! # Ok(()) }
//! ```
//!
//! # When the run's span gets its parent
//!
//! An OpenTelemetry span's parent is fixed when the span starts, which by default is when
//! it is first entered, and the manager enters the run's span around the whole middleware
//! chain. So the middleware does its work in
//! [`Middleware::run_span`], which the manager calls
//! with the span after opening it and before entering it. A middleware registered before
//! [`TraceContext`] whose own `run_span` starts the span (by reading its OpenTelemetry
//! context) would leave it too late: the run then goes on in a trace of its own with a
//! link to the enqueuer's span, and the middleware logs one warning saying so. Register it
//! first.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use taskmill_core::{
    async_trait, store::Enqueued, EnqueueNext, Headers, Middleware, Result, Task, TaskRecord,
};
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

/// The [`Middleware`] that carries OpenTelemetry trace context from an enqueue to the
/// task's runs; see the [crate docs](crate) for how to wire it.
///
/// It speaks W3C Trace Context (`traceparent`, `tracestate`) unless built
/// [`with_propagator`](Self::with_propagator). Cheap to clone; clones share the
/// once-only warning.
#[derive(Clone)]
pub struct TraceContext {
    propagator: Arc<dyn TextMapPropagator + Send + Sync>,
    /// Set once the warning about a run span that started too early has been logged, so a
    /// misconfigured subscriber costs one line, not one per run.
    warned_started: Arc<AtomicBool>,
}

impl TraceContext {
    /// Propagates W3C Trace Context (`traceparent` and `tracestate` headers).
    pub fn new() -> Self {
        Self::with_propagator(TraceContextPropagator::new())
    }

    /// Propagates with `propagator` instead: a
    /// `TextMapCompositePropagator` that adds baggage, or a vendor's format.
    pub fn with_propagator(propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        TraceContext {
            propagator: Arc::new(propagator),
            warned_started: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Writes the span context of `cx` into `headers` and returns whether it did.
    ///
    /// Headers that already hold a valid trace context (as the propagator reads them) are
    /// left as they are, so a task that carries on another trace keeps it. Nothing is
    /// written when `cx` has no valid span, or when the fields would break the
    /// [limits of headers](taskmill_core::MAX_HEADERS_BYTES) (then `headers` is unchanged
    /// and a warning is logged: the task is still worth enqueueing without its trace).
    pub fn inject(&self, cx: &Context, headers: &mut Headers) -> bool {
        let fields = self.fields_of(cx);
        self.inject_fields(&fields, headers)
    }

    /// The trace context `headers` carry, or `None` when they carry none that is valid (no
    /// header, or one that does not parse).
    pub fn extract(&self, headers: &Headers) -> Option<Context> {
        // An empty base, not `Context::current()`: when nothing parses the propagator
        // returns its base, and the current context is the run's own span.
        let cx = self
            .propagator
            .extract_with_context(&Context::new(), &HeadersExtractor(headers));
        cx.span().span_context().is_valid().then_some(cx)
    }

    /// Makes `span` a child of the trace context `headers` carry, and returns whether it
    /// did. It does not when the headers carry none, when `span` is not recorded by a
    /// tracing-opentelemetry layer, or when `span` has already started (see the
    /// [crate docs](crate#when-the-runs-span-gets-its-parent)); then it adds a link to
    /// that context instead, and logs a warning, once.
    pub fn set_parent(&self, span: &Span, headers: &Headers) -> bool {
        let Some(parent) = self.extract(headers) else {
            return false;
        };
        // A clone of a context is a few reference counts.
        match span.set_parent(parent.clone()) {
            Ok(()) => true,
            // No OpenTelemetry layer, or one that filters the run's span out: there is no
            // trace to continue, and nothing to tell.
            Err(SetParentError::LayerNotFound | SetParentError::SpanDisabled) => false,
            Err(SetParentError::AlreadyStarted) => {
                // A started span's parent is fixed, but it can still point at the enqueuer.
                span.add_link(parent.span().span_context().clone());
                if !self.warned_started.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "taskmill-otel could not continue a task's trace, only link to it: the \
                         run's span had already started (a middleware registered before \
                         TraceContext read its context); register TraceContext as the manager's \
                         first middleware (logged once)"
                    );
                }
                false
            }
        }
    }

    /// What the propagator writes for `cx`, with empty values left out (the W3C propagator
    /// writes an empty `tracestate` for a context without one).
    fn fields_of(&self, cx: &Context) -> Vec<(String, String)> {
        let mut fields = FieldsInjector(Vec::new());
        self.propagator.inject_context(cx, &mut fields);
        fields.0
    }

    fn inject_fields(&self, fields: &[(String, String)], headers: &mut Headers) -> bool {
        if fields.is_empty() || self.extract(headers).is_some() {
            return false;
        }
        // Into a copy, so that a field refused halfway leaves no partial context behind.
        let mut stamped = headers.clone();
        for (key, value) in fields {
            if let Err(error) = stamped.insert(key.as_str(), value.as_str()) {
                tracing::warn!(%error, "taskmill-otel left a task's trace context out");
                return false;
            }
        }
        *headers = stamped;
        true
    }
}

impl Default for TraceContext {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("propagator", &self.propagator)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Middleware for TraceContext {
    /// Called with the run's span before the manager enters it, the one moment its parent
    /// can still be set.
    fn run_span(&self, task: &TaskRecord, span: &Span) {
        self.set_parent(span, &task.headers);
    }

    /// Runs inside the `taskmill.enqueue` span: its context, one per batch, becomes the
    /// parent of every task's runs.
    async fn enqueue(&self, mut tasks: Vec<Task>, next: EnqueueNext<'_>) -> Result<Vec<Enqueued>> {
        let fields = self.fields_of(&Span::current().context());
        if !fields.is_empty() {
            for task in &mut tasks {
                self.inject_fields(&fields, task.headers_mut());
            }
        }
        next.enqueue(tasks).await
    }
}

/// Collects what a propagator writes.
struct FieldsInjector(Vec<(String, String)>);

impl Injector for FieldsInjector {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}

/// Lets a propagator read a task's headers.
struct HeadersExtractor<'a>(&'a Headers);

impl Extractor for HeadersExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(key, _)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn remote(trace: u128, span: u64, state: TraceState) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            true,
            state,
        ))
    }

    #[test]
    fn inject_writes_traceparent_and_leaves_out_an_empty_tracestate() {
        let mut headers = Headers::new();
        assert!(TraceContext::new().inject(&remote(1, 2, TraceState::NONE), &mut headers));
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [(
                "traceparent",
                "00-00000000000000000000000000000001-0000000000000002-01"
            )]
        );
    }

    #[test]
    fn inject_writes_tracestate_when_there_is_one() {
        let state = TraceState::from_key_value([("vendor", "x1")]).unwrap();
        let mut headers = Headers::new();
        assert!(TraceContext::new().inject(&remote(1, 2, state), &mut headers));
        assert_eq!(headers.get("tracestate"), Some("vendor=x1"));
    }

    #[test]
    fn inject_keeps_a_valid_trace_context_and_replaces_a_broken_one() {
        let tc = TraceContext::new();
        let mut headers = Headers::new();
        headers.insert("traceparent", TRACEPARENT).unwrap();
        assert!(!tc.inject(&remote(1, 2, TraceState::NONE), &mut headers));
        assert_eq!(headers.get("traceparent"), Some(TRACEPARENT));

        headers.insert("traceparent", "garbage").unwrap();
        assert!(tc.inject(&remote(1, 2, TraceState::NONE), &mut headers));
        assert_eq!(
            headers.get("traceparent"),
            Some("00-00000000000000000000000000000001-0000000000000002-01")
        );
    }

    #[test]
    fn inject_writes_nothing_without_a_valid_span() {
        let mut headers = Headers::new();
        assert!(!TraceContext::new().inject(&Context::new(), &mut headers));
        assert!(headers.is_empty());
    }

    #[test]
    fn inject_that_breaks_the_limits_leaves_the_headers_as_they_were() {
        let mut headers = Headers::new();
        for i in 0..taskmill_core::MAX_HEADERS {
            headers.insert(format!("h{i}"), "v").unwrap();
        }
        let before = headers.clone();
        assert!(!TraceContext::new().inject(&remote(1, 2, TraceState::NONE), &mut headers));
        assert_eq!(headers, before);
    }

    #[test]
    fn extract_reads_a_valid_traceparent_as_a_remote_parent() {
        let mut headers = Headers::new();
        headers.insert("traceparent", TRACEPARENT).unwrap();
        headers.insert("tracestate", "vendor=x1").unwrap();
        let cx = TraceContext::new()
            .extract(&headers)
            .expect("a valid context");
        let span = cx.span();
        let parent = span.span_context();
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
        assert_eq!(
            parent.span_id(),
            SpanId::from_hex("b7ad6b7169203331").unwrap()
        );
        assert!(parent.is_remote() && parent.is_sampled());
        assert_eq!(parent.trace_state().get("vendor"), Some("x1"));
    }

    #[test]
    fn extract_ignores_missing_and_malformed_headers() {
        let tc = TraceContext::new();
        assert!(tc.extract(&Headers::new()).is_none());
        for bad in [
            "garbage",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            let mut headers = Headers::new();
            headers.insert("traceparent", bad).unwrap();
            assert!(tc.extract(&headers).is_none(), "{bad:?} was read");
        }
    }

    #[test]
    fn set_parent_without_an_opentelemetry_layer_does_nothing() {
        let mut headers = Headers::new();
        headers.insert("traceparent", TRACEPARENT).unwrap();
        assert!(!TraceContext::new().set_parent(&Span::none(), &headers));
    }
}
