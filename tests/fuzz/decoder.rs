//! The list-page decoder fed arbitrary bytes, JSON-like token soup, and pages whose every field may
//! hold any JSON value: it must never panic, never recurse without bound, and never allocate more
//! than a fixed budget plus a small multiple of the body.

use ppio::{ApiKey, MAX_PAGE_ITEMS, Page, RawPage, RecordSummary};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use crate::alloc::peak_bytes_of;
use crate::corpus;

/// Most bytes decoding one body may hold at once: what the page-item bound allows for the decoded
/// records (about 1 KiB an item, 2 KiB with slack), plus a few copies of the body for strings and
/// error messages that quote it.
fn allocation_bound(body_len: usize) -> usize {
    MAX_PAGE_ITEMS * 2048 + 8 * body_len + (1 << 20)
}

/// Decodes `body` and checks what must hold for any input.
fn check(body: Vec<u8>) -> Result<(), TestCaseError> {
    check_raw_page(&body)?;
    let key = ApiKey::new("sk_fuzz_decoder_key_0123456789").expect("valid key");
    let (decoded, peak) = peak_bytes_of(|| Page::from_json(&body));
    prop_assert!(
        peak <= allocation_bound(body.len()),
        "decoding {} bytes allocated {peak} bytes",
        body.len()
    );
    match decoded {
        Ok(page) => {
            prop_assert!(page.instances.len() <= MAX_PAGE_ITEMS);
            prop_assert_ne!(page.next_cursor.as_deref(), Some(""));
            for mut instance in page.instances {
                prop_assert!(!instance.id.as_str().trim().is_empty());
                instance.redact(&key);
            }
        }
        Err(error) => {
            prop_assert!(!error.path.is_empty());
            // Redaction must cope with whatever a decode error quotes.
            let _ = key.redact(&error.to_string());
        }
    }
    Ok(())
}

/// The page read as the sync reads it ([`RawPage`], each record's summary and the record itself
/// decoded on demand) agrees with the page decoded whole: the same records and summaries when both
/// decode, and never a page where the whole one fails unless a record then fails to decode.
fn check_raw_page(body: &[u8]) -> Result<(), TestCaseError> {
    let (raw, peak) = peak_bytes_of(|| RawPage::from_json(body.to_vec()));
    prop_assert!(
        peak <= allocation_bound(body.len()),
        "reading {} bytes allocated {peak} bytes",
        body.len()
    );
    let whole = Page::from_json(body);
    match (raw, whole) {
        (Ok(raw), Ok(whole)) => {
            prop_assert_eq!(raw.len(), whole.instances.len());
            prop_assert_eq!(&raw.next_cursor, &whole.next_cursor);
            prop_assert_eq!(raw.has_more, whole.has_more);
            for (index, instance) in whole.instances.iter().enumerate() {
                prop_assert_eq!(
                    &raw.decode(index).expect("decodes as in the whole page"),
                    instance
                );
                prop_assert_eq!(
                    raw.decode_summary(index)
                        .expect("a record decodes, so does its summary"),
                    RecordSummary::from(instance)
                );
            }
        }
        (Ok(raw), Err(_)) => {
            let failed = (0..raw.len()).any(|index| raw.decode(index).is_err());
            prop_assert!(failed, "the whole page fails, so one of its records must");
        }
        (Err((error, _)), whole) => {
            prop_assert!(
                whole.is_err(),
                "the whole page decodes, so must its envelope: {error}"
            );
        }
    }
    Ok(())
}

/// Any JSON value: scalars of every kind the decoder must cope with, nested a few levels.
pub fn junk() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        numeric_text().prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        (any::<char>(), 0..5_000usize).prop_map(|(c, n)| Value::String(c.to_string().repeat(n))),
    ];
    scalar.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec(("[a-z_]{0,12}", inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Strings a numeric field may hold: numbers, near-numbers and out-of-range numbers.
pub fn numeric_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        Just("9223372036854775808".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("1e400".to_owned()),
        Just(" 62".to_owned()),
        Just("0x10".to_owned()),
        Just(String::new()),
        "[0-9]{1,40}",
    ]
}

/// A value for a field: usually of the right type, sometimes anything at all.
fn field(right: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![3 => right, 1 => junk()].boxed()
}

fn text() -> BoxedStrategy<Value> {
    field(any::<String>().prop_map(Value::String))
}

fn int() -> BoxedStrategy<Value> {
    field(prop_oneof![
        any::<i64>().prop_map(Value::from),
        numeric_text().prop_map(Value::String)
    ])
}

fn list(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    field(vec(item, 0..6).prop_map(Value::Array))
}

fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let (names, values): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
    let present = vec(any::<bool>(), names.len());
    field(
        (values, present)
            .prop_map(move |(values, present)| {
                let fields = names
                    .iter()
                    .zip(values)
                    .zip(present)
                    .filter(|(_, present)| *present)
                    .map(|((name, value), _)| ((*name).to_owned(), value));
                Value::Object(fields.collect())
            })
            .boxed(),
    )
}

/// A record whose every field may hold a value of its type or anything else.
fn record() -> BoxedStrategy<Value> {
    object(vec![
        (
            "id",
            field(prop_oneof!["[a-z0-9]{1,10}", "\\PC{0,3}"].prop_map(Value::String)),
        ),
        ("name", text()),
        ("type", text()),
        ("image", text()),
        ("command", text()),
        (
            "billing",
            object(vec![
                ("mode", text()),
                (
                    "prepaid",
                    object(vec![
                        ("months", int()),
                        ("end_time", int()),
                        (
                            "auto_renew",
                            object(vec![("enabled", junk().boxed()), ("months", int())]),
                        ),
                    ]),
                ),
            ]),
        ),
        (
            "envs",
            list(object(vec![("key", text()), ("value", text())])),
        ),
        (
            "ports",
            list(object(vec![
                ("port", int()),
                ("protocol", text()),
                ("endpoint", text()),
            ])),
        ),
        (
            "resource_specs",
            object(vec![
                ("gpu_num", int()),
                ("memory_gb", int()),
                ("gpu_ids", list(int())),
            ]),
        ),
        ("network", object(vec![("id", text()), ("ip", text())])),
        (
            "volumes",
            list(object(vec![("type", text()), ("mount_point", text())])),
        ),
        (
            "status",
            object(vec![
                ("status", text()),
                ("error", text()),
                ("message", text()),
            ]),
        ),
        ("auto_migrate", object(vec![("enabled", junk().boxed())])),
        ("created_at", int()),
        ("last_stopped_at", int()),
        ("unknown_field", junk().boxed()),
    ])
}

/// A page envelope around records, each part sometimes replaced by anything.
fn page_json() -> impl Strategy<Value = Vec<u8>> {
    let envelope = object(vec![
        ("data", list(record())),
        ("has_more", field(any::<bool>().prop_map(Value::Bool))),
        ("next_cursor", text()),
        ("total", int()),
    ]);
    envelope.prop_map(|page| serde_json::to_vec(&page).expect("JSON"))
}

/// Bytes made of JSON's own tokens, so the parser gets past the first byte.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(","),
        Just(":"),
        Just("\""),
        Just("\"data\""),
        Just("\"has_more\""),
        Just("\"id\""),
        Just("\"next_cursor\""),
        Just("null"),
        Just("true"),
        Just("false"),
        Just("0"),
        Just("-1.5e9"),
        Just("\\u0000"),
        Just("\\"),
        Just(" "),
    ];
    vec(token, 0..200).prop_map(|tokens| {
        let mut body = b"{".to_vec();
        body.extend(tokens.concat().into_bytes());
        body
    })
}

/// Nesting far deeper than any real page, opened and never closed, or closed.
fn deep_nesting() -> impl Strategy<Value = Vec<u8>> {
    (1..20_000usize, any::<bool>(), any::<bool>()).prop_map(|(depth, arrays, closed)| {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let mut body = format!("{{\"data\":{}", open.repeat(depth));
        if closed {
            body.push_str(&close.repeat(depth));
            body.push_str(",\"has_more\":false}");
        }
        body.into_bytes()
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..512),
        token_soup(),
        page_json(),
        deep_nesting(),
    ]
}

#[test]
fn the_decoder_survives_any_body() {
    corpus::quick(any_body(), check);
}

#[test]
fn the_decoder_corpus_still_passes() {
    corpus::replay("decoder", <[u8]>::to_vec, check);
}

#[test]
#[ignore = "runs until FUZZ_SECONDS have passed: make fuzz"]
fn fuzz_decoder() {
    corpus::for_a_while("decoder", any_body(), Clone::clone, check);
}

#[test]
fn pages_with_too_many_items_are_refused_before_they_are_decoded() {
    let items = MAX_PAGE_ITEMS + 1;
    let shapes = [
        (
            "records",
            json!({"data": vec![json!({"id": "a"}); items], "has_more": false}),
        ),
        (
            "volumes of one record",
            json!({"data": [{"id": "a", "volumes": vec![json!({}); items]}], "has_more": false}),
        ),
        (
            "GPU IDs",
            json!({"data": [{"id": "a", "resource_specs": {"gpu_ids": vec![1; items]}}],
                "has_more": false}),
        ),
        (
            "unknown field",
            json!({"data": [], "has_more": false, "x": [[vec![0; items]]]}),
        ),
    ];
    for (shape, page) in shapes {
        let body = serde_json::to_vec(&page).expect("JSON");
        let (decoded, peak) = peak_bytes_of(|| Page::from_json(&body));
        let error = decoded.expect_err(shape);
        assert!(error.message.contains("array items"), "{shape}: {error}");
        assert!(peak < 64 * 1024, "{shape}: refusing took {peak} bytes");
    }
    let just_fits = json!({"data": vec![json!({"id": "a"}); MAX_PAGE_ITEMS], "has_more": false});
    let body = serde_json::to_vec(&just_fits).expect("JSON");
    let (decoded, peak) = peak_bytes_of(|| Page::from_json(&body));
    assert_eq!(
        decoded.expect("within the bound").instances.len(),
        MAX_PAGE_ITEMS
    );
    assert!(peak <= allocation_bound(body.len()), "{peak}");
}
