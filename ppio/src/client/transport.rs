//! One request for one page: sending it, reading the body within its bounds, and turning the answer
//! into a page whose records are located (and redacted of the API key as they are decoded), or into
//! an error that says what the server said.

use super::*;

impl Client {
    /// Sends one request and turns the answer into a page or an error; also returns the
    /// status code, when there was a response, for logs and metrics.
    pub(super) async fn fetch_page(
        &self,
        key: &ApiKey,
        url: Url,
        budget: Option<ListingBudget>,
        memo: Option<&ListingMemo>,
    ) -> (Option<u16>, Result<FetchedPage, PpioError>) {
        let mut response = match self.send_get(key, url).await {
            Ok(response) => response,
            Err(error) => return (None, Err(error)),
        };
        let status = response.status();
        let result = if status.is_success() {
            let max_body = self.inner.max_body_bytes;
            let cap = budget.map_or(max_body, |budget| budget.remaining.min(max_body));
            match read_body(&mut response, cap).await {
                Ok(body) => {
                    let body_bytes = body.len();
                    decode_page(body, key, memo).map(|page| FetchedPage { page, body_bytes })
                }
                Err(BodyError::TooLarge) => Err(PpioError::InvalidResponse {
                    detail: match budget {
                        Some(budget) if budget.remaining < max_body => format!(
                            "the listing exceeded {} bytes; list fewer instances at once (narrower filters)",
                            budget.limit
                        ),
                        _ => format!("the response body is larger than the {max_body}-byte limit"),
                    },
                }),
                Err(BodyError::Transport(error)) => Err(self.transport_error(error, key)),
            }
        } else {
            Err(self.status_error(status, &mut response, key).await)
        };
        (Some(status.as_u16()), result)
    }

    /// Sends `GET url` with the key as bearer token; the response, whatever its status, or why
    /// none came.
    async fn send_get(&self, key: &ApiKey, url: Url) -> Result<Response, PpioError> {
        let Ok(mut authorization) = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        else {
            // ApiKey::new already guarantees a valid header value.
            let detail = "the API key cannot be sent as an HTTP header".to_owned();
            return Err(PpioError::InvalidConfig { detail });
        };
        authorization.set_sensitive(true);
        self.inner
            .http
            .get(url)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| self.transport_error(error, key))
    }

    /// Sends one request for a product list and turns the answer into products (redacted of the
    /// API key) or an error; also returns the status code, when there was a response.
    pub(super) async fn fetch_products(
        &self,
        key: &ApiKey,
        url: Url,
    ) -> (Option<u16>, Result<Products, PpioError>) {
        let mut response = match self.send_get(key, url).await {
            Ok(response) => response,
            Err(error) => return (None, Err(error)),
        };
        let status = response.status();
        let result = if status.is_success() {
            let max_body = self.inner.max_body_bytes;
            match read_body(&mut response, max_body).await {
                Ok(body) => decode_products(&body, key),
                Err(BodyError::TooLarge) => Err(PpioError::InvalidResponse {
                    detail: format!("the product list is larger than the {max_body}-byte limit"),
                }),
                Err(BodyError::Transport(error)) => Err(self.transport_error(error, key)),
            }
        } else {
            Err(self.status_error(status, &mut response, key).await)
        };
        (Some(status.as_u16()), result)
    }

    /// The error for a non-2xx answer, with what the server said in its body.
    async fn status_error(
        &self,
        status: StatusCode,
        response: &mut Response,
        key: &ApiKey,
    ) -> PpioError {
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .map(|value| sanitize(&String::from_utf8_lossy(value.as_bytes()), key))
                .unwrap_or_default();
            return PpioError::InvalidResponse {
                detail: format!(
                    "the server redirected (HTTP {}) to {location:?}; redirects are not followed \
                     because they would carry the API key elsewhere: set the endpoint to the \
                     final URL",
                    status.as_u16()
                ),
            };
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Timestamp::now()));
        let cap = MAX_ERROR_BODY_BYTES.min(self.inner.max_body_bytes);
        let said = parse_error_body(&read_body_prefix(response, cap).await, key);
        tracing::debug!(status = status.as_u16(), server_said = %said, "PPIO refused the request");
        let status = status.as_u16();
        match status {
            401 => PpioError::Unauthorized,
            403 => PpioError::Forbidden,
            429 => PpioError::RateLimited { retry_after },
            400..=499 => PpioError::Rejected {
                status,
                code: said.code,
                message: said.message.unwrap_or_default(),
            },
            500..=599 => PpioError::ServerError {
                status,
                message: said.to_string(),
            },
            _ => PpioError::InvalidResponse {
                detail: format!("unexpected HTTP status {status}"),
            },
        }
    }

    /// Maps a failure of the HTTP stack. The URL is left out of the detail (the endpoint is named
    /// instead) so the error chain's cause fits within the length cap.
    fn transport_error(&self, error: reqwest::Error, key: &ApiKey) -> PpioError {
        if error.is_timeout() {
            return PpioError::Timeout;
        }
        let host = self.inner.base_url.host_str().unwrap_or_default();
        let detail = format!("{host}: {}", error_chain(&error.without_url()));
        PpioError::Unreachable {
            detail: sanitize(&detail, key),
        }
    }
}

/// What is left of a listing's byte budget, and the budget itself for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListingBudget {
    pub(crate) remaining: usize,
    pub(crate) limit: usize,
}

/// A page and the size of the body it came in.
pub(crate) struct FetchedPage {
    pub(crate) page: RawPage,
    pub(crate) body_bytes: usize,
}

/// Reads a 200 body as a page, its records located but not decoded (see [`RawPage`]); a body that
/// `memo` has seen is not read again.
pub(super) fn decode_page(
    body: Vec<u8>,
    key: &ApiKey,
    memo: Option<&ListingMemo>,
) -> Result<RawPage, PpioError> {
    let page = match memo {
        Some(memo) => memo.page(body),
        None => RawPage::from_json(body),
    };
    page.map_err(|(error, body)| {
        // A body the item bound refused unread is not read now either, not even its start.
        let hint = Some(&body)
            .filter(|_| !error.refused_unread())
            .and_then(|body| error_sent_as_page(body, key))
            .map(|said| format!("; it looks like an error answer sent with HTTP 200: {said}"))
            .unwrap_or_default();
        PpioError::InvalidResponse {
            detail: sanitize(
                &format!("the list response does not decode: {error}{hint}"),
                key,
            ),
        }
    })
}

/// Reads a 200 body as a product list, redacted of the API key; a list with the key in a product's
/// ID is refused whole.
pub(super) fn decode_products(body: &[u8], key: &ApiKey) -> Result<Products, PpioError> {
    let mut products = Products::from_json(body).map_err(|error| {
        // A body the item bound refused unread is not read now either, not even its start.
        let refused_unread = error.path == "." && error.message.contains(REFUSED_UNREAD);
        let hint = Some(body)
            .filter(|_| !refused_unread)
            .and_then(|body| error_sent_as_page(body, key))
            .map(|said| format!("; it looks like an error answer sent with HTTP 200: {said}"))
            .unwrap_or_default();
        PpioError::InvalidResponse {
            detail: sanitize(
                &format!("the product list does not decode: {error}{hint}"),
                key,
            ),
        }
    })?;
    if let Some(index) = products.id_holding(key) {
        return Err(PpioError::InvalidResponse {
            detail: format!(
                "a product's ID contains the API key (product {} of the list, by ID), so no \
                 price can be looked up by it safely; the product list was discarded",
                index + 1
            ),
        });
    }
    products.redact(key);
    Ok(products)
}

/// Record `index` of `page` decoded whole, with the API key redacted from it.
pub(crate) fn decode_record(
    page: &RawPage,
    index: usize,
    key: &ApiKey,
) -> Result<Instance, PpioError> {
    let mut instance = page
        .decode(index)
        .map_err(|error| PpioError::InvalidResponse {
            detail: sanitize(&format!("the list response does not decode: {error}"), key),
        })?;
    instance.redact(key);
    Ok(instance)
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the whole body, chunk by chunk, failing as soon as it exceeds `cap` bytes.
async fn read_body(response: &mut Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length().unwrap_or(0);
    if usize::try_from(declared).map_or(true, |declared| declared > cap) {
        return Err(BodyError::TooLarge);
    }
    // The declared length (already within the cap) is reserved at once: no copying as it grows.
    let mut body = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `cap` bytes of an error body; a body that cannot be read counts as empty, since
/// the status code alone already says what happened.
async fn read_body_prefix(response: &mut Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

/// An error and its causes, joined by `: `, skipping causes its message already contains.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
