//! The objects tests and benchmarks create, built from typed values: a namespace, a Secret holding a
//! PPIO API key, and views built from the operator's own `GpuInstanceViewSpec`, so that a misspelt
//! field does not compile (a JSON spec would let serde and the API server drop it without a word).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::api::view::GpuInstanceViewSpec;

/// The namespace `name` with `labels`.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The Secret `name` holding only `value` under `key`.
pub fn api_key_secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..Secret::default()
    }
}

/// A view spec that lists every instance at `endpoint` with the API key under `apiKey` in the
/// Secret `secret`; every other field has the default the API server would give it.
pub fn view_spec(secret: &str, endpoint: &str) -> GpuInstanceViewSpec {
    let mut spec: GpuInstanceViewSpec = serde_json::from_value(serde_json::json!({
        "credentials": { "secretRef": { "name": secret } },
    }))
    .unwrap_or_else(|e| panic!("the smallest view spec no longer reads: {e}"));
    spec.endpoint = Some(endpoint.to_owned());
    spec
}

/// The view `name` with `spec`.
pub fn view(name: &str, spec: GpuInstanceViewSpec) -> GpuInstanceView {
    GpuInstanceView::new(name, spec)
}

/// A short random suffix for names that must not collide between tests or runs.
pub fn rand_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_spec_has_the_defaults_the_api_server_gives() {
        let spec = view_spec("ppio", "http://127.0.0.1:1");
        assert_eq!(spec.credentials.secret_ref.name, "ppio");
        assert_eq!(spec.credentials.secret_ref.key, "apiKey");
        assert_eq!(spec.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(spec.sync_interval, "60s");
        assert_eq!(spec.page_size, 50);
        assert!(spec.mirror.enabled);
        assert!(!spec.services.enabled);
        assert!(!spec.suspend);
    }
}
