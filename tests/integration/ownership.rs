//! Ownership by UID, against the real API server: the operator writes or deletes a Service,
//! EndpointSlice or GpuInstance only while its controller is the expected owner (the mirror's
//! UID, the view's UID), never takes one a user made under its name (labels copied or not), nor
//! one another mirror or view controls, and reports each collision; a mirror whose Service cannot
//! be kept leaves no EndpointSlice of its own routing. The API server's answers to
//! writes conditional on a UID, which the operator relies on, are checked here too.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use ppio_gpu_core::api::condition;
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_core::services::AddressPolicy;
use ppio_gpu_core::services::objects::not_that_object;
use ppio_gpu_core::services::plan::{NAME_TAKEN, SERVICE_ENDPOINTS};
use ppio_gpu_core::sync::view_status::MIRROR_NAME_TAKEN;
use serde_json::{Value, json};

use ppio_test_support::fixture::Fixture;
use ppio_test_support::namespace::TestNamespace;
use ppio_test_support::operator::RunningOperator;
use ppio_test_support::records::{generated, port, set_status};
use ppio_test_support::{await_absent, wait_for};

/// A running record `id` with one exposed port at a documentation address.
fn record(id: &str, seed: u64) -> Value {
    let mut record = generated(id, seed);
    set_status(&mut record, "running");
    record["ports"] = json!([port(8080, "http", "http://203.0.113.5:30001")]);
    record
}

/// The operator's rule with the documentation range allowed.
fn allowing_documentation() -> AddressPolicy {
    AddressPolicy {
        cluster: Vec::new(),
        allowed: vec!["203.0.113.0/24".parse().expect("a range")],
    }
}

/// A Service `name` as a user writes it: a selector, one port, and `metadata` on top.
fn their_service(name: &str, metadata: Value) -> Service {
    let mut service = json!({
        "metadata": { "name": name, "labels": { "app": "theirs" } },
        "spec": { "selector": { "app": "theirs" }, "ports": [{ "port": 80 }] },
    });
    for (key, value) in metadata.as_object().expect("an object") {
        if key == "labels" {
            for (label, v) in value.as_object().expect("labels") {
                service["metadata"]["labels"][label] = v.clone();
            }
        } else {
            service["metadata"][key] = value.clone();
        }
    }
    serde_json::from_value(service).expect("a Service")
}

/// A controlling owner reference to `kind` `name` with `uid`.
fn controller(kind: &str, name: &str, uid: &str) -> Value {
    let api_version = if kind == "GpuInstance" || kind == "GpuInstanceView" {
        "gpu.ppio.io/v1alpha1"
    } else {
        "v1"
    };
    json!([{ "apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true }])
}

/// Waits until mirror `mirror` says its Service's name is taken, asking view `v` for syncs.
async fn name_taken(fx: &Fixture, mirror: &str) -> condition::Condition {
    wait_for(
        &format!("{mirror} to say its Service's name is taken"),
        Duration::from_secs(30),
        || async {
            fx.refresh("v").await;
            let status = fx.instances().get_opt(mirror).await.ok()??.status?;
            condition::find(&status.conditions, SERVICE_ENDPOINTS)
                .filter(|c| c.reason == NAME_TAKEN)
                .cloned()
        },
    )
    .await
}

fn service_json(name: &str, uid: Option<&str>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "uid": uid },
        "spec": { "ports": [{ "port": 80 }] },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_conditional_on_a_uid_is_refused_for_a_replaced_or_deleted_object() {
    let ns = TestNamespace::new("own-uid").await;
    let services = ns.api::<Service>();
    let params = PatchParams::apply("ownership-test").force();
    let first = services
        .patch("x", &params, &Patch::Apply(service_json("x", None)))
        .await
        .expect("create by apply");
    let first_uid = first.uid().expect("a UID");
    services
        .patch(
            "x",
            &params,
            &Patch::Apply(service_json("x", Some(&first_uid))),
        )
        .await
        .expect("the same object is written");

    // Someone deletes it and makes their own under the name.
    services
        .delete("x", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("x to go", Duration::from_secs(30), || async {
        services.get_opt("x").await.ok()?.is_none().then_some(())
    })
    .await;
    let theirs = services
        .create(&PostParams::default(), &their_service("x", json!({})))
        .await
        .expect("their Service");
    let replaced = services
        .patch(
            "x",
            &params,
            &Patch::Apply(service_json("x", Some(&first_uid))),
        )
        .await;
    match replaced {
        Err(kube::Error::Api(refusal)) => {
            assert_eq!(refusal.code, 422, "{refusal:?}");
            assert!(not_that_object(&refusal), "{refusal:?}");
        }
        other => panic!("a replaced object must not be written: {other:?}"),
    }
    let still = services.get("x").await.expect("their Service");
    assert_eq!(still.uid(), theirs.uid());
    assert_eq!(
        still.labels().get("app").map(String::as_str),
        Some("theirs")
    );

    // A UID never creates an object: a deleted one is not written again under a stale belief.
    let absent = services
        .patch(
            "y",
            &params,
            &Patch::Apply(service_json("y", Some(&first_uid))),
        )
        .await;
    match absent {
        Err(kube::Error::Api(refusal)) => {
            assert_eq!(refusal.code, 409, "{refusal:?}");
            assert!(not_that_object(&refusal), "{refusal:?}");
        }
        other => panic!("an apply with a UID must not create: {other:?}"),
    }
    assert!(services.get_opt("y").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_service_recreated_with_the_operators_labels_is_never_taken_nor_collected() {
    let fx = Fixture::start_with("own-recreated", vec![record("aa01", 41)], |settings| {
        settings.services = Some(allowing_documentation());
    })
    .await;
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    let services = fx.ns.api::<Service>();
    let ours = services
        .get("v-aa01")
        .await
        .expect("the operator's Service");

    // A user replaces it with their own, copying its labels (as `kubectl get -o yaml` would)
    // but not its owner.
    services
        .delete("v-aa01", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the Service to go", Duration::from_secs(30), || async {
        services
            .get_opt("v-aa01")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let copied = json!({ "labels": ours.labels() });
    let theirs = services
        .create(&PostParams::default(), &their_service("v-aa01", copied))
        .await
        .expect("their Service");
    let condition = name_taken(&fx, "v-aa01").await;
    assert!(
        condition.message.contains("v-aa01"),
        "{}",
        condition.message
    );
    // Nothing of the operator's routes through their Service: the mirror's EndpointSlice, which
    // names the Service, is withdrawn with it.
    await_absent(
        fx.ns.api::<EndpointSlice>(),
        "v-aa01-ipv4-0",
        "the mirror's EndpointSlice",
        Duration::from_secs(30),
    )
    .await;
    let still = services.get("v-aa01").await.expect("their Service");
    assert_eq!(still.uid(), theirs.uid());
    assert_eq!(still.owner_references(), [], "no mirror became its owner");
    assert_eq!(
        still.spec.and_then(|s| s.selector).unwrap_or_default()["app"],
        "theirs"
    );

    // The mirror goes (its view is deleted): their Service stays.
    fx.views()
        .delete("v", &DeleteParams::foreground())
        .await
        .expect("delete the view");
    wait_for("the mirror to go", Duration::from_secs(60), || async {
        fx.instances()
            .get_opt("v-aa01")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = services
        .get_opt("v-aa01")
        .await
        .expect("get")
        .expect("their Service outlives the mirror");
    assert_eq!(after.uid(), theirs.uid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_another_mirror_controls_is_not_taken_and_the_collision_is_reported() {
    let records = vec![record("aa01", 42), record("aa02", 43)];
    let mut fx = Fixture::without_operator(ppio_test_support::shared(), "own-other", records).await;
    // Another mirror, and a Service of its under the name the mirror of aa02 needs.
    let other: GpuInstance = serde_json::from_value(json!({
        "metadata": { "name": "other" },
        "spec": { "instanceId": "zz99", "view": "elsewhere" },
    }))
    .unwrap();
    let other = fx
        .instances()
        .create(&PostParams::default(), &other)
        .await
        .expect("the other mirror");
    let other_uid = other.uid().expect("a UID");
    let services = fx.ns.api::<Service>();
    let held = json!({
        "labels": { "app.kubernetes.io/managed-by": "ppio-gpu-operator" },
        "ownerReferences": controller("GpuInstance", "other", &other_uid),
    });
    let held = services
        .create(&PostParams::default(), &their_service("v-aa02", held))
        .await
        .expect("the other mirror's Service");
    fx._operator = Some(RunningOperator::start_with(
        fx.ns.client.clone(),
        &fx.ns.name,
        &fx.ppio.base_url(),
        |settings| settings.services = Some(allowing_documentation()),
    ));
    fx.create_view("v", |spec| spec.services.enabled = true)
        .await;
    fx.wait_ready("v", true, "Synced").await;
    let condition = name_taken(&fx, "v-aa02").await;
    assert!(
        condition.message.contains("v-aa02"),
        "{}",
        condition.message
    );
    let still = services
        .get("v-aa02")
        .await
        .expect("the other mirror's Service");
    assert_eq!(still.uid(), held.uid());
    let owners: Vec<_> = still
        .owner_references()
        .iter()
        .map(|r| (r.name.as_str(), r.uid.as_str()))
        .collect();
    assert_eq!(owners, [("other", other_uid.as_str())]);
    assert_eq!(
        still.spec.and_then(|s| s.selector).unwrap_or_default()["app"],
        "theirs"
    );
    // The other instance's Service is the operator's as usual.
    let routed = services.get("v-aa01").await.expect("v-aa01's Service");
    assert_eq!(routed.owner_references()[0].name, "v-aa01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_mirror_of_another_view_is_left_alone_and_reported() {
    let records = vec![record("aa01", 44), record("aa02", 45)];
    let fx = Fixture::start("own-mirror", records).await;
    // View `w` (suspended: it writes nothing) controls a GpuInstance under the name view `v`'s
    // mirror of aa01 would have.
    let w: GpuInstanceView = fx.create_view("w", |spec| spec.suspend = true).await;
    let w_uid = w.uid().expect("a UID");
    let theirs: GpuInstance = serde_json::from_value(json!({
        "metadata": {
            "name": "v-aa01",
            "labels": {
                "app.kubernetes.io/managed-by": "ppio-gpu-operator",
                "gpu.ppio.io/view": "w",
            },
            "ownerReferences": controller("GpuInstanceView", "w", &w_uid),
        },
        "spec": { "instanceId": "aa01", "view": "w" },
    }))
    .unwrap();
    let theirs = fx
        .instances()
        .create(&PostParams::default(), &theirs)
        .await
        .expect("w's mirror");
    fx.create_view("v", |_| {}).await;
    let view = fx.wait_ready("v", true, MIRROR_NAME_TAKEN).await;
    let ready = condition::find(&view.status.as_ref().unwrap().conditions, condition::READY)
        .unwrap()
        .clone();
    assert!(
        ready.message.contains("1 listed instance is not mirrored")
            && ready.message.contains("v-aa01"),
        "{}",
        ready.message
    );
    assert_eq!(view.status.as_ref().unwrap().mirrored_count, Some(1));
    // Another sync changes nothing of it either.
    fx.refresh("v").await;
    let still = fx.instances().get("v-aa01").await.expect("w's mirror");
    assert_eq!(still.uid(), theirs.uid());
    assert_eq!(
        still.resource_version(),
        theirs.resource_version(),
        "never written"
    );
    assert_eq!(still.spec.view, "w");
    assert!(still.status.is_none(), "no status written on it");
    let owners: Vec<_> = still
        .owner_references()
        .iter()
        .map(|r| r.uid.as_str())
        .collect();
    assert_eq!(owners, [w_uid.as_str()]);
    // The other instance is mirrored by `v` as usual.
    let mirrored = fx.instances().get("v-aa02").await.expect("v's mirror");
    assert_eq!(mirrored.spec.view, "v");

    // aa01 leaves the listing: `v`'s removals, over two listings an interval apart, do not
    // touch the GpuInstance they never owned.
    assert!(fx.simulator().remove_instance("aa01"));
    fx.refresh("v").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    fx.refresh("v").await;
    let after = fx
        .instances()
        .get("v-aa01")
        .await
        .expect("w's mirror stays");
    assert_eq!(after.uid(), theirs.uid());
    assert_eq!(
        after.resource_version(),
        theirs.resource_version(),
        "never marked absent"
    );
    assert!(
        fx.instances()
            .get_opt("v-aa02")
            .await
            .expect("get")
            .is_some()
    );
}
