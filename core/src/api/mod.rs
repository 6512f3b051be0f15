//! The operator's Kubernetes API (group `gpu.ppio.io`, version `v1alpha1`): the `GpuInstanceView`
//! users write and the `GpuInstance` mirrors the operator keeps. `crds/` is generated from these types
//! by `ppio-gpu-operator crd`.

pub mod condition;
pub mod cost;
pub mod instance;
pub mod stored_view;
pub mod validation;
pub mod view;

pub use condition::{Condition, ConditionStatus};
pub use instance::{GpuInstance, GpuInstanceSpec, GpuInstanceStatus};
pub use stored_view::StoredView;
pub use view::{GpuInstanceView, GpuInstanceViewSpec, GpuInstanceViewStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group.
pub const GROUP: &str = "gpu.ppio.io";

/// Every CRD of the operator, in install order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![GpuInstanceView::crd(), GpuInstance::crd()]
}

/// The CRDs as one multi-document YAML stream, as `ppio-gpu-operator crd` prints it and `crds/` holds it.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every property of every schema, with its path.
    fn properties<'a>(
        path: &str,
        schema: &'a serde_json::Value,
        out: &mut Vec<(String, &'a serde_json::Value)>,
    ) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in props {
                let child_path = format!("{path}.{name}");
                out.push((child_path.clone(), child));
                properties(&child_path, child, out);
            }
        }
        if let Some(items) = schema.get("items") {
            properties(&format!("{path}[]"), items, out);
        }
    }

    /// `kubectl explain` teaches the API only if every field says what it is.
    #[test]
    fn every_field_of_both_crds_has_a_description() {
        for crd in super::crds() {
            let crd = serde_json::to_value(&crd).expect("CRD JSON");
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let mut all = Vec::new();
            properties("", schema, &mut all);
            assert!(all.len() > 20, "the schema has properties");
            let undocumented: Vec<_> = all
                .iter()
                .filter(|(path, _)| !matches!(path.as_str(), ".apiVersion" | ".kind" | ".metadata"))
                .filter(|(_, s)| {
                    s.get("description")
                        .and_then(|d| d.as_str())
                        .is_none_or(str::is_empty)
                })
                .map(|(path, _)| path.clone())
                .collect();
            assert!(
                undocumented.is_empty(),
                "{}: fields without a description: {undocumented:?}",
                crd["metadata"]["name"]
            );
        }
    }

    /// `crds/` is generated: this fails when the Rust types changed and it was not regenerated.
    #[test]
    fn checked_in_crds_match_the_rust_types() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/gpu.ppio.io.yaml");
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = super::crds_yaml().expect("CRDs render");
        assert!(
            checked_in == generated,
            "{} is stale: regenerate it with `make crds`",
            path.display()
        );
    }
}
