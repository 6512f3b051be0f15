//! Tests of the client against a canned HTTP server of its own.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Uri};
use futures::StreamExt;
use serde_json::json;
use tokio::net::TcpListener;

use super::transport::decode_page;
use super::*;
use crate::model::BillingMode;
use crate::{ListingMemo, RecordSummary};

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
    let server = TestServer::with_pages(vec![
        ("", Canned::page(&["a"], "c/+=1", true)),
        ("c/+=1", Canned::page(&[], "", false)),
    ])
    .await;
    let query = ListQuery {
        name: Some("train & eval 100%".into()),
        status: Some("running".into()),
        regions: vec!["cn-east-1".into(), " ".into(), "us west".into()],
        billing_mode: Some(BillingMode::Prepaid),
        page_size: 50,
    };
    server
        .client()
        .list_all_instances(&key(), &query, &ListingLimits::default())
        .await
        .expect("listing");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let request = &seen[1];
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
        .list_all_instances(&key(), &query, &ListingLimits::default())
        .await
        .expect("listing");
    assert_eq!(server.seen()[0].raw_query, None);
}

#[tokio::test]
async fn keeps_a_path_prefix_of_the_endpoint() {
    let server = TestServer::answering(Canned::page(&["a"], "", false)).await;
    let client = server.client_with(|config| {
        config.base_url = config.base_url.join("proxy/ppio/").expect("URL");
    });
    client
        .list_all_instances(&key(), &ListQuery::default(), &ListingLimits::default())
        .await
        .expect("listing");
    assert_eq!(server.seen()[0].path, "/proxy/ppio/gpus/v2/instances");
}

#[tokio::test]
async fn a_page_that_says_more_follow_is_followed_by_its_cursor() {
    let server = TestServer::with_pages(vec![
        ("", Canned::page(&["a", "b"], "next-1", true)),
        ("next-1", Canned::page(&[], "", false)),
    ])
    .await;
    let client = server.client();
    let (key, query, memo) = (
        key(),
        ListQuery::default(),
        Arc::new(ListingMemo::default()),
    );
    let mut pager = client.pager(&key, &query, &ListingLimits::default(), memo);
    let page = pager
        .next_page()
        .await
        .expect("page")
        .expect("a first page");
    assert_eq!(page.len(), 2);
    assert_eq!(cursors_seen(&server), [None]);
    let last = pager
        .next_page()
        .await
        .expect("page")
        .expect("a second page");
    assert!(last.is_empty());
    assert_eq!(cursors_seen(&server), [None, Some("next-1".to_owned())]);
    assert!(pager.next_page().await.expect("the end").is_none());
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
        TestServer::answering(Canned::json(500, json!({"error": {"message": "db down"}}))).await;
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
        let server = TestServer::answering(Canned::json(status, json!({"message": echo}))).await;
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
        .list_all_instances(&key(), &ListQuery::default(), &no_retries())
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
        .list_all_instances(&key(), &ListQuery::default(), &no_retries())
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
    let server = TestServer::answering_in_turn(vec![slow, Canned::page(&["a"], "", false)]).await;
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
    use backon::BackoffBuilder as _;
    let limits = ListingLimits {
        page_attempts: 11,
        retry_base: Duration::from_millis(500),
        max_retry_wait: Duration::from_secs(30),
        ..ListingLimits::default()
    };
    let waits: Vec<u128> = page_backoff(&limits)
        .build()
        .map(|d| d.as_millis())
        .collect();
    assert_eq!(
        waits,
        [
            500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000
        ],
        "one wait before each retry, doubling up to the cap"
    );
    let one_attempt = ListingLimits {
        page_attempts: 1,
        ..limits
    };
    assert_eq!(page_backoff(&one_attempt).build().count(), 0);
    let ms = |d: Duration| d.as_millis();
    let wait = Duration::from_millis(500);
    assert_eq!(ms(jittered(wait, 1.0)), 500);
    assert_eq!(ms(jittered(wait, 0.0)), 250);
    assert_eq!(ms(jittered(Duration::from_millis(2000), 0.5)), 1500);
    assert_eq!(ms(jittered(wait, 7.0)), 500, "jitter is clamped");
    assert_eq!(jittered(Duration::ZERO, 0.7), Duration::ZERO);
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

    let client = server.client();
    let (key, query, memo) = (
        key(),
        ListQuery::default(),
        Arc::new(ListingMemo::default()),
    );
    let mut pager = client.pager(&key, &query, &ListingLimits::default(), memo);
    let page = pager.next_page().await.expect("page").expect("a page");
    let summary = format!("{:?}", page.summary(0));
    assert!(!summary.contains(SECRET), "{summary}");
    let decoded = format!("{:?}", page.decode(0).expect("the record"));
    assert!(!decoded.contains(SECRET), "{decoded}");
}

#[test]
fn a_key_sent_as_a_numeric_field_leaves_no_fragment_in_the_decode_error() {
    let secret = "sk_live_0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"; // 48 characters
    let key = ApiKey::new(secret).expect("valid key");
    let body = json!({"data": [{"id": "a", "resource_specs": {"memory_gb": secret}}],
        "has_more": false});
    let page = decode_page(body.to_string().into_bytes(), &key, None).expect("records are located");
    let memo = ListingMemo::default();
    memo.start_listing(&key, &ListingLimits::default());
    let errors = [
        memo.summaries(&page, &key)
            .expect_err("its summary does not decode"),
        decode_record(&page, 0, &key).expect_err("nor does the record"),
    ];
    for error in errors {
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("memory_gb"), "{shown}");
        for run in secret.as_bytes().windows(8) {
            let run = std::str::from_utf8(run).expect("ASCII");
            assert!(!shown.contains(run), "{run:?} shows in {shown}");
        }
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
            max_pages: 10_000,
            max_instances: 1_000_000,
            max_listing_bytes: 1024 * 1024 * 1024,
            page_attempts: 3,
            retry_base: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(30),
        }
    );
    let client = Client::new(config).expect("default client");
    assert_eq!(client.base_url().as_str(), "https://api.ppio.com/");
    assert!(!format!("{client:?}").contains("Bearer"));
}

/// Reads a whole listing with a pager and `memo`: each record's summary and where it is in memory.
async fn list_with_memo(
    client: &Client,
    key: &ApiKey,
    memo: &Arc<ListingMemo>,
) -> Result<Vec<(*const RecordSummary, RecordSummary)>, PpioError> {
    let (query, limits) = (ListQuery::default(), quick_retries(1));
    let mut pager = client.pager(key, &query, &limits, memo.clone());
    let mut summaries = Vec::new();
    while let Some(page) = pager.next_page().await? {
        summaries.extend((0..page.len()).map(|index| {
            let summary = page.summary(index);
            (summary as *const _, summary.clone())
        }));
    }
    Ok(summaries)
}

#[tokio::test]
async fn a_listing_sent_again_is_recalled_whole_and_a_new_key_reads_it_again() {
    const OTHER: &str = "pk-live-0Zq9wY7xV3";
    let server = TestServer::with_pages(vec![
        ("", Canned::page(&["a", "b"], "c1", true)),
        (
            "c1",
            Canned::json(
                200,
                json!({"data": [{"id": "c", "name": OTHER}], "has_more": false}),
            ),
        ),
    ])
    .await;
    let (client, memo) = (server.client(), Arc::new(ListingMemo::default()));
    let first = list_with_memo(&client, &key(), &memo)
        .await
        .expect("listed");
    assert_eq!((first.len(), memo.len(), memo.pages()), (3, 3, 2));
    let again = list_with_memo(&client, &key(), &memo)
        .await
        .expect("listed");
    let places = |listing: &[(*const RecordSummary, RecordSummary)]| {
        listing.iter().map(|(at, _)| *at).collect::<Vec<_>>()
    };
    assert_eq!(
        places(&again),
        places(&first),
        "every summary recalled, none read again"
    );
    assert_eq!(first[2].1.name, OTHER);

    let other = ApiKey::new(OTHER).expect("valid key");
    let reread = list_with_memo(&client, &other, &memo)
        .await
        .expect("listed");
    assert_eq!(
        reread[2].1.name, "[redacted]",
        "read again and redacted with the key it is listed with"
    );
}

#[tokio::test]
async fn a_record_whose_summary_does_not_decode_fails_its_page_by_number() {
    let server = TestServer::with_pages(vec![
        ("", Canned::page(&["a"], "c1", true)),
        (
            "c1",
            Canned::json(
                200,
                json!({"data": [{"id": "b", "region": 5}], "has_more": false}),
            ),
        ),
    ])
    .await;
    let memo = Arc::new(ListingMemo::default());
    let error = list_with_memo(&server.client(), &key(), &memo)
        .await
        .expect_err("region is a string");
    let PpioError::InvalidResponse { detail } = error else {
        panic!("not an invalid response: {error:?}");
    };
    assert!(
        detail.starts_with("page 2: the list response does not decode: at data[0].region"),
        "{detail}"
    );
    assert_eq!(memo.len(), 1, "the first page's record is remembered");
}

mod products;
