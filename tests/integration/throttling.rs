//! The operator under an API server that throttles it: an admission webhook answering its writes of
//! GpuInstances with 429 (as a policy engine or a quota may), and API Priority and Fairness
//! rejecting its requests beyond one seat. Each throttling lasts a while, then stops; the view must
//! say `ApiServerThrottled` meanwhile, and the remote changes made meanwhile must reach the cluster
//! within about one sync interval of the end (the view's backoff is capped at its interval plus a
//! tenth of jitter; [`RESUME_SLACK`] more for the sync itself and the watch).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use ppio_simulator::generate_instances;
use ppio_test_support::fixture::Fixture;
use ppio_test_support::operator::OperatorProcess;
use ppio_test_support::{shared, wait_for};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The views' sync interval (the shortest allowed).
const INTERVAL: Duration = Duration::from_secs(10);
/// Beyond the interval and its tenth of jitter: the sync that writes the change, and the watch.
const RESUME_SLACK: Duration = Duration::from_secs(7);
/// How long the throttling lasts: long enough that kube's own retry (5 ms doubling, 15 times) is
/// asleep for tens of seconds when it ends.
const REFUSALS: Duration = Duration::from_secs(60);

/// The longest a remote change may take to appear once the throttling ended.
fn resume_bound() -> Duration {
    INTERVAL.mul_f64(1.1) + RESUME_SLACK
}

/// An admission webhook served on loopback over HTTPS: it refuses every request with 429 while
/// `refusing`, and allows it otherwise.
struct Webhook {
    url: String,
    ca_bundle: String,
    refusing: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Webhook {
    async fn start() -> Webhook {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
        let ca_bundle =
            base64::engine::general_purpose::STANDARD.encode(certified.cert.pem().as_bytes());
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .expect("the key as DER");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("the server's TLS configuration");
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!(
            "https://{}/validate",
            listener.local_addr().expect("its address")
        );
        let refusing = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let server = {
            let (refusing, refused) = (refusing.clone(), refused.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, refusing, refused) =
                        (acceptor.clone(), refusing.clone(), refused.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |request: hyper::Request<Incoming>| {
                            let (refusing, refused) = (refusing.clone(), refused.clone());
                            async move {
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let review: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let uid = review["request"]["uid"].clone();
                                let response = if refusing.load(Ordering::SeqCst) {
                                    refused.fetch_add(1, Ordering::SeqCst);
                                    json!({ "uid": uid, "allowed": false, "status": {
                                        "code": 429,
                                        "reason": "TooManyRequests",
                                        "message": "the test's policy throttles writes of GpuInstances"
                                    }})
                                } else {
                                    json!({ "uid": uid, "allowed": true })
                                };
                                let answer = json!({
                                    "apiVersion": "admission.k8s.io/v1",
                                    "kind": "AdmissionReview",
                                    "response": response,
                                });
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(answer.to_string())))
                                        .expect("a response"),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        Webhook {
            url,
            ca_bundle,
            refusing,
            refused,
            server,
        }
    }
}

/// A cluster-scoped object of the test, deleted when dropped.
struct ClusterObject {
    api: Api<DynamicObject>,
    name: String,
}

impl ClusterObject {
    async fn create(client: &Client, gvk: (&str, &str, &str), plural: &str, object: Value) -> Self {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let object: DynamicObject = serde_json::from_value(object).expect("a valid object");
        let created = api
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("cannot create {plural}: {e}"));
        ClusterObject {
            api,
            name: created.metadata.name.expect("a name"),
        }
    }

    async fn delete(self) {
        let _ = self.api.delete(&self.name, &DeleteParams::default()).await;
        std::mem::forget(self);
    }
}

impl Drop for ClusterObject {
    fn drop(&mut self) {
        // A test that failed: remove it from a runtime of our own, as the namespaces are.
        let (api, name) = (self.api.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

/// How many of the simulator's first `count` instances have a mirror showing their new name.
async fn renamed_mirrors(fx: &Fixture, ids: &[String]) -> usize {
    let mirrors = fx.mirrors_of("v").await;
    ids.iter()
        .filter(|id| {
            mirrors.iter().any(|m| {
                m.status.as_ref().is_some_and(|s| {
                    s.id.as_deref() == Some(id.as_str()) && s.name.as_deref() == Some(&renamed(id))
                })
            })
        })
        .count()
}

fn renamed(id: &str) -> String {
    format!("renamed-while-throttled-{id}")
}

/// Waits until the view's Ready condition says `reason`, at most `limit`.
async fn wait_reason(fx: &Fixture, reason: &str, limit: Duration) -> String {
    wait_for(&format!("the view to say {reason}"), limit, || async {
        let view = fx.views().get("v").await.ok()?;
        let ready = view
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.reason == reason).then_some(ready.message)
    })
    .await
}

/// How a test throttles the operator.
struct Throttling<T, L> {
    /// Starts it; resolves once it is in force.
    throttle: T,
    /// Ends it.
    lift: L,
    /// Instances renamed remotely meanwhile.
    renames: usize,
    /// Whether every write is refused, so that the view must say so and nothing may be written.
    refuses_all: bool,
}

/// Renames instances remotely while the operator is throttled for [`REFUSALS`]; asserts the view
/// says so meanwhile (when every write is refused), and that every change appears within
/// [`resume_bound`] of the end. The resume time, measured.
async fn throttled_then_lifted<T, L>(
    fx: &Fixture,
    operator: &OperatorProcess,
    throttling: Throttling<T, L>,
) -> Duration
where
    T: std::future::Future<Output = ()>,
    L: std::future::Future<Output = ()>,
{
    let ids: Vec<String> = fx.simulator().instances()[..throttling.renames]
        .iter()
        .map(|i| i["id"].as_str().expect("an ID").to_owned())
        .collect();
    let started = Instant::now();
    throttling.throttle.await;
    for id in &ids {
        assert!(
            fx.simulator()
                .patch_instance(id, json!({ "name": renamed(id) }))
        );
    }
    if throttling.refuses_all {
        let message = wait_reason(fx, "ApiServerThrottled", Duration::from_secs(45)).await;
        assert!(message.contains("429"), "{message}");
        assert_eq!(
            renamed_mirrors(fx, &ids).await,
            0,
            "nothing is written while the API server refuses it"
        );
    }
    operator.assert_running();
    tokio::time::sleep(REFUSALS.saturating_sub(started.elapsed())).await;

    throttling.lift.await;
    let lifted = Instant::now();
    wait_for(
        "the changes made while throttled to reach the cluster",
        Duration::from_secs(180),
        || async { (renamed_mirrors(fx, &ids).await == ids.len()).then_some(()) },
    )
    .await;
    let resumed = lifted.elapsed();
    println!(
        "resumed {:.1}s after the throttling ended",
        resumed.as_secs_f64()
    );
    assert!(
        resumed <= resume_bound(),
        "the changes appeared {resumed:?} after the throttling ended, more than {:?}: {}",
        resume_bound(),
        operator.log_text()
    );
    fx.wait_ready("v", true, "Synced").await;
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_with_429_by_a_webhook_are_reported_and_resume_within_an_interval() {
    let fx = Fixture::without_operator(shared(), "throttle-hook", generate_instances(4, 26)).await;
    let webhook = Webhook::start().await;
    let args = fx.replica_args(&[]);
    let operator = OperatorProcess::start(
        crate::operator_binary(),
        &shared().kubeconfig,
        "throttled",
        &args,
    );
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    let probe = fx.mirrors_of("v").await[0]
        .metadata
        .name
        .clone()
        .expect("a name");

    let ns = fx.ns.name.clone();
    let name = format!("throttle-{ns}");
    let refusing = webhook.refusing.clone();
    let mut configuration = None;
    let throttle = async {
        refusing.store(true, Ordering::SeqCst);
        configuration = Some(
            ClusterObject::create(
                &fx.ns.client,
                (
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingWebhookConfiguration",
                ),
                "validatingwebhookconfigurations",
                json!({
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "ValidatingWebhookConfiguration",
                    "metadata": { "name": name },
                    "webhooks": [{
                        "name": "throttle.test.ppio.io",
                        "clientConfig": { "url": webhook.url, "caBundle": webhook.ca_bundle },
                        "rules": [{
                            "apiGroups": ["gpu.ppio.io"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["gpuinstances", "gpuinstances/status"],
                        }],
                        // This test's namespace only: the control plane is shared.
                        "namespaceSelector": { "matchLabels": {
                            "kubernetes.io/metadata.name": ns
                        }},
                        "failurePolicy": "Fail",
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "timeoutSeconds": 5,
                    }],
                }),
            )
            .await,
        );
        // In force once a write (a dry run, which changes nothing) is refused; asked by a client
        // without kube's retry, which would sleep through the refusals.
        let mut config = shared().config().await;
        config.default_retry = false;
        let probing = Client::try_from(config).expect("a client");
        let instances: Api<ppio_gpu_core::api::GpuInstance> = Api::namespaced(probing, &fx.ns.name);
        wait_for(
            "the webhook to refuse writes",
            Duration::from_secs(30),
            || {
                let (instances, probe) = (instances.clone(), probe.clone());
                async move {
                    let params = kube::api::PatchParams {
                        dry_run: true,
                        ..Default::default()
                    };
                    let patch = json!({ "metadata": { "labels": { "probe": "x" } } });
                    match instances
                        .patch(&probe, &params, &kube::api::Patch::Merge(&patch))
                        .await
                    {
                        Err(kube::Error::Api(status)) if status.code == 429 => Some(()),
                        _ => None,
                    }
                }
            },
        )
        .await;
    };
    let lift = async {
        refusing.store(false, Ordering::SeqCst);
    };
    throttled_then_lifted(
        &fx,
        &operator,
        Throttling {
            throttle,
            lift,
            renames: 1,
            refuses_all: true,
        },
    )
    .await;
    assert!(
        webhook.refused.load(Ordering::SeqCst) > 1,
        "the webhook refused the operator's writes"
    );
    if let Some(configuration) = configuration {
        configuration.delete().await;
    }
}

/// A ServiceAccount in the fixture's namespace, allowed what the operator does there, and a
/// kubeconfig that authenticates as it.
async fn operator_account(fx: &Fixture) -> tempfile::NamedTempFile {
    let client = &fx.ns.client;
    let ns = &fx.ns.name;
    let account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "operator" } })).expect("valid");
    fx.ns
        .api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await
        .expect("create the ServiceAccount");
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "operator" },
        "rules": [
            { "apiGroups": ["gpu.ppio.io"], "resources": ["*"], "verbs": ["*"] },
            { "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] },
            { "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"] },
        ]
    }))
    .expect("valid Role");
    fx.ns
        .api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create the Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "operator" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator" },
        "subjects": [{ "kind": "ServiceAccount", "name": "operator", "namespace": ns }]
    }))
    .expect("valid RoleBinding");
    fx.ns
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create the RoleBinding");
    let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(
            "operator",
            &PostParams::default(),
            &serde_json::from_value(json!({ "spec": { "expirationSeconds": 3600 } }))
                .expect("valid TokenRequest"),
        )
        .await
        .expect("a token")
        .status
        .expect("its status")
        .token;
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(&shared().kubeconfig).expect("the admin kubeconfig"),
    )
    .expect("kubeconfig YAML");
    for user in config["users"].as_sequence_mut().expect("users") {
        user["user"] = serde_yaml_ng::to_value(json!({ "token": token })).expect("YAML");
    }
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("a temporary file");
    std::io::Write::write_all(
        &mut file,
        serde_yaml_ng::to_string(&config).expect("YAML").as_bytes(),
    )
    .expect("write the kubeconfig");
    file
}

/// Requests the API server's Priority and Fairness rejected at `priority_level`, from its metrics.
async fn rejected_at(client: &Client, priority_level: &str) -> f64 {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let Ok(text) = client.request_text(request).await else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with("apiserver_flowcontrol_rejected_requests_total{"))
        .filter(|l| l.contains(&format!("priority_level=\"{priority_level}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_rejected_by_priority_and_fairness_are_reported_and_resume_within_an_interval() {
    let fx = Fixture::without_operator(shared(), "throttle-apf", generate_instances(24, 27)).await;
    let kubeconfig = operator_account(&fx).await;
    // Sixteen writes in flight against one seat, without queuing: most are rejected with 429.
    let args = fx.replica_args(&["--write-concurrency", "16"]);
    let operator =
        OperatorProcess::start(crate::operator_binary(), kubeconfig.path(), "apf", &args);
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;

    let ns = fx.ns.name.clone();
    let level = format!("throttle-{ns}");
    let client = fx.ns.client.clone();
    let objects = std::sync::Mutex::new(Vec::new());
    let flowcontrol = |kind| ("flowcontrol.apiserver.k8s.io", "v1", kind);
    let throttle = async {
        let created = ClusterObject::create(
            &client,
            flowcontrol("PriorityLevelConfiguration"),
            "prioritylevelconfigurations",
            json!({
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "PriorityLevelConfiguration",
                "metadata": { "name": level },
                "spec": { "type": "Limited", "limited": {
                    "nominalConcurrencyShares": 1,
                    "lendablePercent": 0,
                    "borrowingLimitPercent": 0,
                    "limitResponse": { "type": "Reject" },
                }},
            }),
        )
        .await;
        objects.lock().expect("not poisoned").push(created);
        let created = ClusterObject::create(
            &client,
            flowcontrol("FlowSchema"),
            "flowschemas",
            json!({
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": { "name": level },
                "spec": {
                    "priorityLevelConfiguration": { "name": level },
                    "matchingPrecedence": 100,
                    "distinguisherMethod": { "type": "ByUser" },
                    "rules": [{
                        "subjects": [{ "kind": "ServiceAccount", "serviceAccount": {
                            "name": "operator", "namespace": ns
                        }}],
                        "resourceRules": [{
                            "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                            "namespaces": ["*"], "clusterScope": true,
                        }],
                    }],
                },
            }),
        )
        .await;
        objects.lock().expect("not poisoned").push(created);
    };
    let lift = async {
        let created = std::mem::take(&mut *objects.lock().expect("not poisoned"));
        for object in created.into_iter().rev() {
            object.delete().await;
        }
    };
    // Every instance renamed: its writes, sixteen in flight, meet the level of one seat.
    let resumed = throttled_then_lifted(
        &fx,
        &operator,
        Throttling {
            throttle,
            lift,
            renames: 24,
            refuses_all: false,
        },
    )
    .await;
    let rejected = rejected_at(&client, &level).await;
    println!("Priority and Fairness rejected {rejected} requests; resumed in {resumed:?}");
    assert!(
        rejected > 0.0,
        "the priority level rejected some of the operator's requests"
    );
}
