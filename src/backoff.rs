//! Capped exponential backoff: the one rule for how long to wait after the n-th failure in a row,
//! used for retrying a PPIO page and for retrying a failing view. Each caller adds its own jitter.

use std::time::Duration;

/// `first` doubled for each failure before the `failure`-th (1 for the first), at most `cap`.
pub fn capped_exponential(failure: u32, first: Duration, cap: Duration) -> Duration {
    let doublings = failure.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(cap)
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
}
