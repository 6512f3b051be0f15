//! The real Kubernetes control plane that integration tests and `benches/scale` run against.
//!
//! One launcher (`tests/control-plane`, built by `make control-plane`) is started per test run and
//! shared by every test ([`shared`]), or an already running one is used when `PPIO_TEST_KUBECONFIG`
//! names its kubeconfig. A test that needs its own control plane (to restart it) starts a private one.
//!
//! The launcher stops and removes its files on SIGTERM, which it gets when its [`ControlPlane`] is
//! dropped. It is also started with `--stop-on-stdin-eof` and our end of its standard input is held
//! until then, so it stops as well when the test process ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::objects::rand_suffix;
use crate::paths::target_dir;
use crate::process::Running;

/// Environment variable naming the kubeconfig of a control plane that is already running.
pub const KUBECONFIG_ENV: &str = "PPIO_TEST_KUBECONFIG";
/// Environment variable naming the launcher binary, when it is not at its default place.
pub const LAUNCHER_ENV: &str = "KUBE_CONTROL_PLANE_BIN";

/// How long the launcher may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long it may take to stop (etcd's and the API server's shutdown).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running control plane, as the tests see it.
pub struct ControlPlane {
    /// Admin kubeconfig (static token in `system:masters`, CA data for the serving certificate).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>` of the API server.
    pub server: String,
    process: Option<Running>,
}

/// The control plane shared by all tests of this run, started on first use.
pub fn shared() -> &'static ControlPlane {
    static SHARED: OnceLock<ControlPlane> = OnceLock::new();
    SHARED.get_or_init(|| {
        if let Some(kubeconfig) = std::env::var_os(KUBECONFIG_ENV) {
            let kubeconfig = PathBuf::from(kubeconfig);
            let server = server_of(&kubeconfig);
            return ControlPlane {
                kubeconfig,
                server,
                process: None,
            };
        }
        ControlPlane::start(None).unwrap_or_else(|e| panic!("{e}"))
    })
}

impl ControlPlane {
    /// Starts the launcher at its default place (or `KUBE_CONTROL_PLANE_BIN`), its log under
    /// `target/test-logs`. With a data directory, a restart on it keeps the cluster's state, its
    /// address and its credentials.
    pub fn start(data_dir: Option<&Path>) -> Result<ControlPlane, String> {
        let log = target_dir().join("test-logs").join(format!(
            "control-plane-{}-{}.log",
            std::process::id(),
            rand_suffix()
        ));
        ControlPlane::start_launcher(&launcher_path()?, data_dir, &log)
    }

    /// Starts the launcher at `launcher`, writing its log to `log`.
    pub fn start_launcher(
        launcher: &Path,
        data_dir: Option<&Path>,
        log: &Path,
    ) -> Result<ControlPlane, String> {
        let mut command = Command::new(launcher);
        command.arg("--stop-on-stdin-eof");
        if let Some(dir) = data_dir {
            command.arg("--data-dir").arg(dir);
        }
        let process = Running::start_reading_output("control plane", command, log)?
            .with_stop_timeout(STOP_TIMEOUT);
        let line = process.announced("READY ", READY_TIMEOUT)?;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_owned)
                .ok_or_else(|| format!("launcher READY line lacks {name}: {line}"))
        };
        Ok(ControlPlane {
            kubeconfig: PathBuf::from(field("kubeconfig=")?),
            server: field("server=")?,
            process: Some(process),
        })
    }

    /// The launcher's process ID, when this process started it.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Running::pid)
    }

    /// Stops the launcher and waits until it has exited.
    pub fn stop(mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }

    /// A kube client with the admin identity.
    pub async fn client(&self) -> kube::Client {
        self.try_client().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The admin client configuration, to derive other identities from.
    pub async fn config(&self) -> kube::Config {
        self.try_config().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A kube client with the admin identity, or why there is none.
    pub async fn try_client(&self) -> Result<kube::Client, String> {
        let config = self.try_config().await?;
        kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
    }

    async fn try_config(&self) -> Result<kube::Config, String> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| format!("cannot read {}: {e}", self.kubeconfig.display()))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| format!("invalid kubeconfig {}: {e}", self.kubeconfig.display()))
    }
}

fn launcher_path() -> Result<PathBuf, String> {
    launcher_at(
        std::env::var_os(LAUNCHER_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("control-plane/kube-control-plane")),
    )
}

/// `path` if the launcher is there, else an error that says how to get it.
pub fn launcher_at(path: PathBuf) -> Result<PathBuf, String> {
    if path.is_file() {
        return Ok(path);
    }
    Err(format!(
        "the test control plane launcher is missing at {}.\n\
         Integration tests run against a real kube-apiserver built from the Kubernetes Go modules.\n\
         Build it with `make control-plane` (needs Go; see README.md), or set {LAUNCHER_ENV} to the \
         launcher, or {KUBECONFIG_ENV} to the kubeconfig of a control plane that is already running.",
        path.display()
    ))
}

fn server_of(kubeconfig: &Path) -> String {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", kubeconfig.display()));
    config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| panic!("{} names no server", kubeconfig.display()))
}
