//! Integration tests, run against a real kube-apiserver (see `support::control_plane`).
//!
//! They live in one test binary so that one control plane serves the whole run.

mod chart;
mod election;
mod engine;
mod harness;
mod lifecycle;
mod metrics;
mod mirroring;
mod observability;
mod operations;
mod services;
mod support;
