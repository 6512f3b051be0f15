//! A mirror's content as one number: the fingerprint of its spec and status (without the
//! conditions' transition times) and the digest of the operator's labels, with a stable hash, so
//! that an unchanged mirror is recognised from its metadata alone.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::*;
use crate::api::instance::{GpuInstanceSpec, GpuInstanceStatus};

/// A digest of the operator's own labels among `labels` ([`OWN_LABELS`]): equal digests mean equal
/// values, and a label the operator no longer sets (a region that became empty) changes it.
pub fn labels_digest(labels: &BTreeMap<String, String>) -> u64 {
    let mut hash = FNV_OFFSET;
    for key in OWN_LABELS {
        if let Some(value) = labels.get(key) {
            hash = fnv1a_extend(hash, key.as_bytes());
            hash = fnv1a_extend(hash, b"=");
            hash = fnv1a_extend(hash, value.as_bytes());
            hash = fnv1a_extend(hash, b"\n");
        }
    }
    hash
}

/// The fingerprint of a mirror's content: its spec and status, with the conditions' transition
/// times left out (they depend on history, not on the record). Written as
/// [`FINGERPRINT_ANNOTATION`] with every apply.
pub fn fingerprint(spec: &GpuInstanceSpec, status: &GpuInstanceStatus) -> u64 {
    let mut hash = Fnv1a(FNV_OFFSET);
    // Writing into the hash cannot fail; the JSON is hashed as it is produced, never kept.
    if status
        .conditions
        .iter()
        .all(|c| c.last_transition_time == Timestamp::UNIX_EPOCH)
    {
        let _ = serde_json::to_writer(&mut hash, &(spec, status));
    } else {
        let mut canonical = status.clone();
        for condition in &mut canonical.conditions {
            condition.last_transition_time = Timestamp::UNIX_EPOCH;
        }
        let _ = serde_json::to_writer(&mut hash, &(spec, &canonical));
    }
    hash.0
}

/// FNV-1a over bytes written to it.
struct Fnv1a(u64);

impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 = fnv1a_extend(self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The annotation value of a fingerprint, and back.
pub fn fingerprint_text(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// Parses [`fingerprint_text`]; `None` for anything else.
pub fn parse_fingerprint(text: &str) -> Option<u64> {
    (text.len() == 16).then(|| u64::from_str_radix(text, 16).ok())?
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a: a stable, dependency-free hash for names and fingerprints (not for security;
/// stable across releases and platforms, unlike the standard library's hasher).
pub(crate) fn fnv1a(text: &str) -> u64 {
    fnv1a_extend(FNV_OFFSET, text.as_bytes())
}

fn fnv1a_extend(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
