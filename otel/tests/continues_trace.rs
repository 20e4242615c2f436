//! A run continues the trace of the enqueue that made its task: enqueued by a separate
//! client inside a request's span, run by a manager, both with the middleware.

mod common;

use common::{completed, has_each, ids, one, otel, traceparent_of};
use opentelemetry::trace::{SpanId, SpanKind};
use taskmill_core::{Client, Manager, Task, TaskContext};
use taskmill_memory::MemoryStore;
use taskmill_otel::TraceContext;
use tracing::Instrument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_continues_the_trace_of_its_enqueue() {
    let otel = otel();
    let store = MemoryStore::new();
    let manager = Manager::builder(store.clone())
        .middleware(TraceContext::new())
        .build();
    for topic in ["emails", "receipts"] {
        manager
            .register(topic, move |_ctx: TaskContext| async move {
                // What the processor does, in a span of its own.
                async { Ok::<(), taskmill_core::TaskError>(()) }
                    .instrument(tracing::info_span!("work", topic))
                    .await
            })
            .unwrap();
    }
    manager.start().await.unwrap();
    // A producer in another process would have only this: a client on the same store.
    let client = Client::new(store).middleware(TraceContext::new());

    let request = tracing::info_span!("request");
    let id = client
        .enqueue(Task::new("emails", &"ada@example.com").unwrap())
        .instrument(request.clone())
        .await
        .unwrap()
        .id();
    // One enqueue of two topics: one span, the parent of both runs.
    let batch = client
        .enqueue_batch(vec![
            Task::new("emails", &"bob@example.com").unwrap(),
            Task::new("receipts", &7).unwrap(),
        ])
        .instrument(tracing::info_span!("batch request"))
        .await
        .unwrap();
    drop(request);
    let info = completed(&client, id).await;
    for enqueued in &batch {
        completed(&client, enqueued.id()).await;
    }

    let spans = otel
        .spans_when(|spans| {
            has_each(spans, &["request", "send emails", "batch request", "send"])
                && spans.iter().filter(|s| s.name == "process emails").count() == 2
                && spans.iter().filter(|s| s.name == "work").count() == 3
        })
        .await;
    let request = one(&spans, "request");
    let publish = one(&spans, "send emails");
    let runs: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "process emails")
        .collect();
    let run = runs
        .iter()
        .find(|s| s.span_context.trace_id() == request.span_context.trace_id())
        .expect("a run in the request's trace");

    // request → send emails (producer) → process emails (consumer) → work.
    assert_eq!(publish.parent_span_id, ids(request).1);
    assert_eq!(ids(publish).0, ids(request).0);
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(
        run.parent_span_id,
        ids(publish).1,
        "the run's parent is the enqueue span"
    );
    assert_eq!(
        ids(run).0,
        ids(publish).0,
        "the run is in the enqueuer's trace"
    );
    assert!(
        run.parent_span_is_remote,
        "the parent came from the task's headers"
    );
    assert_eq!(run.span_kind, SpanKind::Consumer);
    let work = spans
        .iter()
        .find(|s| s.name == "work" && s.parent_span_id == ids(run).1)
        .expect("the processor's span is a child of the run's span");
    assert_eq!(ids(work).0, ids(run).0);
    assert_eq!(
        info.record.headers.get("traceparent"),
        Some(traceparent_of(publish).as_str()),
        "the task carries the enqueue span's context"
    );
    assert_eq!(
        info.record.headers.get("tracestate"),
        None,
        "no empty tracestate"
    );

    // The batch: both runs, of two topics, are children of its one enqueue span.
    let batch_request = one(&spans, "batch request");
    let batch_publish = one(&spans, "send");
    assert_eq!(batch_publish.parent_span_id, ids(batch_request).1);
    let batch_runs: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == ids(batch_publish).1)
        .collect();
    let mut names: Vec<_> = batch_runs.iter().map(|s| &*s.name).collect();
    names.sort_unstable();
    assert_eq!(names, ["process emails", "process receipts"]);
    for run in batch_runs {
        assert_eq!(ids(run).0, ids(batch_request).0);
        assert_eq!(run.span_kind, SpanKind::Consumer);
    }
    assert!(runs.iter().all(|s| s.parent_span_id != SpanId::INVALID));

    assert_eq!(otel.warnings(), 0);
    manager.close().await.unwrap();
}
