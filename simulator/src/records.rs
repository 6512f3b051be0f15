//! Instance records as the simulator keeps them: PPIO wire-format JSON, exactly as the API sends it.
//!
//! The simulator deliberately does not use the project's typed PPIO client model: it stores and serves
//! `serde_json::Value`s, so the client is tested against an independent reading of the API. This module
//! holds the few things the simulator must know about a record: its `id`, its sort key, the fields the
//! filters look at, how to load records from a file and how to apply an RFC 7386 merge patch.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::SimulatorError;

/// Checks that a record can be stored (a JSON object with a non-empty string `id`) and returns its id.
pub(crate) fn validate_record(record: &Value) -> Result<String, SimulatorError> {
    if !record.is_object() {
        return Err(SimulatorError::InvalidRecord(format!(
            "a record must be a JSON object, got {}",
            json_kind(record)
        )));
    }
    match record.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(Value::String(_)) => Err(SimulatorError::InvalidRecord(
            "the \"id\" field is empty".to_owned(),
        )),
        Some(other) => Err(SimulatorError::InvalidRecord(format!(
            "the \"id\" field must be a string, got {}",
            json_kind(other)
        ))),
        None => Err(SimulatorError::InvalidRecord(
            "the record has no \"id\" field".to_owned(),
        )),
    }
}

/// Validates a whole set of records: each one storable, no id twice. Returns them with their ids.
pub(crate) fn validate_records(
    records: Vec<Value>,
) -> Result<Vec<(String, Value)>, SimulatorError> {
    let mut seen = HashSet::new();
    let mut validated = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        let id = validate_record(&record).map_err(|error| match error {
            SimulatorError::InvalidRecord(reason) => {
                SimulatorError::InvalidRecord(format!("record #{index}: {reason}"))
            }
            other => other,
        })?;
        if !seen.insert(id.clone()) {
            return Err(SimulatorError::InvalidRecord(format!(
                "record #{index}: id {id:?} appears more than once"
            )));
        }
        validated.push((id, record));
    }
    Ok(validated)
}

/// Reads instance records from a JSON file holding either an array of records or `{"data": [...]}`
/// (a saved list response).
///
/// Every record must be an object with a unique, non-empty string `id`; everything else is kept as is.
pub fn load_instances(path: &Path) -> Result<Vec<Value>, SimulatorError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimulatorError::ReadInstances {
        path: path.to_owned(),
        source,
    })?;
    let document: Value =
        serde_json::from_str(&text).map_err(|source| SimulatorError::ParseInstances {
            path: path.to_owned(),
            source,
        })?;
    let shape_error = |reason: String| SimulatorError::InstancesFileShape {
        path: path.to_owned(),
        reason,
    };
    let records = match document {
        Value::Array(records) => records,
        Value::Object(mut object) => match object.remove("data") {
            Some(Value::Array(records)) => records,
            Some(other) => {
                return Err(shape_error(format!(
                    "\"data\" is {}, not an array",
                    json_kind(&other)
                )));
            }
            None => return Err(shape_error("the object has no \"data\" field".to_owned())),
        },
        other => {
            return Err(shape_error(format!(
                "the document is {}",
                json_kind(&other)
            )));
        }
    };
    match validate_records(records) {
        Ok(validated) => Ok(validated.into_iter().map(|(_, record)| record).collect()),
        Err(SimulatorError::InvalidRecord(reason)) => Err(shape_error(reason)),
        Err(other) => Err(other),
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`: objects merge key by key, `null` removes a key,
/// anything else replaces the value.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target_fields) = target {
        for (key, value) in patch_fields {
            if value.is_null() {
                target_fields.remove(key);
            } else {
                merge_patch(
                    target_fields.entry(key.clone()).or_insert(Value::Null),
                    value,
                );
            }
        }
    }
}

/// Reads an integer field the way PPIO sends it: a JSON number or a numeric string (int64 fields often
/// arrive as strings).
pub(crate) fn integer_field(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// A record's `created_at`, which orders the listing (then the `id`; ids are unique, so the order is
/// total and stable); 0 when missing or unreadable.
pub(crate) fn created_at(record: &Value) -> i64 {
    integer_field(record.get("created_at")).unwrap_or(0)
}

/// A short name for the kind of a JSON value, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Every top-level field of an instance record in the documented list response.
#[cfg(test)]
pub(crate) const RECORD_FIELDS: [&str; 23] = [
    "id",
    "name",
    "type",
    "product_id",
    "image",
    "registry_auth_id",
    "entrypoint",
    "command",
    "billing",
    "envs",
    "ports",
    "resource_specs",
    "network",
    "volumes",
    "region",
    "auto_migrate",
    "status",
    "created_at",
    "last_started_at",
    "last_stopped_at",
    "member_id",
    "owner_id",
    "region_version",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_temp(contents: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), contents).expect("write temp file");
        file
    }

    #[test]
    fn load_instances_accepts_a_bare_array() {
        let file = write_temp(r#"[{"id":"a1"},{"id":"b2","name":"x"}]"#);
        let records = load_instances(file.path()).expect("loads");
        assert_eq!(
            records,
            vec![json!({"id":"a1"}), json!({"id":"b2","name":"x"})]
        );
    }

    #[test]
    fn load_instances_accepts_a_saved_list_response() {
        let file = write_temp(r#"{"data":[{"id":"a1"}],"next_cursor":"","has_more":false}"#);
        let records = load_instances(file.path()).expect("loads");
        assert_eq!(records, vec![json!({"id":"a1"})]);
    }

    #[test]
    fn load_instances_rejects_records_without_id_naming_the_record() {
        let file = write_temp(r#"[{"id":"a1"},{"name":"no id"}]"#);
        let error = load_instances(file.path())
            .expect_err("must fail")
            .to_string();
        assert!(error.contains("record #1"), "{error}");
        assert!(error.contains("no \"id\""), "{error}");
    }

    #[test]
    fn load_instances_rejects_duplicate_ids() {
        let file = write_temp(r#"[{"id":"a1"},{"id":"a1"}]"#);
        let error = load_instances(file.path())
            .expect_err("must fail")
            .to_string();
        assert!(error.contains("more than once"), "{error}");
    }

    #[test]
    fn load_instances_reports_invalid_json_and_missing_files() {
        let file = write_temp("[{");
        assert!(matches!(
            load_instances(file.path()),
            Err(SimulatorError::ParseInstances { .. })
        ));
        assert!(matches!(
            load_instances(Path::new("/nonexistent/instances.json")),
            Err(SimulatorError::ReadInstances { .. })
        ));
        let file = write_temp(r#"{"items":[]}"#);
        assert!(matches!(
            load_instances(file.path()),
            Err(SimulatorError::InstancesFileShape { .. })
        ));
    }

    #[test]
    fn the_example_file_loads_and_covers_the_documented_cases() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ppio-instances.json");
        let records = load_instances(&path).expect("the example file loads");
        let fields = RECORD_FIELDS;
        for record in &records {
            for field in fields {
                assert!(
                    record.get(field).is_some(),
                    "{field} missing in {}",
                    record["id"]
                );
            }
        }
        let any = |predicate: &dyn Fn(&Value) -> bool| records.iter().any(predicate);
        assert!(any(
            &|r| r.pointer("/billing/prepaid/auto_renew/enabled") == Some(&json!(true))
        ));
        assert!(any(&|r| r["billing"]["mode"] == "spot"));
        assert!(any(
            &|r| r["status"]["status"] == "exited" && r["status"]["error"] != ""
        ));
        assert!(any(
            &|r| r["created_at"].is_string() && r["resource_specs"]["memory_gb"].is_string()
        ));
        assert!(any(&|r| r["type"] == "cpu"));
        let regions: HashSet<&str> = records
            .iter()
            .filter_map(|r| r["region"].as_str())
            .collect();
        assert!(regions.len() >= 2);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut record = json!({
            "id": "a1",
            "status": {"status": "running", "error": "", "message": ""},
            "envs": [{"key": "A", "value": "1"}],
            "gone": 1
        });
        merge_patch(
            &mut record,
            &json!({"status": {"status": "exited", "message": "stopped"}, "envs": [], "gone": null, "new": {"x": null, "y": 2}}),
        );
        assert_eq!(
            record,
            json!({
                "id": "a1",
                "status": {"status": "exited", "error": "", "message": "stopped"},
                "envs": [],
                "new": {"y": 2}
            })
        );
    }

    #[test]
    fn integer_fields_are_read_from_numbers_and_numeric_strings() {
        assert_eq!(integer_field(Some(&json!(1785780950))), Some(1785780950));
        assert_eq!(integer_field(Some(&json!("1785780950"))), Some(1785780950));
        assert_eq!(integer_field(Some(&json!("soon"))), None);
        assert_eq!(integer_field(None), None);
    }
}
