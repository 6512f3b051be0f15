//! ppio-gpu-operator mirrors PPIO GPU cloud instances into a Kubernetes cluster.
//!
//! A `GpuInstanceView` ([`api`]) names a PPIO account, filters and an interval. The crate has three
//! layers: a pure core that decides ([`sync`], with [`mirror`], the one mapping of a PPIO record to
//! a `GpuInstance`), a shell that fetches and writes ([`controller`], with the [`ppio`] client), and
//! the process around them ([`process`]: HTTP endpoints, metrics, logs, leader election, backoff).
//! The path of one sync:
//!
//! ```text
//!  view event (watch)            mirrors' metadata (watch)
//!  controller::views             controller::cache
//!         │                             │ Observed
//!         ▼                             │
//!  controller::sync ◀── pages ── ppio::Pager (GET /gpus/v2/instances, paging guards)
//!         │                             │
//!         │ each record                 │
//!         ▼                             ▼
//!  sync::plan::plan_instance ── mirror::* (names, labels, status, budget, fingerprint)
//!         │ creates, updates
//!         ▼
//!  controller::writes ──────────▶ GpuInstances (server-side apply)
//!         │ once the listing is complete
//!         ▼
//!  sync::removals::plan_removals ─▶ marks absent, deletes
//!         │
//!         ▼
//!  sync::view_status ───────────▶ the view's status (server-side apply)
//! ```
//!
//! A listing that fails or stops half-way reaches neither the removals nor the summary: the view's
//! status says why, and what its pages listed stays written. [`text`] holds the one rule for text
//! from outside. The PPIO simulator that tests and the local demo use is a crate of its own
//! (`simulator/`): it never ships in the operator.

/// The operator's name, wherever it names itself: the field manager of its writes (its elector's
/// too), the `app.kubernetes.io/managed-by` value of its mirrors, the controller of its Events, and
/// the default name of its Lease.
pub const OPERATOR_NAME: &str = "ppio-gpu-operator";

pub mod api;
pub mod controller;
pub mod mirror;
pub mod ppio;
pub mod process;
pub mod services;
pub mod sync;
pub mod text;

/// Errors that stop a reconciliation before it could even report itself in the view's status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request the operator needs.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
}
