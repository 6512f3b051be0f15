//! The processes the benchmark starts (the test control plane, the PPIO simulator, the release-built
//! operator) and what it reads of them from outside: the line each prints when it serves, and the
//! kernel's counters of the operator's CPU time and peak memory.
//!
//! Every process is stopped when its [`Running`] is dropped, on success, on error or on Ctrl-C: its
//! standard input is closed (the control plane stops on that), then SIGTERM, then SIGKILL if it lingers.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a process may take to stop after SIGTERM before it is killed: above the operator's own
/// drain timeout (15 s) for syncs in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A child process, stopped when dropped.
pub struct Running {
    name: &'static str,
    child: Child,
    // Held open for the life of the process: closing it stops the control plane.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Running {
    /// Starts `command` with its standard output and standard error written to `log`.
    pub fn start(name: &'static str, command: Command, log: &Path) -> Result<Running, String> {
        Running::spawn(name, command, log, false)
    }

    /// Starts `command` with its standard error written to `log`, and waits up to `timeout` for the
    /// first line of its standard output that starts with `prefix`; returns the rest of that line.
    pub fn start_announcing(
        name: &'static str,
        command: Command,
        log: &Path,
        prefix: &'static str,
        timeout: Duration,
    ) -> Result<(Running, String), String> {
        let mut running = Running::spawn(name, command, log, true)?;
        let Some(stdout) = running.child.stdout.take() else {
            return Err(format!("the {name}'s standard output is not piped"));
        };
        // Read on a thread, so that a process that never prints cannot hang the benchmark.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let ready = lines.by_ref().find(|line| line.starts_with(prefix));
            let _ = ready_tx.send(ready);
            // Keep draining, so the process never blocks on a full pipe.
            for _ in lines {}
        });
        match ready_rx.recv_timeout(timeout) {
            Ok(Some(line)) => Ok((running, line[prefix.len()..].trim().to_owned())),
            Ok(None) => Err(format!(
                "the {name} exited before it printed \"{prefix}\"; its log is {}",
                running.log.display()
            )),
            Err(_) => Err(format!(
                "the {name} did not print \"{prefix}\" within {timeout:?}; its log is {}",
                running.log.display()
            )),
        }
    }

    fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
        pipe_stdout: bool,
    ) -> Result<Running, String> {
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
            name,
            stdin: child.stdin.take(),
            child,
            log: log.to_owned(),
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error naming the log when the process has exited.
    pub fn ensure_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "the {} exited ({status}); its log is {}",
                self.name,
                self.log.display()
            )),
            Err(e) => Err(format!("cannot check on the {}: {e}", self.name)),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Through the kill command, to keep the benchmark free of unsafe libc calls.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "bench: the {} did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the kernel counts for one process.
#[derive(Clone, Copy, Debug)]
pub struct ProcessCounters {
    /// CPU time in user and kernel mode, all threads (those that ended included).
    pub cpu: Duration,
    /// The most resident memory the process ever had (`VmHWM`), in bytes.
    pub peak_rss: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`. `ticks_per_second` is `getconf CLK_TCK`.
pub fn counters(pid: u32, ticks_per_second: u64) -> Result<ProcessCounters, String> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).map_err(|e| format!("cannot read {stat_path}: {e}"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{stat_path} has no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15; field 3 (state) is the first after the name.
    let ticks = |index: usize| -> Result<u64, String> {
        fields
            .get(index - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{stat_path}: field {index} is not a number"))
    };
    let cpu_ticks = ticks(14)? + ticks(15)?;

    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path)
        .map_err(|e| format!("cannot read {status_path}: {e}"))?;
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{status_path} has no VmHWM line"))?;

    Ok(ProcessCounters {
        cpu: Duration::from_secs_f64(cpu_ticks as f64 / ticks_per_second as f64),
        peak_rss: peak_kib * 1024,
    })
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times.
pub fn ticks_per_second() -> Result<u64, String> {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| format!("cannot run getconf CLK_TCK: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|&ticks| ticks > 0)
        .ok_or_else(|| "getconf CLK_TCK printed no positive number".to_owned())
}

/// The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`): on a shared machine, what
/// else ran beside the benchmark.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|loads| !loads.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
