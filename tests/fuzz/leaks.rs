//! No fragment of the API key leaks: random keys echoed by a PPIO server (or a proxy in front of
//! it) plain, cut, base64- or percent-encoded, at random offsets in bodies of random lengths, in
//! every place a server can put text. Each case goes through the real client over HTTP, then
//! through the view's status as the controller builds it, and everything a user or an operator
//! could read is searched for any 8 characters of the key or of its encodings: the error and its
//! debug form (logs print `%error`), every log line at debug level, every condition message of the
//! view, the Warning Event's note at any cut, and the records of a listing that succeeded.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use ppio::{ApiKey, Client, ClientConfig, ListQuery, ListingLimits, PpioError};
use ppio_gpu_core::api::view::{GpuInstanceView, GpuInstanceViewSpec};
use ppio_gpu_core::sync::view_status::{self, FailureReason, SyncFailure};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::corpus;

/// Shortest run of the key that counts as a leak.
const RUN: usize = 8;

/// How the echo of the key is written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Encoding {
    Plain,
    /// Every character `%XX`, hex digits in upper case.
    PercentUpper,
    /// Every character `%xx`, hex digits in lower case.
    PercentLower,
    /// As a query string carries it: reserved characters only.
    FormUrlEncoded,
    /// base64 of `Bearer <key>`, as a proxy might log the header.
    Base64Bearer,
    /// URL-safe base64 of `user:<key>` without padding.
    Base64UrlBasic,
    /// base64 of the key alone.
    Base64,
}

/// Where the server puts the text holding the echo.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Placement {
    /// A non-JSON error body (an HTML error page), with this status.
    TextBody(u16),
    /// The `message` of a JSON error body, with this status.
    JsonMessage(u16),
    /// A 200 answer shaped like an error.
    ErrorSentAs200,
    /// A numeric field of a record (`memory_gb`), which then fails to decode.
    NumericField,
    /// `has_more`, which must be a boolean.
    HasMore,
    /// String fields of a record in a page that decodes.
    RecordFields,
    /// The `Location` of a redirect.
    Location,
}

/// One hostile answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeakCase {
    key: String,
    encoding: Encoding,
    /// The part of the encoded echo the server sends (a proxy may have cut it already): start and
    /// length, clamped to the echo.
    cut_start: usize,
    cut_len: usize,
    before: String,
    after: String,
    placement: Placement,
    /// Where the Event note is cut, in bytes (clamped, moved back to a character boundary).
    note_cut: usize,
}

impl LeakCase {
    fn echo(&self) -> String {
        let key = self.key.as_bytes();
        let encoded = match self.encoding {
            Encoding::Plain => self.key.clone(),
            Encoding::PercentUpper => key.iter().map(|b| format!("%{b:02X}")).collect(),
            Encoding::PercentLower => key.iter().map(|b| format!("%{b:02x}")).collect(),
            Encoding::FormUrlEncoded => url::form_urlencoded::byte_serialize(key).collect(),
            Encoding::Base64Bearer => STANDARD.encode(format!("Bearer {}", self.key)),
            Encoding::Base64UrlBasic => URL_SAFE_NO_PAD.encode(format!("user:{}", self.key)),
            Encoding::Base64 => STANDARD.encode(key),
        };
        let start = self.cut_start.min(encoded.len());
        let end = start.saturating_add(self.cut_len).min(encoded.len());
        format!("{}{}{}", self.before, &encoded[start..end], self.after)
    }
}

fn leak_case() -> impl Strategy<Value = LeakCase> {
    let key = ("(sk_|pk-|)", "[A-Za-z0-9_+/=.~-]{12,64}").prop_map(|(p, k)| format!("{p}{k}"));
    let encoding = prop_oneof![
        3 => Just(Encoding::Plain),
        1 => Just(Encoding::PercentUpper),
        1 => Just(Encoding::PercentLower),
        1 => Just(Encoding::FormUrlEncoded),
        1 => Just(Encoding::Base64Bearer),
        1 => Just(Encoding::Base64UrlBasic),
        1 => Just(Encoding::Base64),
    ];
    let placement = prop_oneof![
        prop::sample::select(vec![400u16, 404, 409, 500, 502, 503]).prop_map(Placement::TextBody),
        prop::sample::select(vec![400u16, 422, 500, 503]).prop_map(Placement::JsonMessage),
        Just(Placement::ErrorSentAs200),
        Just(Placement::NumericField),
        Just(Placement::HasMore),
        Just(Placement::RecordFields),
        Just(Placement::Location),
    ];
    let filler = "[ a-zA-Z0-9<>/=_.-]{0,400}";
    (
        key,
        encoding,
        0..200usize,
        prop_oneof![Just(usize::MAX), 0..200usize],
        filler,
        filler,
        placement,
        0..1200usize,
    )
        .prop_map(
            |(key, encoding, cut_start, cut_len, before, after, placement, note_cut)| LeakCase {
                key,
                encoding,
                cut_start,
                cut_len,
                before,
                after,
                placement,
                note_cut,
            },
        )
}

/// A canned answer: status, headers, body.
#[derive(Clone, Default)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn answer(case: &LeakCase) -> Answer {
    let text = case.echo();
    let json = |status: u16, body: serde_json::Value| Answer {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    };
    match case.placement {
        Placement::TextBody(status) => Answer {
            status,
            headers: vec![("content-type".into(), "text/html".into())],
            body: format!("<html><body>{text}</body></html>"),
        },
        Placement::JsonMessage(status) => json(status, json!({"message": text})),
        Placement::ErrorSentAs200 => json(200, json!({"code": 500, "message": text})),
        Placement::NumericField => json(
            200,
            json!({"data": [{"id": "a", "resource_specs": {"memory_gb": text}}], "has_more": false}),
        ),
        Placement::HasMore => json(200, json!({"data": [], "has_more": text})),
        Placement::RecordFields => json(
            200,
            json!({"data": [{"id": "a", "name": text, "command": text,
                "status": {"status": "exited", "message": text},
                "ports": [{"port": 80, "endpoint": text}]}], "has_more": false}),
        ),
        Placement::Location => Answer {
            status: 302,
            headers: vec![("location".into(), format!("https://elsewhere/?{text}"))],
            body: String::new(),
        },
    }
}

/// Every run of 8 characters that must not be shown: of the key, of the key with `"` and `\`
/// escaped, and of its base64 in both alphabets at the three alignments (characters a leading
/// byte influences left out). Written independently of the operator's own matcher.
fn secret_runs(key: &str) -> Vec<String> {
    let mut forms = vec![
        key.to_owned(),
        key.replace('\\', "\\\\").replace('"', "\\\""),
    ];
    for (prefix, skip) in [("", 0), ("B", 2), ("Be", 3)] {
        for engine in [&STANDARD, &URL_SAFE] {
            forms.push(engine.encode(format!("{prefix}{key}"))[skip..].to_owned());
        }
    }
    let mut runs: Vec<String> = forms
        .iter()
        .flat_map(|form| {
            let chars: Vec<char> = form.chars().collect();
            chars
                .windows(RUN)
                .map(|run| run.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    runs.sort();
    runs.dedup();
    runs
}

/// `text` with every `%XX` decoded (invalid UTF-8 replaced).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |i: usize| bytes.get(i).and_then(|&b| char::from(b).to_digit(16));
        if bytes[at] == b'%'
            && let (Some(high), Some(low)) = (hex(at + 1), hex(at + 2))
        {
            decoded.push(u8::try_from(high * 16 + low).expect("a byte"));
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The first secret run found in `shown`, read as is or percent-decoded.
fn leaked(shown: &str, runs: &[String]) -> Option<String> {
    let decoded = percent_decoded(shown);
    runs.iter()
        .find(|run| shown.contains(run.as_str()) || decoded.contains(run.as_str()))
        .cloned()
}

/// Lines written by the log subscriber.
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

/// A local PPIO stand-in answering every request with the current canned answer.
struct Server {
    runtime: tokio::runtime::Runtime,
    answer: Arc<Mutex<Answer>>,
    client: Client,
}

impl Server {
    fn start() -> Server {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let answer = Arc::new(Mutex::new(Answer::default()));
        let served = Arc::clone(&answer);
        let address = runtime.block_on(async move {
            let app = axum::Router::new().fallback(move || {
                let canned = served.lock().expect("lock").clone();
                async move {
                    let mut response = axum::http::Response::builder().status(canned.status);
                    for (name, value) in &canned.headers {
                        response = response.header(name.as_str(), value.as_str());
                    }
                    response
                        .body(axum::body::Body::from(canned.body))
                        .expect("response")
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            address
        });
        let client = Client::new(ClientConfig {
            base_url: url::Url::parse(&format!("http://{address}/")).expect("URL"),
            requests_per_minute: 0,
            ..ClientConfig::default()
        })
        .expect("client");
        Server {
            runtime,
            answer,
            client,
        }
    }

    /// Lists once against `canned`, with debug logs captured.
    fn list(&self, key: &ApiKey, canned: Answer) -> (Result<ppio::Listing, PpioError>, String) {
        *self.answer.lock().expect("lock") = canned;
        let capture = LogCapture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // A second live dispatcher makes every callsite ask this thread's subscriber (see the
        // client's own log tests).
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let limits = ListingLimits {
            page_attempts: 1,
            ..ListingLimits::default()
        };
        let result = self.runtime.block_on(self.client.list_all_instances(
            key,
            &ListQuery::default(),
            &limits,
        ));
        let logs = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
        (result, logs)
    }
}

fn view() -> GpuInstanceView {
    let spec: GpuInstanceViewSpec =
        serde_json::from_value(json!({"credentials": {"secretRef": {"name": "ppio"}}}))
            .expect("spec");
    GpuInstanceView::new("team-a", spec)
}

/// Everything the case makes visible, by where it shows.
fn shown(server: &Server, case: &LeakCase, key: &ApiKey) -> Vec<(&'static str, String)> {
    let (result, logs) = server.list(key, answer(case));
    let mut shown = vec![("log", logs)];
    match result {
        Ok(listing) => shown.push(("mirrored record", format!("{listing:?}"))),
        Err(error) => {
            shown.push(("error", error.to_string()));
            shown.push(("error (debug)", format!("{error:?}")));
            // What the view's status says: the message as the controller makes it, and stricter,
            // the client's message as it is, without the controller's last check.
            shown.push((
                "view message",
                view_status::ppio_failure(&error, key).message,
            ));
            let failure = SyncFailure {
                reason: FailureReason::from(error.kind()),
                message: error.to_string(),
            };
            let status = view_status::failed_status(&view(), &failure, Timestamp::UNIX_EPOCH);
            for condition in &status.conditions {
                shown.push(("condition", condition.message.clone()));
                if condition.type_ == "Ready" {
                    let mut cut = case.note_cut.min(1000).min(condition.message.len());
                    while !condition.message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    shown.push(("event note", condition.message[..cut].to_owned()));
                }
            }
            shown.push(("status", serde_json::to_string(&status).expect("JSON")));
        }
    }
    shown
}

thread_local! {
    static SERVER: Server = Server::start();
}

fn check(case: LeakCase) -> Result<(), TestCaseError> {
    let Ok(key) = ApiKey::new(case.key.clone()) else {
        return Ok(());
    };
    let runs = secret_runs(&case.key);
    SERVER.with(|server| {
        for (place, text) in shown(server, &case, &key) {
            if let Some(run) = leaked(&text, &runs) {
                return Err(TestCaseError::fail(format!(
                    "{run:?} of the key shows in the {place}: {text}"
                )));
            }
        }
        Ok(())
    })
}

#[test]
fn no_fragment_of_the_key_shows_anywhere() {
    corpus::quick(leak_case(), check);
}

#[test]
fn the_leak_corpus_still_passes() {
    corpus::replay(
        "leaks",
        |bytes| serde_json::from_slice::<LeakCase>(bytes).expect("a leak case"),
        check,
    );
}

#[test]
#[ignore = "runs until FUZZ_SECONDS have passed: make fuzz"]
fn fuzz_leaks() {
    corpus::for_a_while(
        "leaks",
        leak_case(),
        |case| serde_json::to_vec_pretty(case).expect("JSON"),
        check,
    );
}
