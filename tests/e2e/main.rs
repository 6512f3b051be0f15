//! End-to-end tests: the Helm chart installed as a user installs it, on a real one-node cluster.
//!
//! `make e2e` builds the node (`hack/node/up.sh`: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kubelet and kube-proxy of the pinned Kubernetes release, with containerd and runc)
//! and the images (`make image`: the operator's, from the Dockerfile, and the pause image), starts the
//! node in a network namespace of its own and runs this test binary inside it. Each test installs the
//! chart with `helm install` and the defaults, plus only what the local cluster needs (the local
//! image, `image.pullPolicy=Never`, the PPIO simulator's endpoint allowed), and uninstalls it at the
//! end. The PPIO simulator runs in this process, on the node's address.
//!
//! Outside the node these tests fail at once: they need its `KUBECONFIG` and its address. What they
//! share with `benches/pod.rs` (the node's clients, the simulator, a release, a tenant) is
//! `ppio_test_support::node`.

mod container;
mod disruption;
mod failover;
mod install;
mod network_policy;
mod services;
mod upgrade;
