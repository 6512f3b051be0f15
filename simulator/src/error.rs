//! The simulator's error type: what can go wrong when loading or changing its data.
//!
//! Errors of the simulated API itself (401, 429, ...) are not Rust errors: they are HTTP responses,
//! built in [`super::api`].

use std::path::PathBuf;

/// Something the simulator was asked to do cannot be done; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The instances file could not be read.
    #[error("cannot read instances file {}: {source}", path.display())]
    ReadInstances {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The instances file is not JSON.
    #[error("instances file {} is not valid JSON: {source}", path.display())]
    ParseInstances {
        /// The file that was read.
        path: PathBuf,
        /// Where and why parsing failed.
        source: serde_json::Error,
    },
    /// The instances file is JSON, but not instance records in an accepted shape.
    #[error(
        "instances file {}: {reason} (expected a JSON array of instance records, or {{\"data\": [...]}})",
        path.display()
    )]
    InstancesFileShape {
        /// The file that was read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An instance record or a set of records cannot be stored.
    #[error("invalid instance record: {0}")]
    InvalidRecord(String),
    /// A merge patch cannot be applied to a stored record.
    #[error("invalid merge patch: {0}")]
    InvalidPatch(String),
}
