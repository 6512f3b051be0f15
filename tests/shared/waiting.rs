//! Waiting for a condition in tests, shared by the integration and end-to-end tests (each includes
//! this file as a module): where no watch says when a state is reached (a ClusterIP that answers, a
//! kubelet that restarted a container), the state is looked at again until it holds or time is up.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a state is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Looks at `check` until it gives a value and returns it; fails the test after `timeout`, saying
/// `what` was awaited. No one look may hang past the deadline (a request to a restarting API
/// server can), though each gets at least a second.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        if let Ok(Some(value)) = tokio::time::timeout(left, check()).await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
