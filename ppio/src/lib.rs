//! The PPIO GPU API v2 instance list and product list: the typed record, the guards that make a
//! listing complete or an error, the products and their exact prices, the errors it reports, and
//! (feature `client`) the HTTP client that pages through the one and reads the other. It knows
//! nothing of Kubernetes: the operator's core maps a record to cluster objects.
//!
//! - `text`: the one rule for text from outside (control characters, bidirectional marks, cutting
//!   on a character boundary), which the operator's core applies too.
//! - `api_key`: the API key, which never prints.
//! - `redaction`: what counts as an echo of the key in server text (any run of 8 of its
//!   characters, plain, quoted, base64- or percent-encoded), and its replacement.
//! - `model`: the instance record (lenient decoding, redaction of the key) and the list page (a
//!   strict envelope: `data` and `has_more` must be there).
//! - `raw_page`: a page whose records are located and hashed at once and decoded only when asked,
//!   so that a listing of unchanged records decodes few of them.
//! - `decimal`: exact non-negative decimals with checked arithmetic: prices, rates, sums; never
//!   floats.
//! - `products`: the product list (a strict envelope, bounded, lenient numbers) reduced to what a
//!   price needs, each price known exactly or unknown with why.
//! - `record_summary`: the few fields of a record that counts, metrics and expiry read.
//! - `memo`: what a view's earlier listings read (page layouts, record summaries), by a hash of the
//!   bytes, so that what is sent again is not read again.
//! - `config`: how the client connects, what a listing asks for, and the bounds of a listing.
//! - `client` (feature `client`): paging through a listing and per-page retries of transient failures; `transport`
//!   inside it: one request, its body within bounds, and its answer as a page or an error;
//!   `products` inside it: the product list read whole, retried like a page.
//! - `paging`: the guards that make a listing complete or an error (budgets, cursor loops,
//!   contradictions, duplicate IDs), as a pure state machine fed one page at a time.
//! - `pager` (feature `client`): a listing handed out page by page, so memory is bounded by a page; each page gives
//!   its records' summaries, a hash of each record as sent, and the whole record on demand.
//! - `error`: the error enum, server error bodies, `Retry-After`, and sanitizing server text.

// Without the client, the parts of the model only the client reads (error bodies, `Retry-After`, a
// raw page's guards) are unused.
#![cfg_attr(not(feature = "client"), allow(dead_code))]

pub mod text;

mod api_key;
#[cfg(feature = "client")]
mod client;
mod config;
mod decimal;
mod error;
mod memo;
mod model;
#[cfg(feature = "client")]
mod pager;
mod paging;
mod products;
#[cfg(feature = "client")]
mod rate_limit;
mod raw_page;
mod record_summary;
mod redaction;

pub use api_key::{ApiKey, InvalidApiKey};
#[cfg(all(feature = "client", any(test, feature = "testing")))]
pub use client::Listing;
#[cfg(feature = "client")]
pub use client::{Client, RequestOutcome};
pub use config::{ClientConfig, ListQuery, ListingLimits};
pub use decimal::{Decimal, MAX_DECIMAL_SCALE};
pub use error::{ErrorKind, MAX_RETRY_AFTER, PpioError};
pub use memo::{ListingMemo, MAX_MEMO_BYTES, MemoPool};
#[cfg(any(test, feature = "testing"))]
pub use model::Page;
pub use model::{
    AutoMigrate, AutoRenew, Billing, BillingMode, DecodeError, EnvVar, Instance, InstanceId,
    InstanceStatus, MAX_PAGE_ITEMS, Network, Port, Prepaid, ResourceSpecs, UnknownBillingMode,
    Volume,
};
#[cfg(feature = "client")]
pub use pager::{ListedPage, Pager};
pub use paging::MAX_CURSOR_BYTES;
/// The paging guards as a state machine of their own: a test helper (feature `testing`); the client
/// runs them on every listing.
#[cfg(any(test, feature = "testing"))]
pub use paging::{NextPage, Paging, Progress};
pub use products::{
    GpuModel, ListedPrice, MAX_PREPAID_TERMS, MAX_PRICE_PRECISION, MAX_PRICE_UNITS,
    MAX_PRODUCT_NAME_BYTES, MAX_PRODUCTS, MAX_TERM_MONTHS, Pricing, Product, ProductCategory,
    ProductId, ProductQuery, ProductType, Products, TermPrice, UnknownPrice,
};
#[cfg(feature = "client")]
pub use rate_limit::RateLimiter;
pub use raw_page::RawPage;
pub use record_summary::{PrepaidTerm, RecordSummary};
pub use redaction::{MIN_ECHO_CHARS, REDACTED};
