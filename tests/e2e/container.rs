//! The container really is what the chart promises, read from the container's process on the node:
//! its user and group, its capabilities, its seccomp mode, its read-only root file system and the
//! memory and CPU limits of its cgroup.

use kube::ResourceExt;

use ppio_test_support::node::{
    Release, bytes_of, cgroup_dir, cgroup_number, client, container_pid, millicores_of, proc_status,
};

#[tokio::test]
async fn the_operator_container_runs_as_the_chart_promises() {
    let client = client().await;
    let release = Release::install("container", &[]);
    let pods = release.pods(&client).await;
    assert!(!pods.is_empty());
    for pod in &pods {
        let name = pod.name_any();
        let pid = container_pid(pod);
        let status = proc_status(pid);
        let field = |k: &str| {
            status
                .get(k)
                .unwrap_or_else(|| panic!("/proc/{pid}/status has no {k}"))
                .clone()
        };
        let ids =
            |k: &str| -> Vec<String> { field(k).split_whitespace().map(String::from).collect() };
        assert_eq!(
            ids("Uid"),
            vec!["65532"; 4],
            "{name}: real, effective, saved and fs uid"
        );
        assert_eq!(
            ids("Gid"),
            vec!["65532"; 4],
            "{name}: real, effective, saved and fs gid"
        );
        for caps in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
            assert_eq!(field(caps), "0000000000000000", "{name}: {caps}");
        }
        assert_eq!(field("NoNewPrivs"), "1", "{name}: no privilege escalation");
        assert_eq!(field("Seccomp"), "2", "{name}: seccomp in filter mode");

        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).expect("mounts");
        let root = mounts
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .rfind(|f| f.len() > 3 && f[1] == "/")
            .unwrap_or_else(|| panic!("{name}: no root mount in:\n{mounts}"));
        assert!(
            root[3].split(',').any(|o| o == "ro"),
            "{name}: the root file system is mounted {}",
            root[3]
        );

        let limits = pod.spec.as_ref().expect("spec").containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .expect("the chart sets limits");
        let memory_limit = bytes_of(&limits["memory"].0);
        let memory = cgroup_dir(pid, "memory");
        assert_eq!(
            cgroup_number(&memory, "memory.limit_in_bytes"),
            memory_limit,
            "{name}: the memory cgroup's limit"
        );
        let cpu = cgroup_dir(pid, "cpu");
        let quota = cgroup_number(&cpu, "cpu.cfs_quota_us");
        let period = cgroup_number(&cpu, "cpu.cfs_period_us");
        assert_eq!(
            quota * 1000 / period,
            millicores_of(&limits["cpu"].0),
            "{name}: the CPU cgroup's quota per period"
        );
        println!(
            "e2e: {name}: pid {pid}, uid/gid {}/{}, CapEff {}, Seccomp {}, root {}, memory limit {} MiB, \
             cgroup peak {:.1} MiB, VmHWM {}, cpu {}m",
            ids("Uid")[0],
            ids("Gid")[0],
            field("CapEff"),
            field("Seccomp"),
            root[3].split(',').next().unwrap_or_default(),
            memory_limit >> 20,
            cgroup_number(&memory, "memory.max_usage_in_bytes") as f64 / (1 << 20) as f64,
            field("VmHWM"),
            quota * 1000 / period,
        );
    }
}
