//! Waiting in tests: for an object's state or its deletion through a watch ([`await_object`],
//! [`await_absent`], over kube's `await_condition`), and, where no watch says when a state is
//! reached (a ClusterIP that answers, a kubelet that restarted a container), by looking again until
//! it holds or time is up ([`wait_for`]).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::wait::await_condition;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// How often [`wait_for`] looks at a state, and how long a watch that failed rests before it
/// starts again.
const POLL: Duration = Duration::from_millis(200);

/// Watches the object `name` until it exists and `done` holds for it, and returns it then; fails
/// the test after `timeout`, saying `what` was awaited. A watch that fails (an API server that
/// restarts, a dropped connection) is started again.
pub async fn await_object<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&K) -> bool + Send + Sync + 'static,
) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let done = Arc::new(done);
    let found = watch_until(api, name, what, timeout, move |object: Option<&K>| {
        object.is_some_and(|object| done(object))
    })
    .await;
    found.unwrap_or_else(|| panic!("{name} was not there when {what} held"))
}

/// Watches the object `name` until it is gone (or never was); fails the test after `timeout`,
/// saying `what` was awaited. A watch that fails is started again.
pub async fn await_absent<K>(api: Api<K>, name: &str, what: &str, timeout: Duration)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    watch_until(api, name, what, timeout, |object: Option<&K>| {
        object.is_none()
    })
    .await;
}

/// `await_condition` with `condition` until it holds (the object then, if any), started again
/// after an error, until `timeout`.
async fn watch_until<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Fn(Option<&K>) -> bool + Clone + Send + 'static,
) -> Option<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let watched = await_condition(api.clone(), name, condition.clone());
        match tokio::time::timeout(left, watched).await {
            Ok(Ok(object)) => return object,
            Ok(Err(e)) if Instant::now() < deadline => {
                last_error = Some(e);
                tokio::time::sleep(POLL).await;
            }
            Ok(Err(e)) => panic!("watching {name} while waiting for {what}: {e}"),
            Err(_) => match last_error {
                Some(e) => panic!(
                    "timed out after {timeout:?} waiting for {what}; the watch failed with {e}"
                ),
                None => panic!("timed out after {timeout:?} waiting for {what}"),
            },
        }
    }
}

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
