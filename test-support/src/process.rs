//! A child process that tests and benchmarks start (the test control plane, the PPIO simulator, the
//! operator binary), stopped when its [`Running`] is dropped, on success, on failure and on Ctrl-C:
//! SIGTERM, then SIGKILL if it lingers past its stop timeout (at once, for a process marked with
//! [`Running::kill_when_dropped`]). Its standard input stays open meanwhile and is closed last, so
//! that one which stops on the end of its input (the control plane) still stops when the test
//! process itself is killed outright.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// How long a process may take to stop after SIGTERM before it is killed, unless told otherwise:
/// above the operator's own drain timeout (15 s) for syncs in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A child process, stopped when dropped.
pub struct Running {
    name: String,
    // Behind a lock so that a shared `Running` can be asked whether it still runs.
    child: Mutex<Child>,
    pid: u32,
    // Held open for the life of the process: closing it stops the control plane.
    stdin: Option<ChildStdin>,
    log: PathBuf,
    stop_timeout: Duration,
}

impl Running {
    /// Starts `command` with its standard output and standard error written to `log`.
    pub fn start(name: &str, command: Command, log: &Path) -> Result<Running, String> {
        Running::spawn(name, command, log, false)
    }

    /// Starts `command` with its standard error written to `log`, and waits up to `timeout` for the
    /// first line of its standard output that starts with `prefix`; returns the rest of that line.
    pub fn start_announcing(
        name: &str,
        command: Command,
        log: &Path,
        prefix: &'static str,
        timeout: Duration,
    ) -> Result<(Running, String), String> {
        let running = Running::start_reading_output(name, command, log)?;
        let line = running.announced(prefix, timeout)?;
        Ok((running, line))
    }

    /// Starts `command` with its standard error written to `log` and its standard output left for
    /// [`Running::announced`] to read.
    pub fn start_reading_output(
        name: &str,
        command: Command,
        log: &Path,
    ) -> Result<Running, String> {
        Running::spawn(name, command, log, true)
    }

    /// Waits up to `timeout` for the first line of the process's standard output that starts with
    /// `prefix`, and returns the rest of that line; the rest of its output is read and dropped. Once
    /// only, for a process started with [`Running::start_reading_output`].
    pub fn announced(&self, prefix: &'static str, timeout: Duration) -> Result<String, String> {
        let name = &self.name;
        let Some(stdout) = self.lock().stdout.take() else {
            return Err(format!("the {name}'s standard output is not there to read"));
        };
        // Read on a thread, so that a process that never prints cannot hang the caller.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let ready = lines.by_ref().find(|line| line.starts_with(prefix));
            let _ = ready_tx.send(ready);
            // Keep draining, so the process never blocks on a full pipe.
            for _ in lines {}
        });
        match ready_rx.recv_timeout(timeout) {
            Ok(Some(line)) => Ok(line[prefix.len()..].trim().to_owned()),
            Ok(None) => Err(format!(
                "the {name} exited before it printed \"{prefix}\"; its log is {}",
                self.log.display()
            )),
            Err(_) => Err(format!(
                "the {name} did not print \"{prefix}\" within {timeout:?}; its log is {}",
                self.log.display()
            )),
        }
    }

    fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        pipe_stdout: bool,
    ) -> Result<Running, String> {
        if let Some(directory) = log.parent() {
            std::fs::create_dir_all(directory)
                .map_err(|e| format!("cannot create {}: {e}", directory.display()))?;
        }
        let log_file =
            File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let stdout = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(
                log_file
                    .try_clone()
                    .map_err(|e| format!("cannot share {}: {e}", log.display()))?,
            )
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("cannot start the {name} ({command:?}): {e}"))?;
        Ok(Running {
            name: name.to_owned(),
            pid: child.id(),
            stdin: child.stdin.take(),
            child: Mutex::new(child),
            log: log.to_owned(),
            stop_timeout: STOP_TIMEOUT,
        })
    }

    /// The same process, given `timeout` after SIGTERM before it is killed.
    pub fn with_stop_timeout(mut self, timeout: Duration) -> Running {
        self.stop_timeout = timeout;
        self
    }

    /// The same process, killed (SIGKILL) at once when dropped: a test's end is no shutdown to
    /// wait for.
    pub fn kill_when_dropped(self) -> Running {
        self.with_stop_timeout(Duration::ZERO)
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How it exited, or `None` while it runs.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    /// An error naming the log when the process has exited.
    pub fn ensure_running(&self) -> Result<(), String> {
        match self.lock().try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "the {} exited ({status}); its log is {}",
                self.name,
                self.log.display()
            )),
            Err(e) => Err(format!("cannot check on the {}: {e}", self.name)),
        }
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: impl AsRef<OsStr>) {
        send_signal(self.pid, signal);
    }

    /// Waits up to `timeout` for the process to exit; its exit code (-1 for a signal), or `None`
    /// if it still runs.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status.code().unwrap_or(-1));
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process as dropping it would, and waits until it has exited.
    pub fn stop(self) {
        drop(self);
    }

    fn lock(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let name = self.name.clone();
        let stop_timeout = self.stop_timeout;
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            terminate(child, &name, stop_timeout, &self.log);
        }
        // Only now: a process that stops on the end of its input (the control plane) must not be
        // told twice, since a second signal makes the API server exit at once, skipping its clean-up.
        drop(self.stdin.take());
    }
}

/// SIGTERM, then SIGKILL if `child` lingers past `stop_timeout` (at once when it is zero).
fn terminate(child: &mut Child, name: &str, stop_timeout: Duration, log: &Path) {
    if !stop_timeout.is_zero() {
        send_signal(child.id(), "TERM");
        let deadline = Instant::now() + stop_timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "the {name} did not stop within {stop_timeout:?} of SIGTERM; killing it (log: {})",
            log.display()
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` (e.g. `TERM`) to the process `pid`, through the kill command, to keep tests and
/// benchmarks free of unsafe libc calls.
fn send_signal(pid: u32, signal: impl AsRef<OsStr>) {
    let mut flag = std::ffi::OsString::from("-");
    flag.push(signal);
    let _ = Command::new("kill").arg(flag).arg(pid.to_string()).status();
}
