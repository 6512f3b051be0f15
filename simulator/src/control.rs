//! Control endpoints under `/_simulator/`: change and inspect the simulator over HTTP, for the local
//! demo and for people poking at it with curl. They need no API key and are never recorded as list
//! requests. The table of endpoints is in the [module documentation](super).
//!
//! Bodies are read as JSON whatever their `Content-Type` (so `curl -d` works); malformed input gets
//! 400 with `{"error": "..."}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, put};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Simulator;
use super::faults::Fault;
use super::records::json_kind;

/// The control routes, to be merged into the simulator's router.
pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route(
            "/_simulator/instances",
            get(list_instances)
                .put(replace_instances)
                .post(upsert_instance),
        )
        .route(
            "/_simulator/instances/{id}",
            patch(patch_instance).delete(remove_instance),
        )
        .route("/_simulator/instances/{id}/endpoints", put(set_endpoints))
        .route(
            "/_simulator/faults",
            get(list_faults).post(inject_fault).delete(clear_faults),
        )
        .route(
            "/_simulator/requests",
            get(list_requests).delete(clear_requests),
        )
        .route("/_simulator/api-keys", put(replace_api_keys))
        .route(
            "/_simulator/products",
            get(list_products).post(upsert_product),
        )
        .route("/_simulator/products/{id}", delete(retire_product))
        .route(
            "/_simulator/products/{id}/pricing",
            put(set_product_pricing),
        )
        .route("/_simulator/product-requests", get(list_product_requests))
}

/// `GET /_simulator/products`: every product, by ID.
async fn list_products(State(simulator): State<Simulator>) -> Response {
    axum::Json(simulator.products()).into_response()
}

/// `POST /_simulator/products`: insert a product (201) or replace the one with its id (200).
async fn upsert_product(State(simulator): State<Simulator>, body: Bytes) -> Response {
    let product = match parse_body::<Value>(&body) {
        Ok(product) => product,
        Err(message) => return bad_request(message),
    };
    match simulator.try_upsert_product(product.clone()) {
        Ok(true) => (StatusCode::CREATED, axum::Json(product)).into_response(),
        Ok(false) => (StatusCode::OK, axum::Json(product)).into_response(),
        Err(error) => bad_request(error.to_string()),
    }
}

/// `PUT /_simulator/products/{id}/pricing`: replace a product's `pricing` object; returns the
/// product.
async fn set_product_pricing(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let pricing = match parse_body::<Value>(&body) {
        Ok(pricing) => pricing,
        Err(message) => return bad_request(message),
    };
    match simulator.try_set_product_pricing(&id, pricing) {
        Ok(Some(product)) => axum::Json(product).into_response(),
        Ok(None) => no_product(&id),
        Err(error) => bad_request(error.to_string()),
    }
}

/// `DELETE /_simulator/products/{id}`: retire a product from the list.
async fn retire_product(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    if simulator.retire_product(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        no_product(&id)
    }
}

/// `GET /_simulator/product-requests`: the recorded product list requests, oldest first.
async fn list_product_requests(State(simulator): State<Simulator>) -> Response {
    axum::Json(simulator.product_requests()).into_response()
}

fn no_product(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": format!("no product with id {id:?}") })),
    )
        .into_response()
}

/// `GET /_simulator/instances`: every record, in listing order.
async fn list_instances(State(simulator): State<Simulator>) -> Response {
    axum::Json(simulator.instances()).into_response()
}

/// `PUT /_simulator/instances`: replace all records with an array, or with `{"data": [...]}`.
async fn replace_instances(State(simulator): State<Simulator>, body: Bytes) -> Response {
    let records = match parse_body::<Value>(&body) {
        Ok(Value::Array(records)) => records,
        Ok(Value::Object(mut object)) => match object.remove("data") {
            Some(Value::Array(records)) => records,
            _ => {
                return bad_request(
                    "expected an array of instance records, or {\"data\": [...]}".to_owned(),
                );
            }
        },
        Ok(other) => {
            return bad_request(format!(
                "expected an array of instance records, got {}",
                json_kind(&other)
            ));
        }
        Err(message) => return bad_request(message),
    };
    match simulator.try_set_instances(records) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => bad_request(error.to_string()),
    }
}

/// `POST /_simulator/instances`: insert a record (201) or replace the one with its id (200).
async fn upsert_instance(State(simulator): State<Simulator>, body: Bytes) -> Response {
    let record = match parse_body::<Value>(&body) {
        Ok(record) => record,
        Err(message) => return bad_request(message),
    };
    match simulator.try_upsert_instance(record.clone()) {
        Ok(true) => (StatusCode::CREATED, axum::Json(record)).into_response(),
        Ok(false) => (StatusCode::OK, axum::Json(record)).into_response(),
        Err(error) => bad_request(error.to_string()),
    }
}

/// `PATCH /_simulator/instances/{id}`: apply a JSON merge patch; returns the patched record.
async fn patch_instance(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let merge_patch = match parse_body::<Value>(&body) {
        Ok(merge_patch) => merge_patch,
        Err(message) => return bad_request(message),
    };
    match simulator.try_patch_instance(&id, merge_patch) {
        Ok(Some(record)) => axum::Json(record).into_response(),
        Ok(None) => not_found(&id),
        Err(error) => bad_request(error.to_string()),
    }
}

/// `PUT /_simulator/instances/{id}/endpoints`: `{"8080": "http://203.0.113.9:31000", "22": ""}`
/// sets the endpoints of those exposed ports (empty: none allocated); returns the record.
async fn set_endpoints(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let endpoints = match parse_body::<std::collections::BTreeMap<i64, String>>(&body) {
        Ok(endpoints) => endpoints,
        Err(message) => return bad_request(message),
    };
    match simulator.try_set_endpoints(&id, &endpoints) {
        Ok(Some(record)) => axum::Json(record).into_response(),
        Ok(None) => not_found(&id),
        Err(error) => bad_request(error.to_string()),
    }
}

/// `DELETE /_simulator/instances/{id}`.
async fn remove_instance(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    if simulator.remove_instance(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&id)
    }
}

/// `GET /_simulator/faults`: the faults still queued, with their remaining counts.
async fn list_faults(State(simulator): State<Simulator>) -> Response {
    axum::Json(simulator.pending_faults()).into_response()
}

/// `POST /_simulator/faults`: queue a fault.
async fn inject_fault(State(simulator): State<Simulator>, body: Bytes) -> Response {
    let fault = match parse_body::<Fault>(&body) {
        Ok(fault) => fault,
        Err(message) => return bad_request(message),
    };
    if let Err(message) = fault.validate() {
        return bad_request(message);
    }
    simulator.inject_fault(fault);
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_simulator/faults`.
async fn clear_faults(State(simulator): State<Simulator>) -> Response {
    simulator.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_simulator/requests`: the recorded list requests, oldest first.
async fn list_requests(State(simulator): State<Simulator>) -> Response {
    axum::Json(simulator.requests()).into_response()
}

/// `DELETE /_simulator/requests`.
async fn clear_requests(State(simulator): State<Simulator>) -> Response {
    simulator.clear_requests();
    StatusCode::NO_CONTENT.into_response()
}

/// `PUT /_simulator/api-keys`: replace the accepted keys with a JSON array of non-empty strings.
async fn replace_api_keys(State(simulator): State<Simulator>, body: Bytes) -> Response {
    let keys = match parse_body::<Vec<String>>(&body) {
        Ok(keys) => keys,
        Err(message) => return bad_request(message),
    };
    if keys.iter().any(|key| key.trim().is_empty()) {
        return bad_request("API keys must be non-empty strings".to_owned());
    }
    simulator.set_api_keys(keys);
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a JSON body, or says why it cannot be parsed.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| format!("invalid JSON body: {error}"))
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": format!("no instance with id {id:?}") })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use crate::{Fault, FaultKind, Simulator, SimulatorConfig};
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    async fn call(
        simulator: &Simulator,
        method: Method,
        uri: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_owned()))
            .expect("request");
        let response = simulator.router().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        (status, value)
    }

    fn simulator() -> Simulator {
        Simulator::new(SimulatorConfig {
            api_keys: vec!["k".to_owned()],
            instances: vec![
                json!({"id": "a1", "created_at": 1, "status": {"status": "running", "error": "", "message": ""}}),
            ],
            ..SimulatorConfig::default()
        })
    }

    #[tokio::test]
    async fn instances_can_be_listed_replaced_upserted_patched_and_deleted() {
        let simulator = simulator();
        let (status, body) = call(&simulator, Method::GET, "/_simulator/instances", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["id"], json!("a1"));

        let (status, _) = call(
            &simulator,
            Method::PUT,
            "/_simulator/instances",
            r#"{"data": [{"id": "b2", "created_at": 2}]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            simulator.instances(),
            vec![json!({"id": "b2", "created_at": 2})]
        );

        let (status, _) = call(
            &simulator,
            Method::POST,
            "/_simulator/instances",
            r#"{"id": "c3"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = call(
            &simulator,
            Method::POST,
            "/_simulator/instances",
            r#"{"id": "c3", "name": "again"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        let (status, body) = call(
            &simulator,
            Method::PATCH,
            "/_simulator/instances/b2",
            r#"{"status": {"status": "exited"}, "created_at": null}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"id": "b2", "status": {"status": "exited"}}));

        let (status, _) = call(
            &simulator,
            Method::PATCH,
            "/_simulator/instances/zz",
            r#"{"name": "x"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, _) = call(&simulator, Method::DELETE, "/_simulator/instances/b2", "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = call(&simulator, Method::DELETE, "/_simulator/instances/b2", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            simulator.instances(),
            vec![json!({"id": "c3", "name": "again"})]
        );
    }

    #[tokio::test]
    async fn an_instances_endpoints_can_be_moved_and_cleared_by_port() {
        let simulator = Simulator::new(SimulatorConfig {
            api_keys: vec!["k".to_owned()],
            instances: vec![json!({"id": "a1", "ports": [
                {"port": 8080, "protocol": "http", "endpoint": "http://203.0.113.5:30001"},
                {"port": 22, "protocol": "tcp", "endpoint": "203.0.113.5:30002"},
            ]})],
            ..SimulatorConfig::default()
        });
        let (status, body) = call(
            &simulator,
            Method::PUT,
            "/_simulator/instances/a1/endpoints",
            r#"{"8080": "http://198.51.100.7:31000", "22": ""}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            simulator.instance("a1").expect("a1")["ports"],
            json!([
                {"port": 8080, "protocol": "http", "endpoint": "http://198.51.100.7:31000"},
                {"port": 22, "protocol": "tcp", "endpoint": ""},
            ])
        );
        let (status, body) = call(
            &simulator,
            Method::PUT,
            "/_simulator/instances/a1/endpoints",
            r#"{"9999": "203.0.113.5:1"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("no port 9999"),
            "{body}"
        );
        let (status, _) = call(
            &simulator,
            Method::PUT,
            "/_simulator/instances/zz/endpoints",
            r#"{"22": ""}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn malformed_control_input_gets_400_with_a_message() {
        let simulator = simulator();
        let cases = [
            (Method::PUT, "/_simulator/instances", "{not json"),
            (
                Method::PUT,
                "/_simulator/instances",
                r#"[{"id": "x"}, {"id": "x"}]"#,
            ),
            (Method::PUT, "/_simulator/instances", r#""text""#),
            (
                Method::POST,
                "/_simulator/instances",
                r#"{"name": "no id"}"#,
            ),
            (Method::PATCH, "/_simulator/instances/a1", "[1, 2]"),
            (
                Method::PATCH,
                "/_simulator/instances/a1",
                r#"{"id": "other"}"#,
            ),
            (
                Method::POST,
                "/_simulator/faults",
                r#"{"kind": {"type": "meteor"}}"#,
            ),
            (
                Method::POST,
                "/_simulator/faults",
                r#"{"kind": {"type": "server_error", "status": 404}}"#,
            ),
            (Method::PUT, "/_simulator/api-keys", r#"["ok", ""]"#),
            (Method::PUT, "/_simulator/api-keys", r#""single""#),
        ];
        for (method, uri, body) in cases {
            let (status, response) = call(&simulator, method.clone(), uri, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri} {body}");
            assert!(response["error"].as_str().is_some_and(|m| !m.is_empty()));
        }
        assert_eq!(simulator.instances().len(), 1);
        assert!(simulator.pending_faults().is_empty());
    }

    #[tokio::test]
    async fn faults_can_be_queued_listed_and_cleared() {
        let simulator = simulator();
        let (status, _) = call(
            &simulator,
            Method::POST,
            "/_simulator/faults",
            r#"{"kind": {"type": "rate_limited", "retry_after_secs": 3}, "count": 2}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, body) = call(&simulator, Method::GET, "/_simulator/faults", "").await;
        assert_eq!(
            body,
            json!([{"kind": {"type": "rate_limited", "retry_after_secs": 3}, "count": 2}])
        );
        assert_eq!(
            simulator.pending_faults(),
            vec![Fault::times(
                FaultKind::RateLimited {
                    retry_after_secs: Some(3)
                },
                2
            )]
        );
        let (status, _) = call(&simulator, Method::DELETE, "/_simulator/faults", "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(simulator.pending_faults().is_empty());
    }

    #[tokio::test]
    async fn recorded_requests_are_served_and_cleared_and_control_calls_are_not_recorded() {
        let simulator = simulator();
        let request = Request::get("/gpus/v2/instances?status=running")
            .header(header::AUTHORIZATION, "Bearer k")
            .body(Body::empty())
            .expect("request");
        simulator.router().oneshot(request).await.expect("response");
        let (_, body) = call(&simulator, Method::GET, "/_simulator/requests", "").await;
        assert_eq!(
            body,
            json!([{"query": {"status": "running"}, "authorized": true, "status": 200}])
        );
        let (status, _) = call(&simulator, Method::DELETE, "/_simulator/requests", "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(simulator.requests().is_empty());
    }

    #[tokio::test]
    async fn api_keys_can_be_rotated() {
        let simulator = simulator();
        let (status, _) = call(
            &simulator,
            Method::PUT,
            "/_simulator/api-keys",
            r#"["k2", "k3"]"#,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        for (key, expected) in [("k", 401), ("k2", 200), ("k3", 200)] {
            let request = Request::get("/gpus/v2/instances")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .expect("request");
            let response = simulator.router().oneshot(request).await.expect("response");
            assert_eq!(response.status().as_u16(), expected, "{key}");
        }
    }

    #[tokio::test]
    async fn a_products_prices_can_change_and_a_product_can_be_retired() {
        let simulator = simulator();
        let (status, products) = call(&simulator, Method::GET, "/_simulator/products", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(products.as_array().expect("array").len() >= 10);

        let pricing = r#"{"precision": 40, "postpaid": {"final_price": 1, "unit": "per_minute"}}"#;
        let (status, product) = call(
            &simulator,
            Method::PUT,
            "/_simulator/products/rtx4090-24g/pricing",
            pricing,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(product["pricing"]["precision"], 40);
        assert_eq!(product["pricing"]["postpaid"]["unit"], "per_minute");
        let (status, _) = call(
            &simulator,
            Method::PUT,
            "/_simulator/products/rtx4090-24g/pricing",
            "[1]",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(
            &simulator,
            Method::PUT,
            "/_simulator/products/nope/pricing",
            "{}",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, _) = call(
            &simulator,
            Method::DELETE,
            "/_simulator/products/rtx4090-24g",
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(
            simulator
                .products()
                .iter()
                .all(|p| p["id"] != "rtx4090-24g")
        );
        let (status, _) = call(
            &simulator,
            Method::DELETE,
            "/_simulator/products/rtx4090-24g",
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, _) = call(
            &simulator,
            Method::POST,
            "/_simulator/products",
            r#"{"id": "rtx4090-24g", "type": "gpu", "category": "instance"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = call(
            &simulator,
            Method::POST,
            "/_simulator/products",
            r#"{"id": ""}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, requests) =
            call(&simulator, Method::GET, "/_simulator/product-requests", "").await;
        assert_eq!((status, requests), (StatusCode::OK, json!([])));
    }
}
