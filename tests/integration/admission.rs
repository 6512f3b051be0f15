//! What the API server answers a user who types a view: every value the schema refuses is refused
//! with a message that names the field, the value and the form accepted (never a CEL evaluation
//! error or a bare regex), and the durations it admits are exactly those the operator reads.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use ppio_gpu_operator::api::GpuInstanceView;
use ppio_gpu_operator::api::view::parse_duration;
use serde_json::{Value, json};

use ppio_test_support::TestNamespace;
use ppio_test_support::fixture::install_crds;

/// Views as raw JSON, so that a value the types cannot hold (a typo, an unknown enum value) reaches
/// the API server.
fn raw_views(ns: &TestNamespace) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<GpuInstanceView>(&());
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

/// The smallest valid spec with `field` (a JSON pointer below `spec`) set to `value`.
fn spec_with(field: &str, value: Value) -> Value {
    let mut spec = json!({ "credentials": { "secretRef": { "name": "ppio" } } });
    let mut at = &mut spec;
    let parts: Vec<&str> = field.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            at[*part] = value.clone();
        } else {
            if at.get(*part).is_none() {
                at[*part] = json!({});
            }
            at = &mut at[*part];
        }
    }
    spec
}

/// Creates (dry run) a view with `spec`: `Ok` when admitted, the API server's message otherwise.
async fn admit(views: &Api<DynamicObject>, spec: Value) -> Result<(), String> {
    let resource = ApiResource::erase::<GpuInstanceView>(&());
    let view = DynamicObject::new("admission", &resource).data(json!({ "spec": spec }));
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match views.create(&dry_run, &view).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 422 => Err(status.message.clone()),
        Err(e) => panic!("the API server failed to answer: {e}"),
    }
}

#[tokio::test]
async fn every_refused_value_is_answered_with_its_field_its_value_and_the_form_accepted() {
    let ns = TestNamespace::new("admission").await;
    install_crds(&ns.client).await;
    let views = raw_views(&ns);
    // (field below spec, value, what the message must name: the field's path, the value as shown,
    // the form accepted)
    let cases: Vec<(&str, Value, [&str; 3])> = vec![
        (
            "syncInterval",
            json!("abc"),
            [
                "spec.syncInterval",
                "\"abc\"",
                "a number and a unit (h, m, s or ms)",
            ],
        ),
        (
            "syncInterval",
            json!("5s"),
            ["spec.syncInterval", "\"5s\"", "from 10s to 24h"],
        ),
        // Beyond what `duration()` can hold: still a sentence, not an evaluation error.
        (
            "syncInterval",
            json!("99999999999h"),
            [
                "spec.syncInterval",
                "\"99999999999h\"",
                "a number and a unit",
            ],
        ),
        (
            "mirror/massRemovalGracePeriod",
            json!("1d"),
            [
                "spec.mirror.massRemovalGracePeriod",
                "\"1d\"",
                "a number and a unit",
            ],
        ),
        (
            "mirror/massRemovalGracePeriod",
            json!("200h"),
            [
                "spec.mirror.massRemovalGracePeriod",
                "\"200h\"",
                "at most 168h",
            ],
        ),
        (
            "expiryWarningWindow",
            json!("3 days"),
            [
                "spec.expiryWarningWindow",
                "\"3 days\"",
                "a number and a unit",
            ],
        ),
        (
            "expiryWarningWindow",
            json!("9000h"),
            ["spec.expiryWarningWindow", "\"9000h\"", "at most 8760h"],
        ),
        (
            "credentials/secretRef/name",
            json!("Bad_Name"),
            [
                "spec.credentials.secretRef.name",
                "\"Bad_Name\"",
                "lowercase letters, digits",
            ],
        ),
        (
            "credentials/secretRef/key",
            json!("api key"),
            [
                "spec.credentials.secretRef.key",
                "\"api key\"",
                "letters, digits, \"-\", \"_\" and \".\"",
            ],
        ),
        (
            "endpoint",
            json!("ftp://ppio.example"),
            [
                "spec.endpoint",
                "\"ftp://ppio.example\"",
                "an http or https URL",
            ],
        ),
        (
            "filter/regions",
            json!(["us-west-1", "us west"]),
            [
                "spec.filter.regions[1]",
                "\"us west\"",
                "no commas or spaces",
            ],
        ),
        (
            "pageSize",
            json!(500),
            ["spec.pageSize", "500", "less than or equal to 200"],
        ),
        (
            "pageSize",
            json!(0),
            ["spec.pageSize", "0", "greater than or equal to 1"],
        ),
        (
            "lifecycleEvents/maxPerSync",
            json!(-1),
            [
                "spec.lifecycleEvents.maxPerSync",
                "-1",
                "greater than or equal to 0",
            ],
        ),
        (
            "lifecycleEvents/maxPerSync",
            json!(1001),
            [
                "spec.lifecycleEvents.maxPerSync",
                "1001",
                "less than or equal to 1000",
            ],
        ),
        (
            "filter/billingMode",
            json!("monthly"),
            [
                "spec.filter.billingMode",
                "\"monthly\"",
                "\"postpaid\", \"prepaid\", \"spot\"",
            ],
        ),
        (
            "mirror/deletionPolicy",
            json!("Keep"),
            [
                "spec.mirror.deletionPolicy",
                "\"Keep\"",
                "\"Delete\", \"Retain\"",
            ],
        ),
        (
            "mirror/omitFields",
            json!(["image", "ssh"]),
            [
                "spec.mirror.omitFields[1]",
                "\"ssh\"",
                "\"command\", \"entrypoint\", \"image\"",
            ],
        ),
        (
            "filter/name",
            json!(""),
            ["spec.filter.name", "\"\"", "at least 1 chars long"],
        ),
        (
            "filter/status",
            json!(""),
            ["spec.filter.status", "\"\"", "at least 1 chars long"],
        ),
    ];
    for (field, value, names) in cases {
        let message = admit(&views, spec_with(field, value.clone()))
            .await
            .expect_err(&format!("{field}: {value} must be refused"));
        for name in names {
            assert!(
                message.contains(name),
                "{field} = {value}: the message does not name {name}: {message}"
            );
        }
        for noise in ["evaluating rule", "google.protobuf", "should match"] {
            assert!(
                !message.contains(noise),
                "{field} = {value}: the message says {noise:?}: {message}"
            );
        }
    }
}

#[tokio::test]
async fn the_api_server_admits_exactly_the_durations_the_operator_reads() {
    let ns = TestNamespace::new("admission-durations").await;
    install_crds(&ns.client).await;
    let views = raw_views(&ns);
    let samples = [
        "10s",
        "1m30s",
        "1.5h",
        "24h",
        "0.5m",
        "1h1h",
        "86400s",
        "1440m",
        "86400000ms",
        "9s",
        "9.999s",
        "24h1ms",
        "25h",
        "1e3s",
        "1d",
        "10",
        "-10s",
        ".5m",
        "5.m",
        "1h30",
        "10000h",
        "1.0000000001m",
        "99999999s",
        "60S",
        "1m 30s",
        "",
    ];
    for sample in samples {
        let admitted = admit(&views, spec_with("syncInterval", json!(sample))).await;
        let read = parse_duration(sample)
            .filter(|d| (Duration::from_secs(10)..=Duration::from_secs(24 * 3600)).contains(d));
        assert_eq!(
            admitted.is_ok(),
            read.is_some(),
            "syncInterval {sample:?}: the API server says {admitted:?}, the operator reads {read:?}"
        );
    }
    for (field, sample) in [
        ("expiryWarningWindow", "0s"),
        ("expiryWarningWindow", "8760h"),
        ("mirror/massRemovalGracePeriod", "0s"),
        ("mirror/massRemovalGracePeriod", "168h"),
    ] {
        admit(&views, spec_with(field, json!(sample)))
            .await
            .unwrap_or_else(|message| panic!("{field} {sample:?} is refused: {message}"));
    }
}
