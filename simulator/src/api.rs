//! The simulated PPIO endpoint `GET /gpus/v2/instances`: authentication, the list itself, injected
//! faults, error bodies shaped like the real v2 service's, and the request log.
//!
//! Order of events for each list request: decode the query, take the next queued fault, record the
//! request, then answer. A fault that replaces the answer (401, 403, 429, 5xx, `RESOURCE_NOT_FOUND`,
//! and the 200s whose body is not a page: an error body or `{}`) answers before authentication is
//! checked, like a gateway in front of the service would. A fault that
//! alters a successful page (malformed JSON, repeating cursor, duplicate ids) does nothing to an error
//! answer, but is used up all the same. `delay` computes the answer at arrival, then waits before
//! sending it, so a client that gives up still leaves a record.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Simulator;
use super::faults::FaultKind;
use super::listing::{Cursor, Page, list_page, parse_list_query};
use super::products::{parse_product_query, select_products};
use super::state::{RecordedRequest, State as SimulatorState};

/// Handles `GET /gpus/v2/instances`.
pub(crate) async fn list_instances(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let query = decode_query(raw_query.as_deref().unwrap_or(""));
    let token = bearer_token(&headers);
    let (outcome, delay) = simulator.with_state(|state| answer_list(state, query, token));
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    outcome.into_response()
}

/// Answers anything that is neither the list endpoint nor a control endpoint, in PPIO's error shape.
pub(crate) async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such endpoint: this simulator serves GET /gpus/v2/instances, GET /gpus/v2/products \
         and /_simulator/*",
    )
    .into_response()
}

/// Decodes a query string into a map; a parameter sent twice keeps its last value.
fn decode_query(raw_query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect()
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), if any.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Decides the answer to one list request, records the request, and says how long to wait before
/// sending the answer.
fn answer_list(
    state: &mut SimulatorState,
    query: BTreeMap<String, String>,
    token: Option<&str>,
) -> (ListOutcome, Option<Duration>) {
    let authorized = state.accepts_key(token);
    let fault = state.faults.take_next();
    let (outcome, delay) = with_fault(fault.as_ref(), || normal_answer(state, &query, authorized));
    let status = outcome.status().as_u16();
    tracing::info!(status, authorized, ?query, ?fault, "list instances request");
    state.requests.push(RecordedRequest {
        query,
        authorized,
        status,
    });
    (outcome, delay)
}

/// Handles `GET /gpus/v2/products`: the same authentication, faults and error bodies as the list
/// of instances, recorded in a log of its own.
pub(crate) async fn list_products(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let query = decode_query(raw_query.as_deref().unwrap_or(""));
    let token = bearer_token(&headers);
    let (outcome, delay) = simulator.with_state(|state| answer_products(state, query, token));
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    outcome.into_response()
}

/// Decides the answer to one product list request, as [`answer_list`] does for the instances.
fn answer_products(
    state: &mut SimulatorState,
    query: BTreeMap<String, String>,
    token: Option<&str>,
) -> (ListOutcome, Option<Duration>) {
    let authorized = state.accepts_key(token);
    let fault = state.faults.take_next();
    let (outcome, delay) = with_fault(fault.as_ref(), || {
        if !authorized {
            return unauthorized();
        }
        match parse_product_query(&query) {
            Ok(product_query) => ListOutcome::Json(
                json!({ "data": select_products(&state.products, &product_query) }),
            ),
            Err(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "VALIDATOR_PARAM", message).into()
            }
        }
    });
    let status = outcome.status().as_u16();
    tracing::info!(status, authorized, ?query, ?fault, "list products request");
    state.product_requests.push(RecordedRequest {
        query,
        authorized,
        status,
    });
    (outcome, delay)
}

/// The answer under `fault`, `normal` giving the well-behaved one, and how long to wait before
/// sending it.
fn with_fault(
    fault: Option<&FaultKind>,
    normal: impl FnOnce() -> ListOutcome,
) -> (ListOutcome, Option<Duration>) {
    let mut delay = None;
    let outcome = match fault {
        Some(FaultKind::Unauthorized) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "invalid API key").into()
        }
        Some(FaultKind::Forbidden) => ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "the API key is not allowed to list instances",
        )
        .into(),
        Some(FaultKind::RateLimited { retry_after_secs }) => ApiError {
            retry_after_secs: *retry_after_secs,
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                "too many requests, please slow down",
            )
        }
        .into(),
        Some(FaultKind::ServerError { status }) => {
            let status = status
                .and_then(|code| StatusCode::from_u16(code).ok())
                .filter(StatusCode::is_server_error)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            ApiError::new(status, "INTERNAL_SERVER_ERROR", "internal server error").into()
        }
        Some(FaultKind::ResourceNotFound) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "RESOURCE_NOT_FOUND",
            "resource not found",
        )
        .into(),
        Some(FaultKind::ErrorBodyOk) => ListOutcome::OkBody(
            json!({
                "code": 500,
                "reason": "INTERNAL_SERVER_ERROR",
                "message": "upstream failed",
            })
            .to_string(),
        ),
        Some(FaultKind::EmptyObjectOk) => ListOutcome::OkBody("{}".to_owned()),
        Some(FaultKind::Delay { ms }) => {
            delay = Some(Duration::from_millis(*ms));
            normal()
        }
        Some(
            kind
            @ (FaultKind::MalformedJson | FaultKind::RepeatingCursor | FaultKind::DuplicateIds),
        ) => alter_page(normal(), kind),
        None => normal(),
    };
    (outcome, delay)
}

fn unauthorized() -> ListOutcome {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "missing or invalid API key: send Authorization: Bearer <API key>",
    )
    .into()
}

/// The answer of a well-behaved service: 401 without a valid key, 400 for bad parameters, else a page.
fn normal_answer(
    state: &SimulatorState,
    query: &BTreeMap<String, String>,
    authorized: bool,
) -> ListOutcome {
    if !authorized {
        return unauthorized();
    }
    match parse_list_query(query, state.page_sizes) {
        Ok(list_query) => ListOutcome::Page(list_page(&state.instances, &list_query)),
        Err(message) => ApiError::new(StatusCode::BAD_REQUEST, "VALIDATOR_PARAM", message).into(),
    }
}

/// Applies a page-altering fault to a successful answer; error answers pass unchanged. A product
/// list (no page) is only ever cut short: it has no cursor, and a product sent twice the same is
/// no fault.
fn alter_page(outcome: ListOutcome, fault: &FaultKind) -> ListOutcome {
    let mut page = match outcome {
        ListOutcome::Page(page) => page,
        ListOutcome::Json(body) if *fault == FaultKind::MalformedJson => {
            return ListOutcome::OkBody(cut_in_half(&body.to_string()));
        }
        other => return other,
    };
    match fault {
        FaultKind::MalformedJson => {
            return ListOutcome::OkBody(cut_in_half(&page.to_json().to_string()));
        }
        FaultKind::RepeatingCursor => {
            page.next_cursor = Cursor::start().encode();
            page.has_more = true;
        }
        FaultKind::DuplicateIds => {
            if let Some(previous) = page.previous.take() {
                page.data.insert(0, previous);
            } else if let Some(first) = page.data.first().cloned() {
                page.data.push(first);
            }
        }
        _ => {}
    }
    ListOutcome::Page(page)
}

/// The first half of a JSON object's text: a proper prefix never parses, its closing brace is
/// missing.
fn cut_in_half(body: &str) -> String {
    let cut = (0..=body.len() / 2)
        .rev()
        .find(|&at| body.is_char_boundary(at))
        .unwrap_or(0);
    body[..cut].to_owned()
}

/// What a list request is answered with.
#[derive(Debug)]
enum ListOutcome {
    /// An error in PPIO's v2 shape.
    Error(ApiError),
    /// A page of instances.
    Page(Page),
    /// A 200 with this JSON body (a product list).
    Json(serde_json::Value),
    /// A 200 with this body as `application/json`, though it is not a page: cut short, or valid
    /// JSON of another shape.
    OkBody(String),
}

impl ListOutcome {
    fn status(&self) -> StatusCode {
        match self {
            ListOutcome::Error(error) => error.status,
            ListOutcome::Page(_) | ListOutcome::Json(_) | ListOutcome::OkBody(_) => StatusCode::OK,
        }
    }
}

impl From<ApiError> for ListOutcome {
    fn from(error: ApiError) -> ListOutcome {
        ListOutcome::Error(error)
    }
}

impl IntoResponse for ListOutcome {
    fn into_response(self) -> Response {
        match self {
            ListOutcome::Error(error) => error.into_response(),
            ListOutcome::Page(page) => (StatusCode::OK, axum::Json(page.to_json())).into_response(),
            ListOutcome::Json(body) => (StatusCode::OK, axum::Json(body)).into_response(),
            ListOutcome::OkBody(body) => (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
        }
    }
}

/// An error answer: `{"code": <status>, "reason": "...", "message": "...", "metadata": {}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason,
            message: message.into(),
            retry_after_secs: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.status.as_u16(),
            "reason": self.reason,
            "message": self.message,
            "metadata": {},
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fault, FaultKind, SimulatorConfig, generate_instances};
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use std::collections::HashSet;
    use tower::ServiceExt;

    const KEY: &str = "test-key";

    fn simulator_with(count: usize) -> Simulator {
        Simulator::new(SimulatorConfig {
            api_keys: vec![KEY.to_owned()],
            instances: generate_instances(count, 7),
            ..SimulatorConfig::default()
        })
    }

    /// Sends `GET /gpus/v2/instances?<query>` with the given bearer token (none if `None`).
    async fn get(
        simulator: &Simulator,
        query: &str,
        token: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(format!("/gpus/v2/instances?{query}"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = simulator
            .router()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            headers,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    async fn get_json(simulator: &Simulator, query: &str) -> (StatusCode, Value) {
        let (status, _, body) = get(simulator, query, Some(KEY)).await;
        (status, serde_json::from_str(&body).expect("json body"))
    }

    fn ids(page: &Value) -> Vec<String> {
        page["data"]
            .as_array()
            .expect("data array")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// Follows cursors from the first page to the last, returning every id in order.
    async fn list_all(simulator: &Simulator, query: &str) -> Vec<String> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        for _ in 0..1000 {
            let (status, page) = get_json(simulator, &format!("{query}&cursor={cursor}")).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            all.extend(ids(&page));
            cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
            assert_eq!(page["has_more"], json!(!cursor.is_empty()));
            if cursor.is_empty() {
                return all;
            }
        }
        panic!("paging did not end");
    }

    fn assert_ppio_error(body: &str, code: u16, reason: &str) {
        let error: Value = serde_json::from_str(body).expect("error body is json");
        assert_eq!(error["code"], json!(code), "{body}");
        assert_eq!(error["reason"], json!(reason), "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(error["metadata"], json!({}), "{body}");
    }

    #[tokio::test]
    async fn requests_without_or_with_a_wrong_key_get_401_unauthorized() {
        let simulator = simulator_with(3);
        let (status, _, body) = get(&simulator, "", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_ppio_error(&body, 401, "UNAUTHORIZED");
        let (status, _, body) = get(&simulator, "", Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_ppio_error(&body, 401, "UNAUTHORIZED");
        assert!(
            body.find("test-key").is_none(),
            "the key must not leak: {body}"
        );
    }

    #[tokio::test]
    async fn the_bearer_scheme_is_case_insensitive() {
        let simulator = simulator_with(1);
        let request = Request::get("/gpus/v2/instances")
            .header(header::AUTHORIZATION, format!("bearer {KEY}"))
            .body(Body::empty())
            .expect("request");
        let response = simulator.router().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn replaced_api_keys_take_effect_at_once() {
        let simulator = simulator_with(1);
        simulator.set_api_keys(vec!["new-key".to_owned()]);
        assert_eq!(
            get(&simulator, "", Some(KEY)).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get(&simulator, "", Some("new-key")).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_page_has_data_next_cursor_has_more_and_total() {
        let simulator = simulator_with(3);
        let (status, page) = get_json(&simulator, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&page).len(), 3);
        assert_eq!(page["next_cursor"], json!(""));
        assert_eq!(page["has_more"], json!(false));
        assert_eq!(page["total"], json!(3));
    }

    #[tokio::test]
    async fn absent_or_zero_limit_serves_the_default_page_size() {
        let simulator = simulator_with(45);
        for query in ["", "limit=0", "limit="] {
            let (_, page) = get_json(&simulator, query).await;
            assert_eq!(ids(&page).len(), 20, "{query}");
            assert_eq!(page["has_more"], json!(true));
            assert_eq!(page["total"], json!(45));
        }
    }

    #[tokio::test]
    async fn a_limit_above_the_maximum_is_clamped() {
        let simulator = simulator_with(130);
        let (_, page) = get_json(&simulator, "limit=500").await;
        assert_eq!(ids(&page).len(), 100);
        let simulator = Simulator::new(SimulatorConfig {
            api_keys: vec![KEY.to_owned()],
            default_page_size: 3,
            max_page_size: 5,
            instances: generate_instances(10, 1),
        });
        assert_eq!(ids(&get_json(&simulator, "").await.1).len(), 3);
        assert_eq!(ids(&get_json(&simulator, "limit=9").await.1).len(), 5);
    }

    #[tokio::test]
    async fn paging_with_the_cursor_serves_every_instance_once_in_order() {
        let simulator = simulator_with(47);
        let all = list_all(&simulator, "limit=5").await;
        let expected: Vec<String> = simulator
            .instances()
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(all, expected);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 47);
    }

    #[tokio::test]
    async fn pages_are_served_from_the_current_state() {
        let simulator = simulator_with(6);
        let (_, first) = get_json(&simulator, "limit=3").await;
        let first_ids = ids(&first);
        // Remove the instance the cursor points at, and add one that sorts last.
        assert!(simulator.remove_instance(&first_ids[2]));
        simulator.upsert_instance(json!({"id": "ffffffffff", "created_at": i64::MAX}));
        let cursor = first["next_cursor"].as_str().expect("cursor");
        let (_, second) = get_json(&simulator, &format!("limit=4&cursor={cursor}")).await;
        let second_ids = ids(&second);
        assert_eq!(second_ids.len(), 4);
        assert!(second_ids.iter().all(|id| !first_ids.contains(id)));
        assert_eq!(second_ids.last().map(String::as_str), Some("ffffffffff"));
        assert_eq!(second["total"], json!(6));
    }

    #[tokio::test]
    async fn the_name_filter_matches_name_or_id_case_insensitively() {
        let simulator = simulator_with(0);
        simulator.set_instances(vec![
            json!({"id": "aa11bb22cc", "name": "Llama-Finetune"}),
            json!({"id": "dd33ee44ff", "name": "sdxl"}),
            json!({"id": "0011223344", "name": "other"}),
        ]);
        let (_, page) = get_json(&simulator, "name=LLAMA").await;
        assert_eq!(ids(&page), vec!["aa11bb22cc"]);
        let (_, page) = get_json(&simulator, "name=EE44").await;
        assert_eq!(ids(&page), vec!["dd33ee44ff"]);
        let (_, page) = get_json(&simulator, "name=").await;
        assert_eq!(page["total"], json!(3));
    }

    #[tokio::test]
    async fn the_status_filter_matches_status_exactly() {
        let simulator = simulator_with(60);
        let (_, page) = get_json(&simulator, "status=running&limit=100").await;
        let running = ids(&page);
        assert!(!running.is_empty());
        assert!(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .all(|r| r["status"]["status"] == json!("running"))
        );
        let (_, page) = get_json(&simulator, "status=Running").await;
        assert_eq!(page["total"], json!(0));
    }

    #[tokio::test]
    async fn the_regions_filter_accepts_any_listed_region_ignoring_blanks() {
        let simulator = simulator_with(60);
        let (_, page) = get_json(&simulator, "regions=cn-east-1,%20,us-west-1&limit=100").await;
        let data = page["data"].as_array().expect("data");
        assert!(!data.is_empty());
        assert!(
            data.iter()
                .all(|r| r["region"] == json!("cn-east-1") || r["region"] == json!("us-west-1"))
        );
        let expected = simulator
            .instances()
            .iter()
            .filter(|r| r["region"] == json!("cn-east-1") || r["region"] == json!("us-west-1"))
            .count();
        assert_eq!(page["total"], json!(expected));
        let (_, page) = get_json(&simulator, "regions=,").await;
        assert_eq!(page["total"], json!(60));
    }

    #[tokio::test]
    async fn the_billing_mode_filter_matches_and_rejects_unknown_modes() {
        let simulator = simulator_with(60);
        for mode in ["postpaid", "prepaid", "spot"] {
            let (status, page) =
                get_json(&simulator, &format!("billing_mode={mode}&limit=100")).await;
            assert_eq!(status, StatusCode::OK);
            let data = page["data"].as_array().expect("data");
            assert!(!data.is_empty(), "{mode}");
            assert!(data.iter().all(|r| r["billing"]["mode"] == json!(mode)));
        }
        assert_eq!(
            get_json(&simulator, "billing_mode=").await.1["total"],
            json!(60)
        );
        let (status, _, body) = get(&simulator, "billing_mode=monthly", Some(KEY)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_ppio_error(&body, 400, "VALIDATOR_PARAM");
    }

    #[tokio::test]
    async fn bad_limit_or_cursor_gets_400_validator_param() {
        let simulator = simulator_with(3);
        for query in [
            "limit=-1",
            "limit=abc",
            "limit=2.5",
            "cursor=garbage",
            "cursor=7631",
        ] {
            let (status, _, body) = get(&simulator, query, Some(KEY)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_ppio_error(&body, 400, "VALIDATOR_PARAM");
        }
    }

    #[tokio::test]
    async fn each_error_fault_answers_with_its_status_and_reason() {
        let cases = [
            (FaultKind::Unauthorized, 401, "UNAUTHORIZED"),
            (FaultKind::Forbidden, 403, "FORBIDDEN"),
            (
                FaultKind::RateLimited {
                    retry_after_secs: None,
                },
                429,
                "RATE_LIMIT_EXCEEDED",
            ),
            (
                FaultKind::ServerError { status: None },
                500,
                "INTERNAL_SERVER_ERROR",
            ),
            (
                FaultKind::ServerError { status: Some(503) },
                503,
                "INTERNAL_SERVER_ERROR",
            ),
            (FaultKind::ResourceNotFound, 400, "RESOURCE_NOT_FOUND"),
        ];
        for (kind, code, reason) in cases {
            let simulator = simulator_with(2);
            simulator.inject_fault(Fault::once(kind.clone()));
            let (status, headers, body) = get(&simulator, "", Some(KEY)).await;
            assert_eq!(status.as_u16(), code, "{kind:?}");
            assert_ppio_error(&body, code, reason);
            assert!(headers.get(header::RETRY_AFTER).is_none());
            assert_eq!(
                get(&simulator, "", Some(KEY)).await.0,
                StatusCode::OK,
                "{kind:?} expired"
            );
        }
    }

    #[tokio::test]
    async fn rate_limited_sends_retry_after_when_asked() {
        let simulator = simulator_with(2);
        simulator.inject_fault(Fault::once(FaultKind::RateLimited {
            retry_after_secs: Some(7),
        }));
        let (status, headers, _) = get(&simulator, "", Some(KEY)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }

    #[tokio::test]
    async fn a_fault_lasts_exactly_count_requests_then_the_next_fault_applies() {
        let simulator = simulator_with(2);
        simulator.inject_fault(Fault::times(FaultKind::Forbidden, 2));
        simulator.inject_fault(Fault::once(FaultKind::ResourceNotFound));
        assert_eq!(
            get(&simulator, "", Some(KEY)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get(&simulator, "", Some(KEY)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get(&simulator, "", Some(KEY)).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(get(&simulator, "", Some(KEY)).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_fault_without_count_lasts_until_cleared() {
        let simulator = simulator_with(2);
        simulator.inject_fault(Fault::until_cleared(FaultKind::ServerError {
            status: Some(502),
        }));
        for _ in 0..5 {
            assert_eq!(
                get(&simulator, "", Some(KEY)).await.0,
                StatusCode::BAD_GATEWAY
            );
        }
        simulator.clear_faults();
        assert_eq!(get(&simulator, "", Some(KEY)).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn delay_waits_then_answers_normally() {
        let simulator = simulator_with(2);
        simulator.inject_fault(Fault::once(FaultKind::Delay { ms: 300 }));
        let started = std::time::Instant::now();
        let (status, page) = get_json(&simulator, "").await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&page).len(), 2);
        let started = std::time::Instant::now();
        get_json(&simulator, "").await;
        assert!(started.elapsed() < Duration::from_millis(300));
    }

    #[tokio::test]
    async fn malformed_json_is_a_200_json_response_that_does_not_parse() {
        for count in [0, 1, 5] {
            let simulator = simulator_with(count);
            simulator.inject_fault(Fault::once(FaultKind::MalformedJson));
            let (status, headers, body) = get(&simulator, "", Some(KEY)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                Some("application/json")
            );
            assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
        }
    }

    #[tokio::test]
    async fn error_body_ok_is_a_200_json_error_object_without_data_or_has_more() {
        let simulator = simulator_with(3);
        simulator.inject_fault(Fault::once(FaultKind::ErrorBodyOk));
        let (status, headers, body) = get(&simulator, "", Some(KEY)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let body: Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(
            body,
            json!({"code": 500, "reason": "INTERNAL_SERVER_ERROR", "message": "upstream failed"})
        );
        assert_eq!(simulator.requests()[0].status, 200);
        let (status, page) = get_json(&simulator, "").await;
        assert_eq!((status, ids(&page).len()), (StatusCode::OK, 3), "expired");
    }

    #[tokio::test]
    async fn empty_object_ok_is_a_200_with_body_empty_object() {
        let simulator = simulator_with(3);
        simulator.inject_fault(Fault::times(FaultKind::EmptyObjectOk, 2));
        for _ in 0..2 {
            let (status, headers, body) = get(&simulator, "limit=2", Some(KEY)).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "{}"));
            assert_eq!(
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                Some("application/json")
            );
        }
        let (status, page) = get_json(&simulator, "limit=2").await;
        assert_eq!((status, ids(&page).len()), (StatusCode::OK, 2), "expired");
    }

    #[tokio::test]
    async fn bodies_that_are_not_pages_are_served_like_a_gateway_before_the_key_is_checked() {
        for kind in [FaultKind::ErrorBodyOk, FaultKind::EmptyObjectOk] {
            let simulator = simulator_with(1);
            simulator.inject_fault(Fault::once(kind.clone()));
            let (status, _, body) = get(&simulator, "", Some("wrong")).await;
            assert_eq!(status, StatusCode::OK, "{kind:?}");
            assert!(!body.contains("UNAUTHORIZED"), "{kind:?}: {body}");
            assert!(!simulator.requests()[0].authorized, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn every_page_carries_data_and_has_more_even_when_empty() {
        for (count, query) in [(0, ""), (3, "status=no-such-status"), (5, "limit=2")] {
            let simulator = simulator_with(count);
            let (status, page) = get_json(&simulator, query).await;
            assert_eq!(status, StatusCode::OK);
            assert!(page["data"].is_array(), "{query}: {page}");
            assert!(page["has_more"].is_boolean(), "{query}: {page}");
            assert!(page["next_cursor"].is_string(), "{query}: {page}");
        }
    }

    #[tokio::test]
    async fn repeating_cursor_always_returns_the_same_cursor_with_has_more() {
        let simulator = simulator_with(10);
        simulator.inject_fault(Fault::times(FaultKind::RepeatingCursor, 3));
        let (_, first) = get_json(&simulator, "limit=4").await;
        let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
        assert!(!cursor.is_empty());
        for _ in 0..2 {
            let (status, page) = get_json(&simulator, &format!("limit=4&cursor={cursor}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(page["next_cursor"], json!(cursor));
            assert_eq!(page["has_more"], json!(true));
            assert_eq!(ids(&page), ids(&first));
        }
        // Once the fault is spent, the repeated cursor still works: it means "from the start".
        let (status, page) = get_json(&simulator, &format!("limit=100&cursor={cursor}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&page).len(), 10);
        assert_eq!(page["has_more"], json!(false));
    }

    #[tokio::test]
    async fn duplicate_ids_repeats_the_last_instance_of_the_previous_page() {
        let simulator = simulator_with(10);
        let (_, first) = get_json(&simulator, "limit=4").await;
        simulator.inject_fault(Fault::once(FaultKind::DuplicateIds));
        let cursor = first["next_cursor"].as_str().expect("cursor");
        let (_, second) = get_json(&simulator, &format!("limit=4&cursor={cursor}")).await;
        let second_ids = ids(&second);
        assert_eq!(second_ids.len(), 5);
        assert_eq!(second_ids[0], ids(&first)[3]);
    }

    #[tokio::test]
    async fn duplicate_ids_on_a_first_page_repeats_an_instance_within_it() {
        let simulator = simulator_with(3);
        simulator.inject_fault(Fault::once(FaultKind::DuplicateIds));
        let page_ids = ids(&get_json(&simulator, "").await.1);
        assert_eq!(page_ids.len(), 4);
        assert_eq!(page_ids.iter().collect::<HashSet<_>>().len(), 3);
    }

    #[tokio::test]
    async fn page_altering_faults_leave_error_answers_alone_but_are_used_up() {
        let simulator = simulator_with(3);
        simulator.inject_fault(Fault::once(FaultKind::MalformedJson));
        let (status, _, body) = get(&simulator, "", Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_ppio_error(&body, 401, "UNAUTHORIZED");
        assert_eq!(get_json(&simulator, "").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn every_list_request_is_recorded_with_query_auth_and_status() {
        let simulator = simulator_with(3);
        get(
            &simulator,
            "name=llama&regions=cn-east-1,us-west-1&limit=5",
            Some(KEY),
        )
        .await;
        get(&simulator, "billing_mode=bogus", Some(KEY)).await;
        get(&simulator, "", Some("wrong")).await;
        simulator.inject_fault(Fault::once(FaultKind::RateLimited {
            retry_after_secs: Some(1),
        }));
        get(&simulator, "status=running", Some(KEY)).await;
        let query = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            simulator.requests(),
            vec![
                RecordedRequest {
                    query: query(&[
                        ("name", "llama"),
                        ("regions", "cn-east-1,us-west-1"),
                        ("limit", "5")
                    ]),
                    authorized: true,
                    status: 200,
                },
                RecordedRequest {
                    query: query(&[("billing_mode", "bogus")]),
                    authorized: true,
                    status: 400,
                },
                RecordedRequest {
                    query: query(&[]),
                    authorized: false,
                    status: 401,
                },
                RecordedRequest {
                    query: query(&[("status", "running")]),
                    authorized: true,
                    status: 429,
                },
            ]
        );
        simulator.clear_requests();
        assert!(simulator.requests().is_empty());
    }

    #[tokio::test]
    async fn unknown_paths_get_a_json_404() {
        let simulator = simulator_with(0);
        let response = simulator
            .router()
            .oneshot(
                Request::get("/gpus/v1/instances")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(simulator.requests().is_empty());
    }

    /// Sends `GET /gpus/v2/products?<query>` with the test key.
    async fn get_products(simulator: &Simulator, query: &str) -> (StatusCode, HeaderMap, Value) {
        let request = Request::get(format!("/gpus/v2/products?{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .body(Body::empty())
            .expect("request");
        let response = simulator.router().oneshot(request).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, headers, body)
    }

    #[tokio::test]
    async fn the_product_list_names_every_product_the_instances_use() {
        let simulator = simulator_with(200);
        let (status, _, gpus) = get_products(&simulator, "type=gpu&category=instance").await;
        assert_eq!(status, StatusCode::OK);
        let (_, _, cpus) = get_products(&simulator, "type=cpu&category=instance").await;
        let listed: HashSet<String> = [&gpus, &cpus].into_iter().flat_map(ids).collect();
        for record in simulator.instances() {
            let product = record["product_id"].as_str().expect("product_id");
            assert!(listed.contains(product), "{product} is not listed");
        }
        assert!(
            gpus["data"]
                .as_array()
                .expect("data")
                .iter()
                .all(|p| p["type"] == "gpu")
        );
        assert_eq!(
            gpus.as_object().expect("object").len(),
            1,
            "only data: {gpus}"
        );
        let (_, _, empty_type) = get_products(&simulator, "type=&category=instance").await;
        assert_eq!(empty_type, gpus, "an empty type means gpu");
    }

    #[tokio::test]
    async fn bad_product_parameters_get_a_validator_param_400_and_need_a_key() {
        let simulator = simulator_with(0);
        for query in [
            "type=tpu&category=instance",
            "type=gpu",
            "category=instance&cpu=-2",
        ] {
            let (status, _, body) = get_products(&simulator, query).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(body["reason"], "VALIDATOR_PARAM", "{query}");
            assert_eq!(body["code"], 400);
        }
        let response = simulator
            .router()
            .oneshot(
                Request::get("/gpus/v2/products?category=instance")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let statuses: Vec<u16> = simulator
            .product_requests()
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [400, 400, 400, 401]);
        assert!(simulator.requests().is_empty(), "a log of their own");
    }

    #[tokio::test]
    async fn the_queued_faults_apply_to_the_product_list_too() {
        let simulator = simulator_with(3);
        simulator.inject_fault(Fault::once(FaultKind::RateLimited {
            retry_after_secs: Some(7),
        }));
        simulator.inject_fault(Fault::once(FaultKind::ServerError { status: Some(503) }));
        simulator.inject_fault(Fault::once(FaultKind::MalformedJson));
        simulator.inject_fault(Fault::once(FaultKind::EmptyObjectOk));
        let query = "category=instance";
        let (status, headers, _) = get_products(&simulator, query).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "7");
        assert_eq!(get_products(&simulator, query).await.0.as_u16(), 503);
        let (status, _, body) = get_products(&simulator, query).await;
        assert_eq!((status, body), (StatusCode::OK, Value::Null), "cut short");
        let (status, _, body) = get_products(&simulator, query).await;
        assert_eq!((status, body), (StatusCode::OK, serde_json::json!({})));
        let (status, _, body) = get_products(&simulator, query).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["data"].is_array());

        simulator.inject_fault(Fault::once(FaultKind::Delay { ms: 300 }));
        let started = std::time::Instant::now();
        assert_eq!(get_products(&simulator, query).await.0, StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
