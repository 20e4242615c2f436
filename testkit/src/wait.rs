//! Waiting on conditions, and recording what a test observed.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(5);

/// Polls `condition` until it holds, failing the test with `what` after `limit`.
///
/// Time is tokio's, so under a paused clock the deadline is virtual too.
///
/// # Panics
/// When `condition` still does not hold after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A shared, growing list of what a test observed.
pub type Log<T> = Arc<Mutex<Vec<T>>>;

/// A new, empty log.
pub fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}
