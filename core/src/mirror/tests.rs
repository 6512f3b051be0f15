//! Unit tests of the mirror: names, labels, the status mapping, the size budget, redaction.

use jiff::Timestamp;

use super::budget::{encoded_len, fit_to_budget};
use super::names::is_valid_label_value;
use super::*;
use crate::api::condition::{self, ConditionStatus};
use crate::api::instance::GpuInstanceStatus;
use crate::api::view::OmittedField;
use ppio::{EnvVar, Instance, InstanceStatus};

fn instance(id: &str, state: &str) -> Instance {
    let mut instance = Instance::new(ppio::InstanceId::new(id).unwrap());
    instance.name = "trainer".into();
    instance.region = "cn-east-1".into();
    instance.status = Some(InstanceStatus {
        status: state.into(),
        error: String::new(),
        message: String::new(),
    });
    instance
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[test]
fn hex_ids_give_readable_names() {
    assert_eq!(object_name("team-a", "ca338f12f3"), "team-a-ca338f12f3");
}

#[test]
fn any_id_gives_a_valid_distinct_name() {
    let ids = [
        "CA338F12F3",
        "a_b",
        "a-b",
        "a.b",
        "ünïcode",
        "",
        &"x".repeat(400),
    ];
    let names: Vec<_> = ids.iter().map(|id| object_name("view", id)).collect();
    for name in &names {
        assert!(is_dns_subdomain(name), "{name:?}");
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn a_long_view_name_still_gives_a_valid_name() {
    let view = format!("{}.example", "v".repeat(245));
    let name = object_name(&view, "ca338f12f3");
    assert!(is_dns_subdomain(&name), "{name:?}");
}

#[test]
fn two_views_get_different_objects_for_one_instance() {
    assert_ne!(object_name("a", "ff00"), object_name("b", "ff00"));
}

#[test]
fn label_values_are_always_valid() {
    for text in ["running", "toStart", "a b", "-x-", &"r".repeat(100), "é"] {
        let value = kubernetes_label_value(text);
        assert!(is_valid_label_value(&value), "{text:?} -> {value:?}");
        assert!(!value.is_empty());
    }
    assert_eq!(kubernetes_label_value("cn-east-1"), "cn-east-1");
}

#[test]
fn labels_select_by_view_region_status_and_billing() {
    let mut i = instance("ca338f12f3", "running");
    i.billing = Some(ppio::Billing {
        mode: "spot".into(),
        prepaid: None,
    });
    let labels = labels("team-a", Some("shard1"), &i, None);
    assert_eq!(labels[VIEW_LABEL], "team-a");
    assert_eq!(labels[REGION_LABEL], "cn-east-1");
    assert_eq!(labels[STATUS_LABEL], "running");
    assert_eq!(labels[BILLING_MODE_LABEL], "spot");
    assert_eq!(labels[INSTANCE_ID_LABEL], "ca338f12f3");
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGER);
    assert_eq!(labels[SHARD_LABEL], "shard1");
}

#[test]
fn running_instances_are_ready() {
    let status = status(
        &instance("a1", "running"),
        &[],
        None,
        &[],
        Timestamp::UNIX_EPOCH,
    );
    let ready = &status.conditions[0];
    assert_eq!(ready.status, ConditionStatus::True);
    assert_eq!(ready.reason, "Running");
}

#[test]
fn other_instances_are_not_ready_with_the_remote_reason_and_error() {
    let mut i = instance("a1", "toStart");
    i.status.as_mut().unwrap().error = "NO_CAPACITY".into();
    i.status.as_mut().unwrap().message = "no GPU left in region".into();
    let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
    let ready = &status.conditions[0];
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, "ToStart");
    assert_eq!(ready.message, "NO_CAPACITY: no GPU left in region");
}

#[test]
fn mapping_twice_gives_an_equal_status() {
    let i = instance("a1", "running");
    let first = status(&i, &[], None, &[], Timestamp::from_second(100).unwrap());
    let second = status(
        &i,
        &[],
        None,
        &first.conditions,
        Timestamp::from_second(200).unwrap(),
    );
    assert_eq!(first, second);
}

#[test]
fn environment_values_are_never_mirrored() {
    let mut i = instance("a1", "running");
    i.envs = vec![EnvVar {
        key: "HF_TOKEN".into(),
    }];
    let json = serde_json::to_string(&status(&i, &[], None, &[], Timestamp::UNIX_EPOCH)).unwrap();
    assert!(json.contains("\"envs\":[{\"key\":\"HF_TOKEN\"}]"), "{json}");
}

#[test]
fn hostile_sizes_are_bounded() {
    let mut i = instance("a1", "running");
    i.image = "i".repeat(1_000_000);
    i.envs = (0..10_000)
        .map(|n| EnvVar {
            key: format!("K{n}"),
        })
        .collect();
    let json = serde_json::to_string(&status(&i, &[], None, &[], Timestamp::UNIX_EPOCH)).unwrap();
    assert!(json.len() < 64 * 1024, "{} bytes", json.len());
}

#[test]
fn timestamps_rfc_3339_cannot_express_are_left_out() {
    let mut i = instance("a1", "running");
    i.created_at = Some(Timestamp::from_second(-62_135_596_801).unwrap());
    i.last_stopped_at = Some(Timestamp::from_second(-62_135_596_800).unwrap());
    let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
    assert_eq!(status.created_at, None);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["lastStoppedAt"], "0001-01-01T00:00:00Z");
}

#[test]
fn every_field_of_a_hostile_record_is_bounded_together() {
    use ppio::{Port, Volume};
    let long = "x".repeat(10_000);
    let mut i = instance("a1", "running");
    i.name = long.clone();
    i.image = long.clone();
    i.command = long.clone();
    i.entrypoint = long.clone();
    i.ports = (0..1_000)
        .map(|n| Port {
            port: n,
            protocol: long.clone(),
            endpoint: long.clone(),
        })
        .collect();
    i.volumes = (0..1_000)
        .map(|_| Volume {
            kind: long.clone(),
            id: long.clone(),
            mount_point: long.clone(),
        })
        .collect();
    i.envs = (0..1_000).map(|_| EnvVar { key: long.clone() }).collect();
    let json = serde_json::to_string(&status(&i, &[], None, &[], Timestamp::UNIX_EPOCH)).unwrap();
    // etcd takes objects up to ~1.5 MB; stay well under it whatever PPIO sends.
    assert!(json.len() < 1_024 * 1_024, "{} bytes", json.len());
    assert!(spec_instance_id(&long).len() <= 253);
}

#[test]
fn status_round_trips_through_json_unchanged() {
    let mut i = instance("a1", "running");
    i.created_at = Some(Timestamp::from_second(1_714_464_000).unwrap());
    let status = status(&i, &[], None, &[], Timestamp::from_second(5).unwrap());
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["createdAt"], "2024-04-30T08:00:00Z");
    let back: GpuInstanceStatus = serde_json::from_value(json).unwrap();
    assert_eq!(back, status);
}

/// A record whose every field is within its own cap, yet whose status is megabytes as JSON: 128
/// volumes of 4 KiB paths made of characters the API server escapes six-fold.
fn oversized_record() -> Instance {
    use ppio::Volume;
    let mut i = instance("a1", "running");
    i.volumes = (0..128)
        .map(|n| Volume {
            kind: "network".into(),
            id: format!("vol-{n}"),
            mount_point: format!("/data/{n}/{}", "<".repeat(40_000)),
        })
        .collect();
    i.command = "&".repeat(100_000);
    i
}

#[test]
fn an_oversized_record_fits_the_budget_and_says_what_was_cut() {
    let i = oversized_record();
    let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
    assert!(
        encoded_len(&status) <= STATUS_BUDGET_BYTES,
        "{} bytes",
        encoded_len(&status)
    );
    assert!(!status.volumes.is_empty(), "what fits is kept");
    assert!(status.volumes.len() < 128);
    assert_eq!(
        status.volumes[0].id.as_deref(),
        Some("vol-0"),
        "cut from the end"
    );
    let truncated = condition::find(&status.conditions, TRUNCATED).expect("Truncated");
    assert_eq!(truncated.status, ConditionStatus::True);
    assert!(
        truncated
            .message
            .contains(&format!("volumes (kept {} of 128)", status.volumes.len())),
        "{}",
        truncated.message
    );
    let ready = condition::find(&status.conditions, condition::READY).expect("Ready");
    assert_eq!(
        ready.status,
        ConditionStatus::True,
        "the instance still runs"
    );
    // Deterministic, so a truncated mirror is not rewritten at every sync.
    let again = status_again(&i, &status);
    assert_eq!(again, status);
}

fn status_again(i: &Instance, previous: &GpuInstanceStatus) -> GpuInstanceStatus {
    status(
        i,
        &[],
        None,
        &previous.conditions,
        Timestamp::from_second(1_000).unwrap(),
    )
}

#[test]
fn a_record_within_the_budget_has_no_truncated_condition() {
    let status = status(
        &instance("a1", "running"),
        &[],
        None,
        &[],
        Timestamp::UNIX_EPOCH,
    );
    assert_eq!(condition::find(&status.conditions, TRUNCATED), None);
}

#[test]
fn control_characters_and_bidi_overrides_are_stripped() {
    let mut i = instance("a1", "running");
    i.name = "train\u{1b}[31mer\u{0}\u{202e}".into();
    i.command = "line one\nline\ttwo\r\u{7}".into();
    let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
    assert_eq!(status.name.as_deref(), Some("train[31mer"));
    assert_eq!(status.command.as_deref(), Some("line one\nline\ttwo"));
}

#[test]
fn left_to_right_and_right_to_left_marks_are_stripped_from_mirrored_text() {
    let mut i = instance("a1", "running");
    i.name = "\u{200f}trainer\u{200e}".into();
    i.command = "python\u{200e} serve.py".into();
    let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
    assert_eq!(status.name.as_deref(), Some("trainer"));
    assert_eq!(status.command.as_deref(), Some("python serve.py"));
    assert_eq!(event_note("up\u{200f}"), "up");
}

#[test]
fn credentials_in_urls_are_redacted() {
    let cases = [
        (
            "git clone https://user:s3cretT0ken@github.com/org/repo && run",
            "git clone https://<redacted>@github.com/org/repo && run",
        ),
        (
            "curl https://ghp_tokenonly@example.com/x",
            "curl https://<redacted>@example.com/x",
        ),
        (
            "deploy:Pa55word@registry.example.com/ns/image:tag",
            "<redacted>@registry.example.com/ns/image:tag",
        ),
        (
            "--url=https://u:p@ss@host.example/path",
            "--url=https://<redacted>@host.example/path",
        ),
        (
            "a https://x:y@h1.example b s3://k:v@h2.example",
            "a https://<redacted>@h1.example b s3://<redacted>@h2.example",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(redact_userinfo(raw), want, "{raw:?}");
    }
    let untouched = [
        "ubuntu:22.04@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "registry.example.com/ns/image@sha256:0123456789abcdef0123456789abcdef",
        "mail ops@example.com when done",
        "git clone git@github.com:org/repo.git",
        "python train.py --lr 0.1",
    ];
    for raw in untouched {
        assert_eq!(redact_userinfo(raw), raw);
    }
}

#[test]
fn credentials_are_redacted_before_a_long_command_is_cut() {
    let mut i = instance("a1", "running");
    // The `@` that marks the credentials lies beyond the 4 KiB cut.
    i.command = format!(
        "{} https://bot:{}@git.example/repo",
        "x".repeat(4_060),
        "T0KEN".repeat(20)
    );
    i.image = "bot:hunter22@registry.example.com/img:1".into();
    let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
    let command = status.command.expect("command");
    assert!(!command.contains("T0KEN"), "{}", &command[4_000..]);
    assert!(!command.contains("bot:"));
    assert_eq!(
        status.image.as_deref(),
        Some("<redacted>@registry.example.com/img:1")
    );
}

/// Every character the mirror strips from long text: controls but tab and newline, bidirectional
/// marks, embeddings, overrides and isolates.
fn stripped_characters() -> impl Iterator<Item = char> {
    (0..=0x10ffff_u32)
        .filter_map(char::from_u32)
        .filter(|&c| ppio::text::is_unwanted(c, true))
}

#[test]
fn a_stripped_character_inside_credentials_does_not_hide_them() {
    for hidden in stripped_characters() {
        let mut i = instance("a1", "running");
        i.command = format!("git clone https://user:hunt{hidden}er2@git.example.com/r");
        i.entrypoint = format!("curl https://to{hidden}ken@api.example.com/x");
        i.image = format!("bot:s3c{hidden}ret@registry.example.com/img:tag");
        let status = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH);
        let mirrored =
            [status.command, status.entrypoint, status.image].map(Option::unwrap_or_default);
        for text in &mirrored {
            for secret in ["hunter2", "user:", "token", "s3cret", "bot:"] {
                assert!(
                    !text.contains(secret),
                    "{secret:?} survives {hidden:?} in {text:?}"
                );
            }
        }
        assert_eq!(
            mirrored,
            [
                "git clone https://<redacted>@git.example.com/r",
                "curl https://<redacted>@api.example.com/x",
                "<redacted>@registry.example.com/img:tag",
            ]
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Whatever the mirror strips, sprinkled anywhere into a URL's credentials, the scrubber sees
    /// the text the mirror keeps: no `user:password@` of it is shown.
    #[test]
    fn no_url_credentials_survive_stripped_characters(
        user in "[a-z]{1,6}",
        password in "[a-z0-9]{1,8}",
        noise in proptest::collection::vec(
            proptest::sample::select(stripped_characters().collect::<Vec<_>>()),
            0..6,
        ),
        at in proptest::collection::vec(0usize..64, 0..6),
    ) {
        let url = format!("run https://{user}:{password}@host.example/p");
        let mut command: Vec<char> = url.chars().collect();
        for (c, at) in noise.iter().zip(&at) {
            command.insert(at % (command.len() + 1), *c);
        }
        let mut i = instance("a1", "running");
        i.command = command.into_iter().collect();
        let shown = status(&i, &[], None, &[], Timestamp::UNIX_EPOCH).command.unwrap_or_default();
        proptest::prop_assert_eq!(shown, "run https://<redacted>@host.example/p");
    }
}

#[test]
fn a_view_may_leave_commands_out_of_its_mirrors() {
    let mut i = instance("a1", "running");
    i.command = "python serve.py --token abc".into();
    i.entrypoint = "/bin/sh -c".into();
    i.image = "registry.example.com/img:1".into();
    let omitted = [OmittedField::Command, OmittedField::Entrypoint];
    let status = status(&i, &omitted, None, &[], Timestamp::UNIX_EPOCH);
    assert_eq!(status.command, None);
    assert_eq!(status.entrypoint, None);
    assert_eq!(status.image.as_deref(), Some("registry.example.com/img:1"));
}

#[test]
fn each_list_over_the_budget_is_cut_by_its_own_accessor() {
    use crate::api::instance::{EnvVarKey, ResourceSpecsStatus};
    let status = |gpus: i64, envs: usize| GpuInstanceStatus {
        resource_specs: Some(ResourceSpecsStatus {
            gpu_ids: (0..gpus).collect(),
            ..ResourceSpecsStatus::default()
        }),
        envs: (0..envs)
            .map(|n| EnvVarKey {
                key: format!("VARIABLE_{n:05}"),
            })
            .collect(),
        ..GpuInstanceStatus::default()
    };

    let mut only_gpus = status(5_000, 3);
    let cuts = fit_to_budget(&mut only_gpus, 4096);
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert!(
        cuts[0].starts_with("resourceSpecs.gpuIds (kept "),
        "{cuts:?}"
    );
    assert_eq!(only_gpus.envs.len(), 3, "the other lists keep every item");
    assert!(encoded_len(&only_gpus) <= 4096);

    let mut only_envs = status(3, 1_000);
    let cuts = fit_to_budget(&mut only_envs, 4096);
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert!(cuts[0].starts_with("envs (kept "), "{cuts:?}");
    let gpus = only_envs.resource_specs.as_ref().map(|r| r.gpu_ids.len());
    assert_eq!(gpus, Some(3), "gpuIds keeps every item");
    assert!(encoded_len(&only_envs) <= 4096);
}
