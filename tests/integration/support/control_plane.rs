//! The real Kubernetes control plane the integration tests run against.
//!
//! One launcher (`tests/control-plane`, built by `make control-plane`) is started per test run and
//! shared by every test, or an already running one is used when `PPIO_TEST_KUBECONFIG` names its
//! kubeconfig. A test that needs its own control plane (to restart it) starts a private one.
//!
//! The launcher is started with `--stop-on-stdin-eof` and our end of its standard input is held for
//! the life of the test process, so it stops and removes its files when the tests end, however they end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// Environment variable naming the kubeconfig of a control plane that is already running.
pub const KUBECONFIG_ENV: &str = "PPIO_TEST_KUBECONFIG";
/// Environment variable naming the launcher binary, when it is not at its default place.
pub const LAUNCHER_ENV: &str = "KUBE_CONTROL_PLANE_BIN";

const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// A running control plane, as the tests see it.
pub struct ControlPlane {
    /// Admin kubeconfig (static token in `system:masters`, CA data for the serving certificate).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>` of the API server.
    pub server: String,
    process: Option<LauncherProcess>,
}

struct LauncherProcess {
    child: Child,
    // Dropping this closes the launcher's stdin, which stops it.
    _stdin: ChildStdin,
    log: PathBuf,
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
    /// Starts a launcher. With a data directory, a restart on it keeps the cluster's state, its
    /// address and its credentials.
    pub fn start(data_dir: Option<&Path>) -> Result<ControlPlane, String> {
        let launcher = launcher_path()?;
        let logs = target_dir().join("test-logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
        let log = logs.join(format!(
            "control-plane-{}-{}.log",
            std::process::id(),
            rand_suffix()
        ));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;

        let mut command = Command::new(&launcher);
        command.arg("--stop-on-stdin-eof");
        if let Some(dir) = data_dir {
            command.arg("--data-dir").arg(dir);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launcher.display()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");

        // Read the READY line on a thread so that a launcher that hangs cannot hang the tests.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let ready = lines
                .by_ref()
                .map_while(Result::ok)
                .find(|line| line.starts_with("READY "));
            let _ = tx.send(ready);
            // Keep draining so the launcher never blocks on a full pipe.
            for _ in lines {}
        });
        let process = LauncherProcess {
            child,
            _stdin: stdin,
            log: log.clone(),
        };
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => {
                drop(process);
                return Err(format!(
                    "the test control plane did not become ready within {READY_TIMEOUT:?}; its log is {}",
                    log.display()
                ));
            }
        };
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

    /// Stops the launcher (SIGTERM) and waits until it has exited.
    pub fn stop(mut self) {
        if let Some(process) = self.process.take() {
            process.terminate();
        }
    }

    /// A kube client with the admin identity.
    pub async fn client(&self) -> kube::Client {
        let config = self.config().await;
        kube::Client::try_from(config).expect("kube client from the admin kubeconfig")
    }

    /// The admin client configuration, to derive other identities from.
    pub async fn config(&self) -> kube::Config {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.kubeconfig.display()));
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("valid admin kubeconfig")
    }
}

impl LauncherProcess {
    fn terminate(mut self) {
        // Through the kill command, to keep the tests free of unsafe libc calls.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "the test control plane did not stop within 60s of SIGTERM; killing it (log: {})",
            self.log.display()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.terminate();
        }
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

/// The Cargo target directory of this build.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
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

/// A short random suffix for names that must not collide between tests or runs.
pub fn rand_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
