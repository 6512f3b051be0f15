//! What the operator's tests and benchmarks share, one home for each: a dev-dependency of the
//! operator, never part of its binary.
//!
//! | module | holds | used by |
//! |---|---|---|
//! | [`control_plane`] | the test control plane (`tests/control-plane`): the one shared by a test run, or one of a test's own | integration tests, `benches/scale` |
//! | [`process`] | a child process that is stopped when dropped, and the line it prints when it serves | all of the below |
//! | [`operator`] | the operator's controller in the test's process, and its binary as a process | integration tests |
//! | [`fixture`] | what a mirroring test starts from: its namespace with the API key Secret, a PPIO simulator, the operator; its views | integration tests |
//! | [`namespace`] | a namespace of one test, deleted when it ends, and the machine's `kubectl` | integration tests |
//! | [`objects`] | namespaces, API key Secrets and views, the views built from the typed spec (a misspelt field does not compile) | every test and benchmark |
//! | [`records`] | PPIO records for the simulator: the example account, generated records with a status and ports | integration and end-to-end tests |
//! | [`crds`] | installing CRDs and awaiting them | integration tests, `benches/scale` |
//! | [`waiting`] | awaiting an object's state through a watch, or a state no watch reports | integration and end-to-end tests, `benches/pod.rs` |
//! | [`ports`] | free loopback ports | integration tests, `benches/scale` |
//! | [`paths`] | the repository, the target directory, the tools `make` builds (helm, promlint, promtool) | every test |
//! | [`node`] | the one-node cluster: its clients, the simulator on its address, a release of the chart, a tenant, a container read from the node | end-to-end tests, `benches/pod.rs` |
//!
//! Functions meant for tests panic with a message that says what failed; those the benchmarks use
//! where a failure must end the run cleanly (its processes stopped) return the message instead.

pub mod control_plane;
pub mod crds;
pub mod fixture;
pub mod namespace;
pub mod node;
pub mod objects;
pub mod operator;
pub mod paths;
pub mod ports;
pub mod process;
pub mod records;
pub mod waiting;

pub use control_plane::{ControlPlane, shared};
pub use namespace::{TestNamespace, kubectl, table_header};
pub use objects::rand_suffix;
pub use paths::{repository, target_dir, tool};
pub use waiting::{await_absent, await_object, wait_for};
