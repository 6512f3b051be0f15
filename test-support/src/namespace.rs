//! A namespace of one test, deleted with everything in it when the test ends, and the machine's
//! `kubectl`, run as a user would against a test control plane.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::control_plane::{ControlPlane, shared};
use crate::objects::{self, rand_suffix};

/// A namespace of its own for one test, deleted (with everything in it) when the test ends.
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    /// An admin client of its control plane.
    pub client: Client,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` in the shared control plane.
    pub async fn new(prefix: &str) -> TestNamespace {
        TestNamespace::new_in(shared(), prefix).await
    }

    /// Creates `<prefix>-<random>` in `control_plane`.
    pub async fn new_in(control_plane: &ControlPlane, prefix: &str) -> TestNamespace {
        let client = control_plane.client().await;
        let name = format!("{prefix}-{}", rand_suffix());
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &objects::namespace(&name, &[("ppio.io/test", "true")]),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        TestNamespace {
            name,
            client,
            kubeconfig: control_plane.kubeconfig.clone(),
        }
    }

    /// A namespaced API for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Runs the machine's `kubectl` against this namespace's control plane, in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> String {
        kubectl(&self.kubeconfig, Some(&self.name), args)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // The test's runtime may be shutting down: delete from a runtime of our own.
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig).ok()?;
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .ok()?;
                let client = Client::try_from(config).ok()?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Runs the machine's `kubectl` with a kubeconfig, and returns its standard output; panics with its
/// standard error when it fails.
pub fn kubectl(kubeconfig: &Path, namespace: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new("kubectl");
    command.arg("--kubeconfig").arg(kubeconfig);
    if let Some(namespace) = namespace {
        command.arg("--namespace").arg(namespace);
    }
    let output = command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl (is it on PATH?): {e}"));
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The column headers of a table kubectl printed.
pub fn table_header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}
