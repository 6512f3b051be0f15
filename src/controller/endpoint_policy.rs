//! Which endpoints a view may send its API key to: the default PPIO endpoint, and the base URLs the
//! operator's administrator allowed (`--allowed-endpoint`). Anyone who may create a view chooses its
//! endpoint, so without this a view could send the key to a server of its author's.

use url::Url;

use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::api::view::DEFAULT_ENDPOINT;
use ppio_gpu_core::sync::view_status::{FailureReason, SyncFailure};

/// Which endpoints views may send their API key to.
#[derive(Clone, Debug)]
pub struct EndpointPolicy {
    allowed: Vec<Url>,
}

impl EndpointPolicy {
    /// The default PPIO endpoint plus `extra` base URLs (an endpoint is allowed when it has the same
    /// scheme, host and port as one of them and its path starts with that one's path).
    pub fn new(extra: Vec<Url>) -> EndpointPolicy {
        let mut allowed = extra;
        if let Ok(default) = Url::parse(DEFAULT_ENDPOINT) {
            allowed.push(default);
        }
        EndpointPolicy { allowed }
    }

    /// Whether a view may use `endpoint`.
    pub fn allows(&self, endpoint: &Url) -> bool {
        self.allowed.iter().any(|allowed| {
            allowed.scheme() == endpoint.scheme()
                && allowed.host_str() == endpoint.host_str()
                && allowed.port_or_known_default() == endpoint.port_or_known_default()
                && path_within(endpoint.path(), allowed.path())
                && endpoint.username().is_empty()
                && endpoint.password().is_none()
        })
    }
}

/// Whether `path` is `base` or below it, segment by segment (`/api` covers `/api/v2`, not `/apix`).
fn path_within(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The endpoint of `view`, if the policy allows it.
pub(super) fn endpoint_of(
    view: &GpuInstanceView,
    policy: &EndpointPolicy,
) -> Result<Url, SyncFailure> {
    let raw = view.spec.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let endpoint = Url::parse(raw).map_err(|e| SyncFailure {
        reason: FailureReason::InvalidSpec,
        message: format!("spec.endpoint {raw:?} is not a valid URL: {e}."),
    })?;
    if !policy.allows(&endpoint) {
        return Err(SyncFailure {
            reason: FailureReason::EndpointNotAllowed,
            message: format!(
                "spec.endpoint {endpoint} is not on the operator's endpoint allow-list, so the API key \
                 is not sent there. Use {DEFAULT_ENDPOINT}, or ask the operator's administrator to \
                 allow this endpoint (--allowed-endpoint)."
            ),
        });
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_endpoints_are_accepted() {
        let policy = EndpointPolicy::new(vec![Url::parse("http://127.0.0.1:8080/").unwrap()]);
        let allowed = |s: &str| policy.allows(&Url::parse(s).unwrap());
        assert!(allowed("https://api.ppio.com"));
        assert!(allowed("https://api.ppio.com/"));
        assert!(allowed("http://127.0.0.1:8080"));
        assert!(!allowed("http://127.0.0.1:8081"));
        assert!(
            !allowed("http://api.ppio.com"),
            "plain HTTP to the default host"
        );
        assert!(!allowed("https://api.ppio.com.evil.example"));
        assert!(!allowed("https://user:pw@api.ppio.com"));
        let below = EndpointPolicy::new(vec![Url::parse("https://proxy.example/ppio").unwrap()]);
        assert!(below.allows(&Url::parse("https://proxy.example/ppio").unwrap()));
        assert!(below.allows(&Url::parse("https://proxy.example/ppio/v2").unwrap()));
        assert!(!below.allows(&Url::parse("https://proxy.example/ppiox").unwrap()));
    }
}
