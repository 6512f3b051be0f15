//! The Service and EndpointSlices of a [`DesiredService`] as Kubernetes objects, owned by their
//! mirror so that the garbage collector removes them with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort as KubeServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::plan::DesiredService;
use crate::api::GpuInstance;
use crate::mirror;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label that tells the EndpointSlice controllers a slice is someone else's to keep.
pub const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Its value on the operator's slices.
pub const SLICE_MANAGER: &str = "ppio-gpu-operator.gpu.ppio.io";
/// Annotation on a Service saying whether its endpoints are ready, and why.
pub const READINESS_ANNOTATION: &str = "gpu.ppio.io/readiness";
/// The mirror's labels its Service and EndpointSlices carry too.
const SHARED_LABELS: [&str; 5] = [
    mirror::MANAGED_BY_LABEL,
    mirror::VIEW_LABEL,
    mirror::INSTANCE_ID_LABEL,
    mirror::STATUS_LABEL,
    mirror::SHARD_LABEL,
];

/// The owner reference of a mirror's Service and EndpointSlices: the mirror, as controller.
pub fn owner(mirror_name: &str, mirror_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: GpuInstance::api_version(&()).into_owned(),
        kind: GpuInstance::kind(&()).into_owned(),
        name: mirror_name.to_owned(),
        uid: mirror_uid.to_owned(),
        controller: Some(true),
        // Not blocking: that would need `update` on gpuinstances/finalizers, and nothing waits for
        // a Service before a mirror goes.
        block_owner_deletion: None,
    }
}

/// Whether `meta` is of an object whose controller is the mirror with UID `mirror_uid`: the only
/// objects the operator overwrites or deletes for that mirror. Labels prove nothing (anyone can
/// copy them), nor does the mirror's name (an earlier mirror of that name is another owner).
pub fn controlled_by(meta: &ObjectMeta, mirror_uid: &str) -> bool {
    !mirror_uid.is_empty()
        && meta.owner_references.iter().flatten().any(|r| {
            r.controller == Some(true) && r.kind == GpuInstance::kind(&()) && r.uid == mirror_uid
        })
}

/// Whether the API server refused a write conditional on an object's UID because the name no
/// longer holds that object: 422 on `metadata.uid` (another object has the name: a UID cannot
/// change) or 409 (no object has it: an apply with a UID never creates one). Both as answered by
/// Kubernetes 1.30 and the newest (see `tests/integration/ownership.rs`).
pub fn not_that_object(refusal: &kube::core::Status) -> bool {
    refusal.code == 409
        || (refusal.code == 422
            && refusal
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.field == "metadata.uid")))
}

/// Who holds a name a mirror's Service or EndpointSlice needs, as read from the cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nothing: the operator may create it.
    Free,
    /// An object the mirror controls, with this UID: the operator may write it, on condition it is
    /// still that object.
    Mirror(String),
    /// Anything else (a user's object, another mirror's, an earlier mirror's of the same name):
    /// never written or deleted.
    Other,
}

/// Who holds a name, given the object under it (`None` when there is none), for the mirror with
/// UID `mirror_uid`.
pub fn holder(existing: Option<&ObjectMeta>, mirror_uid: &str) -> Holder {
    match existing {
        None => Holder::Free,
        Some(meta) if controlled_by(meta, mirror_uid) => {
            Holder::Mirror(meta.uid.clone().unwrap_or_default())
        }
        Some(_) => Holder::Other,
    }
}

impl DesiredService {
    /// The Service, in `namespace`, with the mirror's `labels` that it shares and `owner`.
    pub fn service(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        owner: &OwnerReference,
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(namespace.to_owned()),
                labels: Some(shared(labels)),
                annotations: Some(BTreeMap::from([(
                    READINESS_ANNOTATION.to_owned(),
                    self.readiness.clone(),
                )])),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_owned()),
                // A ClusterIP of each family the cluster has: on a dual-stack cluster addresses of
                // either family are routed; on a single-stack one, only those of its family.
                ip_family_policy: Some("PreferDualStack".to_owned()),
                ports: Some(
                    self.ports
                        .iter()
                        .map(|port| KubeServicePort {
                            name: Some(port.name.clone()),
                            port: i32::from(port.port),
                            protocol: Some(port.protocol.to_owned()),
                            app_protocol: port.app_protocol.map(str::to_owned),
                            ..KubeServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    /// The EndpointSlices, in `namespace`, with the mirror's `labels` that they share and `owner`.
    pub fn slices(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        owner: &OwnerReference,
    ) -> Vec<EndpointSlice> {
        let mut labels = shared(labels);
        labels.insert(SERVICE_NAME_LABEL.to_owned(), self.name.clone());
        labels.insert(SLICE_MANAGED_BY_LABEL.to_owned(), SLICE_MANAGER.to_owned());
        self.slices
            .iter()
            .map(|slice| EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice.name.clone()),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                },
                address_type: if slice.address.is_ipv4() {
                    "IPv4"
                } else {
                    "IPv6"
                }
                .to_owned(),
                endpoints: vec![Endpoint {
                    addresses: vec![slice.address.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(self.ready),
                        serving: Some(self.ready),
                        terminating: Some(false),
                    }),
                    ..Endpoint::default()
                }],
                ports: Some(
                    slice
                        .ports
                        .iter()
                        .map(|(port, remote)| EndpointPort {
                            name: Some(port.name.clone()),
                            port: Some(i32::from(*remote)),
                            protocol: Some(port.protocol.to_owned()),
                            app_protocol: port.app_protocol.map(str::to_owned),
                        })
                        .collect(),
                ),
            })
            .collect()
    }
}

fn shared(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    SHARED_LABELS
        .iter()
        .filter_map(|key| Some(((*key).to_owned(), labels.get(*key)?.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::instance::{GpuInstanceStatus, PortStatus, RemoteStatus};
    use crate::services::{AddressPolicy, plan};

    #[test]
    fn a_write_conditional_on_a_uid_tells_another_object_from_other_refusals() {
        let refusal = |code: u16, field: Option<&str>| kube::core::Status {
            code,
            details: field.map(|field| kube::core::response::StatusDetails {
                name: "x".into(),
                group: String::new(),
                kind: "services".into(),
                uid: String::new(),
                causes: vec![kube::core::response::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: "field is immutable".into(),
                    field: field.to_owned(),
                }],
                retry_after_seconds: 0,
            }),
            ..Default::default()
        };
        assert!(not_that_object(&refusal(409, None)));
        assert!(not_that_object(&refusal(422, Some("metadata.uid"))));
        assert!(!not_that_object(&refusal(422, Some("spec.ports[0].port"))));
        assert!(!not_that_object(&refusal(422, None)));
        assert!(!not_that_object(&refusal(403, None)));
    }

    #[test]
    fn only_an_object_the_mirror_controls_by_uid_is_the_mirrors() {
        let ours = owner("team-a-aa01", "uid-1");
        let meta = |references: Vec<OwnerReference>| ObjectMeta {
            name: Some("team-a-aa01".into()),
            uid: Some("svc-uid".into()),
            labels: Some(BTreeMap::from([(
                mirror::MANAGED_BY_LABEL.to_owned(),
                mirror::MANAGER.to_owned(),
            )])),
            owner_references: Some(references),
            ..ObjectMeta::default()
        };
        assert_eq!(holder(None, "uid-1"), Holder::Free);
        assert_eq!(
            holder(Some(&meta(vec![ours.clone()])), "uid-1"),
            Holder::Mirror("svc-uid".into())
        );
        // The operator's label and no owner: a user's copy of an old Service.
        assert_eq!(holder(Some(&meta(Vec::new())), "uid-1"), Holder::Other);
        // Another mirror's, or an earlier mirror's of the same name.
        let mut earlier = ours.clone();
        earlier.uid = "uid-0".into();
        assert_eq!(holder(Some(&meta(vec![earlier])), "uid-1"), Holder::Other);
        // The mirror as an owner but not the controller, or an owner of another kind.
        let mut not_controller = ours.clone();
        not_controller.controller = None;
        assert_eq!(
            holder(Some(&meta(vec![not_controller])), "uid-1"),
            Holder::Other
        );
        let mut other_kind = ours.clone();
        other_kind.kind = "GpuInstanceView".into();
        assert_eq!(
            holder(Some(&meta(vec![other_kind])), "uid-1"),
            Holder::Other
        );
        // A mirror without a UID (not written yet) controls nothing.
        let mut no_uid = ours;
        no_uid.uid = String::new();
        assert_eq!(holder(Some(&meta(vec![no_uid])), ""), Holder::Other);
    }

    #[test]
    fn the_objects_carry_the_names_labels_and_owner_that_tie_them_together() {
        let status = GpuInstanceStatus {
            status: Some(RemoteStatus {
                status: Some("exited".into()),
                ..RemoteStatus::default()
            }),
            ports: vec![PortStatus {
                port: Some(8080),
                protocol: Some("http".into()),
                endpoint: Some("http://203.0.113.5:30001".into()),
            }],
            ..GpuInstanceStatus::default()
        };
        let documentation = AddressPolicy {
            cluster: Vec::new(),
            allowed: vec!["203.0.113.0/24".parse().expect("a range")],
        };
        let plan = plan("team-a-aa01", &status, &documentation);
        let desired = plan.service.expect("a Service");
        let labels = BTreeMap::from([
            (
                mirror::MANAGED_BY_LABEL.to_owned(),
                mirror::MANAGER.to_owned(),
            ),
            (mirror::VIEW_LABEL.to_owned(), "team-a".to_owned()),
            (mirror::REGION_LABEL.to_owned(), "cn-east-1".to_owned()),
        ]);
        let owner = owner("team-a-aa01", "uid-1");
        let service = desired.service("ml", &labels, &owner);
        let spec = service.spec.as_ref().expect("a spec");
        assert_eq!(
            spec.selector, None,
            "no selector: the slices are the operator's"
        );
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(
            holder(Some(&service.metadata), "uid-1"),
            Holder::Mirror(String::new())
        );
        assert_eq!(
            service.metadata.labels.as_ref().unwrap()[mirror::MANAGED_BY_LABEL],
            mirror::MANAGER
        );
        assert!(
            !service
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(mirror::REGION_LABEL)
        );
        assert_eq!(
            service.metadata.annotations.as_ref().unwrap()[READINESS_ANNOTATION],
            "Not ready: the remote instance is exited, not running."
        );
        let reference = &service.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                reference.kind.as_str(),
                reference.name.as_str(),
                reference.uid.as_str(),
                reference.controller
            ),
            ("GpuInstance", "team-a-aa01", "uid-1", Some(true))
        );
        let slices = desired.slices("ml", &labels, &owner);
        assert_eq!(slices.len(), 1);
        let slice = &slices[0];
        let slice_labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(slice_labels[SERVICE_NAME_LABEL], "team-a-aa01");
        assert_eq!(slice_labels[SLICE_MANAGED_BY_LABEL], SLICE_MANAGER);
        assert_eq!(slice.address_type, "IPv4");
        let conditions = slice.endpoints[0].conditions.as_ref().unwrap();
        assert_eq!(
            (conditions.ready, conditions.serving),
            (Some(false), Some(false))
        );
        let port = &slice.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port),
            (Some("http-8080"), Some(30001))
        );
    }
}
