//! Leader election under clock skew: two electors in this process compete for one Lease of the real
//! API server, one of them with a wall clock running ahead or behind. Whatever the skew, the Lease
//! has one holder while it is renewed, and a standby takes over only once the leader stopped
//! renewing (after the lease duration) or released it (at once).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, ResourceExt};
use ppio_gpu_operator::process::leadership::decision::Timing;
use ppio_gpu_operator::process::leadership::{
    Clock, Leadership, LeaseSettings, MIN_LEASE_DURATION,
};
use tokio::time::Instant;

use ppio_test_support::TestNamespace;

/// The shortest lease the operator allows, to keep the tests short.
const LEASE_DURATION: Duration = MIN_LEASE_DURATION;

/// How long the tests watch a renewed Lease for a wrong take-over: several lease durations.
const WATCH: Duration = Duration::from_secs(30);

/// The system's clocks, with the wall clock shifted by `skew`.
struct SkewedClock {
    skew: SignedDuration,
}

impl Clock for SkewedClock {
    fn wall(&self) -> Timestamp {
        Timestamp::now()
            .checked_add(self.skew)
            .expect("a skewed time in range")
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

fn timing() -> Timing {
    Timing::for_lease(LEASE_DURATION)
}

fn seconds(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

/// A name for a skew, fit for a Lease's name.
fn skew_name(skew: SignedDuration) -> String {
    let sign = if skew.is_negative() {
        "behind"
    } else {
        "ahead"
    };
    format!("{sign}-{}s", skew.as_secs().abs())
}

/// The lease duration less a second, as a skew.
fn almost_a_lease() -> SignedDuration {
    SignedDuration::try_from(LEASE_DURATION).expect("small duration") - seconds(1)
}

async fn join(ns: &TestNamespace, lease: &str, identity: &str, skew: SignedDuration) -> Leadership {
    let settings = LeaseSettings {
        namespace: ns.name.clone(),
        name: lease.to_owned(),
        identity: identity.to_owned(),
        duration: LEASE_DURATION,
        client: Default::default(),
    };
    let config = ppio_test_support::shared().config().await;
    Leadership::join_with_clock(config, &settings, Arc::new(SkewedClock { skew }))
        .await
        .unwrap_or_else(|e| panic!("{identity} joins the election: {e}"))
}

async fn acquire_within(leadership: &mut Leadership, limit: Duration, who: &str) -> Duration {
    let start = Instant::now();
    let acquired = tokio::time::timeout(limit, leadership.acquired()).await;
    assert_eq!(acquired.ok(), Some(true), "{who} leads within {limit:?}");
    start.elapsed()
}

/// The Lease's holder, renew time and transitions.
async fn read(leases: &Api<Lease>, name: &str) -> (Option<String>, Option<Timestamp>, i32, String) {
    let lease = leases.get(name).await.expect("read the Lease");
    let spec = lease.spec.clone().unwrap_or_default();
    (
        spec.holder_identity.filter(|h| !h.is_empty()),
        spec.renew_time.map(|t| t.0),
        spec.lease_transitions.unwrap_or(0),
        lease.resource_version().unwrap_or_default(),
    )
}

/// For [`WATCH`], checks often that `leader` leads, `standby` does not, and the Lease names the
/// leader and keeps being renewed; returns the renewals seen.
async fn assert_one_leader_while_renewed(
    leases: &Api<Lease>,
    lease: &str,
    leader: (&Leadership, &str),
    standby: (&Leadership, &str),
) -> usize {
    let end = Instant::now() + WATCH;
    let mut versions = std::collections::BTreeSet::new();
    while Instant::now() < end {
        let (holder, _, transitions, version) = read(leases, lease).await;
        assert!(leader.0.is_leading(), "{} still leads ({lease})", leader.1);
        assert!(!standby.0.is_leading(), "{} stands by ({lease})", standby.1);
        assert_eq!(holder.as_deref(), Some(leader.1), "{lease}");
        assert_eq!(transitions, 0, "never changed hands ({lease})");
        versions.insert(version);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewals = versions.len();
    // One renewal per retry period; a few may be slow on a busy machine.
    let expected = (WATCH.as_secs_f64() / timing().retry_period.as_secs_f64()) as usize / 2;
    assert!(
        renewals >= expected,
        "{lease}: {renewals} renewals seen, expected at least {expected}"
    );
    renewals
}

/// A leader with a true clock, a standby whose wall clock is off by `skew`.
async fn skewed_standby_waits_for_expiry(ns: &TestNamespace, skew: SignedDuration) {
    let lease = format!("standby-{}", skew_name(skew));
    let leases: Api<Lease> = ns.api();
    let mut leader = join(ns, &lease, "leader", SignedDuration::ZERO).await;
    acquire_within(&mut leader, Duration::from_secs(10), "the first replica").await;
    let mut standby = join(ns, &lease, "standby", skew).await;
    assert_one_leader_while_renewed(&leases, &lease, (&leader, "leader"), (&standby, "standby"))
        .await;

    // The leader stops renewing (as when it hangs or is cut off): the standby takes over once it
    // has seen no renewal for the lease duration, by its own clock.
    leader.abandon();
    // By the test's clock: the standby sees the last renewal within a read interval (a retry period
    // and up to a fifth more), waits out the lease, and takes it at the following read.
    let timing = timing();
    let took = acquire_within(
        &mut standby,
        LEASE_DURATION + timing.retry_period * 4,
        &format!("the standby skewed by {skew}"),
    )
    .await;
    // The last renewal came at most one retry period before the leader stopped.
    let earliest = LEASE_DURATION - timing.retry_period - Duration::from_millis(500);
    assert!(
        took >= earliest,
        "the standby skewed by {skew} waited out the lease: took over after {took:?}"
    );
    let (holder, renewed, transitions, _) = read(&leases, &lease).await;
    assert_eq!(holder.as_deref(), Some("standby"));
    assert_eq!(transitions, 1);
    assert_written_by_a_clock_skewed_by(renewed, skew);
}

/// Checks that a renew time was written by a wall clock off by `skew`: the skew was in effect.
fn assert_written_by_a_clock_skewed_by(renew_time: Option<Timestamp>, skew: SignedDuration) {
    let written = renew_time.expect("a renew time");
    let off = written.duration_since(Timestamp::now());
    assert!(
        (off - skew).abs() < seconds(5),
        "the Lease carries a time off by {off}, not by about {skew}"
    );
}

/// A leader whose wall clock is off by `skew`, a standby with a true clock.
async fn skewed_leader_keeps_its_lease(ns: &TestNamespace, skew: SignedDuration) {
    let lease = format!("leader-{}", skew_name(skew));
    let leases: Api<Lease> = ns.api();
    let mut leader = join(ns, &lease, "leader", skew).await;
    acquire_within(&mut leader, Duration::from_secs(10), "the first replica").await;
    let (_, renewed, _, _) = read(&leases, &lease).await;
    assert_written_by_a_clock_skewed_by(renewed, skew);
    let mut standby = join(ns, &lease, "standby", SignedDuration::ZERO).await;
    assert_one_leader_while_renewed(&leases, &lease, (&leader, "leader"), (&standby, "standby"))
        .await;

    // Released on shutdown: the standby takes over at its next read, without waiting out the lease.
    leader.release().await;
    let took = acquire_within(
        &mut standby,
        timing().retry_period * 2 + Duration::from_secs(1),
        "the standby after the release",
    )
    .await;
    assert!(took < LEASE_DURATION / 2, "{took:?}");
    let (holder, _, transitions, _) = read(&leases, &lease).await;
    assert_eq!(holder.as_deref(), Some("standby"));
    assert_eq!(transitions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_clock_runs_ahead_or_behind_never_takes_a_renewed_lease() {
    let ns = TestNamespace::new("election-standby").await;
    join_all(
        [seconds(60), seconds(-60), almost_a_lease()]
            .map(|skew| skewed_standby_waits_for_expiry(&ns, skew)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_clock_runs_ahead_or_behind_is_not_displaced_while_it_renews() {
    let ns = TestNamespace::new("election-leader").await;
    join_all(
        [seconds(60), seconds(-60), -almost_a_lease()]
            .map(|skew| skewed_leader_keeps_its_lease(&ns, skew)),
    )
    .await;
}
