//! The operator binary as a separate process, the way it runs in a cluster: its own kubeconfig
//! (admin or a ServiceAccount token), its HTTP endpoints on a free port, and signals to stop it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::control_plane::{rand_suffix, target_dir};

/// A running `ppio-gpu-operator run`.
pub struct OperatorProcess {
    child: Child,
    /// `http://127.0.0.1:<port>` of its /healthz, /readyz and /metrics.
    pub http: String,
    /// Its log file.
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts the operator binary with `kubeconfig` and extra `args` after `run`.
    pub fn start<S: AsRef<std::ffi::OsStr>>(
        kubeconfig: &Path,
        identity: &str,
        args: &[S],
    ) -> OperatorProcess {
        let port = super::ports::free_local_port().expect("a free port on 127.0.0.1");
        let logs = target_dir().join("test-logs");
        std::fs::create_dir_all(&logs).expect("log directory");
        let log = logs.join(format!("operator-{identity}-{}.log", rand_suffix()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ppio-gpu-operator"))
            .arg("run")
            .arg("--http-address")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("PPIO_OPERATOR_LOG_FORMAT", "json")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().expect("log file")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the operator binary");
        OperatorProcess {
            child,
            http: format!("http://127.0.0.1:{port}"),
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
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits up to `timeout` for the process to exit; its exit code, or `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Its log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
