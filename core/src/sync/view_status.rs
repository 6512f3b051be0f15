//! The view's status: what a complete sync, a failed one or a suspension makes of it. Pure functions
//! of the view, the sync's outcome and the time; the controller writes what they return (and only
//! when it differs from the status the view has).
//!
//! The status is kstatus-compatible: `Ready`, and `Reconciling` or `Stalled` as kstatus reads them,
//! each with the generation it answers. A failure never changes the counts or
//! `lastSuccessfulSyncTime` of the last complete sync: they stay as that sync left them.

use jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::condition::{self, Condition, ConditionStatus};
use crate::api::cost::{PRICES_CURRENT, WITHIN_BUDGET};
use crate::api::stored_view::{SpecProblem, StoredView};
use crate::api::{GpuInstanceView, GpuInstanceViewStatus};
use crate::cost::report::{self, PriceList};
use crate::cost::{HourlySpend, SpendOverflow};
use crate::mirror;
use crate::sync::removals::HeldRemovals;
use crate::sync::summary::Summary;
use ppio::{ApiKey, ErrorKind, PpioError};

/// The view's Ready reason after a complete sync.
pub const SYNCED: &str = "Synced";
/// The view's Ready reason while the mass-removal guard holds deletions back.
pub const MASS_REMOVAL_HELD: &str = "MassRemovalHeld";
/// The view's Ready reason when listed instances are not mirrored because their mirrors' names
/// hold GpuInstances the view does not control.
pub const MIRROR_NAME_TAKEN: &str = "MirrorNameTaken";

/// Why a sync did not complete: the Ready condition's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The Secret named by the view does not exist.
    SecretNotFound,
    /// The Secret has no such key.
    SecretKeyNotFound,
    /// The operator may not read the Secret.
    SecretForbidden,
    /// Reading the Secret failed for another reason.
    SecretUnavailable,
    /// The Secret's value is not a usable API key.
    InvalidApiKey,
    /// PPIO refused the key (401, 403).
    AuthFailed,
    /// `spec.endpoint` is not on the operator's allow-list.
    EndpointNotAllowed,
    /// The spec cannot be used (e.g. an endpoint that is not a URL).
    InvalidSpec,
    /// PPIO rejected the request (another 4xx).
    RequestRejected,
    /// The PPIO client could not be set up for the endpoint.
    InvalidConfig,
    /// PPIO answered 429.
    RateLimited,
    /// PPIO answered 5xx, timed out or could not be reached.
    ApiUnavailable,
    /// PPIO's answer was malformed or inconsistent, so the listing is not complete.
    InvalidResponse,
    /// Listing the view's GpuInstances from the Kubernetes API failed.
    ListFailed,
    /// Writing GpuInstances to the Kubernetes API failed.
    WriteFailed,
    /// The Kubernetes API server throttled the sync's requests: it refused them with 429 (API
    /// Priority and Fairness, an admission webhook or a quota) after the client's few retries, or
    /// did not answer them within their deadline, or the sync's writes outlived theirs. Retried with
    /// backoff, so `Reconciling`.
    ApiServerThrottled,
}

impl FailureReason {
    /// The reason as the condition shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SecretNotFound => "SecretNotFound",
            FailureReason::SecretKeyNotFound => "SecretKeyNotFound",
            FailureReason::SecretForbidden => "SecretForbidden",
            FailureReason::SecretUnavailable => "SecretUnavailable",
            FailureReason::InvalidApiKey => "InvalidApiKey",
            FailureReason::AuthFailed => "AuthFailed",
            FailureReason::EndpointNotAllowed => "EndpointNotAllowed",
            FailureReason::InvalidSpec => "InvalidSpec",
            FailureReason::RequestRejected => "RequestRejected",
            FailureReason::InvalidConfig => "InvalidConfig",
            FailureReason::RateLimited => "RateLimited",
            FailureReason::ApiUnavailable => "ApiUnavailable",
            FailureReason::InvalidResponse => "InvalidResponse",
            FailureReason::ListFailed => "ListFailed",
            FailureReason::WriteFailed => "WriteFailed",
            FailureReason::ApiServerThrottled => "ApiServerThrottled",
        }
    }

    /// Whether only a change by the user (the view, its Secret, the operator's settings, the PPIO
    /// account) can fix it: kstatus `Stalled`. The others pass with time: `Reconciling`.
    pub fn needs_user_action(self) -> bool {
        matches!(
            self,
            FailureReason::SecretNotFound
                | FailureReason::SecretKeyNotFound
                | FailureReason::SecretForbidden
                | FailureReason::InvalidApiKey
                | FailureReason::AuthFailed
                | FailureReason::EndpointNotAllowed
                | FailureReason::InvalidSpec
                | FailureReason::RequestRejected
                | FailureReason::InvalidConfig
        )
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorKind> for FailureReason {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::AuthFailed => FailureReason::AuthFailed,
            ErrorKind::RateLimited => FailureReason::RateLimited,
            ErrorKind::Unavailable => FailureReason::ApiUnavailable,
            ErrorKind::InvalidResponse => FailureReason::InvalidResponse,
            ErrorKind::Rejected => FailureReason::RequestRejected,
            ErrorKind::InvalidConfig => FailureReason::InvalidConfig,
        }
    }
}

/// A PPIO failure as the view reports it: what the client says happened, then what to do about it
/// here. The client already redacts the key from server text; the message is checked once more
/// because it ends up in the cluster.
pub fn ppio_failure(error: &PpioError, key: &ApiKey) -> SyncFailure {
    let reason = FailureReason::from(error.kind());
    let remedy = match reason {
        FailureReason::AuthFailed => {
            "Check that the Secret named by spec.credentials.secretRef holds a current PPIO API key \
             of an account with access to GPU instances."
        }
        FailureReason::RateLimited => {
            "Retrying with backoff; sync less often (spec.syncInterval) or share an API key among \
             fewer views if it persists."
        }
        FailureReason::RequestRejected => "Check the view's filter and page size.",
        FailureReason::InvalidConfig => "Check spec.endpoint.",
        FailureReason::InvalidResponse => "Nothing was removed; retrying with backoff.",
        _ => "Usually temporary; retrying with backoff.",
    };
    let mut message = format!("{error}. {remedy}");
    if key.appears_in(&message) {
        message =
            format!("PPIO returned an error that echoed the API key; it is not shown. {remedy}");
    }
    SyncFailure { reason, message }
}

/// Why a sync did not complete, as the view's conditions report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    /// The condition reason.
    pub reason: FailureReason,
    /// What happened and what to do, safe to show (never holds the API key).
    pub message: String,
}

impl SyncFailure {
    /// The Kubernetes API server throttled the sync's attempt to `action`: `what` says how.
    pub fn throttled(action: &str, what: &impl std::fmt::Display) -> SyncFailure {
        SyncFailure {
            reason: FailureReason::ApiServerThrottled,
            message: format!(
                "The Kubernetes API server throttled the operator's attempt to {action}: {what}. It \
                 refused with 429 (API Priority and Fairness, an admission webhook or a quota) or did \
                 not answer in time. Nothing already written is lost; retrying with backoff, at least \
                 once per sync interval."
            ),
        }
    }

    /// A failure of the Kubernetes API to `action` (e.g. "write GpuInstances"), as the view
    /// reports it.
    pub fn kube(
        reason: FailureReason,
        action: &str,
        error: &impl std::fmt::Display,
    ) -> SyncFailure {
        SyncFailure {
            reason,
            message: format!("Could not {action}: {error}. Retrying with backoff."),
        }
    }
}

/// What a complete sync did to the view's mirrors, as its status reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MirrorCounts {
    /// Mirrors the view keeps after the sync.
    pub mirrored: usize,
    /// Mirrors created.
    pub created: usize,
    /// Mirrors rewritten: changed remotely, changed by someone else, or back after a miss.
    pub updated: usize,
    /// Mirrors deleted.
    pub removed: usize,
    /// Mirrors kept although their instance is missing from complete listings.
    pub kept_missing: usize,
    /// Deletions the mass-removal guard holds back.
    pub held: Option<HeldRemovals>,
    /// Listed instances not mirrored: their mirror's name holds a GpuInstance the view does not
    /// control.
    pub names_taken: Option<NamesTaken>,
    /// What the view's Services came to, when it asks for Services.
    pub services: Option<ServiceCounts>,
}

/// Listed instances whose mirror's name holds a GpuInstance the view does not control.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamesTaken {
    /// How many.
    pub count: usize,
    /// The first such name.
    pub first: String,
}

impl NamesTaken {
    /// Counts one more, named `name`.
    pub fn add(names: &mut Option<NamesTaken>, name: &str) {
        names
            .get_or_insert_with(|| NamesTaken {
                count: 0,
                first: name.to_owned(),
            })
            .count += 1;
    }
}

/// What a view's Services came to in one sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    /// The view asks for Services, but the operator keeps none (it runs without `--services`).
    pub unavailable: bool,
    /// Services kept.
    pub kept: usize,
    /// Endpoints left out: refused addresses, host names, malformed endpoints.
    pub refused: usize,
}

impl ServiceCounts {
    /// Counts one mirror's Service.
    pub fn add(&mut self, tally: crate::services::ServiceTally) {
        self.kept += usize::from(tally.service);
        self.refused += usize::from(tally.refused);
    }
}

/// The view's status after a complete sync whose writes all succeeded; its listed instances
/// billed now spend `spend` an hour at `prices`.
pub fn synced_status(
    view: &GpuInstanceView,
    summary: &Summary,
    counts: &MirrorCounts,
    cost: (&Result<HourlySpend, SpendOverflow>, &PriceList),
    pages: u32,
    now: Timestamp,
) -> GpuInstanceViewStatus {
    let (spend, prices) = cost;
    let previous = view.status.clone().unwrap_or_default();
    let mut message = format!(
        "Listed {} instance{} in {} page{}",
        summary.instances,
        plural(summary.instances),
        pages,
        plural(i64::from(pages))
    );
    if view.spec.mirror.enabled {
        message.push_str(&format!(
            "; {} mirrored ({} created, {} updated, {} removed",
            counts.mirrored, counts.created, counts.updated, counts.removed
        ));
        if counts.kept_missing > 0 {
            message.push_str(&format!(
                ", {} kept although missing from complete listings",
                counts.kept_missing
            ));
        }
        message.push(')');
    } else {
        message.push_str("; mirroring is disabled");
    }
    match counts.services {
        Some(ServiceCounts {
            unavailable: true, ..
        }) => message.push_str(
            "; no Services: spec.services.enabled is set, but the operator keeps no Services \
             (start it with --services, chart value instanceServices.enabled)",
        ),
        Some(services) => {
            message.push_str(&format!(
                "; {} Service{}",
                services.kept,
                if services.kept == 1 { "" } else { "s" }
            ));
            if services.refused > 0 {
                message.push_str(&format!(
                    " ({} endpoint{} not routed: see each mirror's ServiceEndpoints condition)",
                    services.refused,
                    if services.refused == 1 { "" } else { "s" }
                ));
            }
        }
        None => {}
    }
    message.push('.');
    let mut reason = SYNCED;
    if let Some(taken) = &counts.names_taken {
        reason = MIRROR_NAME_TAKEN;
        message.push_str(&format!(
            " {} listed instance{} not mirrored: the name of {} mirror ({}{}) holds a \
             GpuInstance this view does not control (another view's, or none's). It is left \
             alone; rename or delete it, and the next sync mirrors the instance.",
            taken.count,
            if taken.count == 1 { " is" } else { "s are" },
            if taken.count == 1 { "its" } else { "each" },
            taken.first,
            if taken.count == 1 { "" } else { ", ..." },
        ));
    }
    if let Some(held) = &counts.held {
        reason = MASS_REMOVAL_HELD;
        message.push_str(&format!(
            " Removing {} of this view's {} mirrors at once is held until {} (the mass-removal guard, \
             spec.mirror.massRemovalGracePeriod {}): their instances are missing from complete \
             listings. If PPIO lists them again by then, nothing is removed.",
            held.count,
            held.of,
            held.until,
            view.spec.mirror.mass_removal_grace_period.trim()
        ));
    }
    let generation = view.metadata.generation;
    let mut conditions = vec![
        new_condition(condition::READY, true, reason, &message, generation, now),
        new_condition(
            condition::RECONCILING,
            false,
            "Synced",
            "The last sync completed.",
            generation,
            now,
        ),
        new_condition(
            condition::STALLED,
            false,
            "Synced",
            "The last sync completed.",
            generation,
            now,
        ),
    ];
    // Without any product list (none read since the operator started), the view's cost and budget
    // stay as the last priced sync left them: every price is unknown, which says nothing new.
    let priced = prices.products.is_some();
    let stamped = |mut c: Condition| {
        c.observed_generation = generation;
        c.last_transition_time = mirror::whole_seconds(now);
        c
    };
    conditions.push(stamped(report::prices_current(prices)));
    if priced {
        conditions.extend(report::within_budget(&view.spec.cost, spend).map(stamped));
    } else {
        conditions.extend(condition::find(&previous.conditions, WITHIN_BUDGET).cloned());
    }
    GpuInstanceViewStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(&previous.conditions, conditions),
        last_sync_time: Some(mirror::whole_seconds(now)),
        last_successful_sync_time: Some(mirror::whole_seconds(now)),
        instance_count: Some(summary.instances),
        running_count: Some(summary.running),
        gpu_count: Some(summary.gpus),
        instances_by_status: summary.by_status.clone(),
        instances_by_region: summary.by_region.clone(),
        mirrored_count: Some(counts.mirrored as i64),
        pending_removal_count: Some(counts.kept_missing as i64),
        expiring_soon_count: Some(summary.expiring_soon),
        service_count: counts.services.map(|s| s.kept as i64),
        refused_endpoint_count: counts.services.map(|s| s.refused as i64),
        last_handled_refresh: refresh_requested(view),
        cost: if priced {
            Some(report::view_cost_status(spend, &view.spec.cost, prices))
        } else {
            previous.cost.clone()
        },
    }
}

/// The view's status after a sync that failed: the failure in the conditions, and everything else
/// (counts, last successful sync) as the last complete sync left it.
pub fn failed_status(
    view: &GpuInstanceView,
    failure: &SyncFailure,
    now: Timestamp,
) -> GpuInstanceViewStatus {
    failure_status(view, view.status.as_ref(), failure, now)
}

/// Why a view whose stored spec this version cannot decode is not synced: `InvalidSpec`, naming
/// the field and its value.
pub fn unreadable_spec(problem: &SpecProblem) -> SyncFailure {
    SyncFailure {
        reason: FailureReason::InvalidSpec,
        message: format!(
            "This operator cannot read the view's spec: {problem}. Nothing is synced and its \
             mirrors are kept as they are until the spec is corrected, or the operator is \
             upgraded to a release that knows the value (it may have been written under a newer \
             CRD)."
        ),
    }
}

/// The status of a view whose stored spec this version cannot decode: [`unreadable_spec`] in the
/// conditions, and everything else as the last complete sync left it. `lastSyncTime` says when the
/// problem was first reported: no sync is attempted while it lasts, so a status already reporting
/// it for this generation and refresh request is returned unchanged (and is not written again).
pub fn unreadable_spec_status(
    view: &StoredView,
    problem: &SpecProblem,
    now: Timestamp,
) -> GpuInstanceViewStatus {
    let status = failure_status(view, view.status.as_ref(), &unreadable_spec(problem), now);
    match view.status.as_ref() {
        Some(previous)
            if GpuInstanceViewStatus {
                last_sync_time: previous.last_sync_time,
                ..status.clone()
            } == *previous =>
        {
            previous.clone()
        }
        _ => status,
    }
}

fn failure_status(
    view: &impl Resource,
    previous: Option<&GpuInstanceViewStatus>,
    failure: &SyncFailure,
    now: Timestamp,
) -> GpuInstanceViewStatus {
    let previous = previous.cloned().unwrap_or_default();
    let generation = view.meta().generation;
    let needs_user_action = failure.reason.needs_user_action();
    let (reconciling, stalled) = if needs_user_action {
        (
            "Waiting for a change to the view, its Secret or the operator's settings; retrying periodically.",
            failure.message.as_str(),
        )
    } else {
        (failure.message.as_str(), "Retrying with backoff.")
    };
    GpuInstanceViewStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            vec![
                new_condition(
                    condition::READY,
                    false,
                    failure.reason.as_str(),
                    &failure.message,
                    generation,
                    now,
                ),
                new_condition(
                    condition::RECONCILING,
                    !needs_user_action,
                    failure.reason.as_str(),
                    reconciling,
                    generation,
                    now,
                ),
                new_condition(
                    condition::STALLED,
                    needs_user_action,
                    failure.reason.as_str(),
                    stalled,
                    generation,
                    now,
                ),
            ]
            .into_iter()
            .chain(cost_conditions(&previous))
            .collect(),
        ),
        last_sync_time: Some(mirror::whole_seconds(now)),
        last_handled_refresh: refresh_requested(view),
        ..previous
    }
}

/// The view's status while it is suspended: nothing is listed or changed; Ready keeps its value and
/// says why nothing moves.
pub fn suspended_status(view: &GpuInstanceView, now: Timestamp) -> GpuInstanceViewStatus {
    let previous = view.status.clone().unwrap_or_default();
    let generation = view.metadata.generation;
    // Suspension changes nothing remote or mirrored, so Ready keeps its value; the reason says why
    // nothing moves.
    let message =
        "Syncing is suspended (spec.suspend); mirrored instances are kept as last synced.";
    let mut ready = new_condition(
        condition::READY,
        false,
        "Suspended",
        message,
        generation,
        now,
    );
    ready.status = condition::find(&previous.conditions, condition::READY)
        .map_or(ConditionStatus::Unknown, |c| c.status);
    GpuInstanceViewStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            vec![
                ready,
                new_condition(
                    condition::RECONCILING,
                    false,
                    "Suspended",
                    message,
                    generation,
                    now,
                ),
                new_condition(
                    condition::STALLED,
                    false,
                    "Suspended",
                    message,
                    generation,
                    now,
                ),
            ]
            .into_iter()
            .chain(cost_conditions(&previous))
            .collect(),
        ),
        ..previous
    }
}

/// The cost conditions of `previous` (`PricesCurrent`, `WithinBudget`), kept as they are by a
/// status that is not a complete sync's: like the cost itself, they stay as the last complete sync
/// left them.
fn cost_conditions(previous: &GpuInstanceViewStatus) -> impl Iterator<Item = Condition> + '_ {
    previous
        .conditions
        .iter()
        .filter(|c| c.type_ == PRICES_CURRENT || c.type_ == WITHIN_BUDGET)
        .cloned()
}

/// The value of the refresh annotation, if any.
pub fn refresh_requested(view: &impl Resource) -> Option<String> {
    view.annotations()
        .get(crate::api::view::REFRESH_ANNOTATION)
        .map(|v| v.chars().take(256).collect())
}

fn new_condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: ConditionStatus::from(status),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: mirror::whole_seconds(now),
        observed_generation: generation,
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fixtures::{instance, summarize, view};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn counts(mirrored: usize, created: usize) -> MirrorCounts {
        MirrorCounts {
            mirrored,
            created,
            ..MirrorCounts::default()
        }
    }

    /// `view` after one complete sync of a single running instance at second 100.
    fn synced_once(mut view: GpuInstanceView) -> GpuInstanceView {
        let listing = [instance("aa01", "running", "r", 1)];
        view.status = Some(synced_status(
            &view,
            &summarize(&listing),
            &counts(1, 1),
            (&Ok(HourlySpend::default()), &PriceList::default()),
            1,
            at(100),
        ));
        view
    }

    #[test]
    fn a_failure_keeps_the_last_counts_and_says_why() {
        let view = synced_once(view(true));

        let failure = SyncFailure {
            reason: FailureReason::ApiUnavailable,
            message: "PPIO answered 503".into(),
        };
        let status = failed_status(&view, &failure, at(200));
        assert_eq!(status.instance_count, Some(1));
        assert_eq!(status.last_successful_sync_time, Some(at(100)));
        assert_eq!(status.last_sync_time, Some(at(200)));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "ApiUnavailable")
        );
        let reconciling = condition::find(&status.conditions, condition::RECONCILING).unwrap();
        assert_eq!(reconciling.status, ConditionStatus::True);
        let stalled = condition::find(&status.conditions, condition::STALLED).unwrap();
        assert_eq!(stalled.status, ConditionStatus::False);
    }

    #[test]
    fn a_throttled_view_is_reconciling_and_says_what_was_refused() {
        let failure = SyncFailure::throttled("write GpuInstances", &"3 of 5 writes failed");
        let status = failed_status(&synced_once(view(true)), &failure, at(200));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "ApiServerThrottled")
        );
        for part in [
            "write GpuInstances",
            "3 of 5 writes failed",
            "429",
            "retrying",
        ] {
            assert!(ready.message.contains(part), "{part}: {}", ready.message);
        }
        let reconciling = condition::find(&status.conditions, condition::RECONCILING).unwrap();
        assert_eq!(
            (reconciling.status, reconciling.reason.as_str()),
            (ConditionStatus::True, "ApiServerThrottled")
        );
        let stalled = condition::find(&status.conditions, condition::STALLED).unwrap();
        assert_eq!(stalled.status, ConditionStatus::False);
        assert_eq!(status.instance_count, Some(1), "the last counts stay");
    }

    #[test]
    fn the_cost_and_budget_stay_through_failed_syncs_and_syncs_without_any_price_list() {
        let mut view = view(true);
        view.spec.cost.hourly_budget = Some("10".into());
        let list = serde_json::json!({"data": [{"id": "a100", "name": "A100", "type": "gpu",
            "pricing": {"precision": 3, "postpaid": {"final_price": 12600, "unit": "per_hour"}}}]});
        let prices = PriceList {
            products: Some(std::sync::Arc::new(
                ppio::Products::from_json(list.to_string().as_bytes()).unwrap(),
            )),
            read_at: Some(at(50)),
            failure: None,
        };
        let mut record: ppio::RecordSummary = (&instance("aa01", "running", "r", 1)).into();
        record.product_id = "a100".into();
        record.billing_mode = "postpaid".into();
        let spend = HourlySpend::of([&prices.cost_of(&record, at(100))]);
        let status = synced_status(
            &view,
            &summarize(&[]),
            &MirrorCounts::default(),
            (&spend, &prices),
            1,
            at(100),
        );
        let over = condition::find(&status.conditions, WITHIN_BUDGET)
            .unwrap()
            .clone();
        assert_eq!(over.status, ConditionStatus::False);
        let cost = status.cost.clone().expect("a cost");
        assert_eq!(cost.hourly_spend.unwrap().total, "12.600");
        view.status = Some(status);

        // A failed sync keeps both.
        let failure = SyncFailure {
            reason: FailureReason::ApiUnavailable,
            message: "PPIO answered 503".into(),
        };
        let failed = failed_status(&view, &failure, at(200));
        assert_eq!(
            condition::find(&failed.conditions, WITHIN_BUDGET),
            Some(&over)
        );
        assert_eq!(failed.cost, view.status.as_ref().unwrap().cost);

        // A sync with no price list at all (the first read since a restart failed): every price
        // unknown says nothing new, so the cost and the budget's verdict stay; only PricesCurrent
        // says why.
        let unread = PriceList {
            products: None,
            read_at: None,
            failure: Some(crate::cost::report::PriceListFailure {
                at: at(250),
                message: "PPIO answered 503.".into(),
            }),
        };
        let spend = HourlySpend::of([&unread.cost_of(&record, at(300))]);
        let blind = synced_status(
            &view,
            &summarize(&[]),
            &MirrorCounts::default(),
            (&spend, &unread),
            1,
            at(300),
        );
        assert_eq!(
            condition::find(&blind.conditions, WITHIN_BUDGET),
            Some(&over)
        );
        assert_eq!(blind.cost, view.status.as_ref().unwrap().cost);
        let current = condition::find(&blind.conditions, PRICES_CURRENT).unwrap();
        assert_eq!(current.status, ConditionStatus::False);
    }

    #[test]
    fn a_spend_of_unknown_prices_alone_shows_no_total() {
        let unknown = HourlySpend {
            unknown: 2,
            ..HourlySpend::default()
        };
        assert_eq!(report::shown_total(&Ok(unknown)), None);
        assert_eq!(
            report::shown_total(&Ok(HourlySpend::default())).map(|d| d.to_string()),
            Some("0".into()),
            "nothing billed at all: a known zero"
        );
    }

    #[test]
    fn a_failure_that_needs_the_user_is_stalled() {
        let failure = SyncFailure {
            reason: FailureReason::SecretNotFound,
            message: "Secret ml/ppio not found".into(),
        };
        let status = failed_status(&view(true), &failure, at(200));
        let stalled = condition::find(&status.conditions, condition::STALLED).unwrap();
        assert_eq!(
            (stalled.status, stalled.reason.as_str()),
            (ConditionStatus::True, "SecretNotFound")
        );
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn a_successful_sync_is_ready_for_its_generation() {
        let view = view(true);
        let listing = [instance("aa01", "running", "r", 1)];
        let status = synced_status(
            &view,
            &summarize(&listing),
            &counts(1, 1),
            (&Ok(HourlySpend::default()), &PriceList::default()),
            1,
            at(100),
        );
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.mirrored_count, Some(1));
        assert!(ready.message.contains("1 created"), "{}", ready.message);
    }

    #[test]
    fn a_mirror_name_another_view_holds_is_reported_with_a_count() {
        let view = view(true);
        let mut names_taken = None;
        NamesTaken::add(&mut names_taken, "team-a-aa01");
        NamesTaken::add(&mut names_taken, "team-a-aa02");
        let taken = MirrorCounts {
            mirrored: 1,
            names_taken,
            ..MirrorCounts::default()
        };
        let status = synced_status(
            &view,
            &summarize(&[]),
            &taken,
            (&Ok(HourlySpend::default()), &PriceList::default()),
            1,
            at(300),
        );
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::True, MIRROR_NAME_TAKEN)
        );
        assert!(
            ready
                .message
                .contains("2 listed instances are not mirrored")
                && ready.message.contains("team-a-aa01"),
            "{}",
            ready.message
        );
        assert_eq!(status.mirrored_count, Some(1));
    }

    #[test]
    fn held_removals_keep_the_view_ready_and_say_until_when() {
        let view = view(true);
        let held = MirrorCounts {
            mirrored: 10,
            kept_missing: 8,
            held: Some(HeldRemovals {
                count: 8,
                of: 10,
                until: at(1_100),
            }),
            ..MirrorCounts::default()
        };
        let status = synced_status(
            &view,
            &summarize(&[]),
            &held,
            (&Ok(HourlySpend::default()), &PriceList::default()),
            1,
            at(300),
        );
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::True, MASS_REMOVAL_HELD)
        );
        assert!(
            ready.message.contains("8 of this view's 10 mirrors"),
            "{}",
            ready.message
        );
        assert!(
            ready.message.contains("1970-01-01T00:18:20Z"),
            "{}",
            ready.message
        );
        assert_eq!(status.pending_removal_count, Some(8));
    }

    #[test]
    fn an_unreadable_spec_is_stalled_naming_field_and_value_and_keeps_the_counts() {
        let mut synced = synced_once(view(true));
        synced.metadata.generation = Some(4);
        synced.metadata.annotations = Some(
            [(
                crate::api::view::REFRESH_ANNOTATION.to_owned(),
                "r2".to_owned(),
            )]
            .into(),
        );
        let stored = StoredView {
            metadata: synced.metadata.clone(),
            spec: Err(SpecProblem {
                field: "spec.mirror.omitFields[0]".into(),
                problem: "unknown variant `sshKeys`, expected one of `command`".into(),
            }),
            status: synced.status.clone(),
        };
        let problem = stored.spec.clone().unwrap_err();
        let status = unreadable_spec_status(&stored, &problem, at(200));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "InvalidSpec")
        );
        assert!(
            ready.message.contains("spec.mirror.omitFields[0]")
                && ready.message.contains("`sshKeys`"),
            "{}",
            ready.message
        );
        let stalled = condition::find(&status.conditions, condition::STALLED).unwrap();
        assert_eq!(stalled.status, ConditionStatus::True);
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.last_handled_refresh.as_deref(), Some("r2"));
        assert_eq!(status.instance_count, Some(1));
        assert_eq!(status.mirrored_count, Some(1));
        assert_eq!(status.last_successful_sync_time, Some(at(100)));
    }

    #[test]
    fn an_unreadable_spec_once_reported_is_not_reported_again() {
        let problem = SpecProblem {
            field: "spec.mirror.omitFields[0]".into(),
            problem: "unknown variant `sshKeys`".into(),
        };
        let mut stored: StoredView = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "v", "namespace": "ml", "generation": 4 },
            "spec": { "credentials": { "secretRef": { "name": "ppio" } },
                      "mirror": { "omitFields": ["sshKeys"] } }
        }))
        .unwrap();
        let first = unreadable_spec_status(&stored, &problem, at(200));
        assert_eq!(first.last_sync_time, Some(at(200)));
        stored.status = Some(first.clone());
        assert_eq!(unreadable_spec_status(&stored, &problem, at(900)), first);
        // A new generation, or another problem, is reported anew.
        stored.metadata.generation = Some(5);
        let newer = unreadable_spec_status(&stored, &problem, at(900));
        assert_eq!(newer.last_sync_time, Some(at(900)));
        assert_eq!(newer.observed_generation, Some(5));
    }

    #[test]
    fn suspension_keeps_ready_as_it_was() {
        let view = synced_once(view(true));
        let status = suspended_status(&view, at(200));
        let ready = condition::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::True, "Suspended")
        );
        assert_eq!(status.instance_count, Some(1));
    }
}
