//! A GpuInstance's metadata as the operator reads it back, from the answers to its own writes and from
//! its watch: `PartialObjectMetadata` without `managedFields`.
//!
//! The API server sends `managedFields` with every object, and kube's `PartialObjectMeta` decodes them
//! whole: a tree of `serde_json::Value`s per field manager, for each of the two writes of every mirror
//! and for each watch event they cause, only to be dropped. [`MirrorMeta`] skips them while parsing,
//! and everything else the operator never reads (`creationTimestamp`, `generation`, `finalizers`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::core::ObjectMeta;
use serde::{Deserialize, Deserializer};

use ppio_gpu_core::api::GpuInstance;

/// A GpuInstance's name, namespace, UID, resourceVersion, labels, annotations and owners: see the
/// module documentation. An `Api<MirrorMeta>` asks the API server for metadata only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MirrorMeta {
    pub metadata: ObjectMeta,
}

impl Resource for MirrorMeta {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        GpuInstance::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        GpuInstance::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        GpuInstance::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        GpuInstance::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn metadata_api() -> bool {
        true
    }
}

impl<'de> Deserialize<'de> for MirrorMeta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Fields not named here (`managedFields` above all) are skipped as they are parsed.
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: WireMeta,
        }
        #[derive(Default, Deserialize)]
        #[serde(default, rename_all = "camelCase")]
        struct WireMeta {
            name: Option<String>,
            namespace: Option<String>,
            uid: Option<String>,
            resource_version: Option<String>,
            labels: Option<BTreeMap<String, String>>,
            annotations: Option<BTreeMap<String, String>>,
            owner_references: Option<Vec<OwnerReference>>,
        }
        let Wire { metadata: wire } = Wire::deserialize(deserializer)?;
        Ok(MirrorMeta {
            metadata: ObjectMeta {
                name: wire.name,
                namespace: wire.namespace,
                uid: wire.uid,
                resource_version: wire.resource_version,
                labels: wire.labels,
                annotations: wire.annotations,
                owner_references: wire.owner_references,
                ..ObjectMeta::default()
            },
        })
    }
}

impl From<ObjectMeta> for MirrorMeta {
    fn from(metadata: ObjectMeta) -> Self {
        MirrorMeta { metadata }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::PartialObjectMeta;

    /// What the API server answers to an apply of a mirror's status with `Accept: ...;as=PartialObjectMetadata`.
    const ANSWER: &str = r#"{
      "kind": "PartialObjectMetadata",
      "apiVersion": "meta.k8s.io/v1",
      "metadata": {
        "name": "gi-abc",
        "namespace": "ml",
        "uid": "7d1c",
        "resourceVersion": "1234",
        "generation": 1,
        "creationTimestamp": "2026-11-26T10:00:00Z",
        "labels": {"gpu.ppio.io/view": "team-a", "gpu.ppio.io/status": "running"},
        "annotations": {"gpu.ppio.io/fingerprint": "00000000000000aa"},
        "ownerReferences": [{"apiVersion": "gpu.ppio.io/v1alpha1", "kind": "GpuInstanceView",
          "name": "team-a", "uid": "v-1", "controller": true, "blockOwnerDeletion": true}],
        "managedFields": [
          {"manager": "ppio-gpu-operator", "operation": "Apply", "apiVersion": "gpu.ppio.io/v1alpha1",
           "time": "2026-11-26T10:00:00Z", "fieldsType": "FieldsV1",
           "fieldsV1": {"f:metadata": {"f:labels": {"f:gpu.ppio.io/view": {}}}, "f:spec": {"f:id": {}}}},
          {"manager": "ppio-gpu-operator", "operation": "Apply", "apiVersion": "gpu.ppio.io/v1alpha1",
           "time": "2026-11-26T10:00:00Z", "fieldsType": "FieldsV1", "subresource": "status",
           "fieldsV1": {"f:status": {"f:state": {}}}}
        ]
      }
    }"#;

    #[test]
    fn reads_what_the_operator_uses_and_skips_managed_fields() {
        let lean: MirrorMeta = serde_json::from_str(ANSWER).unwrap();
        let full: PartialObjectMeta<GpuInstance> = serde_json::from_str(ANSWER).unwrap();
        assert!(full.metadata.managed_fields.is_some());
        assert_eq!(
            lean.metadata,
            ObjectMeta {
                generation: None,
                creation_timestamp: None,
                managed_fields: None,
                ..full.metadata
            }
        );
    }

    #[test]
    fn asks_for_metadata_only_at_the_url_of_gpuinstances() {
        assert!(MirrorMeta::metadata_api());
        assert_eq!(
            MirrorMeta::url_path(&(), Some("ml")),
            GpuInstance::url_path(&(), Some("ml"))
        );
    }
}
