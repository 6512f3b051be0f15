//! The view's API key, read from its Secret with a plain GET at every sync: a rotated key is used at
//! the next sync, and the operator needs only `get` on Secrets, no watch or cache of them. Each way
//! the Secret can be wrong has its own reason and a message saying what to do.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use ppio::ApiKey;
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::sync::view_status::{FailureReason, SyncFailure};

/// Reads the API key with a plain GET at every sync, so a rotated key is used at the next sync and
/// the operator needs no watch on Secrets.
pub(super) async fn read_api_key(
    client: &Client,
    namespace: &str,
    view: &GpuInstanceView,
) -> Result<ApiKey, SyncFailure> {
    let reference = &view.spec.credentials.secret_ref;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(SyncFailure {
                reason: FailureReason::SecretNotFound,
                message: format!(
                    "Secret {namespace}/{} does not exist. Create it with the PPIO API key under the \
                     key {:?} (spec.credentials.secretRef).",
                    reference.name, reference.key
                ),
            });
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err(SyncFailure {
                reason: FailureReason::SecretForbidden,
                message: format!(
                    "The operator may not read Secret {namespace}/{}: grant its ServiceAccount `get` \
                     on Secrets in this namespace.",
                    reference.name
                ),
            });
        }
        Err(e) if crate::process::kube_client::throttled(&e).is_some() => {
            return Err(SyncFailure::throttled("read the Secret", &e));
        }
        Err(e) => {
            return Err(SyncFailure::kube(
                FailureReason::SecretUnavailable,
                "read the Secret",
                &e,
            ));
        }
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .ok_or_else(|| SyncFailure {
            reason: FailureReason::SecretKeyNotFound,
            message: format!(
                "Secret {namespace}/{} has no key {:?}. Put the PPIO API key there, or set \
                 spec.credentials.secretRef.key to the key that holds it.",
                reference.name, reference.key
            ),
        })?;
    let text = String::from_utf8(value.0.clone()).map_err(|_| SyncFailure {
        reason: FailureReason::InvalidApiKey,
        message: format!(
            "The value under {:?} in Secret {namespace}/{} is not text, so it is not a PPIO API key.",
            reference.key, reference.name
        ),
    })?;
    ApiKey::new(text).map_err(|e| SyncFailure {
        reason: FailureReason::InvalidApiKey,
        message: format!(
            "The value under {:?} in Secret {namespace}/{} is not a usable API key: {e}.",
            reference.key, reference.name
        ),
    })
}
