//! How the controller behaves: its settings, from the command line.

use ppio::ListingLimits;

use super::EndpointPolicy;

/// The default of [`Settings::memo_memory_limit`]: 64 MiB, one view's cap
/// ([`ppio::MAX_MEMO_BYTES`]), so one large account keeps its whole memo. It leaves the chart's
/// default memory limit of 256 MiB room for the rest: the process itself (some 15 MiB), a page body
/// of up to 16 MiB being read and located in each of the views synced at once (4 by default), and
/// the mirror cache (some 200 bytes a mirror).
pub const DEFAULT_MEMO_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// How long a product list is used before it is read again, unless set otherwise.
pub const DEFAULT_PRODUCT_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(3_600);

/// How the controller behaves, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Endpoints views may use.
    pub endpoints: EndpointPolicy,
    /// Views synced at once, operator-wide.
    pub view_concurrency: u16,
    /// Kubernetes writes in flight at once within one sync.
    pub write_concurrency: usize,
    /// Timeouts and body limit of PPIO requests.
    pub ppio: ppio::ClientConfig,
    /// Guards on one listing.
    pub listing_limits: ListingLimits,
    /// Most bytes all views' listing memos hold together (`--memo-memory-limit-mib`); each view's
    /// is capped at [`ppio::MAX_MEMO_BYTES`] besides.
    pub memo_memory_limit: usize,
    /// Only views (and mirrors) with labels matching this selector, e.g.
    /// `sharding.ppio.io/key in (shard1)`: this replica set's shard.
    pub label_selector: Option<String>,
    /// Export `ppio_gpu_operator_instance_info`, one series per listed instance.
    pub metrics_instance_info: bool,
    /// Keep Services for the mirrors of views that ask for them (`--services`), routing only to
    /// the addresses this rule accepts; `None`: keep none (the operator may lack the RBAC).
    pub services: Option<ppio_gpu_core::services::AddressPolicy>,
    /// How long a product list (the prices) is used before it is read again.
    pub product_list_ttl: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoints: EndpointPolicy::new(Vec::new()),
            view_concurrency: 4,
            write_concurrency: 16,
            ppio: ppio::ClientConfig::default(),
            listing_limits: ListingLimits::default(),
            memo_memory_limit: DEFAULT_MEMO_MEMORY_LIMIT,
            label_selector: None,
            metrics_instance_info: false,
            services: None,
            product_list_ttl: DEFAULT_PRODUCT_LIST_TTL,
        }
    }
}
