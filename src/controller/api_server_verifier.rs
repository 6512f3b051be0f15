//! A mocked Kubernetes API server for the controller's unit tests (test code only): a
//! [`kube::Client`] whose requests reach an [`ApiServerVerifier`] instead of the network. The test
//! takes each request in turn, asserts what it must be (method, path, query, then whatever of its
//! headers and body matters) and answers it as the API server would, so a test states the exact
//! requests a piece of the controller sends, in their order, and runs in milliseconds. What it
//! cannot tell (what the API server makes of a request) the tests under `tests/` check against a
//! real one.
//!
//! Every wait is bounded by [`PATIENCE`]: a request that never comes fails the test instead of
//! hanging it.

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

/// How long a test waits for a request, or for the code under test to finish, before it fails.
pub(super) const PATIENCE: Duration = Duration::from_secs(5);

/// The API server's end of a mocked client: receives its requests, in the order they are sent.
pub(super) struct ApiServerVerifier {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A client for the code under test, and the verifier that receives what it sends.
pub(super) fn mock_api_server() -> (kube::Client, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        kube::Client::new(service, "default"),
        ApiServerVerifier { handle },
    )
}

/// One request received, to be checked further and then answered. Dropping it unanswered fails
/// the request on the client's side.
pub(super) struct Received {
    /// Its headers.
    pub(super) headers: HeaderMap,
    /// Its body, decoded as JSON; `Value::Null` when it has none.
    pub(super) body: Value,
    respond: SendResponse<Response<Body>>,
}

impl ApiServerVerifier {
    /// Receives the next request and asserts that it is `method` on `path` with exactly the query
    /// parameters `query` (in any order).
    pub(super) async fn expect(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Received {
        let (request, respond) = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request within {PATIENCE:?}; expected {method} {path}"))
            .unwrap_or_else(|| panic!("the client is gone; expected {method} {path}"));
        let (parts, body) = request.into_parts();
        assert_eq!(
            (&parts.method, parts.uri.path()),
            (&method, path),
            "unexpected request {} {}",
            parts.method,
            parts.uri
        );
        let sent: BTreeMap<String, String> =
            url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .filter(|(key, _)| !key.is_empty())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect();
        let expected: BTreeMap<String, String> = query
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        assert_eq!(sent, expected, "query of {method} {path}");
        let bytes = body
            .collect_bytes()
            .await
            .expect("the request's body can be read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("the request's body is JSON")
        };
        Received {
            headers: parts.headers,
            body,
            respond,
        }
    }

    /// Asserts that the client sends nothing more. Every clone of the client must be dropped
    /// before: until then, this waits out [`PATIENCE`] and fails.
    pub(super) async fn expect_no_more(mut self) {
        match tokio::time::timeout(PATIENCE, self.handle.next_request()).await {
            Ok(None) => {}
            Ok(Some((request, _))) => {
                panic!("unexpected request {} {}", request.method(), request.uri())
            }
            Err(_) => panic!("the client is still in use after {PATIENCE:?}"),
        }
    }
}

impl Received {
    /// The value of header `name`, if it was sent and is text.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Answers with `200 OK` and `body`.
    pub(super) fn answer(self, body: Value) {
        self.answer_with(StatusCode::OK, &body);
    }

    /// Refuses the request with `code`, as the API server does: a `Status` whose reason is
    /// `reason`.
    pub(super) fn refuse(self, code: StatusCode, reason: &str) {
        let status = json!({
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": format!("refused by the test: {reason}"),
            "reason": reason,
            "code": code.as_u16(),
        });
        self.answer_with(code, &status);
    }

    fn answer_with(self, code: StatusCode, body: &Value) {
        let response = Response::builder()
            .status(code)
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("JSON encodes")))
            .expect("a valid response");
        self.respond.send_response(response);
    }
}
