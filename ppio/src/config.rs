//! How a PPIO client connects, what a listing asks for, and the bounds of one listing.

use std::time::Duration;

use url::Url;

use super::model::BillingMode;

/// How the client connects; one client serves every key and query against one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Endpoint root; the list call is `{base_url}/gpus/v2/instances`. A path prefix is kept.
    pub base_url: Url,
    /// Limit for establishing the TCP and TLS connection.
    pub connect_timeout: Duration,
    /// Limit for one whole request, from sending it to the last byte of the body.
    pub request_timeout: Duration,
    /// Largest response body accepted; a larger one is an invalid response. A whole listing is
    /// further bounded by [`ListingLimits::max_listing_bytes`].
    pub max_body_bytes: usize,
    /// Requests a minute per API key, shared by every listing with that key through this client
    /// (and its clones); 0 sends without limit.
    pub requests_per_minute: u32,
}

impl Default for ClientConfig {
    /// `https://api.ppio.com`, 5 s to connect, 30 s per request, 16 MiB bodies, 100 requests a minute
    /// per key.
    fn default() -> Self {
        ClientConfig {
            base_url: Url::parse("https://api.ppio.com").expect("constant URL is valid"),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            requests_per_minute: 100,
        }
    }
}

/// Filters and page size of a listing; empty filters are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Fuzzy match on instance name or ID.
    pub name: Option<String>,
    /// Remote status, e.g. `running`.
    pub status: Option<String>,
    /// Regions; sent comma-separated.
    pub regions: Vec<String>,
    /// Billing mode.
    pub billing_mode: Option<BillingMode>,
    /// Instances per page; 0 lets the server choose.
    pub page_size: u32,
}

/// Bounds on one listing, so a misbehaving server cannot keep the client paging for ever, and how
/// hard a page that fails transiently is retried within the listing. A listing read page by page
/// ([`Pager`](super::Pager)) holds one page at a time, plus 8 bytes or so per instance ID for the
/// duplicate guard; a listing read whole (`Client::list_all_instances`, a test helper)
/// holds every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingLimits {
    /// Most pages fetched before the listing fails.
    pub max_pages: u32,
    /// Most instances accepted before the listing fails.
    pub max_instances: usize,
    /// Most body bytes, summed over the listing's pages, before the listing fails. Each body is also
    /// bounded by [`ClientConfig::max_body_bytes`]. Bodies of failed attempts do not count.
    pub max_listing_bytes: usize,
    /// Most requests for one page (the first try included) when it fails transiently: a 429, a
    /// 5xx, a timeout or a connection failure. 0 counts as 1, that is no retry.
    pub page_attempts: u32,
    /// Wait before the first retry of a page when the server did not say how long to wait; each
    /// further retry doubles it, and every wait is jittered down by up to half.
    pub retry_base: Duration,
    /// Longest wait before retrying a page. A 429 whose `Retry-After` asks for longer ends the
    /// listing at once with [`PpioError::RateLimited`](super::PpioError::RateLimited), so the caller schedules the next try.
    pub max_retry_wait: Duration,
}

impl Default for ListingLimits {
    /// 10 000 pages, 1 000 000 instances, 1 GiB of bodies in all; 3 attempts per page, retries from
    /// 500 ms, waits of at most 30 s.
    fn default() -> Self {
        ListingLimits {
            max_pages: 10_000,
            max_instances: 1_000_000,
            max_listing_bytes: 1024 * 1024 * 1024,
            page_attempts: 3,
            retry_base: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(30),
        }
    }
}
