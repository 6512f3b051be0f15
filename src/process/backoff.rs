//! Waiting after failures, and spreading waits: the operator's rules for both.
//!
//! - **Backoff**: after the n-th failure in a row, wait the first wait doubled n-1 times, at most a
//!   cap ([`capped_exponential`]). A failing view's retries and a refused Kubernetes request's use
//!   it. (The PPIO client, a crate of its own, retries a page within a listing after waits that
//!   double the same way, from its own settings.)
//! - **Jitter**: a wait scaled by a random factor from a range ([`Jitter`]), so that the many
//!   things that wait together (views, refused writes, standby replicas) do not wake together. Each
//!   wait has its range, named here.

use std::time::Duration;

use rand::Rng;

/// `first` doubled for each failure before the `failure`-th (1 for the first), at most `cap`.
pub fn capped_exponential(failure: u32, first: Duration, cap: Duration) -> Duration {
    let doublings = failure.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(cap)
}

/// A spread of waits: each wait is scaled by a factor drawn from `low..high`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    low: f64,
    high: f64,
}

/// A refused Kubernetes request waits half to all of its backoff before it is sent again, so that
/// the writes refused together are not sent again together.
pub const KUBE_RETRY: Jitter = Jitter::between(0.5, 1.0);
/// A view that synced waits its interval and up to a tenth more, never less: views created
/// together drift apart, and an instance missing from one listing has been missing for the
/// interval by the next.
pub const NEXT_SYNC: Jitter = Jitter::between(1.0, 1.1);
/// A failing view's retry waits its backoff give or take a tenth.
pub const VIEW_RETRY: Jitter = Jitter::between(0.9, 1.1);
/// A replica waits its Lease retry period and up to a fifth more, so that standbys started
/// together do not race in step.
pub const LEASE_RETRY: Jitter = Jitter::between(1.0, 1.2);

impl Jitter {
    /// Factors from `low` to `high`.
    pub const fn between(low: f64, high: f64) -> Jitter {
        Jitter { low, high }
    }

    /// `wait` scaled by a random factor of this spread.
    pub fn apply(self, wait: Duration) -> Duration {
        self.at(wait, rand::rng().random())
    }

    /// `wait` scaled by the factor at `position` of this spread (0 for its low end, 1 for its high
    /// end; clamped to that), so that tests can pin it down.
    pub fn at(self, wait: Duration, position: f64) -> Duration {
        wait.mul_f64(self.low + (self.high - self.low) * position.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_up_to_the_cap() {
        let (first, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=8)
            .map(|n| capped_exponential(n, first, cap).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(capped_exponential(0, first, cap), first);
        assert_eq!(capped_exponential(u32::MAX, first, cap), cap);
    }

    #[test]
    fn a_jitter_scales_within_its_range() {
        let wait = Duration::from_millis(1000);
        assert_eq!(KUBE_RETRY.at(wait, 0.0), Duration::from_millis(500));
        assert_eq!(KUBE_RETRY.at(wait, 1.0), wait);
        assert_eq!(KUBE_RETRY.at(wait, 7.0), wait, "the position is clamped");
        assert_eq!(
            NEXT_SYNC.at(wait, 0.0),
            wait,
            "never sooner than the interval"
        );
        for jitter in [KUBE_RETRY, NEXT_SYNC, VIEW_RETRY, LEASE_RETRY] {
            for _ in 0..100 {
                let scaled = jitter.apply(wait);
                assert!(scaled >= jitter.at(wait, 0.0) && scaled <= jitter.at(wait, 1.0));
            }
        }
    }
}
