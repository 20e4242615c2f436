//! Each run is traced in a `task` span, and each enqueue in a `taskmill.enqueue` span,
//! with the fields an OpenTelemetry exporter reads.
//!
//! In a test binary of its own: tracing caches per call site whether anyone is interested,
//! process-wide, so a thread-local subscriber is only reliable without other tests' threads
//! creating the same spans meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskmill_core::{Backoff, Manager, Store, Task, TaskContext, TaskError};
use taskmill_memory::MemoryStore;

/// Records the name and fields of every span taskmill opens.
struct SpanRecorder(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for SpanRecorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let name = span.metadata().name();
        let mut spans = self.0.lock().unwrap();
        let mut fields = Fields(format!("{name}: "));
        if name == "task" || name.starts_with("taskmill.") {
            span.record(&mut fields);
        } else {
            // Kept only to number the spans: not compared.
            fields.0 = String::from("(other)");
        }
        spans.push(fields.0);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        let entry = &mut spans[id.into_u64() as usize - 1];
        let mut fields = Fields(std::mem::take(entry));
        values.record(&mut fields);
        *entry = fields.0;
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Every run is traced in a `task` span carrying its id, topic and attempt, named and
/// kinded for OpenTelemetry; the enqueue in a producer span.
#[tokio::test(flavor = "current_thread")]
async fn each_run_has_a_task_span() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(SpanRecorder(spans.clone()));
    let store = MemoryStore::new();
    let manager = Manager::builder(store.clone())
        .backoff(Backoff::constant(Duration::ZERO))
        .stats_interval(None)
        .build();
    manager
        .register("mail", |ctx: TaskContext| async move {
            if ctx.attempt() == 1 {
                return Err(TaskError::msg("retry me"));
            }
            Ok(())
        })
        .unwrap();
    manager.start().await.unwrap();
    let id = manager
        .enqueue(Task::new("mail", &()).unwrap())
        .await
        .unwrap()
        .id();
    for _ in 0..2000 {
        if store
            .stats(&taskmill_core::store::StatsOptions::new(
                taskmill_core::Timestamp::now(),
            ))
            .await
            .unwrap()
            .total
            .counters
            .completed
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    manager.close().await.unwrap();
    let spans: Vec<String> = spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| *s != "(other)")
        .map(|s| s.trim_end().to_owned())
        .collect();
    let run = |attempt| {
        format!(
            "task: id={id} topic=mail attempt={attempt} otel.name=process mail \
             otel.kind=\"consumer\" messaging.system=\"taskmill\" \
             messaging.operation.type=\"process\""
        )
    };
    assert_eq!(
        spans,
        vec![
            "taskmill.enqueue: otel.kind=\"producer\" messaging.system=\"taskmill\" \
             messaging.operation.type=\"send\" messaging.batch.message_count=1 \
             otel.name=send mail messaging.destination.name=\"mail\""
                .to_owned(),
            run(1),
            run(2),
        ]
    );
}
