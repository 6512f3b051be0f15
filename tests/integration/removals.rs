//! Removals across a failover between replicas whose wall clocks disagree by days: the operator
//! binary as two processes, one of them run under libfaketime (`FAKETIME`, with its monotonic clock
//! left alone, as a node whose wall clock is off or was stepped). The first replica marks the mirrors
//! of vanished instances absent; after it hands over, the second deletes nothing before it has
//! itself seen the instances missing from two complete listings an interval apart, whatever
//! `absentSince` says; and a listing that lacks every mirror of a small view is held for the
//! mass-removal grace period, by the second replica's own clock too.

use std::path::PathBuf;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::Api;
use ppio_gpu_core::api::GpuInstance;
use ppio_gpu_core::api::condition;
use ppio_simulator::generate_instances;
use tokio::time::Instant;

use ppio_test_support::fixture::{Fixture, start_simulator};
use ppio_test_support::operator::OperatorProcess;
use ppio_test_support::{await_absent, shared, wait_for};

/// The views' sync interval (the fixture's, the shortest allowed).
const INTERVAL: Duration = Duration::from_secs(10);
/// The grace period of the view whose every instance vanishes.
const GRACE: Duration = Duration::from_secs(30);
/// How far the skewed replica's wall clock is off.
const SKEW_DAYS: i64 = 3;

/// libfaketime's preload library, which `make test` installs (`make faketime`).
fn libfaketime() -> PathBuf {
    let candidates = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")]);
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .expect("libfaketime is installed: `make faketime` (apt-get install libfaketime)")
}

/// Starts replica `identity` of the fixture's operator, also allowed `endpoint`, with its wall
/// clock (only) moved ahead by `skew_days`.
fn replica(fx: &Fixture, identity: &str, endpoint: &str, skew_days: i64) -> OperatorProcess {
    let args = fx.replica_args(&["--allowed-endpoint", endpoint]);
    let preload = libfaketime();
    let faketime = format!("{skew_days:+}d");
    let env: Vec<(&str, &str)> = if skew_days == 0 {
        Vec::new()
    } else {
        vec![
            ("LD_PRELOAD", preload.to_str().expect("a UTF-8 path")),
            ("FAKETIME", &faketime),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
    };
    OperatorProcess::start_with_env(
        crate::operator_binary(),
        &shared().kubeconfig,
        identity,
        &args,
        &env,
    )
}

/// Checks that `time`, written by a replica, is off from the test's wall clock by about
/// `skew_days`: the skew was in effect.
fn assert_skewed(time: Option<Timestamp>, skew_days: i64, what: &str) {
    let written = time.unwrap_or_else(|| panic!("{what} is set"));
    let off = written.duration_since(Timestamp::now());
    let skew = SignedDuration::from_hours(24 * skew_days);
    assert!(
        (off - skew).abs() < SignedDuration::from_mins(5),
        "{what} is off by {off}, not by about {skew}"
    );
}

async fn exists(instances: &Api<GpuInstance>, name: &str) -> bool {
    instances
        .get_opt(name)
        .await
        .expect("read a GpuInstance")
        .is_some()
}

/// The first replica, skewed by `marker_days`, marks the mirrors of vanished instances; then the
/// second, skewed by `successor_days`, takes over and must time their removal by itself.
async fn removals_are_timed_by_the_replica_that_deletes(
    prefix: &str,
    marker_days: i64,
    successor_days: i64,
) {
    let records = generate_instances(3, 31);
    let vanished = records[0]["id"].as_str().expect("id").to_owned();
    let fx = Fixture::without_operator(shared(), prefix, records).await;
    // A second account, for a small view all of whose instances vanish.
    let emptied = start_simulator(generate_instances(2, 37)).await;
    let first = replica(&fx, "replica-1", &emptied.base_url(), marker_days);
    fx.create_view("some", |_| {}).await;
    fx.create_view("all", |spec| {
        spec.endpoint = Some(emptied.base_url());
        spec.mirror.mass_removal_grace_period = format!("{}s", GRACE.as_secs());
    })
    .await;
    fx.wait_ready("some", true, "Synced").await;
    fx.wait_ready("all", true, "Synced").await;
    assert_eq!(fx.mirrors_of("some").await.len(), 3);
    assert_eq!(fx.mirrors_of("all").await.len(), 2);

    // Remotely: one instance of the first account goes, and every instance of the second.
    fx.simulator().remove_instance(&vanished);
    emptied.simulator().set_instances(Vec::new());
    fx.refresh("some").await;
    fx.refresh("all").await;
    let instances = fx.instances();
    let gone = format!("some-{vanished}");
    let marked = instances.get(&gone).await.expect("still mirrored");
    let absent_since = marked.status.and_then(|s| s.absent_since);
    assert_skewed(
        absent_since,
        marker_days,
        "absentSince, by the first replica",
    );
    for mirror in fx.mirrors_of("all").await {
        assert!(
            mirror.status.and_then(|s| s.absent_since).is_some(),
            "marked by the first replica"
        );
    }

    // The first replica hands over: the second, waiting, leads at its next read of the Lease.
    let second = replica(&fx, "replica-2", &emptied.base_url(), successor_days);
    wait_for(
        "the second replica to be ready",
        Duration::from_secs(30),
        || async { second.get("/readyz").await.filter(|(code, _)| *code == 200) },
    )
    .await;
    let handed_over = Instant::now();
    first.signal("TERM");
    assert_eq!(
        first.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        first.log_text()
    );

    // Its first listings, seconds apart, delete nothing: neither the mirror a listing of the first
    // replica found missing long ago by its clock, nor all of a view's mirrors.
    let mut listings = 0;
    while handed_over.elapsed() < INTERVAL - Duration::from_millis(500) {
        let some = fx.refresh("some").await;
        fx.refresh("all").await;
        second.assert_running();
        listings += 1;
        let synced = some.status.and_then(|s| s.last_sync_time);
        assert_skewed(
            synced,
            successor_days,
            "lastSyncTime, by the second replica",
        );
        assert!(
            exists(&instances, &gone).await,
            "deleted by the second replica's listing {listings}, {:?} after it took over",
            handed_over.elapsed()
        );
        assert_eq!(fx.mirrors_of("all").await.len(), 2, "listing {listings}");
    }
    assert!(listings >= 2, "the second replica listed {listings} times");

    // Once it has seen the instance missing from two listings an interval apart, it deletes it.
    await_absent(
        instances.clone(),
        &gone,
        "the second replica to delete the vanished instance's mirror",
        INTERVAL * 4,
    )
    .await;
    assert_eq!(fx.mirrors_of("some").await.len(), 2);

    // The view all of whose instances vanished is held for the grace period, by the second
    // replica's own observations.
    let held = fx.wait_ready("all", true, "MassRemovalHeld").await;
    let ready = held
        .status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, condition::READY))
        .expect("Ready")
        .message
        .clone();
    assert!(ready.contains("2 of this view's 2 mirrors"), "{ready}");
    while handed_over.elapsed() < GRACE - Duration::from_millis(500) {
        fx.refresh("all").await;
        second.assert_running();
        assert_eq!(
            fx.mirrors_of("all").await.len(),
            2,
            "removed within the grace period, {:?} after the take-over",
            handed_over.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    wait_for(
        "the held mirrors to be removed after the grace period",
        INTERVAL * 4,
        || async { fx.mirrors_of("all").await.is_empty().then_some(()) },
    )
    .await;
    let view = fx.wait_ready("all", true, "Synced").await;
    assert_eq!(view.status.and_then(|s| s.pending_removal_count), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_whose_clock_runs_days_ahead_deletes_nothing_early() {
    removals_are_timed_by_the_replica_that_deletes("removals-ahead", 0, SKEW_DAYS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_whose_clock_runs_days_behind_the_marks_deletes_in_time() {
    removals_are_timed_by_the_replica_that_deletes("removals-behind", SKEW_DAYS, 0).await;
}
