//! Injectable faults: the ways the simulated list endpoint can misbehave, and the queue that hands
//! them out to list requests one at a time.
//!
//! A [`Fault`] is a [`FaultKind`] plus how many list requests it lasts (`count`; absent means until
//! cleared). Faults queue in the order they were injected: each list request takes one use of the fault
//! at the head of the queue, whatever the request's outcome, and a fault whose uses are spent leaves the
//! queue so the next one applies. A fault without `count` stays at the head until the queue is cleared.
//!
//! This module only decides *which* fault a request gets; [`super::api`] carries it out.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// One injected fault: what goes wrong, and for how many list requests.
///
/// Faults queue in injection order. Each list request uses up one application of the fault at the
/// head of the queue, whatever the request's outcome; once its `count` is spent the next fault applies.
/// A fault without `count` stays at the head (blocking those behind it) until the faults are cleared.
/// Faults that replace the answer (every kind but `delay` and the page-altering ones) are served
/// before the API key is checked; faults that alter a page (`malformed_json`, `repeating_cursor`,
/// `duplicate_ids`) leave error answers (401, 400) unchanged.
///
/// In JSON (the control endpoint `POST /_simulator/faults`):
/// `{"kind": {"type": "rate_limited", "retry_after_secs": 2}, "count": 3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// For how many list requests; `None` means until the faults are cleared. `Some(0)` is a no-op.
    #[serde(default)]
    pub count: Option<u32>,
}

impl Fault {
    /// A fault for the next list request only.
    pub fn once(kind: FaultKind) -> Fault {
        Fault::times(kind, 1)
    }

    /// A fault for the next `count` list requests.
    pub fn times(kind: FaultKind, count: u32) -> Fault {
        Fault {
            kind,
            count: Some(count),
        }
    }

    /// A fault for every list request until the faults are cleared.
    pub fn until_cleared(kind: FaultKind) -> Fault {
        Fault { kind, count: None }
    }

    /// Checks the fault's parameters: a `server_error` status must be a 5xx.
    pub fn validate(&self) -> Result<(), String> {
        match self.kind {
            FaultKind::ServerError {
                status: Some(status),
            } if !(500..=599).contains(&status) => Err(format!(
                "server_error status must be between 500 and 599, got {status}"
            )),
            _ => Ok(()),
        }
    }
}

/// The ways a list request can be made to fail or misbehave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// 401 `UNAUTHORIZED`, whatever key was sent.
    Unauthorized,
    /// 403 `FORBIDDEN`.
    Forbidden,
    /// 429 `RATE_LIMIT_EXCEEDED`, with a `Retry-After: <secs>` header when `retry_after_secs` is set.
    RateLimited {
        /// Value of the `Retry-After` header, in seconds; no header when absent.
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// A 5xx `INTERNAL_SERVER_ERROR` response.
    ServerError {
        /// The HTTP status, 500..=599; 500 when absent.
        #[serde(default)]
        status: Option<u16>,
    },
    /// 400 `RESOURCE_NOT_FOUND`: the way PPIO reports a missing resource (not 404).
    ResourceNotFound,
    /// Waits `ms` milliseconds, then answers normally: to provoke client timeouts.
    Delay {
        /// How long to wait before answering.
        ms: u64,
    },
    /// 200 with `Content-Type: application/json` and a truncated body that does not parse.
    MalformedJson,
    /// 200 with the page asked for, but `has_more: true` and a `next_cursor` that is always the same
    /// (a valid cursor pointing at the first page), so a client that follows cursors naively never ends.
    RepeatingCursor,
    /// 200 with a page that repeats an instance already served: the last instance of the previous page
    /// when a cursor was sent, else the page's own first instance.
    DuplicateIds,
    /// 200 with an error body, `{"code": 500, "reason": "INTERNAL_SERVER_ERROR", "message": "upstream
    /// failed"}`, as a gateway may send: valid JSON, but not a page.
    ErrorBodyOk,
    /// 200 with the body `{}`: valid JSON without `data` or `has_more`, which must not pass for an
    /// empty last page.
    EmptyObjectOk,
}

/// A fault in the queue, with its remaining uses.
#[derive(Debug, Clone)]
struct QueuedFault {
    kind: FaultKind,
    remaining: Option<u32>,
}

/// Injected faults in the order they apply.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    queue: VecDeque<QueuedFault>,
}

impl FaultQueue {
    /// Adds a fault behind those already queued. A fault with `count: Some(0)` is dropped.
    pub(crate) fn push(&mut self, fault: Fault) {
        if fault.count == Some(0) {
            return;
        }
        self.queue.push_back(QueuedFault {
            kind: fault.kind,
            remaining: fault.count,
        });
    }

    /// Takes one use of the fault at the head of the queue, for the current list request.
    pub(crate) fn take_next(&mut self) -> Option<FaultKind> {
        let head = self.queue.front_mut()?;
        let kind = head.kind.clone();
        if let Some(remaining) = head.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.queue.pop_front();
            }
        }
        Some(kind)
    }

    /// Removes every queued fault.
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }

    /// The faults still queued, with their remaining uses as `count`.
    pub(crate) fn pending(&self) -> Vec<Fault> {
        self.queue
            .iter()
            .map(|queued| Fault {
                kind: queued.kind.clone(),
                count: queued.remaining,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn faults_apply_in_injection_order_and_expire_after_count() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::times(FaultKind::Forbidden, 2));
        queue.push(Fault::once(FaultKind::MalformedJson));
        assert_eq!(queue.take_next(), Some(FaultKind::Forbidden));
        assert_eq!(queue.take_next(), Some(FaultKind::Forbidden));
        assert_eq!(queue.take_next(), Some(FaultKind::MalformedJson));
        assert_eq!(queue.take_next(), None);
    }

    #[test]
    fn a_fault_without_count_lasts_until_cleared() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::until_cleared(FaultKind::Unauthorized));
        for _ in 0..10 {
            assert_eq!(queue.take_next(), Some(FaultKind::Unauthorized));
        }
        queue.clear();
        assert_eq!(queue.take_next(), None);
    }

    #[test]
    fn a_fault_with_count_zero_is_ignored() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::times(FaultKind::Forbidden, 0));
        assert_eq!(queue.take_next(), None);
    }

    #[test]
    fn pending_reports_remaining_uses() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::times(FaultKind::ResourceNotFound, 3));
        queue.take_next();
        assert_eq!(
            queue.pending(),
            vec![Fault::times(FaultKind::ResourceNotFound, 2)]
        );
    }

    #[test]
    fn faults_read_from_tagged_json() {
        let fault: Fault = serde_json::from_value(
            json!({"kind": {"type": "rate_limited", "retry_after_secs": 2}, "count": 3}),
        )
        .expect("parses");
        assert_eq!(
            fault,
            Fault::times(
                FaultKind::RateLimited {
                    retry_after_secs: Some(2)
                },
                3
            )
        );
        let fault: Fault =
            serde_json::from_value(json!({"kind": {"type": "server_error"}})).expect("parses");
        assert_eq!(
            fault,
            Fault::until_cleared(FaultKind::ServerError { status: None })
        );
        assert!(serde_json::from_value::<Fault>(json!({"kind": {"type": "explode"}})).is_err());
    }

    #[test]
    fn bodies_sent_with_200_read_from_their_snake_case_names() {
        for (name, kind) in [
            ("error_body_ok", FaultKind::ErrorBodyOk),
            ("empty_object_ok", FaultKind::EmptyObjectOk),
        ] {
            let fault: Fault =
                serde_json::from_value(json!({"kind": {"type": name}, "count": 1})).expect(name);
            assert_eq!(fault, Fault::once(kind.clone()));
            assert_eq!(
                serde_json::to_value(&fault).expect("serializes")["kind"],
                json!({"type": name})
            );
        }
    }

    #[test]
    fn server_error_status_must_be_5xx() {
        assert!(
            Fault::once(FaultKind::ServerError { status: Some(503) })
                .validate()
                .is_ok()
        );
        assert!(
            Fault::once(FaultKind::ServerError { status: Some(404) })
                .validate()
                .is_err()
        );
    }
}
