//! HTTP client for the PPIO GPU API v2 list call (`GET /gpus/v2/instances`): a listing paged
//! through with guards against servers that page forever, loop, contradict themselves or send
//! something other than a page with HTTP 200, read page by page ([`super::Pager`], what the
//! controller runs) or collected whole (`Client::list_all_instances`, a test helper: the same
//! pager).
//!
//! A listing that is returned at all is complete, because callers prune what it no longer holds:
//! every page must be a real page (see `Page::from_json`), and the pages must pass the guards of
//! [`super::paging`], within the listing's [`ListingLimits`] (pages, instances, bytes). Within a
//! listing, a page that fails transiently (429, 5xx, timeout, connection failure) is asked for
//! again, with the same cursor, a few times; anything else fails the listing at once. Beyond that
//! the client does not retry: every error says whether it is transient and how long the server
//! asked to wait, and the caller owns the backoff between listings.
//!
//! Every record is cleaned of echoes of the API key before it is returned ([`Instance::redact`]);
//! a page with the key in a record's ID is refused. The client never follows redirects, which would
//! carry the bearer token to another host, and never logs the key or the `Authorization` header.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};
use jiff::Timestamp;
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use tracing::Instrument;
use url::Url;

use super::api_key::ApiKey;
use super::config::{ClientConfig, ListQuery, ListingLimits};
use super::error::{PpioError, error_sent_as_page, parse_error_body, parse_retry_after, sanitize};
use super::memo::ListingMemo;
use super::model::Instance;
use super::products::{Products, REFUSED_UNREAD};
use super::rate_limit::RateLimiter;
use super::raw_page::RawPage;

const USER_AGENT: &str = concat!("ppio-gpu-operator/", env!("CARGO_PKG_VERSION"));

/// At most this much of an error body is read: only its first few hundred characters are kept.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A complete listing: every page was fetched and checked, and the API key redacted from every
/// record. A test helper (feature `testing`), as [`Client::list_all_instances`] is.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Every instance, in the order the pages gave them; IDs are unique.
    pub instances: Vec<Instance>,
    /// How many pages it took.
    pub pages: u32,
}

/// One HTTP request as a metrics recorder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOutcome {
    /// The response's status code; `None` when no response came (timeout, connection failure).
    pub status_code: Option<u16>,
    /// From sending the request to reading the whole body, or failing.
    pub latency: Duration,
}

type RequestObserver = Arc<dyn Fn(&RequestOutcome) + Send + Sync>;

/// Client of the PPIO GPU API v2. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    base_url: Url,
    instances_url: Url,
    products_url: Url,
    max_body_bytes: usize,
    observer: Option<RequestObserver>,
    limiter: Arc<RateLimiter>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client. The endpoint must be an `http` or `https` URL without credentials, query
    /// or fragment; timeouts and the body limit must be non-zero.
    pub fn new(config: ClientConfig) -> Result<Client, PpioError> {
        let invalid = |detail: String| PpioError::InvalidConfig { detail };
        let base_url = config.base_url;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
            return Err(invalid(format!(
                "endpoint {base_url} is not an http(s) URL with a host"
            )));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            // Credentials in the URL would be sent as basic auth and shown in errors.
            return Err(invalid(
                "the endpoint URL must not contain a user name or password".to_owned(),
            ));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(invalid(format!(
                "endpoint {base_url} must not have a query or fragment"
            )));
        }
        if config.connect_timeout.is_zero() || config.request_timeout.is_zero() {
            return Err(invalid("timeouts must be greater than zero".to_owned()));
        }
        if config.max_body_bytes == 0 {
            return Err(invalid(
                "max_body_bytes must be greater than zero".to_owned(),
            ));
        }
        let mut instances_url = base_url.clone();
        instances_url
            .path_segments_mut()
            .map_err(|()| invalid(format!("endpoint {base_url} cannot have a path")))?
            .pop_if_empty()
            .extend(["gpus", "v2", "instances"]);
        let mut products_url = instances_url.clone();
        products_url
            .path_segments_mut()
            .map_err(|()| invalid(format!("endpoint {base_url} cannot have a path")))?
            .pop()
            .push("products");
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {}", error_chain(&e))))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                instances_url,
                products_url,
                max_body_bytes: config.max_body_bytes,
                observer: None,
                limiter: Arc::new(RateLimiter::new(config.requests_per_minute)),
            }),
        })
    }

    /// Calls `observer` after every HTTP request with its status code and latency, e.g. to feed
    /// metrics. The observer must be quick: it runs on the request's task.
    #[must_use]
    pub fn with_request_observer(
        mut self,
        observer: impl Fn(&RequestOutcome) + Send + Sync + 'static,
    ) -> Client {
        Arc::make_mut(&mut self.inner).observer = Some(Arc::new(observer));
        self
    }

    /// Paces requests with `limiter` instead of a budget of this client's own, so that clients of
    /// several endpoints share one budget per key. `requests_per_minute` of the config is then unused.
    #[must_use]
    pub fn with_rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Client {
        Arc::make_mut(&mut self.inner).limiter = limiter;
        self
    }

    /// The endpoint root this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Waits until the key's request budget allows one more request, and counts it. A caller that
    /// must not hold something scarce while it waits (a sync slot) paces first, then asks for the
    /// page with [`Pager::next_page`](super::Pager::next_page), which then does not wait again.
    pub async fn pace(&self, key: &ApiKey) {
        self.inner.limiter.acquire(key).await;
    }

    /// Fetches every page and checks the listing is whole: it fails, rather than returning part of
    /// the instances, when a 200 answer is not a page, the server says more pages follow but gives
    /// no cursor, repeats a cursor, sends an instance ID twice, or the listing exceeds `limits`. An
    /// `Err` therefore always means "incomplete, do not prune".
    ///
    /// A page that fails transiently is asked for again with the same cursor, up to
    /// [`ListingLimits::page_attempts`] times in all, after the `Retry-After` the server sent, else
    /// after an exponential backoff from [`ListingLimits::retry_base`]. When the retries run out,
    /// the last error is returned. A `Retry-After` longer than [`ListingLimits::max_retry_wait`]
    /// returns the [`PpioError::RateLimited`] at once. Other errors are never retried.
    ///
    /// This is [`Client::pager`] read to its end with a memo of its own, every record decoded:
    /// the path the controller runs, page by page, collected. A test helper (feature `testing`).
    #[cfg(any(test, feature = "testing"))]
    pub async fn list_all_instances(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        limits: &ListingLimits,
    ) -> Result<Listing, PpioError> {
        // The pager the controller reads page by page, collected: one path, one set of guards.
        let memo = std::sync::Arc::new(ListingMemo::default());
        let mut pager = self.pager(key, query, limits, memo);
        let mut instances = Vec::new();
        while let Some(page) = pager.next_page().await? {
            instances.reserve(page.len());
            for index in 0..page.len() {
                instances.push(page.decode(index)?);
            }
        }
        Ok(Listing {
            instances,
            pages: pager.pages(),
        })
    }

    /// One page of a listing, asked for again while it fails transiently, as
    /// `Client::list_all_instances` describes.
    /// `paced` says the first request was already counted against the key's budget
    /// ([`Client::pace`]); a body that `memo` has seen is not read again.
    #[allow(clippy::too_many_arguments)] // the state of one page of one listing
    pub(super) async fn request_page_with_retries(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        cursor: Option<&str>,
        page: u32,
        budget: ListingBudget,
        limits: &ListingLimits,
        paced: bool,
        memo: Option<&ListingMemo>,
    ) -> Result<FetchedPage, PpioError> {
        let attempts = limits.page_attempts.max(1);
        // Shared by the attempts and the log of each retry; only one attempt runs at a time.
        let attempt = AtomicU32::new(0);
        let paced = AtomicBool::new(paced);
        let fetch = || {
            let number = attempt.fetch_add(1, Ordering::Relaxed) + 1;
            let paced = paced.swap(false, Ordering::Relaxed);
            self.request_page(key, query, cursor, Some(budget), paced, memo)
                .instrument(tracing::debug_span!(
                    "ppio_list_page",
                    page,
                    attempt = number
                ))
        };
        fetch
            .retry(page_backoff(limits))
            .sleep(tokio::time::sleep)
            .when(PpioError::is_transient)
            .adjust(|error, backoff| retry_wait(error, backoff, limits))
            .notify(|error, wait| {
                tracing::info!(
                    page,
                    attempt = attempt.load(Ordering::Relaxed),
                    attempts,
                    reason = error.kind().as_str(),
                    status = error.status_code(),
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "a page of the PPIO listing failed; retrying it"
                );
            })
            .await
    }

    /// Runs one request (`fetch`: its status code, if an answer came, and its result), timed from
    /// sending it to reading its whole body, and reports it to the request observer.
    async fn observed<T>(
        &self,
        fetch: impl Future<Output = (Option<u16>, Result<T, PpioError>)>,
    ) -> (Option<u16>, Result<T, PpioError>, Duration) {
        let started = Instant::now();
        let (status_code, result) = fetch.await;
        let latency = started.elapsed();
        if let Some(observer) = &self.inner.observer {
            observer(&RequestOutcome {
                status_code,
                latency,
            });
        }
        (status_code, result, latency)
    }

    /// One request for one page, reported to the observer and logged. `budget`, within a listing,
    /// bounds the body further than [`ClientConfig::max_body_bytes`]; a body that `memo` has seen
    /// is not read again.
    async fn request_page(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        cursor: Option<&str>,
        budget: Option<ListingBudget>,
        paced: bool,
        memo: Option<&ListingMemo>,
    ) -> Result<FetchedPage, PpioError> {
        let url = self.page_url(query, cursor);
        // The wait for the per-key budget is not the server's latency.
        if !paced {
            self.pace(key).await;
        }
        let (status_code, result, latency) =
            self.observed(self.fetch_page(key, url, budget, memo)).await;
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(fetched) => tracing::debug!(
                status = status_code,
                instances = fetched.page.len(),
                has_more = fetched.page.has_more,
                bytes = fetched.body_bytes,
                latency_ms,
                "listed a page of PPIO instances"
            ),
            Err(error) => tracing::debug!(
                status = status_code,
                reason = error.kind().as_str(),
                %error,
                latency_ms,
                "listing a page of PPIO instances failed"
            ),
        }
        result
    }

    /// The list URL with this query's parameters; empty ones are left out.
    fn page_url(&self, query: &ListQuery, cursor: Option<&str>) -> Url {
        let non_blank = |value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
        };
        let regions = query
            .regions
            .iter()
            .map(|region| region.trim())
            .filter(|region| !region.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        let params = [
            (
                "limit",
                Some(query.page_size)
                    .filter(|&n| n > 0)
                    .map(|n| n.to_string()),
            ),
            (
                "cursor",
                cursor.filter(|c| !c.is_empty()).map(str::to_owned),
            ),
            ("name", non_blank(&query.name)),
            ("status", non_blank(&query.status)),
            ("regions", Some(regions).filter(|r| !r.is_empty())),
            (
                "billing_mode",
                query.billing_mode.map(|m| m.as_str().to_owned()),
            ),
        ];
        let mut url = self.inner.instances_url.clone();
        let present: Vec<(&str, String)> = params
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        url
    }
}

/// The waits before each retry of a page when the server did not say how long to wait:
/// [`ListingLimits::retry_base`] doubled for each earlier retry, capped at
/// [`ListingLimits::max_retry_wait`], for [`ListingLimits::page_attempts`] attempts in all. The
/// operator's own waits after failures follow the same rule.
fn page_backoff(limits: &ListingLimits) -> ExponentialBuilder {
    let retries = limits.page_attempts.max(1) - 1;
    ExponentialBuilder::new()
        .with_min_delay(limits.retry_base)
        .with_factor(2.0)
        .with_max_delay(limits.max_retry_wait)
        .with_max_times(usize::try_from(retries).unwrap_or(usize::MAX))
}

/// How long to wait before the next attempt after `error`, given the backoff's own next wait
/// (`None` when the attempts are spent): the server's `Retry-After` while retries remain, unless it
/// asks for longer than [`ListingLimits::max_retry_wait`] (then `None`: the caller's own schedule
/// handles long waits better than a blocked call), else the backoff's wait, jittered.
fn retry_wait(
    error: &PpioError,
    backoff: Option<Duration>,
    limits: &ListingLimits,
) -> Option<Duration> {
    match error.retry_after() {
        Some(asked) if asked > limits.max_retry_wait => None,
        Some(asked) => backoff.map(|_| asked),
        None => backoff.map(|wait| jittered(wait, rand::rng().random())),
    }
}

/// `wait` scaled by a factor between 0.5 and 1 from `jitter` (in `0.0..1.0`, clamped to it), so
/// that views failing together do not retry together.
fn jittered(wait: Duration, jitter: f64) -> Duration {
    wait.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

mod products;
mod transport;

pub(super) use transport::ListingBudget as Budget;
pub(super) use transport::decode_record;
use transport::{FetchedPage, ListingBudget, error_chain};

#[cfg(test)]
mod tests;
