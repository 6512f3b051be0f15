//! The pure rules of the election: what a replica may do with the Lease, given what it observed of
//! it and the readings of its own clocks. No I/O here.
//!
//! The rules follow client-go's leader election. A standby never compares the holder's `renewTime`
//! with its own wall clock (nodes' clocks differ): it notes, on its own monotonic clock, when it last
//! saw the Lease change, and may take the Lease only once that is longer ago than the holder's lease
//! duration. The leader stops when its last successful renewal, measured on its own monotonic clock
//! from when the request was sent, is older than the renew deadline, which is shorter than the lease
//! duration. Every write carries the resourceVersion it was decided on, so of two racing writers one
//! gets a conflict. Together: whatever the skew between the wall clocks, a standby takes over only
//! after the leader has stopped (assuming the monotonic clocks run at the same rate, within a third
//! of the lease duration over one lease duration).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use tokio::time::Instant;

/// The shortest lease duration that leaves the renewals and the renew deadline room to work.
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(10);

/// How often the leader renews and a standby reads the Lease.
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The election's timing, derived from the lease duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a holding lasts without renewal; written into the Lease as `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// How long the leader may go without a successful renewal before it stops. Two thirds of the
    /// lease duration: the last third is the margin in which the leader's syncs are cancelled.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby reads the Lease.
    pub retry_period: Duration,
}

impl Timing {
    /// The timing for a lease duration (raised to [`MIN_LEASE_DURATION`]).
    pub fn for_lease(duration: Duration) -> Timing {
        let lease_duration = duration.max(MIN_LEASE_DURATION);
        Timing {
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: RETRY_PERIOD,
        }
    }

    /// `leaseDurationSeconds` as written into the Lease.
    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The parts of a Lease the election reads, as the API server returned them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The holder, `None` when the Lease is free (absent or empty `holderIdentity`).
    pub holder: Option<String>,
    /// The holder's `renewTime`, by the holder's wall clock: compared only for equality.
    pub renew_time: Option<Timestamp>,
    /// The holder's `leaseDurationSeconds`, when positive.
    pub lease_duration: Option<Duration>,
    /// `leaseTransitions`.
    pub transitions: i32,
    /// The Lease's resourceVersion: any write by anyone changes it.
    pub resource_version: Option<String>,
}

impl LeaseRecord {
    /// The record of a Lease read from the API server.
    pub fn of(lease: &Lease) -> LeaseRecord {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            lease_duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            transitions: spec.lease_transitions.unwrap_or(0),
            resource_version: lease.resource_version(),
        }
    }
}

/// What this replica last saw of the Lease (`None`: there was none), and when, by its monotonic
/// clock, it first saw it so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The Lease as last read or written by this replica.
    pub lease: Option<LeaseRecord>,
    /// When this replica first saw the Lease as it is now.
    pub since: Instant,
}

impl Observation {
    /// The observation after seeing `lease` at `now`: `since` moves only when the Lease changed.
    pub fn update(previous: Option<Observation>, lease: Option<LeaseRecord>, now: Instant) -> Self {
        match previous {
            Some(previous) if previous.lease == lease => previous,
            _ => Observation { lease, since: now },
        }
    }
}

/// Why a leader is no longer one, as seen in the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deposition {
    /// Another replica (or anyone) wrote its own name as holder.
    TakenBy(String),
    /// The holder was cleared by someone else.
    Cleared,
    /// The Lease was deleted.
    Deleted,
}

/// What a replica does next with the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease: create it, naming this replica.
    Create,
    /// Take the Lease over (it is free, or its holder's lease expired by this replica's observation),
    /// with the observed resourceVersion as precondition.
    Take,
    /// Renew this replica's holding, with the observed resourceVersion as precondition.
    Renew,
    /// Another replica holds the Lease and may still renew it: look again after `recheck`.
    Wait {
        /// How long until the Lease could expire by this replica's observation, at most the retry period.
        recheck: Duration,
    },
    /// This replica led, and the Lease no longer names it.
    Deposed(Deposition),
}

/// What to do next, given the observation, whether this replica leads now, and the monotonic `now`.
///
/// A standby may take a held Lease only when it has seen no change to it for the holder's lease
/// duration, by its own clock. A Lease naming this replica that this process did not write (an
/// earlier run with the same identity) is held like any other: that run may still be writing.
pub fn decide(
    observation: &Observation,
    identity: &str,
    leading: bool,
    timing: &Timing,
    now: Instant,
) -> Step {
    let Some(lease) = &observation.lease else {
        return if leading {
            Step::Deposed(Deposition::Deleted)
        } else {
            Step::Create
        };
    };
    if leading {
        return match &lease.holder {
            Some(holder) if holder == identity => Step::Renew,
            Some(holder) => Step::Deposed(Deposition::TakenBy(holder.clone())),
            None => Step::Deposed(Deposition::Cleared),
        };
    }
    if lease.holder.is_none() {
        return Step::Take;
    }
    // The holder's own promise; ours when the Lease carries none.
    let duration = lease.lease_duration.unwrap_or(timing.lease_duration);
    let unchanged_for = now.saturating_duration_since(observation.since);
    if unchanged_for > duration {
        Step::Take
    } else {
        Step::Wait {
            recheck: (duration - unchanged_for + Duration::from_millis(1)).min(timing.retry_period),
        }
    }
}

/// The instant at which a leader whose last successful renewal was sent at `renewal_sent` must
/// have stopped: the standbys' clocks start on that renewal no earlier than it was sent.
pub fn renew_deadline(renewal_sent: Instant, timing: &Timing) -> Instant {
    renewal_sent + timing.renew_deadline
}

/// The spec with which `identity` takes the Lease over `previous` (`None`: creates it) at `now`.
pub fn taken_spec(
    identity: &str,
    previous: Option<&LeaseSpec>,
    now: Timestamp,
    timing: &Timing,
) -> LeaseSpec {
    let now = MicroTime(to_microseconds(now));
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_duration_seconds: Some(timing.lease_duration_seconds()),
        lease_transitions: Some(previous.map_or(0, |p| p.lease_transitions.unwrap_or(0) + 1)),
        ..LeaseSpec::default()
    }
}

/// The spec with which the holder renews `previous` at `now`. The renew time always moves forward,
/// even when the wall clock stood still or stepped back: an unchanged Lease would make the write a
/// no-op, and the standbys would not see the renewal.
pub fn renewed_spec(previous: &LeaseSpec, now: Timestamp, timing: &Timing) -> LeaseSpec {
    let mut renew_time = to_microseconds(now);
    if let Some(MicroTime(last)) = &previous.renew_time
        && renew_time <= *last
    {
        renew_time = last
            .checked_add(jiff::SignedDuration::from_micros(1))
            .unwrap_or(*last);
    }
    LeaseSpec {
        renew_time: Some(MicroTime(renew_time)),
        lease_duration_seconds: Some(timing.lease_duration_seconds()),
        ..previous.clone()
    }
}

/// The spec with which the holder releases `previous` at `now`: no holder, so a standby may take it
/// at once (the releasing replica has stopped its controller before). Like client-go, the lease
/// duration drops to one second, for tools that judge a Lease by its times alone.
pub fn released_spec(previous: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    let now = MicroTime(to_microseconds(now));
    LeaseSpec {
        holder_identity: None,
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_duration_seconds: Some(1),
        ..previous.clone()
    }
}

/// `time` truncated to microseconds, the precision of a Lease's times.
fn to_microseconds(time: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(time.as_microsecond()).unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "replica-a";
    const OTHER: &str = "replica-b";

    fn timing() -> Timing {
        Timing::for_lease(Duration::from_secs(15))
    }

    fn record(holder: Option<&str>, resource_version: &str) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_owned),
            renew_time: Some(Timestamp::UNIX_EPOCH),
            lease_duration: Some(Duration::from_secs(15)),
            transitions: 3,
            resource_version: Some(resource_version.to_owned()),
        }
    }

    fn seen(lease: Option<LeaseRecord>, since: Instant) -> Observation {
        Observation { lease, since }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_timing_leaves_the_leader_a_margin_before_a_standby_may_take_over() {
        for seconds in [10, 15, 60, 300] {
            let timing = Timing::for_lease(Duration::from_secs(seconds));
            // Several renewals fit before the deadline.
            assert!(
                timing.retry_period * 3 <= timing.renew_deadline,
                "{timing:?}"
            );
            // The leader stops at least 3 s before the earliest take-over.
            assert!(timing.renew_deadline + Duration::from_secs(3) <= timing.lease_duration);
        }
        assert_eq!(
            Timing::for_lease(Duration::from_secs(1)).lease_duration,
            MIN_LEASE_DURATION
        );
    }

    #[test]
    fn an_observation_keeps_its_instant_while_the_lease_is_unchanged() {
        let t0 = Instant::now();
        let first = Observation::update(None, Some(record(Some(OTHER), "1")), t0);
        assert_eq!(first.since, t0);
        let same = Observation::update(
            Some(first.clone()),
            Some(record(Some(OTHER), "1")),
            t0 + secs(5.0),
        );
        assert_eq!(
            same.since, t0,
            "an unchanged Lease does not restart the wait"
        );
        let renewed =
            Observation::update(Some(same), Some(record(Some(OTHER), "2")), t0 + secs(6.0));
        assert_eq!(renewed.since, t0 + secs(6.0), "a renewal restarts the wait");
        let gone = Observation::update(Some(renewed), None, t0 + secs(7.0));
        assert_eq!(gone.since, t0 + secs(7.0));
    }

    #[test]
    fn a_renewal_with_an_unchanged_renew_time_still_counts_as_a_change() {
        // A write that only changes the resourceVersion (same renewTime, e.g. a frozen wall clock).
        let t0 = Instant::now();
        let first = Observation::update(None, Some(record(Some(OTHER), "1")), t0);
        let next = Observation::update(Some(first), Some(record(Some(OTHER), "2")), t0 + secs(9.0));
        assert_eq!(next.since, t0 + secs(9.0));
    }

    #[test]
    fn a_standby_takes_a_held_lease_only_after_seeing_no_change_for_the_lease_duration() {
        let t0 = Instant::now();
        let observation = seen(Some(record(Some(OTHER), "7")), t0);
        for elapsed in [0.0, 1.0, 14.0, 15.0] {
            let step = decide(&observation, ME, false, &timing(), t0 + secs(elapsed));
            assert!(matches!(step, Step::Wait { .. }), "{elapsed}: {step:?}");
        }
        assert_eq!(
            decide(&observation, ME, false, &timing(), t0 + secs(15.01)),
            Step::Take
        );
    }

    #[test]
    fn the_holders_renew_time_plays_no_part_whatever_the_wall_clocks_say() {
        // The renew time lies an hour in the past or the future by any wall clock: the standby still
        // waits a full lease duration from its first sight of this record.
        let t0 = Instant::now();
        for renew_time in ["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"] {
            let mut lease = record(Some(OTHER), "7");
            lease.renew_time = renew_time.parse().ok();
            let observation = seen(Some(lease), t0);
            let step = decide(&observation, ME, false, &timing(), t0 + secs(14.9));
            assert!(matches!(step, Step::Wait { .. }), "{renew_time}: {step:?}");
            let step = decide(&observation, ME, false, &timing(), t0 + secs(15.1));
            assert_eq!(step, Step::Take, "{renew_time}");
        }
    }

    #[test]
    fn a_standby_waits_for_the_holders_own_lease_duration() {
        let t0 = Instant::now();
        let mut lease = record(Some(OTHER), "7");
        lease.lease_duration = Some(Duration::from_secs(60));
        let observation = seen(Some(lease.clone()), t0);
        let step = decide(&observation, ME, false, &timing(), t0 + secs(30.0));
        assert!(matches!(step, Step::Wait { .. }), "{step:?}");
        assert_eq!(
            decide(&observation, ME, false, &timing(), t0 + secs(61.0)),
            Step::Take
        );
        lease.lease_duration = None;
        let observation = seen(Some(lease), t0);
        assert_eq!(
            decide(&observation, ME, false, &timing(), t0 + secs(16.0)),
            Step::Take,
            "our own duration when the Lease names none"
        );
    }

    #[test]
    fn a_standby_rechecks_no_later_than_the_possible_expiry_or_the_retry_period() {
        let t0 = Instant::now();
        let observation = seen(Some(record(Some(OTHER), "7")), t0);
        let Step::Wait { recheck } = decide(&observation, ME, false, &timing(), t0 + secs(14.5))
        else {
            panic!("waits");
        };
        assert!(recheck <= secs(0.51) && recheck > secs(0.49), "{recheck:?}");
        let Step::Wait { recheck } = decide(&observation, ME, false, &timing(), t0) else {
            panic!("waits");
        };
        assert_eq!(recheck, timing().retry_period);
    }

    #[test]
    fn a_free_or_missing_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let free = seen(Some(record(None, "7")), t0);
        assert_eq!(decide(&free, ME, false, &timing(), t0), Step::Take);
        let missing = seen(None, t0);
        assert_eq!(decide(&missing, ME, false, &timing(), t0), Step::Create);
    }

    #[test]
    fn a_lease_naming_this_identity_from_an_earlier_run_is_waited_out_like_any_other() {
        let t0 = Instant::now();
        let observation = seen(Some(record(Some(ME), "7")), t0);
        let step = decide(&observation, ME, false, &timing(), t0 + secs(5.0));
        assert!(matches!(step, Step::Wait { .. }), "{step:?}");
    }

    #[test]
    fn a_leader_renews_its_own_lease_and_is_deposed_by_any_other_state() {
        let t0 = Instant::now();
        let decide_leading =
            |lease: Option<LeaseRecord>| decide(&seen(lease, t0), ME, true, &timing(), t0);
        assert_eq!(decide_leading(Some(record(Some(ME), "7"))), Step::Renew);
        assert_eq!(
            decide_leading(Some(record(Some(OTHER), "8"))),
            Step::Deposed(Deposition::TakenBy(OTHER.to_owned()))
        );
        assert_eq!(
            decide_leading(Some(record(None, "8"))),
            Step::Deposed(Deposition::Cleared)
        );
        assert_eq!(decide_leading(None), Step::Deposed(Deposition::Deleted));
    }

    #[test]
    fn the_leader_stops_before_any_standby_may_take_over() {
        // The standby's wait starts when it sees the renewal, which is after the leader sent it.
        let timing = timing();
        let sent = Instant::now();
        let standby_saw_it = sent + secs(0.2);
        let stop = renew_deadline(sent, &timing);
        let observation = seen(Some(record(Some(OTHER), "9")), standby_saw_it);
        let earliest_take = (0..=40)
            .map(|tenth| sent + secs(f64::from(tenth) * 0.5))
            .find(|now| decide(&observation, ME, false, &timing, *now) == Step::Take)
            .expect("the standby takes over eventually");
        assert!(stop + Duration::from_secs(3) < earliest_take);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_it() {
        let timing = timing();
        let now: Timestamp = "2026-01-01T00:00:00.123456789Z".parse().expect("time");
        let created = taken_spec(ME, None, now, &timing);
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.holder_identity.as_deref(), Some(ME));
        assert_eq!(created.lease_duration_seconds, Some(15));
        let taken = taken_spec(OTHER, Some(&created), now, &timing);
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.holder_identity.as_deref(), Some(OTHER));
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(2))
            .expect("time");
        let renewed = renewed_spec(&taken, later, &timing);
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        assert_eq!(
            renewed.renew_time.map(|t| t.0.to_string()),
            Some("2026-01-01T00:00:02.123456Z".to_owned())
        );
    }

    #[test]
    fn a_renewal_moves_the_renew_time_forward_even_when_the_wall_clock_does_not() {
        let timing = timing();
        let now: Timestamp = "2026-01-01T00:00:00.000001Z".parse().expect("time");
        let held = taken_spec(ME, None, now, &timing);
        // Same microsecond, and a wall clock that stepped back a minute.
        let back = now
            .checked_sub(jiff::SignedDuration::from_secs(60))
            .expect("time");
        for wall in [now, back] {
            let renewed = renewed_spec(&held, wall, &timing);
            assert_eq!(
                renewed.renew_time.map(|t| t.0.to_string()),
                Some("2026-01-01T00:00:00.000002Z".to_owned())
            );
        }
    }

    #[test]
    fn a_released_lease_names_no_holder_and_keeps_its_transitions() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let held = taken_spec(ME, None, now, &timing());
        let released = released_spec(&taken_spec(OTHER, Some(&held), now, &timing()), now);
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, Some(1));
        assert_eq!(released.lease_duration_seconds, Some(1));
        let t0 = Instant::now();
        let record = LeaseRecord::of(&Lease {
            spec: Some(released),
            ..Lease::default()
        });
        assert_eq!(
            decide(&seen(Some(record), t0), ME, false, &timing(), t0),
            Step::Take
        );
    }
}
