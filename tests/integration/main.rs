//! Integration tests, run against a real kube-apiserver (see `ppio_test_support::control_plane`).
//!
//! They live in one test binary so that one control plane serves the whole run.

mod admission;
mod chart;
mod cost;
mod election;
mod engine;
mod freshness;
mod harness;
mod hostile;
mod interrupted;
mod lifecycle;
mod metrics;
mod mirroring;
mod observability;
mod operations;
mod ownership;
mod removals;
mod services;
mod throttling;
mod unreadable_views;

/// The operator binary of this build, for the tests that run it as a process.
fn operator_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_ppio-gpu-operator"))
}
