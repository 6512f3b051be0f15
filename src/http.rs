//! The operator's HTTP endpoints: `/healthz` (the process serves), `/readyz` (leadership is known and,
//! on the leader, the watches have listed everything) and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

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
}

/// The router of the operator's endpoints.
pub fn router(health: Arc<Health>, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
