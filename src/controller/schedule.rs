//! When each view syncs next: its interval after a success (plus jitter, never sooner), capped
//! exponential backoff after failures, at once for a new spec or a new refresh request.
//!
//! kube-runtime does most of this: its predicates (see `views.rs`) drop the events of the view's
//! own status writes, and `Action::requeue` wakes a view when it is due. What it cannot know is kept
//! here, one small entry per view: how many syncs in a row failed (the backoff), when the view is
//! due (a reconcile cannot tell a due requeue from the relist after a watch restarts), and which
//! generation and refresh request the last sync answered (its status write may have failed). After
//! an operator restart, `status.lastSyncTime` stands in for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::process::backoff;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use ppio_gpu_core::api::{GpuInstanceView, GpuInstanceViewStatus};
use ppio_gpu_core::sync::view_status;

/// Where a failing view's retries start; they double up to its sync interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// When a view is next due, and how many syncs in a row failed.
#[derive(Clone, Debug)]
pub(super) struct Schedule {
    pub(super) next_sync: Instant,
    pub(super) failures: u32,
    /// The spec generation and refresh request the last sync answered: a newer one is due at once,
    /// even if that sync's status could not be written.
    pub(super) generation: Option<i64>,
    pub(super) refresh: Option<String>,
}

/// The schedule of every view this replica syncs, and the statuses of its last syncs that could not
/// be written yet.
#[derive(Default)]
pub(super) struct Schedules(
    Mutex<HashMap<ObjectRef<GpuInstanceView>, Schedule>>,
    Mutex<HashMap<ObjectRef<GpuInstanceView>, GpuInstanceViewStatus>>,
);

impl Schedules {
    /// The schedule of `view`, if it synced since the operator started.
    pub(super) fn get(&self, view: &ObjectRef<GpuInstanceView>) -> Option<Schedule> {
        self.lock().get(view).cloned()
    }

    /// Sets (or, with `None`, forgets) the schedule of `view`.
    pub(super) fn set(&self, view: ObjectRef<GpuInstanceView>, schedule: Option<Schedule>) {
        let mut schedules = self.lock();
        match schedule {
            Some(s) => schedules.insert(view, s),
            None => {
                self.unwritten().remove(&view);
                schedules.remove(&view)
            }
        };
    }

    /// Keeps `status`, the outcome of `view`'s last sync, which the API server refused to write
    /// (throttled, say): it is written at the view's next reconcile, even when no sync is due then,
    /// so that the view says what its last sync found as soon as the API server takes it.
    pub(super) fn keep_unwritten(
        &self,
        view: ObjectRef<GpuInstanceView>,
        status: GpuInstanceViewStatus,
    ) {
        self.unwritten().insert(view, status);
    }

    /// The status of `view`'s last sync that could not be written, if any; taken out.
    pub(super) fn take_unwritten(
        &self,
        view: &ObjectRef<GpuInstanceView>,
    ) -> Option<GpuInstanceViewStatus> {
        self.unwritten().remove(view)
    }

    fn unwritten(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<GpuInstanceView>, GpuInstanceViewStatus>> {
        self.1
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<GpuInstanceView>, Schedule>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long until `view` is due, or `None` when it should sync now: at once for a new spec or a new
/// refresh request, otherwise when its schedule says (or, after an operator restart, one interval
/// after its last sync).
pub(super) fn time_until_due(
    view: &GpuInstanceView,
    schedule: Option<Schedule>,
    interval: Duration,
) -> Option<Duration> {
    let (answered_generation, answered_refresh) = match &schedule {
        Some(s) => (s.generation, s.refresh.clone()),
        None => {
            let status = view.status.as_ref()?;
            (
                status.observed_generation,
                status.last_handled_refresh.clone(),
            )
        }
    };
    if answered_generation != view.metadata.generation
        || answered_refresh != view_status::refresh_requested(view)
    {
        return None;
    }
    match schedule {
        Some(s) => s.next_sync.checked_duration_since(Instant::now()),
        None => {
            let last = view.status.as_ref()?.last_sync_time?;
            let since = Timestamp::now().duration_since(last).unsigned_abs();
            interval.checked_sub(since).filter(|d| !d.is_zero())
        }
    }
}

/// How long one page of a listing may take, retries included: the view's sync interval, but at
/// least two minutes.
pub(super) fn listing_deadline(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(120))
}

/// When a view that synced is due again: its interval plus up to 10%, so that views created together
/// drift apart, and never sooner than the interval, so that an instance missing from one listing has
/// been missing for the interval by the next (the time half of the removal rule).
pub(super) fn next_regular_sync(interval: Duration) -> Duration {
    backoff::NEXT_SYNC.apply(interval)
}

/// The interval, give or take 10%, so that views created together do not sync together.
pub(super) fn jittered(interval: Duration) -> Duration {
    backoff::VIEW_RETRY.apply(interval)
}

/// Exponential backoff with jitter from [`FIRST_RETRY`], capped at the view's sync interval: a failing
/// view is retried at least as often as a healthy one syncs.
pub(super) fn retry_delay(failures: u32, interval: Duration) -> Duration {
    jittered(backoff::capped_exponential(failures, FIRST_RETRY, interval))
}

/// Where the retries of a status write refused for an unreadable view start; they double up to
/// [`UNREADABLE_RECHECK`].
const UNREADABLE_FIRST_RETRY: Duration = Duration::from_secs(10);

/// How often a view whose spec this version cannot read is looked at again once it is reported: its
/// own interval cannot be read, and nothing about it changes until its spec does (which wakes it).
pub(super) const UNREADABLE_RECHECK: Duration = Duration::from_secs(600);

/// For each view whose spec this version cannot read, what its reports of one generation did.
#[derive(Default)]
pub(super) struct UnreadableViews(Mutex<HashMap<ObjectRef<GpuInstanceView>, Reports>>);

/// The reports of one generation of an unreadable view.
#[derive(Clone, Copy, Default)]
struct Reports {
    generation: Option<i64>,
    /// Writes of its status in a row the API server refused.
    refused: u32,
    /// Whether its Event was published.
    announced: bool,
}

impl UnreadableViews {
    /// Records the outcome of a report on generation `generation` of `view` (`written`: its status
    /// was written or already said so) and says when to look at the view again: exponentially later
    /// after each refused write, from [`UNREADABLE_FIRST_RETRY`] up to [`UNREADABLE_RECHECK`]; that
    /// after a report that holds.
    pub(super) fn record(
        &self,
        view: ObjectRef<GpuInstanceView>,
        generation: Option<i64>,
        written: bool,
    ) -> Duration {
        self.with(view, generation, |reports| {
            reports.refused = if written {
                0
            } else {
                reports.refused.saturating_add(1)
            };
            unreadable_retry_delay(reports.refused)
        })
    }

    /// Whether the Event of generation `generation` of `view` is still to be published; from now on
    /// it is not: one Event per generation, however often its report is written.
    pub(super) fn announce(
        &self,
        view: ObjectRef<GpuInstanceView>,
        generation: Option<i64>,
    ) -> bool {
        self.with(view, generation, |reports| {
            !std::mem::replace(&mut reports.announced, true)
        })
    }

    /// Forgets `view`: it was deleted, or its spec reads again.
    pub(super) fn forget(&self, view: &ObjectRef<GpuInstanceView>) {
        self.lock().remove(view);
    }

    /// Runs `f` on the reports of generation `generation` of `view` (fresh ones for a new generation).
    fn with<T>(
        &self,
        view: ObjectRef<GpuInstanceView>,
        generation: Option<i64>,
        f: impl FnOnce(&mut Reports) -> T,
    ) -> T {
        let mut views = self.lock();
        let reports = views.entry(view).or_default();
        if reports.generation != generation {
            *reports = Reports {
                generation,
                ..Reports::default()
            };
        }
        f(reports)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<GpuInstanceView>, Reports>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// When an unreadable view is looked at again after `refused` refused status writes in a row (0: its
/// report holds).
fn unreadable_retry_delay(refused: u32) -> Duration {
    if refused == 0 {
        return jittered(UNREADABLE_RECHECK);
    }
    jittered(backoff::capped_exponential(
        refused,
        UNREADABLE_FIRST_RETRY,
        UNREADABLE_RECHECK,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritten_status_is_kept_until_taken_or_the_view_forgotten() {
        let schedules = Schedules::default();
        let view = ObjectRef::new("v").within("ml");
        let status = GpuInstanceViewStatus {
            mirrored_count: Some(3),
            ..GpuInstanceViewStatus::default()
        };
        schedules.keep_unwritten(view.clone(), status.clone());
        assert_eq!(schedules.take_unwritten(&view), Some(status.clone()));
        assert_eq!(schedules.take_unwritten(&view), None, "taken out");
        schedules.keep_unwritten(view.clone(), status);
        schedules.set(view.clone(), None);
        assert_eq!(
            schedules.take_unwritten(&view),
            None,
            "a forgotten view keeps nothing"
        );
    }
    use ppio_gpu_core::api::GpuInstanceViewStatus;
    use ppio_gpu_core::api::view;

    fn synced_view(generation: i64, last_sync_seconds_ago: i64) -> GpuInstanceView {
        let mut view: GpuInstanceView = serde_json::from_value(serde_json::json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstanceView",
            "metadata": { "name": "v", "namespace": "ns", "generation": generation },
            "spec": { "credentials": { "secretRef": { "name": "ppio" } } }
        }))
        .unwrap();
        let last = Timestamp::now() - jiff::SignedDuration::from_secs(last_sync_seconds_ago);
        view.status = Some(GpuInstanceViewStatus {
            observed_generation: Some(generation),
            last_sync_time: Some(last),
            ..Default::default()
        });
        view
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// A schedule due at `next_sync` that answered generation 1 and `refresh`.
    fn schedule(next_sync: Instant, refresh: Option<&str>) -> Option<Schedule> {
        Some(Schedule {
            next_sync,
            failures: 0,
            generation: Some(1),
            refresh: refresh.map(str::to_owned),
        })
    }

    #[test]
    fn a_view_never_synced_is_due_at_once() {
        let mut view = synced_view(1, 0);
        view.status = None;
        assert_eq!(time_until_due(&view, None, MINUTE), None);
    }

    #[test]
    fn a_new_spec_is_due_at_once_whatever_the_schedule() {
        let mut view = synced_view(1, 0);
        view.metadata.generation = Some(2);
        let later = schedule(Instant::now() + MINUTE, None);
        assert_eq!(time_until_due(&view, later, MINUTE), None);
    }

    #[test]
    fn a_new_refresh_request_is_due_at_once_and_only_once() {
        let mut view = synced_view(1, 0);
        view.metadata.annotations = Some(
            [(view::REFRESH_ANNOTATION.to_owned(), "now".to_owned())]
                .into_iter()
                .collect(),
        );
        let later = Instant::now() + MINUTE;
        assert_eq!(time_until_due(&view, schedule(later, None), MINUTE), None);
        assert!(
            time_until_due(&view, schedule(later, Some("now")), MINUTE).is_some(),
            "answered once"
        );
    }

    #[test]
    fn our_own_status_write_does_not_make_a_view_due() {
        let view = synced_view(1, 0);
        let wait = time_until_due(&view, schedule(Instant::now() + MINUTE, None), MINUTE)
            .expect("not due");
        assert!(wait > Duration::from_secs(55), "{wait:?}");
        let passed = schedule(Instant::now() - Duration::from_secs(1), None);
        assert_eq!(time_until_due(&view, passed, MINUTE), None);
    }

    #[test]
    fn a_status_that_could_not_be_written_does_not_make_a_view_due_again() {
        // The sync answered generation 1, but its status never reached the API server.
        let mut view = synced_view(1, 0);
        view.status = None;
        let wait = time_until_due(&view, schedule(Instant::now() + MINUTE, None), MINUTE);
        assert!(wait.is_some(), "the schedule holds, not the missing status");
    }

    #[test]
    fn after_a_restart_the_last_sync_time_sets_the_schedule() {
        let recent = time_until_due(&synced_view(1, 20), None, MINUTE).expect("not due yet");
        assert!(
            recent <= Duration::from_secs(41) && recent >= Duration::from_secs(35),
            "{recent:?}"
        );
        assert_eq!(time_until_due(&synced_view(1, 120), None, MINUTE), None);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_interval() {
        let interval = Duration::from_secs(60);
        let first = retry_delay(1, interval);
        assert!(first >= Duration::from_millis(900) && first <= Duration::from_millis(1100));
        let fifth = retry_delay(5, interval);
        assert!(fifth >= Duration::from_millis(14_400) && fifth <= Duration::from_millis(17_600));
        let late = retry_delay(30, interval);
        assert!(late <= Duration::from_secs(66) && late >= Duration::from_secs(54));
    }

    #[test]
    fn an_unreadable_view_is_retried_calmly_and_ever_later_while_its_status_is_refused() {
        let views = UnreadableViews::default();
        let key = ObjectRef::new("v").within("ns");
        let within = |d: Duration, secs: u64| {
            let secs = Duration::from_secs(secs);
            d >= secs.mul_f64(0.9) && d <= secs.mul_f64(1.1)
        };
        let refused: Vec<Duration> = (0..8)
            .map(|_| views.record(key.clone(), Some(1), false))
            .collect();
        for (delay, secs) in refused.iter().zip([10, 20, 40, 80, 160, 320, 600, 600]) {
            assert!(within(*delay, secs), "{delay:?} is not about {secs}s");
        }
        // Once the report holds, the view is looked at rarely; a new generation starts afresh.
        assert!(within(views.record(key.clone(), Some(1), true), 600));
        views.record(key.clone(), Some(1), false);
        views.record(key.clone(), Some(1), false);
        assert!(within(views.record(key.clone(), Some(2), false), 10));
        // One Event per generation.
        assert!(views.announce(key.clone(), Some(2)));
        assert!(!views.announce(key.clone(), Some(2)));
        assert!(views.announce(key.clone(), Some(3)));
    }
}
