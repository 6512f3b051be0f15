//! The two clocks of the election, behind a trait so that a test can skew one replica's wall clock.
//!
//! Every interval of the election is measured on this replica's monotonic clock. The wall clock is
//! only written into the Lease (`acquireTime`, `renewTime`) for people and other tools to read; no
//! replica compares it with its own, so skew between the nodes' wall clocks does not matter.

use jiff::Timestamp;
use tokio::time::Instant;

/// Where the election reads the time.
pub trait Clock: Send + Sync {
    /// Wall-clock time, written into the Lease and never compared with another replica's.
    fn wall(&self) -> Timestamp;
    /// Monotonic time: when this replica saw the Lease change, when its last renewal was sent.
    fn monotonic(&self) -> Instant;
}

/// The system's clocks (tokio's `Instant`, so paused test time applies too).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}
