//! No record costs more than linear time: a field of any length up to the body cap, made of any
//! character or short pattern repeated (`@`, `:@`, `a:b@`, `://`, `%`, the API key's prefix,
//! control characters, bidirectional overrides, multi-byte characters, ...), goes through the whole
//! path of one record as a sync takes it — the page read and its summaries (the view's memo), the
//! record decoded and redacted of the API key, its mirror planned (credentials in URLs, stripping,
//! cutting, the size budget, labels, fingerprint, its Service) and its lifecycle Event — within a
//! time bound proportional to the field's length.
//!
//! A rule that looks back or ahead from every `@` (or any other character) costs time that grows
//! with the square of the length: 300,000 `@` in a `command` once took a release build 146 s. The
//! bound below is met by the linear rules many times over, and missed by a quadratic one many
//! times over, in either build:
//! - `make fuzz` (release): fields up to 16 MiB, bound 0.5 s + 200 ms per MiB of CPU time (3.7 s
//!   at 16 MiB); measured at 16 MiB, the slowest pattern and field (`status.status` of `%`, which
//!   the key's redaction reads twice, and labels and Events read again) take 0.35 s: a margin of
//!   about 10.
//! - `make test` (debug, `cargo test`): fields up to 128 KiB, bound 1 s + 4 s per MiB (1.5 s at
//!   128 KiB); measured in debug, the slowest take about 80 ms: a margin of about 18. The former
//!   quadratic rule for credentials in URLs, given 128 KiB of `@` in a `command`, was not done after
//!   15 s of a debug build (it took 146 s for 300,000 `@` in a release build).
//!
//! The bound is on the CPU time of the thread that maps the record, so a loaded machine does not
//! make it fail; the case still fails, without waiting further, when the mapping is not done after
//! ten times the bound by the clock on the wall (the record is mapped on a thread of its own, which
//! is left behind), so a quadratic rule fails rather than stalls the run.

use std::sync::mpsc;
use std::time::Duration;

use jiff::Timestamp;
use ppio::{ApiKey, ClientConfig, ListingLimits, ListingMemo};
use ppio_gpu_core::api::view::{GpuInstanceView, GpuInstanceViewSpec};
use ppio_gpu_core::cost::{self, report::MirrorCost};
use ppio_gpu_core::services::AddressPolicy;
use ppio_gpu_core::sync::lifecycle::{self, Seen};
use ppio_gpu_core::sync::plan::{self, InstancePlan};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::corpus;

/// The API key records are read with; patterns built from it echo it.
const KEY: &str = "sk_live_Q3x9+Zb/7mR2=kLp0wT4vY8n";

/// Where in a record the long field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Field {
    Id,
    Name,
    Type,
    ProductId,
    Image,
    RegistryAuthId,
    Entrypoint,
    Command,
    Region,
    MemberId,
    OwnerId,
    RegionVersion,
    BillingMode,
    AutoRenewStatus,
    EnvKey,
    EnvValue,
    PortProtocol,
    PortEndpoint,
    NetworkId,
    NetworkIp,
    VolumeType,
    VolumeId,
    VolumeMountPoint,
    Status,
    StatusError,
    StatusMessage,
    /// A number sent as text, which fails the record and is quoted in the error.
    MemoryGb,
    /// A timestamp sent as text.
    CreatedAt,
}

const FIELDS: [Field; 28] = [
    Field::Id,
    Field::Name,
    Field::Type,
    Field::ProductId,
    Field::Image,
    Field::RegistryAuthId,
    Field::Entrypoint,
    Field::Command,
    Field::Region,
    Field::MemberId,
    Field::OwnerId,
    Field::RegionVersion,
    Field::BillingMode,
    Field::AutoRenewStatus,
    Field::EnvKey,
    Field::EnvValue,
    Field::PortProtocol,
    Field::PortEndpoint,
    Field::NetworkId,
    Field::NetworkIp,
    Field::VolumeType,
    Field::VolumeId,
    Field::VolumeMountPoint,
    Field::Status,
    Field::StatusError,
    Field::StatusMessage,
    Field::MemoryGb,
    Field::CreatedAt,
];

/// Short patterns that a rule over text could stumble on, repeated: what credentials in URLs,
/// digests, percent-encoding and base64 of the key, control characters, bidirectional marks,
/// whitespace, JSON escapes and the API server's own escapes (`<`, `&`, U+2028) are made of.
pub fn hostile_patterns() -> Vec<String> {
    let key_b64 = "c2tfbGl2ZV9RM3g5K1piLzdtUjI9a0xwMHdUNHZZOG4=";
    [
        "@",
        ":@",
        "@:",
        "a:b@",
        "://",
        "://a@",
        "https://u:p@",
        "a/b:c@",
        "@sha256:",
        "@sha256:0123456789abcdef",
        "u:p@sha256:",
        "%",
        "%2",
        "%25",
        "%2B",
        "sk_live",
        "sk_live_",
        "sk_live_Q3x9+Zb/",
        KEY,
        &KEY[..7],
        key_b64,
        &key_b64[..9],
        "\\",
        "\"",
        "\u{0}",
        "\u{1b}",
        "\u{7f}",
        "\u{85}",
        "\r\n",
        "\t",
        "\u{202e}",
        "\u{2066}",
        "\u{200f}",
        "\u{2028}",
        "<",
        "&",
        "é",
        "😀",
        "\u{3000}",
        " ",
        "a",
        "0",
        "-",
        ".",
        "=(",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// One record with one long field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeCase {
    field: Field,
    pattern: String,
    /// The field's length in the body (as JSON encodes it), in bytes.
    len: usize,
}

impl TimeCase {
    /// The field's text: `pattern` repeated until its JSON encoding takes `len` bytes.
    fn text(&self) -> String {
        let unit = serde_json::to_string(&self.pattern)
            .map_or(1, |quoted| quoted.len().saturating_sub(2))
            .max(1);
        self.pattern.repeat(self.len / unit)
    }

    /// The page body holding the record.
    fn body(&self) -> Vec<u8> {
        let text = Value::String(self.text());
        let mut record = json!({
            "id": "a1", "name": "n", "type": "gpu", "image": "img", "command": "run",
            "region": "cn-east-1",
            "billing": {"mode": "prepaid", "prepaid": {"months": 1, "end_time": 1_700_000_000,
                "auto_renew": {"enabled": false, "months": 1, "status": "off"}}},
            "envs": [{"key": "K", "value": "v"}],
            "ports": [{"port": 80, "protocol": "http", "endpoint": "203.0.113.5:30001"}],
            "network": {"id": "net", "ip": "203.0.113.5"},
            "volumes": [{"type": "disk", "id": "v1", "mount_point": "/data"}],
            "resource_specs": {"gpu_num": 1, "memory_gb": 62},
            "status": {"status": "running", "error": "", "message": ""},
        });
        let slot = match self.field {
            Field::Id => &mut record["id"],
            Field::Name => &mut record["name"],
            Field::Type => &mut record["type"],
            Field::ProductId => &mut record["product_id"],
            Field::Image => &mut record["image"],
            Field::RegistryAuthId => &mut record["registry_auth_id"],
            Field::Entrypoint => &mut record["entrypoint"],
            Field::Command => &mut record["command"],
            Field::Region => &mut record["region"],
            Field::MemberId => &mut record["member_id"],
            Field::OwnerId => &mut record["owner_id"],
            Field::RegionVersion => &mut record["region_version"],
            Field::BillingMode => &mut record["billing"]["mode"],
            Field::AutoRenewStatus => &mut record["billing"]["prepaid"]["auto_renew"]["status"],
            Field::EnvKey => &mut record["envs"][0]["key"],
            Field::EnvValue => &mut record["envs"][0]["value"],
            Field::PortProtocol => &mut record["ports"][0]["protocol"],
            Field::PortEndpoint => &mut record["ports"][0]["endpoint"],
            Field::NetworkId => &mut record["network"]["id"],
            Field::NetworkIp => &mut record["network"]["ip"],
            Field::VolumeType => &mut record["volumes"][0]["type"],
            Field::VolumeId => &mut record["volumes"][0]["id"],
            Field::VolumeMountPoint => &mut record["volumes"][0]["mount_point"],
            Field::Status => &mut record["status"]["status"],
            Field::StatusError => &mut record["status"]["error"],
            Field::StatusMessage => &mut record["status"]["message"],
            Field::MemoryGb => &mut record["resource_specs"]["memory_gb"],
            Field::CreatedAt => &mut record["created_at"],
        };
        *slot = text;
        serde_json::to_vec(&json!({"data": [record], "has_more": false})).expect("JSON")
    }
}

/// The largest body a page may have: the client's cap.
fn body_cap() -> usize {
    ClientConfig::default().max_body_bytes
}

/// Longest field of a case, and the time bound, by build: see the module documentation.
#[cfg(debug_assertions)]
mod sizes {
    /// Longest field tried.
    pub const MAX_LEN: usize = 128 * 1024;
    /// Time any record may take, whatever its size.
    pub const FIXED_MS: u64 = 1_000;
    /// Time a record may take per MiB of its long field.
    pub const MS_PER_MIB: u64 = 4_000;
}
#[cfg(not(debug_assertions))]
mod sizes {
    /// Longest field tried: a body at the cap, less the rest of the record.
    pub const MAX_LEN: usize = 16 * 1024 * 1024 - 1024;
    /// Time any record may take, whatever its size.
    pub const FIXED_MS: u64 = 500;
    /// Time a record may take per MiB of its long field.
    pub const MS_PER_MIB: u64 = 200;
}

/// What a record with a field of `len` bytes may take.
pub fn bound(len: usize) -> Duration {
    let per_mib = u64::try_from(len).unwrap_or(u64::MAX) * sizes::MS_PER_MIB / (1024 * 1024);
    Duration::from_millis(sizes::FIXED_MS + per_mib)
}

fn view() -> GpuInstanceView {
    let spec: GpuInstanceViewSpec = serde_json::from_value(json!({
        "credentials": {"secretRef": {"name": "ppio"}},
        "services": {"enabled": true},
        "lifecycleEvents": {"firstSight": true},
        "expiryWarningWindow": "876000h",
    }))
    .expect("spec");
    let mut view = GpuInstanceView::new("team-a", spec);
    view.metadata.namespace = Some("ml".into());
    view.metadata.uid = Some("0000-view-uid".into());
    view
}

/// The path of one record through a sync, from the body to its mirror and Event. Errors (a field
/// that fails to decode, an ID that holds the key) end it early, as they end a listing.
fn map_record(body: Vec<u8>) -> Result<(), String> {
    let key = ApiKey::new(KEY).expect("valid key");
    let memo = ListingMemo::default();
    memo.start_listing(&key, &ListingLimits::default());
    let page = memo.page(body).map_err(|(error, _)| error.to_string())?;
    let summaries = memo.summaries(&page, &key).map_err(|e| e.to_string())?;
    let mut instance = page
        .decode(0)
        .map_err(|e| key.redact(&e.to_string()).into_owned())?;
    instance.redact(&key);
    let view = view();
    let policy = AddressPolicy::default();
    let now = Timestamp::from_second(1_600_000_000).expect("a time");
    let planned = plan::plan_instance(
        &view,
        Some(&policy),
        &instance,
        &MirrorCost::of(
            &cost::instance_cost_unlisted(&(&instance).into(), now),
            None,
        ),
        None,
        now,
    );
    let InstancePlan::Create(mirror) = planned else {
        return Err(format!("a new record is created, not {planned:?}"));
    };
    let seed = plan::ViewSeed::of(&view, Some(&policy));
    let events = lifecycle::instance_events(
        Seen::First,
        &instance,
        seed.expiry_of(&summaries[0], now),
        &view.spec.lifecycle_events,
        &view.spec.expiry_warning_window,
    );
    std::hint::black_box((mirror, events));
    Ok(())
}

/// How much longer than its bound a record may take by the clock on the wall before the case
/// fails without waiting for it: the bound is on the time the record had a CPU, which a loaded
/// machine stretches.
const WALL_SLACK: u32 = 10;

/// The CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to write into.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "the thread's CPU clock cannot be read");
    Duration::new(
        u64::try_from(now.tv_sec).expect("seconds"),
        u32::try_from(now.tv_nsec).expect("nanoseconds"),
    )
}

/// Maps the case's record on a thread of its own and fails when it uses more CPU time than its
/// bound, or is not done after [`WALL_SLACK`] times the bound. Returns the CPU time it used.
fn timed(case: &TimeCase) -> Result<Duration, TestCaseError> {
    let body = case.body();
    let limit = bound(case.len);
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let started = thread_cpu_time();
        let outcome = map_record(body);
        let _ = done.send((thread_cpu_time() - started, outcome));
    });
    let what = || {
        format!(
            "a record whose {:?} holds {:?} repeated ({} bytes)",
            case.field, case.pattern, case.len
        )
    };
    match finished.recv_timeout(limit * WALL_SLACK) {
        Ok((took, _)) if took <= limit => Ok(took),
        Ok((took, _)) => Err(TestCaseError::fail(format!(
            "{} took {took:?} of CPU time, more than {limit:?}",
            what()
        ))),
        Err(_) => Err(TestCaseError::fail(format!(
            "{} was not mapped after {:?}",
            what(),
            limit * WALL_SLACK
        ))),
    }
}

fn check(case: TimeCase) -> Result<(), TestCaseError> {
    timed(&case).map(|_| ())
}

/// Any field, any hostile pattern or short run of hostile characters, any length up to the build's
/// largest (lengths near it drawn often).
fn time_case() -> impl Strategy<Value = TimeCase> {
    let alphabet: Vec<String> = hostile_patterns()
        .into_iter()
        .filter(|p| p.chars().count() == 1)
        .chain(["s", "k", "_", "/", ":", "+", "Q", "x"].map(str::to_owned))
        .collect();
    let pattern = prop_oneof![
        2 => prop::sample::select(hostile_patterns()),
        1 => prop::collection::vec(prop::sample::select(alphabet), 1..6).prop_map(|p| p.concat()),
    ];
    let max = sizes::MAX_LEN.min(body_cap() - 1024);
    let len = prop_oneof![1 => 0..=max, 1 => (max / 2)..=max];
    (prop::sample::select(FIELDS.to_vec()), pattern, len).prop_map(|(field, pattern, len)| {
        TimeCase {
            field,
            pattern,
            len,
        }
    })
}

/// Every hostile pattern at `len`, in the fields whose text goes through the most rules
/// (credentials in URLs, the key, stripping, the budget), and the commonest hostile patterns in
/// every field.
fn every_hostile_case(len: usize) -> Vec<TimeCase> {
    let mut cases: Vec<TimeCase> = Vec::new();
    for pattern in hostile_patterns() {
        for field in [Field::Command, Field::StatusMessage, Field::Name] {
            cases.push(TimeCase {
                field,
                pattern: pattern.clone(),
                len,
            });
        }
    }
    for field in FIELDS {
        for pattern in ["@", "a:b@", "%", "\u{202e}"] {
            cases.push(TimeCase {
                field,
                pattern: pattern.to_owned(),
                len,
            });
        }
    }
    cases
}

/// Checks every case of [`every_hostile_case`] at the build's largest length, and prints the
/// slowest.
fn check_every_hostile_case() {
    let len = sizes::MAX_LEN;
    let mut slowest = (Duration::ZERO, String::new());
    for case in every_hostile_case(len) {
        match timed(&case) {
            Ok(took) if took > slowest.0 => {
                slowest = (took, format!("{:?} of {:?}", case.field, case.pattern))
            }
            Ok(_) => {}
            Err(error) => panic!("{error}"),
        }
    }
    eprintln!(
        "time: the slowest record with a field of {len} bytes, {}, took {:?} of CPU time (bound {:?})",
        slowest.1,
        slowest.0,
        bound(len)
    );
}

/// Deterministic, so that a regression in any rule shows in every run.
#[test]
fn every_hostile_pattern_maps_within_a_linear_bound() {
    check_every_hostile_case();
}

#[test]
fn random_hostile_fields_map_within_a_linear_bound() {
    corpus::quick_cases(20, time_case(), check);
}

#[test]
fn the_time_corpus_still_passes() {
    corpus::replay(
        "time",
        |bytes| serde_json::from_slice::<TimeCase>(bytes).expect("a time case"),
        |case| {
            // Saved by a release build, perhaps larger than this build tries.
            let len = case.len.min(sizes::MAX_LEN);
            check(TimeCase { len, ..case })
        },
    );
}

#[test]
#[ignore = "runs until FUZZ_SECONDS have passed: make fuzz"]
fn fuzz_time() {
    check_every_hostile_case();
    corpus::for_a_while_in_rounds_of(
        "time",
        20,
        time_case(),
        |case| serde_json::to_vec_pretty(case).expect("JSON"),
        check,
    );
}
