//! The operator's HTTP endpoints: `/healthz` (the process serves), `/readyz` (leadership is known and,
//! on the leader, the watches have listed everything) and `/metrics` (Prometheus text format), which
//! [`metrics_auth`] may put behind the API server's authentication and authorization.

pub mod metrics_auth;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::process::metrics::Metrics;
use metrics_auth::MetricsAuth;

/// What `/readyz` reports, updated by leader election and the controller.
#[derive(Debug, Default)]
pub struct Health {
    leadership_known: AtomicBool,
    leading: AtomicBool,
    watches_pending: AtomicUsize,
    watches_started: AtomicBool,
}

impl Health {
    /// Leader election has an answer (or is off): this replica knows whether it leads.
    pub fn set_leadership(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        self.leadership_known.store(true, Ordering::SeqCst);
    }

    /// The controller starts `count` watches; it is ready once each reported its first full list.
    pub fn watches_starting(&self, count: usize) {
        self.watches_pending.store(count, Ordering::SeqCst);
        self.watches_started.store(true, Ordering::SeqCst);
    }

    /// One watch has listed everything.
    pub fn watch_synced(&self) {
        let _ = self
            .watches_pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.leadership_known.load(Ordering::SeqCst) {
            return Err("leadership is not known yet");
        }
        if !self.leading.load(Ordering::SeqCst) {
            // A standby replica is ready: it serves metrics and takes over when the leader goes.
            return Ok(());
        }
        if !self.watches_started.load(Ordering::SeqCst)
            || self.watches_pending.load(Ordering::SeqCst) > 0
        {
            return Err("the watches have not listed every GpuInstanceView yet");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Metrics,
    metrics_auth: Option<Arc<MetricsAuth>>,
}

/// The router of the operator's endpoints. With `metrics_auth`, `/metrics` answers only bearer tokens
/// it allows; the probes stay open either way.
pub fn router(
    health: Arc<Health>,
    metrics: Metrics,
    metrics_auth: Option<Arc<MetricsAuth>>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(metrics_auth::METRICS_PATH, get(metrics_text))
        .with_state(AppState {
            health,
            metrics,
            metrics_auth,
        })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &state.metrics_auth
        && let Err(refusal) = auth.check(&headers).await
    {
        return refusal.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Metrics,
    metrics_auth: Option<Arc<MetricsAuth>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health, metrics, metrics_auth))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use futures::future::BoxFuture;
    use tower::ServiceExt;

    use super::metrics_auth::{ReviewError, Reviewer, Verdict};
    use super::*;

    /// Allows the token `reader` only.
    struct OneReader;

    impl Reviewer for OneReader {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, ReviewError>> {
            Box::pin(async move {
                Ok(match token {
                    "reader" => Verdict::Allowed,
                    "stranger" => Verdict::Forbidden,
                    _ => Verdict::Unauthenticated,
                })
            })
        }
    }

    async fn status_of(router: &Router, path: &str, token: Option<&str>) -> StatusCode {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Body::empty()).expect("request");
        router
            .clone()
            .oneshot(request)
            .await
            .expect("response")
            .status()
    }

    #[tokio::test]
    async fn with_metrics_auth_only_allowed_tokens_read_metrics_and_probes_stay_open() {
        let health = Arc::new(Health::default());
        health.set_leadership(false);
        let auth = Arc::new(MetricsAuth::with_reviewer(OneReader));
        let router = router(health, Metrics::new(), Some(auth));
        assert_eq!(
            status_of(&router, "/metrics", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(&router, "/metrics", Some("made-up")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(&router, "/metrics", Some("stranger")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_of(&router, "/metrics", Some("reader")).await,
            StatusCode::OK
        );
        assert_eq!(status_of(&router, "/healthz", None).await, StatusCode::OK);
        assert_eq!(status_of(&router, "/readyz", None).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn without_metrics_auth_metrics_are_open() {
        let router = router(Arc::new(Health::default()), Metrics::new(), None);
        assert_eq!(status_of(&router, "/metrics", None).await, StatusCode::OK);
    }

    #[test]
    fn a_leader_is_ready_only_after_its_watches_listed_everything() {
        let health = Health::default();
        assert!(health.readiness().is_err());
        health.set_leadership(true);
        assert!(health.readiness().is_err());
        health.watches_starting(2);
        health.watch_synced();
        assert!(health.readiness().is_err());
        health.watch_synced();
        assert!(health.readiness().is_ok());
    }

    #[test]
    fn a_standby_replica_is_ready_once_it_knows_it_does_not_lead() {
        let health = Health::default();
        health.set_leadership(false);
        assert!(health.readiness().is_ok());
    }
}
