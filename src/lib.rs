//! ppio-gpu-operator mirrors PPIO GPU cloud instances into a Kubernetes cluster: the operator
//! itself, the outer of three layers, each a crate:
//!
//! - `ppio` (`ppio/`): the PPIO GPU API v2 client and its model; no Kubernetes.
//! - [`ppio_gpu_core`] (`core/`): the pure core that decides: the API types, the mapping of a record
//!   to a `GpuInstance`, the planning of a sync and of Services, what instances cost; no Kubernetes
//!   client, no I/O.
//! - this crate: the shell that fetches and writes ([`controller`]) and the process around it
//!   ([`process`]: HTTP endpoints, metrics, logs, leader election, the bounded Kubernetes client).
//!
//! The path of one sync:
//!
//! ```text
//!  view event (watch)            mirrors' metadata (watch)
//!  controller::views             controller::cache
//!         │                             │ sync::listing::Mirrors
//!         ▼                             │
//!  controller::view_sync ◀─ prices ─ controller::prices (GET /gpus/v2/products, kept per key)
//!         │            ◀─ pages ─── ppio::Pager (GET /gpus/v2/instances, paging guards)
//!         │ each record, priced         │
//!         ▼                             ▼
//!  core: sync::listing::ListingPlanner ── sync::plan, mirror::* (names, labels, status, budget,
//!         │ creates, updates             fingerprint), sync::lifecycle, cost (each price)
//!         ▼
//!  controller::writes ──────────▶ GpuInstances (server-side apply)
//!         │ once the listing is complete
//!         ▼
//!  core: ListingPlanner::plan_removals ─▶ marks absent, deletes
//!         │
//!         ▼
//!  core: sync::view_status ─────▶ the view's status (server-side apply)
//! ```
//!
//! A listing that fails or stops half-way reaches neither the removals nor the summary: the view's
//! status says why, and what its pages listed stays written. The PPIO simulator that tests and the
//! local demo use is a crate of its own (`simulator/`): it never ships in the operator.

pub mod controller;
pub mod flags;
pub mod process;

/// Errors that stop a reconciliation before it could even report itself in the view's status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request the operator needs.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
}
