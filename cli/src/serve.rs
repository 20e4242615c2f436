//! `taskmill serve`: the dashboard (taskmill-web) and `/metrics` (taskmill-metrics) on one
//! HTTP/1 server, until Ctrl-C.
//!
//! Safe by default: it binds to loopback, refuses any other address unless a token is set,
//! and with a token every request needs it, `/metrics` included (as a bearer token, which
//! Prometheus sends with `authorization: {credentials: …}`).

use crate::admin::{interrupted, Failure, Outcome, StoreArg};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Args;
use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use taskmill::Client;
use taskmill_metrics::Metrics;
use taskmill_web::DashboardOptions;

/// How long open connections (a browser's live event stream) get to close after Ctrl-C
/// before the server drops them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `taskmill serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Where to listen. Any address but loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Every request must carry this token: `Authorization: Bearer TOKEN`, or the
    /// dashboard's sign-in form.
    #[arg(long, env = "TASKMILL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Hide and refuse every action that changes the store.
    #[arg(long)]
    read_only: bool,
    /// The dashboard's title.
    #[arg(long, default_value = "taskmill")]
    title: String,
    /// Flag a topic as having no worker once its oldest due task has waited this long
    /// with no task of it started (`90s`, `10m`; plain numbers are seconds).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::admin::format::parse_duration)]
    unworked_after: Duration,
}

impl ServeArgs {
    /// The token, if a non-empty one is set.
    fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.is_empty())
    }

    /// Refuses a non-loopback address without a token (before the store is opened).
    pub fn check(&self) -> Outcome {
        if !self.addr.ip().is_loopback() && self.token().is_none() {
            return Err(Failure::usage(format!(
                "refusing to serve on {} without a token: anyone who can reach it could \
                 retry, delete and pause tasks. Set --token or TASKMILL_TOKEN, or bind to \
                 loopback (--addr 127.0.0.1:8080)",
                self.addr
            )));
        }
        Ok(())
    }

    /// Serves until Ctrl-C or SIGTERM, then gives open connections [`SHUTDOWN_GRACE`].
    /// Prints `serving on http://ADDR/` (the bound address, port 0 resolved) once it
    /// listens.
    pub async fn run(self) -> Outcome {
        self.check()?;
        let store = self.store.open().await?;
        let mut options = DashboardOptions::default()
            .title(self.title.as_str())
            .read_only(self.read_only)
            .unworked_after(self.unworked_after);
        if let Some(token) = self.token() {
            options = options.token(token);
        }
        let metrics = Metrics::new(Client::shared(store.clone()));
        let mut metrics_router: Router = metrics.router();
        if let Some(token) = self.token() {
            let token: Arc<str> = token.into();
            metrics_router = metrics_router.layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let token = token.clone();
                    async move { require_bearer(&token, request, next).await }
                },
            ));
        }
        let app = Router::new()
            .merge(metrics_router)
            .merge(taskmill_web::router(store, options));

        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|e| Failure::failed(format!("cannot listen on {}: {e}", self.addr)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Failure::failed(format!("cannot read the bound address: {e}")))?;
        // Before saying it serves: whoever reads that line may interrupt at once.
        let interrupt = interrupted();
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "serving on http://{bound}/ (the dashboard; metrics at /metrics){}",
                if self.read_only { ", read-only" } else { "" }
            );
            let _ = out.flush();
        }

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        let mut server = std::pin::pin!(server);
        tokio::select! {
            ended = &mut server => return server_ended(ended),
            _ = interrupt => {}
        }
        eprintln!("taskmill serve: shutting down");
        let _ = stop.send(());
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(ended) => server_ended(ended),
            Err(_) => {
                eprintln!(
                    "taskmill serve: connections still open after {}s, closing them",
                    SHUTDOWN_GRACE.as_secs()
                );
                Ok(())
            }
        }
    }
}

fn server_ended(ended: Result<std::io::Result<()>, tokio::task::JoinError>) -> Outcome {
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::failed(format!("the server failed: {e}"))),
        Err(e) => Err(Failure::failed(format!("the server stopped: {e}"))),
    }
}

/// Lets a request through when it carries `Authorization: Bearer TOKEN`; 401 otherwise.
async fn require_bearer(token: &str, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.trim().as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is required: send Authorization: Bearer TOKEN\n",
        )
            .into_response(),
    }
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{same, ServeArgs};
    use clap::Parser;
    use std::time::Duration;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn the_no_worker_threshold_defaults_to_a_minute_and_takes_a_duration() {
        let default = Command::try_parse_from(["serve"]).unwrap().serve;
        assert_eq!(default.unworked_after, Duration::from_secs(60));
        let set = Command::try_parse_from(["serve", "--unworked-after", "5m"]).unwrap();
        assert_eq!(set.serve.unworked_after, Duration::from_secs(300));
        assert!(Command::try_parse_from(["serve", "--unworked-after", "soon"]).is_err());
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
