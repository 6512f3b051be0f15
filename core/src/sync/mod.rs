//! The pure core of a sync: deciding, never doing. Everything here is a function of what it is
//! given (the view, the records a listing sent, what the mirrors' metadata says, the time), with no
//! I/O and no Kubernetes client, so that unit tests pin every rule down; the controller fetches,
//! calls these, and carries the results out.
//!
//! - [`listing`]: one listing planned record by record (counts, what was listed, which writes and
//!   Events), then its removals: the controller fetches the pages and carries the plan out.
//! - [`plan`]: what each listed record needs (its mirror created, updated or left alone), from the
//!   view's mirror shape and the mirror's metadata alone.
//! - [`removals`]: after a complete listing, which mirrors of vanished instances are marked absent,
//!   deleted, or held by the mass-removal guard.
//! - [`summary`]: the counts of a complete listing that the view's status shows.
//! - [`counts`]: the rule of bounded counts by remote text (`unknown`, `other`).
//! - [`view_status`]: the view's status after a sync, a failure or a suspension, and the failure
//!   reasons.
//! - [`lifecycle`]: which remote transition gets which Event, bounded per sync.
//! - [`expiry`]: when a prepaid instance is expiring soon.
//! - [`fleet`]: the fleet metrics of one view, counted page by page.

pub mod counts;
pub mod expiry;
pub mod fleet;
pub mod lifecycle;
pub mod listing;
pub mod plan;
pub mod removals;
pub mod summary;
pub mod view_status;

/// Views, records and the time for tests, the operator's too (feature `test-fixtures`).
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
