//! With context activation off (spans start when their context is first needed) the runs
//! continue the enqueue's trace just as with the default layer: the middleware sets the
//! parent before the run's span is entered either way.

mod common;

use common::{completed, ids, otel_without_context_activation};
use taskmill_core::{Client, Manager, Task, TaskContext, TaskError};
use taskmill_memory::MemoryStore;
use taskmill_otel::TraceContext;
use tracing::Instrument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_context_activation_runs_continue_the_trace_too() {
    let otel = otel_without_context_activation();
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
        .spans_when(|s| s.iter().filter(|s| s.name == "process emails").count() == 3)
        .await;
    let publish = spans.iter().find(|s| s.name == "send emails").unwrap();
    for run in spans.iter().filter(|s| s.name == "process emails") {
        assert_eq!(
            run.parent_span_id,
            ids(publish).1,
            "the enqueue span is the parent"
        );
        assert_eq!(ids(run).0, ids(publish).0, "one trace");
        assert!(run.links.is_empty(), "a parent, not a link");
    }
    assert_eq!(otel.warnings(), 0);
    manager.close().await.unwrap();
}
