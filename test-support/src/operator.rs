//! The operator, started for one test: its controller in the test's process, watching only the
//! test's namespace ([`RunningOperator`]), or its binary as a separate process, the way it runs in a
//! cluster ([`OperatorProcess`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use ppio_gpu_operator::controller::{self, Context, EndpointPolicy, Settings};
use ppio_gpu_operator::process::http::Health;
use ppio_gpu_operator::process::metrics::Metrics;
use url::Url;

use crate::objects::rand_suffix;
use crate::paths::target_dir;
use crate::process::Running;

/// The operator's controller, running until dropped.
pub struct RunningOperator {
    task: tokio::task::JoinHandle<()>,
    /// Its metrics, as its `/metrics` would render them.
    pub metrics: Metrics,
}

impl RunningOperator {
    /// Runs the controller over `namespace` only, allowing views to use `endpoint`.
    pub fn start(client: Client, namespace: &str, endpoint: &str) -> RunningOperator {
        RunningOperator::start_with(client, namespace, endpoint, |_| {})
    }

    /// The same, with `adjust` changing the test settings first.
    pub fn start_with(
        client: Client,
        namespace: &str,
        endpoint: &str,
        adjust: impl FnOnce(&mut Settings),
    ) -> RunningOperator {
        let mut settings = Settings {
            endpoints: EndpointPolicy::new(vec![Url::parse(endpoint).expect("endpoint URL")]),
            ppio: ppio::ClientConfig {
                request_timeout: Duration::from_secs(2),
                ..Default::default()
            },
            listing_limits: ppio::ListingLimits {
                retry_base: Duration::from_millis(20),
                ..Default::default()
            },
            ..Settings::default()
        };
        adjust(&mut settings);
        let namespaces = vec![namespace.to_owned()];
        let metrics = Metrics::new();
        let context = Arc::new(Context::new(
            client,
            settings,
            metrics.clone(),
            "integration-tests",
        ));
        let task = tokio::spawn(controller::run(
            context,
            namespaces,
            Arc::new(Health::default()),
            std::future::pending::<()>(),
        ));
        RunningOperator { task, metrics }
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The operator binary as a separate process: its own kubeconfig (admin or a ServiceAccount
/// token), its HTTP endpoints on a loopback port, signals to stop it. Killed when dropped.
pub struct OperatorProcess {
    process: Running,
    /// `http://127.0.0.1:<port>` of its /healthz, /readyz and /metrics.
    pub http: String,
    /// Its log file.
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `binary run --http-address 127.0.0.1:<free port> <args>` with `kubeconfig`, as the
    /// pod `identity`, outside any namespace of its own (no `POD_NAMESPACE`).
    pub fn start<S: AsRef<std::ffi::OsStr>>(
        binary: &Path,
        kubeconfig: &Path,
        identity: &str,
        args: &[S],
    ) -> OperatorProcess {
        OperatorProcess::start_with_env(binary, kubeconfig, identity, args, &[])
    }

    /// [`OperatorProcess::start`] with `env` set for the process too, e.g. `TOKIO_WORKER_THREADS`
    /// to run it with as few async workers as a pod under a CPU limit of one core or less has.
    pub fn start_with_env<S: AsRef<std::ffi::OsStr>>(
        binary: &Path,
        kubeconfig: &Path,
        identity: &str,
        args: &[S],
        env: &[(&str, &str)],
    ) -> OperatorProcess {
        let port = crate::ports::free_local_port().expect("a free port on 127.0.0.1");
        let http_address = format!("127.0.0.1:{port}");
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("--http-address")
            .arg(&http_address)
            .args(args)
            .env("PPIO_OPERATOR_LOG_FORMAT", "json")
            .env_remove("POD_NAMESPACE")
            .envs(env.iter().copied());
        let log = format!("operator-{identity}-{}.log", rand_suffix());
        OperatorProcess::spawn(command, kubeconfig, identity, &http_address, &log)
    }

    /// Starts `binary <args>` as the chart's pod runs it (the Deployment's arguments), but serving
    /// on a free loopback port instead of its `--http-address=`, with `kubeconfig` instead of the
    /// ServiceAccount mount, as the pod `pod_name` in `pod_namespace`.
    pub fn start_as_pod(
        binary: &Path,
        args: &[String],
        kubeconfig: &Path,
        pod_name: &str,
        pod_namespace: &str,
    ) -> OperatorProcess {
        let port = crate::ports::free_local_port().expect("a free port on 127.0.0.1");
        let http_address = format!("127.0.0.1:{port}");
        let args = args
            .iter()
            .map(|arg| match arg.strip_prefix("--http-address=") {
                Some(_) => format!("--http-address={http_address}"),
                None => arg.clone(),
            });
        let mut command = Command::new(binary);
        command.args(args).env("POD_NAMESPACE", pod_namespace);
        let log = format!("chart-operator-{pod_name}.log");
        OperatorProcess::spawn(command, kubeconfig, pod_name, &http_address, &log)
    }

    fn spawn(
        mut command: Command,
        kubeconfig: &Path,
        pod_name: &str,
        http_address: &str,
        log: &str,
    ) -> OperatorProcess {
        command
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod_name);
        let log = target_dir().join("test-logs").join(log);
        let process = Running::start("operator", command, &log)
            .unwrap_or_else(|e| panic!("{e}"))
            .kill_when_dropped();
        OperatorProcess {
            process,
            http: format!("http://{http_address}"),
            log,
        }
    }

    /// GETs one of its endpoints: status code and body, or `None` while it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.http))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let code = response.status().as_u16();
        Some((code, response.text().await.ok()?))
    }

    /// The value of a metric line starting with `prefix` (name and labels), if exported.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        self.process.signal(signal);
    }

    /// Waits up to `timeout` for the process to exit; its exit code, or `None` if it still runs.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        self.process.wait_exit(timeout).await
    }

    /// Panics with the operator's log when it has exited (a flag it rejected, a fatal error).
    pub fn assert_running(&self) {
        if let Some(status) = self.process.exit_status() {
            panic!(
                "the operator exited ({status}); its log ({}):\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }

    /// Its log so far, for failure messages.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}
