//! HTTP client for the PPIO GPU API v2 list call (`GET /gpus/v2/instances`): one page, or a whole
//! listing paged through with guards against servers that page forever, loop or contradict
//! themselves.
//!
//! It does not retry: every error says whether it is transient and how long the server asked to
//! wait, and the caller owns the backoff. It never follows redirects, which would carry the bearer
//! token to another host. It never logs the key or the `Authorization` header.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use tracing::Instrument;
use url::Url;

use super::api_key::ApiKey;
use super::error::{PpioError, parse_error_body, parse_retry_after, sanitize};
use super::model::{BillingMode, Instance, InstanceId, Page};

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
    /// Largest response body accepted; a larger one is an invalid response.
    pub max_body_bytes: usize,
}

impl Default for ClientConfig {
    /// `https://api.ppio.com`, 5 s to connect, 30 s per request, 32 MiB bodies.
    fn default() -> Self {
        ClientConfig {
            base_url: Url::parse("https://api.ppio.com").expect("constant URL is valid"),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 32 * 1024 * 1024,
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

/// Bounds on one listing, so a misbehaving server cannot keep the client paging or growing memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingLimits {
    /// Most pages fetched before the listing fails.
    pub max_pages: u32,
    /// Most instances accepted before the listing fails.
    pub max_instances: usize,
}

impl Default for ListingLimits {
    /// 1000 pages, 50 000 instances.
    fn default() -> Self {
        ListingLimits {
            max_pages: 1000,
            max_instances: 50_000,
        }
    }
}

/// A complete listing: every page was fetched and checked.
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

    /// The endpoint root this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Fetches one page: one `GET /gpus/v2/instances`. `cursor` is the previous page's
    /// `next_cursor`; `None` (or empty) for the first page.
    pub async fn list_page(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        cursor: Option<&str>,
    ) -> Result<Page, PpioError> {
        let url = self.page_url(query, cursor);
        let started = Instant::now();
        let (status_code, result) = self.fetch_page(key, url).await;
        let latency = started.elapsed();
        if let Some(observer) = &self.inner.observer {
            observer(&RequestOutcome {
                status_code,
                latency,
            });
        }
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(page) => tracing::debug!(
                status = status_code,
                instances = page.instances.len(),
                has_more = page.has_more,
                latency_ms,
                "listed a page of PPIO instances"
            ),
            Err(error) => tracing::debug!(
                status = status_code,
                reason = error.reason(),
                %error,
                latency_ms,
                "listing a page of PPIO instances failed"
            ),
        }
        result
    }

    /// Fetches every page and checks the listing is whole: it fails, rather than returning part of
    /// the instances, when the server says more pages follow but gives no cursor, repeats a cursor,
    /// sends an instance ID twice, or exceeds `limits`. An `Err` therefore always means "incomplete,
    /// do not prune". It does not retry.
    pub async fn list_all_instances(
        &self,
        key: &ApiKey,
        query: &ListQuery,
        limits: &ListingLimits,
    ) -> Result<Listing, PpioError> {
        let invalid = |detail: String| PpioError::InvalidResponse { detail };
        let mut instances: Vec<Instance> = Vec::new();
        let mut page_of_id: HashMap<InstanceId, u32> = HashMap::new();
        let mut seen_cursors: HashSet<String> = HashSet::new();
        let mut cursor: Option<String> = None;
        let mut pages: u32 = 0;
        loop {
            if pages >= limits.max_pages {
                return Err(invalid(format!(
                    "the listing did not end within {} pages; stopped so as not to page forever \
                     (raise the page size if the account really has that many instances)",
                    limits.max_pages
                )));
            }
            let number = pages + 1;
            let page = self
                .list_page(key, query, cursor.as_deref())
                .instrument(tracing::debug_span!("ppio_list_page", page = number))
                .await
                .map_err(|error| match error {
                    PpioError::InvalidResponse { detail } => {
                        invalid(format!("page {number}: {detail}"))
                    }
                    other => other,
                })?;
            pages = number;
            if instances.len() + page.instances.len() > limits.max_instances {
                return Err(invalid(format!(
                    "the listing holds more than {} instances (page {number}); stopped to bound \
                     memory",
                    limits.max_instances
                )));
            }
            for instance in page.instances {
                if let Some(first) = page_of_id.insert(instance.id.clone(), number) {
                    return Err(invalid(format!(
                        "listing inconsistent: instance {} appears on page {first} and again on \
                         page {number}; the list changed while paging or the server pages \
                         incorrectly",
                        sanitize(instance.id.as_str(), key)
                    )));
                }
                instances.push(instance);
            }
            if !page.has_more {
                break;
            }
            let Some(next) = page.next_cursor else {
                return Err(invalid(format!(
                    "page {number} says more pages follow (has_more) but gives no next_cursor"
                )));
            };
            if !seen_cursors.insert(next.clone()) {
                return Err(invalid(format!(
                    "page {number} gave a next_cursor already used in this listing; the server \
                     is paging in a loop"
                )));
            }
            cursor = Some(next);
        }
        tracing::debug!(
            pages,
            instances = instances.len(),
            "listed all PPIO instances"
        );
        Ok(Listing { instances, pages })
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

    /// Sends one request and turns the answer into a page or an error; also returns the status
    /// code, when there was a response, for logs and metrics.
    async fn fetch_page(&self, key: &ApiKey, url: Url) -> (Option<u16>, Result<Page, PpioError>) {
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
            match read_body(&mut response, self.inner.max_body_bytes).await {
                Ok(body) => Page::from_json(&body).map_err(|error| PpioError::InvalidResponse {
                    detail: sanitize(&format!("the list response does not decode: {error}"), key),
                }),
                Err(BodyError::TooLarge) => Err(PpioError::InvalidResponse {
                    detail: format!(
                        "the response body is larger than the {}-byte limit",
                        self.inner.max_body_bytes
                    ),
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
    use std::convert::Infallible;
    use std::sync::Mutex;

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
    async fn stops_when_has_more_is_false_even_if_a_cursor_is_sent() {
        let server = TestServer::with_pages(vec![("", Canned::page(&["a"], "stale", false))]).await;
        let listing = list_all(&server, ListingLimits::default())
            .await
            .expect("complete listing");
        assert_eq!(ids(&listing), ["a"]);
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
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("incomplete listing");
        assert_eq!(
            error,
            PpioError::ServerError {
                status: 503,
                message: "maintenance".into()
            }
        );
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
        assert_eq!(error.reason(), "AuthFailed");
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
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("429");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(17)));
        assert!(error.is_transient());
        assert_eq!(error.status_code(), Some(429));
    }

    #[tokio::test]
    async fn a_429_without_retry_after_leaves_the_wait_to_the_caller() {
        let server = TestServer::answering(Canned::text(429, "")).await;
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("429");
        assert_eq!(error, PpioError::RateLimited { retry_after: None });
    }

    #[tokio::test]
    async fn a_500_is_a_transient_server_error_with_its_message() {
        let server =
            TestServer::answering(Canned::json(500, json!({"error": {"message": "db down"}})))
                .await;
        let error = list_all(&server, ListingLimits::default())
            .await
            .expect_err("500");
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
            let error = list_all(&server, ListingLimits::default())
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
            json!({"data": [{"id": "a", "resource_specs": {"gpu_num": "two"}}]}),
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
        let mut chunks = vec![r#"{"data": [], "padding": ""#.to_owned()];
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
            .list_all_instances(&key(), &ListQuery::default(), &ListingLimits::default())
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
    async fn the_observer_sees_every_request_with_its_status() {
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
            .list_all_instances(&key(), &ListQuery::default(), &ListingLimits::default())
            .await;
        assert_eq!(*outcomes.lock().expect("lock"), [Some(200), Some(500)]);
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
            assert_eq!(error.reason(), "InvalidConfig", "{endpoint}");
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
        assert_eq!(config.max_body_bytes, 32 * 1024 * 1024);
        let limits = ListingLimits::default();
        assert_eq!((limits.max_pages, limits.max_instances), (1000, 50_000));
        let client = Client::new(config).expect("default client");
        assert_eq!(client.base_url().as_str(), "https://api.ppio.com/");
        assert!(!format!("{client:?}").contains("Bearer"));
    }
}
