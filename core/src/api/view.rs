//! `GpuInstanceView`: which PPIO account to read, which instances, how often, and the summary of the
//! last sync in its status.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::cost::{CostOptions, ViewCostStatus};
use super::validation;

/// Annotation whose new value asks for a sync at once, without touching the spec.
pub const REFRESH_ANNOTATION: &str = "gpu.ppio.io/refresh-requested-at";
/// The PPIO endpoint used when a view names none.
pub const DEFAULT_ENDPOINT: &str = "https://api.ppio.com";
/// The shortest sync interval a view may ask for.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// The sync interval of a view that names none.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How long removals wait when one listing would remove most of a view's mirrors, unless the view
/// says otherwise.
pub const DEFAULT_MASS_REMOVAL_GRACE_PERIOD: Duration = Duration::from_secs(15 * 60);
/// How far ahead a prepaid instance's end time warns, unless the view says otherwise.
pub const DEFAULT_EXPIRY_WARNING_WINDOW: &str = "72h";
/// Per-instance lifecycle Events one sync publishes, unless the view says otherwise.
pub const DEFAULT_MAX_EVENTS_PER_SYNC: i32 = 20;

/// A view onto the GPU instances of one PPIO account. The operator lists the matching instances every
/// `syncInterval`, summarises them in `status`, and mirrors each as a `GpuInstance` in this namespace.
#[allow(clippy::duplicated_attributes)] // repeated `printcolumn(type_ = ...)` is how kube declares columns
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gpu.ppio.io",
    version = "v1alpha1",
    kind = "GpuInstanceView",
    derive = "PartialEq",
    namespaced,
    status = "GpuInstanceViewStatus",
    shortname = "gpuview",
    shortname = "giv",
    category = "ppio",
    doc = "A view onto the GPU instances of one PPIO account: which account, which instances, how often. \
           The operator mirrors each matching instance as a GpuInstance in the same namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Instances",
        type_ = "integer",
        json_path = ".status.instanceCount"
    ),
    printcolumn(
        name = "Running",
        type_ = "integer",
        json_path = ".status.runningCount"
    ),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".status.gpuCount"),
    printcolumn(
        name = "Last Sync",
        type_ = "date",
        json_path = ".status.lastSuccessfulSyncTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Hourly Spend",
        type_ = "string",
        priority = 1,
        json_path = ".status.cost.hourlySpend.total"
    ),
    printcolumn(
        name = "Currency",
        type_ = "string",
        priority = 1,
        json_path = ".status.cost.currency"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GpuInstanceViewSpec {
    /// Where the PPIO API key is: a Secret in this view's namespace.
    pub credentials: Credentials,

    /// Base URL of the PPIO API. Defaults to `https://api.ppio.com`. Any other value is accepted only
    /// when the operator's endpoint allow-list permits it, since the API key is sent there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 2048),
        extend("x-kubernetes-validations" = validation::form_rule(
            "spec.endpoint",
            validation::ENDPOINT_REGEX,
            "an http or https URL: a host, an optional port from 1 to 65535 and a path without \
             spaces, query or fragment, e.g. https://api.ppio.com",
        ))
    )]
    pub endpoint: Option<String>,

    /// Which instances to list; each field is passed to the PPIO list call as its query parameter.
    #[serde(default)]
    pub filter: Filter,

    /// How often to list, as a duration such as `30s`, `5m` or `1h`. At least `10s`.
    #[serde(default = "default_sync_interval")]
    #[schemars(
        length(max = MAX_DURATION_LEN),
        extend("x-kubernetes-validations" = validation::duration_rule(
            "spec.syncInterval",
            Some("10s"),
            "24h",
        ))
    )]
    pub sync_interval: String,

    /// Instances asked for per page of the PPIO list call.
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 200))]
    pub page_size: i32,

    /// Stops syncing while true. Everything mirrored so far is kept as it is.
    #[serde(default)]
    pub suspend: bool,

    /// What to mirror besides the summary in this view's status.
    #[serde(default)]
    pub mirror: MirrorOptions,

    /// Events on the GpuInstances when their remote status changes.
    #[serde(default)]
    pub lifecycle_events: LifecycleEvents,

    /// How far ahead to warn of a prepaid instance's end: a duration such as `72h`. A prepaid
    /// instance whose term ends within it and whose auto-renew is off gets the condition
    /// `ExpiringSoon`, the label `gpu.ppio.io/expiring-soon` (the end time as Unix seconds) and one
    /// Warning Event. `0s` turns the warning off. At most `8760h`.
    #[serde(default = "default_expiry_warning_window")]
    #[schemars(
        length(max = MAX_DURATION_LEN),
        extend("x-kubernetes-validations" = validation::duration_rule(
            "spec.expiryWarningWindow",
            None,
            "8760h",
        ))
    )]
    pub expiry_warning_window: String,

    /// A Service per mirrored instance that routes to its exposed ports.
    #[serde(default)]
    pub services: ServiceOptions,

    /// The currency label of this view's amounts and its hourly budget. Prices come from PPIO's
    /// product list in any case.
    #[serde(default)]
    pub cost: CostOptions,
}

/// Services for the mirrored instances.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOptions {
    /// Keep, for each mirror whose instance exposes a port at an IP address, a Service of the
    /// mirror's name without a selector, and EndpointSlices that route to the instance, ready only
    /// while it runs: `http://<mirror>.<namespace>.svc:<port>` reaches it. Addresses that are
    /// loopback, link-local, multicast, unspecified, the cluster's own or private (unless the
    /// operator allows them) are never routed to. Needs the operator's `--services` (chart value
    /// `instanceServices.enabled`). Default false; turning it off removes the Services.
    #[serde(default)]
    pub enabled: bool,
}

/// Events on the GpuInstances when their remote status changes: `Running` (Normal), `Stopped`
/// (Warning, with PPIO's error and message), `StatusChanged` (Normal), one per remote transition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEvents {
    /// Also publish `FirstSeen` when an instance is mirrored for the first time. Default false.
    #[serde(default)]
    pub first_sight: bool,
    /// Per-instance Events one sync publishes at most; beyond it one `ManyStatusChanges` Event on
    /// this view counts the transitions. Default 20.
    #[serde(default = "default_max_per_sync")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_per_sync: i32,
}

impl Default for LifecycleEvents {
    fn default() -> Self {
        LifecycleEvents {
            first_sight: false,
            max_per_sync: DEFAULT_MAX_EVENTS_PER_SYNC,
        }
    }
}

impl LifecycleEvents {
    /// Per-instance Events one sync may publish.
    pub fn max_per_sync(&self) -> u64 {
        u64::try_from(self.max_per_sync).unwrap_or(0)
    }
}

/// A reference to the API key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The Secret holding the PPIO API key, in this view's namespace.
    pub secret_ref: SecretKeyRef,
}

/// A key of a Secret in the view's own namespace (never another namespace).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        extend("x-kubernetes-validations" = validation::form_rule(
            "spec.credentials.secretRef.name",
            validation::DNS_SUBDOMAIN_REGEX,
            "a Secret name: lowercase letters, digits, \"-\" and \".\", beginning and ending \
             with a letter or digit, e.g. ppio-api-key",
        ))
    )]
    pub name: String,
    /// Key within the Secret's data. Defaults to `apiKey`.
    #[serde(default = "default_secret_key")]
    #[schemars(
        length(min = 1, max = 253),
        extend("x-kubernetes-validations" = validation::form_rule(
            "spec.credentials.secretRef.key",
            validation::SECRET_KEY_REGEX,
            "a key of a Secret: letters, digits, \"-\", \"_\" and \".\", e.g. apiKey",
        ))
    )]
    pub key: String,
}

/// Filters of the PPIO list call. An empty filter lists every instance of the account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Instance name or ID, matched fuzzily by PPIO (`name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,
    /// Remote instance status, e.g. `running` or `exited` (`status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub status: Option<String>,
    /// Region IDs; an instance in any of them matches (`regions`, comma-joined).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 63)),
        transform = validation::region_items
    )]
    pub regions: Vec<String>,
    /// Billing mode (`billing_mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_mode: Option<BillingMode>,
}

// The doc line below is the description of `spec.filter.billingMode` in the view's CRD.
/// PPIO billing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BillingMode {
    /// Pay as you go.
    Postpaid,
    /// Paid in advance for whole months.
    Prepaid,
    /// Spot (preemptible) capacity.
    Spot,
}

/// The filter's billing mode as the PPIO list call names it.
impl From<BillingMode> for ppio::BillingMode {
    fn from(mode: BillingMode) -> ppio::BillingMode {
        match mode {
            BillingMode::Postpaid => ppio::BillingMode::Postpaid,
            BillingMode::Prepaid => ppio::BillingMode::Prepaid,
            BillingMode::Spot => ppio::BillingMode::Spot,
        }
    }
}

/// Mirroring options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorOptions {
    /// Mirror each instance as a GpuInstance. When false, only this view's status summary is kept
    /// and the GpuInstances this view created are removed.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// What becomes of the mirror of an instance that PPIO no longer lists. `Delete` (the default)
    /// removes it once the operator has seen it missing from two complete listings at least
    /// `syncInterval` apart, by its own monotonic clock (`status.absentSince` is only shown; after a
    /// restart or failover the count starts over); `Retain` keeps it for good, marked absent
    /// (`status.absentSince`, Ready Unknown with reason `NotListed`).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// How long removals wait when one complete listing would remove more than half of this view's
    /// mirrors (and more than 5), or lacks every one of them (whatever their number): a duration
    /// such as `15m` or `1h`, counted from when the operator first saw the instances missing, by its
    /// own monotonic clock. Meanwhile the view's Ready reason is `MassRemovalHeld` and nothing is
    /// removed. `0s` turns the guard off.
    #[serde(default = "default_mass_removal_grace_period")]
    #[schemars(
        length(max = MAX_DURATION_LEN),
        extend("x-kubernetes-validations" = validation::duration_rule(
            "spec.mirror.massRemovalGracePeriod",
            None,
            "168h",
        ))
    )]
    pub mass_removal_grace_period: String,

    /// Fields of the remote record left out of every mirror, e.g. `command` and `entrypoint`, which
    /// often carry credentials. User names and passwords in URLs are redacted from these fields in
    /// any case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub omit_fields: Vec<OmittedField>,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            enabled: true,
            deletion_policy: DeletionPolicy::default(),
            mass_removal_grace_period: default_mass_removal_grace_period(),
            omit_fields: Vec::new(),
        }
    }
}

impl MirrorOptions {
    /// The mass-removal grace period; a value the schema would refuse counts as the default.
    pub fn mass_removal_grace_period(&self) -> Duration {
        parse_duration(&self.mass_removal_grace_period).unwrap_or(DEFAULT_MASS_REMOVAL_GRACE_PERIOD)
    }

    /// Whether `field` is left out of the mirrors.
    pub fn omits(&self, field: OmittedField) -> bool {
        self.omit_fields.contains(&field)
    }
}

/// What becomes of the mirror of an instance that PPIO no longer lists.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove it once the operator has seen it missing from two complete listings at least the
    /// view's sync interval apart.
    #[default]
    Delete,
    /// Keep it for good, marked absent.
    Retain,
}

/// A field of the remote record that a view may leave out of its mirrors.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OmittedField {
    /// `status.command`.
    Command,
    /// `status.entrypoint`.
    Entrypoint,
    /// `status.image`.
    Image,
}

/// The summary of the last sync. Its size is bounded whatever the number of instances.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuInstanceViewStatus {
    /// The `metadata.generation` of the spec the last sync used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, as kstatus reads them; `PricesCurrent`, whether the
    /// prices used are current; `WithinBudget`, with `spec.cost.hourlyBudget` set.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
    /// When the last sync ended, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_sync_time: Option<Timestamp>,
    /// When the last complete listing was mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_successful_sync_time: Option<Timestamp>,
    /// Instances in the last complete listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<i64>,
    /// Instances whose remote status is `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_count: Option<i64>,
    /// GPUs over all listed instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<i64>,
    /// Instances per remote status (at most 32 statuses; the rest are counted under `other`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 33))]
    pub instances_by_status: BTreeMap<String, i64>,
    /// Instances per region (at most 32 regions; the rest are counted under `other`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 33))]
    pub instances_by_region: BTreeMap<String, i64>,
    /// GpuInstance objects this view keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored_count: Option<i64>,
    /// Mirrored instances missing from the last complete listing, removed if the next one lacks them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_removal_count: Option<i64>,
    /// Prepaid instances in the last complete listing whose term ends within
    /// `spec.expiryWarningWindow` and whose auto-renew is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_soon_count: Option<i64>,
    /// Services this view keeps for its mirrors (`spec.services.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_count: Option<i64>,
    /// Exposed ports of mirrored instances whose endpoint no Service routes to: refused addresses,
    /// host names and malformed endpoints (each mirror's `ServiceEndpoints` condition says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_endpoint_count: Option<i64>,
    /// The value of the refresh annotation the last sync answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub last_handled_refresh: Option<String>,
    /// What the instances of the last complete listing that are billed now spend an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<ViewCostStatus>,
}

fn default_sync_interval() -> String {
    "60s".into()
}

fn default_mass_removal_grace_period() -> String {
    "15m".into()
}

fn default_expiry_warning_window() -> String {
    DEFAULT_EXPIRY_WARNING_WINDOW.into()
}

fn default_max_per_sync() -> i32 {
    DEFAULT_MAX_EVENTS_PER_SYNC
}

impl GpuInstanceViewSpec {
    /// How often the view is synced: `syncInterval`, never below [`MIN_SYNC_INTERVAL`]; a value the
    /// schema would refuse counts as the default.
    pub fn sync_interval(&self) -> Duration {
        parse_duration(&self.sync_interval)
            .unwrap_or(DEFAULT_SYNC_INTERVAL)
            .max(MIN_SYNC_INTERVAL)
    }

    /// The expiry warning window (zero: off), or why `spec.expiryWarningWindow` cannot be used
    /// (a value the schema refuses, e.g. under an older CRD).
    pub fn expiry_warning_window(&self) -> Result<Duration, String> {
        parse_duration(&self.expiry_warning_window).ok_or_else(|| {
            format!(
                "spec.expiryWarningWindow {:?} is not a duration such as 72h, 30m or 0s (off)",
                ppio::text::truncate(&self.expiry_warning_window, 64)
            )
        })
    }
}

fn default_page_size() -> i32 {
    50
}

fn default_secret_key() -> String {
    "apiKey".into()
}

fn default_true() -> bool {
    true
}

/// The longest duration the schema admits, in bytes (each duration field's `maxLength`).
pub const MAX_DURATION_LEN: usize = 32;

/// Parses a Go-style duration (`90s`, `1m30s`, `1.5h`, `500ms`) as the API server's CEL
/// `duration()` (Go's `time.ParseDuration`) reads it, in the form
/// [`super::validation::DURATION_FORM_REGEX`] admits: any number of digits, leading zeros and long
/// fractions included, so what the schema admits is what the operator understands, to the
/// nanosecond.
///
/// Not `kube::core::Duration`: it parses all of Go's syntax, including what the schema refuses
/// (negative durations, `ns`/`us` units, `.5s`), and this parser is the schema's rule, tested
/// against it.
pub fn parse_duration(text: &str) -> Option<Duration> {
    const MAX_NANOS: u64 = i64::MAX as u64;
    let mut rest = text;
    // The schema's maxLength of every duration field.
    if rest.is_empty() || rest.len() > MAX_DURATION_LEN {
        return None;
    }
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (whole, tail) = rest.split_at(digits(rest));
        let (fraction, tail) = match tail.strip_prefix('.') {
            // A point needs digits on both sides.
            Some(tail) => match tail.split_at(digits(tail)) {
                ("", _) => return None,
                split => split,
            },
            None => ("", tail),
        };
        if whole.is_empty() {
            return None;
        }
        let (unit, tail) = tail.split_at(
            tail.find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len()),
        );
        let unit: u64 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        // Go's leadingInt: the whole number, refused when it overflows.
        let whole: u64 = match whole.trim_start_matches('0') {
            "" => 0,
            significant => significant.parse().ok()?,
        };
        let mut nanos = whole.checked_mul(unit).filter(|n| *n <= MAX_NANOS)?;
        // Go's leadingFraction: digits are taken while they fit, the rest ignored.
        let (mut numerator, mut scale) = (0u64, 1f64);
        for digit in fraction.bytes().map(|b| u64::from(b - b'0')) {
            match numerator.checked_mul(10).map(|n| n + digit) {
                Some(next) if numerator <= MAX_NANOS / 10 && next <= 1 << 63 => {
                    numerator = next;
                    scale *= 10.0;
                }
                _ => break,
            }
        }
        if numerator > 0 {
            nanos = nanos.checked_add((numerator as f64 * (unit as f64 / scale)) as u64)?;
        }
        total = total.checked_add(nanos).filter(|n| *n <= MAX_NANOS)?;
        rest = tail;
    }
    Some(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        // The view's largest bound, 8760h, in each unit.
        assert_eq!(parse_duration("8760h"), parse_duration("31536000000ms"));
        assert_eq!(parse_duration("525600m"), parse_duration("31536000s"));
        // Leading zeros and long fractions, as Go reads them.
        assert_eq!(parse_duration("0000000060s"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_duration("1.0000000001m"),
            Some(Duration::from_nanos(60_000_000_006))
        );
        assert_eq!(
            parse_duration("10.0000000000000000000000000001s"),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in [
            "",
            "10",
            "s",
            "10 s",
            "1d",
            "-5s",
            ".5s",
            "5.s",
            "1m30",
            "99999999999999999999h",
            "2562048h",
            "10.000000000000000000000000000001s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_minimal_spec_takes_the_documented_defaults() {
        let spec: GpuInstanceViewSpec = serde_json::from_value(serde_json::json!({
            "credentials": { "secretRef": { "name": "ppio" } }
        }))
        .unwrap();
        assert_eq!(spec.credentials.secret_ref.key, "apiKey");
        assert_eq!(spec.sync_interval, "60s");
        assert_eq!(spec.page_size, 50);
        assert!(!spec.suspend);
        assert!(spec.mirror.enabled);
        assert_eq!(spec.mirror.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(
            spec.mirror.mass_removal_grace_period(),
            Duration::from_secs(900)
        );
        assert!(spec.mirror.omit_fields.is_empty());
        assert_eq!(spec.sync_interval(), Duration::from_secs(60));
        assert_eq!(spec.endpoint, None);
        assert_eq!(spec.filter, Filter::default());
        assert_eq!(
            spec.expiry_warning_window(),
            Ok(Duration::from_secs(72 * 3600))
        );
        assert_eq!(spec.lifecycle_events, LifecycleEvents::default());
        assert!(!spec.lifecycle_events.first_sight);
        assert_eq!(spec.lifecycle_events.max_per_sync(), 20);
    }

    #[test]
    fn an_expiry_window_of_zero_is_off_and_a_malformed_one_is_reported() {
        let mut spec: GpuInstanceViewSpec = serde_json::from_value(serde_json::json!({
            "credentials": { "secretRef": { "name": "ppio" } },
            "expiryWarningWindow": "0s"
        }))
        .unwrap();
        assert_eq!(spec.expiry_warning_window(), Ok(Duration::ZERO));
        spec.expiry_warning_window = "3 days".into();
        let error = spec.expiry_warning_window().unwrap_err();
        assert!(error.contains("spec.expiryWarningWindow"), "{error}");
    }
}
