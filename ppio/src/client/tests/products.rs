//! The product list read through the client from a loopback server: the request it sends, retries
//! of transient failures, the request budget and the observer, and the guards of a whole list.

use super::*;
use crate::products::{ListedPrice, ProductCategory, ProductQuery, ProductType};

fn gpu_list() -> serde_json::Value {
    json!({"data": [{
        "id": "prod-a100-80g", "name": "A100-80G", "type": "gpu",
        "resource_spec": {"gpu": {"name": "A100", "memory_gb": 80}},
        "pricing": {"precision": 3,
            "postpaid": {"base_price": 18000, "final_price": 12600, "unit": "per_hour"},
            "prepaid": [{"duration_months": 1, "final_price": 9072000, "base_price": 12960000}]}
    }]})
}

fn cpu_list() -> serde_json::Value {
    json!({"data": [{
        "id": "cpu-4c8g", "name": "4C8G", "type": "cpu",
        "pricing": {"precision": "3", "postpaid": {"final_price": "150", "unit": "per_hour"}}
    }]})
}

fn gpus() -> ProductQuery {
    ProductQuery::default()
}

#[tokio::test]
async fn asks_for_the_documented_query_with_the_key_and_reads_exact_prices() {
    let server = TestServer::answering(Canned::json(200, gpu_list())).await;
    let products = server
        .client()
        .list_products(&key(), &gpus(), &no_retries())
        .await
        .expect("a product list");
    let product = products.get("prod-a100-80g").expect("listed");
    let ListedPrice::Known { list, charged } = product.pricing.postpaid else {
        panic!("a known price");
    };
    assert_eq!(
        (list.map(|p| p.to_string()), charged.to_string()),
        (Some("18.000".to_owned()), "12.600".to_owned())
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/gpus/v2/products");
    assert_eq!(
        seen[0].raw_query.as_deref(),
        Some("type=gpu&category=instance")
    );
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {SECRET}").as_str()
    );
}

#[tokio::test]
async fn instance_products_are_the_gpu_and_the_cpu_lists_merged() {
    let server = TestServer::answering_in_turn(vec![
        Canned::json(200, gpu_list()),
        Canned::json(200, cpu_list()),
    ])
    .await;
    let products = server
        .client()
        .list_instance_products(&key(), &no_retries())
        .await
        .expect("both lists");
    assert_eq!(products.len(), 2);
    assert!(products.get("cpu-4c8g").expect("listed").is_cpu());
    let seen = server.seen();
    let types: Vec<Option<&str>> = seen.iter().map(|s| s.param("type")).collect();
    assert_eq!(types, [Some("gpu"), Some("cpu")]);
    let query = ProductQuery {
        product_type: ProductType::Cpu,
        category: ProductCategory::Serverless,
    };
    let _ = server
        .client()
        .list_products(&key(), &query, &no_retries())
        .await;
    let last = server.seen().pop().expect("a request");
    assert_eq!(
        last.raw_query.as_deref(),
        Some("type=cpu&category=serverless")
    );
}

#[tokio::test]
async fn one_failed_list_fails_the_whole_read_never_half_a_list() {
    let server = TestServer::answering_in_turn(vec![
        Canned::json(200, gpu_list()),
        Canned::json(
            200,
            json!({"data": [{"id": "x", "pricing": {"precision": 40}}]}),
        ),
    ])
    .await;
    let error = server
        .client()
        .list_instance_products(&key(), &no_retries())
        .await
        .expect_err("the CPU list is invalid");
    let PpioError::InvalidResponse { detail } = error else {
        panic!("an invalid response: {error:?}");
    };
    assert!(
        detail.contains("at data[0].pricing.precision: precision 40 is out of range"),
        "{detail}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_like_a_page_and_every_attempt_is_observed() {
    let server = TestServer::answering_in_turn(vec![
        Canned::text(503, "busy"),
        Canned {
            headers: vec![("retry-after", "0".to_owned())],
            ..Canned::json(429, json!({"reason": "RATE_LIMIT_EXCEEDED"}))
        },
        Canned::json(200, gpu_list()),
    ])
    .await;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&outcomes);
    let client = server.client().with_request_observer(move |outcome| {
        recorded.lock().expect("lock").push(outcome.status_code);
    });
    let products = client
        .list_products(&key(), &gpus(), &quick_retries(3))
        .await
        .expect("the third attempt succeeds");
    assert_eq!(products.len(), 1);
    assert_eq!(
        *outcomes.lock().expect("lock"),
        [Some(503), Some(429), Some(200)]
    );
}

#[tokio::test]
async fn refusals_are_not_retried_and_a_long_retry_after_returns_at_once() {
    let server = TestServer::answering(Canned::json(401, json!({"reason": "UNAUTHORIZED"}))).await;
    let error = server
        .client()
        .list_products(&key(), &gpus(), &quick_retries(3))
        .await
        .expect_err("401");
    assert_eq!(error, PpioError::Unauthorized);
    assert_eq!(server.seen().len(), 1);

    let server = TestServer::answering(Canned {
        headers: vec![("retry-after", "120".to_owned())],
        ..Canned::json(429, json!({}))
    })
    .await;
    let error = server
        .client()
        .list_products(&key(), &gpus(), &quick_retries(3))
        .await
        .expect_err("429");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn every_request_is_counted_against_the_keys_budget() {
    let server = TestServer::answering(Canned::json(200, gpu_list())).await;
    let client = server.client_with(|config| config.requests_per_minute = 1);
    client
        .list_products(&key(), &gpus(), &no_retries())
        .await
        .expect("the first request goes at once");
    let waited = tokio::time::timeout(Duration::from_millis(200), client.pace(&key())).await;
    assert!(waited.is_err(), "the budget of one a minute is spent");
    let other = ApiKey::new("sk_other_key_99").expect("key");
    tokio::time::timeout(Duration::from_millis(200), client.pace(&other))
        .await
        .expect("another key has its own budget");
}

#[tokio::test]
async fn the_key_echoed_anywhere_is_redacted_or_refuses_the_list() {
    let mut echoed = gpu_list();
    echoed["data"][0]["name"] = json!(format!("A100 {SECRET}"));
    let server = TestServer::answering(Canned::json(200, echoed)).await;
    let products = server
        .client()
        .list_products(&key(), &gpus(), &no_retries())
        .await
        .expect("a list");
    assert_eq!(
        products.get("prod-a100-80g").expect("listed").name,
        "A100 [redacted]"
    );

    let mut in_id = gpu_list();
    in_id["data"][0]["id"] = json!(format!("p-{SECRET}"));
    let server = TestServer::answering(Canned::json(200, in_id)).await;
    let error = server
        .client()
        .list_products(&key(), &gpus(), &no_retries())
        .await
        .expect_err("an ID holding the key");
    assert_eq!(error.kind(), crate::ErrorKind::InvalidResponse);

    let in_error = json!({"data": [{"id": "p", "pricing": {"precision": format!("{SECRET}")}}]});
    let server = TestServer::answering(Canned::json(200, in_error)).await;
    let error = server
        .client()
        .list_products(&key(), &gpus(), &no_retries())
        .await
        .expect_err("a precision that is not a number");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");

    let said = json!({"code": 403, "message": format!("key {SECRET} may not read products")});
    let server = TestServer::answering(Canned::json(400, said)).await;
    let error = server
        .client()
        .list_products(&key(), &gpus(), &no_retries())
        .await
        .expect_err("400");
    assert!(!format!("{error} {error:?}").contains(SECRET));
}

#[tokio::test]
async fn a_200_that_is_not_a_list_or_too_large_is_an_invalid_response() {
    for (body, expected) in [
        ("{}".to_owned(), "`data` is missing"),
        (
            json!({"code": 500, "reason": "INTERNAL_SERVER_ERROR", "message": "upstream failed"})
                .to_string(),
            "looks like an error answer sent with HTTP 200: INTERNAL_SERVER_ERROR: upstream failed",
        ),
        ("x".repeat(2048), "larger than the 1024-byte limit"),
    ] {
        let server = TestServer::answering(Canned::text(200, &body)).await;
        let error = server
            .client_with(|config| config.max_body_bytes = 1024)
            .list_products(&key(), &gpus(), &quick_retries(3))
            .await
            .expect_err("not a list");
        let PpioError::InvalidResponse { detail } = &error else {
            panic!("an invalid response: {error:?}");
        };
        assert!(detail.contains(expected), "{detail}");
        assert_eq!(server.seen().len(), 1, "an invalid answer is not retried");
    }
}
