//! Server-side apply as the operator makes it: one field manager, and the body of a status write.

use kube::Resource;
use kube::api::PatchParams;
use serde_json::json;

/// The field manager of every write the operator makes (server-side apply).
pub const FIELD_MANAGER: &str = ppio_gpu_core::OPERATOR_NAME;

/// Server-side apply as the operator makes it: under [`FIELD_MANAGER`], taking over fields others
/// set, and with `fieldValidation=Ignore`. Every object the operator applies is serialized from the
/// types its CRDs are generated from (a test keeps `crds/` current), so there is no unknown or
/// duplicate field to report, and the check would cost the API server a second decoding of every
/// body (apply bodies are decoded as YAML). The schema's own validation still applies.
pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_ignore()
}

/// The body of a server-side apply of `status` to the status subresource of an object of kind `K`:
/// the kind, and the status alone, so that the operator owns no other field through it.
pub(super) fn status_apply_body<K: Resource<DynamicType = ()>>(
    status: &impl serde::Serialize,
) -> serde_json::Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}
