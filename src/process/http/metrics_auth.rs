//! Who may read `/metrics` when `--metrics-auth` is on: the caller's bearer token is authenticated by
//! the API server with a TokenReview, and the user it names is authorized with a SubjectAccessReview
//! for `get` on the non-resource URL `/metrics`, as controller-runtime's
//! `WithAuthenticationAndAuthorization` filter does. Verdicts are cached briefly, so that scrapes every
//! few seconds cost the API server two requests per token and cache period, not per scrape.
//!
//! Not here: `/healthz` and `/readyz`, which the kubelet probes without a token and stay open.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tracing::{debug, warn};

/// The path and verb a reader must be granted (a ClusterRole rule with `nonResourceURLs: [/metrics]`).
pub const METRICS_PATH: &str = "/metrics";
const METRICS_VERB: &str = "get";

/// How long an allowed token stays allowed without asking again.
const ALLOWED_FOR: Duration = Duration::from_secs(30);
/// How long a refused token stays refused: shorter, so that a newly bound role takes effect soon.
const REFUSED_FOR: Duration = Duration::from_secs(10);
/// Tokens remembered at most; a flood of made-up tokens costs reviews, never unbounded memory.
const MAX_CACHED_TOKENS: usize = 256;

/// What the API server says of one bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A known user who may `get` `/metrics`.
    Allowed,
    /// Not a token the API server knows (invalid, expired, of another audience).
    Unauthenticated,
    /// A known user without the permission.
    Forbidden,
}

/// The API server could not be asked; the reader is told only that the check failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The TokenReview request failed (the API server is unreachable, or refuses the operator).
    #[error("TokenReview failed (may the operator create tokenreviews?): {0}")]
    TokenReview(#[source] kube::Error),
    /// The SubjectAccessReview request failed.
    #[error("SubjectAccessReview failed (may the operator create subjectaccessreviews?): {0}")]
    AccessReview(#[source] kube::Error),
}

/// Asks who a token belongs to and whether they may read `/metrics`.
pub trait Reviewer: Send + Sync {
    /// The verdict on `token`, or why none could be had.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, ReviewError>>;
}

/// The API server's authenticator and authorizer, through TokenReview and SubjectAccessReview.
pub struct ApiServerReviewer {
    client: kube::Client,
}

impl ApiServerReviewer {
    /// Reviews with the operator's own client (it needs `create` on both review kinds).
    pub fn new(client: kube::Client) -> ApiServerReviewer {
        ApiServerReviewer { client }
    }
}

impl Reviewer for ApiServerReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, ReviewError>> {
        Box::pin(async move {
            // No audiences: the token must be valid for the API server itself, as controller-runtime
            // asks.
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_owned()),
                    audiences: None,
                },
                ..Default::default()
            };
            let reviewed = Api::<TokenReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map_err(ReviewError::TokenReview)?;
            let user = reviewed
                .status
                .filter(|s| s.authenticated == Some(true))
                .and_then(|s| s.user)
                .filter(|u| u.username.as_deref().is_some_and(|n| !n.is_empty()));
            let Some(user) = user else {
                return Ok(Verdict::Unauthenticated);
            };
            let username = user.username.clone().unwrap_or_default();
            let access = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: user.username,
                    groups: user.groups,
                    uid: user.uid,
                    extra: user.extra,
                    non_resource_attributes: Some(NonResourceAttributes {
                        path: Some(METRICS_PATH.to_owned()),
                        verb: Some(METRICS_VERB.to_owned()),
                    }),
                    resource_attributes: None,
                },
                ..Default::default()
            };
            let decided = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &access)
                .await
                .map_err(ReviewError::AccessReview)?;
            if decided.status.is_some_and(|s| s.allowed) {
                Ok(Verdict::Allowed)
            } else {
                debug!(user = %username, "refused /metrics: not allowed to get it");
                Ok(Verdict::Forbidden)
            }
        })
    }
}

/// Why a request for `/metrics` is refused, as the HTTP answer the reader gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no bearer token, or one the API server does not know.
    Unauthenticated,
    /// 403: a known user without `get` on `/metrics`.
    Forbidden,
    /// 503: the API server could not be asked; details are logged, never sent to the reader.
    Unavailable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "Unauthorized\n",
            )
                .into_response(),
            Refusal::Forbidden => (StatusCode::FORBIDDEN, "Forbidden\n").into_response(),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the token could not be checked; try again\n",
            )
                .into_response(),
        }
    }
}

/// The gate in front of `/metrics`: a reviewer and a short-lived cache of its verdicts.
pub struct MetricsAuth {
    reviewer: Box<dyn Reviewer>,
    verdicts: Mutex<HashMap<String, (Verdict, Instant)>>,
}

impl MetricsAuth {
    /// A gate that asks the API server through `client`.
    pub fn new(client: kube::Client) -> MetricsAuth {
        MetricsAuth::with_reviewer(ApiServerReviewer::new(client))
    }

    /// A gate that asks `reviewer`.
    pub fn with_reviewer(reviewer: impl Reviewer + 'static) -> MetricsAuth {
        MetricsAuth {
            reviewer: Box::new(reviewer),
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when the request's bearer token may read `/metrics`, else how to refuse it.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = bearer_token(headers) else {
            return Err(Refusal::Unauthenticated);
        };
        let verdict = match self.cached(token) {
            Some(verdict) => verdict,
            None => match self.reviewer.review(token).await {
                Ok(verdict) => {
                    self.remember(token, verdict);
                    verdict
                }
                Err(e) => {
                    // Not cached: the next scrape asks again.
                    warn!(error = %e, "cannot check a /metrics bearer token");
                    return Err(Refusal::Unavailable);
                }
            },
        };
        match verdict {
            Verdict::Allowed => Ok(()),
            Verdict::Unauthenticated => Err(Refusal::Unauthenticated),
            Verdict::Forbidden => Err(Refusal::Forbidden),
        }
    }

    fn cached(&self, token: &str) -> Option<Verdict> {
        let verdicts = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        verdicts
            .get(token)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(verdict, _)| *verdict)
    }

    fn remember(&self, token: &str, verdict: Verdict) {
        let now = Instant::now();
        let until = now
            + match verdict {
                Verdict::Allowed => ALLOWED_FOR,
                Verdict::Unauthenticated | Verdict::Forbidden => REFUSED_FOR,
            };
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        if verdicts.len() >= MAX_CACHED_TOKENS && !verdicts.contains_key(token) {
            verdicts.retain(|_, (_, until)| now < *until);
            if verdicts.len() >= MAX_CACHED_TOKENS {
                let soonest = verdicts
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(token, _)| token.clone());
                if let Some(soonest) = soonest {
                    verdicts.remove(&soonest);
                }
            }
        }
        verdicts.insert(token.to_owned(), (verdict, until));
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case), if any.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers from a fixed table and counts the questions.
    #[derive(Clone, Default)]
    struct TableReviewer {
        asked: Arc<AtomicUsize>,
    }

    impl Reviewer for TableReviewer {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, ReviewError>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match token {
                    "reader" => Ok(Verdict::Allowed),
                    "stranger" => Ok(Verdict::Forbidden),
                    "broken" => Err(ReviewError::TokenReview(kube::Error::Service(
                        "connection refused".into(),
                    ))),
                    _ => Ok(Verdict::Unauthenticated),
                }
            })
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header value"),
        );
        headers
    }

    #[test]
    fn only_a_bearer_authorization_carries_a_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer ", None),
            ("Bearer", None),
        ] {
            headers.insert(header::AUTHORIZATION, value.parse().expect("header value"));
            assert_eq!(bearer_token(&headers), token, "{value:?}");
        }
    }

    #[tokio::test]
    async fn verdicts_become_refusals() {
        let auth = MetricsAuth::with_reviewer(TableReviewer::default());
        assert_eq!(
            auth.check(&HeaderMap::new()).await,
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(
            auth.check(&bearer("made-up")).await,
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(
            auth.check(&bearer("stranger")).await,
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            auth.check(&bearer("broken")).await,
            Err(Refusal::Unavailable)
        );
        assert_eq!(auth.check(&bearer("reader")).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_every_few_seconds_asks_the_api_server_once_per_cache_period() {
        let reviewer = TableReviewer::default();
        let asked = reviewer.asked.clone();
        let auth = MetricsAuth::with_reviewer(reviewer);
        for _ in 0..5 {
            assert_eq!(auth.check(&bearer("reader")).await, Ok(()));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "25 s of scrapes, one review"
        );
        tokio::time::sleep(ALLOWED_FOR).await;
        assert_eq!(auth.check(&bearer("reader")).await, Ok(()));
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "asked again once the verdict expired"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_expire_sooner_and_errors_are_never_cached() {
        let reviewer = TableReviewer::default();
        let asked = reviewer.asked.clone();
        let auth = MetricsAuth::with_reviewer(reviewer);
        assert_eq!(
            auth.check(&bearer("stranger")).await,
            Err(Refusal::Forbidden)
        );
        tokio::time::sleep(REFUSED_FOR).await;
        assert_eq!(
            auth.check(&bearer("stranger")).await,
            Err(Refusal::Forbidden)
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        assert_eq!(
            auth.check(&bearer("broken")).await,
            Err(Refusal::Unavailable)
        );
        assert_eq!(
            auth.check(&bearer("broken")).await,
            Err(Refusal::Unavailable)
        );
        assert_eq!(asked.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded_under_a_flood_of_tokens() {
        let auth = MetricsAuth::with_reviewer(TableReviewer::default());
        for n in 0..MAX_CACHED_TOKENS * 3 {
            let _ = auth.check(&bearer(&format!("made-up-{n}"))).await;
        }
        assert_eq!(auth.check(&bearer("reader")).await, Ok(()));
        let cached = auth.verdicts.lock().map(|v| v.len()).unwrap_or_default();
        assert!(cached <= MAX_CACHED_TOKENS, "{cached} tokens cached");
        assert_eq!(auth.cached("reader"), Some(Verdict::Allowed));
    }
}
