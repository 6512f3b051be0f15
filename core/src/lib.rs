//! The pure core of ppio-gpu-operator: what a `GpuInstanceView` means and what a sync must do,
//! decided from what it is given (the view, the records a listing sent, what the mirrors' metadata
//! says, the time) with no Kubernetes client, no I/O and no async runtime. The operator fetches,
//! asks this crate, and carries out its answers.
//!
//! - [`api`]: the Kubernetes API, `GpuInstanceView` and `GpuInstance` (`crds/` is generated from it).
//! - [`mirror`]: the one mapping of a PPIO record to a `GpuInstance` (names, labels, status, budget,
//!   fingerprint).
//! - [`sync`]: the planning of a sync: which mirrors are created, updated, marked absent or
//!   deleted, the view's status, the Events and the fleet's counts.
//! - [`services`]: the planning of Services for remote instances and of their endpoints.
//! - [`cost`]: what an instance costs and what a view spends an hour, from PPIO's product list, in
//!   exact decimals; and an hourly budget to hold the spend against.
//!
//! The PPIO record itself comes from the `ppio` crate (its model, without the client).

/// The operator's name, wherever it names itself: the field manager of its writes (its elector's
/// too), the `app.kubernetes.io/managed-by` value of its mirrors, the controller of its Events, and
/// the default name of its Lease.
pub const OPERATOR_NAME: &str = "ppio-gpu-operator";

pub mod api;
pub mod cost;
pub mod mirror;
pub mod services;
pub mod sync;
