//! Serving the exposition from an axum app (feature `axum`).

use crate::{Metrics, CONTENT_TYPE};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

impl Metrics {
    /// The answer to a scrape: `200` with the exposition ([`CONTENT_TYPE`]), or `503
    /// Service Unavailable` with the store's error as plain text when its statistics cannot
    /// be read. For a handler of your own:
    ///
    /// ```
    /// # use taskmill_metrics::Metrics;
    /// use axum::{extract::State, routing::get, Router};
    ///
    /// # fn app(metrics: Metrics) -> Router {
    /// Router::new()
    ///     .route("/internal/metrics", get(|State(m): State<Metrics>| async move { m.response().await }))
    ///     .with_state(metrics)
    /// # }
    /// ```
    pub async fn response(&self) -> Response {
        match self.render().await {
            Ok(text) => (
                [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
                text,
            )
                .into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "taskmill metrics: the store's statistics could not be read");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    )],
                    format!("taskmill metrics unavailable: the store's statistics could not be read: {e}\n"),
                )
                    .into_response()
            }
        }
    }

    /// A router answering `GET /metrics` with [`response`](Self::response), to
    /// [`merge`](Router::merge) into an app of any state:
    ///
    /// ```
    /// # use taskmill_metrics::Metrics;
    /// use axum::{routing::get, Router};
    ///
    /// # fn app(metrics: &Metrics) -> Router {
    /// Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .merge(metrics.router())
    /// # }
    /// ```
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.response().await }
            }),
        )
    }
}
