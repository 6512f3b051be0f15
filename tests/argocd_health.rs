//! The Argo CD health check shipped in `deploy/argocd/` judges the statuses the operator really
//! writes: it runs in a Lua 5.1 interpreter (as Argo CD's gopher-lua) over views whose status comes
//! from the operator's own status functions.

use std::path::Path;

use jiff::Timestamp;
use mlua::{Lua, LuaSerdeExt, Table};
use ppio::{Instance, InstanceId, InstanceStatus};
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::sync::summary::Summary;
use ppio_gpu_core::sync::view_status::{self, FailureReason, MirrorCounts, SyncFailure};

fn health(view: &GpuInstanceView) -> (String, String) {
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/gpuinstanceview-health.lua"),
    )
    .expect("the health check script");
    let lua = Lua::new();
    let object = lua
        .to_value(&serde_json::to_value(view).expect("view JSON"))
        .expect("view as Lua");
    lua.globals().set("obj", object).expect("set obj");
    let result: Table = lua.load(&script).eval().expect("the script runs");
    (
        result.get("status").expect("status"),
        result.get("message").expect("message"),
    )
}

fn view() -> GpuInstanceView {
    let mut view: GpuInstanceView = serde_json::from_value(serde_json::json!({
        "apiVersion": "gpu.ppio.io/v1alpha1",
        "kind": "GpuInstanceView",
        "metadata": { "name": "team", "namespace": "ml", "uid": "u-1", "generation": 2 },
        "spec": { "credentials": { "secretRef": { "name": "ppio" } } }
    }))
    .expect("valid view");
    view.metadata.generation = Some(2);
    view
}

fn synced(mut view: GpuInstanceView) -> GpuInstanceView {
    let mut instance = Instance::new(InstanceId::new("ab12").unwrap());
    instance.status = Some(InstanceStatus {
        status: "running".into(),
        ..Default::default()
    });
    let listing = [instance];
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let counts = MirrorCounts {
        mirrored: 1,
        created: 1,
        ..MirrorCounts::default()
    };
    let mut summary = Summary::default();
    for instance in &listing {
        summary.add(&instance.into());
    }
    view.status = Some(view_status::synced_status(
        &view,
        &summary.bounded(),
        &counts,
        (&Ok(Default::default()), &Default::default()),
        1,
        now,
    ));
    view
}

fn failed(mut view: GpuInstanceView, reason: FailureReason) -> GpuInstanceView {
    let failure = SyncFailure {
        reason,
        message: format!("{reason} happened"),
    };
    view.status = Some(view_status::failed_status(
        &view,
        &failure,
        Timestamp::from_second(1_800_000_100).unwrap(),
    ));
    view
}

#[test]
fn a_synced_view_is_healthy() {
    let (status, message) = health(&synced(view()));
    assert_eq!(status, "Healthy");
    assert!(
        message.starts_with("Synced: Listed 1 instance"),
        "{message}"
    );
}

#[test]
fn a_view_that_needs_the_user_is_degraded_with_the_reason() {
    let (status, message) = health(&failed(synced(view()), FailureReason::SecretNotFound));
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("SecretNotFound: "), "{message}");
}

#[test]
fn a_view_whose_syncs_fail_for_now_is_degraded_with_the_reason() {
    let (status, message) = health(&failed(synced(view()), FailureReason::ApiUnavailable));
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("ApiUnavailable: "), "{message}");
}

#[test]
fn a_new_spec_not_yet_synced_is_progressing() {
    let mut view = synced(view());
    view.metadata.generation = Some(3);
    assert_eq!(health(&view).0, "Progressing");
}

#[test]
fn a_view_without_status_is_progressing() {
    assert_eq!(health(&view()).0, "Progressing");
}

#[test]
fn a_suspended_view_is_suspended() {
    let mut view = synced(view());
    view.spec.suspend = true;
    view.status = Some(view_status::suspended_status(
        &view,
        Timestamp::from_second(1_800_000_200).unwrap(),
    ));
    assert_eq!(health(&view).0, "Suspended");
}
