//! How one PPIO instance becomes one `GpuInstance`: its object name, its labels and its status.
//!
//! This is the only place that maps the PPIO record to Kubernetes. Everything here is pure and
//! deterministic: the same record always gives the same object, so an unchanged instance compares
//! equal to its mirror and costs no write. Whatever PPIO sends:
//! - every name and label value is valid;
//! - control characters and bidirectional marks and overrides (which can disguise text in a
//!   terminal) are stripped from every string, by the rule of [`ppio::text`];
//! - user names and passwords in URLs of `command`, `entrypoint` and `image` are replaced by
//!   [`REDACTED_USERINFO`] before anything is shortened, and a view may leave those fields out;
//! - the status fits [`STATUS_BUDGET_BYTES`] as the API server encodes it: what does not fit is
//!   dropped from the end of lists, then of long texts, and a `Truncated` condition says what was
//!   cut, so one oversized record never stops its view from syncing.
//!
//! Its parts: [`names`] (object names and labels), [`mapping`] (the record as a status: every
//! field, the `Ready` condition), [`budget`] (the status within [`STATUS_BUDGET_BYTES`] as the API
//! server encodes it), [`userinfo`] (credentials in URLs), [`mod@fingerprint`] (the content as one
//! number, so an unchanged mirror is known from its metadata).

pub mod budget;
pub mod fingerprint;
pub mod mapping;
pub mod names;
pub mod userinfo;

pub use fingerprint::{fingerprint, fingerprint_text, labels_digest, parse_fingerprint};
pub use mapping::{event_note, spec_instance_id, status, whole_seconds};
pub use names::{kubernetes_label_value, labels, object_name, parse_expiring_soon};
pub use userinfo::redact_userinfo;

/// Label on every object the operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`]: the operator's name.
pub const MANAGER: &str = crate::OPERATOR_NAME;
/// Label naming the view that keeps the object.
pub const VIEW_LABEL: &str = "gpu.ppio.io/view";
/// Label holding the remote instance ID.
pub const INSTANCE_ID_LABEL: &str = "gpu.ppio.io/instance-id";
/// Label holding the instance's region.
pub const REGION_LABEL: &str = "gpu.ppio.io/region";
/// Label holding the remote status (`running`, `exited`, ...).
pub const STATUS_LABEL: &str = "gpu.ppio.io/status";
/// Label holding the billing mode.
pub const BILLING_MODE_LABEL: &str = "gpu.ppio.io/billing-mode";
/// Label on the mirror of a prepaid instance that is expiring soon (see [`crate::sync::expiry`]):
/// the end time of its term as Unix seconds. It also tells the next sync, or the next operator,
/// that the `ExpiringSoon` Event for this end time was published.
pub const EXPIRING_SOON_LABEL: &str = "gpu.ppio.io/expiring-soon";

/// Label that shards views across operator deployments (`--watch-label-selector`). A mirror carries
/// its view's value, so that each shard watches only the mirrors of its own views.
pub const SHARD_LABEL: &str = "sharding.ppio.io/key";
/// The labels the operator sets on a mirror and compares; labels others add are theirs to keep.
pub const OWN_LABELS: [&str; 8] = [
    MANAGED_BY_LABEL,
    VIEW_LABEL,
    INSTANCE_ID_LABEL,
    REGION_LABEL,
    STATUS_LABEL,
    BILLING_MODE_LABEL,
    SHARD_LABEL,
    EXPIRING_SOON_LABEL,
];
/// Annotation holding the [`fingerprint()`] of the spec and status the operator last applied, so that
/// an unchanged mirror is recognised from its metadata alone, without reading its status.
pub const FINGERPRINT_ANNOTATION: &str = "gpu.ppio.io/fingerprint";
/// Annotation holding when a complete listing first lacked the instance (RFC 3339), so that the
/// removal rules can be applied from metadata alone; `status.absentSince` shows the same to people.
pub const ABSENT_SINCE_ANNOTATION: &str = "gpu.ppio.io/absent-since";

/// The remote status in which an instance counts as Ready.
pub const RUNNING: &str = "running";

/// The condition type on a mirror whose remote record did not fit [`STATUS_BUDGET_BYTES`].
pub const TRUNCATED: &str = "Truncated";
/// Most bytes one mirror's status may take as the API server encodes it: a tenth of etcd's 1.5 MiB
/// object limit, and far above a normal record (about 2 KiB).
pub const STATUS_BUDGET_BYTES: usize = 128 * 1024;
/// What replaces the user name and password of a URL in a mirrored command, entrypoint or image.
pub const REDACTED_USERINFO: &str = "<redacted>";
/// Most bytes of an Event's note: events.k8s.io refuses notes over 1 KiB.
pub const MAX_EVENT_NOTE: usize = 1000;

/// Room kept in the budget for the `Truncated` condition itself.
const TRUNCATED_CONDITION_ROOM: usize = 1024;

// Bounds that keep one GpuInstance far below etcd's object size limit whatever PPIO sends.
const MAX_SHORT_TEXT: usize = 253;
const MAX_LONG_TEXT: usize = 4096;
const MAX_LIST_ITEMS: usize = 128;
const MAX_NAME_LEN: usize = 253;

#[cfg(test)]
mod tests;
