//! Whole 200 answers close to the largest size the client accepts, in hostile shapes, through the
//! real client over HTTP: refusing one costs at most 2 MiB besides the body itself (a body that is
//! all nesting, or quotes a long string in its decoding error, a small multiple of it). A body
//! that is not a page is looked at for an error message in its first few KiB only; one the item
//! bound refused is not read again at all.
//!
//! The server runs on a thread of its own, so the counting allocator (per thread) sees only what
//! the client allocates on this one, where its runtime runs.

use std::io::{Read, Write};
use std::net::TcpListener;

use ppio::{ApiKey, Client, ClientConfig, ListQuery, ListingLimits, MAX_PAGE_ITEMS, PpioError};

use crate::alloc::peak_bytes_of;

const SECRET: &str = "sk_hostile_bodies_0123456789";

/// The size of each body: close to the client's default limit of 16 MiB.
const BODY_BYTES: usize = 14 * 1024 * 1024;

/// What refusing a body may allocate besides the body itself: the HTTP stack's buffers, the error.
const OVERHEAD_BYTES: usize = 2 * 1024 * 1024;

/// `head`, then `unit` repeated (joined by `separator`) until the body is [`BODY_BYTES`] long, then
/// `tail`.
fn body_of(head: &str, unit: &str, separator: &str, tail: &str) -> Vec<u8> {
    let mut body = head.as_bytes().to_vec();
    let room = BODY_BYTES - head.len() - tail.len();
    while body.len() + separator.len() + unit.len() <= room + head.len() {
        if body.len() > head.len() {
            body.extend_from_slice(separator.as_bytes());
        }
        body.extend_from_slice(unit.as_bytes());
    }
    body.extend_from_slice(tail.as_bytes());
    body
}

/// Serves `body` with status 200 to one request, from a thread of its own; the base URL.
fn serve_once(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
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

/// Lists once against a server answering `body`; the error and the most the client allocated at
/// once on this thread.
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
        runtime.block_on(client.list_all_instances(&key, &ListQuery::default(), &limits))
    });
    (result.expect_err("not a listing"), peak)
}

fn detail(error: PpioError) -> String {
    match error {
        PpioError::InvalidResponse { detail } => detail,
        other => panic!("expected an invalid response, got {other:?}"),
    }
}

#[test]
fn refusing_a_whole_body_costs_only_itself_unless_it_nests_or_quotes_a_long_string() {
    let many = MAX_PAGE_ITEMS.to_string();
    let shapes: [(&str, Vec<u8>, &str); 7] = [
        (
            "a non-page of zeros",
            body_of(r#"{"x":["#, "0", ",", "]}"),
            "array items; refused unread",
        ),
        (
            "an error with a huge array",
            body_of(r#"{"code":"GATEWAY_ERROR","x":["#, "0", ",", "]}"),
            "array items; refused unread",
        ),
        (
            "deep nesting",
            body_of(r#"{"data":"#, "[", "", "]}"),
            "at data[0][0]: invalid type: sequence",
        ),
        (
            "many tiny records",
            body_of(r#"{"data":["#, "{}", ",", r#"],"has_more":false}"#),
            "array items; refused unread",
        ),
        (
            "a long string where a boolean belongs",
            body_of(r#"{"data":[],"has_more":""#, "a", "", r#""}"#),
            "at has_more: invalid type: string",
        ),
        (
            "a long key",
            body_of(r#"{""#, "k", "", r#"":1}"#),
            "`data` is missing",
        ),
        (
            "an error answer padded after its message",
            body_of(
                &format!(
                    r#"{{"reason":"GATEWAY_ERROR","message":"upstream {SECRET} failed {many}","pad":""#
                ),
                "p",
                "",
                r#""}"#,
            ),
            "it looks like an error answer sent with HTTP 200: GATEWAY_ERROR: upstream [redacted] failed",
        ),
    ];
    let mut over = Vec::new();
    for (shape, body, expected) in shapes {
        assert!(
            body.len() <= BODY_BYTES && body.len() > BODY_BYTES - 16,
            "{shape}"
        );
        let bound = match shape {
            // Skipping nested JSON keeps one byte per open level (serde_json's stack of them, grown
            // by doubling): a body that is nothing but nesting costs itself about twice more.
            "deep nesting" => 3 * BODY_BYTES + OVERHEAD_BYTES,
            // A decoding error quotes a wrong string whole (serde_json's message), and the quote
            // is redacted whole before it is cut: a few copies of the string, once.
            "a long string where a boolean belongs" => 7 * BODY_BYTES + OVERHEAD_BYTES,
            _ => BODY_BYTES + OVERHEAD_BYTES,
        };
        let (error, peak) = refuse(body);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(SECRET), "{shape}: {shown}");
        let detail = detail(error);
        assert!(detail.contains(expected), "{shape}: {detail}");
        if expected.contains("refused unread") {
            // A body the item bound refused is not looked at for an error message either.
            assert!(!detail.contains("looks like an error"), "{shape}: {detail}");
        }
        if peak > bound {
            over.push(format!("{shape}: {peak} bytes, more than {bound}"));
        }
    }
    assert!(
        over.is_empty(),
        "refusing a body of {BODY_BYTES} bytes allocated too much at once: {over:?}"
    );
}
