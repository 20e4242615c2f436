//! Prometheus metrics for taskmill: what a production team scrapes and alerts on.
//!
//! One [`Metrics`] handle does both halves:
//!
//! - **Store-wide figures**, read from [`Client::stats`] at each scrape: the transition
//!   counters per topic (`taskmill_tasks_completed_total{topic}`, …), the queue sizes by
//!   state (`taskmill_queue_size{topic,queue}`), the queue latency (the age of the oldest
//!   due task, `taskmill_queue_latency_seconds{topic}`) and whether a topic is paused. The
//!   store keeps these for every process sharing it, so every process reports the same
//!   figures, and one that runs no processors (`taskmill serve`, a web server that only
//!   enqueues) exposes the whole system. Aggregate them with `max` or by scraping one
//!   process, not with `sum` across processes.
//! - **Per-process figures**, from a [`RunObserver`](taskmill_core::RunObserver) of every
//!   run of the manager it is given to: a histogram of run durations by topic and outcome
//!   (`taskmill_run_duration_seconds{topic,outcome}`) and the runs in progress in this
//!   process (`taskmill_runs_in_progress{topic}`). These are this process's own: `sum`
//!   them across processes.
//!
//! The [README](https://github.com/taskmill/taskmill/blob/main/metrics/README.md) lists
//! every metric with its labels.
//!
//! ```
//! use taskmill_core::{Client, Manager};
//! use taskmill_metrics::Metrics;
//!
//! # async fn demo(store: std::sync::Arc<dyn taskmill_core::Store>) -> taskmill_core::Result<()> {
//! let metrics = Metrics::new(Client::shared(store.clone()));
//! let manager = Manager::builder_shared(store).observer(metrics.clone()).build();
//! // … register processors, start the manager; then at each scrape:
//! let text = metrics.render().await?; // OpenMetrics text, served as CONTENT_TYPE
//! # let _ = (manager, text); Ok(()) }
//! ```
//!
//! With the `axum` feature, [`Metrics::router`] is a router answering `GET /metrics` that
//! any axum 0.8 app merges next to its own routes; [`Metrics::response`] is the same
//! answer for a handler of your own. A store error at scrape time answers `503 Service
//! Unavailable` with the error as text, so Prometheus marks the target down for that
//! scrape (`up == 0`) instead of recording stale or partial figures.
//!
//! # Why `prometheus-client`, not `metrics` with its Prometheus exporter
//!
//! The `metrics` facade records into one process-wide recorder installed once; its
//! Prometheus exporter then owns the rendering, and what it renders is what was recorded
//! through macros. Half of what taskmill exposes is not recorded in this process at all:
//! it is read from the store at each scrape, and a facade built for pushing values has no
//! place for a scrape-time read other than mirroring the store into gauges on a timer
//! (stale between ticks, and a second, racing copy of figures the store already holds).
//! [`prometheus-client`](prometheus_client), the Prometheus project's own Rust client, has
//! no global registry (a library must not install one behind the application's back; two
//! [`Metrics`] on two stores in one process just work), renders OpenMetrics text, and has
//! [`Collector`](prometheus_client::collector::Collector)s, which encode whatever they are
//! given at scrape time: the store's snapshot here. It is also lighter: no exporter, HTTP
//! server or upkeep thread to configure or to keep out of the way.
#![warn(missing_docs)]

mod process;
mod scrape;
#[cfg(feature = "axum")]
mod serve;

use process::ProcessMetrics;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;
use taskmill_core::{Client, Clock, Result};

/// The content type of [`Metrics::render`]'s text: OpenMetrics 1.0, which Prometheus
/// negotiates and parses (as do the Grafana agent, VictoriaMetrics and OpenTelemetry's
/// Prometheus receiver).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The upper bounds (in seconds) of the run-duration histogram's buckets unless
/// [`MetricsBuilder::buckets`] says otherwise: 1 ms to 10 minutes, about ×2.5 apart, for
/// tasks from a cache refresh to a report.
pub const DEFAULT_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
    600.0,
];

/// Taskmill's metrics: a scrape-time reader of a store's statistics and, given to a
/// manager as an [observer](taskmill_core::ManagerBuilder::observer), the recorder of
/// its runs. See the [crate docs](crate).
///
/// Cheap to clone: clones share their figures, so the clone given to the manager and the
/// one serving scrapes report the same runs.
#[derive(Clone)]
pub struct Metrics {
    client: Client,
    clock: Clock,
    process: Arc<ProcessMetrics>,
}

impl Metrics {
    /// Metrics of the store `client` is on, with the system clock and
    /// [`DEFAULT_BUCKETS`].
    pub fn new(client: Client) -> Self {
        Self::builder(client).build()
    }

    /// Starts a [`Metrics`] with other settings.
    pub fn builder(client: Client) -> MetricsBuilder {
        MetricsBuilder {
            client,
            clock: Clock::system(),
            buckets: DEFAULT_BUCKETS.to_vec(),
        }
    }

    /// The client the store-wide figures are read through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The exposition, in OpenMetrics text ([`CONTENT_TYPE`]): the store's statistics read
    /// now, then this process's run figures.
    ///
    /// Fails with the store's error when its statistics cannot be read; nothing is
    /// rendered then, so a scrape never shows a partial picture.
    pub async fn render(&self) -> Result<String> {
        let stats = self.client.stats().await?;
        let now = self.clock.now();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape::StoreFigures::new(stats, now)));
        registry.register_collector(Box::new(self.process.clone()));
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail, and the collectors return no errors of their
        // own; a formatting error here would be a bug in the encoder.
        prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|_| {
            taskmill_core::Error::storage("the metrics could not be encoded as text")
        })?;
        Ok(text)
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("client", &self.client)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`Metrics`], from [`Metrics::builder`].
#[derive(Debug)]
pub struct MetricsBuilder {
    client: Client,
    clock: Clock,
    buckets: Vec<f64>,
}

impl MetricsBuilder {
    /// Reads "now" for the queue latency from `clock` (default [`Clock::system`]); give it
    /// the manager's clock when the manager has another.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The upper bounds, in seconds, of the run-duration histogram's buckets (a `+Inf`
    /// bucket is always added; bounds that are not finite are dropped).
    pub fn buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        let mut buckets: Vec<f64> = buckets.into_iter().filter(|b| b.is_finite()).collect();
        buckets.sort_by(f64::total_cmp);
        buckets.dedup();
        self.buckets = buckets;
        self
    }

    /// The [`Metrics`].
    pub fn build(self) -> Metrics {
        Metrics {
            client: self.client,
            clock: self.clock,
            process: Arc::new(ProcessMetrics::new(self.buckets)),
        }
    }
}
