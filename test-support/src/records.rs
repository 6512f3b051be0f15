//! PPIO records, in the wire format the simulator serves, built for a test: the repository's
//! example account, generated records with the fields a test is about set by name.

use ppio_simulator::{generate_instances, load_instances};
use serde_json::{Value, json};

use crate::paths::repository;

/// The example account of `examples/ppio-instances.json`, which the README's walk-through lists: six
/// instances, running, exited (with a PPIO error) and pulling; two regions; postpaid, spot and two
/// prepaid ones (one renewing itself, one not).
pub fn example_records() -> Vec<Value> {
    let path = repository().join("examples/ppio-instances.json");
    load_instances(&path).unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
}

/// One generated record (from `seed`) with the ID `id`.
pub fn generated(id: &str, seed: u64) -> Value {
    let mut record = generate_instances(1, seed).remove(0);
    record["id"] = json!(id);
    record
}

/// Sets `record`'s remote status to `status`, with no error and no message.
pub fn set_status(record: &mut Value, status: &str) {
    record["status"] = json!({ "status": status, "error": "", "message": "" });
}

/// `count` generated records from `seed`, all `running` and postpaid (so that no prepaid term is
/// near its end).
pub fn running_records(count: usize, seed: u64) -> Vec<Value> {
    let mut records = generate_instances(count, seed);
    for record in &mut records {
        set_status(record, "running");
        record["billing"] = json!({ "mode": "postpaid" });
    }
    records
}

/// An exposed port of a record: `number` served over `protocol` at `endpoint`.
pub fn port(number: u16, protocol: &str, endpoint: &str) -> Value {
    json!({ "port": number, "protocol": protocol, "endpoint": endpoint })
}
