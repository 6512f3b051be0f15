//! Client for the PPIO GPU API v2 list call: the typed instance record, the HTTP client that pages
//! through a whole listing, and the errors it reports. It knows nothing of Kubernetes; mapping a
//! PPIO record to cluster objects happens elsewhere.
//!
//! - `api_key`: the API key, which never prints.
//! - `model`: the instance record (lenient decoding, redaction of the key) and the list page (a
//!   strict envelope: `data` and `has_more` must be there).
//! - `client`: HTTP, paging, per-page retries of transient failures, and the guards that make a
//!   listing complete or an error.
//! - `pager`: the same listing handed out page by page, so memory is bounded by a page.
//! - `error`: the error enum, server error bodies, `Retry-After`, sanitizing server text, and the one
//!   helper that redacts the key.

mod api_key;
mod client;
mod error;
mod model;
mod pager;
mod rate_limit;

pub use api_key::{ApiKey, InvalidApiKey};
pub use client::{Client, ClientConfig, ListQuery, Listing, ListingLimits, RequestOutcome};
pub use error::{MAX_RETRY_AFTER, PpioError};
pub use model::{
    AutoMigrate, AutoRenew, Billing, BillingMode, DecodeError, EnvVar, Instance, InstanceId,
    InstanceStatus, Network, Page, Port, Prepaid, ResourceSpecs, UnknownBillingMode, Volume,
};
pub use pager::Pager;
pub use rate_limit::RateLimiter;
