//! The counts of a complete listing that the view's status shows: instances, running instances,
//! GPUs, instances by remote status and by region (bounded, see [`crate::sync::counts`]), and
//! prepaid instances expiring soon. Counted record by record as pages arrive.

use std::collections::BTreeMap;

use crate::mirror;
use crate::sync::counts;
use crate::sync::expiry::ExpiryState;
use ppio::RecordSummary;

/// Distinct statuses or regions kept in the view's counts; the rest add up under [`OTHER`].
pub const MAX_COUNT_KEYS: usize = 32;
/// The key that sums up statuses or regions beyond [`MAX_COUNT_KEYS`].
pub use crate::sync::counts::OTHER;

/// Counts over a complete listing, as the view's status shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Instances listed.
    pub instances: i64,
    /// Instances whose remote status is `running`.
    pub running: i64,
    /// GPUs over all instances.
    pub gpus: i64,
    /// Instances per remote status, bounded.
    pub by_status: BTreeMap<String, i64>,
    /// Instances per region, bounded.
    pub by_region: BTreeMap<String, i64>,
    /// Prepaid instances expiring soon (see [`crate::sync::expiry`]).
    pub expiring_soon: i64,
}

impl Summary {
    /// Counts one more listed instance. Call [`Summary::bounded`] once the listing is complete.
    pub fn add(&mut self, instance: &RecordSummary) {
        if instance.status == mirror::RUNNING {
            self.running += 1;
        }
        self.instances += 1;
        count(&mut self.by_status, &instance.status);
        count(&mut self.by_region, &instance.region);
        self.gpus = self.gpus.saturating_add(instance.gpus.max(0));
    }

    /// Counts a listed instance that is expiring soon, given its [`ExpiryState`].
    pub fn add_expiry(&mut self, expiry: ExpiryState) {
        if expiry.soon().is_some() {
            self.expiring_soon += 1;
        }
    }

    /// The summary with at most [`MAX_COUNT_KEYS`] statuses and regions (the rest under [`OTHER`]).
    pub fn bounded(self) -> Summary {
        Summary {
            by_status: bounded(self.by_status),
            by_region: bounded(self.by_region),
            ..self
        }
    }
}

/// Counts one more `value` in `counts`, allocating only for a value not seen before.
fn count(counts: &mut BTreeMap<String, i64>, value: &str) {
    let key = counts::key_of(value, counts::MAX_KEY_BYTES);
    match counts.get_mut(key.as_ref()) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.into_owned(), 1);
        }
    }
}

/// Keeps the largest [`MAX_COUNT_KEYS`] entries and sums the rest under [`OTHER`].
fn bounded(counts: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let (kept, rest) = counts::split_largest(counts, MAX_COUNT_KEYS, |n| *n);
    if rest.is_empty() {
        return kept.into_iter().collect();
    }
    let mut kept: BTreeMap<_, _> = kept.into_iter().collect();
    *kept.entry(OTHER.to_owned()).or_insert(0) += rest.iter().map(|(_, n)| n).sum::<i64>();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fixtures::*;
    use crate::sync::plan::ViewSeed;

    #[test]
    fn the_summary_counts_statuses_regions_and_gpus() {
        let summary = summarize(&[
            instance("a", "running", "cn-east-1", 2),
            instance("b", "running", "us-west-1", 4),
            instance("c", "exited", "cn-east-1", 1),
        ]);
        assert_eq!(summary.instances, 3);
        assert_eq!(summary.running, 2);
        assert_eq!(summary.gpus, 7);
        assert_eq!(summary.by_status["running"], 2);
        assert_eq!(summary.by_region["cn-east-1"], 2);
    }

    #[test]
    fn the_summary_stays_bounded_for_any_number_of_statuses() {
        let listing: Vec<_> = (0..1000)
            .map(|n| instance(&format!("i{n}"), &format!("state{n}"), &format!("r{n}"), 1))
            .collect();
        let summary = summarize(&listing);
        assert_eq!(summary.by_status.len(), MAX_COUNT_KEYS + 1);
        assert_eq!(summary.by_status.values().sum::<i64>(), 1000);
        assert_eq!(summary.by_region.len(), MAX_COUNT_KEYS + 1);
    }

    #[test]
    fn the_summary_counts_instances_expiring_soon() {
        let view = view(true);
        let end = 1_000_000;
        let now = at(end - 3600);
        let mut summary = Summary::default();
        for i in [
            prepaid("a", end, false),
            prepaid("b", end, true),
            instance("c", "running", "r", 1),
        ] {
            let i = RecordSummary::from(&i);
            summary.add(&i);
            summary.add_expiry(ViewSeed::of(&view, None).expiry_of(&i, now));
        }
        assert_eq!(summary.bounded().expiring_soon, 1);
    }
}
