//! With tracing-opentelemetry's default context activation the run's span has started by
//! the time the middleware sees the task, so its parent can no longer be set: the runs go
//! on in traces of their own with a link to the enqueue's span, and the middleware says so
//! once (see the crate docs).

mod common;

use common::{completed, ids, otel_with_context_activation};
use opentelemetry::trace::SpanId;
use taskmill_core::{Client, Manager, Task, TaskContext, TaskError};
use taskmill_memory::MemoryStore;
use taskmill_otel::TraceContext;
use tracing::Instrument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_complete_linked_to_the_enqueue_and_the_middleware_warns_once() {
    let otel = otel_with_context_activation();
    let store = MemoryStore::new();
    let manager = Manager::builder(store.clone())
        .middleware(TraceContext::new())
        .build();
    manager
        .register("emails", |_ctx: TaskContext| async {
            Ok::<(), TaskError>(())
        })
        .unwrap();
    manager.start().await.unwrap();
    let client = Client::new(store).middleware(TraceContext::new());
    let tasks = (0..3).map(|i| Task::new("emails", &i).unwrap()).collect();
    let enqueued = client
        .enqueue_batch(tasks)
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    for task in &enqueued {
        let info = completed(&client, task.id()).await;
        assert!(info.record.headers.get("traceparent").is_some());
    }

    let spans = otel
        .spans_when(|s| s.iter().filter(|s| s.name == "emails process").count() == 3)
        .await;
    let publish = spans.iter().find(|s| s.name == "emails publish").unwrap();
    for run in spans.iter().filter(|s| s.name == "emails process") {
        assert_eq!(run.parent_span_id, SpanId::INVALID);
        assert_ne!(ids(run).0, ids(publish).0);
        let links: Vec<_> = run
            .links
            .iter()
            .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
            .collect();
        assert_eq!(links, [ids(publish)], "a link to the enqueue span");
    }
    assert_eq!(otel.warnings(), 1, "one warning, not one per run");
    manager.close().await.unwrap();
}
