//! The parts of the operator process around the controller: its life from start to stop
//! ([`lifecycle`]), its HTTP endpoints ([`http`]), its metrics ([`metrics`]), its logs ([`telemetry`]),
//! leader election ([`leadership`]), its bounded Kubernetes client ([`kube_client`]), and the rule
//! for waiting after failures and spreading waits ([`backoff`]).

pub mod backoff;
pub mod http;
pub mod kube_client;
pub mod leadership;
pub mod lifecycle;
pub mod metrics;
pub mod telemetry;
