//! HTTP client for the PPIO GPU API v2 list call (`GET /gpus/v2/instances`): one page, or a whole
//! listing paged through with guards against servers that page forever, loop, contradict themselves
//! or send something other than a page with HTTP 200.
//!
//! A listing that is returned at all is complete, because callers prune what it no longer holds:
//! every page must be a real page (see [`Page::from_json`]), and the pages must pass the guards of
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
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use tracing::Instrument;
use url::Url;

use super::api_key::ApiKey;
use super::error::{PpioError, ServerMessage, parse_error_body, parse_retry_after, sanitize};
use super::model::{BillingMode, Instance, Page};
use super::paging::{Paging, Progress};
use super::rate_limit::RateLimiter;

const USER_AGENT: &str = concat!("ppio-gpu-operator/", env!("CARGO_PKG_VERSION"));

/// At most this much of an error body is read: only its first few hundred characters are kept.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// How the client connects; one client serves every key and query against one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Endpoint root; the list call is `{base_url}/gpus/v2/instances`. A path prefix is kept.
    pub base_url: Url,
    /// Limit for establishing the TCP and TLS connection.
    pub connect_timeout: Duration,
    /// Limit for one whole request, from sending it to the last byte of the body.
    pub request_timeout: Duration,
    /// Largest response body accepted; a larger one is an invalid response. A whole listing is
    /// further bounded by [`ListingLimits::max_listing_bytes`].
    pub max_body_bytes: usize,
    /// Requests a minute per API key, shared by every listing with that key through this client
    /// (and its clones); 0 sends without limit.
    pub requests_per_minute: u32,
}

impl Default for ClientConfig {
    /// `https://api.ppio.com`, 5 s to connect, 30 s per request, 16 MiB bodies, 100 requests a minute
    /// per key.
    fn default() -> Self {
        ClientConfig {
            base_url: Url::parse("https://api.ppio.com").expect("constant URL is valid"),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            requests_per_minute: 100,
        }
    }
}

/// Filters and page size of a listing; empty filters are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Fuzzy match on instance name or ID.
    pub name: Option<String>,
    /// Remote status, e.g. `running`.
    pub status: Option<String>,
    /// Regions; sent comma-separated.
    pub regions: Vec<String>,
    /// Billing mode.
    pub billing_mode: Option<BillingMode>,
    /// Instances per page; 0 lets the server choose.
    pub page_size: u32,
}

/// Bounds on one listing, so a misbehaving server cannot keep the client paging or growing memory,
/// and how hard a page that fails transiently is retried within the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingLimits {
    /// Most pages fetched before the listing fails.
    pub max_pages: u32,
    /// Most instances accepted before the listing fails.
    pub max_instances: usize,
    /// Most body bytes, summed over the listing's pages, before the listing fails. Each body is also
    /// bounded by [`ClientConfig::max_body_bytes`]. Bodies of failed attempts do not count.
    pub max_listing_bytes: usize,
    /// Most requests for one page (the first try included) when it fails transiently: a 429, a
    /// 5xx, a timeout or a connection failure. 0 counts as 1, that is no retry.
    pub page_attempts: u32,
    /// Wait before the first retry of a page when the server did not say how long to wait; each
    /// further retry doubles it, and every wait is jittered down by up to half.
    pub retry_base: Duration,
    /// Longest wait before retrying a page. A 429 whose `Retry-After` asks for longer ends the
    /// listing at once with [`PpioError::RateLimited`], so the caller schedules the next try.
    pub max_retry_wait: Duration,
}

impl Default for ListingLimits {
    /// 1000 pages, 50 000 instances, 64 MiB in all; 3 attempts per page, retries from 500 ms,
    /// waits of at most 30 s.
    fn default() -> Self {
        ListingLimits {
            max_pages: 1000,
            max_instances: 50_000,
            max_listing_bytes: 64 * 1024 * 1024,
            page_attempts: 3,
            retry_base: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(30),
        }
    }
}

/// A complete listing: every page was fetched and checked, and the API key redacted from every
/// record.
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

    /// Fetches one page: one `GET /gpus/v2/instances`, without retrying. `cursor` is the previous
    /// page's `next_cursor`; `None` (or empty) for the first page. Echoes of the API key in the
    /// records are replaced by `[redacted]`; a record whose ID contains the key makes the page an
    /// invalid response.
    pub async fn list_page(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        cursor: Option<&str>,
    ) -> Result<Page, PpioError> {
        self.request_page(key, query, cursor, None, false)
            .await
            .map(|fetched| fetched.page)
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
    pub async fn list_all_instances(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        limits: &ListingLimits,
    ) -> Result<Listing, PpioError> {
        let mut paging = Paging::new(*limits, key);
        let mut instances = Vec::new();
        loop {
            let next = paging.next_page()?;
            let (number, cursor) = (next.number, next.cursor.map(str::to_owned));
            let budget = ListingBudget {
                remaining: next.remaining_bytes,
                limit: limits.max_listing_bytes,
            };
            let fetched = self
                .request_page_with_retries(
                    key,
                    query,
                    cursor.as_deref(),
                    number,
                    budget,
                    limits,
                    false,
                )
                .await
                .map_err(|error| match error {
                    PpioError::InvalidResponse { detail } => PpioError::InvalidResponse {
                        detail: format!("page {number}: {detail}"),
                    },
                    other => other,
                })?;
            let progress = paging.accept(&fetched.page, fetched.body_bytes)?;
            instances.extend(fetched.page.instances);
            if progress == Progress::Complete {
                break;
            }
        }
        let bytes = paging.bytes();
        let listing = Listing {
            instances,
            pages: paging.pages(),
        };
        tracing::debug!(
            pages = listing.pages,
            instances = listing.instances.len(),
            bytes,
            "listed all PPIO instances"
        );
        Ok(listing)
    }

    /// One page of a listing, asked for again while it fails transiently, as
    /// [`Client::list_all_instances`] describes.
    /// `paced` says the first request was already counted against the key's budget
    /// ([`Client::pace`]).
    #[allow(clippy::too_many_arguments)] // the state of one page of one listing
    pub(super) async fn request_page_with_retries(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        cursor: Option<&str>,
        page: u32,
        budget: ListingBudget,
        limits: &ListingLimits,
        mut paced: bool,
    ) -> Result<FetchedPage, PpioError> {
        let attempts = limits.page_attempts.max(1);
        let mut attempt: u32 = 1;
        loop {
            let request = self.request_page(key, query, cursor, Some(budget), paced);
            paced = false;
            let error = match request
                .instrument(tracing::debug_span!("ppio_list_page", page, attempt))
                .await
            {
                Ok(fetched) => return Ok(fetched),
                Err(error) => error,
            };
            if !error.is_transient() || attempt >= attempts {
                return Err(error);
            }
            let wait = match error.retry_after() {
                // The caller's own schedule handles long waits better than a blocked listing.
                Some(asked) if asked > limits.max_retry_wait => return Err(error),
                Some(asked) => asked,
                None => retry_backoff(
                    attempt,
                    limits.retry_base,
                    limits.max_retry_wait,
                    rand::rng().random(),
                ),
            };
            tracing::info!(
                page,
                attempt,
                attempts,
                reason = error.kind().as_str(),
                status = error.status_code(),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                %error,
                "a page of the PPIO listing failed; retrying it"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One request for one page, reported to the observer and logged. `budget`, within a listing,
    /// bounds the body further than [`ClientConfig::max_body_bytes`].
    async fn request_page(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        cursor: Option<&str>,
        budget: Option<ListingBudget>,
        paced: bool,
    ) -> Result<FetchedPage, PpioError> {
        let url = self.page_url(query, cursor);
        // The wait for the per-key budget is not the server's latency.
        if !paced {
            self.pace(key).await;
        }
        let started = Instant::now();
        let (status_code, result) = self.fetch_page(key, url, budget).await;
        let latency = started.elapsed();
        if let Some(observer) = &self.inner.observer {
            observer(&RequestOutcome {
                status_code,
                latency,
            });
        }
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(fetched) => tracing::debug!(
                status = status_code,
                instances = fetched.page.instances.len(),
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

    /// Sends one request and turns the answer into a redacted page or an error; also returns the
    /// status code, when there was a response, for logs and metrics.
    async fn fetch_page(
        &self,
        key: &ApiKey,
        url: Url,
        budget: Option<ListingBudget>,
    ) -> (Option<u16>, Result<FetchedPage, PpioError>) {
        let Ok(mut authorization) = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        else {
            // ApiKey::new already guarantees a valid header value.
            let detail = "the API key cannot be sent as an HTTP header".to_owned();
            return (None, Err(PpioError::InvalidConfig { detail }));
        };
        authorization.set_sensitive(true);
        let sent = self
            .inner
            .http
            .get(url)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return (None, Err(self.transport_error(error, key))),
        };
        let status = response.status();
        let result = if status.is_success() {
            let max_body = self.inner.max_body_bytes;
            let cap = budget.map_or(max_body, |budget| budget.remaining.min(max_body));
            match read_body(&mut response, cap).await {
                Ok(body) => decode_page(&body, key).map(|page| FetchedPage {
                    page,
                    body_bytes: body.len(),
                }),
                Err(BodyError::TooLarge) => Err(PpioError::InvalidResponse {
                    detail: match budget {
                        Some(budget) if budget.remaining < max_body => format!(
                            "the listing exceeded {} bytes; list fewer instances at once (narrower filters)",
                            budget.limit
                        ),
                        _ => format!("the response body is larger than the {max_body}-byte limit"),
                    },
                }),
                Err(BodyError::Transport(error)) => Err(self.transport_error(error, key)),
            }
        } else {
            Err(self.status_error(status, &mut response, key).await)
        };
        (Some(status.as_u16()), result)
    }

    /// The error for a non-2xx answer, with what the server said in its body.
    async fn status_error(
        &self,
        status: StatusCode,
        response: &mut Response,
        key: &ApiKey,
    ) -> PpioError {
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .map(|value| sanitize(&String::from_utf8_lossy(value.as_bytes()), key))
                .unwrap_or_default();
            return PpioError::InvalidResponse {
                detail: format!(
                    "the server redirected (HTTP {}) to {location:?}; redirects are not followed \
                     because they would carry the API key elsewhere: set the endpoint to the \
                     final URL",
                    status.as_u16()
                ),
            };
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Timestamp::now()));
        let cap = MAX_ERROR_BODY_BYTES.min(self.inner.max_body_bytes);
        let said = parse_error_body(&read_body_prefix(response, cap).await, key);
        tracing::debug!(status = status.as_u16(), server_said = %said, "PPIO refused the request");
        let status = status.as_u16();
        match status {
            401 => PpioError::Unauthorized,
            403 => PpioError::Forbidden,
            429 => PpioError::RateLimited { retry_after },
            400..=499 => PpioError::Rejected {
                status,
                code: said.code,
                message: said.message.unwrap_or_default(),
            },
            500..=599 => PpioError::ServerError {
                status,
                message: said.to_string(),
            },
            _ => PpioError::InvalidResponse {
                detail: format!("unexpected HTTP status {status}"),
            },
        }
    }

    /// Maps a failure of the HTTP stack. The URL is left out of the detail (the endpoint is named
    /// instead) so the error chain's cause fits within the length cap.
    fn transport_error(&self, error: reqwest::Error, key: &ApiKey) -> PpioError {
        if error.is_timeout() {
            return PpioError::Timeout;
        }
        let host = self.inner.base_url.host_str().unwrap_or_default();
        let detail = format!("{host}: {}", error_chain(&error.without_url()));
        PpioError::Unreachable {
            detail: sanitize(&detail, key),
        }
    }
}

/// What is left of a listing's byte budget, and the budget itself for the message.
#[derive(Debug, Clone, Copy)]
pub(super) struct ListingBudget {
    pub(super) remaining: usize,
    pub(super) limit: usize,
}

/// A page and the size of the body it came in.
pub(super) struct FetchedPage {
    pub(super) page: Page,
    pub(super) body_bytes: usize,
}

/// Decodes a 200 body into a page and redacts the API key from its records. A record whose ID holds
/// the key fails the page: it could only be mirrored under the key or under a made-up ID.
fn decode_page(body: &[u8], key: &ApiKey) -> Result<Page, PpioError> {
    let mut page = Page::from_json(body).map_err(|error| {
        let hint = error_body_sent_as_page(body, key)
            .map(|said| format!("; it looks like an error answer sent with HTTP 200: {said}"))
            .unwrap_or_default();
        PpioError::InvalidResponse {
            detail: sanitize(
                &format!("the list response does not decode: {error}{hint}"),
                key,
            ),
        }
    })?;
    let mut redacted = 0;
    for (index, instance) in page.instances.iter_mut().enumerate() {
        if key.appears_in(instance.id.as_str()) {
            return Err(PpioError::InvalidResponse {
                detail: format!(
                    "a record's ID contains the API key (record {} of the page), so it cannot be \
                     mirrored safely; the page was discarded",
                    index + 1
                ),
            });
        }
        redacted += instance.redact(key);
    }
    if redacted > 0 {
        tracing::debug!(
            strings = redacted,
            "PPIO records echoed the API key; replaced it with [redacted]"
        );
    }
    Ok(page)
}

/// What a 200 body that is not a page says, when it is shaped like an error (an object with no
/// `data` but a `code`, `message`, `error` or `reason`), as some gateways send them.
fn error_body_sent_as_page(body: &[u8], key: &ApiKey) -> Option<ServerMessage> {
    let serde_json::Value::Object(fields) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let error_like = !fields.contains_key("data")
        && ["code", "message", "error", "reason"]
            .iter()
            .any(|name| fields.contains_key(*name));
    error_like.then(|| parse_error_body(body, key))
}

/// How long to wait before retry number `retry` (1 for the first) of a page when the server did
/// not say: `base` doubled for each earlier retry, capped at `cap`, then scaled by a factor between
/// 0.5 and 1 from `jitter` (in `0.0..1.0`) so that views failing together do not retry together.
fn retry_backoff(retry: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1 << retry.saturating_sub(1).min(20));
    doubled.min(cap).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the whole body, chunk by chunk, failing as soon as it exceeds `cap` bytes.
async fn read_body(response: &mut Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length().unwrap_or(0);
    if usize::try_from(declared).map_or(true, |declared| declared > cap) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `cap` bytes of an error body; a body that cannot be read counts as empty, since
/// the status code alone already says what happened.
async fn read_body_prefix(response: &mut Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

/// An error and its causes, joined by `: `, skipping causes its message already contains.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, Uri};
    use futures::StreamExt;
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;

    const SECRET: &str = "sk_test_5e3c9d";

    fn key() -> ApiKey {
        ApiKey::new(SECRET).expect("valid key")
    }

    /// A canned answer of the test server.
    #[derive(Clone)]
    struct Canned {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<String>,
        delay: Duration,
        /// Pause before each chunk of a multi-chunk body.
        chunk_delay: Duration,
    }

    impl Canned {
        fn json(status: u16, body: serde_json::Value) -> Canned {
            Canned {
                status,
                headers: vec![("content-type", "application/json".to_owned())],
                body: vec![body.to_string()],
                delay: Duration::ZERO,
                chunk_delay: Duration::ZERO,
            }
        }

        fn page(ids: &[&str], next_cursor: &str, has_more: bool) -> Canned {
            let data: Vec<_> = ids.iter().map(|id| json!({"id": id})).collect();
            Canned::json(
                200,
                json!({"data": data, "next_cursor": next_cursor, "has_more": has_more, "total": 99}),
            )
        }

        fn text(status: u16, body: &str) -> Canned {
            Canned {
                status,
                headers: Vec::new(),
                body: vec![body.to_owned()],
                delay: Duration::ZERO,
                chunk_delay: Duration::ZERO,
            }
        }
    }

    /// What the test server received.
    #[derive(Clone, Debug)]
    struct Seen {
        path: String,
        raw_query: Option<String>,
        query: Vec<(String, String)>,
        headers: HeaderMap,
    }

    impl Seen {
        fn param(&self, name: &str) -> Option<&str> {
            self.query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        }
    }

    type Respond = Arc<dyn Fn(&str) -> Canned + Send + Sync>;

    #[derive(Clone)]
    struct Script {
        respond: Respond,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    /// A test server on 127.0.0.1 answering every request by the cursor it carries ("" for the
    /// first page).
    struct TestServer {
        url: Url,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl TestServer {
        async fn start(respond: impl Fn(&str) -> Canned + Send + Sync + 'static) -> TestServer {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let script = Script {
                respond: Arc::new(respond),
                seen: Arc::clone(&seen),
            };
            let router = Router::new().fallback(answer).with_state(script);
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("local address");
            tokio::spawn(async move { axum::serve(listener, router).await });
            TestServer {
                url: Url::parse(&format!("http://{address}/")).expect("server URL"),
                seen,
            }
        }

        /// Serves these pages by cursor; an unknown cursor is a 400.
        async fn with_pages(pages: Vec<(&'static str, Canned)>) -> TestServer {
            let pages: HashMap<&str, Canned> = pages.into_iter().collect();
            TestServer::start(move |cursor| {
                pages.get(cursor).cloned().unwrap_or_else(|| {
                    Canned::json(400, json!({"message": format!("unknown cursor {cursor}")}))
                })
            })
            .await
        }

        async fn answering(canned: Canned) -> TestServer {
            TestServer::start(move |_| canned.clone()).await
        }

        /// Answers the n-th request, whatever its cursor, with the n-th answer; the last answer
        /// repeats.
        async fn answering_in_turn(answers: Vec<Canned>) -> TestServer {
            let served = AtomicUsize::new(0);
            TestServer::start(move |_| {
                let n = served.fetch_add(1, Ordering::SeqCst);
                answers[n.min(answers.len() - 1)].clone()
            })
            .await
        }

        fn client(&self) -> Client {
            self.client_with(|_| {})
        }

        fn client_with(&self, adjust: impl FnOnce(&mut ClientConfig)) -> Client {
            let mut config = ClientConfig {
                base_url: self.url.clone(),
                ..ClientConfig::default()
            };
            adjust(&mut config);
            Client::new(config).expect("client")
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().expect("lock").clone()
        }
    }

    async fn answer(
        State(script): State<Script>,
        uri: Uri,
        RawQuery(raw_query): RawQuery,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let query: Vec<(String, String)> = raw_query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let cursor = query
            .iter()
            .find(|(name, _)| name == "cursor")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        script.seen.lock().expect("lock").push(Seen {
            path: uri.path().to_owned(),
            raw_query,
            query,
            headers,
        });
        let canned = (script.respond)(&cursor);
        tokio::time::sleep(canned.delay).await;
        let body = if canned.body.len() == 1 {
            Body::from(canned.body[0].clone())
        } else {
            let pause = canned.chunk_delay;
            let chunks = futures::stream::iter(canned.body).then(move |chunk| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, Infallible>(chunk)
            });
            Body::from_stream(chunks)
        };
        let mut response = axum::response::Response::builder().status(canned.status);
        for (name, value) in canned.headers {
            response = response.header(name, value);
        }
        response.body(body).expect("response")
    }

    fn ids(listing: &Listing) -> Vec<&str> {
        listing.instances.iter().map(|i| i.id.as_str()).collect()
    }

    async fn list_all(server: &TestServer, limits: ListingLimits) -> Result<Listing, PpioError> {
        server
            .client()
            .list_all_instances(&key(), &ListQuery::default(), &limits)
            .await
    }

    /// The default limits, but a failing page is not retried.
    fn no_retries() -> ListingLimits {
        ListingLimits {
            page_attempts: 1,
            ..ListingLimits::default()
        }
    }

    /// The default limits, with `attempts` per page and retries a few milliseconds apart.
    fn quick_retries(attempts: u32) -> ListingLimits {
        ListingLimits {
            page_attempts: attempts,
            retry_base: Duration::from_millis(5),
            ..ListingLimits::default()
        }
    }

    fn cursors_seen(server: &TestServer) -> Vec<Option<String>> {
        server
            .seen()
            .iter()
            .map(|s| s.param("cursor").map(str::to_owned))
            .collect()
    }

    fn invalid_detail(result: Result<Listing, PpioError>) -> String {
        match result {
            Err(PpioError::InvalidResponse { detail }) => detail,
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn lists_every_page_following_next_cursor() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a", "b"], "c1", true)),
            ("c1", Canned::page(&["c", "d"], "c2", true)),
            ("c2", Canned::page(&["e"], "", false)),
        ])
        .await;
        let query = ListQuery {
            page_size: 2,
            ..ListQuery::default()
        };
        let listing = server
            .client()
            .list_all_instances(&key(), &query, &ListingLimits::default())
            .await
            .expect("complete listing");
        assert_eq!(ids(&listing), ["a", "b", "c", "d", "e"]);
        assert_eq!(listing.pages, 3);
        let seen = server.seen();
        let cursors: Vec<_> = seen.iter().map(|s| s.param("cursor")).collect();
        assert_eq!(cursors, [None, Some("c1"), Some("c2")]);
        assert!(seen.iter().all(|s| s.param("limit") == Some("2")));
    }

    #[tokio::test]
    async fn a_last_page_that_still_sends_a_cursor_fails_the_listing() {
        let server = TestServer::with_pages(vec![("", Canned::page(&["a"], "stale", false))]).await;
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("contradictory last page");
        assert!(
            matches!(&error, PpioError::InvalidResponse { detail } if detail.contains("has_more false")),
            "{error:?}"
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn sends_filters_limit_and_bearer_key_as_the_server_receives_them() {
        let server = TestServer::answering(Canned::page(&[], "", false)).await;
        let query = ListQuery {
            name: Some("train & eval 100%".into()),
            status: Some("running".into()),
            regions: vec!["cn-east-1".into(), " ".into(), "us west".into()],
            billing_mode: Some(BillingMode::Prepaid),
            page_size: 50,
        };
        server
            .client()
            .list_page(&key(), &query, Some("c/+=1"))
            .await
            .expect("page");
        let seen = server.seen();
        let request = &seen[0];
        assert_eq!(request.path, "/gpus/v2/instances");
        assert_eq!(request.param("limit"), Some("50"));
        assert_eq!(request.param("cursor"), Some("c/+=1"));
        assert_eq!(request.param("name"), Some("train & eval 100%"));
        assert_eq!(request.param("status"), Some("running"));
        assert_eq!(request.param("regions"), Some("cn-east-1,us west"));
        assert_eq!(request.param("billing_mode"), Some("prepaid"));
        assert_eq!(request.query.len(), 6);
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("authorization"), Some("Bearer sk_test_5e3c9d"));
        assert_eq!(header("accept"), Some("application/json"));
        assert_eq!(
            header("user-agent"),
            Some(concat!("ppio-gpu-operator/", env!("CARGO_PKG_VERSION")))
        );
    }

    #[tokio::test]
    async fn leaves_out_empty_filters_zero_limit_and_first_page_cursor() {
        let server = TestServer::answering(Canned::page(&[], "", false)).await;
        let query = ListQuery {
            name: Some(String::new()),
            status: Some("  ".into()),
            regions: vec![String::new()],
            billing_mode: None,
            page_size: 0,
        };
        server
            .client()
            .list_page(&key(), &query, Some(""))
            .await
            .expect("page");
        assert_eq!(server.seen()[0].raw_query, None);
    }

    #[tokio::test]
    async fn keeps_a_path_prefix_of_the_endpoint() {
        let server = TestServer::answering(Canned::page(&["a"], "", false)).await;
        let client = server.client_with(|config| {
            config.base_url = config.base_url.join("proxy/ppio/").expect("URL");
        });
        client
            .list_page(&key(), &ListQuery::default(), None)
            .await
            .expect("page");
        assert_eq!(server.seen()[0].path, "/proxy/ppio/gpus/v2/instances");
    }

    #[tokio::test]
    async fn a_single_page_reports_cursor_and_has_more() {
        let server = TestServer::answering(Canned::page(&["a", "b"], "next-1", true)).await;
        let page = server
            .client()
            .list_page(&key(), &ListQuery::default(), None)
            .await
            .expect("page");
        assert_eq!(page.instances.len(), 2);
        assert_eq!(page.next_cursor.as_deref(), Some("next-1"));
        assert!(page.has_more);
    }

    #[tokio::test]
    async fn a_repeating_cursor_fails_the_listing() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a"], "c1", true)),
            ("c1", Canned::page(&["b"], "c2", true)),
            ("c2", Canned::page(&["c"], "c1", true)),
        ])
        .await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(
            detail.contains("page 3 gave a next_cursor already used"),
            "{detail}"
        );
        assert_eq!(server.seen().len(), 3);
    }

    #[tokio::test]
    async fn has_more_without_a_cursor_fails_the_listing() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a"], "c1", true)),
            ("c1", Canned::page(&["b"], "", true)),
        ])
        .await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(detail.contains("page 2 says more pages follow"), "{detail}");
    }

    #[tokio::test]
    async fn an_instance_id_seen_twice_across_pages_fails_the_listing() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a", "b"], "c1", true)),
            ("c1", Canned::page(&["c", "a"], "", false)),
        ])
        .await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(
            detail.starts_with("listing inconsistent: instance a"),
            "{detail}"
        );
        assert!(detail.contains("page 1 and again on page 2"), "{detail}");
    }

    #[tokio::test]
    async fn an_instance_id_seen_twice_within_a_page_fails_the_listing() {
        let server = TestServer::answering(Canned::page(&["a", "a"], "", false)).await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(detail.contains("page 1 and again on page 1"), "{detail}");
    }

    #[tokio::test]
    async fn a_listing_longer_than_max_pages_fails() {
        // Every page promises another, with a fresh cursor: only the page limit stops this.
        let server = TestServer::start(|cursor| {
            let n: u32 = cursor.parse().unwrap_or(0) + 1;
            Canned::page(&[&format!("i{n}")], &n.to_string(), true)
        })
        .await;
        let limits = ListingLimits {
            max_pages: 5,
            ..ListingLimits::default()
        };
        let detail = invalid_detail(list_all(&server, limits).await);
        assert!(detail.contains("did not end within 5 pages"), "{detail}");
        assert_eq!(server.seen().len(), 5);
    }

    #[tokio::test]
    async fn a_listing_of_exactly_max_pages_succeeds() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a"], "c1", true)),
            ("c1", Canned::page(&["b"], "", false)),
        ])
        .await;
        let limits = ListingLimits {
            max_pages: 2,
            max_instances: 2,
            ..ListingLimits::default()
        };
        let listing = list_all(&server, limits).await.expect("within limits");
        assert_eq!(listing.pages, 2);
    }

    #[tokio::test]
    async fn a_listing_with_more_than_max_instances_fails() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a", "b"], "c1", true)),
            ("c1", Canned::page(&["c"], "", false)),
        ])
        .await;
        let limits = ListingLimits {
            max_pages: 10,
            max_instances: 2,
            ..ListingLimits::default()
        };
        let detail = invalid_detail(list_all(&server, limits).await);
        assert!(
            detail.contains("more than 2 instances (page 2)"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn a_failing_later_page_fails_the_whole_listing() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a"], "c1", true)),
            ("c1", Canned::json(503, json!({"message": "maintenance"}))),
        ])
        .await;
        let error = list_all(&server, quick_retries(3))
            .await
            .expect_err("incomplete listing");
        assert_eq!(
            error,
            PpioError::ServerError {
                status: 503,
                message: "maintenance".into()
            }
        );
        assert_eq!(server.seen().len(), 4, "page 2 was tried 3 times");
    }

    #[tokio::test]
    async fn a_401_is_unauthorized() {
        let server = TestServer::answering(Canned::json(
            401,
            json!({"code": 401, "reason": "UNAUTHORIZED", "message": "invalid api key"}),
        ))
        .await;
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("401");
        assert_eq!(error, PpioError::Unauthorized);
        assert_eq!(error.kind().as_str(), "AuthFailed");
    }

    #[tokio::test]
    async fn a_403_is_forbidden() {
        let server = TestServer::answering(Canned::text(403, "forbidden")).await;
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("403");
        assert_eq!(error, PpioError::Forbidden);
    }

    #[tokio::test]
    async fn a_429_carries_the_retry_after_it_was_sent() {
        let mut canned = Canned::json(429, json!({"reason": "RATE_LIMIT_EXCEEDED"}));
        canned.headers.push(("retry-after", "17".into()));
        let server = TestServer::answering(canned).await;
        let error = list_all(&server, no_retries()).await.expect_err("429");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(17)));
        assert!(error.is_transient());
        assert_eq!(error.status_code(), Some(429));
    }

    #[tokio::test]
    async fn a_429_without_retry_after_leaves_the_wait_to_the_caller() {
        let server = TestServer::answering(Canned::text(429, "")).await;
        let error = list_all(&server, no_retries()).await.expect_err("429");
        assert_eq!(error, PpioError::RateLimited { retry_after: None });
    }

    #[tokio::test]
    async fn a_500_is_a_transient_server_error_with_its_message() {
        let server =
            TestServer::answering(Canned::json(500, json!({"error": {"message": "db down"}})))
                .await;
        let error = list_all(&server, no_retries()).await.expect_err("500");
        assert_eq!(
            error,
            PpioError::ServerError {
                status: 500,
                message: "db down".into()
            }
        );
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn resource_not_found_sent_as_400_is_a_rejection_with_code() {
        let server = TestServer::answering(Canned::json(
            400,
            json!({"code": 400, "reason": "RESOURCE_NOT_FOUND", "message": "region not found"}),
        ))
        .await;
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("400");
        assert_eq!(
            error,
            PpioError::Rejected {
                status: 400,
                code: Some("RESOURCE_NOT_FOUND".into()),
                message: "region not found".into()
            }
        );
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn an_api_key_echoed_by_the_server_never_reaches_the_error() {
        let echo = format!("key Bearer {SECRET} is not valid for {SECRET}");
        for status in [400, 502] {
            let server =
                TestServer::answering(Canned::json(status, json!({"message": echo}))).await;
            let error = list_all(&server, no_retries())
                .await
                .expect_err("error status");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(
                shown.contains("key Bearer [redacted] is not valid"),
                "{shown}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_json_is_an_invalid_response() {
        let server = TestServer::answering(Canned::text(200, r#"{"data": [{"id": "a"}"#)).await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(
            detail.starts_with("page 1: the list response does not decode"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn a_bad_field_is_an_invalid_response_naming_it() {
        let server = TestServer::answering(Canned::json(
            200,
            json!({"data": [{"id": "a", "resource_specs": {"gpu_num": "two"}}], "has_more": false}),
        ))
        .await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(
            detail.contains("data[0].resource_specs.gpu_num"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_an_invalid_response() {
        let big = Canned::page(&["a"; 1], &"x".repeat(4096), false);
        let server = TestServer::answering(big).await;
        let client = server.client_with(|config| config.max_body_bytes = 1024);
        let error = client
            .list_all_instances(&key(), &ListQuery::default(), &ListingLimits::default())
            .await;
        assert!(invalid_detail(error).contains("larger than the 1024-byte limit"));
    }

    #[tokio::test]
    async fn a_streamed_body_over_the_limit_is_an_invalid_response() {
        // Chunked, so no Content-Length warns in advance: the cap must hold while reading.
        let mut chunks = vec![r#"{"data": [], "has_more": false, "padding": ""#.to_owned()];
        chunks.extend(std::iter::repeat_n("y".repeat(512), 8));
        chunks.push(r#""}"#.to_owned());
        let canned = Canned {
            status: 200,
            headers: Vec::new(),
            body: chunks,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
        };
        let server = TestServer::answering(canned).await;
        let client = server.client_with(|config| config.max_body_bytes = 2048);
        let error = client
            .list_all_instances(&key(), &ListQuery::default(), &ListingLimits::default())
            .await;
        assert!(invalid_detail(error).contains("larger than the 2048-byte limit"));

        let roomy = server.client_with(|config| config.max_body_bytes = 8192);
        roomy
            .list_all_instances(&key(), &ListQuery::default(), &ListingLimits::default())
            .await
            .expect("the same body fits a larger limit");
    }

    #[tokio::test]
    async fn a_server_slower_than_the_request_timeout_is_a_timeout() {
        let mut slow = Canned::page(&["a"], "", false);
        slow.delay = Duration::from_secs(3);
        let server = TestServer::answering(slow).await;
        let client = server.client_with(|config| {
            config.request_timeout = Duration::from_millis(300);
        });
        let started = Instant::now();
        let error = client
            .list_all_instances(&key(), &ListQuery::default(), &no_retries())
            .await
            .expect_err("timeout");
        assert_eq!(error, PpioError::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_body_that_stalls_past_the_request_timeout_is_a_timeout() {
        let canned = Canned {
            status: 200,
            headers: Vec::new(),
            body: vec![r#"{"data": ["#.to_owned(), "]}".to_owned()],
            delay: Duration::ZERO,
            chunk_delay: Duration::from_secs(3),
        };
        let server = TestServer::answering(canned).await;
        let client = server.client_with(|config| {
            config.request_timeout = Duration::from_millis(300);
        });
        let error = client
            .list_page(&key(), &ListQuery::default(), None)
            .await
            .expect_err("timeout while reading the body");
        assert_eq!(error, PpioError::Timeout);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let client = Client::new(ClientConfig {
            base_url: Url::parse(&format!("http://{address}/")).expect("URL"),
            ..ClientConfig::default()
        })
        .expect("client");
        let error = client
            .list_page(&key(), &ListQuery::default(), None)
            .await
            .expect_err("connection refused");
        let PpioError::Unreachable { detail } = &error else {
            panic!("expected Unreachable, got {error:?}");
        };
        assert!(detail.starts_with("127.0.0.1: "), "{detail}");
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_so_the_key_stays_home() {
        let elsewhere = TestServer::answering(Canned::page(&["stolen"], "", false)).await;
        let mut redirect = Canned::text(302, "");
        redirect
            .headers
            .push(("location", elsewhere.url.to_string()));
        let server = TestServer::answering(redirect).await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(detail.contains("redirected (HTTP 302)"), "{detail}");
        assert!(elsewhere.seen().is_empty());
    }

    #[tokio::test]
    async fn the_observer_sees_every_request_with_its_status_retries_included() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a"], "c1", true)),
            ("c1", Canned::text(500, "boom")),
        ])
        .await;
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&outcomes);
        let client = server.client().with_request_observer(move |outcome| {
            recorded.lock().expect("lock").push(outcome.status_code);
        });
        let _ = client
            .list_all_instances(&key(), &ListQuery::default(), &quick_retries(2))
            .await;
        assert_eq!(
            *outcomes.lock().expect("lock"),
            [Some(200), Some(500), Some(500)]
        );
    }

    /// Captures everything logged, at every level, while it is the default subscriber.
    #[derive(Clone, Default)]
    struct LogCapture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogCapture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn debug_logs_never_contain_the_key_or_the_authorization_header() {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // With a single scoped subscriber, tracing caches a callsite's interest from whichever
        // thread hits it first, so a test on another thread could disable these events here. A
        // second live dispatcher makes every callsite ask the current thread's subscriber.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

        let echo = format!("bad key {SECRET}");
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a"], "c1", true)),
            ("c1", Canned::json(401, json!({"message": echo}))),
        ])
        .await;
        let _ = list_all(&server, ListingLimits::default()).await;

        let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("UTF-8");
        assert!(logs.contains("listed a page of PPIO instances"), "{logs}");
        assert!(logs.contains("bad key [redacted]"), "{logs}");
        assert!(!logs.contains(SECRET), "{logs}");
        assert!(!logs.to_lowercase().contains("authorization"), "{logs}");
    }

    // --- A 200 answer must be a whole page ---

    #[tokio::test]
    async fn a_200_body_without_data_or_has_more_is_an_invalid_response_naming_what_is_missing() {
        let cases = [
            (json!({}), "`data` is missing and `has_more` is missing"),
            (
                json!({"data": null}),
                "`data` is null and `has_more` is missing",
            ),
            (
                json!({"total": 0}),
                "`data` is missing and `has_more` is missing",
            ),
            (json!({"data": null, "has_more": false}), "`data` is null;"),
            (json!({"data": [{"id": "a"}]}), "`has_more` is missing;"),
            (json!({"data": [], "has_more": null}), "`has_more` is null;"),
        ];
        for (body, problem) in cases {
            let server = TestServer::answering(Canned::json(200, body.clone())).await;
            let detail = invalid_detail(list_all(&server, quick_retries(3)).await);
            assert!(
                detail.starts_with("page 1: the list response does not decode: not a list page"),
                "{body}: {detail}"
            );
            assert!(detail.contains(problem), "{body}: {detail}");
            assert_eq!(server.seen().len(), 1, "{body}: not retried");
        }
    }

    #[tokio::test]
    async fn a_gateway_error_sent_with_status_200_is_an_invalid_response_quoting_it() {
        let body = json!({"code": 500, "reason": "INTERNAL_SERVER_ERROR",
            "message": format!("upstream failed for Bearer {SECRET}")});
        let server = TestServer::answering(Canned::json(200, body)).await;
        let error = list_all(&server, quick_retries(3)).await;
        let shown = format!("{error:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        let detail = invalid_detail(error);
        assert!(
            detail.contains(
                "it looks like an error answer sent with HTTP 200: INTERNAL_SERVER_ERROR: \
                 upstream failed for Bearer [redacted]"
            ),
            "{detail}"
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn an_empty_object_as_a_later_page_fails_the_listing_instead_of_ending_it() {
        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a", "b"], "c1", true)),
            ("c1", Canned::json(200, json!({}))),
        ])
        .await;
        let detail = invalid_detail(list_all(&server, ListingLimits::default()).await);
        assert!(detail.starts_with("page 2: "), "{detail}");
    }

    #[tokio::test]
    async fn an_empty_data_array_with_has_more_false_is_a_complete_empty_listing() {
        let server =
            TestServer::answering(Canned::json(200, json!({"data": [], "has_more": false}))).await;
        let listing = list_all(&server, ListingLimits::default())
            .await
            .expect("an empty account lists as empty");
        assert!(listing.instances.is_empty());
        assert_eq!(listing.pages, 1);
    }

    // --- Retrying a page within a listing ---

    #[tokio::test]
    async fn a_transiently_failing_page_is_retried_with_the_same_cursor() {
        let tries = AtomicUsize::new(0);
        let server = TestServer::start(move |cursor| match cursor {
            "" => Canned::page(&["a"], "c1", true),
            _ => match tries.fetch_add(1, Ordering::SeqCst) {
                0 => Canned::json(503, json!({"message": "maintenance"})),
                1 => Canned::text(429, ""),
                _ => Canned::page(&["b"], "", false),
            },
        })
        .await;
        let listing = list_all(&server, quick_retries(3))
            .await
            .expect("the third try of page 2 succeeds");
        assert_eq!(ids(&listing), ["a", "b"]);
        assert_eq!(listing.pages, 2);
        let c1 = Some("c1".to_owned());
        assert_eq!(cursors_seen(&server), [None, c1.clone(), c1.clone(), c1]);
    }

    #[tokio::test]
    async fn retries_stop_after_page_attempts_and_return_the_last_error() {
        let server = TestServer::answering_in_turn(vec![
            Canned::text(500, "first"),
            Canned::text(502, "second"),
            Canned::text(504, "third"),
            Canned::page(&["a"], "", false),
        ])
        .await;
        let limits = ListingLimits {
            retry_base: Duration::from_millis(100),
            ..quick_retries(3)
        };
        let started = Instant::now();
        let error = list_all(&server, limits).await.expect_err("3 failures");
        assert_eq!(
            error,
            PpioError::ServerError {
                status: 504,
                message: "third".into()
            }
        );
        assert_eq!(server.seen().len(), 3);
        // Backoff of at least half of 100 ms, then of 200 ms.
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn zero_page_attempts_still_tries_once() {
        let server = TestServer::answering(Canned::text(503, "")).await;
        let error = list_all(&server, quick_retries(0)).await.expect_err("503");
        assert_eq!(error.status_code(), Some(503));
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn errors_that_are_not_transient_are_never_retried() {
        let mut redirect = Canned::text(302, "");
        redirect
            .headers
            .push(("location", "http://elsewhere/".into()));
        for canned in [
            Canned::json(400, json!({"reason": "VALIDATOR_PARAM"})),
            Canned::text(401, ""),
            Canned::text(403, ""),
            Canned::text(404, ""),
            Canned::text(200, "{not json"),
            Canned::json(200, json!({})),
            redirect,
        ] {
            let status = canned.status;
            let server = TestServer::answering(canned).await;
            let error = list_all(&server, quick_retries(5))
                .await
                .expect_err("error");
            assert!(!error.is_transient(), "{status}: {error:?}");
            assert_eq!(server.seen().len(), 1, "{status}: {error:?}");
        }
    }

    #[tokio::test]
    async fn a_timed_out_page_is_retried() {
        let mut slow = Canned::page(&["late"], "", false);
        slow.delay = Duration::from_secs(10);
        let server =
            TestServer::answering_in_turn(vec![slow, Canned::page(&["a"], "", false)]).await;
        let client = server.client_with(|config| {
            config.request_timeout = Duration::from_secs(2);
        });
        let listing = client
            .list_all_instances(&key(), &ListQuery::default(), &quick_retries(2))
            .await
            .expect("the second try answers in time");
        assert_eq!(ids(&listing), ["a"]);
        assert_eq!(server.seen().len(), 2);
    }

    #[tokio::test]
    async fn a_connection_failure_is_retried_then_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&tries);
        let client = Client::new(ClientConfig {
            base_url: Url::parse(&format!("http://{address}/")).expect("URL"),
            ..ClientConfig::default()
        })
        .expect("client")
        .with_request_observer(move |outcome| {
            assert_eq!(outcome.status_code, None);
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let error = client
            .list_all_instances(&key(), &ListQuery::default(), &quick_retries(3))
            .await
            .expect_err("connection refused");
        assert!(matches!(error, PpioError::Unreachable { .. }), "{error:?}");
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_429_is_retried_after_its_retry_after_not_the_backoff() {
        let mut limited = Canned::text(429, "");
        limited.headers.push(("retry-after", "1".into()));
        let server =
            TestServer::answering_in_turn(vec![limited, Canned::page(&["a"], "", false)]).await;
        // A backoff would wait at least 20 s: only honouring Retry-After finishes in time.
        let limits = ListingLimits {
            retry_base: Duration::from_secs(40),
            max_retry_wait: Duration::from_secs(60),
            ..ListingLimits::default()
        };
        let started = Instant::now();
        let listing = tokio::time::timeout(Duration::from_secs(10), list_all(&server, limits))
            .await
            .expect("retried after Retry-After, not after the backoff")
            .expect("the second try succeeds");
        assert_eq!(ids(&listing), ["a"]);
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(server.seen().len(), 2);
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_max_retry_wait_ends_the_listing_at_once() {
        let mut limited = Canned::text(429, "");
        limited.headers.push(("retry-after", "31".into()));
        let server =
            TestServer::answering_in_turn(vec![limited, Canned::page(&["a"], "", false)]).await;
        let started = Instant::now();
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("left to the caller");
        assert_eq!(
            error,
            PpioError::RateLimited {
                retry_after: Some(Duration::from_secs(31))
            }
        );
        assert_eq!(server.seen().len(), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn backoff_doubles_from_retry_base_capped_and_jittered_down_by_at_most_half() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(retry_backoff(1, base, cap, 1.0)), 500);
        assert_eq!(ms(retry_backoff(1, base, cap, 0.0)), 250);
        assert_eq!(ms(retry_backoff(2, base, cap, 1.0)), 1000);
        assert_eq!(ms(retry_backoff(3, base, cap, 0.5)), 1500);
        assert_eq!(ms(retry_backoff(10, base, cap, 1.0)), 30_000);
        assert_eq!(ms(retry_backoff(u32::MAX, base, cap, 0.0)), 15_000);
        assert_eq!(retry_backoff(1, Duration::ZERO, cap, 0.7), Duration::ZERO);
    }

    // --- The listing's byte budget ---

    fn three_pages() -> (Vec<(&'static str, Canned)>, usize) {
        let pages = vec![
            ("", Canned::page(&["a"], "c1", true)),
            ("c1", Canned::page(&["b"], "c2", true)),
            ("c2", Canned::page(&["c"], "", false)),
        ];
        let total = pages.iter().map(|(_, c)| c.body[0].len()).sum();
        (pages, total)
    }

    #[tokio::test]
    async fn a_listing_of_exactly_max_listing_bytes_succeeds() {
        let (pages, total) = three_pages();
        let server = TestServer::with_pages(pages).await;
        let limits = ListingLimits {
            max_listing_bytes: total,
            ..ListingLimits::default()
        };
        let listing = list_all(&server, limits).await.expect("within budget");
        assert_eq!(ids(&listing), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_listing_over_max_listing_bytes_fails_asking_to_narrow_the_filter() {
        let (pages, total) = three_pages();
        let server = TestServer::with_pages(pages).await;
        let limits = ListingLimits {
            max_listing_bytes: total - 1,
            ..quick_retries(3)
        };
        let detail = invalid_detail(list_all(&server, limits).await);
        assert_eq!(
            detail,
            format!(
                "page 3: the listing exceeded {} bytes; list fewer instances at once (narrower filters)",
                total - 1
            )
        );
        assert_eq!(server.seen().len(), 3, "not retried");
    }

    #[tokio::test]
    async fn a_single_body_over_max_body_bytes_names_the_body_limit_not_the_budget() {
        let server = TestServer::answering(Canned::page(&["a"; 1], &"x".repeat(4096), false)).await;
        let client = server.client_with(|config| config.max_body_bytes = 1024);
        let error = client
            .list_all_instances(&key(), &ListQuery::default(), &ListingLimits::default())
            .await;
        assert_eq!(
            invalid_detail(error),
            "page 1: the response body is larger than the 1024-byte limit"
        );
    }

    // --- The API key never reaches a returned record ---

    #[tokio::test]
    async fn the_api_key_echoed_in_records_is_redacted_before_they_are_returned() {
        let echo = format!("started with --token {SECRET}");
        let record = json!({"id": "a", "name": format!("job-{SECRET}"), "command": echo,
            "status": {"status": "exited", "message": echo},
            "ports": [{"port": 80, "endpoint": format!("https://h/?key={SECRET}")}]});
        let body = json!({"data": [record], "has_more": false});
        let server = TestServer::answering(Canned::json(200, body)).await;
        let listing = list_all(&server, ListingLimits::default())
            .await
            .expect("listing");
        let shown = format!("{listing:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        let instance = &listing.instances[0];
        assert_eq!(instance.name, "job-[redacted]");
        assert_eq!(instance.command, "started with --token [redacted]");
        assert_eq!(instance.ports[0].endpoint, "https://h/?key=[redacted]");

        let page = server
            .client()
            .list_page(&key(), &ListQuery::default(), None)
            .await
            .expect("page");
        assert!(!format!("{page:?}").contains(SECRET));
    }

    #[test]
    fn a_key_sent_as_a_numeric_field_leaves_no_fragment_in_the_decode_error() {
        let secret = "sk_live_0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"; // 48 characters
        let key = ApiKey::new(secret).expect("valid key");
        let body = json!({"data": [{"id": "a", "resource_specs": {"memory_gb": secret}}],
            "has_more": false});
        let error = decode_page(body.to_string().as_bytes(), &key).expect_err("not a number");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("memory_gb"), "{shown}");
        for run in secret.as_bytes().windows(8) {
            let run = std::str::from_utf8(run).expect("ASCII");
            assert!(!shown.contains(run), "{run:?} shows in {shown}");
        }
    }

    #[tokio::test]
    async fn a_record_whose_id_contains_the_api_key_fails_the_page() {
        let body = json!({"data": [{"id": "ok"}, {"id": format!("id-{SECRET}")}],
            "has_more": false});
        let server = TestServer::answering(Canned::json(200, body)).await;
        let error = list_all(&server, quick_retries(3)).await;
        assert!(!format!("{error:?}").contains(SECRET));
        let detail = invalid_detail(error);
        assert!(
            detail.starts_with("page 1: a record's ID contains the API key (record 2 of the page)"),
            "{detail}"
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn each_retry_is_logged_at_info_with_page_attempt_and_reason_but_never_the_key() {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // See debug_logs_never_contain_the_key_or_the_authorization_header.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

        let server = TestServer::with_pages(vec![
            ("", Canned::page(&["a"], "c1", true)),
            (
                "c1",
                Canned::json(503, json!({"message": format!("key {SECRET} overloaded")})),
            ),
        ])
        .await;
        let _ = list_all(&server, quick_retries(3)).await;

        let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("UTF-8");
        let retries: Vec<&str> = logs
            .lines()
            .filter(|line| line.contains("retrying it"))
            .collect();
        assert_eq!(retries.len(), 2, "{logs}");
        for (line, attempt) in retries.iter().zip(1..) {
            assert!(line.contains(" INFO "), "{line}");
            assert!(line.contains("page=2"), "{line}");
            assert!(
                line.contains(&format!("attempt={attempt} attempts=3")),
                "{line}"
            );
            assert!(line.contains("reason=\"ApiUnavailable\""), "{line}");
            assert!(line.contains("key [redacted] overloaded"), "{line}");
        }
        assert!(!logs.contains(SECRET), "{logs}");
    }

    #[test]
    fn rejects_endpoints_that_are_not_plain_http_urls() {
        for endpoint in [
            "ftp://api.ppio.com",
            "https://user:pass@api.ppio.com",
            "https://api.ppio.com/?x=1",
            "mailto:ops@ppio.com",
        ] {
            let config = ClientConfig {
                base_url: Url::parse(endpoint).expect("URL"),
                ..ClientConfig::default()
            };
            let error = Client::new(config).expect_err(endpoint);
            assert_eq!(error.kind().as_str(), "InvalidConfig", "{endpoint}");
        }
    }

    #[test]
    fn rejects_zero_timeouts_and_body_limit() {
        let zero_timeout = ClientConfig {
            request_timeout: Duration::ZERO,
            ..ClientConfig::default()
        };
        assert!(Client::new(zero_timeout).is_err());
        let zero_body = ClientConfig {
            max_body_bytes: 0,
            ..ClientConfig::default()
        };
        assert!(Client::new(zero_body).is_err());
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = ClientConfig::default();
        assert_eq!(config.base_url.as_str(), "https://api.ppio.com/");
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(
            ListingLimits::default(),
            ListingLimits {
                max_pages: 1000,
                max_instances: 50_000,
                max_listing_bytes: 64 * 1024 * 1024,
                page_attempts: 3,
                retry_base: Duration::from_millis(500),
                max_retry_wait: Duration::from_secs(30),
            }
        );
        let client = Client::new(config).expect("default client");
        assert_eq!(client.base_url().as_str(), "https://api.ppio.com/");
        assert!(!format!("{client:?}").contains("Bearer"));
    }
}
