//! What the benchmark reads from outside of the processes it started: the kernel's counters of their
//! CPU time and peak memory, and the machine's load.

use std::process::Command;
use std::time::Duration;

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
