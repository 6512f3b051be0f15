//! The Kubernetes client of the whole process: the controller and the leader elector build theirs
//! here, from the same configuration, so both have the same bounds.
//!
//! kube's own retry is off: it retries 429, 503 and 504 fifteen times, from 5 ms doubling towards
//! 1000 s, and sleeps for whatever `Retry-After` says, so one call under refusals that last (a policy
//! engine or a quota answering 429, API Priority and Fairness, an overloaded server) could sleep for
//! minutes while the view still said it was synced. In its place, a layer of our own:
//! - a **deadline** on every request but a watch, covering the request, its retries, and reading its
//!   answer's body to the end ([`KubeClientSettings::request_timeout`],
//!   `--kube-request-timeout-seconds`); a request that outlives it fails with
//!   [`RequestDeadlineExceeded`]. A watch (`watch=true`) is left alone: it is meant to stay open,
//!   and kube's watcher asks the server to end it (`timeoutSeconds`) and resumes it;
//! - a few **retries** ([`retry_delay`]): of 429 and 503 (the server refused the request before
//!   acting on it) for any method, of 504 only for methods that may be repeated (a create that timed
//!   out may have happened), at most [`MAX_RETRIES`], waiting [`FIRST_RETRY`] doubled with jitter,
//!   or the `Retry-After` the server asked for, at most [`RETRY_AFTER_CAP`], and never when the
//!   wait would not end before the deadline. The refusal itself is then the answer: the operator
//!   retries at its own pace (the view's backoff), and says so on the view.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;
use kube::client::{Body, ClientBuilder, DynBody};
use tokio::time::{Instant, Sleep};
use tower::buffer::Buffer;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::backoff::{self, KUBE_RETRY};

/// The deadline of one request when `--kube-request-timeout-seconds` is not given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Retries of one refused request, at most.
pub const MAX_RETRIES: u32 = 2;
/// The first retry's wait before jitter; it doubles for the next.
pub const FIRST_RETRY: Duration = Duration::from_millis(400);
/// The longest wait before a retry, whatever `Retry-After` asks for: a server that asks for longer
/// gets its refusal reported, and the request is tried again at the operator's own pace.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(2);

/// How the process's Kubernetes clients are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KubeClientSettings {
    /// The deadline of one request that is not a watch: its retries and reading its answer included.
    pub request_timeout: Duration,
}

impl Default for KubeClientSettings {
    fn default() -> Self {
        KubeClientSettings {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Builds a client from `config` with kube's retry off and the bounds of `settings` (see the module
/// documentation). Call it on the runtime the client is to be used on: its request queue runs there.
pub fn build(
    mut config: kube::Config,
    settings: KubeClientSettings,
) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder
        .with_layer(&BoundedLayer {
            timeout: settings.request_timeout,
        })
        .build())
}

/// A request did not complete within its deadline (its retries and reading its answer included).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error(
    "the Kubernetes API server did not answer within {}s (retries and reading the answer included)",
    .timeout.as_secs_f64()
)]
pub struct RequestDeadlineExceeded {
    /// The deadline it had.
    pub timeout: Duration,
}

/// How the API server kept a request from completing, when it throttled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttled {
    /// It answered 429 (API Priority and Fairness, a webhook or a quota refusing it), after the
    /// retries.
    Refused,
    /// The request's deadline passed.
    TimedOut,
}

/// Whether `error` is the API server's throttling: a 429 after the retries, or a request that
/// outlived its deadline. Other failures (a 403, a 409, a 500) are not.
pub fn throttled(error: &kube::Error) -> Option<Throttled> {
    match error {
        kube::Error::Api(status) if status.code == 429 => Some(Throttled::Refused),
        other => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(other);
            while let Some(error) = source {
                if error.downcast_ref::<RequestDeadlineExceeded>().is_some() {
                    return Some(Throttled::TimedOut);
                }
                source = error.source();
            }
            None
        }
    }
}

/// Whether the request to `uri` is a watch, which no deadline bounds.
pub fn is_watch(uri: &Uri) -> bool {
    uri.query().is_some_and(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .any(|(key, value)| key == "watch" && (value == "true" || value == "1"))
    })
}

/// How long to wait before retrying a request of `method` that the server answered with `status`
/// (and `retry_after`), after `retries` retries, with `remaining` left of its deadline; `None` when
/// it is not retried. `position` (0 to 1) places the wait within its jitter.
pub fn retry_delay(
    method: &Method,
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    retries: u32,
    remaining: Duration,
    position: f64,
) -> Option<Duration> {
    let retryable = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => true,
        StatusCode::GATEWAY_TIMEOUT => *method != Method::POST,
        _ => false,
    };
    if !retryable || retries >= MAX_RETRIES {
        return None;
    }
    let backoff = KUBE_RETRY.at(
        backoff::capped_exponential(retries + 1, FIRST_RETRY, RETRY_AFTER_CAP),
        position,
    );
    let asked = retry_after
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds.min(RETRY_AFTER_CAP.as_secs())));
    let wait = asked.map_or(backoff, |asked| asked.max(backoff));
    (wait < remaining).then_some(wait)
}

/// The tower layer of [`build`]: the deadline and the retries.
struct BoundedLayer {
    timeout: Duration,
}

/// What kube's default stack is, below our layer.
type Inner = Buffer<Request<Body>, BoxFuture<'static, Result<Response<Box<DynBody>>, BoxError>>>;

impl<S> Layer<S> for BoundedLayer
where
    S: Service<Request<Body>, Response = Response<Box<DynBody>>, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Service = Bounded;

    fn layer(&self, inner: S) -> Bounded {
        // A queue in front of kube's stack, so that a retry can send again while others are sent.
        let inner = Buffer::new(
            inner.map_future(|f| Box::pin(f) as BoxFuture<'static, _>),
            1024,
        );
        Bounded {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`BoundedLayer`].
#[derive(Clone)]
struct Bounded {
    inner: Inner,
    timeout: Duration,
}

impl Service<Request<Body>> for Bounded {
    type Response = Response<DeadlineBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<DeadlineBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service made ready is the one to call first; a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        if is_watch(request.uri()) {
            return Box::pin(send_watch(inner, request));
        }
        Box::pin(send_bounded(inner, request, self.timeout))
    }
}

async fn send_watch(
    mut inner: Inner,
    request: Request<Body>,
) -> Result<Response<DeadlineBody>, BoxError> {
    let response = inner.call(request).await?;
    Ok(response.map(|body| DeadlineBody {
        body,
        deadline: None,
    }))
}

async fn send_bounded(
    inner: Inner,
    request: Request<Body>,
    timeout: Duration,
) -> Result<Response<DeadlineBody>, BoxError> {
    let deadline = Instant::now() + timeout;
    let response = tokio::time::timeout_at(deadline, send_with_retries(inner, request, deadline))
        .await
        .map_err(|_| RequestDeadlineExceeded { timeout })??;
    Ok(response.map(|body| DeadlineBody {
        body,
        deadline: Some((Box::pin(tokio::time::sleep_until(deadline)), timeout)),
    }))
}

async fn send_with_retries(
    mut inner: Inner,
    mut request: Request<Body>,
    deadline: Instant,
) -> Result<Response<Box<DynBody>>, BoxError> {
    let mut retries = 0;
    let mut ready = true;
    loop {
        let again = clone_request(&request);
        let method = request.method().clone();
        let response = if ready {
            inner.call(request).await?
        } else {
            inner.ready().await?.call(request).await?
        };
        ready = false;
        let Some(again) = again else {
            return Ok(response);
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let position = rand::random::<f64>();
        let Some(wait) = retry_delay(
            &method,
            response.status(),
            response.headers().get(http::header::RETRY_AFTER),
            retries,
            remaining,
            position,
        ) else {
            return Ok(response);
        };
        tracing::debug!(status = %response.status(), retry_in_ms = wait.as_millis() as u64, "the Kubernetes API server refused a request; retrying");
        drop(response);
        tokio::time::sleep(wait).await;
        retries += 1;
        request = again;
    }
}

/// A copy of `request` to send again, when its body can be copied (every body kube builds from
/// bytes can).
fn clone_request(request: &Request<Body>) -> Option<Request<Body>> {
    let body = request.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// An answer's body, failing with [`RequestDeadlineExceeded`] when its request's deadline passes
/// before it is read to the end (none for a watch).
struct DeadlineBody {
    body: Box<DynBody>,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if let Some((sleep, timeout)) = &mut this.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let timeout = *timeout;
            this.deadline = None;
            // The rest of the body is never read: end it with the error.
            this.body = Box::new(http_body_util::Empty::new().map_err(|never| match never {}));
            return Poll::Ready(Some(Err(Box::new(RequestDeadlineExceeded { timeout }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::StreamExt as _;

    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().expect("a URI")
    }

    #[test]
    fn only_watches_go_without_a_deadline() {
        for watch in [
            "https://k/apis/ppio.io/v1alpha1/gpuinstances?watch=true&timeoutSeconds=290",
            "https://k/api/v1/namespaces/a/services?labelSelector=x&watch=1",
            "https://k/api/v1/pods?watch=true",
        ] {
            assert!(is_watch(&uri(watch)), "{watch}");
        }
        for bounded in [
            "https://k/api/v1/namespaces/a/secrets/watch",
            "https://k/api/v1/namespaces/watch/secrets/s",
            "https://k/apis/ppio.io/v1alpha1/gpuinstances?limit=500",
            "https://k/api/v1/pods?watch=false",
            "https://k/api/v1/pods?labelSelector=watch%3Dtrue",
            "https://k/api/v1/pods?watchy=true",
            "https://k/api/v1/pods",
        ] {
            assert!(!is_watch(&uri(bounded)), "{bounded}");
        }
    }

    fn delay(
        method: Method,
        status: u16,
        retry_after: Option<&str>,
        retries: u32,
        remaining: u64,
    ) -> Option<Duration> {
        let header = retry_after.map(|v| HeaderValue::from_str(v).expect("header"));
        retry_delay(
            &method,
            StatusCode::from_u16(status).expect("status"),
            header.as_ref(),
            retries,
            Duration::from_secs(remaining),
            1.0,
        )
    }

    #[test]
    fn refusals_are_retried_a_couple_of_times_then_reported() {
        assert_eq!(delay(Method::PATCH, 429, None, 0, 15), Some(FIRST_RETRY));
        assert_eq!(
            delay(Method::PATCH, 429, None, 1, 15),
            Some(FIRST_RETRY * 2)
        );
        assert_eq!(delay(Method::PATCH, 429, None, MAX_RETRIES, 15), None);
        assert_eq!(delay(Method::GET, 503, None, 0, 15), Some(FIRST_RETRY));
        assert_eq!(delay(Method::POST, 503, None, 0, 15), Some(FIRST_RETRY));
        // Every retry of a request together waits under 2 s, jitter at its highest.
        let total: Duration = (0..MAX_RETRIES)
            .filter_map(|n| delay(Method::PATCH, 429, None, n, 15))
            .sum();
        assert!(total <= Duration::from_secs(2), "{total:?}");
    }

    #[test]
    fn jitter_spreads_the_wait_over_its_upper_half() {
        let at = |position| {
            retry_delay(
                &Method::GET,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                0,
                Duration::from_secs(15),
                position,
            )
        };
        assert_eq!(at(0.0), Some(FIRST_RETRY / 2));
        assert_eq!(at(1.0), Some(FIRST_RETRY));
    }

    #[test]
    fn what_may_have_happened_or_failed_otherwise_is_not_retried() {
        // A create that timed out may have created the object.
        assert_eq!(delay(Method::POST, 504, None, 0, 15), None);
        assert_eq!(delay(Method::PUT, 504, None, 0, 15), Some(FIRST_RETRY));
        for status in [200, 201, 400, 401, 403, 404, 409, 422, 500, 502] {
            assert_eq!(delay(Method::PATCH, status, None, 0, 15), None, "{status}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        assert_eq!(
            delay(Method::PATCH, 429, Some("1"), 0, 15),
            Some(Duration::from_secs(1))
        );
        for long in ["30", "3600", &u64::MAX.to_string()] {
            assert_eq!(
                delay(Method::PATCH, 429, Some(long), 0, 15),
                Some(RETRY_AFTER_CAP),
                "{long}"
            );
        }
        // A Retry-After shorter than the backoff, or one that is not seconds, leaves the backoff.
        assert_eq!(
            delay(Method::PATCH, 429, Some("0"), 0, 15),
            Some(FIRST_RETRY)
        );
        assert_eq!(
            delay(
                Method::PATCH,
                429,
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                0,
                15
            ),
            Some(FIRST_RETRY)
        );
    }

    #[test]
    fn no_retry_waits_past_the_deadline() {
        assert_eq!(delay(Method::PATCH, 429, Some("2"), 0, 2), None);
        assert_eq!(delay(Method::PATCH, 429, None, 0, 0), None);
    }

    /// A client of this module against a server on loopback that answers every request with
    /// `answer`; the client, and how many requests the server saw.
    async fn client_of(
        answer: impl Fn(&Uri) -> axum::response::Response + Clone + Send + Sync + 'static,
        timeout: Duration,
    ) -> (kube::Client, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let app = {
            let seen = seen.clone();
            axum::Router::new().fallback(move |uri: Uri| {
                let (answer, seen) = (answer.clone(), seen.clone());
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    answer(&uri)
                }
            })
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{address}").parse().expect("a URI"));
        let client = build(
            config,
            KubeClientSettings {
                request_timeout: timeout,
            },
        )
        .expect("a client");
        (client, seen)
    }

    fn status(code: u16) -> axum::response::Response {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "refused", "reason": "TooManyRequests", "code": code
        });
        axum::response::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .header("retry-after", "3600")
            .body(axum::body::Body::from(body.to_string()))
            .expect("a response")
    }

    /// An answer whose headers come at once and whose body never ends.
    fn stalled() -> axum::response::Response {
        let chunks = futures::stream::once(async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"{\"kind\":"))
        })
        .chain(futures::stream::pending());
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(chunks))
            .expect("a response")
    }

    fn get(path: &str) -> http::Request<Vec<u8>> {
        http::Request::get(path)
            .body(Vec::new())
            .expect("a request")
    }

    #[tokio::test]
    async fn a_server_that_keeps_refusing_gets_two_retries_within_seconds_whatever_it_asks() {
        let (client, seen) = client_of(|_| status(429), Duration::from_secs(10)).await;
        let started = Instant::now();
        let error = tokio::time::timeout(
            Duration::from_secs(10),
            client.request_text(get("/api/v1/namespaces/a/secrets/s")),
        )
        .await
        .expect("an answer within seconds")
        .expect_err("refused");
        // Retry-After asked for an hour: each wait is capped at 2 s.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(throttled(&error), Some(Throttled::Refused), "{error:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1 + MAX_RETRIES as usize);
    }

    #[tokio::test]
    async fn an_answer_whose_body_never_ends_fails_at_the_deadline() {
        let (client, _) = client_of(|_| stalled(), Duration::from_secs(1)).await;
        let started = Instant::now();
        let error = tokio::time::timeout(
            Duration::from_secs(10),
            client.request_text(get("/api/v1/namespaces/a/secrets/s")),
        )
        .await
        .expect("an answer within seconds")
        .expect_err("cut at the deadline");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        assert_eq!(throttled(&error), Some(Throttled::TimedOut), "{error:?}");
    }

    #[tokio::test]
    async fn a_watch_stays_open_past_the_deadline() {
        let (client, _) = client_of(|_| stalled(), Duration::from_secs(1)).await;
        let read = client.request_text(get("/api/v1/namespaces/a/secrets?watch=true"));
        assert!(
            tokio::time::timeout(Duration::from_secs(3), read)
                .await
                .is_err(),
            "a watch is not cut at the request deadline"
        );
    }

    #[test]
    fn refusals_and_expired_deadlines_are_throttling_and_nothing_else_is() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("refused", "Reason").with_code(code),
            ))
        };
        assert_eq!(throttled(&status(429)), Some(Throttled::Refused));
        for code in [403, 409, 500, 503] {
            assert_eq!(throttled(&status(code)), None, "{code}");
        }
        let expired = kube::Error::Service(Box::new(RequestDeadlineExceeded {
            timeout: Duration::from_secs(15),
        }));
        assert_eq!(throttled(&expired), Some(Throttled::TimedOut));
        let other = kube::Error::Service("connection refused".into());
        assert_eq!(throttled(&other), None);
    }
}
