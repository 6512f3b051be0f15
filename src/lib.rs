//! ppio-gpu-operator mirrors PPIO GPU cloud instances into a Kubernetes cluster.
//!
//! A `GpuInstanceView` ([`api`]) names a PPIO account, filters and an interval; the [`controller`]
//! lists the matching instances with the [`ppio`] client, decides what to write with [`plan`] (using
//! [`mirror`] to turn each instance into a `GpuInstance`), and writes it with server-side apply.
//! The PPIO simulator that tests and the local demo use is a crate of its own (`simulator/`): it never
//! ships in the operator.

/// The operator's name, wherever it names itself: the field manager of its writes (its elector's
/// too), the `app.kubernetes.io/managed-by` value of its mirrors, the controller of its Events, and
/// the default name of its Lease.
pub const OPERATOR_NAME: &str = "ppio-gpu-operator";

pub mod api;
pub mod backoff;
pub mod controller;
pub mod counts;
pub mod expiry;
pub mod fleet;
pub mod http;
pub mod leadership;
pub mod lifecycle;
pub mod metrics;
pub mod mirror;
pub mod plan;
pub mod ppio;
pub mod status;
pub mod telemetry;
pub mod text;

/// Errors that stop a reconciliation before it could even report itself in the view's status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request the operator needs.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
}
