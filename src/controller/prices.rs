//! PPIO's product list, kept per API key and endpoint: read when a sync first needs it, read again
//! once it is older than its time to live (`--product-list-ttl-seconds`, an hour by default) or
//! when a view asks for a refresh (a new value of its refresh annotation). Views sharing a key and
//! endpoint share one list and one read: a sync that finds a read in flight waits for it (at most
//! its own deadline) and uses what it read, rather than reading again.
//!
//! A read that fails never fails a sync: the last list read stays in use, and the failure is kept
//! with it so that the view can say its prices are stale and why. So does an answer that lists no
//! product at all where the last one listed some. After a failure the list is read again at the
//! first sync at least [`RETRY_FAILED_AFTER`] (or the time to live, if shorter) later, or at once on
//! a refresh request.
//!
//! At most [`MAX_LISTS`] lists are kept; beyond them, the one used least recently goes.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use ppio::{ApiKey, Products};
use tokio::time::Instant;
use url::Url;

use ppio_gpu_core::cost::report::{PriceList, PriceListFailure};

/// Product lists kept at most (one per API key and endpoint in use).
pub(super) const MAX_LISTS: usize = 256;

/// How soon a list whose last read failed is read again, at the earliest (unless its time to live
/// is shorter, or a view asks for a refresh).
pub(super) const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// The product lists of every key and endpoint in use.
pub(super) struct PriceLists {
    ttl: Duration,
    hasher: RandomState,
    /// Each list by endpoint and key hash, with when it was last used.
    lists: Mutex<HashMap<ListId, (Arc<Kept>, Instant)>>,
}

/// A list's endpoint and its key, hashed.
type ListId = (Url, u64);

/// One key's product list at one endpoint, shared by the syncs of every view of that key and
/// endpoint.
#[derive(Default)]
struct Kept {
    /// Held while the list is read, so that one sync reads it for all.
    reading: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last list read, when, and when by this process's clock.
    read: Option<(Arc<Products>, Timestamp, Instant)>,
    /// The last read failed: why, and when by this process's clock.
    failure: Option<(PriceListFailure, Instant)>,
    /// When the last read (successful or not) ended, by this process's clock.
    last_attempt: Option<Instant>,
}

/// The prices a sync uses, and whether it read them.
pub(super) struct Prices {
    /// The prices.
    pub(super) list: PriceList,
    /// `Some(true)` when this sync read the list, `Some(false)` when its read failed, `None` when
    /// it used a list read before.
    pub(super) read: Option<bool>,
}

impl State {
    /// Whether a sync that started to wait at `asked` must read the list now.
    fn needs_read(&self, ttl: Duration, refresh: bool, asked: Instant, now: Instant) -> bool {
        // Read for this sync by another while it waited: nothing more to do.
        if self.last_attempt.is_some_and(|at| at > asked) {
            return false;
        }
        let stale = self
            .read
            .as_ref()
            .is_none_or(|(_, _, at)| now.duration_since(*at) >= ttl);
        let failed_recently = self
            .failure
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) < RETRY_FAILED_AFTER.min(ttl));
        refresh || ((stale || self.failure.is_some()) && !failed_recently)
    }

    /// Takes what a read came to.
    fn record(&mut self, read: Result<Products, String>) -> bool {
        let now = Instant::now();
        self.last_attempt = Some(now);
        let failure = match read {
            Ok(products) => match &self.read {
                // An answer without a single product where the last listed some is no price list.
                Some((last, _, _)) if products.is_empty() && !last.is_empty() => format!(
                    "PPIO listed no products at all, where it listed {} before.",
                    last.len()
                ),
                _ => {
                    self.read = Some((Arc::new(products), Timestamp::now(), now));
                    self.failure = None;
                    return true;
                }
            },
            Err(message) => message,
        };
        let failure = PriceListFailure {
            at: Timestamp::now(),
            message: failure,
        };
        self.failure = Some((failure, now));
        false
    }

    fn list(&self) -> PriceList {
        PriceList {
            products: self.read.as_ref().map(|(products, _, _)| products.clone()),
            read_at: self.read.as_ref().map(|(_, at, _)| *at),
            failure: self.failure.as_ref().map(|(failure, _)| failure.clone()),
        }
    }
}

impl Kept {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
    /// than the time to live, `refresh` asks for one, none is kept, or the last read failed (and
    /// not within [`RETRY_FAILED_AFTER`]). A read in flight for the same key and endpoint is waited
    /// for, at most `wait`; then the prices kept are used as they are. `read` fails with a message
    /// safe to show, and bounds its own time.
    pub(super) async fn of<R, F>(
        &self,
        endpoint: &Url,
        key: &ApiKey,
        refresh: bool,
        wait: Duration,
        read: R,
    ) -> Prices
    where
        R: FnOnce() -> F,
        F: Future<Output = Result<Products, String>>,
    {
        let kept = self.kept(endpoint, key);
        let asked = Instant::now();
        let mut outcome = None;
        if let Ok(_reading) = tokio::time::timeout(wait, kept.reading.lock()).await {
            let needs = kept
                .state()
                .needs_read(self.ttl, refresh, asked, Instant::now());
            if needs {
                let products = read().await;
                outcome = Some(kept.state().record(products));
            }
        }
        Prices {
            list: kept.state().list(),
            read: outcome,
        }
    }

    /// The list kept for `key` at `endpoint`, made empty when there is none.
    fn kept(&self, endpoint: &Url, key: &ApiKey) -> Arc<Kept> {
        let mut lists = self
            .lists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (endpoint.clone(), key.hash_with(&self.hasher));
        let now = Instant::now();
        if let Some((kept, used)) = lists.get_mut(&id) {
            *used = now;
            return kept.clone();
        }
        // Views choose endpoints (within the allow-list) and keys: the list used least recently
        // goes, so that many keys of one tenant cannot push out the lists in use by all.
        if lists.len() >= MAX_LISTS
            && let Some(oldest) = lists
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone())
        {
            lists.remove(&oldest);
        }
        let kept = Arc::new(Kept::default());
        lists.insert(id, (kept.clone(), now));
        kept
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

    const WAIT: Duration = Duration::from_secs(60);

    fn endpoint() -> Url {
        Url::parse("https://api.ppio.com").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_is_read_once_per_time_to_live_and_on_a_refresh_request() {
        let lists = PriceLists::new(Duration::from_secs(3_600));
        let key = ApiKey::new("sk-one").unwrap();
        let reads = Reads(AtomicUsize::new(0));
        let first = lists
            .of(&endpoint(), &key, false, WAIT, || reads.ok("A100"))
            .await;
        assert_eq!(
            (first.read, name(&first).as_deref()),
            (Some(true), Some("A100"))
        );
        // Within the time to live: the list kept, not read again.
        tokio::time::advance(Duration::from_secs(3_599)).await;
        let kept = lists
            .of(&endpoint(), &key, false, WAIT, || reads.ok("H100"))
            .await;
        assert_eq!((kept.read, name(&kept).as_deref()), (None, Some("A100")));
        assert_eq!(reads.count(), 1);
        // A refresh request reads it at once.
        let refreshed = lists
            .of(&endpoint(), &key, true, WAIT, || reads.ok("H100"))
            .await;
        assert_eq!(
            (refreshed.read, name(&refreshed).as_deref()),
            (Some(true), Some("H100"))
        );
        // And the time to live counts from that read.
        tokio::time::advance(Duration::from_secs(3_600)).await;
        let expired = lists
            .of(&endpoint(), &key, false, WAIT, || reads.ok("L40"))
            .await;
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
            .of(&endpoint(), &key, false, WAIT, || reads.ok("A100"))
            .await;
        tokio::time::advance(Duration::from_secs(600)).await;
        let failed = lists
            .of(&endpoint(), &key, false, WAIT, || reads.failing())
            .await;
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
        let waiting = lists
            .of(&endpoint(), &key, false, WAIT, || reads.failing())
            .await;
        assert_eq!(waiting.read, None);
        assert!(waiting.list.failure.is_some(), "still stale");
        assert_eq!(reads.count(), 2);
        // ... but once the retry delay has passed; a success clears the failure.
        tokio::time::advance(Duration::from_secs(1)).await;
        let recovered = lists
            .of(&endpoint(), &key, false, WAIT, || reads.ok("H100"))
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
            .of(&endpoint(), &one, false, WAIT, || reads.ok("A100"))
            .await;
        let second_key = lists
            .of(&endpoint(), &two, false, WAIT, || reads.ok("H100"))
            .await;
        let second_endpoint = lists
            .of(&other, &one, false, WAIT, || reads.ok("L40"))
            .await;
        assert_eq!(name(&second_key).as_deref(), Some("H100"));
        assert_eq!(name(&second_endpoint).as_deref(), Some("L40"));
        let again = lists
            .of(&endpoint(), &one, false, WAIT, || reads.ok("B200"))
            .await;
        assert_eq!(name(&again).as_deref(), Some("A100"));
        assert_eq!(reads.count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_read_that_fails_leaves_no_prices_and_the_failure() {
        let lists = PriceLists::new(Duration::from_secs(3_600));
        let key = ApiKey::new("sk-one").unwrap();
        let reads = Reads(AtomicUsize::new(0));
        let failed = lists
            .of(&endpoint(), &key, false, WAIT, || reads.failing())
            .await;
        assert!(failed.list.products.is_none() && failed.list.read_at.is_none());
        assert!(failed.list.failure.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_without_products_where_there_were_some_is_a_failed_read() {
        let lists = PriceLists::new(Duration::from_secs(600));
        let key = ApiKey::new("sk-one").unwrap();
        lists
            .of(&endpoint(), &key, false, WAIT, || async {
                Ok(products("A100"))
            })
            .await;
        let empty = lists
            .of(&endpoint(), &key, true, WAIT, || async {
                Ok(Products::from_json(br#"{"data":[]}"#).unwrap())
            })
            .await;
        assert_eq!(empty.read, Some(false));
        assert_eq!(name(&empty).as_deref(), Some("A100"), "the last list stays");
        assert!(empty.list.failure.unwrap().message.contains("no products"));
    }

    #[tokio::test(start_paused = true)]
    async fn syncs_waiting_for_a_read_in_flight_use_it_instead_of_reading_again() {
        let lists = PriceLists::new(Duration::from_secs(600));
        let key = ApiKey::new("sk-one").unwrap();
        let reads = AtomicUsize::new(0);
        let read = || {
            reads.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(products("A100"))
            }
        };
        // Both ask for a refresh; the second waits for the first's read and takes it.
        let at = endpoint();
        let (first, second) = tokio::join!(
            lists.of(&at, &key, true, WAIT, read),
            lists.of(&at, &key, true, WAIT, read)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!((first.read, second.read), (Some(true), None));
        assert_eq!(name(&second).as_deref(), Some("A100"));

        // A read that hangs holds others back no longer than their wait: they go on with the
        // prices kept.
        let hanging = || async {
            std::future::pending::<()>().await;
            Ok(products("never"))
        };
        let slow = lists.of(&at, &key, true, WAIT, hanging);
        let waiting = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let started = Instant::now();
            let prices = lists
                .of(&at, &key, true, Duration::from_secs(2), hanging)
                .await;
            (prices, started.elapsed())
        };
        tokio::select! {
            _ = slow => panic!("the hanging read ended"),
            (prices, waited) = waiting => {
                assert_eq!(waited, Duration::from_secs(2));
                assert_eq!((prices.read, name(&prices).as_deref()), (None, Some("A100")));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_bound_the_list_used_least_recently_goes() {
        let lists = PriceLists::new(Duration::from_secs(3_600));
        let reads = Reads(AtomicUsize::new(0));
        let busy = ApiKey::new("sk-busy").unwrap();
        lists
            .of(&endpoint(), &busy, false, WAIT, || reads.ok("A100"))
            .await;
        for n in 0..MAX_LISTS {
            tokio::time::advance(Duration::from_millis(1)).await;
            let key = ApiKey::new(format!("sk-other-{n}")).unwrap();
            lists
                .of(&endpoint(), &key, false, WAIT, || reads.failing())
                .await;
            // The busy key's views sync all the while.
            lists
                .of(&endpoint(), &busy, false, WAIT, || reads.ok("H100"))
                .await;
        }
        let busy_list = lists
            .of(&endpoint(), &busy, false, WAIT, || reads.ok("H100"))
            .await;
        assert_eq!(
            name(&busy_list).as_deref(),
            Some("A100"),
            "never pushed out"
        );
        assert!(lists.lists.lock().unwrap().len() <= MAX_LISTS);
    }
}
