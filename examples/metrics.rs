//! Metrics: an axum app with its own route at `/` and taskmill's Prometheus metrics at
//! `/metrics`, next to a manager working through a stream of tasks (some failing and
//! retried, some dead, some scheduled, one topic paused).
//!
//! Run it with `cargo run --example metrics --features metrics` and scrape it with
//! `curl 127.0.0.1:3000/metrics` (or point Prometheus at it); `ADDR=127.0.0.1:9000` listens
//! elsewhere. With `-- --once` it scrapes itself once after a second, prints the
//! exposition and exits.

use axum::routing::get;
use axum::Router;
use std::time::Duration;
use taskmill::metrics::Metrics;
use taskmill::{Backoff, Client, Manager, Task, TaskContext, TaskError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let once = std::env::args().any(|a| a == "--once");

    let store = taskmill::open("memory://").await?;
    // One handle for both halves: store-wide figures at each scrape, and (as a run observer)
    // the durations of this process's runs.
    let metrics = Metrics::new(Client::shared(store.clone()));
    let manager = Manager::builder_shared(store.clone())
        .observer(metrics.clone())
        .backoff(Backoff::constant(Duration::from_millis(200)))
        .default_retries(2)
        .build();
    manager.register("emails", |ctx: TaskContext| async move {
        let n: u64 = ctx.args()?;
        tokio::time::sleep(Duration::from_millis(5 + n % 20)).await;
        match n % 10 {
            // Bounces once, then goes through.
            7 if ctx.attempt() == 1 => Err(TaskError::msg("mailbox busy")),
            // Never goes through: dead after its retries.
            9 => Err(TaskError::msg("no such mailbox")),
            _ => Ok(()),
        }
    })?;
    manager.register("reports", |_ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, TaskError>(())
    })?;
    manager.client().pause("reports").await?;
    manager.start().await?;

    // The application's work: an email every 50 ms, a report every second (waiting while
    // the topic is paused, which shows in its queue latency), one scheduled for later.
    let producer = manager.client().clone();
    producer
        .enqueue(Task::new("reports", &"monthly")?.delay(Duration::from_secs(3600)))
        .await?;
    tokio::spawn(async move {
        for n in 0u64.. {
            let mut batch = vec![Task::new("emails", &n)?];
            if n % 20 == 0 {
                batch.push(Task::new("reports", &n)?);
            }
            producer.enqueue_batch(batch).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, taskmill::Error>(())
    });

    // The user's own routes, and taskmill's next to them.
    let app = Router::new()
        .route(
            "/",
            get(|| async { "hello from the app; metrics at /metrics\n" }),
        )
        .merge(metrics.router());
    let addr = std::env::var("ADDR").unwrap_or_else(|_| {
        if once {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:3000"
        }
        .to_string()
    });
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("serving http://{local}/ and http://{local}/metrics");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    if once {
        tokio::time::sleep(Duration::from_secs(1)).await;
        print!("{}", get_text(local, "/metrics").await?);
    } else {
        tokio::signal::ctrl_c().await?;
    }
    server.abort();
    manager.close_with_timeout(Duration::from_secs(5)).await?;
    Ok(())
}

/// The body of `GET path` from `addr`, over a bare HTTP/1.0 connection.
async fn get_text(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(match response.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => response,
    })
}
