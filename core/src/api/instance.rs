//! `GpuInstance`: the mirror of one remote PPIO instance, kept by the view that lists it. Its status
//! holds the remote record (environment variable values excepted) and a `Ready` condition that is True
//! while the remote instance runs.

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::cost::InstanceCostStatus;

/// Identity of the mirrored instance. Written by the operator when it creates the object.
#[allow(clippy::duplicated_attributes)] // repeated `printcolumn(type_ = ...)` is how kube declares columns
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gpu.ppio.io",
    version = "v1alpha1",
    kind = "GpuInstance",
    derive = "PartialEq",
    namespaced,
    status = "GpuInstanceStatus",
    shortname = "gpui",
    category = "ppio",
    doc = "The mirror of one PPIO GPU instance, kept up to date by the GpuInstanceView that lists it. \
           Read-only: the operator overwrites changes and never changes the remote instance.",
    printcolumn(name = "ID", type_ = "string", json_path = ".spec.instanceId"),
    printcolumn(name = "Name", type_ = "string", json_path = ".status.name"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status.status"),
    printcolumn(name = "Region", type_ = "string", json_path = ".status.region"),
    printcolumn(
        name = "GPUs",
        type_ = "integer",
        json_path = ".status.resourceSpecs.gpuNum"
    ),
    printcolumn(name = "Product", type_ = "string", json_path = ".status.productId"),
    printcolumn(name = "Billing", type_ = "string", json_path = ".status.billing.mode"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "View",
        type_ = "string",
        priority = 1,
        json_path = ".spec.view"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        priority = 1,
        json_path = ".status.image"
    ),
    printcolumn(
        name = "CPUs",
        type_ = "integer",
        priority = 1,
        json_path = ".status.resourceSpecs.cpuNum"
    ),
    printcolumn(
        name = "Memory GB",
        type_ = "integer",
        priority = 1,
        json_path = ".status.resourceSpecs.memoryGb"
    ),
    printcolumn(
        name = "Created",
        type_ = "date",
        priority = 1,
        json_path = ".status.createdAt"
    ),
    printcolumn(
        name = "Error",
        type_ = "string",
        priority = 1,
        json_path = ".status.status.error"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        priority = 1,
        json_path = ".status.billing.prepaid.endTime"
    ),
    printcolumn(
        name = "Service",
        type_ = "string",
        priority = 1,
        json_path = ".status.service.name"
    ),
    printcolumn(
        name = "Hourly",
        type_ = "string",
        priority = 1,
        json_path = ".status.cost.hourly"
    ),
    printcolumn(
        name = "Currency",
        type_ = "string",
        priority = 1,
        json_path = ".status.cost.currency"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GpuInstanceSpec {
    /// The PPIO instance ID.
    #[schemars(length(min = 1, max = 253))]
    pub instance_id: String,
    /// The GpuInstanceView that mirrors this instance.
    #[schemars(length(min = 1, max = 253))]
    pub view: String,
}

/// The remote instance record as PPIO last listed it. Timestamps are RFC 3339 and absent when PPIO
/// reports none. Environment variables are listed by key only: their values are never mirrored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuInstanceStatus {
    /// Instance ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Instance name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Instance type: `gpu` or `cpu`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Product ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// ID of the registry credentials used to pull the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth_id: Option<String>,
    /// Container entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Container start command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Billing configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<BillingStatus>,
    /// Environment variables, by key only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<EnvVarKey>,
    /// Exposed ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortStatus>,
    /// Resources, including those the system assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_specs: Option<ResourceSpecsStatus>,
    /// VPC network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStatus>,
    /// Data disks and network storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeStatus>,
    /// Region ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Automatic migration settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_migrate: Option<AutoMigrateStatus>,
    /// Remote state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RemoteStatus>,
    /// When the instance was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub created_at: Option<Timestamp>,
    /// When the instance last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_started_at: Option<Timestamp>,
    /// When the instance last stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_stopped_at: Option<Timestamp>,
    /// Member ID of the creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// Owning user (team owner UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Instance version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_version: Option<String>,
    /// `Ready` is True while the remote instance is `running`; otherwise False, with the remote
    /// status as reason and the remote error and message as message. A prepaid instance also has
    /// `ExpiringSoon`: True while its term ends within the view's `spec.expiryWarningWindow` and
    /// auto-renew is off, with the end time in the message. With Services on, `ServiceEndpoints`
    /// is True while every exposed port is routed, False with the endpoints left out and why
    /// (`EndpointRefused`), or why no Service is kept (`ServiceNameTaken`, `ServiceRejected`).
    /// `PriceKnown` is True while the instance's price is known, False with why not (its product is
    /// not in PPIO's product list, the list could not be read, ...).
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
    /// Set when a complete listing of the view no longer contained this instance; the object is
    /// deleted if the next complete listing lacks it too, and this is cleared if it reappears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub absent_since: Option<Timestamp>,
    /// The Service that routes to the instance's exposed ports, when its view asks for Services
    /// (`spec.services.enabled`) and a port can be routed to. The condition `ServiceEndpoints`
    /// says which endpoints were left out, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<MirrorService>,
    /// What the instance costs, from PPIO's product list, in its view's `spec.cost.currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<InstanceCostStatus>,
}

/// The Service of a mirror and its EndpointSlices, all in the mirror's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorService {
    /// The Service's name: `http://<name>.<namespace>.svc:<port>` reaches the instance.
    pub name: String,
    /// The EndpointSlices of the Service, one per address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoint_slices: Vec<String>,
}

/// Billing configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingStatus {
    /// `postpaid`, `prepaid` or `spot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Monthly prepaid settings, present when the mode is `prepaid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepaid: Option<PrepaidStatus>,
}

/// Monthly prepaid settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidStatus {
    /// Months bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<i64>,
    /// When the prepaid period ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub end_time: Option<Timestamp>,
    /// Automatic renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_renew: Option<AutoRenewStatus>,
}

/// Automatic renewal of a prepaid instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoRenewStatus {
    /// Whether renewal is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Months per renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<i64>,
    /// Renewal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// An environment variable, by key only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarKey {
    /// Variable name.
    pub key: String,
}

/// An exposed port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    /// Port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Protocol, e.g. `tcp` or `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// External address, assigned at run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Resources of the instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpecsStatus {
    /// System disk size in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_size_gb: Option<i64>,
    /// Number of GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_num: Option<i64>,
    /// CPU cores (assigned by the system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_num: Option<i64>,
    /// Memory in GB (assigned by the system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gb: Option<i64>,
    /// Indices of the GPUs assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_ids: Vec<i64>,
}

/// VPC network of the instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// VPC ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// IP address in the VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A mounted volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// `local` or `network`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Storage ID, usually for `network` volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Mount path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<String>,
}

/// Automatic migration settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoMigrateStatus {
    /// Whether automatic migration is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Whether the system disk moves too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_system_disk: Option<bool>,
}

/// Remote state of the instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteStatus {
    /// State, e.g. `running`, `exited`, `pulling`, `creating`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Error code, when the instance failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// State description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
