//! What every test binary here shares: a global tracing subscriber that exports to memory,
//! and waits on conditions with deadlines.
//!
//! Each file in tests/ is its own binary because tracing caches, per call site and process
//! wide, whether a subscriber is interested: one global subscriber per process keeps that
//! cache true. Tests in one binary tell their spans apart by topic.

#![allow(dead_code)]

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use taskmill_core::{Client, TaskId, TaskInfo, TaskStatus};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The provider and its exporter behind the global subscriber, and the warnings this
/// crate logged.
pub struct Otel {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    warnings: Arc<AtomicUsize>,
}

/// Installs the global subscriber (once per binary) with tracing-opentelemetry's default
/// layer, and returns what it exports to.
pub fn otel() -> &'static Otel {
    install(true)
}

/// Installs the global subscriber with context activation off (spans start when their
/// context is first needed, not when first entered).
pub fn otel_without_context_activation() -> &'static Otel {
    install(false)
}

fn install(context_activation: bool) -> &'static Otel {
    static OTEL: OnceLock<(bool, Otel)> = OnceLock::new();
    let (installed, otel) = OTEL.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("taskmill-otel-tests"))
            .with_context_activation(context_activation);
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(CountWarnings(warnings.clone()));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this binary");
        let otel = Otel {
            provider,
            exporter,
            warnings,
        };
        (context_activation, otel)
    });
    assert_eq!(*installed, context_activation, "one subscriber per binary");
    otel
}

/// Counts the warnings taskmill-otel logs.
struct CountWarnings(Arc<AtomicUsize>);

impl<S: Subscriber> Layer<S> for CountWarnings {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == Level::WARN && meta.target().starts_with("taskmill_otel") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Otel {
    /// How many warnings taskmill-otel has logged.
    pub fn warnings(&self) -> usize {
        self.warnings.load(Ordering::Relaxed)
    }

    /// The finished spans once `ready` holds of them, flushing the provider before each
    /// read; panics after [`DEADLINE`], listing what was exported.
    pub async fn spans_when(&self, ready: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
        let start = Instant::now();
        loop {
            self.provider
                .force_flush()
                .expect("flush the tracer provider");
            let spans = self
                .exporter
                .get_finished_spans()
                .expect("read the exporter");
            if ready(&spans) {
                return spans;
            }
            if start.elapsed() > DEADLINE {
                let names: Vec<_> = spans.iter().map(|s| &s.name).collect();
                panic!("the spans were not all exported within {DEADLINE:?}; got {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The one span named `name`; panics when there is not exactly one.
pub fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let mut named = spans.iter().filter(|s| s.name == name);
    let span = named
        .next()
        .unwrap_or_else(|| panic!("no span named {name:?}"));
    assert!(named.next().is_none(), "more than one span named {name:?}");
    span
}

/// Whether exactly one span is named each of `names`.
pub fn has_each(spans: &[SpanData], names: &[&str]) -> bool {
    names
        .iter()
        .all(|name| spans.iter().filter(|s| s.name == *name).count() == 1)
}

/// The span's trace id and span id.
pub fn ids(span: &SpanData) -> (TraceId, SpanId) {
    (span.span_context.trace_id(), span.span_context.span_id())
}

/// The W3C `traceparent` of a sampled span.
pub fn traceparent_of(span: &SpanData) -> String {
    let (trace, id) = ids(span);
    format!("00-{trace}-{id}-01")
}

/// Polls the task's status until it is COMPLETED; panics on another end or after
/// [`DEADLINE`].
pub async fn completed(client: &Client, id: TaskId) -> TaskInfo {
    let start = Instant::now();
    loop {
        let info = client.status(id).await.expect("status");
        match info {
            Some(info) if info.status == TaskStatus::Completed => return info,
            Some(info) if matches!(info.status, TaskStatus::Dead | TaskStatus::Cancelled) => {
                panic!(
                    "task {id} ended {}: {:?}",
                    info.status.as_str(),
                    info.record.errors
                )
            }
            _ if start.elapsed() > DEADLINE => {
                panic!("task {id} did not complete within {DEADLINE:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
