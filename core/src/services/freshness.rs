//! Whether a mirror's Service may still route: an endpoint stays `ready` only while a recent
//! listing of this process confirmed its instance. Without this, the endpoints of a view that
//! stalls (a revoked key), keeps failing, is suspended or stops mirroring would stay `ready`
//! forever, since EndpointSlices are otherwise rewritten only with their mirror; and an address
//! PPIO hands to another customer after the instance is gone would receive the cluster's traffic.
//!
//! Pure: [`window`] says how old a confirmation may be, [`unconfirmed`] which mirrors of a view
//! must be turned not ready now and when the next one is due, [`unconfirmed_readiness`] what the
//! Service then tells people. Confirmation is an [`Instant`] of this process: another replica's
//! wall clock is never trusted for it. The controller carries the decision out.

use std::time::{Duration, Instant};

use jiff::Timestamp;

/// How many sync intervals a confirmation stays fresh for, besides the view's last listing.
const INTERVALS_FRESH: u32 = 3;

/// The start of the readiness text of a Service turned not ready for want of confirmation: how
/// a Service the operator (or an earlier leader) turned is recognised.
pub const UNCONFIRMED_READINESS: &str = "Not ready: no listing has confirmed the instance since";

/// How old the last confirmation of an instance may be before its endpoints turn not ready:
/// three sync intervals plus the duration of the view's last complete sync.
///
/// A healthy view lists every interval (plus up to 10% jitter), and an instance is confirmed when
/// the page that lists it arrives, so between two confirmations pass about one interval and one
/// listing; a listing can take minutes on a large account under its request budget, and it grows
/// with the account, hence the listing's own duration on top. Three intervals leave one interval
/// and more of slack: an idle view never flips, and a single failed listing (retried within an
/// interval by the backoff) does not either. Two failed or missing listings in a row do.
pub fn window(interval: Duration, last_listing: Duration) -> Duration {
    interval
        .saturating_mul(INTERVALS_FRESH)
        .saturating_add(last_listing)
}

/// One mirror of a view, as the freshness rule sees it.
#[derive(Clone, Copy, Debug)]
pub struct Confirmation<'a> {
    /// The mirror's name.
    pub name: &'a str,
    /// Something of the mirror may route: its labels show its instance `running` (only such an
    /// endpoint is ready; a mirror marked absent counts too, the mark may have been interrupted
    /// between the mirror and its Service), or Services or EndpointSlices it controls exist
    /// (its labels are written last, after its Service: they may lag; and a slice it no longer
    /// plans may be left). The flip reads the mirror and finds out what routes.
    pub routable: bool,
    /// Its Service was turned not ready since it was last written: nothing to do again.
    pub turned: bool,
    /// When this process last saw the instance listed, or first saw the mirror.
    pub confirmed: Instant,
}

/// What [`unconfirmed`] decided for a view.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unconfirmed {
    /// The mirrors to turn not ready now, with when they were last confirmed.
    pub stale: Vec<(String, Instant)>,
    /// How long until the next mirror would be due, if one may become due.
    pub next: Option<Duration>,
}

/// Which of `mirrors` must have their Services turned not ready at `now` under `window`: those
/// of which something may route (see [`Confirmation::routable`]), were not turned already, and were last
/// confirmed `window` or longer ago. And when the next of the others is due.
pub fn unconfirmed<'a>(
    mirrors: impl IntoIterator<Item = Confirmation<'a>>,
    window: Duration,
    now: Instant,
) -> Unconfirmed {
    let mut decided = Unconfirmed::default();
    for mirror in mirrors {
        if !mirror.routable || mirror.turned {
            continue;
        }
        let age = now.saturating_duration_since(mirror.confirmed);
        match window.checked_sub(age).filter(|left| !left.is_zero()) {
            None => decided
                .stale
                .push((mirror.name.to_owned(), mirror.confirmed)),
            Some(left) => decided.next = Some(decided.next.map_or(left, |next| next.min(left))),
        }
    }
    decided
}

/// The readiness text of a Service no listing confirmed since `since` (the wall-clock time of the
/// last confirmation): what `kubectl describe svc` shows.
pub fn unconfirmed_readiness(since: Timestamp) -> String {
    format!(
        "{UNCONFIRMED_READINESS} {} (no complete listing within the freshness window).",
        crate::mirror::whole_seconds(since)
    )
}

/// The wall-clock time of `confirmed`, an instant of this process, seen at `now` and `wall_now`.
pub fn wall_time_of(confirmed: Instant, now: Instant, wall_now: Timestamp) -> Timestamp {
    let age = now.saturating_duration_since(confirmed);
    jiff::SignedDuration::try_from(age)
        .ok()
        .and_then(|age| wall_now.checked_sub(age).ok())
        .unwrap_or(wall_now)
}

/// Whether a Service's readiness text says it was turned not ready for want of confirmation.
pub fn is_unconfirmed(readiness: &str) -> bool {
    readiness.starts_with(UNCONFIRMED_READINESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn mirror(name: &str, confirmed: Instant) -> Confirmation<'_> {
        Confirmation {
            name,
            routable: true,
            turned: false,
            confirmed,
        }
    }

    #[test]
    fn the_window_is_three_intervals_and_the_last_listing() {
        assert_eq!(window(INTERVAL, Duration::ZERO), Duration::from_secs(30));
        assert_eq!(
            window(Duration::from_secs(60), Duration::from_secs(95)),
            Duration::from_secs(275)
        );
        assert_eq!(window(Duration::MAX, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn an_idle_view_syncing_every_interval_never_turns_anything() {
        // The slowest healthy rhythm: the interval plus its 10% jitter, a listing that takes as
        // long as the interval, the record confirmed at its end one time and its start the next.
        let start = Instant::now();
        let listing = INTERVAL;
        let window = window(INTERVAL, listing);
        let between = INTERVAL.mul_f64(1.1) + listing + listing;
        let decided = unconfirmed([mirror("a", start)], window, start + between);
        assert!(decided.stale.is_empty(), "{decided:?}");
        assert!(decided.next.is_some());
    }

    #[test]
    fn a_mirror_confirmed_longer_ago_than_the_window_is_turned_once() {
        let start = Instant::now();
        let window = window(INTERVAL, Duration::ZERO);
        let fresh = unconfirmed(
            [mirror("a", start)],
            window,
            start + Duration::from_secs(29),
        );
        assert_eq!(fresh.stale, []);
        assert_eq!(fresh.next, Some(Duration::from_secs(1)));

        let stale = unconfirmed([mirror("a", start)], window, start + window);
        assert_eq!(stale.stale, [("a".to_owned(), start)]);
        assert_eq!(stale.next, None);

        let turned = Confirmation {
            turned: true,
            ..mirror("a", start)
        };
        let again = unconfirmed([turned], window, start + Duration::from_secs(3600));
        assert_eq!(again, Unconfirmed::default(), "turned already: no write");
    }

    #[test]
    fn only_mirrors_of_which_something_may_route_are_turned() {
        let start = Instant::now();
        let late = start + Duration::from_secs(3600);
        let stopped = Confirmation {
            routable: false,
            ..mirror("stopped", start)
        };
        let decided = unconfirmed(
            [stopped, mirror("running", start)],
            window(INTERVAL, Duration::ZERO),
            late,
        );
        assert_eq!(decided.stale, [("running".to_owned(), start)]);
    }

    #[test]
    fn the_next_due_is_the_soonest_of_the_fresh() {
        let start = Instant::now();
        let window = window(INTERVAL, Duration::ZERO);
        let now = start + Duration::from_secs(20);
        let decided = unconfirmed(
            [
                mirror("old", start),
                mirror("new", start + Duration::from_secs(15)),
                mirror("stale", now - window),
            ],
            window,
            now,
        );
        assert_eq!(decided.stale.len(), 1);
        assert_eq!(decided.next, Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_new_leader_that_never_lists_turns_its_mirrors_one_window_after_it_first_saw_them() {
        // The cache's entries start confirmed when the process first sees them: nothing turns
        // before one window has passed, everything does after.
        let first_seen = Instant::now();
        let window = window(INTERVAL, Duration::ZERO);
        let names = ["a", "b"];
        let seen = || names.iter().map(|name| mirror(name, first_seen));
        let early = unconfirmed(seen(), window, first_seen + window / 2);
        assert!(early.stale.is_empty());
        assert_eq!(early.next, Some(window / 2));
        let late = unconfirmed(seen(), window, first_seen + window);
        assert_eq!(late.stale.len(), 2);
    }

    #[test]
    fn the_readiness_text_says_since_when_and_is_recognised() {
        let since: Timestamp = "2026-12-07T05:00:00.75Z".parse().unwrap();
        let text = unconfirmed_readiness(since);
        assert!(
            text.starts_with(
                "Not ready: no listing has confirmed the instance since 2026-12-07T05:00:00Z"
            ),
            "{text}"
        );
        assert!(is_unconfirmed(&text));
        assert!(!is_unconfirmed("Ready: the remote instance is running."));
        let now = Instant::now();
        let wall: Timestamp = "2026-12-07T05:01:00Z".parse().unwrap();
        assert_eq!(
            wall_time_of(now - Duration::from_secs(60), now, wall),
            "2026-12-07T05:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
