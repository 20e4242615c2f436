//! Which thread entered which `tracing` span: for a test that checks a span follows the
//! work onto another thread (a store's connection or writer thread).

use crate::wait::{log, Log};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Records, while it lives, every entry into a span made on this thread: the span's name
/// and the name of the thread that entered it, wherever that thread is.
///
/// The recording subscriber is this thread's default (not the global one), so tests
/// running in parallel do not see each other's spans. A span belongs to the subscriber it
/// was made with, so its entries on other threads are recorded too.
pub struct EnteredSpans {
    entered: Log<(String, String)>,
    _default: DefaultGuard,
}

impl std::fmt::Debug for EnteredSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnteredSpans")
            .field("entered", &self.entered)
            .finish_non_exhaustive()
    }
}

impl EnteredSpans {
    /// Starts recording on this thread.
    pub fn record() -> Self {
        let entered = log();
        let subscriber = tracing_subscriber::registry().with(Recorder(entered.clone()));
        EnteredSpans {
            entered,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Whether the thread named `thread` entered a span named `span`.
    pub fn contains(&self, span: &str, thread: &str) -> bool {
        let entered = self.entered.lock().unwrap_or_else(|e| e.into_inner());
        entered.iter().any(|(s, t)| s == span && t == thread)
    }
}

struct Recorder(Log<(String, String)>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Recorder {
    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let mut entered = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entered.push((span.name().to_owned(), thread));
    }
}
