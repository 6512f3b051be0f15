//! The writes of a sync ([`super::writes`]) against a mocked API server: for each kind of mirror
//! write the core plans, the exact requests sent and their order (what a mirror's fingerprint
//! vouches for is written before it), what [`Writes::finish`] reports, and what the mirror cache
//! remembers for the next sync. The same writes against a real API server are tested under
//! `tests/integration/`.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::FIELD_MANAGER;
use super::api_server_verifier::{ApiServerVerifier, PATIENCE, mock_api_server};
use super::cache::MirrorCache;
use super::mirror_meta::MirrorMeta;
use super::writes::{Finished, MirrorWrite, WriteFailures, Writes};
use crate::process::metrics::Metrics;
use ppio::Instance;
use ppio_gpu_core::api::condition::merge_conditions;
use ppio_gpu_core::api::{GpuInstance, GpuInstanceView};
use ppio_gpu_core::mirror::{ABSENT_SINCE_ANNOTATION, FINGERPRINT_ANNOTATION};
use ppio_gpu_core::services::ServiceTally;
use ppio_gpu_core::sync::fixtures::{at, instance, view};
use ppio_gpu_core::sync::listing::{ListingPlanner, Mirrors, RecordPlan, Removal};
use ppio_gpu_core::sync::plan::{DesiredMirror, Digest, Observed};

/// The namespace of the fixture view, and of its mirrors.
const NAMESPACE: &str = "ml";
/// The UID of the fixture view.
const VIEW_UID: &str = "0000-view-uid";
/// The UID the API server gives the mirror.
const MIRROR_UID: &str = "mirror-uid";
/// Where the view's mirrors are.
const GPUINSTANCES: &str = "/apis/gpu.ppio.io/v1alpha1/namespaces/ml/gpuinstances";
/// Where Events of the view's namespace go.
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ml/events";
/// The query of every server-side apply the operator makes.
const APPLY: &[(&str, &str)] = &[
    ("fieldManager", "ppio-gpu-operator"),
    ("fieldValidation", "Ignore"),
    ("force", "true"),
];
/// What a write of a mirror asks back: its metadata only.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
/// The hash of a record as PPIO sent it, for these tests.
const RECORD_SOURCE: u64 = 42;

/// One sync's writes of the fixture view's mirrors, against a mocked API server.
struct Scenario {
    view: Arc<GpuInstanceView>,
    cache: Arc<MirrorCache>,
    client: kube::Client,
    server: ApiServerVerifier,
}

/// What a listing planned for one record.
struct Planned {
    write: MirrorWrite,
    mirror: DesiredMirror,
    /// The source hash recorded once the mirror is written.
    source: u64,
}

/// The cache as the listing planner asks it, as the controller's listing does.
struct CachedMirrors<'a>(&'a MirrorCache);

impl Mirrors for CachedMirrors<'_> {
    fn confirm_unchanged(&self, name: &str, source: u64) -> Option<ServiceTally> {
        self.0
            .unchanged_source(NAMESPACE, name, source, Instant::now())
    }

    fn observed(&self, name: &str) -> Option<Observed> {
        self.0.observed(NAMESPACE, name)
    }
}

impl Scenario {
    fn of(view: GpuInstanceView) -> Scenario {
        let (client, server) = mock_api_server();
        Scenario {
            view: Arc::new(view),
            cache: Arc::new(MirrorCache::default()),
            client,
            server,
        }
    }

    /// What a listing at `now` plans for `record`, given what the cache knows of its mirror.
    fn plan(&self, record: &Instance, now: Timestamp) -> Planned {
        let mut planner =
            ListingPlanner::new(self.view.clone(), None, false, Default::default(), now);
        let planned = planner
            .plan_record(
                &record.into(),
                RECORD_SOURCE,
                || Ok(record.clone()),
                &CachedMirrors(&self.cache),
            )
            .expect("the record decodes");
        let (change, create) = match planned {
            RecordPlan::Create(change) => (change, true),
            RecordPlan::Update(change) => (change, false),
            other => panic!("expected a write, planned {other:?}"),
        };
        let mirror = (*change.mirror).clone();
        let (listed_at, source, events) = (Instant::now(), change.source, change.events);
        let write = if create {
            MirrorWrite::Create {
                mirror: change.mirror,
                source,
                listed_at,
                events,
            }
        } else {
            MirrorWrite::Update {
                mirror: change.mirror,
                source,
                listed_at,
                events,
            }
        };
        Planned {
            write,
            mirror,
            source,
        }
    }

    /// Makes `mirror`, as written whole at `resource_version`, what the API server holds and what
    /// the watch reported to the cache.
    fn store(&self, mirror: &DesiredMirror, resource_version: &str) -> GpuInstance {
        let mut object = mirror.object.clone();
        object.metadata.namespace = Some(NAMESPACE.into());
        object.metadata.uid = Some(MIRROR_UID.into());
        object.metadata.resource_version = Some(resource_version.into());
        object.status = Some(mirror.status.clone());
        self.cache.apply_for_test(MirrorMeta {
            metadata: object.metadata.clone(),
        });
        object
    }

    /// Starts carrying `planned` out, one write at a time, as a sync does.
    fn carry_out(&self, planned: Vec<MirrorWrite>) -> JoinHandle<Result<Finished, WriteFailures>> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some("test".into()),
        };
        let mut writes = Writes::new(
            self.client.clone(),
            self.view.clone(),
            self.cache.clone(),
            Metrics::new(),
            Recorder::new(self.client.clone(), reporter),
            1,
            None,
        );
        tokio::spawn(async move {
            for write in planned {
                writes.start(write).await;
            }
            writes.finish().await
        })
    }

    /// Asserts that the client sends nothing more once the writes are done.
    async fn end(self) {
        drop(self.client);
        self.server.expect_no_more().await;
    }
}

/// What [`Writes::finish`] returned.
async fn finished(
    writes: JoinHandle<Result<Finished, WriteFailures>>,
) -> Result<Finished, WriteFailures> {
    tokio::time::timeout(PATIENCE, writes)
        .await
        .expect("the writes finish")
        .expect("the writes' task completes")
}

fn object_path(name: &str) -> String {
    format!("{GPUINSTANCES}/{name}")
}

fn status_path(name: &str) -> String {
    format!("{GPUINSTANCES}/{name}/status")
}

/// The value of annotation `key` in a request's or an answer's body.
fn annotation<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body["metadata"]["annotations"][key].as_str()
}

/// The fingerprint `mirror` carries once written whole.
fn fingerprint_of(mirror: &DesiredMirror) -> Option<&str> {
    mirror
        .object
        .annotations()
        .get(FINGERPRINT_ANNOTATION)
        .map(String::as_str)
}

/// The API server's answer, metadata only, to an apply whose body is `body`: the object now holds
/// what was applied (the operator owns every label and annotation it applies).
fn answer_to_apply(body: &Value, resource_version: &str) -> Value {
    let mut metadata = body["metadata"].clone();
    metadata["namespace"] = json!(NAMESPACE);
    metadata["uid"] = json!(MIRROR_UID);
    metadata["resourceVersion"] = json!(resource_version);
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": metadata,
    })
}

/// The API server's answer, metadata only, to a write of the status of `object`.
fn answer_to_status(object: &GpuInstance, resource_version: &str) -> Value {
    let mut metadata = object.metadata.clone();
    metadata.resource_version = Some(resource_version.into());
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": metadata,
    })
}

#[tokio::test]
async fn a_new_mirror_is_created_then_given_its_status_and_its_fingerprint_last() {
    let mut view = view(true);
    view.spec.lifecycle_events.first_sight = true;
    let mut scenario = Scenario::of(view);
    let planned = scenario.plan(&instance("i-1", "running", "eu", 1), at(1_000));
    assert!(matches!(planned.write, MirrorWrite::Create { .. }));
    let mirror = planned.mirror;
    let name = mirror.name.clone();
    let writes = scenario.carry_out(vec![planned.write]);

    // The object, without its fingerprint and with no UID to hold to.
    let created = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    assert_eq!(created.header("accept"), Some(METADATA_ONLY));
    assert_eq!(created.body["apiVersion"], "gpu.ppio.io/v1alpha1");
    assert_eq!(created.body["kind"], "GpuInstance");
    assert_eq!(
        created.body["metadata"]["labels"],
        json!(mirror.object.labels())
    );
    assert_eq!(
        created.body["metadata"]["ownerReferences"][0]["uid"],
        VIEW_UID
    );
    assert_eq!(created.body["spec"], json!(mirror.object.spec));
    assert_eq!(created.body["metadata"].get("uid"), None);
    assert_eq!(annotation(&created.body, FINGERPRINT_ANNOTATION), None);
    let answer = answer_to_apply(&created.body, "1");
    created.answer(answer.clone());

    // Its status alone, and only while it is the object just created.
    let status = scenario
        .server
        .expect(Method::PATCH, &status_path(&name), APPLY)
        .await;
    assert_eq!(status.header("accept"), Some(METADATA_ONLY));
    assert_eq!(
        status.body,
        json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstance",
            "metadata": { "uid": MIRROR_UID },
            "status": mirror.status,
        })
    );
    let mut answer = answer;
    answer["metadata"]["resourceVersion"] = json!("2");
    status.answer(answer);

    // Last, the object with the fingerprint that vouches for the status.
    let vouched = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    assert_eq!(vouched.header("accept"), Some(METADATA_ONLY));
    assert_eq!(vouched.body["metadata"]["uid"], MIRROR_UID);
    assert_eq!(
        vouched.body["metadata"]["labels"],
        json!(mirror.object.labels())
    );
    assert!(fingerprint_of(&mirror).is_some());
    assert_eq!(
        annotation(&vouched.body, FINGERPRINT_ANNOTATION),
        fingerprint_of(&mirror)
    );
    let answer = answer_to_apply(&vouched.body, "3");
    vouched.answer(answer);

    // The Event its labels now record, once the writes are done.
    let event = scenario.server.expect(Method::POST, EVENTS, &[]).await;
    assert_eq!(event.body["reason"], "FirstSeen");
    assert_eq!(event.body["type"], "Normal");
    assert_eq!(event.body["regarding"]["kind"], "GpuInstance");
    assert_eq!(event.body["regarding"]["name"], name.as_str());
    assert_eq!(event.body["regarding"]["uid"], MIRROR_UID);
    let echo = event.body.clone();
    event.answer(echo);

    let done = finished(writes).await.expect("every write succeeds");
    assert_eq!((done.writes, done.services_not_kept), (1, 0));
    let observed = scenario
        .cache
        .observed(NAMESPACE, &name)
        .expect("the cache holds the mirror written");
    assert_eq!(observed.uid, MIRROR_UID);
    assert!(observed.trusted);
    assert_eq!(
        observed.digest,
        Digest::of_metadata(&mirror.object.metadata)
    );
    assert_eq!(observed.source, Some(planned.source));
    // The next listing of the same record writes nothing.
    assert!(
        scenario
            .cache
            .unchanged_source(NAMESPACE, &name, planned.source, Instant::now())
            .is_some()
    );
    scenario.end().await;
}

#[tokio::test]
async fn an_updated_mirror_gets_its_status_first_and_its_labels_and_fingerprint_last() {
    let mut scenario = Scenario::of(view(true));
    // The mirror as an earlier sync wrote it, while the instance was pulling its image.
    let before = scenario.plan(&instance("i-1", "pulling", "eu", 1), at(1_000));
    let stored = scenario.store(&before.mirror, "7");
    let planned = scenario.plan(&instance("i-1", "running", "eu", 1), at(2_000));
    assert!(matches!(planned.write, MirrorWrite::Update { .. }));
    let mirror = planned.mirror;
    let name = mirror.name.clone();
    let writes = scenario.carry_out(vec![planned.write]);

    // Read first, for its UID and its conditions' history.
    let read = scenario
        .server
        .expect(Method::GET, &object_path(&name), &[])
        .await;
    read.answer(json!(stored));

    // Its status, the conditions that did not change keeping their transition times; only while
    // it is the object read. The labels and the fingerprint stay as they were.
    let status = scenario
        .server
        .expect(Method::PATCH, &status_path(&name), APPLY)
        .await;
    assert_eq!(status.header("accept"), Some(METADATA_ONLY));
    let mut expected = mirror.status.clone();
    expected.conditions = merge_conditions(
        &before.mirror.status.conditions,
        mirror.status.conditions.clone(),
    );
    assert_eq!(
        status.body,
        json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstance",
            "metadata": { "uid": MIRROR_UID },
            "status": expected,
        })
    );
    status.answer(answer_to_status(&stored, "8"));

    // Last, the object with its new labels and the fingerprint that vouches for the status.
    let object = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    assert_eq!(object.header("accept"), Some(METADATA_ONLY));
    assert_eq!(object.body["metadata"]["uid"], MIRROR_UID);
    assert_eq!(
        object.body["metadata"]["labels"],
        json!(mirror.object.labels())
    );
    assert_eq!(
        object.body["metadata"]["labels"]["gpu.ppio.io/status"],
        "running"
    );
    assert_ne!(fingerprint_of(&mirror), fingerprint_of(&before.mirror));
    assert_eq!(
        annotation(&object.body, FINGERPRINT_ANNOTATION),
        fingerprint_of(&mirror)
    );
    let answer = answer_to_apply(&object.body, "9");
    object.answer(answer);

    // The transition the new status label records.
    let event = scenario.server.expect(Method::POST, EVENTS, &[]).await;
    assert_eq!(event.body["reason"], "Running");
    assert_eq!(event.body["regarding"]["name"], name.as_str());
    assert_eq!(event.body["regarding"]["uid"], MIRROR_UID);
    let echo = event.body.clone();
    event.answer(echo);

    let done = finished(writes).await.expect("every write succeeds");
    assert_eq!(done.writes, 1);
    let observed = scenario.cache.observed(NAMESPACE, &name).unwrap();
    assert!(observed.trusted);
    assert_eq!(
        observed.digest,
        Digest::of_metadata(&mirror.object.metadata)
    );
    assert_eq!(observed.source, Some(planned.source));
    assert_eq!(&*observed.status, "running");
    scenario.end().await;
}

#[tokio::test]
async fn a_repaired_mirror_gives_up_its_fingerprint_before_its_status_is_written() {
    let mut scenario = Scenario::of(view(true));
    let record = instance("i-1", "running", "eu", 1);
    let before = scenario.plan(&record, at(1_000));
    let stored = scenario.store(&before.mirror, "7");
    let name = before.mirror.name.clone();
    // It carries the fingerprint of what is planned, but the operator's last write of it failed.
    scenario.cache.record_failed_write(NAMESPACE, &name);
    let planned = scenario.plan(&record, at(1_000));
    assert!(matches!(planned.write, MirrorWrite::Update { .. }));
    assert_eq!(
        fingerprint_of(&planned.mirror),
        fingerprint_of(&before.mirror)
    );
    let writes = scenario.carry_out(vec![planned.write]);

    let read = scenario
        .server
        .expect(Method::GET, &object_path(&name), &[])
        .await;
    read.answer(json!(stored));

    // The fingerprint goes first: it must not vouch for the writes that follow until they are done.
    let unvouched = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    assert_eq!(unvouched.body["metadata"]["uid"], MIRROR_UID);
    assert_eq!(annotation(&unvouched.body, FINGERPRINT_ANNOTATION), None);
    let answer = answer_to_apply(&unvouched.body, "8");
    unvouched.answer(answer.clone());

    let status = scenario
        .server
        .expect(Method::PATCH, &status_path(&name), APPLY)
        .await;
    assert_eq!(status.body["metadata"], json!({ "uid": MIRROR_UID }));
    assert_eq!(annotation(&status.body, FINGERPRINT_ANNOTATION), None);
    let mut answer = answer;
    answer["metadata"]["resourceVersion"] = json!("9");
    status.answer(answer);

    let vouched = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    assert_eq!(vouched.body["metadata"]["uid"], MIRROR_UID);
    assert_eq!(
        annotation(&vouched.body, FINGERPRINT_ANNOTATION),
        fingerprint_of(&planned.mirror)
    );
    let answer = answer_to_apply(&vouched.body, "10");
    vouched.answer(answer);

    let done = finished(writes).await.expect("every write succeeds");
    assert_eq!(done.writes, 1);
    let observed = scenario.cache.observed(NAMESPACE, &name).unwrap();
    assert!(observed.trusted);
    assert_eq!(observed.source, Some(planned.source));
    scenario.end().await;
}

#[tokio::test]
async fn a_mirror_marked_absent_gives_up_its_fingerprint_before_its_status_changes() {
    let mut scenario = Scenario::of(view(true));
    let before = scenario.plan(&instance("i-1", "running", "eu", 1), at(1_000));
    let stored = scenario.store(&before.mirror, "7");
    let name = before.mirror.name.clone();
    let writes = scenario.carry_out(vec![MirrorWrite::from(Removal::MarkAbsent(name.clone()))]);

    let read = scenario
        .server
        .expect(Method::GET, &object_path(&name), &[])
        .await;
    read.answer(json!(stored));

    // First the fingerprint goes, while it is still the object read.
    let unvouched = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    assert_eq!(unvouched.body["metadata"]["uid"], MIRROR_UID);
    assert_eq!(unvouched.body["metadata"]["labels"], json!(stored.labels()));
    assert_eq!(annotation(&unvouched.body, FINGERPRINT_ANNOTATION), None);
    assert_eq!(annotation(&unvouched.body, ABSENT_SINCE_ANNOTATION), None);
    let answer = answer_to_apply(&unvouched.body, "8");
    unvouched.answer(answer.clone());

    // Then the status says so.
    let status = scenario
        .server
        .expect(Method::PATCH, &status_path(&name), APPLY)
        .await;
    assert_eq!(status.body["metadata"], json!({ "uid": MIRROR_UID }));
    let since = status.body["status"]["absentSince"].clone();
    assert!(since.is_string(), "absentSince is set: {since}");
    let ready = &status.body["status"]["conditions"][0];
    assert_eq!(
        (&ready["type"], &ready["status"]),
        (&json!("Ready"), &json!("Unknown"))
    );
    let mut answer = answer;
    answer["metadata"]["resourceVersion"] = json!("9");
    status.answer(answer);

    // Last, the annotation that records the mark.
    let marked = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    assert_eq!(marked.body["metadata"]["uid"], MIRROR_UID);
    assert_eq!(annotation(&marked.body, FINGERPRINT_ANNOTATION), None);
    assert_eq!(
        annotation(&marked.body, ABSENT_SINCE_ANNOTATION),
        since.as_str()
    );
    let answer = answer_to_apply(&marked.body, "10");
    marked.answer(answer);

    let done = finished(writes).await.expect("every write succeeds");
    assert_eq!(done.writes, 1);
    let observed = scenario.cache.observed(NAMESPACE, &name).unwrap();
    assert!(observed.trusted);
    assert!(observed.absent_since.is_some());
    assert_ne!(
        observed.digest,
        Digest::of_metadata(&before.mirror.object.metadata)
    );
    scenario.end().await;
}

#[tokio::test]
async fn a_delete_holds_to_the_uid_it_was_planned_against() {
    let mut scenario = Scenario::of(view(true));
    let before = scenario.plan(&instance("i-1", "running", "eu", 1), at(1_000));
    scenario.store(&before.mirror, "7");
    let name = before.mirror.name.clone();
    let writes = scenario.carry_out(vec![MirrorWrite::from(Removal::Delete {
        name: name.clone(),
        uid: MIRROR_UID.into(),
    })]);

    let delete = scenario
        .server
        .expect(Method::DELETE, &object_path(&name), &[])
        .await;
    assert_eq!(delete.body["preconditions"]["uid"], MIRROR_UID);
    assert_eq!(delete.body["propagationPolicy"], "Background");
    delete.answer(json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "kind": "gpuinstances", "uid": MIRROR_UID },
    }));

    let done = finished(writes).await.expect("the delete succeeds");
    assert_eq!(done.writes, 1);
    assert!(scenario.cache.observed(NAMESPACE, &name).is_none());
    scenario.end().await;
}

#[tokio::test]
async fn a_refused_status_write_leaves_the_mirror_untrusted_and_its_event_for_the_next_sync() {
    let mut scenario = Scenario::of(view(true));
    let before = scenario.plan(&instance("i-1", "pulling", "eu", 1), at(1_000));
    let stored = scenario.store(&before.mirror, "7");
    let planned = scenario.plan(&instance("i-1", "running", "eu", 1), at(2_000));
    let name = planned.mirror.name.clone();
    let writes = scenario.carry_out(vec![planned.write]);

    let read = scenario
        .server
        .expect(Method::GET, &object_path(&name), &[])
        .await;
    read.answer(json!(stored));
    scenario
        .server
        .expect(Method::PATCH, &status_path(&name), APPLY)
        .await
        .refuse(StatusCode::CONFLICT, "Conflict");

    // Neither the object nor the Event follows (`end` asserts nothing more is sent).
    let failures = finished(writes).await.expect_err("the write failed");
    assert_eq!(
        (failures.failed, failures.throttled, failures.total),
        (1, 0, 1)
    );
    assert!(matches!(&failures.first, Some(kube::Error::Api(s)) if s.code == 409));
    let observed = scenario.cache.observed(NAMESPACE, &name).unwrap();
    assert!(!observed.trusted);
    assert_eq!(observed.source, None);
    // The next listing of the record writes the mirror again.
    assert!(
        scenario
            .cache
            .unchanged_source(NAMESPACE, &name, planned.source, Instant::now())
            .is_none()
    );
    scenario.end().await;
}

#[tokio::test]
async fn a_throttled_write_of_a_new_mirror_is_counted_and_leaves_it_untrusted() {
    let mut scenario = Scenario::of(view(true));
    let planned = scenario.plan(&instance("i-1", "running", "eu", 1), at(1_000));
    let name = planned.mirror.name.clone();
    let writes = scenario.carry_out(vec![planned.write]);

    let created = scenario
        .server
        .expect(Method::PATCH, &object_path(&name), APPLY)
        .await;
    let answer = answer_to_apply(&created.body, "1");
    created.answer(answer.clone());
    // The watch reports the new object while its status is being written.
    let metadata = serde_json::from_value(answer["metadata"].clone()).unwrap();
    scenario.cache.apply_for_test(MirrorMeta { metadata });
    scenario
        .server
        .expect(Method::PATCH, &status_path(&name), APPLY)
        .await
        .refuse(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests");

    let failures = finished(writes).await.expect_err("the write failed");
    assert_eq!(
        (failures.failed, failures.throttled, failures.total),
        (1, 1, 1)
    );
    let observed = scenario.cache.observed(NAMESPACE, &name).unwrap();
    assert!(!observed.trusted);
    assert_eq!(observed.source, None);
    scenario.end().await;
}
