//! The dashboard mounted in an application, with a manager keeping it busy.
//!
//! `cargo run -p taskmill-web --example demo`, then open http://127.0.0.1:3000/admin/tasks.
//! Set `DEMO_ADDR` to listen elsewhere and `DEMO_TOKEN` to require a token. Three topics
//! receive tasks continuously; some fail and retry, some end in the dead queue.

use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Manager, Store, StoreExt, Task, TaskContext, TaskError, Timestamp};
use taskmill_memory::MemoryStore;
use taskmill_web::DashboardOptions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let manager = Manager::builder_shared(store.clone())
        .concurrency(8)
        .default_retries(2)
        .build();
    manager.register("emails", |ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(40)).await;
        if ctx.id().get() % 23 == 0 && ctx.attempt() == 1 {
            return Err(TaskError::msg("SMTP server said 421: try again later"));
        }
        Ok(())
    })?;
    manager.register("thumbnails", |ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(120)).await;
        if ctx.id().get() % 17 == 0 {
            return Err(TaskError::permanent(TaskError::msg(
                "image decoder: unexpected end of file",
            )));
        }
        Ok(())
    })?;
    manager.register("reports", |_ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok::<(), TaskError>(())
    })?;

    // Some tasks already dead, one of them carrying markup that must show as text.
    let opts = EnqueueOptions::new(Timestamp::now());
    store
        .enqueue_one(
            Task::new(
                "webhooks",
                &json!({"url": "https://example.com/hook", "note": "<script>alert(1)</script>"}),
            )?,
            &opts,
        )
        .await?;
    store.set_paused("webhooks", true).await?;
    manager.start().await?;

    let producer = manager.clone();
    tokio::spawn(async move {
        for n in 0u64.. {
            let mut tasks = vec![Task::new(
                "emails",
                &json!({"to": format!("user{n}@example.com"), "template": "welcome"}),
            )];
            if n % 3 == 0 {
                tasks.push(Task::new(
                    "thumbnails",
                    &json!({"image": format!("uploads/{n}.jpg"), "sizes": [64, 256, 1024]}),
                ));
            }
            if n % 10 == 0 {
                tasks.push(Task::new(
                    "reports",
                    &json!({"month": "2026-05", "customer": n}),
                ));
            }
            let tasks: Result<Vec<_>, _> = tasks.into_iter().collect();
            if producer
                .enqueue_batch(tasks.expect("valid tasks"))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50 + (n % 7) * 20)).await;
        }
    });

    let mut options = DashboardOptions::default().title("Acme shop");
    if let Ok(token) = std::env::var("DEMO_TOKEN") {
        options = options.token(token);
    }
    let app = Router::new()
        .route(
            "/",
            get(|| async { "The shop. Its task dashboard is at /admin/tasks." }),
        )
        .nest("/admin/tasks", taskmill_web::router(store, options));

    let addr = std::env::var("DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("dashboard at http://{}/admin/tasks", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
