//! The product list fed hostile input: lists whose every field may hold any JSON value (numbers out
//! of range, a precision of 40, the API key echoed, fractions, strings), arbitrary bytes, deep
//! nesting and very wide arrays. Decoding must never panic, fail the read only (never return a list
//! with a price it could not read exactly), keep no echo of the key once redacted, allocate at most
//! a fixed budget plus a small multiple of the body, and take time linear in the body: a product's
//! field of any length goes through decoding and redaction within the same bound as a record's.
//! Whole hostile answers also go through the real client, over HTTP.

use std::sync::mpsc;

use ppio::{
    ApiKey, Client, ClientConfig, ListedPrice, ListingLimits, MAX_PAGE_ITEMS, MAX_PREPAID_TERMS,
    MAX_PRICE_PRECISION, MAX_PRICE_UNITS, MAX_PRODUCTS, MAX_TERM_MONTHS, PpioError, ProductQuery,
    Products,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use crate::alloc::peak_bytes_of;
use crate::corpus;
use crate::decoder::{junk, numeric_text};
use crate::time::{bound, hostile_patterns, thread_cpu_time};

/// The API key lists are read with; some generated strings echo it.
const SECRET: &str = "sk_live_products_fuzz_0123456789";

/// Most bytes decoding one list may hold at once: the products the bounds allow (a few hundred
/// bytes each, 1 KiB with slack, besides their strings), plus a few copies of the body for
/// strings and error messages that quote it.
fn allocation_bound(body_len: usize) -> usize {
    MAX_PRODUCTS * 1024 + 8 * body_len + (1 << 20)
}

/// Decodes `body` as a product list and checks what must hold for any input.
fn check(body: Vec<u8>) -> Result<(), TestCaseError> {
    let key = ApiKey::new(SECRET).expect("valid key");
    let (decoded, peak) = peak_bytes_of(|| Products::from_json(&body));
    prop_assert!(
        peak <= allocation_bound(body.len()),
        "decoding {} bytes allocated {peak} bytes",
        body.len()
    );
    match decoded {
        Ok(mut products) => {
            prop_assert!(products.len() <= MAX_PRODUCTS);
            for product in products.iter() {
                prop_assert!(!product.id.as_str().trim().is_empty());
                let pricing = &product.pricing;
                prop_assert!(pricing.prepaid.len() <= MAX_PREPAID_TERMS);
                let prices = [&pricing.postpaid, &pricing.spot]
                    .into_iter()
                    .chain(pricing.prepaid.iter().map(|term| &term.price));
                for price in prices {
                    if let ListedPrice::Known { list, charged } = price {
                        for price in list.iter().chain([charged]) {
                            prop_assert!(price.scale() <= MAX_PRICE_PRECISION);
                            prop_assert!(price.units() <= MAX_PRICE_UNITS as u128);
                        }
                    }
                }
                for term in &pricing.prepaid {
                    prop_assert!((1..=MAX_TERM_MONTHS).contains(&term.months));
                }
            }
            if products.id_holding(&key).is_none() {
                products.redact(&key);
                let shown = format!("{products:?}");
                prop_assert!(!key.appears_in(&shown), "an echo of the key is kept");
            }
        }
        Err(error) => {
            prop_assert!(!error.path.is_empty());
            // Redaction must cope with whatever a decode error quotes.
            let shown = key.redact(&error.to_string()).into_owned();
            prop_assert!(!key.appears_in(&shown));
        }
    }
    Ok(())
}

/// A value for a field: usually of the right type, sometimes anything at all.
fn field(right: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![3 => right, 1 => junk()].boxed()
}

/// Integers a price, a precision or a term may hold: in range, at the bounds, beyond them.
fn number() -> BoxedStrategy<Value> {
    field(prop_oneof![
        (0..=MAX_PRICE_UNITS).prop_map(Value::from),
        Just(Value::from(MAX_PRICE_UNITS + 1)),
        Just(Value::from(-1)),
        Just(Value::from(40)),
        Just(Value::from(u64::MAX)),
        (0..20i64).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        numeric_text().prop_map(Value::String),
    ])
}

/// Text, sometimes echoing the API key (whole, cut, in a longer word).
fn text() -> BoxedStrategy<Value> {
    field(prop_oneof![
        any::<String>().prop_map(Value::String),
        Just(Value::String(SECRET.to_owned())),
        Just(Value::String(format!("name {}", &SECRET[4..20]))),
        Just(Value::String("per_hour".to_owned())),
    ])
}

fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    // Each field present or absent.
    let fields: Vec<_> = fields
        .into_iter()
        .map(|(name, value)| proptest::option::of(value).prop_map(move |v| (name, v)))
        .collect();
    fields
        .prop_map(|fields| {
            Value::Object(
                fields
                    .into_iter()
                    .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
                    .collect::<Map<_, _>>(),
            )
        })
        .boxed()
}

fn hourly() -> BoxedStrategy<Value> {
    field(object(vec![
        ("base_price", number()),
        ("final_price", number()),
        ("unit", text()),
    ]))
}

fn product() -> BoxedStrategy<Value> {
    let term = object(vec![
        ("duration_months", number()),
        ("base_price", number()),
        ("final_price", number()),
    ]);
    let pricing = object(vec![
        ("precision", number()),
        ("postpaid", hourly()),
        ("spot", hourly()),
        ("prepaid", field(vec(term, 0..4).prop_map(Value::Array))),
        ("storage_price_per_gb", number()),
    ]);
    let gpu = object(vec![("name", text()), ("memory_gb", number())]);
    object(vec![
        ("id", text()),
        ("name", text()),
        ("type", text()),
        ("resource_spec", field(object(vec![("gpu", gpu)]))),
        ("pricing", field(pricing)),
        (
            "region_ids",
            field(vec(text(), 0..3).prop_map(Value::Array)),
        ),
    ])
}

/// Product lists shaped like the real one, every field sometimes hostile.
fn list_json() -> impl Strategy<Value = Vec<u8>> {
    (vec(product(), 0..6), proptest::option::of(junk())).prop_map(|(products, extra)| {
        let mut body = json!({ "data": products });
        if let Some(extra) = extra {
            body["total"] = extra;
        }
        serde_json::to_vec(&body).expect("JSON")
    })
}

/// A list of products nested `depth` levels deep somewhere, closed or cut short.
fn deep_nesting() -> impl Strategy<Value = Vec<u8>> {
    (1usize..5_000, any::<bool>(), any::<bool>()).prop_map(|(depth, arrays, closed)| {
        let (open, close) = if arrays {
            ("[", "]")
        } else {
            (r#"{"a":"#, "}")
        };
        let mut body = String::from(r#"{"data":[{"id":"p","pricing":"#);
        body.push_str(&open.repeat(depth));
        body.push('1');
        if closed {
            body.push_str(&close.repeat(depth));
            body.push_str("}]}");
        }
        body.into_bytes()
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..512),
        3 => list_json(),
        1 => deep_nesting(),
    ]
}

#[test]
fn the_product_decoder_survives_any_list() {
    corpus::quick(any_body(), check);
}

#[test]
fn the_products_corpus_still_passes() {
    corpus::replay("products", <[u8]>::to_vec, check);
}

/// `FUZZ_SECONDS=600 make fuzz` runs this for a while.
#[test]
#[ignore = "runs for FUZZ_SECONDS; `make fuzz`"]
fn fuzz_products() {
    corpus::for_a_while("products", any_body(), Clone::clone, check);
}

#[test]
fn a_list_that_cannot_be_read_exactly_fails_whole_and_a_fine_one_does_not() {
    let fine = json!({"id": "p", "pricing": {"precision": 3,
        "postpaid": {"final_price": 12600, "unit": "per_hour"}}});
    let hostile = [
        json!({"id": "q", "pricing": {"precision": 40}}),
        json!({"id": "q", "pricing": {"precision": 3, "spot": {"final_price": -1}}}),
        json!({"id": "q", "pricing": {"precision": 0,
            "postpaid": {"final_price": MAX_PRICE_UNITS + 1, "unit": "per_hour"}}}),
        json!({"id": "q", "pricing": {"precision": 3,
            "postpaid": {"final_price": "99999999999999999999999"}}}),
        json!({"id": "q", "pricing": {"precision": 3, "prepaid": [{"duration_months": 0}]}}),
        json!({"id": "", "pricing": {"precision": 3}}),
    ];
    for product in hostile {
        let body =
            serde_json::to_vec(&json!({"data": [fine.clone(), product.clone()]})).expect("JSON");
        assert!(Products::from_json(&body).is_err(), "{product}");
        check(body).expect("fails the read only");
    }
    let body = serde_json::to_vec(&json!({"data": [fine]})).expect("JSON");
    assert_eq!(Products::from_json(&body).expect("fine").len(), 1);
}

/// A product list whose `field` holds `text`.
fn list_with_long(field: &str, text: String) -> Vec<u8> {
    let mut product = json!({"id": "p", "name": "n", "type": "gpu",
        "resource_spec": {"gpu": {"name": "A100", "memory_gb": 80}},
        "pricing": {"precision": 3, "postpaid": {"final_price": 1, "unit": "per_hour"},
            "spot": {"final_price": 1, "unit": "per_hour"}}});
    let slot = match field {
        "id" => &mut product["id"],
        "name" => &mut product["name"],
        "type" => &mut product["type"],
        "gpu" => &mut product["resource_spec"]["gpu"]["name"],
        "unit" => &mut product["pricing"]["spot"]["unit"],
        "precision" => &mut product["pricing"]["precision"],
        "price" => &mut product["pricing"]["postpaid"]["final_price"],
        other => panic!("no field {other}"),
    };
    *slot = Value::String(text);
    serde_json::to_vec(&json!({ "data": [product] })).expect("JSON")
}

/// Decodes and redacts `body` on a thread of its own; the CPU time it took, or `None` when it was
/// not done after ten times `limit` by the clock on the wall.
fn cpu_time_of_reading(body: Vec<u8>, limit: std::time::Duration) -> Option<std::time::Duration> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let key = ApiKey::new(SECRET).expect("valid key");
        let started = thread_cpu_time();
        if let Ok(mut products) = Products::from_json(&body) {
            if products.id_holding(&key).is_none() {
                products.redact(&key);
            }
            std::hint::black_box(&products);
        }
        let _ = done.send(thread_cpu_time() - started);
    });
    finished.recv_timeout(limit * 10).ok()
}

#[test]
fn every_hostile_pattern_in_every_kept_field_reads_within_a_linear_bound() {
    // The same lengths and bound as a record's fields (`time`): 128 KiB in a debug build.
    let len = if cfg!(debug_assertions) {
        128 * 1024
    } else {
        4 * 1024 * 1024
    };
    let mut patterns = hostile_patterns();
    patterns.push(SECRET[..12].to_owned());
    let mut over = Vec::new();
    for field in ["id", "name", "type", "gpu", "unit", "precision", "price"] {
        for pattern in &patterns {
            let text: String = pattern.repeat(len / pattern.len().max(1) + 1);
            let text = text[..ppio::text::floor_char_boundary(&text, len)].to_owned();
            let limit = bound(len);
            match cpu_time_of_reading(list_with_long(field, text), limit) {
                Some(took) if took <= limit => {}
                Some(took) => over.push(format!("{field} of {pattern:?}: {took:?}")),
                None => over.push(format!("{field} of {pattern:?}: not done")),
            }
        }
    }
    assert!(over.is_empty(), "slower than {:?}: {over:?}", bound(len));
}

/// The size of each whole hostile answer: close to the client's default limit of 16 MiB.
const BODY_BYTES: usize = 14 * 1024 * 1024;

/// Serves `body` with status 200 to one request, from a thread of its own; the base URL.
fn serve_once(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    });
    format!("http://{address}/")
}

/// Reads the product list once from a server answering `body`; the error and the most the client
/// allocated at once on this thread.
fn refuse(body: Vec<u8>) -> (PpioError, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(ClientConfig {
        base_url: url::Url::parse(&serve_once(body)).expect("URL"),
        requests_per_minute: 0,
        ..ClientConfig::default()
    })
    .expect("client");
    let key = ApiKey::new(SECRET).expect("key");
    let limits = ListingLimits {
        page_attempts: 1,
        ..ListingLimits::default()
    };
    let (result, peak) = peak_bytes_of(|| {
        runtime.block_on(client.list_products(&key, &ProductQuery::default(), &limits))
    });
    (result.expect_err("not a product list"), peak)
}

/// `head`, then `unit` repeated until the body is [`BODY_BYTES`] long less `tail`, then `tail`.
fn padded(head: &str, unit: &str, tail: &str) -> Vec<u8> {
    let mut body = head.as_bytes().to_vec();
    while body.len() + unit.len() + tail.len() <= BODY_BYTES {
        body.extend_from_slice(unit.as_bytes());
    }
    body.extend_from_slice(tail.as_bytes());
    body
}

#[test]
fn whole_hostile_answers_through_the_client_fail_the_read_only_within_bounded_memory() {
    let many = MAX_PAGE_ITEMS.to_string();
    let shapes: [(&str, Vec<u8>, &str, usize); 6] = [
        (
            "many tiny products",
            padded(r#"{"data":[{"id":"a"}"#, r#",{"id":"a"}"#, "]}"),
            "refused unread",
            1,
        ),
        (
            "deep nesting",
            padded(r#"{"data":[{"id":"p","extra":"#, "[", "]}"),
            "at data[0].extra",
            3,
        ),
        (
            "a huge precision in a long string",
            padded(
                r#"{"data":[{"id":"p","pricing":{"precision":"4"#,
                "0",
                r#""}}]}"#,
            ),
            "pricing.precision",
            7,
        ),
        (
            "the key echoed in a long name, then precision 40",
            padded(
                &format!(r#"{{"data":[{{"id":"p","name":"{SECRET}"#),
                "n",
                r#"","pricing":{"precision":40}}]}"#,
            ),
            "precision 40 is out of range",
            3,
        ),
        (
            "an error answer quoting the key, padded",
            padded(
                &format!(
                    r#"{{"reason":"GATEWAY_ERROR","message":"upstream {SECRET} {many}","pad":""#
                ),
                "p",
                r#""}"#,
            ),
            "GATEWAY_ERROR: upstream [redacted]",
            1,
        ),
        (
            "a price out of range, padded with whitespace",
            padded(
                r#"{"data":[{"id":"p0","pricing":{"precision":3,"postpaid":{"final_price":-1}}}"#,
                " ",
                "]}",
            ),
            "price -1 is out of range",
            1,
        ),
    ];
    let mut over = Vec::new();
    for (shape, body, expected, copies) in shapes {
        assert!(
            body.len() <= BODY_BYTES && body.len() > BODY_BYTES - 64,
            "{shape}"
        );
        let (error, peak) = refuse(body);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(SECRET), "{shape}: {shown}");
        let PpioError::InvalidResponse { detail } = error else {
            panic!("{shape}: expected an invalid response, got {error:?}");
        };
        assert!(detail.contains(expected), "{shape}: {detail}");
        // The body itself, a few copies of it where serde_json quotes a long string or keeps one
        // byte per level of nesting, and the HTTP stack's buffers.
        let bound = copies * BODY_BYTES + BODY_BYTES + 2 * 1024 * 1024;
        if peak > bound {
            over.push(format!("{shape}: {peak} bytes, more than {bound}"));
        }
    }
    assert!(over.is_empty(), "allocated too much at once: {over:?}");
}
