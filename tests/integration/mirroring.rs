//! User stories of the core product, against the real API server and the PPIO simulator: a view
//! mirrors its instances, follows remote changes, prunes only what is confirmed gone, writes nothing
//! when nothing changed, and reports every failure in its status without losing a mirror.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};
use ppio_gpu_core::api::condition::{self, ConditionStatus};
use ppio_gpu_core::api::view::{BillingMode, DeletionPolicy, Filter, OmittedField};
use ppio_simulator::{Fault, FaultKind, generate_instances};
use serde_json::json;

use ppio_test_support::fixture::{API_KEY, Fixture, create_secret};
use ppio_test_support::records::example_records;
use ppio_test_support::{await_absent, kubectl, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_mirrors_each_instance_with_its_remote_state_labels_and_columns() {
    let records = example_records();
    let fx = Fixture::start("mirror", records.clone()).await;
    fx.create_view("team", |_| {}).await;

    // What a user runs: kubectl wait on the view.
    fx.ns.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "gpuinstanceview/team",
        "--timeout=60s",
    ]);
    let view = fx.wait_ready("team", true, "Synced").await;
    let status = view.status.expect("status");
    assert_eq!(status.instance_count, Some(6));
    assert_eq!(status.running_count, Some(4));
    assert_eq!(status.gpu_count, Some(13));
    assert_eq!(status.instances_by_status.get("exited"), Some(&1));
    assert_eq!(status.instances_by_region.get("us-west-1"), Some(&3));
    assert!(status.last_successful_sync_time.is_some());

    let mirrors = fx.mirrors_of("team").await;
    assert_eq!(mirrors.len(), records.len());
    for mirror in &mirrors {
        let owner = &mirror.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("GpuInstanceView", "team")
        );
    }

    // Every field of the record, camelCase, typed; timestamps RFC 3339; env keys without values.
    let json = fx
        .ns
        .kubectl(&["get", "gpuinstance", "team-1e9b47d2a0", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&json).expect("kubectl JSON");
    let s = &object["status"];
    assert_eq!(s["productId"], "a100-sxm4-80g", "{s:#}");
    assert_eq!(s["billing"]["mode"], "prepaid");
    assert_eq!(s["billing"]["prepaid"]["autoRenew"]["enabled"], true);
    assert!(
        s["ports"][0]["endpoint"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert!(s["resourceSpecs"]["gpuNum"].is_i64());
    assert!(
        s["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.parse::<jiff::Timestamp>().is_ok()),
        "createdAt is RFC 3339: {}",
        s["createdAt"]
    );
    assert!(
        s["envs"]
            .as_array()
            .is_some_and(|e| e.iter().all(|v| v.get("value").is_none()))
    );
    let everything = fx.ns.kubectl(&["get", "gpuinstances", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&everything).expect("kubectl JSON");
    let never_stopped = list["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|i| i["spec"]["instanceId"] == "ca338f12f3")
        })
        .expect("mirror of ca338f12f3");
    assert!(
        never_stopped["status"].get("lastStoppedAt").is_none(),
        "a zero Unix timestamp is absent, not 1970"
    );
    assert!(never_stopped["status"]["lastStartedAt"].is_string());
    for record in &records {
        // Values that appear nowhere else in the record (a model name may also be in the command).
        let mut rest = record.clone();
        rest["envs"] = json!([]);
        let rest = rest.to_string();
        for env in record["envs"].as_array().into_iter().flatten() {
            let value = env["value"].as_str().unwrap_or_default();
            if value.len() < 4 || rest.contains(value) {
                continue;
            }
            assert!(
                !everything.contains(value),
                "environment value of {} leaked into the cluster",
                env["key"]
            );
        }
    }

    // Labels select like any other object.
    let running = fx.ns.kubectl(&[
        "get",
        "gpui",
        "-l",
        "gpu.ppio.io/status=running,gpu.ppio.io/view=team",
        "-o",
        "name",
    ]);
    assert_eq!(running.lines().count(), 4, "{running}");
    let west = fx.ns.kubectl(&[
        "get",
        "gpui",
        "-l",
        "gpu.ppio.io/region=us-west-1",
        "-o",
        "name",
    ]);
    assert_eq!(west.lines().count(), 3, "{west}");

    // Printer columns, as kubectl shows them.
    let table = fx.ns.kubectl(&["get", "gpuinstances"]);
    let header = ppio_test_support::table_header(&table);
    assert_eq!(
        header,
        [
            "NAME", "ID", "NAME", "STATUS", "REGION", "GPUS", "PRODUCT", "BILLING", "AGE"
        ],
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("team-ca338f12f3 "))
        .unwrap_or_else(|| panic!("no row for team-ca338f12f3:\n{table}"));
    let cells: Vec<_> = row.split_whitespace().collect();
    assert_eq!(
        &cells[1..8],
        [
            "ca338f12f3",
            "vllm-serve-qwen7b",
            "running",
            "cn-east-1",
            "1",
            "rtx4090-24g",
            "postpaid"
        ],
        "{table}"
    );
    let views = fx.ns.kubectl(&["get", "gpuinstanceviews"]);
    let header = ppio_test_support::table_header(&views);
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "INSTANCES",
            "RUNNING",
            "GPUS",
            "LAST",
            "SYNC",
            "AGE"
        ],
        "{views}"
    );
    let cells: Vec<_> = views
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&cells[..5], ["team", "True", "6", "4", "13"], "{views}");

    // Waiting for a remote instance to run works like for any object.
    fx.ns.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "gpuinstance/team-ca338f12f3",
        "--timeout=30s",
    ]);
    let exited = fx
        .instances()
        .get("team-88f1c3b7e4")
        .await
        .expect("exited mirror");
    let ready = condition::find(&exited.status.unwrap().conditions, condition::READY)
        .cloned()
        .expect("Ready");
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "Exited")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_changes_show_at_the_next_sync_and_removals_are_confirmed_before_pruning() {
    let records = generate_instances(5, 7);
    let ids: Vec<String> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let fx = Fixture::start("changes", records).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(fx.mirrors_of("v").await.len(), 5);

    // A status change, a new instance and a removal, remotely.
    fx.simulator().patch_instance(
        &ids[0],
        json!({ "status": { "status": "exited", "error": "OOM", "message": "killed" } }),
    );
    let mut new = generate_instances(6, 7).pop().expect("a sixth record");
    new["id"] = json!("feedc0ffee");
    fx.simulator().upsert_instance(new);
    fx.simulator().remove_instance(&ids[1]);

    let view = fx.refresh("v").await;
    let changed = fx
        .instances()
        .get(&format!("v-{}", ids[0]))
        .await
        .expect("mirror");
    assert_eq!(changed.labels()["gpu.ppio.io/status"], "exited");
    let status = changed.status.expect("status");
    assert_eq!(
        status.status.as_ref().and_then(|s| s.status.as_deref()),
        Some("exited")
    );
    let ready = condition::find(&status.conditions, condition::READY).expect("Ready");
    assert_eq!(
        (ready.status, ready.message.as_str()),
        (ConditionStatus::False, "OOM: killed")
    );
    assert!(
        fx.instances()
            .get_opt("v-feedc0ffee")
            .await
            .expect("get")
            .is_some()
    );

    // One listing without it: kept, marked.
    let removed = fx
        .instances()
        .get(&format!("v-{}", ids[1]))
        .await
        .expect("still mirrored");
    assert!(removed.status.and_then(|s| s.absent_since).is_some());
    assert_eq!(
        view.status.as_ref().and_then(|s| s.pending_removal_count),
        Some(1)
    );

    // A second complete listing seconds later: still kept, since it has not been missing for the
    // view's sync interval (10 s) yet. A burst of quick syncs never empties a view.
    let view = fx.refresh("v").await;
    let since = view.status.as_ref().and_then(|s| s.last_sync_time);
    assert!(
        fx.instances()
            .get_opt(&format!("v-{}", ids[1]))
            .await
            .expect("get")
            .is_some(),
        "removed by a second listing that came before the sync interval had passed"
    );

    // Missing from two complete listings and for the interval: pruned at a later sync.
    let instances = fx.instances();
    let gone = format!("v-{}", ids[1]);
    await_absent(
        instances,
        &gone,
        "the missing instance's mirror to be pruned",
        Duration::from_secs(60),
    )
    .await;
    // The sync that pruned it writes the view's status after its removals: a later sync than the
    // second listing, which counts nothing left to remove.
    let view = fx
        .await_view("v", "the status of the sync that pruned", move |view| {
            view.status
                .as_ref()
                .is_some_and(|s| s.last_sync_time > since && s.pending_removal_count == Some(0))
        })
        .await;
    assert_eq!(view.status.and_then(|s| s.mirrored_count), Some(5));
    assert_eq!(fx.mirrors_of("v").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_empties_a_view_is_held_by_the_mass_removal_guard() {
    let records = generate_instances(8, 11);
    let fx = Fixture::start("guard", records).await;
    fx.create_view("v", |spec| {
        spec.mirror.mass_removal_grace_period = "30s".into()
    })
    .await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(fx.mirrors_of("v").await.len(), 8);

    // PPIO answers with an empty (but complete) account, e.g. after a glitch on its side.
    fx.simulator().set_instances(Vec::new());
    let marked = fx.refresh("v").await;
    assert_eq!(
        marked.status.as_ref().and_then(|s| s.pending_removal_count),
        Some(8)
    );
    // Past the sync interval, a second empty listing would remove all eight: held.
    tokio::time::sleep(Duration::from_secs(11)).await;
    fx.refresh("v").await;
    let held = fx.wait_ready("v", true, "MassRemovalHeld").await;
    let ready = condition::find(
        &held.status.as_ref().expect("status").conditions,
        condition::READY,
    )
    .expect("Ready")
    .clone();
    assert!(
        ready.message.contains("8 of this view's 8 mirrors"),
        "{}",
        ready.message
    );
    assert_eq!(
        fx.mirrors_of("v").await.len(),
        8,
        "nothing removed while held"
    );
    fx.refresh("v").await;
    assert_eq!(fx.mirrors_of("v").await.len(), 8);

    let events = fx.ns.api::<Event>();
    let warnings: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MassRemovalHeld"))
        .collect();
    assert_eq!(warnings.len(), 1, "one Warning while held: {warnings:?}");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));

    // Once the instances have been missing for the grace period, the next sync removes them.
    let instances = fx.instances();
    wait_for(
        "the held mirrors to be removed after the grace period",
        Duration::from_secs(90),
        || {
            let instances = instances.clone();
            async move {
                let left = instances
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .len();
                (left == 0).then_some(())
            }
        },
    )
    .await;
    fx.wait_ready("v", true, "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_mirror_outlives_its_instance_marked_absent() {
    let records = generate_instances(2, 13);
    let gone = records[0]["id"].as_str().expect("id").to_owned();
    let fx = Fixture::start("retain", records).await;
    fx.create_view("v", |spec| {
        spec.mirror.deletion_policy = DeletionPolicy::Retain
    })
    .await;
    fx.wait_ready("v", true, "Synced").await;

    fx.simulator().remove_instance(&gone);
    fx.refresh("v").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    fx.refresh("v").await;
    fx.refresh("v").await;
    let kept = fx
        .instances()
        .get(&format!("v-{gone}"))
        .await
        .expect("a retained mirror stays");
    let status = kept.status.expect("status");
    assert!(status.absent_since.is_some());
    let ready = condition::find(&status.conditions, condition::READY).expect("Ready");
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::Unknown, "NotListed")
    );
    assert_eq!(fx.mirrors_of("v").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_megabytes_is_mirrored_within_the_budget_and_the_view_stays_ready() {
    let mut records = generate_instances(4, 17);
    let mut huge = records[0].clone();
    huge["id"] = json!("b16b16b16b");
    // 128 volumes of 40 KiB paths of a character the API server escapes six-fold: about 5 MB of
    // record, 30 MB as the API server would encode it.
    huge["volumes"] = json!(
        (0..128)
            .map(|n| json!({ "type": "network", "id": format!("vol-{n}"), "mount_point": "<".repeat(40 * 1024) }))
            .collect::<Vec<_>>()
    );
    records.push(huge);
    let fx = Fixture::start("huge", records).await;
    fx.create_view("v", |_| {}).await;
    let view = fx.wait_ready("v", true, "Synced").await;
    assert_eq!(view.status.as_ref().and_then(|s| s.mirrored_count), Some(5));
    let mirror = fx
        .instances()
        .get("v-b16b16b16b")
        .await
        .expect("the big record's mirror");
    let status = mirror.status.expect("status");
    assert!(!status.volumes.is_empty() && status.volumes.len() < 128);
    let truncated =
        condition::find(&status.conditions, "Truncated").expect("a Truncated condition");
    assert_eq!(truncated.status, ConditionStatus::True);
    assert!(
        truncated.message.contains("volumes (kept"),
        "{}",
        truncated.message
    );

    // The next sync finds it unchanged: no endless rewrites of a cut record.
    let before = mirror.metadata.resource_version.clone();
    fx.refresh("v").await;
    let after = fx.instances().get("v-b16b16b16b").await.expect("mirror");
    assert_eq!(after.metadata.resource_version, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_commands_and_images_never_reach_a_mirror() {
    let mut records = generate_instances(1, 19);
    records[0]["command"] =
        json!("git clone https://deploy:ghp_S3cretT0ken@github.com/org/repo && python run.py");
    records[0]["entrypoint"] = json!("/bin/sh -c");
    records[0]["image"] = json!("robot:Registry5ecret@registry.example.com/ml/trainer:1");
    let id = records[0]["id"].as_str().expect("id").to_owned();
    let fx = Fixture::start("creds", records).await;
    fx.create_view("plain", |_| {}).await;
    fx.create_view("bare", |spec| {
        spec.mirror.omit_fields = vec![OmittedField::Command, OmittedField::Entrypoint];
    })
    .await;
    fx.wait_ready("plain", true, "Synced").await;
    fx.wait_ready("bare", true, "Synced").await;

    let plain = fx
        .instances()
        .get(&format!("plain-{id}"))
        .await
        .expect("mirror");
    let status = plain.status.expect("status");
    assert_eq!(
        status.command.as_deref(),
        Some("git clone https://<redacted>@github.com/org/repo && python run.py")
    );
    assert_eq!(
        status.image.as_deref(),
        Some("<redacted>@registry.example.com/ml/trainer:1")
    );
    let bare = fx
        .instances()
        .get(&format!("bare-{id}"))
        .await
        .expect("mirror");
    let status = bare.status.expect("status");
    assert_eq!((status.command, status.entrypoint), (None, None));
    assert!(status.image.is_some());

    let everything = fx.ns.kubectl(&["get", "gpuinstances", "-o", "yaml"]);
    for secret in ["ghp_S3cretT0ken", "Registry5ecret"] {
        assert!(!everything.contains(secret), "{secret} reached a mirror");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_mirroring_option_rewrites_mirrors_of_unchanged_records_at_the_next_sync() {
    let mut records = generate_instances(3, 23);
    for record in &mut records {
        record["command"] = json!("python serve.py");
    }
    let fx = Fixture::start("shape", records).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    let before = fx.mirrors_of("v").await;
    assert_eq!(before.len(), 3);
    for mirror in &before {
        let status = mirror.status.as_ref().expect("status");
        assert_eq!(status.command.as_deref(), Some("python serve.py"));
    }

    // Nothing changes remotely; only how the view mirrors. The next sync (the spec change's)
    // must not take the records for unchanged.
    fx.change_spec("v", |spec| {
        spec.mirror.omit_fields = vec![OmittedField::Command]
    })
    .await;
    fx.wait_ready("v", true, "Synced").await;
    let after = fx.mirrors_of("v").await;
    assert_eq!(after.len(), 3);
    for mirror in &after {
        let status = mirror.status.as_ref().expect("status");
        assert_eq!(
            status.command,
            None,
            "{} still shows its command",
            mirror.name_any()
        );
    }
}

/// Sums the API server's own counters of write requests to GpuInstances.
fn gpuinstance_writes(kubeconfig: &Path) -> u64 {
    let metrics = kubectl(kubeconfig, None, &["get", "--raw", "/metrics"]);
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains("resource=\"gpuinstances\""))
        .filter(|l| {
            [
                "APPLY", "PATCH", "POST", "PUT", "DELETE", "CREATE", "UPDATE",
            ]
            .iter()
            .any(|verb| l.contains(&format!("verb=\"{verb}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_in_which_nothing_changed_writes_no_gpuinstance() {
    // A control plane of its own, so no other test's writes reach its counters.
    let control_plane =
        ppio_test_support::ControlPlane::start(None).expect("private control plane");
    let fx = Fixture::start_in(&control_plane, "quiet", generate_instances(8, 3)).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(fx.mirrors_of("v").await.len(), 8);

    let before = gpuinstance_writes(&control_plane.kubeconfig);
    assert!(
        before >= 16,
        "the first sync wrote objects and statuses ({before})"
    );
    fx.refresh("v").await;
    fx.refresh("v").await;
    assert_eq!(
        gpuinstance_writes(&control_plane.kubeconfig),
        before,
        "syncs without remote changes must not write GpuInstances"
    );

    // The same counters do see a change.
    let id = fx.simulator().instances()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    fx.simulator()
        .patch_instance(&id, json!({ "name": "renamed" }));
    fx.refresh("v").await;
    let after = gpuinstance_writes(&control_plane.kubeconfig);
    assert_eq!(
        after,
        before + 2,
        "one changed instance costs two writes: its status, then its fingerprint annotation"
    );
    drop(fx);
    control_plane.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_reach_ppio_and_a_new_filter_resyncs_at_once_and_prunes_what_left_it() {
    let fx = Fixture::start("filters", example_records()).await;
    fx.create_view("v", |spec| {
        spec.page_size = 3;
        spec.filter = Filter {
            regions: vec!["us-west-1".into(), "cn-east-1".into()],
            billing_mode: Some(BillingMode::Prepaid),
            status: Some("running".into()),
            name: Some("e".into()),
        };
        // The new filter below lists none of the view's mirrors: a listing that lacks every
        // mirror waits the mass-removal grace period, kept short here.
        spec.mirror.mass_removal_grace_period = "20s".into();
    })
    .await;
    fx.wait_ready("v", true, "Synced").await;
    let request = fx.simulator().requests().pop().expect("PPIO was called");
    assert_eq!(
        request.query.get("regions").map(String::as_str),
        Some("us-west-1,cn-east-1")
    );
    assert_eq!(
        request.query.get("billing_mode").map(String::as_str),
        Some("prepaid")
    );
    assert_eq!(
        request.query.get("status").map(String::as_str),
        Some("running")
    );
    assert_eq!(request.query.get("name").map(String::as_str), Some("e"));
    assert_eq!(request.query.get("limit").map(String::as_str), Some("3"));
    let names: Vec<_> = fx
        .mirrors_of("v")
        .await
        .iter()
        .map(|m| m.name_any())
        .collect();
    assert_eq!(names, ["v-1e9b47d2a0", "v-b7a40e93cd"]);

    // A new filter: synced at once (no refresh), what no longer matches is marked, then pruned.
    fx.change_spec("v", |spec| {
        spec.filter = Filter {
            status: Some("exited".into()),
            ..Filter::default()
        };
    })
    .await;
    let view = fx.wait_ready("v", true, "Synced").await;
    assert_eq!(view.status.as_ref().and_then(|s| s.instance_count), Some(1));
    assert_eq!(
        view.status.as_ref().and_then(|s| s.pending_removal_count),
        Some(2)
    );
    // Pruned once missing from a second complete listing an interval (10 s) later, and, since the
    // new filter lists none of them, for the grace period (20 s).
    wait_for(
        "what left the filter to be pruned",
        Duration::from_secs(60),
        || async {
            let names: Vec<_> = fx
                .mirrors_of("v")
                .await
                .iter()
                .map(|m| m.name_any())
                .collect();
            (names == ["v-88f1c3b7e4"]).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_many_pages_mirrors_every_instance() {
    let fx = Fixture::start("pages", generate_instances(23, 11)).await;
    fx.create_view("v", |spec| spec.page_size = 5).await;
    let view = fx.wait_ready("v", true, "Synced").await;
    assert_eq!(
        view.status.as_ref().and_then(|s| s.instance_count),
        Some(23)
    );
    assert_eq!(fx.mirrors_of("v").await.len(), 23);
    let requests = fx.simulator().requests();
    assert_eq!(requests.len(), 5, "23 instances in pages of 5");
    assert!(requests[1..].iter().all(|r| r.query.contains_key("cursor")));
    let message = &condition::find(&view.status.unwrap().conditions, condition::READY)
        .unwrap()
        .message
        .clone();
    assert!(message.contains("5 pages"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_views_with_overlapping_filters_keep_their_own_mirrors_without_flapping() {
    let fx = Fixture::start("overlap", example_records()).await;
    fx.create_view("all", |_| {}).await;
    fx.create_view("west", |spec| {
        spec.filter.regions = vec!["us-west-1".into()]
    })
    .await;
    fx.wait_ready("all", true, "Synced").await;
    fx.wait_ready("west", true, "Synced").await;
    assert_eq!(fx.mirrors_of("all").await.len(), 6);
    assert_eq!(fx.mirrors_of("west").await.len(), 3);

    let versions = |mirrors: Vec<ppio_gpu_core::api::GpuInstance>| {
        mirrors
            .into_iter()
            .map(|m| (m.name_any(), m.resource_version()))
            .collect::<Vec<_>>()
    };
    let before = versions(
        fx.instances()
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    );
    for _ in 0..2 {
        fx.refresh("all").await;
        fx.refresh("west").await;
    }
    let after = versions(
        fx.instances()
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    );
    assert_eq!(before.len(), 9);
    assert_eq!(before, after, "no object was rewritten by either view");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_view_deletes_its_gpuinstances() {
    let fx = Fixture::start("delete", example_records()).await;
    fx.create_view("gone", |_| {}).await;
    fx.create_view("kept", |spec| spec.filter.status = Some("running".into()))
        .await;
    fx.wait_ready("gone", true, "Synced").await;
    fx.wait_ready("kept", true, "Synced").await;
    fx.views()
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete view");
    let instances = fx.instances();
    wait_for(
        "the garbage collector to remove the view's mirrors",
        Duration::from_secs(90),
        || {
            let instances = instances.clone();
            async move {
                let left = instances
                    .list(&kube::api::ListParams::default().labels("gpu.ppio.io/view=gone"))
                    .await
                    .ok()?;
                left.items.is_empty().then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        fx.mirrors_of("kept").await.len(),
        4,
        "the other view's mirrors stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_problems_each_report_their_reason_and_prune_nothing_until_fixed() {
    let fx = Fixture::start("creds", example_records()).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    let mirrored = fx.mirrors_of("v").await;
    fx.simulator().clear_requests();

    /// The Secret for one step: absent, or holding `value` under `key`.
    type SecretContent = Option<(&'static str, &'static str)>;
    let steps: [(&str, SecretContent, &str); 3] = [
        ("a missing Secret", None, "SecretNotFound"),
        (
            "a Secret without the key",
            Some(("token", API_KEY)),
            "SecretKeyNotFound",
        ),
        ("a wrong key", Some(("apiKey", "sk-revoked")), "AuthFailed"),
    ];
    for (what, secret, reason) in steps {
        match secret {
            None => {
                fx.ns
                    .api::<k8s_openapi::api::core::v1::Secret>()
                    .delete("ppio", &DeleteParams::default())
                    .await
                    .expect("delete Secret");
            }
            Some((key, value)) => create_secret(&fx.ns, "ppio", key, value).await,
        }
        let view = fx.refresh("v").await;
        let status = view.status.expect("status");
        let ready = condition::find(&status.conditions, condition::READY).expect("Ready");
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, reason),
            "{what}"
        );
        assert!(
            !ready.message.contains(API_KEY),
            "{what}: the key must not show"
        );
        let stalled = condition::find(&status.conditions, condition::STALLED).expect("Stalled");
        assert_eq!(
            stalled.status,
            ConditionStatus::True,
            "{what} needs the user"
        );
        assert_eq!(
            status.instance_count,
            Some(6),
            "{what}: the last counts stay"
        );
        assert_eq!(
            fx.mirrors_of("v").await,
            mirrored,
            "{what}: mirrors untouched"
        );
    }
    let view = fx.views().get("v").await.unwrap();
    let events_text = format!("{view:?}");
    assert!(
        !events_text.contains("sk-revoked"),
        "a wrong key is not echoed in the status"
    );

    // Fixing the Secret recovers by itself: no restart, no refresh.
    create_secret(&fx.ns, "ppio", "apiKey", API_KEY).await;
    fx.wait_ready("v", true, "Synced").await;
    assert_eq!(fx.mirrors_of("v").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ppio_faults_are_reported_and_leave_every_mirror_in_place() {
    let fx = Fixture::start("faults", example_records()).await;
    fx.create_view("v", |spec| spec.page_size = 2).await;
    fx.wait_ready("v", true, "Synced").await;
    let mirrored = fx.mirrors_of("v").await;

    let faults = [
        (
            FaultKind::RateLimited {
                retry_after_secs: Some(1),
            },
            "RateLimited",
        ),
        (
            FaultKind::ServerError { status: Some(503) },
            "ApiUnavailable",
        ),
        (FaultKind::MalformedJson, "InvalidResponse"),
        (FaultKind::RepeatingCursor, "InvalidResponse"),
        (FaultKind::DuplicateIds, "InvalidResponse"),
        (FaultKind::ErrorBodyOk, "InvalidResponse"),
        (FaultKind::EmptyObjectOk, "InvalidResponse"),
        (FaultKind::Delay { ms: 3_000 }, "ApiUnavailable"),
    ];
    for (kind, reason) in faults {
        let what = format!("{kind:?}");
        fx.simulator().clear_faults();
        fx.simulator().inject_fault(Fault { kind, count: None });
        let view = fx.refresh("v").await;
        let status = view.status.expect("status");
        let ready = condition::find(&status.conditions, condition::READY).expect("Ready");
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, reason),
            "{what}"
        );
        let reconciling = condition::find(&status.conditions, condition::RECONCILING).unwrap();
        assert_eq!(
            reconciling.status,
            ConditionStatus::True,
            "{what} is retried"
        );
        assert_eq!(
            fx.mirrors_of("v").await,
            mirrored,
            "{what}: nothing mirrored changes"
        );
    }
    fx.simulator().clear_faults();
    fx.wait_ready("v", true, "Synced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_view_keeps_its_mirrors_and_does_not_call_ppio() {
    let fx = Fixture::start("suspend", example_records()).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    fx.change_spec("v", |spec| spec.suspend = true).await;
    fx.wait_ready("v", true, "Suspended").await;
    fx.simulator().clear_requests();
    fx.simulator().remove_instance("ca338f12f3");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        fx.simulator().requests().is_empty(),
        "no PPIO call while suspended"
    );
    assert_eq!(fx.mirrors_of("v").await.len(), 6);

    fx.change_spec("v", |spec| spec.suspend = false).await;
    let view = fx.wait_ready("v", true, "Synced").await;
    assert_eq!(view.status.and_then(|s| s.instance_count), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_outside_the_allow_list_never_receives_the_key() {
    let fx = Fixture::start("endpoint", example_records()).await;
    let elsewhere = ppio_test_support::fixture::start_simulator(example_records()).await;
    fx.create_view("v", |spec| spec.endpoint = Some(elsewhere.base_url()))
        .await;
    let view = fx.wait_ready("v", false, "EndpointNotAllowed").await;
    let stalled = condition::find(&view.status.unwrap().conditions, condition::STALLED)
        .cloned()
        .unwrap();
    assert_eq!(stalled.status, ConditionStatus::True);
    assert!(elsewhere.simulator().requests().is_empty());
    assert!(fx.mirrors_of("v").await.is_empty());
}
