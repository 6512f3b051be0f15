//! What the API server answers a user who types a view: every value the schema refuses is refused
//! with a message that names the field, the value and the form accepted (never a CEL evaluation
//! error or a bare regex), and the durations it admits are exactly those the operator reads.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::api::view::parse_duration;
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
                "\"abc\" is not a duration",
                "a number and a unit (h, m, s or ms)",
            ],
        ),
        (
            "syncInterval",
            json!("5s"),
            [
                "spec.syncInterval",
                "\"5s\" is out of range",
                "from 10s to 24h",
            ],
        ),
        // Beyond what `duration()` can hold: still a sentence, not an evaluation error.
        (
            "syncInterval",
            json!("99999999999h"),
            [
                "spec.syncInterval",
                "\"99999999999h\" is out of range",
                "from 10s to 24h",
            ],
        ),
        (
            "mirror/massRemovalGracePeriod",
            json!("1d"),
            [
                "spec.mirror.massRemovalGracePeriod",
                "\"1d\" is not a duration",
                "a number and a unit",
            ],
        ),
        (
            "mirror/massRemovalGracePeriod",
            json!("200h"),
            [
                "spec.mirror.massRemovalGracePeriod",
                "\"200h\" is out of range",
                "at most 168h",
            ],
        ),
        (
            "expiryWarningWindow",
            json!("3 days"),
            [
                "spec.expiryWarningWindow",
                "\"3 days\" is not a duration",
                "a number and a unit",
            ],
        ),
        (
            "expiryWarningWindow",
            json!("9000h"),
            [
                "spec.expiryWarningWindow",
                "\"9000h\" is out of range",
                "at most 8760h",
            ],
        ),
        (
            "credentials/secretRef/name",
            json!("Bad_Name"),
            [
                "spec.credentials.secretRef.name",
                "\"Bad_Name\" is not",
                "lowercase letters, digits",
            ],
        ),
        (
            "credentials/secretRef/key",
            json!("api key"),
            [
                "spec.credentials.secretRef.key",
                "\"api key\" is not",
                "letters, digits, \"-\", \"_\" and \".\"",
            ],
        ),
        (
            "endpoint",
            json!("ftp://ppio.example"),
            [
                "spec.endpoint",
                "\"ftp://ppio.example\" is not",
                "an http or https URL",
            ],
        ),
        // Typos that are no URL the operator could use: a port with a letter or beyond 65535, no
        // host, an unclosed IPv6 bracket, a trailing non-breaking space.
        endpoint_case("https://api.ppio.com:4433x"),
        endpoint_case("https://api.ppio.com:99999"),
        endpoint_case("https://:443"),
        endpoint_case("https://[::1"),
        endpoint_case("https://api.ppio.com\u{a0}"),
        endpoint_case("https://api.ppio.com/v1\u{a0}"),
        (
            "filter/regions",
            json!(["us-west-1", "us west"]),
            [
                "spec.filter.regions[1]",
                "\"us west\" is not",
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
    // A value holding a line break or a bidi override: answered in a sentence of its own that does
    // not quote it (a quoted line break would make the API server fall back to the bare message).
    let mut wrong = Vec::new();
    for (field, value) in [
        ("syncInterval", json!("1m\n30s")),
        ("credentials/secretRef/name", json!("ppio\u{202e}")),
        ("endpoint", json!("https://api.ppio.com/\u{202e}")),
        ("filter/regions", json!(["us-west-1\n"])),
    ] {
        let message = match admit(&views, spec_with(field, value.clone())).await {
            Ok(()) => {
                wrong.push(format!("{field} = {value} is admitted"));
                continue;
            }
            Err(message) => message,
        };
        if !message.contains("holds a control or formatting character")
            || message.contains(['\n', '\u{202e}'])
        {
            wrong.push(format!("{field} = {value}: {message:?}"));
        }
    }
    for (field, value, names) in cases {
        let message = match admit(&views, spec_with(field, value.clone())).await {
            Ok(()) => {
                wrong.push(format!("{field} = {value} is admitted"));
                continue;
            }
            Err(message) => message,
        };
        for name in names {
            if !message.contains(name) {
                wrong.push(format!(
                    "{field} = {value}: does not name {name:?}: {message}"
                ));
            }
        }
        for noise in ["evaluating rule", "google.protobuf", "should match"] {
            if message.contains(noise) {
                wrong.push(format!("{field} = {value}: says {noise:?}: {message}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A case of an endpoint that is no usable URL, refused with the endpoint rule's own sentence.
fn endpoint_case(endpoint: &'static str) -> (&'static str, Value, [&'static str; 3]) {
    // The value as the rule's message quotes it, inside its sentence.
    let quoted: &'static str = format!("\"{endpoint}\" is not").leak();
    (
        "endpoint",
        json!(endpoint),
        ["spec.endpoint", quoted, "an http or https URL"],
    )
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
        // Forms the previous release's CRD admitted: leading zeros, long fractions.
        "0000000060s",
        "00000000000000000000000000090s",
        "10.000000000000000000000000000001s",
        "10.0000000000000000000000000001s",
        "0.0000000000000000000000000001h",
        "000000000000000000000000000025h",
        "0000000000000000000000000024h",
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
    // Forms the previous release's schema admitted are admitted still, and read as duration()
    // reads them.
    for (sample, expected) in [
        ("0000000060s", Duration::from_secs(60)),
        ("1.0000000001m", Duration::from_nanos(60_000_000_006)),
        ("00000000000000000000000000090s", Duration::from_secs(90)),
    ] {
        admit(&views, spec_with("syncInterval", json!(sample)))
            .await
            .unwrap_or_else(|message| panic!("syncInterval {sample:?} is refused: {message}"));
        assert_eq!(parse_duration(sample), Some(expected), "{sample:?}");
    }
    // Read the same as the API server's duration(): the old forms mean what they say.
    assert_eq!(parse_duration("0000000060s"), Some(Duration::from_secs(60)));
    assert_eq!(
        parse_duration("1.0000000001m"),
        Some(Duration::from_nanos(60_000_000_006))
    );
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
