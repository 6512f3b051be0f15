//! Realistic generated instance records, deterministic for a seed.
//!
//! [`generate_instances`] makes records shaped like the real API's: 10-hex-character ids, workload-like
//! names and images, GPU and CPU products, four regions, mostly `running` with the other documented
//! statuses mixed in, the three billing modes (prepaid with its block), environment variables whose
//! values look like tokens (what the operator must never mirror), ports with endpoints, volumes, VPC
//! networks and timestamps. Like the captured real response, about a quarter of the records carry their
//! int64 fields (timestamps, `memory_gb`, `end_time`) as JSON strings, and `region_version` is `v1` or
//! `v2`.
//!
//! Randomness comes from a SplitMix64 generator written here rather than from `rand`, whose algorithms
//! may change between versions: the same `count` and `seed` give the same records on every build, and
//! the first `n` records of a larger count are the records of count `n`. Timestamps count back from a
//! fixed instant, not from now, for the same reason.

use std::collections::HashSet;

use serde_json::{Value, json};

/// Generated timestamps lie before this instant: 2026-01-01T00:00:00Z.
const GENERATION_EPOCH: i64 = 1_767_225_600;
const DAY: i64 = 86_400;

/// Regions instances are spread over.
pub(crate) const REGIONS: [&str; 4] = ["cn-east-1", "cn-north-2", "us-west-1", "ap-southeast-1"];

/// Remote statuses with their weights (out of 100): mostly running.
const STATUSES: [(&str, u64); 12] = [
    ("running", 68),
    ("exited", 10),
    ("pulling", 4),
    ("creating", 4),
    ("toCreate", 2),
    ("toStart", 3),
    ("starting", 3),
    ("stopping", 2),
    ("toStop", 1),
    ("restarting", 1),
    ("migrating", 1),
    ("toRestart", 1),
];

/// A product: its id, the CPU cores and memory (GB) it gives per GPU (per instance for CPU ones),
/// its GPU model and card memory (none for CPU ones), and its postpaid price per card-hour (per
/// instance-hour for CPU ones) in thousandths, as the product list sends it at precision 3.
pub(crate) struct Product {
    pub(crate) id: &'static str,
    pub(crate) cpu: i64,
    pub(crate) memory_gb: i64,
    pub(crate) gpu: Option<(&'static str, i64)>,
    pub(crate) postpaid_price: i64,
}

pub(crate) const GPU_PRODUCTS: [Product; 6] = [
    Product {
        id: "rtx4090-24g",
        cpu: 16,
        memory_gb: 62,
        gpu: Some(("RTX 4090", 24)),
        postpaid_price: 2180,
    },
    Product {
        id: "rtx3090-24g",
        cpu: 12,
        memory_gb: 46,
        gpu: Some(("RTX 3090", 24)),
        postpaid_price: 1300,
    },
    Product {
        id: "l40s-48g",
        cpu: 16,
        memory_gb: 94,
        gpu: Some(("L40S", 48)),
        postpaid_price: 4500,
    },
    Product {
        id: "rtx6000ada-48g",
        cpu: 14,
        memory_gb: 94,
        gpu: Some(("RTX 6000 Ada", 48)),
        postpaid_price: 5200,
    },
    Product {
        id: "a100-sxm4-80g",
        cpu: 24,
        memory_gb: 240,
        gpu: Some(("A100 SXM4", 80)),
        postpaid_price: 12600,
    },
    Product {
        id: "h100-sxm5-80g",
        cpu: 26,
        memory_gb: 250,
        gpu: Some(("H100 SXM5", 80)),
        postpaid_price: 19800,
    },
];

pub(crate) const CPU_PRODUCTS: [Product; 4] = [
    Product {
        id: "cpu-4c8g",
        cpu: 4,
        memory_gb: 8,
        gpu: None,
        postpaid_price: 120,
    },
    Product {
        id: "cpu-8c16g",
        cpu: 8,
        memory_gb: 16,
        gpu: None,
        postpaid_price: 240,
    },
    Product {
        id: "cpu-16c32g",
        cpu: 16,
        memory_gb: 32,
        gpu: None,
        postpaid_price: 480,
    },
    Product {
        id: "cpu-32c64g",
        cpu: 32,
        memory_gb: 64,
        gpu: None,
        postpaid_price: 960,
    },
];

/// How an environment variable's value is made.
enum EnvValue {
    /// A fixed, harmless value.
    Plain(&'static str),
    /// A secret-looking value: prefix, random characters from `alphabet`, suffix.
    Secret {
        prefix: &'static str,
        len: usize,
        alphabet: &'static [u8],
        suffix: &'static str,
    },
}

const HEX: &[u8] = b"0123456789abcdef";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

const fn secret(prefix: &'static str, len: usize, alphabet: &'static [u8]) -> EnvValue {
    EnvValue::Secret {
        prefix,
        len,
        alphabet,
        suffix: "",
    }
}

/// A kind of workload people run on PPIO: it decides names, image, command, ports and envs.
struct Workload {
    names: &'static [&'static str],
    gpu: bool,
    image: &'static str,
    /// Images from a private registry need a registry auth id.
    private_image: bool,
    entrypoint: &'static str,
    command: &'static str,
    ports: &'static [(u16, &'static str)],
    envs: &'static [(&'static str, EnvValue)],
}

const WORKLOADS: [Workload; 7] = [
    Workload {
        names: &["vllm-serve", "llm-api", "qwen-serve", "llama-serve"],
        gpu: true,
        image: "docker.io/vllm/vllm-openai:v0.6.3",
        private_image: false,
        entrypoint: "",
        command: "--model Qwen/Qwen2.5-7B-Instruct --max-model-len 8192",
        ports: &[(8000, "http")],
        envs: &[
            ("HF_TOKEN", secret("hf_", 34, ALNUM)),
            ("VLLM_API_KEY", secret("sk-", 32, ALNUM)),
            ("MODEL_NAME", EnvValue::Plain("Qwen/Qwen2.5-7B-Instruct")),
        ],
    },
    Workload {
        names: &["jupyter-lab", "notebook", "research-box"],
        gpu: true,
        image: "docker.io/jupyter/pytorch-notebook:cuda12-python-3.11",
        private_image: false,
        entrypoint: "",
        command: "",
        ports: &[(8888, "http"), (22, "tcp")],
        envs: &[
            ("JUPYTER_TOKEN", secret("", 48, HEX)),
            ("TZ", EnvValue::Plain("Asia/Shanghai")),
        ],
    },
    Workload {
        names: &["comfyui", "sdxl-webui", "flux-render"],
        gpu: true,
        image: "ghcr.io/ai-dock/comfyui:latest-cuda",
        private_image: false,
        entrypoint: "",
        command: "",
        ports: &[(8188, "http"), (22, "tcp")],
        envs: &[
            ("WEB_USER", EnvValue::Plain("admin")),
            ("WEB_PASSWORD", secret("", 16, ALNUM)),
            ("CIVITAI_TOKEN", secret("", 32, HEX)),
        ],
    },
    Workload {
        names: &["llama3-finetune", "lora-train", "ddp-train", "mistral-sft"],
        gpu: true,
        image: "nvcr.io/nvidia/pytorch:24.05-py3",
        private_image: false,
        entrypoint: "/bin/bash",
        command: "-c \"torchrun --nproc_per_node=gpu train.py --config configs/sft.yaml\"",
        ports: &[(22, "tcp"), (6006, "http")],
        envs: &[
            ("WANDB_API_KEY", secret("", 40, HEX)),
            ("WANDB_PROJECT", EnvValue::Plain("finetune")),
            ("NCCL_DEBUG", EnvValue::Plain("WARN")),
        ],
    },
    Workload {
        names: &["embedding-api", "reranker", "bge-serve"],
        gpu: true,
        image: "ghcr.io/huggingface/text-embeddings-inference:1.5",
        private_image: false,
        entrypoint: "",
        command: "--model-id BAAI/bge-m3",
        ports: &[(80, "http")],
        envs: &[("HUGGING_FACE_HUB_TOKEN", secret("hf_", 34, ALNUM))],
    },
    Workload {
        names: &["whisper-batch", "asr-worker", "ocr-pipeline"],
        gpu: true,
        image: "registry.example.com/ml/whisper-worker:1.4.2",
        private_image: true,
        entrypoint: "",
        command: "python -m worker --queue asr",
        ports: &[(9000, "http")],
        envs: &[
            ("AWS_ACCESS_KEY_ID", secret("AKIA", 16, UPPER_ALNUM)),
            ("AWS_SECRET_ACCESS_KEY", secret("", 40, ALNUM)),
            (
                "QUEUE_URL",
                EnvValue::Secret {
                    prefix: "redis://default:",
                    len: 24,
                    alphabet: ALNUM,
                    suffix: "@10.2.0.5:6379/0",
                },
            ),
        ],
    },
    Workload {
        names: &["dev-box", "data-prep", "proxy", "scheduler"],
        gpu: false,
        image: "docker.io/library/ubuntu:22.04",
        private_image: false,
        entrypoint: "",
        command: "sleep infinity",
        ports: &[(22, "tcp")],
        envs: &[
            ("TZ", EnvValue::Plain("UTC")),
            (
                "DATABASE_URL",
                EnvValue::Secret {
                    prefix: "postgres://app:",
                    len: 20,
                    alphabet: ALNUM,
                    suffix: "@10.2.0.9:5432/app",
                },
            ),
        ],
    },
];

/// SplitMix64: tiny, fast, and fixed forever (see the module doc for why not `rand`).
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The generator for record `index`: independent of how many records are generated.
    fn for_record(seed: u64, index: usize) -> SplitMix64 {
        let mut mixer = SplitMix64::new(seed ^ 0x5EED_5EED_5EED_5EED);
        let base = mixer.next_u64();
        SplitMix64::new(base.wrapping_add((index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0); the modulo bias is irrelevant here.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + self.below(high.abs_diff(low) + 1) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn pick_weighted<'a, T>(&mut self, items: &'a [(T, u64)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        &items[items.len() - 1].0
    }

    fn text(&mut self, len: usize, alphabet: &[u8]) -> String {
        (0..len).map(|_| char::from(*self.pick(alphabet))).collect()
    }

    fn uuid(&mut self) -> String {
        let hex = self.text(32, HEX);
        format!(
            "{}-{}-4{}-{}{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            self.pick(&["8", "9", "a", "b"]),
            &hex[17..20],
            &hex[20..32]
        )
    }
}

/// The account the generated instances belong to: one team owner, a few members.
struct Team {
    owner_id: String,
    member_ids: Vec<String>,
}

impl Team {
    fn new(seed: u64) -> Team {
        let mut rng = SplitMix64::new(seed);
        let owner_id = rng.uuid();
        let mut member_ids = vec![owner_id.clone()];
        member_ids.extend((0..2).map(|_| rng.uuid()));
        Team {
            owner_id,
            member_ids,
        }
    }
}

/// `count` instance records in PPIO wire format, the same for the same `count` and `seed`.
pub fn generate_instances(count: usize, seed: u64) -> Vec<Value> {
    let team = Team::new(seed);
    let mut used_ids = HashSet::with_capacity(count);
    (0..count)
        .map(|index| {
            let mut rng = SplitMix64::for_record(seed, index);
            let mut id = rng.text(10, HEX);
            while !used_ids.insert(id.clone()) {
                id = rng.text(10, HEX);
            }
            generate_record(&mut rng, id, &team)
        })
        .collect()
}

fn generate_record(rng: &mut SplitMix64, id: String, team: &Team) -> Value {
    let workload = if rng.chance(15) {
        &WORKLOADS[WORKLOADS.len() - 1]
    } else {
        rng.pick(&WORKLOADS[..WORKLOADS.len() - 1])
    };
    let name = format!("{}-{:02}", rng.pick(workload.names), rng.between(1, 99));
    let region = *rng.pick(&REGIONS);
    let status = *rng.pick_weighted(&STATUSES);
    let billing_mode = if workload.gpu {
        *rng.pick_weighted(&[("postpaid", 60), ("prepaid", 25), ("spot", 15)])
    } else {
        *rng.pick_weighted(&[("postpaid", 70), ("prepaid", 30)])
    };
    let times = Timestamps::generate(rng, status);

    let mut record = json!({
        "id": id,
        "name": name,
        "type": if workload.gpu { "gpu" } else { "cpu" },
        "product_id": "",
        "image": workload.image,
        "registry_auth_id": if workload.private_image { format!("ra-{}", rng.text(8, HEX)) } else { String::new() },
        "entrypoint": workload.entrypoint,
        "command": workload.command,
        "billing": billing(rng, billing_mode, times.created_at),
        "envs": envs(rng, workload),
        "ports": ports(rng, workload, status == "running"),
        "resource_specs": Value::Null,
        "network": network(rng),
        "volumes": volumes(rng),
        "region": region,
        "auto_migrate": auto_migrate(rng),
        "status": remote_status(rng, status, billing_mode, workload.image),
        "created_at": times.created_at,
        "last_started_at": times.last_started_at,
        "last_stopped_at": times.last_stopped_at,
        "member_id": rng.pick(&team.member_ids),
        "owner_id": team.owner_id,
        "region_version": if rng.chance(45) { "v2" } else { "v1" },
    });
    let (product_id, specs) = resource_specs(rng, workload.gpu);
    record["product_id"] = json!(product_id);
    record["resource_specs"] = specs;
    if rng.chance(25) {
        stringify_int64_fields(&mut record);
    }
    record
}

/// Creation, last start and last stop, consistent with the status.
struct Timestamps {
    created_at: i64,
    last_started_at: i64,
    last_stopped_at: i64,
}

impl Timestamps {
    fn generate(rng: &mut SplitMix64, status: &str) -> Timestamps {
        let created_at = GENERATION_EPOCH - rng.between(DAY, 180 * DAY);
        let first_start = created_at + rng.between(60, 900);
        let latest = GENERATION_EPOCH - 60;
        let (last_started_at, last_stopped_at) = match status {
            "toCreate" | "creating" | "pulling" => (0, 0),
            "exited" | "toStart" => {
                let stopped = (first_start + rng.between(600, 5 * DAY)).min(latest);
                (first_start, stopped.max(first_start + 1))
            }
            _ if rng.chance(30) => {
                // Stopped once, then started again.
                let stopped = first_start + rng.between(600, 2 * DAY);
                let restarted = (stopped + rng.between(30, 3 * DAY)).min(latest);
                (restarted.max(stopped + 1), stopped)
            }
            _ => (first_start, 0),
        };
        Timestamps {
            created_at,
            last_started_at,
            last_stopped_at,
        }
    }
}

fn billing(rng: &mut SplitMix64, mode: &str, created_at: i64) -> Value {
    if mode != "prepaid" {
        return json!({ "mode": mode });
    }
    let months = *rng.pick(&[1_i64, 1, 1, 3, 6, 12]);
    let auto_renew = if rng.chance(50) {
        json!({"enabled": true, "months": *rng.pick(&[1, 1, 3]), "status": "active"})
    } else {
        json!({"enabled": false, "months": 0, "status": "inactive"})
    };
    json!({
        "mode": "prepaid",
        "prepaid": {
            "months": months,
            "end_time": created_at + months * 30 * DAY,
            "auto_renew": auto_renew,
        },
    })
}

fn envs(rng: &mut SplitMix64, workload: &Workload) -> Value {
    workload
        .envs
        .iter()
        .map(|(key, value)| {
            let value = match value {
                EnvValue::Plain(value) => (*value).to_owned(),
                EnvValue::Secret {
                    prefix,
                    len,
                    alphabet,
                    suffix,
                } => format!("{prefix}{}{suffix}", rng.text(*len, alphabet)),
            };
            json!({"key": key, "value": value})
        })
        .collect()
}

/// Ports; endpoints are allocated only while the instance runs. Public addresses come from the
/// documentation ranges (RFC 5737), so they can never reach anything real.
fn ports(rng: &mut SplitMix64, workload: &Workload, running: bool) -> Value {
    let ip = format!(
        "{}.{}",
        rng.pick(&["203.0.113", "198.51.100"]),
        rng.between(2, 254)
    );
    workload
        .ports
        .iter()
        .map(|(port, protocol)| {
            let external = rng.between(30_000, 49_999);
            let endpoint = match (running, *protocol) {
                (false, _) => String::new(),
                (true, "http") => format!("http://{ip}:{external}"),
                (true, _) => format!("{ip}:{external}"),
            };
            json!({"port": port, "protocol": protocol, "endpoint": endpoint})
        })
        .collect()
}

/// Product and resource specs: GPU instances get 1..=8 GPUs (mostly few), CPU ones none.
fn resource_specs(rng: &mut SplitMix64, gpu: bool) -> (&'static str, Value) {
    let rootfs_size_gb = *rng.pick(&[20_i64, 30, 50, 60, 100, 200]);
    if !gpu {
        let product = rng.pick(&CPU_PRODUCTS);
        return (
            product.id,
            json!({
                "rootfs_size_gb": rootfs_size_gb,
                "gpu_num": 0,
                "cpu_num": product.cpu,
                "memory_gb": product.memory_gb,
                "gpu_ids": [],
            }),
        );
    }
    let product = rng.pick(&GPU_PRODUCTS);
    let gpu_num = *rng.pick(&[1_i64, 1, 1, 1, 2, 2, 2, 3, 4, 4, 5, 6, 7, 8]);
    let first_gpu = rng.between(0, 8 - gpu_num);
    (
        product.id,
        json!({
            "rootfs_size_gb": rootfs_size_gb,
            "gpu_num": gpu_num,
            "cpu_num": product.cpu * gpu_num,
            "memory_gb": product.memory_gb * gpu_num,
            "gpu_ids": (first_gpu..first_gpu + gpu_num).collect::<Vec<_>>(),
        }),
    )
}

fn network(rng: &mut SplitMix64) -> Value {
    if rng.chance(30) {
        json!({
            "id": format!("vpc-{}", rng.text(10, HEX)),
            "ip": format!("10.2.{}.{}", rng.between(0, 255), rng.between(2, 254)),
        })
    } else {
        json!({"id": "", "ip": ""})
    }
}

fn volumes(rng: &mut SplitMix64) -> Value {
    let mut volumes = Vec::new();
    if rng.chance(35) {
        volumes.push(json!({"type": "local", "id": "", "mount_point": "/data"}));
    }
    if rng.chance(25) {
        volumes.push(json!({
            "type": "network",
            "id": format!("ns-{}", rng.text(10, HEX)),
            "mount_point": "/network",
        }));
    }
    Value::Array(volumes)
}

fn auto_migrate(rng: &mut SplitMix64) -> Value {
    let enabled = rng.chance(25);
    json!({"enabled": enabled, "include_system_disk": enabled && rng.chance(50)})
}

/// `status.{status, error, message}`: stopped instances often say why.
fn remote_status(rng: &mut SplitMix64, status: &str, billing_mode: &str, image: &str) -> Value {
    let (error, message) = match status {
        "exited" if billing_mode == "spot" && rng.chance(60) => (
            "SPOT_RECLAIMED".to_owned(),
            "the spot instance was reclaimed".to_owned(),
        ),
        "exited" if rng.chance(50) => {
            let (error, message) = *rng.pick(&[
                (
                    "CONTAINER_EXIT_ERROR",
                    "container exited with code 137 (OOMKilled)",
                ),
                ("CONTAINER_EXIT_ERROR", "container exited with code 1"),
                (
                    "INSUFFICIENT_BALANCE",
                    "instance stopped: the account balance is insufficient",
                ),
            ]);
            (error.to_owned(), message.to_owned())
        }
        "exited" => (String::new(), "stopped by user".to_owned()),
        "pulling" => (String::new(), format!("pulling image {image}")),
        "creating" => (String::new(), "allocating resources".to_owned()),
        _ => (String::new(), String::new()),
    };
    json!({"status": status, "error": error, "message": message})
}

/// Rewrites the int64 fields as JSON strings, as the captured real response carried them.
fn stringify_int64_fields(record: &mut Value) {
    for pointer in [
        "/created_at",
        "/last_started_at",
        "/last_stopped_at",
        "/resource_specs/memory_gb",
        "/billing/prepaid/end_time",
    ] {
        if let Some(field) = record.pointer_mut(pointer)
            && let Some(number) = field.as_i64()
        {
            *field = Value::String(number.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_where(records: &[Value], predicate: impl Fn(&Value) -> bool) -> usize {
        records.iter().filter(|record| predicate(record)).count()
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        assert_eq!(generate_instances(50, 42), generate_instances(50, 42));
        assert_ne!(generate_instances(50, 42), generate_instances(50, 43));
    }

    #[test]
    fn fewer_records_are_a_prefix_of_more_records_with_the_same_seed() {
        let many = generate_instances(40, 9);
        assert_eq!(generate_instances(15, 9), many[..15].to_vec());
    }

    #[test]
    fn ids_are_unique_ten_hex_characters() {
        let records = generate_instances(2000, 1);
        let ids: HashSet<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), 2000);
        assert!(ids.iter().all(|id| {
            id.len() == 10
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        }));
    }

    #[test]
    fn records_carry_every_documented_field() {
        let fields = crate::records::RECORD_FIELDS;
        for record in generate_instances(30, 5) {
            for field in fields {
                assert!(record.get(field).is_some(), "{field} missing in {record}");
            }
            assert_eq!(record.as_object().map(|o| o.len()), Some(fields.len()));
        }
    }

    #[test]
    fn the_mix_resembles_a_real_account() {
        let records = generate_instances(400, 42);
        let running = count_where(&records, |r| r["status"]["status"] == "running");
        assert!(running > 200 && running < 340, "{running} running");
        assert!(count_where(&records, |r| r["status"]["status"] == "exited") > 10);
        assert!(count_where(&records, |r| r["type"] == "cpu") > 20);
        for mode in ["postpaid", "prepaid", "spot"] {
            assert!(
                count_where(&records, |r| r["billing"]["mode"] == mode) > 20,
                "{mode}"
            );
        }
        for region in REGIONS {
            assert!(
                count_where(&records, |r| r["region"] == region) > 50,
                "{region}"
            );
        }
        for version in ["v1", "v2"] {
            assert!(count_where(&records, |r| r["region_version"] == version) > 100);
        }
        let stringly = count_where(&records, |r| r["created_at"].is_string());
        assert!(
            stringly > 50 && stringly < 150,
            "{stringly} with string int64s"
        );
    }

    #[test]
    fn prepaid_records_have_a_prepaid_block_and_others_do_not() {
        for record in generate_instances(200, 3) {
            let billing = &record["billing"];
            let prepaid = billing["mode"] == "prepaid";
            assert_eq!(billing.get("prepaid").is_some(), prepaid, "{billing}");
            if prepaid {
                assert!(billing["prepaid"]["auto_renew"]["enabled"].is_boolean());
                assert!(
                    billing["prepaid"]["months"]
                        .as_i64()
                        .is_some_and(|m| m >= 1)
                );
            }
        }
    }

    #[test]
    fn gpu_counts_and_ids_are_consistent() {
        for record in generate_instances(200, 4) {
            let specs = &record["resource_specs"];
            let gpu_num = specs["gpu_num"].as_i64().expect("gpu_num is a number");
            let gpu_ids = specs["gpu_ids"].as_array().expect("gpu_ids");
            assert_eq!(gpu_ids.len() as i64, gpu_num);
            if record["type"] == "gpu" {
                assert!((1..=8).contains(&gpu_num));
                assert!(
                    gpu_ids
                        .iter()
                        .all(|id| id.as_i64().is_some_and(|i| (0..8).contains(&i)))
                );
            } else {
                assert_eq!(gpu_num, 0);
            }
        }
    }

    #[test]
    fn envs_have_keys_and_values_some_of_which_look_like_tokens() {
        let records = generate_instances(100, 8);
        let values: Vec<&str> = records
            .iter()
            .flat_map(|r| r["envs"].as_array().into_iter().flatten())
            .map(|env| {
                assert!(env["key"].as_str().is_some_and(|k| !k.is_empty()));
                env["value"].as_str().expect("value")
            })
            .collect();
        assert!(values.iter().any(|v| v.starts_with("hf_") && v.len() == 37));
        assert!(
            values
                .iter()
                .any(|v| v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn only_running_instances_have_port_endpoints() {
        for record in generate_instances(200, 6) {
            let running = record["status"]["status"] == "running";
            for port in record["ports"].as_array().expect("ports") {
                let endpoint = port["endpoint"].as_str().expect("endpoint");
                assert_eq!(!endpoint.is_empty(), running, "{record}");
            }
        }
    }

    #[test]
    fn timestamps_are_consistent_with_the_status() {
        for record in generate_instances(300, 11) {
            let read = |field: &str| {
                record[field]
                    .as_i64()
                    .or_else(|| record[field].as_str().and_then(|s| s.parse().ok()))
                    .expect("timestamp")
            };
            let (created, started, stopped) = (
                read("created_at"),
                read("last_started_at"),
                read("last_stopped_at"),
            );
            assert!(created > 0 && created < GENERATION_EPOCH);
            assert!(started == 0 || started > created, "{record}");
            match record["status"]["status"].as_str() {
                Some("exited" | "toStart") => assert!(stopped > started, "{record}"),
                Some("running") => assert!(started > stopped, "{record}"),
                _ => {}
            }
        }
    }
}
