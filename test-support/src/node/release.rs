//! One release of the chart, installed with helm as users install it, and its pods.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use std::process::Command;

use super::pods::is_ready;
use super::{chart, helm, local_image, ppio, simulator_url};

/// One release of the chart, uninstalled (with its namespace) when dropped.
pub struct Release {
    /// The release's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl Release {
    /// `helm install NAME` into the namespace `e2e-NAME` with the defaults, the image `make image`
    /// built (never pulled) and the simulator allowed, plus `extra` helm arguments; waits until its
    /// pods are ready. A failed install is uninstalled too, so it cannot sync later tests' views.
    pub fn install(name: &str, extra: &[&str]) -> Release {
        ppio();
        let release = Release {
            name: name.to_owned(),
            namespace: format!("e2e-{name}"),
        };
        let (repository, tag) = local_image();
        let image = [
            format!("image.repository={repository}"),
            format!("image.tag={tag}"),
            "image.pullPolicy=Never".to_owned(),
            format!("allowedEndpoints={{{}}}", simulator_url()),
        ];
        let chart = chart();
        let mut args = vec![
            "install",
            name,
            chart.as_str(),
            "--namespace",
            release.namespace.as_str(),
            "--create-namespace",
            "--wait",
            "--timeout",
            "180s",
        ];
        for value in &image {
            args.extend(["--set", value.as_str()]);
        }
        args.extend_from_slice(extra);
        helm(&args);
        release
    }

    /// The release's pods, by name.
    pub async fn pods(&self, client: &Client) -> Vec<Pod> {
        pods_of_release(client, &self.namespace, &self.name)
            .await
            .expect("list the release's pods")
    }

    /// The label selector of everything the release made.
    pub fn selector(&self) -> String {
        release_selector(&self.name)
    }

    /// The release's pods that are Ready and not being deleted.
    pub async fn ready_pods(&self, client: &Client) -> Vec<Pod> {
        self.pods(client)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .collect()
    }

    /// The Lease's name, from the operator's arguments in the Deployment.
    pub async fn lease_name(&self, client: &Client) -> String {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        let deployment = deployments
            .list(
                &ListParams::default().labels(&format!("app.kubernetes.io/instance={}", self.name)),
            )
            .await
            .expect("list the release's Deployment")
            .items
            .into_iter()
            .next()
            .expect("the release has a Deployment");
        let args = deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.args)
            .unwrap_or_default();
        args.iter()
            .find_map(|a| a.strip_prefix("--lease-name="))
            .expect("the operator runs with --lease-name")
            .to_owned()
    }

    /// Who holds the release's Lease now, if anyone.
    pub async fn leader(&self, client: &Client) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let lease = leases
            .get_opt(&self.lease_name(client).await)
            .await
            .ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let helm_path = crate::paths::repository().join("target/tools/helm");
        let _ = Command::new(helm_path)
            .args([
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--wait",
                "--ignore-not-found",
            ])
            .output();
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .output();
    }
}

/// The label selector of everything the release `name` made.
fn release_selector(name: &str) -> String {
    format!("app.kubernetes.io/instance={name}")
}

/// The pods of the release `name` in `namespace`.
pub async fn pods_of_release(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<Pod>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&release_selector(name)))
        .await?;
    Ok(list.items)
}
