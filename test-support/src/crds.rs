//! Installing CustomResourceDefinitions on a test control plane: server-side apply, so it is
//! idempotent, then a watch until the API server says the CRD is Established.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};

/// Applies `crd` as field manager `manager` and waits, at most `timeout`, until it is Established.
pub async fn apply_crd(
    client: &Client,
    crd: &CustomResourceDefinition,
    manager: &str,
    timeout: Duration,
) -> Result<(), String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(crd),
    )
    .await
    .map_err(|e| format!("cannot install the CRD {name}: {e}"))?;
    let established = await_condition(crds, &name, conditions::is_crd_established());
    match tokio::time::timeout(timeout, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot watch the CRD {name}: {e}")),
        Err(_) => Err(format!(
            "the CRD {name} was not Established within {} s",
            timeout.as_secs()
        )),
    }
}

/// Applies the operator's CRDs as field manager `manager`, each Established within `timeout`.
pub async fn install_operator_crds(
    client: &Client,
    manager: &str,
    timeout: Duration,
) -> Result<(), String> {
    for crd in ppio_gpu_core::api::crds() {
        apply_crd(client, &crd, manager, timeout).await?;
    }
    Ok(())
}
