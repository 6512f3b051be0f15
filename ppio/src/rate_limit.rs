//! A token bucket per API key, so that views sharing one PPIO account stay within its request budget
//! instead of spending it on 429 answers. PPIO documents no limit; a public client keeps to 100
//! requests a minute, which is the default here.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::api_key::ApiKey;

/// Keys remembered at most; beyond it the buckets start again full (rare: one key per account).
const MAX_KEYS: usize = 1024;

/// Requests per minute per API key, with a burst of a minute's worth. Share one between clients of
/// different endpoints (see [`super::Client::with_rate_limiter`]) so a key has one budget.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    // Keys are remembered only as hashes under a per-process random seed.
    hasher: RandomState,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests a minute per key; 0 allows any number.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            hasher: RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until a request with `key` may be sent, and counts it.
    pub(crate) async fn acquire(&self, key: &ApiKey) {
        if self.per_minute == 0 {
            return;
        }
        let id = self.hasher.hash_one(key.expose());
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        loop {
            let wait = {
                let mut buckets = self
                    .buckets
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if buckets.len() >= MAX_KEYS && !buckets.contains_key(&id) {
                    buckets.clear();
                }
                let now = Instant::now();
                let bucket = buckets.entry(id).or_insert(Bucket {
                    tokens: capacity,
                    updated: now,
                });
                let elapsed = now.duration_since(bucket.updated).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
                bucket.updated = now;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - bucket.tokens) / per_second)
            };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "waiting for the per-key request budget"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn time_for(limiter: &RateLimiter, key: &ApiKey, requests: usize) -> Duration {
        let started = tokio::time::Instant::now();
        for _ in 0..requests {
            limiter.acquire(key).await;
        }
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_minutes_budget_goes_at_once_and_the_next_request_waits() {
        let limiter = RateLimiter::new(60);
        let key = ApiKey::new("sk-one").unwrap();
        assert!(time_for(&limiter, &key, 60).await < Duration::from_millis(10));
        let waited = time_for(&limiter, &key, 1).await;
        assert!(
            waited >= Duration::from_millis(900) && waited <= Duration::from_millis(1100),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keys_have_budgets_of_their_own() {
        let limiter = RateLimiter::new(10);
        let first = ApiKey::new("sk-one").unwrap();
        let second = ApiKey::new("sk-two").unwrap();
        time_for(&limiter, &first, 10).await;
        assert!(time_for(&limiter, &second, 10).await < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let key = ApiKey::new("sk-one").unwrap();
        assert!(time_for(&limiter, &key, 10_000).await < Duration::from_millis(10));
    }
}
