//! PPIO's product list, kept per API key and endpoint: read when a sync first needs it, read again
//! once it is older than its time to live (`--product-list-ttl-seconds`, an hour by default) or
//! when a view asks for a refresh (a new value of its refresh annotation). Views sharing a key and
//! endpoint share one list and one read: while one sync reads it, the others wait for that read.
//!
//! A read that fails never fails a sync: the last list read stays in use, and the failure is kept
//! with it so that the view can say its prices are stale and why. After a failure the list is read
//! again at the next sync that comes at least [`RETRY_FAILED_AFTER`] (or the time to live, if
//! shorter) later, or at once on a refresh request.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use ppio::{ApiKey, Products};
use tokio::time::Instant;
use url::Url;

use ppio_gpu_core::cost::report::{PriceList, PriceListFailure};

/// Product lists kept at most (one per API key and endpoint in use); beyond it they are all
/// dropped and read again as needed.
const MAX_LISTS: usize = 64;

/// How soon a list whose last read failed is read again, at the earliest (unless its time to live
/// is shorter, or a view asks for a refresh).
pub(super) const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// The product lists of every key and endpoint in use.
pub(super) struct PriceLists {
    ttl: Duration,
    hasher: RandomState,
    lists: Mutex<HashMap<(Url, u64), Shared>>,
}

/// One list, shared by the syncs of every view of its key and endpoint.
type Shared = Arc<tokio::sync::Mutex<Kept>>;

/// One key's product list at one endpoint.
#[derive(Default)]
struct Kept {
    /// The last list read, when, and when by this process's clock.
    read: Option<(Arc<Products>, Timestamp, Instant)>,
    /// The last read failed: why, and when by this process's clock.
    failure: Option<(PriceListFailure, Instant)>,
}

/// The prices a sync uses, and whether it read them.
pub(super) struct Prices {
    /// The prices.
    pub(super) list: PriceList,
    /// `Some(true)` when this sync read the list, `Some(false)` when its read failed, `None` when
    /// it used a list read before.
    pub(super) read: Option<bool>,
}

impl PriceLists {
    /// Lists kept for `ttl` each.
    pub(super) fn new(ttl: Duration) -> PriceLists {
        PriceLists {
            ttl,
            hasher: RandomState::new(),
            lists: Mutex::new(HashMap::new()),
        }
    }

    /// The prices of `key` at `endpoint`, calling `read` for a new list when the one kept is older
    /// than the time to live, `refresh` asks for one, or none is kept (and no read failed within
    /// [`RETRY_FAILED_AFTER`]). `read` fails with a message safe to show.
    pub(super) async fn of<R, F>(
        &self,
        endpoint: &Url,
        key: &ApiKey,
        refresh: bool,
        read: R,
    ) -> Prices
    where
        R: FnOnce() -> F,
        F: Future<Output = Result<Products, String>>,
    {
        let kept = self.kept(endpoint, key);
        let mut kept = kept.lock().await;
        let now = Instant::now();
        let stale = kept
            .read
            .as_ref()
            .is_none_or(|(_, _, at)| now.duration_since(*at) >= self.ttl);
        let failed_recently = kept
            .failure
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) < RETRY_FAILED_AFTER.min(self.ttl));
        let read = if refresh || (stale && !failed_recently) {
            match read().await {
                Ok(products) => {
                    kept.read = Some((Arc::new(products), Timestamp::now(), Instant::now()));
                    kept.failure = None;
                    Some(true)
                }
                Err(message) => {
                    let failure = PriceListFailure {
                        at: Timestamp::now(),
                        message,
                    };
                    kept.failure = Some((failure, Instant::now()));
                    Some(false)
                }
            }
        } else {
            None
        };
        Prices {
            list: PriceList {
                products: kept.read.as_ref().map(|(products, _, _)| products.clone()),
                read_at: kept.read.as_ref().map(|(_, at, _)| *at),
                failure: kept.failure.as_ref().map(|(failure, _)| failure.clone()),
            },
            read,
        }
    }

    /// The list kept for `key` at `endpoint`, made empty when there is none.
    fn kept(&self, endpoint: &Url, key: &ApiKey) -> Shared {
        let mut lists = self
            .lists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (endpoint.clone(), key.hash_with(&self.hasher));
        if let Some(kept) = lists.get(&id) {
            return kept.clone();
        }
        // Views choose endpoints (within the allow-list) and keys: keep the lists from growing
        // without end.
        if lists.len() >= MAX_LISTS {
            lists.clear();
        }
        lists.entry(id).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn products(name: &str) -> Products {
        Products::from_json(
            format!(
                r#"{{"data":[{{"id":"p1","name":"{name}","type":"gpu","pricing":{{"precision":3,
                "postpaid":{{"base_price":2000,"final_price":1500,"unit":"per_hour"}}}}}}]}}"#
            )
            .as_bytes(),
        )
        .expect("a product list")
    }

    fn name(prices: &Prices) -> Option<String> {
        let products = prices.list.products.as_ref()?;
        Some(products.get("p1")?.name.clone())
    }

    struct Reads(AtomicUsize);

    impl Reads {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }

        fn ok(&self, name: &str) -> impl Future<Output = Result<Products, String>> + use<> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(products(name)))
        }

        fn failing(&self) -> impl Future<Output = Result<Products, String>> + use<> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err("PPIO answered HTTP 503".to_owned()))
        }
    }

    fn endpoint() -> Url {
        Url::parse("https://api.ppio.com").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_is_read_once_per_time_to_live_and_on_a_refresh_request() {
        let lists = PriceLists::new(Duration::from_secs(3_600));
        let key = ApiKey::new("sk-one").unwrap();
        let reads = Reads(AtomicUsize::new(0));
        let first = lists
            .of(&endpoint(), &key, false, || reads.ok("A100"))
            .await;
        assert_eq!(
            (first.read, name(&first).as_deref()),
            (Some(true), Some("A100"))
        );
        // Within the time to live: the list kept, not read again.
        tokio::time::advance(Duration::from_secs(3_599)).await;
        let kept = lists
            .of(&endpoint(), &key, false, || reads.ok("H100"))
            .await;
        assert_eq!((kept.read, name(&kept).as_deref()), (None, Some("A100")));
        assert_eq!(reads.count(), 1);
        // A refresh request reads it at once.
        let refreshed = lists.of(&endpoint(), &key, true, || reads.ok("H100")).await;
        assert_eq!(
            (refreshed.read, name(&refreshed).as_deref()),
            (Some(true), Some("H100"))
        );
        // And the time to live counts from that read.
        tokio::time::advance(Duration::from_secs(3_600)).await;
        let expired = lists.of(&endpoint(), &key, false, || reads.ok("L40")).await;
        assert_eq!(
            (expired.read, name(&expired).as_deref()),
            (Some(true), Some("L40"))
        );
        assert_eq!(reads.count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_keeps_the_last_list_and_says_why_until_a_read_succeeds() {
        let lists = PriceLists::new(Duration::from_secs(600));
        let key = ApiKey::new("sk-one").unwrap();
        let reads = Reads(AtomicUsize::new(0));
        lists
            .of(&endpoint(), &key, false, || reads.ok("A100"))
            .await;
        tokio::time::advance(Duration::from_secs(600)).await;
        let failed = lists.of(&endpoint(), &key, false, || reads.failing()).await;
        assert_eq!(failed.read, Some(false));
        assert_eq!(
            name(&failed).as_deref(),
            Some("A100"),
            "the last list stays"
        );
        let failure = failed.list.failure.expect("the failure is kept");
        assert!(failure.message.contains("503"));
        // Not read again at every sync while it fails...
        tokio::time::advance(RETRY_FAILED_AFTER - Duration::from_secs(1)).await;
        let waiting = lists.of(&endpoint(), &key, false, || reads.failing()).await;
        assert_eq!(waiting.read, None);
        assert!(waiting.list.failure.is_some(), "still stale");
        assert_eq!(reads.count(), 2);
        // ... but once the retry delay has passed; a success clears the failure.
        tokio::time::advance(Duration::from_secs(1)).await;
        let recovered = lists
            .of(&endpoint(), &key, false, || reads.ok("H100"))
            .await;
        assert_eq!(recovered.read, Some(true));
        assert_eq!(name(&recovered).as_deref(), Some("H100"));
        assert!(recovered.list.failure.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn keys_and_endpoints_have_lists_of_their_own() {
        let lists = PriceLists::new(Duration::from_secs(3_600));
        let (one, two) = (
            ApiKey::new("sk-one").unwrap(),
            ApiKey::new("sk-two").unwrap(),
        );
        let other = Url::parse("https://api.example.test").unwrap();
        let reads = Reads(AtomicUsize::new(0));
        lists
            .of(&endpoint(), &one, false, || reads.ok("A100"))
            .await;
        let second_key = lists
            .of(&endpoint(), &two, false, || reads.ok("H100"))
            .await;
        let second_endpoint = lists.of(&other, &one, false, || reads.ok("L40")).await;
        assert_eq!(name(&second_key).as_deref(), Some("H100"));
        assert_eq!(name(&second_endpoint).as_deref(), Some("L40"));
        let again = lists
            .of(&endpoint(), &one, false, || reads.ok("B200"))
            .await;
        assert_eq!(name(&again).as_deref(), Some("A100"));
        assert_eq!(reads.count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_read_that_fails_leaves_no_prices_and_the_failure() {
        let lists = PriceLists::new(Duration::from_secs(3_600));
        let key = ApiKey::new("sk-one").unwrap();
        let reads = Reads(AtomicUsize::new(0));
        let failed = lists.of(&endpoint(), &key, false, || reads.failing()).await;
        assert!(failed.list.products.is_none() && failed.list.read_at.is_none());
        assert!(failed.list.failure.is_some());
    }
}
