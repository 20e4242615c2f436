//! Runs that have no trace to continue start their own, and a trace a task already
//! carries is kept. One manager per test; each test has its own topic, by which it finds
//! its spans among those of the others.

mod common;

use common::{completed, has_each, ids, one, otel};
use opentelemetry::trace::{SpanId, SpanKind};
use taskmill_core::{Client, Manager, Task, TaskContext, TaskError};
use taskmill_memory::MemoryStore;
use taskmill_otel::TraceContext;
use tracing::Instrument;

/// A started manager with the middleware, running `topic` with a processor that does
/// nothing, and a client on the same store (with the middleware when `traced`).
async fn setup(topic: &'static str, traced: bool) -> (Manager, Client) {
    otel();
    let store = MemoryStore::new();
    let manager = Manager::builder(store.clone())
        .middleware(TraceContext::new())
        .build();
    manager
        .register(topic, |_ctx: TaskContext| async { Ok::<(), TaskError>(()) })
        .unwrap();
    manager.start().await.unwrap();
    let client = Client::new(store);
    let client = if traced {
        client.middleware(TraceContext::new())
    } else {
        client
    };
    (manager, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_enqueued_without_the_middleware_runs_in_a_fresh_trace() {
    let (manager, client) = setup("plain", false).await;
    let id = client
        .enqueue(Task::new("plain", &1).unwrap())
        .instrument(tracing::info_span!("plain request"))
        .await
        .unwrap()
        .id();
    let info = completed(&client, id).await;
    assert!(info.record.headers.is_empty(), "{:?}", info.record.headers);

    let spans = otel()
        .spans_when(|s| has_each(s, &["plain request", "send plain", "process plain"]))
        .await;
    let (publish, run) = (one(&spans, "send plain"), one(&spans, "process plain"));
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(run.span_kind, SpanKind::Consumer);
    assert_eq!(run.parent_span_id, SpanId::INVALID, "the run is a root");
    assert_ne!(ids(run).0, ids(publish).0, "the run has a trace of its own");
    manager.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_traceparent_is_ignored() {
    let (manager, client) = setup("garbage", false).await;
    let task = Task::new("garbage", &1)
        .unwrap()
        .header("traceparent", "00-not-a-trace-01")
        .unwrap()
        .header("tracestate", "=")
        .unwrap();
    let id = client
        .enqueue(task)
        .instrument(tracing::info_span!("garbage request"))
        .await
        .unwrap()
        .id();
    // The run neither fails nor is retried over it.
    let info = completed(&client, id).await;
    assert_eq!(info.record.attempt, 1);

    let spans = otel()
        .spans_when(|s| has_each(s, &["send garbage", "process garbage"]))
        .await;
    let (publish, run) = (one(&spans, "send garbage"), one(&spans, "process garbage"));
    assert_eq!(run.parent_span_id, SpanId::INVALID, "the run is a root");
    assert!(run.span_context.is_valid());
    assert_ne!(ids(run).0, ids(publish).0);
    manager.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_carries_a_trace_keeps_it() {
    // A task handed on from another system's trace, enqueued through the middleware.
    const FOREIGN: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (manager, client) = setup("forwarded", true).await;
    let task = Task::new("forwarded", &1)
        .unwrap()
        .header("traceparent", FOREIGN)
        .unwrap();
    let id = client
        .enqueue(task)
        .instrument(tracing::info_span!("forwarded request"))
        .await
        .unwrap()
        .id();
    let info = completed(&client, id).await;
    assert_eq!(info.record.headers.get("traceparent"), Some(FOREIGN));

    let spans = otel()
        .spans_when(|s| has_each(s, &["send forwarded", "process forwarded"]))
        .await;
    let run = one(&spans, "process forwarded");
    assert_eq!(
        run.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(run.parent_span_id.to_string(), "b7ad6b7169203331");
    assert!(run.parent_span_is_remote);
    manager.close().await.unwrap();
}
