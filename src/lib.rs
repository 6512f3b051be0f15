//! ppio-gpu-operator mirrors PPIO GPU cloud instances into a Kubernetes cluster.

pub mod api;
pub mod ppio;
pub mod simulator;
