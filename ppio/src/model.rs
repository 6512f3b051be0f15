//! The PPIO GPU instance record and the list page that carries it, as typed Rust values, with the
//! lenient decoding the real API needs.
//!
//! Decoding rules, the same for every field:
//! - Integers (the spec types them all int64) are `i64` and accept a JSON number or a numeric string
//!   (the real service sends `"memory_gb":"62"`); null, absent or `""` mean 0. Fractions and
//!   non-numeric strings are errors that name the field path.
//! - Unix timestamps are `Option<jiff::Timestamp>`: `None` when 0, null or absent.
//! - Strings are `String`: null or absent mean `""`, as the API itself uses `""` for "none".
//! - Arrays are `Vec`: null or absent mean empty.
//! - Nested objects are `Option`: null or absent mean `None`.
//! - Unknown fields are skipped without being kept, and environment variable values are never read
//!   into memory as strings: only their keys are kept, because values often hold tokens.
//! - An instance without an ID makes the whole page invalid: it could not be mirrored.
//!
//! The page envelope, unlike the records, is strict: a page must carry `data` (an array, `[]` when
//! empty) and `has_more` (a boolean). Without them a body such as `{}` or a gateway's error object
//! sent with HTTP 200 would read as an empty, final page, and a caller that prunes what a listing
//! no longer holds would delete everything.
//!
//! Decoding memory is bounded: a page holding more than [`MAX_PAGE_ITEMS`] array items, counted at
//! any depth in one pass that allocates nothing, is refused before it is decoded. Decoded, an item
//! takes up to about 1 KiB (an instance record) for a few bytes of JSON (`{"id":"a"},`), so without
//! the bound a 16 MiB body could take over a gigabyte.
//!
//! [`Instance::redact`] replaces echoes of the API key in every string of a record. This module does
//! no I/O; the HTTP side lives in the client.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use std::cell::Cell;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::api_key::ApiKey;
use super::error::redact;

/// The ID PPIO gives an instance, e.g. `ca338f12f3`. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    /// Wraps an ID; `None` when it is empty or only whitespace.
    pub fn new(raw: impl Into<String>) -> Option<InstanceId> {
        let raw = raw.into();
        if raw.trim().is_empty() {
            None
        } else {
            Some(InstanceId(raw))
        }
    }

    /// The ID as PPIO sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InstanceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        InstanceId::new(raw).ok_or_else(|| {
            de::Error::custom(
                "the instance ID is missing or empty, so the instance cannot be mirrored",
            )
        })
    }
}

/// PPIO billing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingMode {
    /// Pay as you go.
    Postpaid,
    /// Paid in advance for whole months.
    Prepaid,
    /// Spot (preemptible) capacity.
    Spot,
}

impl BillingMode {
    /// The wire value: `postpaid`, `prepaid` or `spot`.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Postpaid => "postpaid",
            BillingMode::Prepaid => "prepaid",
            BillingMode::Spot => "spot",
        }
    }
}

impl fmt::Display for BillingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BillingMode {
    type Err = UnknownBillingMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postpaid" => Ok(BillingMode::Postpaid),
            "prepaid" => Ok(BillingMode::Prepaid),
            "spot" => Ok(BillingMode::Spot),
            _ => Err(UnknownBillingMode),
        }
    }
}

/// A string that is not one of `postpaid`, `prepaid`, `spot`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown billing mode: expected one of postpaid, prepaid, spot")]
pub struct UnknownBillingMode;

/// One PPIO GPU (or CPU) instance, every field of the list call's record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Instance {
    /// Instance ID.
    pub id: InstanceId,
    /// Instance name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Instance type, `gpu` or `cpu` (wire name `type`); kept as sent.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Product ID.
    #[serde(default, deserialize_with = "null_as_default")]
    pub product_id: String,
    /// Container image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: String,
    /// ID of the registry credentials used to pull the image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub registry_auth_id: String,
    /// Container entrypoint.
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: String,
    /// Container start command.
    #[serde(default, deserialize_with = "null_as_default")]
    pub command: String,
    /// Billing configuration.
    #[serde(default)]
    pub billing: Option<Billing>,
    /// Environment variables, names only.
    #[serde(default, deserialize_with = "null_as_default")]
    pub envs: Vec<EnvVar>,
    /// Exposed ports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<Port>,
    /// Requested and allocated resources.
    #[serde(default)]
    pub resource_specs: Option<ResourceSpecs>,
    /// VPC network attachment.
    #[serde(default)]
    pub network: Option<Network>,
    /// Data disks and network storage mounts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
    /// Region the instance runs in.
    #[serde(default, deserialize_with = "null_as_default")]
    pub region: String,
    /// Automatic migration settings.
    #[serde(default)]
    pub auto_migrate: Option<AutoMigrate>,
    /// Remote state.
    #[serde(default)]
    pub status: Option<InstanceStatus>,
    /// When the instance was created.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub created_at: Option<Timestamp>,
    /// When the instance was last started.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub last_started_at: Option<Timestamp>,
    /// When the instance was last stopped.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub last_stopped_at: Option<Timestamp>,
    /// Member ID of the creator.
    #[serde(default, deserialize_with = "null_as_default")]
    pub member_id: String,
    /// ID of the owning user (the team owner's UUID).
    #[serde(default, deserialize_with = "null_as_default")]
    pub owner_id: String,
    /// Instance version, e.g. `v1` or `v2`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub region_version: String,
}

impl Instance {
    /// An instance with this ID and every other field empty; for building test data.
    pub fn new(id: InstanceId) -> Instance {
        Instance {
            id,
            name: String::new(),
            kind: String::new(),
            product_id: String::new(),
            image: String::new(),
            registry_auth_id: String::new(),
            entrypoint: String::new(),
            command: String::new(),
            billing: None,
            envs: Vec::new(),
            ports: Vec::new(),
            resource_specs: None,
            network: None,
            volumes: Vec::new(),
            region: String::new(),
            auto_migrate: None,
            status: None,
            created_at: None,
            last_started_at: None,
            last_stopped_at: None,
            member_id: String::new(),
            owner_id: String::new(),
            region_version: String::new(),
        }
    }

    /// Replaces every occurrence of the API key (plain or URL-encoded) with `[redacted]` in every
    /// string of the record except its ID, and returns how many strings changed. Nothing else in the
    /// text changes.
    ///
    /// The ID is left as is: an ID is the record's identity, and a redacted one could collide with
    /// another. A record whose ID contains the key (see [`ApiKey::appears_in`]) cannot be mirrored
    /// safely at all; the client rejects its page.
    pub fn redact(&mut self, key: &ApiKey) -> usize {
        // Destructured without `..`, so a field added to the record cannot be forgotten here.
        let Instance {
            id: _,
            name,
            kind,
            product_id,
            image,
            registry_auth_id,
            entrypoint,
            command,
            billing,
            envs,
            ports,
            resource_specs: _,
            network,
            volumes,
            region,
            auto_migrate: _,
            status,
            created_at: _,
            last_started_at: _,
            last_stopped_at: _,
            member_id,
            owner_id,
            region_version,
        } = self;
        let mut strings: Vec<&mut String> = vec![
            name,
            kind,
            product_id,
            image,
            registry_auth_id,
            entrypoint,
            command,
            region,
            member_id,
            owner_id,
            region_version,
        ];
        if let Some(Billing { mode, prepaid }) = billing {
            strings.push(mode);
            if let Some(Prepaid {
                months: _,
                end_time: _,
                auto_renew:
                    Some(AutoRenew {
                        enabled: _,
                        months: _,
                        status,
                    }),
            }) = prepaid
            {
                strings.push(status);
            }
        }
        for EnvVar { key } in envs {
            strings.push(key);
        }
        for Port {
            port: _,
            protocol,
            endpoint,
        } in ports
        {
            strings.extend([protocol, endpoint]);
        }
        if let Some(Network { id, ip }) = network {
            strings.extend([id, ip]);
        }
        for Volume {
            kind,
            id,
            mount_point,
        } in volumes
        {
            strings.extend([kind, id, mount_point]);
        }
        if let Some(InstanceStatus {
            status,
            error,
            message,
        }) = status
        {
            strings.extend([status, error, message]);
        }
        strings
            .into_iter()
            .map(|text| usize::from(redact(text, key)))
            .sum()
    }
}

/// Billing configuration of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Billing {
    /// `postpaid`, `prepaid` or `spot`, kept as a string so a new mode does not break decoding;
    /// `mode.parse::<BillingMode>()` gives the known ones.
    #[serde(default, deserialize_with = "null_as_default")]
    pub mode: String,
    /// Prepaid terms, present when the mode is `prepaid`.
    #[serde(default)]
    pub prepaid: Option<Prepaid>,
}

/// Terms of a prepaid (monthly) instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Prepaid {
    /// Months bought.
    #[serde(default, deserialize_with = "lenient_int")]
    pub months: i64,
    /// When the prepaid period ends.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub end_time: Option<Timestamp>,
    /// Automatic renewal settings.
    #[serde(default)]
    pub auto_renew: Option<AutoRenew>,
}

/// Automatic renewal of a prepaid instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AutoRenew {
    /// Whether the instance renews itself.
    #[serde(default, deserialize_with = "null_as_default")]
    pub enabled: bool,
    /// Months per renewal.
    #[serde(default, deserialize_with = "lenient_int")]
    pub months: i64,
    /// Renewal state, e.g. `active`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
}

/// An environment variable of the instance. Only the name: the value often holds a token and is
/// never read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EnvVar {
    /// Variable name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub key: String,
}

/// A port the instance exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Port {
    /// Port number.
    #[serde(default, deserialize_with = "lenient_int")]
    pub port: i64,
    /// Protocol, e.g. `tcp` or `http`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: String,
    /// External address, assigned at run time.
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoint: String,
}

/// Requested and system-assigned resources of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ResourceSpecs {
    /// System disk size in GB.
    #[serde(default, deserialize_with = "lenient_int")]
    pub rootfs_size_gb: i64,
    /// Number of GPUs.
    #[serde(default, deserialize_with = "lenient_int")]
    pub gpu_num: i64,
    /// CPU cores (assigned by the system).
    #[serde(default, deserialize_with = "lenient_int")]
    pub cpu_num: i64,
    /// Memory in GB (assigned by the system).
    #[serde(default, deserialize_with = "lenient_int")]
    pub memory_gb: i64,
    /// Indexes of the GPU cards assigned.
    #[serde(default, deserialize_with = "lenient_int_vec")]
    pub gpu_ids: Vec<i64>,
}

/// VPC network attachment of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Network {
    /// VPC network ID.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// IP the VPC gave the instance.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ip: String,
}

/// A data disk or network storage mounted into the instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct Volume {
    /// Storage type, `local` or `network` (wire name `type`).
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Storage ID, usually for `network` volumes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// Mount path inside the instance.
    #[serde(default, deserialize_with = "null_as_default")]
    pub mount_point: String,
}

/// Automatic migration settings of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct AutoMigrate {
    /// Whether PPIO may migrate the instance.
    #[serde(default, deserialize_with = "null_as_default")]
    pub enabled: bool,
    /// Whether a migration takes the system disk along.
    #[serde(default, deserialize_with = "null_as_default")]
    pub include_system_disk: bool,
}

/// The remote state of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct InstanceStatus {
    /// State, e.g. `running`, `exited`; a free string, unknown values are valid.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// Error code, empty when none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub error: String,
    /// Human-readable state description.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
}

/// Most array items, at any depth, a page may hold: room for pages of well over a thousand
/// instances, while decoding a page stays within about 50 MB.
pub const MAX_PAGE_ITEMS: usize = 50_000;

/// One page of the list call, decoded whole at once: a test helper (feature `testing`), the
/// reference that the fuzz tests hold [`crate::RawPage`], the operator's reading of a page, to, and
/// what the benchmark's bare client reads.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Instances on this page, in the order sent.
    pub instances: Vec<Instance>,
    /// Cursor for the next page; `None` when the server sent none or an empty one.
    pub next_cursor: Option<String>,
    /// Whether the server says more pages follow.
    pub has_more: bool,
}

#[cfg(any(test, feature = "testing"))]
impl Page {
    /// Decodes a list response body. It must be a JSON object with a `data` array (`[]` is fine)
    /// and a boolean `has_more`; either one null or absent is an error, so nothing but a real page
    /// passes as one. A null or absent `next_cursor` means none; unknown top-level fields such as
    /// `total` are ignored. A body with more than [`MAX_PAGE_ITEMS`] array items is refused
    /// unread.
    pub fn from_json(body: &[u8]) -> Result<Page, DecodeError> {
        check_envelope(body)?;
        // Most pages decode: do it without tracking the path (about twice as fast), from text whose
        // UTF-8 is checked once (with SIMD) rather than string by string, and decode again with the
        // path only to say where a page that fails went wrong.
        let decoded = simdutf8::basic::from_utf8(body)
            .ok()
            .and_then(|text| serde_json::from_str::<WirePage>(text).ok());
        let Some(wire) = decoded else {
            return Err(located_error(body));
        };
        let (instances, has_more) = required(wire.data, wire.has_more)?;
        Ok(Page {
            instances,
            next_cursor: Some(wire.next_cursor).filter(|cursor| !cursor.is_empty()),
            has_more,
        })
    }
}

/// What is checked of a body before it is decoded: it is a JSON object (serde would also accept an
/// array for a struct, and `[]` must not pass for an empty page), and it holds no more than
/// [`MAX_PAGE_ITEMS`] array items.
pub(super) fn check_envelope(body: &[u8]) -> Result<(), DecodeError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(DecodeError {
            path: ".".to_owned(),
            message: "expected a JSON object".to_owned(),
        });
    }
    if holds_more_items_than(body, MAX_PAGE_ITEMS) {
        return Err(DecodeError {
            path: ".".to_owned(),
            message: format!(
                "{TOO_MANY_ITEMS} {MAX_PAGE_ITEMS} array items; refused unread to bound memory \
                 (list with a smaller page size)"
            ),
        });
    }
    Ok(())
}

/// How the error of a page refused by the item bound begins: only [`check_envelope`] writes it.
const TOO_MANY_ITEMS: &str = "the page holds more than";

impl DecodeError {
    /// Whether the page was refused unread, for holding more than [`MAX_PAGE_ITEMS`] array items:
    /// then nothing else may read the body either.
    pub(crate) fn refused_unread(&self) -> bool {
        // A decoding error quoting the body never sits at the document itself and starts so.
        self.path == "." && self.message.starts_with(TOO_MANY_ITEMS)
    }
}

/// The records and `has_more` of a decoded envelope, or why it is not a page: either field absent or
/// null.
pub(super) fn required<T>(
    data: Option<Option<Vec<T>>>,
    has_more: Option<Option<bool>>,
) -> Result<(Vec<T>, bool), DecodeError> {
    match (data, has_more) {
        (Some(Some(records)), Some(Some(has_more))) => Ok((records, has_more)),
        (data, has_more) => {
            let problems: Vec<&str> = [
                match data {
                    None => Some("`data` is missing"),
                    Some(None) => Some("`data` is null"),
                    Some(Some(_)) => None,
                },
                match has_more {
                    None => Some("`has_more` is missing"),
                    Some(None) => Some("`has_more` is null"),
                    Some(Some(_)) => None,
                },
            ]
            .into_iter()
            .flatten()
            .collect();
            Err(DecodeError {
                path: ".".to_owned(),
                message: format!(
                    "not a list page: {}; a page must carry `data` (an array, `[]` when \
                     empty) and `has_more` (a boolean)",
                    problems.join(" and ")
                ),
            })
        }
    }
}

/// Why `body` does not decode as a page, and where: decoded again, tracking the path.
pub(super) fn located_error(body: &[u8]) -> DecodeError {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let decoded: Result<WirePage, _> = serde_path_to_error::deserialize(&mut deserializer);
    match decoded {
        Err(e) => DecodeError {
            // A path through a field named "" prints as nothing; say where it is instead.
            path: Some(e.path().to_string())
                .filter(|path| !path.is_empty())
                .unwrap_or_else(|| ".".to_owned()),
            message: e.inner().to_string(),
        },
        Ok(_) => match deserializer.end() {
            Err(e) => DecodeError {
                path: ".".to_owned(),
                message: e.to_string(),
            },
            // Decodes now although it did not before: cannot happen (decoding is deterministic).
            Ok(()) => DecodeError {
                path: ".".to_owned(),
                message: "the page does not decode".to_owned(),
            },
        },
    }
}

/// Whether the JSON document `body` holds more than `limit` array items, at any depth. Counts in
/// one pass without keeping anything; a body that is not JSON counts what comes before the error
/// (the real decoding reports the error itself).
pub(super) fn holds_more_items_than(body: &[u8], limit: usize) -> bool {
    // An array of n items holds n - 1 commas and one `[`, so commas and `[`s together bound the items
    // from above (those inside strings only raise the bound). Most pages are far below the limit and
    // are let through on this count alone, without parsing the body a second time.
    let bound = memchr::memchr2_iter(b',', b'[', body).count();
    if bound <= limit {
        return false;
    }
    let counter = ItemCounter {
        items: &Cell::new(0),
        limit,
        exceeded: &Cell::new(false),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = counter.deserialize(&mut deserializer);
    counter.exceeded.get()
}

/// Counts array items while skipping a JSON value; stops with an error past the limit.
#[derive(Clone, Copy)]
struct ItemCounter<'c> {
    items: &'c Cell<usize>,
    limit: usize,
    exceeded: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ItemCounter<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemCounter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {
            self.items.set(self.items.get() + 1);
            if self.items.get() > self.limit {
                self.exceeded.set(true);
                return Err(de::Error::custom("too many array items"));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A list response body that does not match the record, with where in it the problem is.
///
/// The message may quote what the body held there, whole and unredacted (this module does not know
/// the API key): redact it ([`super::ApiKey::redact`]) before showing or shortening it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path == "." { String::new() } else { format!("at {path}: ") })]
pub struct DecodeError {
    /// Field path, e.g. `data[3].resource_specs.memory_gb`; `.` for the document itself.
    pub path: String,
    /// What was wrong there.
    pub message: String,
}

/// The response envelope as sent. For `data` and `has_more`, the outer `Option` says whether the
/// field was present and the inner one whether it was non-null. Its fields are read by
/// `Page::from_json` (a test helper); the operator decodes it only to say where a body goes wrong.
#[derive(Deserialize)]
#[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
struct WirePage {
    #[serde(default, deserialize_with = "present")]
    data: Option<Option<Vec<Instance>>>,
    #[serde(default, deserialize_with = "null_as_default")]
    next_cursor: String,
    #[serde(default, deserialize_with = "present")]
    has_more: Option<Option<bool>>,
}

/// A field that is present reads as `Some`, null included (absent fields get `None` from
/// `#[serde(default)]`).
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Null reads as the type's default (absent fields get it from `#[serde(default)]`).
pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub(super) fn lenient_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Ok(LenientInt::deserialize(deserializer)?.0.unwrap_or(0))
}

fn lenient_int_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    let items = Option::<Vec<LenientInt>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(items.into_iter().map(|item| item.0.unwrap_or(0)).collect())
}

fn lenient_timestamp<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Timestamp>, D::Error> {
    match LenientInt::deserialize(deserializer)?.0 {
        None | Some(0) => Ok(None),
        Some(seconds) => Timestamp::from_second(seconds)
            .map(Some)
            .map_err(|_| de::Error::custom(format!("Unix timestamp {seconds} is out of range"))),
    }
}

/// An int64 sent as a JSON number or as a numeric string; `None` for null or `""` (and, through
/// `Default`, for an absent field).
#[derive(Default)]
pub(super) struct LenientInt(pub(super) Option<i64>);

impl<'de> Deserialize<'de> for LenientInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(LenientIntVisitor)
            .map(LenientInt)
    }
}

/// Most characters of a string sent for a number that a decode error quotes.
const MAX_QUOTED_CHARS: usize = 64 * 1024;

struct LenientIntVisitor;

impl<'de> Visitor<'de> for LenientIntVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer, as a JSON number or a numeric string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("integer {v} is larger than int64")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // 62.0 is an integer written as a float; 62.5 is not an integer at all.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
        if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
            #[allow(clippy::cast_possible_truncation)] // integral and in range, checked above
            Ok(Some(v as i64))
        } else {
            Err(E::custom(format!("expected an integer, found {v}")))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.is_empty() {
            return Ok(None);
        }
        // Quoted up to MAX_QUOTED_CHARS only (a value may be as long as the body, and quoting and
        // then sanitizing 16 MiB of characters that need escapes costs seconds): whoever shows the
        // message redacts it, then cuts it to a few hundred characters (the client's `sanitize`),
        // so the text beyond this cut would never show. An echo of the API key that straddles the
        // cut keeps its part before it, which redaction still finds when it is 8 characters or
        // more: at most 7 characters of the key can stay next to the cut, as the redaction rule
        // allows anywhere, and the cut shows only when redaction shrank the 64 Ki characters
        // before it to almost nothing.
        v.parse::<i64>().map(Some).map_err(|_| {
            let (quoted, cut) = match v.char_indices().nth(MAX_QUOTED_CHARS) {
                Some((end, _)) => (&v[..end], " (cut)"),
                None => (v, ""),
            };
            E::custom(format!(
                "expected an integer or a numeric string, found the string {quoted:?}{cut}"
            ))
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example record of the OpenAPI spec, assembled from its `example` values.
    const SPEC_EXAMPLE: &str = r#"{
      "data": [{
        "id": "ca338f12f3",
        "name": "example-instance",
        "type": "gpu",
        "product_id": "product-id",
        "image": "registry.example.com/namespace/image:tag",
        "registry_auth_id": "registry-auth-id",
        "entrypoint": "",
        "command": "",
        "billing": {
          "mode": "prepaid",
          "prepaid": {
            "months": 1,
            "end_time": 1717142400,
            "auto_renew": {"enabled": true, "months": 1, "status": "active"}
          }
        },
        "envs": [{"key": "ENV_NAME", "value": "ENV_VALUE"}],
        "ports": [{"port": 8080, "protocol": "tcp", "endpoint": "http://1.2.3.4:8080"}],
        "resource_specs": {"rootfs_size_gb": 20, "gpu_num": 1, "cpu_num": 8, "memory_gb": 32, "gpu_ids": [0]},
        "network": {"id": "", "ip": "10.2.1.1"},
        "volumes": [{"type": "network", "id": "network-storage-id", "mount_point": "/data"}],
        "region": "region-id",
        "auto_migrate": {"enabled": false, "include_system_disk": false},
        "status": {"status": "running", "error": "", "message": ""},
        "created_at": 1714464000,
        "last_started_at": 1714467600,
        "last_stopped_at": 0,
        "member_id": "member-id",
        "owner_id": "550e8400-e29b-41d4-a716-446655440000",
        "region_version": "v1"
      }],
      "next_cursor": "next-cursor-token",
      "has_more": true
    }"#;

    fn id(raw: &str) -> InstanceId {
        InstanceId::new(raw).expect("non-empty ID")
    }

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn decode_one(record: &str) -> Result<Instance, DecodeError> {
        let page =
            Page::from_json(format!(r#"{{"data":[{record}],"has_more":false}}"#).as_bytes())?;
        assert_eq!(page.instances.len(), 1);
        Ok(page.instances.into_iter().next().expect("one instance"))
    }

    #[test]
    fn decodes_every_field_of_the_spec_example() {
        let page = Page::from_json(SPEC_EXAMPLE.as_bytes()).expect("spec example decodes");
        assert_eq!(page.next_cursor.as_deref(), Some("next-cursor-token"));
        assert!(page.has_more);
        let expected = Instance {
            id: id("ca338f12f3"),
            name: "example-instance".into(),
            kind: "gpu".into(),
            product_id: "product-id".into(),
            image: "registry.example.com/namespace/image:tag".into(),
            registry_auth_id: "registry-auth-id".into(),
            entrypoint: String::new(),
            command: String::new(),
            billing: Some(Billing {
                mode: "prepaid".into(),
                prepaid: Some(Prepaid {
                    months: 1,
                    end_time: ts(1_717_142_400),
                    auto_renew: Some(AutoRenew {
                        enabled: true,
                        months: 1,
                        status: "active".into(),
                    }),
                }),
            }),
            envs: vec![EnvVar {
                key: "ENV_NAME".into(),
            }],
            ports: vec![Port {
                port: 8080,
                protocol: "tcp".into(),
                endpoint: "http://1.2.3.4:8080".into(),
            }],
            resource_specs: Some(ResourceSpecs {
                rootfs_size_gb: 20,
                gpu_num: 1,
                cpu_num: 8,
                memory_gb: 32,
                gpu_ids: vec![0],
            }),
            network: Some(Network {
                id: String::new(),
                ip: "10.2.1.1".into(),
            }),
            volumes: vec![Volume {
                kind: "network".into(),
                id: "network-storage-id".into(),
                mount_point: "/data".into(),
            }],
            region: "region-id".into(),
            auto_migrate: Some(AutoMigrate {
                enabled: false,
                include_system_disk: false,
            }),
            status: Some(InstanceStatus {
                status: "running".into(),
                error: String::new(),
                message: String::new(),
            }),
            created_at: ts(1_714_464_000),
            last_started_at: ts(1_714_467_600),
            last_stopped_at: None,
            member_id: "member-id".into(),
            owner_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            region_version: "v1".into(),
        };
        assert_eq!(page.instances, vec![expected]);
    }

    #[test]
    fn decodes_the_captured_real_shape_with_int64_as_strings() {
        let body = r#"{
          "data": [{
            "id": "8f3a1c2b9d",
            "name": "train-1",
            "type": "gpu",
            "billing": {"mode": "prepaid", "prepaid": {"months": "3", "end_time": "1793556950",
              "auto_renew": {"enabled": false, "months": "0", "status": ""}}},
            "ports": [{"port": "8888", "protocol": "http", "endpoint": "https://x.example"}],
            "resource_specs": {"rootfs_size_gb": "60", "gpu_num": "2", "cpu_num": "16",
              "memory_gb": "62", "gpu_ids": ["3", 4]},
            "status": {"status": "running"},
            "created_at": "1785780950",
            "last_started_at": "1785781000",
            "last_stopped_at": "0",
            "region_version": "v2"
          }],
          "next_cursor": "",
          "has_more": false,
          "total": "1"
        }"#;
        let page = Page::from_json(body.as_bytes()).expect("real shape decodes");
        assert_eq!(page.next_cursor, None);
        assert!(!page.has_more);
        let instance = &page.instances[0];
        let specs = instance.resource_specs.as_ref().expect("resource_specs");
        assert_eq!(
            (
                specs.rootfs_size_gb,
                specs.gpu_num,
                specs.cpu_num,
                specs.memory_gb
            ),
            (60, 2, 16, 62)
        );
        assert_eq!(specs.gpu_ids, vec![3, 4]);
        assert_eq!(instance.ports[0].port, 8888);
        let prepaid = instance
            .billing
            .as_ref()
            .and_then(|b| b.prepaid.as_ref())
            .expect("prepaid");
        assert_eq!(prepaid.months, 3);
        assert_eq!(prepaid.end_time, ts(1_793_556_950));
        assert_eq!(instance.created_at, ts(1_785_780_950));
        assert_eq!(instance.last_started_at, ts(1_785_781_000));
        assert_eq!(instance.last_stopped_at, None);
        assert_eq!(instance.region_version, "v2");
    }

    #[test]
    fn ignores_unknown_fields_without_keeping_them() {
        let instance = decode_one(
            r#"{"id": "a1", "tools": {"ssh": {"password": "hunter2-ssh"}}, "new_field": [1, {"x": null}],
                "status": {"status": "running", "since": 5}}"#,
        )
        .expect("unknown fields are ignored");
        assert_eq!(instance.id.as_str(), "a1");
        assert!(!format!("{instance:?}").contains("hunter2-ssh"));
    }

    #[test]
    fn keeps_env_names_but_never_env_values() {
        let instance = decode_one(
            r#"{"id": "a1", "envs": [{"key": "HF_TOKEN", "value": "hf_topsecret_token"},
                {"key": "EMPTY", "value": null}, {"value": "orphan_secret_value"}]}"#,
        )
        .expect("envs decode");
        let names: Vec<&str> = instance.envs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(names, ["HF_TOKEN", "EMPTY", ""]);
        let debug = format!("{instance:?}");
        assert!(!debug.contains("hf_topsecret_token"), "{debug}");
        assert!(!debug.contains("orphan_secret_value"), "{debug}");
    }

    #[test]
    fn zero_or_absent_timestamps_are_none() {
        let instance = decode_one(
            r#"{"id": "a1", "created_at": 0, "last_started_at": "0", "last_stopped_at": null,
                "billing": {"prepaid": {"end_time": ""}}}"#,
        )
        .expect("decodes");
        assert_eq!(instance.created_at, None);
        assert_eq!(instance.last_started_at, None);
        assert_eq!(instance.last_stopped_at, None);
        let prepaid = instance.billing.and_then(|b| b.prepaid).expect("prepaid");
        assert_eq!(prepaid.end_time, None);
    }

    #[test]
    fn nulls_and_absent_fields_take_documented_defaults() {
        let instance = decode_one(
            r#"{"id": "a1", "name": null, "envs": null, "ports": null, "billing": null,
                "resource_specs": {"gpu_num": null, "gpu_ids": [null, "1"]}, "auto_migrate": {"enabled": null}}"#,
        )
        .expect("decodes");
        let mut expected = Instance::new(id("a1"));
        expected.resource_specs = Some(ResourceSpecs {
            gpu_ids: vec![0, 1],
            ..ResourceSpecs::default()
        });
        expected.auto_migrate = Some(AutoMigrate::default());
        assert_eq!(instance, expected);
    }

    #[test]
    fn an_empty_data_array_with_has_more_false_is_an_empty_final_page() {
        for body in [
            r#"{"data": [], "has_more": false}"#,
            r#"{"data": [], "has_more": false, "next_cursor": null, "total": 0}"#,
        ] {
            let page = Page::from_json(body.as_bytes()).expect("decodes");
            assert!(page.instances.is_empty());
            assert!(!page.has_more);
            assert_eq!(page.next_cursor, None);
        }
    }

    #[test]
    fn a_body_without_data_or_has_more_is_not_a_page() {
        let cases = [
            ("{}", "`data` is missing and `has_more` is missing"),
            (
                r#"{"data": null}"#,
                "`data` is null and `has_more` is missing",
            ),
            (
                r#"{"total": 0}"#,
                "`data` is missing and `has_more` is missing",
            ),
            (r#"{"data": null, "has_more": false}"#, "`data` is null;"),
            (r#"{"has_more": false}"#, "`data` is missing;"),
            (r#"{"data": []}"#, "`has_more` is missing;"),
            (r#"{"data": [], "has_more": null}"#, "`has_more` is null;"),
            (
                r#"{"code": 500, "reason": "INTERNAL_SERVER_ERROR", "message": "upstream failed"}"#,
                "`data` is missing and `has_more` is missing",
            ),
        ];
        for (body, problem) in cases {
            let error = Page::from_json(body.as_bytes()).expect_err(body);
            assert_eq!(error.path, ".", "{body}");
            assert!(
                error.to_string().starts_with("not a list page: "),
                "{body}: {error}"
            );
            assert!(error.message.contains(problem), "{body}: {error}");
        }
    }

    #[test]
    fn a_page_with_more_array_items_than_the_bound_is_refused_unread() {
        let page_of = |records: usize| {
            let data = vec![r#"{"id": "a", "gpu_ids": []}"#; records].join(",");
            format!(r#"{{"data": [{data}], "has_more": false}}"#)
        };
        let error = Page::from_json(page_of(MAX_PAGE_ITEMS + 1).as_bytes()).expect_err("too many");
        assert_eq!(error.path, ".");
        assert!(
            error.message.contains("more than 50000 array items"),
            "{error}"
        );
        let nested = format!(
            r#"{{"data": [{{"id": "a", "envs": [{}]}}], "has_more": false}}"#,
            vec!["{}"; MAX_PAGE_ITEMS].join(",")
        );
        assert!(
            Page::from_json(nested.as_bytes()).is_err(),
            "items at any depth count"
        );
        let fits = Page::from_json(page_of(MAX_PAGE_ITEMS).as_bytes()).expect("within the bound");
        assert_eq!(fits.instances.len(), MAX_PAGE_ITEMS);
        // Commas and brackets inside strings are not items.
        let wordy = format!(
            r#"{{"data": [{{"id": "a", "name": "{}"}}], "has_more": false}}"#,
            ",[".repeat(MAX_PAGE_ITEMS)
        );
        let page = Page::from_json(wordy.as_bytes()).expect("one record");
        assert_eq!(page.instances[0].name.len(), 2 * MAX_PAGE_ITEMS);
    }

    #[test]
    fn an_error_under_a_field_named_empty_still_names_a_path() {
        let error = Page::from_json(br#"{"":{"#).expect_err("cut short");
        assert_eq!(error.path, ".");
    }

    #[test]
    fn has_more_must_be_a_boolean() {
        for body in [
            r#"{"data": [], "has_more": "false"}"#,
            r#"{"data": [], "has_more": 0}"#,
        ] {
            let error = Page::from_json(body.as_bytes()).expect_err(body);
            assert_eq!(error.path, "has_more", "{body}");
        }
    }

    /// Every string field of a record, each holding `text` somewhere inside.
    fn record_with_every_string_holding(text: &str) -> String {
        let t = |field: &str| format!("{field}-{text}-end");
        serde_json::json!({
            "id": "safe-id",
            "name": t("name"),
            "type": t("type"),
            "product_id": t("product"),
            "image": t("image"),
            "registry_auth_id": t("registry"),
            "entrypoint": t("entrypoint"),
            "command": t("command"),
            "billing": {"mode": t("mode"), "prepaid": {"months": 1,
                "auto_renew": {"enabled": true, "months": 1, "status": t("renew")}}},
            "envs": [{"key": t("env"), "value": "v"}],
            "ports": [{"port": 80, "protocol": t("protocol"), "endpoint": t("endpoint")}],
            "network": {"id": t("network"), "ip": t("ip")},
            "volumes": [{"type": t("volume-type"), "id": t("volume"), "mount_point": t("mount")}],
            "region": t("region"),
            "status": {"status": t("state"), "error": t("error"), "message": t("message")},
            "member_id": t("member"),
            "owner_id": t("owner"),
            "region_version": t("version"),
        })
        .to_string()
    }

    /// How many string fields [`record_with_every_string_holding`] fills.
    const STRING_FIELDS: usize = 24;

    #[test]
    fn redact_replaces_the_key_in_every_string_of_a_record() {
        const SECRET: &str = "sk_live_9x8y7z";
        let key = ApiKey::new(SECRET).expect("valid key");
        let mut instance = decode_one(&record_with_every_string_holding(SECRET)).expect("decodes");
        let before = format!("{instance:?}");
        assert_eq!(before.matches(SECRET).count(), STRING_FIELDS, "{before}");

        assert_eq!(instance.redact(&key), STRING_FIELDS);
        let after = format!("{instance:?}");
        assert!(!after.contains(SECRET), "{after}");
        assert_eq!(after.matches("[redacted]").count(), STRING_FIELDS);
        assert_eq!(instance.name, "name-[redacted]-end");
        let status = instance.status.as_ref().expect("status");
        assert_eq!(status.message, "message-[redacted]-end");
        assert_eq!(instance.id.as_str(), "safe-id");
    }

    #[test]
    fn redact_finds_the_url_encoded_key_and_leaves_other_text_exactly_as_sent() {
        let key = ApiKey::new("a+b/c=").expect("valid key");
        let mut instance = decode_one(
            r#"{"id": "x1", "command": "  curl 'https://h/?k=a%2Bb%2Fc%3D'\n  --retry 3",
                "name": "plain  name\twith tabs"}"#,
        )
        .expect("decodes");
        assert_eq!(instance.redact(&key), 1);
        assert_eq!(
            instance.command,
            "  curl 'https://h/?k=[redacted]'\n  --retry 3"
        );
        assert_eq!(instance.name, "plain  name\twith tabs");
    }

    #[test]
    fn redact_leaves_a_record_without_the_key_unchanged() {
        let key = ApiKey::new("sk_not_there").expect("valid key");
        let mut instance =
            decode_one(&record_with_every_string_holding("harmless")).expect("decodes");
        let original = instance.clone();
        assert_eq!(instance.redact(&key), 0);
        assert_eq!(instance, original);
    }

    #[test]
    fn a_long_string_sent_for_a_number_is_quoted_cut_and_an_echo_across_the_cut_is_still_found() {
        let secret = "sk_live_0a1b2c3d4e5f6a7b8c9d";
        // The key starts 10 characters before the cut: its first 10 are quoted, the rest are not.
        let text = format!("{}{secret}", "x".repeat(MAX_QUOTED_CHARS - 10));
        let record = serde_json::json!({"id": "a1", "resource_specs": {"memory_gb": text}});
        let error = decode_one(&record.to_string()).expect_err("not a number");
        assert!(
            error.message.contains("xsk_live_0a\" (cut)"),
            "{}",
            &error.message[..80]
        );
        assert!(error.message.len() < MAX_QUOTED_CHARS + 100);
        let key = ApiKey::new(secret).expect("valid key");
        let shown = key.redact(&error.to_string()).into_owned();
        assert!(
            shown.contains("xx[redacted]\" (cut)"),
            "{}",
            &shown[shown.len() - 40..]
        );
        assert!(!key.appears_in(&shown));
    }

    #[test]
    fn accepts_a_float_that_is_an_integer() {
        let instance =
            decode_one(r#"{"id": "a1", "resource_specs": {"memory_gb": 62.0}}"#).expect("decodes");
        assert_eq!(instance.resource_specs.expect("specs").memory_gb, 62);
    }

    #[test]
    fn a_non_numeric_string_is_an_error_naming_the_field() {
        let error = decode_one(r#"{"id": "a1", "resource_specs": {"memory_gb": "lots"}}"#)
            .expect_err("non-numeric string");
        assert_eq!(error.path, "data[0].resource_specs.memory_gb");
        assert!(error.message.contains("\"lots\""), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("at data[0].resource_specs.memory_gb: expected an integer"),
            "{error}"
        );
    }

    #[test]
    fn a_fractional_number_is_an_error_naming_the_field() {
        let error = decode_one(r#"{"id": "a1", "resource_specs": {"gpu_ids": [0, 1.5]}}"#)
            .expect_err("fractional");
        assert_eq!(error.path, "data[0].resource_specs.gpu_ids[1]");
        let error = decode_one(r#"{"id": "a1", "ports": [{"port": "80.5"}]}"#)
            .expect_err("fractional string");
        assert_eq!(error.path, "data[0].ports[0].port");
    }

    #[test]
    fn an_integer_beyond_int64_is_an_error() {
        let error =
            decode_one(r#"{"id": "a1", "created_at": 18446744073709551615}"#).expect_err("u64 max");
        assert_eq!(error.path, "data[0].created_at");
        let error =
            decode_one(r#"{"id": "a1", "created_at": "9223372036854775807"}"#).expect_err("range");
        assert!(error.message.contains("out of range"), "{error}");
    }

    #[test]
    fn a_record_without_an_id_invalidates_the_page() {
        let body = r#"{"data": [{"id": "a1"}, {"name": "no-id"}], "has_more": false}"#;
        let error = Page::from_json(body.as_bytes()).expect_err("missing id");
        assert_eq!(error.path, "data[1]");
        assert!(error.message.contains("missing or empty"), "{error}");

        for empty in [r#""""#, r#""  ""#, "null"] {
            let body = format!(r#"{{"data": [{{"id": {empty}}}], "has_more": false}}"#);
            let error = Page::from_json(body.as_bytes()).expect_err("empty id");
            assert_eq!(error.path, "data[0].id", "{empty}");
        }
    }

    #[test]
    fn malformed_or_trailing_json_is_an_error() {
        assert!(Page::from_json(b"<html>Bad gateway</html>").is_err());
        let page = br#"{"data": [], "has_more": false}"#;
        assert!(Page::from_json(page).is_ok());
        assert!(Page::from_json(&[&page[..], &page[..]].join(&b' ')).is_err());
        assert!(Page::from_json(br#"{"data": {}, "has_more": false}"#).is_err());
        assert!(Page::from_json(br#"[]"#).is_err());
    }

    #[test]
    fn an_unknown_billing_mode_still_decodes() {
        let instance =
            decode_one(r#"{"id": "a1", "billing": {"mode": "reserved"}}"#).expect("decodes");
        let billing = instance.billing.expect("billing");
        assert_eq!(billing.mode, "reserved");
        assert!(billing.mode.parse::<BillingMode>().is_err());
    }

    #[test]
    fn billing_modes_round_trip_through_their_wire_names() {
        for mode in [
            BillingMode::Postpaid,
            BillingMode::Prepaid,
            BillingMode::Spot,
        ] {
            assert_eq!(mode.as_str().parse::<BillingMode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        assert_eq!(BillingMode::Spot.as_str(), "spot");
    }

    #[test]
    fn instance_ids_are_never_blank() {
        assert_eq!(InstanceId::new(""), None);
        assert_eq!(InstanceId::new(" "), None);
        assert_eq!(id("ca338f12f3").to_string(), "ca338f12f3");
    }
}
