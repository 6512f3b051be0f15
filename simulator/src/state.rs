//! The simulator's mutable state: stored instances, accepted API keys, queued faults and the log of
//! list requests.
//!
//! One [`State`] sits behind a mutex shared by every [`super::Simulator`] handle and the HTTP handlers.
//! Its methods never wait or do I/O, so the lock is only held for a moment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SimulatorError;
use super::faults::FaultQueue;
use super::listing::PageSizes;
use super::products::{generated_products, validate_product};
use super::records::{merge_patch, validate_record, validate_records};
use super::store::Store;

/// One list request as the simulator saw it, so tests can check what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The query parameters, decoded (a parameter sent twice keeps its last value).
    pub query: BTreeMap<String, String>,
    /// Whether the request carried one of the accepted API keys (checked even when a fault answered).
    pub authorized: bool,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// Everything the simulator knows and remembers.
#[derive(Debug)]
pub(crate) struct State {
    /// Instance records by id and in listing order.
    pub(crate) instances: Store,
    /// Bearer tokens accepted by the list endpoint.
    pub(crate) api_keys: Vec<String>,
    /// Faults waiting for list requests.
    pub(crate) faults: FaultQueue,
    /// Every list request, oldest first.
    pub(crate) requests: Vec<RecordedRequest>,
    /// Page sizes of the list endpoint.
    pub(crate) page_sizes: PageSizes,
    /// Products of the product list, wire format, by ID.
    pub(crate) products: BTreeMap<String, Value>,
    /// Every product list request, oldest first.
    pub(crate) product_requests: Vec<RecordedRequest>,
}

impl State {
    /// A state holding `records`, which must have unique, non-empty string ids.
    pub(crate) fn new(
        api_keys: Vec<String>,
        page_sizes: PageSizes,
        records: Vec<Value>,
    ) -> Result<State, SimulatorError> {
        Ok(State {
            instances: Store::new(validate_records(records)?),
            api_keys,
            faults: FaultQueue::default(),
            requests: Vec::new(),
            page_sizes,
            products: generated_products(),
            product_requests: Vec::new(),
        })
    }

    /// Whether `token` is one of the accepted API keys.
    pub(crate) fn accepts_key(&self, token: Option<&str>) -> bool {
        token.is_some_and(|token| self.api_keys.iter().any(|key| key == token))
    }

    /// All records in listing order (by `created_at`, then `id`).
    pub(crate) fn ordered_instances(&self) -> Vec<Value> {
        self.instances
            .after(None)
            .map(|(_, record)| record.clone())
            .collect()
    }

    /// Inserts or replaces the record with the same id. Returns whether it was new.
    pub(crate) fn upsert(&mut self, record: Value) -> Result<bool, SimulatorError> {
        let id = validate_record(&record)?;
        Ok(self.instances.insert(id, record))
    }

    /// Applies a merge patch to a stored record and returns the result; `None` if no such record.
    /// The patch must be an object and cannot change the record's id (the id is the record's identity).
    pub(crate) fn patch(
        &mut self,
        id: &str,
        patch: &Value,
    ) -> Result<Option<Value>, SimulatorError> {
        if !patch.is_object() {
            return Err(SimulatorError::InvalidPatch(
                "a merge patch for an instance must be a JSON object".to_owned(),
            ));
        }
        if patch.get("id").is_some_and(|new_id| new_id != id) {
            return Err(SimulatorError::InvalidPatch(format!(
                "the patch would change the id of instance {id:?}; remove it and insert a new one instead"
            )));
        }
        Ok(self
            .instances
            .modify(id, |record| merge_patch(record, patch))
            .cloned())
    }

    /// Sets the endpoints of instance `id`'s exposed ports: `endpoints` maps a port number to its
    /// new endpoint (empty: none allocated). Every port named must be one the record exposes; on
    /// error nothing changes. `None` if there is no such record.
    pub(crate) fn set_endpoints(
        &mut self,
        id: &str,
        endpoints: &std::collections::BTreeMap<i64, String>,
    ) -> Result<Option<Value>, SimulatorError> {
        let Some(record) = self.instances.get(id) else {
            return Ok(None);
        };
        let exposed: Vec<i64> = record["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|port| port["port"].as_i64())
            .collect();
        if let Some(missing) = endpoints.keys().find(|port| !exposed.contains(port)) {
            return Err(SimulatorError::InvalidPatch(format!(
                "instance {id:?} exposes no port {missing} (it exposes {exposed:?})"
            )));
        }
        Ok(self
            .instances
            .modify(id, |record| {
                for port in record["ports"].as_array_mut().into_iter().flatten() {
                    if let Some(endpoint) = port["port"].as_i64().and_then(|n| endpoints.get(&n)) {
                        port["endpoint"] = Value::String(endpoint.clone());
                    }
                }
            })
            .cloned())
    }

    /// Inserts or replaces the product with the same id. Returns whether it was new.
    pub(crate) fn upsert_product(&mut self, product: Value) -> Result<bool, SimulatorError> {
        let id = validate_product(&product)?;
        Ok(self.products.insert(id, product).is_none())
    }

    /// Replaces the `pricing` of product `id` and returns the product; `None` if there is none.
    /// The pricing must be an object (what it holds is up to the caller: any shape PPIO could
    /// send).
    pub(crate) fn set_product_pricing(
        &mut self,
        id: &str,
        pricing: Value,
    ) -> Result<Option<Value>, SimulatorError> {
        if !pricing.is_object() {
            return Err(SimulatorError::InvalidPatch(
                "a product's pricing must be a JSON object".to_owned(),
            ));
        }
        Ok(self.products.get_mut(id).map(|product| {
            product["pricing"] = pricing;
            product.clone()
        }))
    }

    /// Replaces every record. On error nothing changes.
    pub(crate) fn replace_all(&mut self, records: Vec<Value>) -> Result<(), SimulatorError> {
        self.instances = Store::new(validate_records(records)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> State {
        State::new(
            vec!["key".to_owned()],
            PageSizes::new(20, 100),
            vec![json!({"id": "a1", "name": "one", "status": {"status": "running"}})],
        )
        .expect("valid state")
    }

    #[test]
    fn only_configured_keys_are_accepted() {
        let state = state();
        assert!(state.accepts_key(Some("key")));
        assert!(!state.accepts_key(Some("other")));
        assert!(!state.accepts_key(Some("")));
        assert!(!state.accepts_key(None));
    }

    #[test]
    fn upsert_reports_whether_the_record_is_new() {
        let mut state = state();
        assert!(
            !state
                .upsert(json!({"id": "a1", "name": "renamed"}))
                .expect("valid")
        );
        assert!(state.upsert(json!({"id": "b2"})).expect("valid"));
        assert_eq!(
            state.instances.get("a1").unwrap(),
            &json!({"id": "a1", "name": "renamed"})
        );
        assert!(state.upsert(json!({"name": "no id"})).is_err());
    }

    #[test]
    fn a_patch_cannot_change_the_id_or_replace_the_record_wholesale() {
        let mut state = state();
        assert!(state.patch("a1", &json!({"id": "zz"})).is_err());
        assert!(state.patch("a1", &json!([1])).is_err());
        assert_eq!(state.patch("missing", &json!({})).expect("valid"), None);
        assert_eq!(
            state
                .patch("a1", &json!({"id": "a1", "status": {"status": "exited"}}))
                .expect("valid"),
            Some(json!({"id": "a1", "name": "one", "status": {"status": "exited"}}))
        );
    }

    #[test]
    fn replacing_with_invalid_records_changes_nothing() {
        let mut state = state();
        assert!(
            state
                .replace_all(vec![json!({"id": "x"}), json!({"id": "x"})])
                .is_err()
        );
        assert_eq!(state.instances.len(), 1);
    }
}
