//! The [`Simulator`] handle: its configuration, the in-process API tests use to change what the
//! simulated service holds, and serving it over HTTP.
//!
//! A `Simulator` is a cheap, cloneable handle onto one shared state; every clone, the HTTP list
//! endpoints (instances and products) and the control endpoints see the same instances, products,
//! keys, faults and request logs.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::faults::Fault;
use super::listing::PageSizes;
use super::state::{RecordedRequest, State};
use super::{SimulatorError, api, control};

/// How a [`Simulator`] starts.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Bearer tokens the list endpoint accepts. With none, every list request gets 401.
    pub api_keys: Vec<String>,
    /// Page size when a request's `limit` is absent or 0 (at least 1, at most `max_page_size`).
    pub default_page_size: usize,
    /// Largest page size; larger `limit`s are clamped to it (at least 1).
    pub max_page_size: usize,
    /// Initial instance records, in PPIO wire format; each needs a unique, non-empty string `id`.
    pub instances: Vec<Value>,
}

impl Default for SimulatorConfig {
    /// No API keys, pages of 20 by default and 100 at most, no instances.
    fn default() -> SimulatorConfig {
        SimulatorConfig {
            api_keys: Vec::new(),
            default_page_size: 20,
            max_page_size: 100,
            instances: Vec::new(),
        }
    }
}

/// A simulated PPIO GPU API: a handle onto shared state, cloned freely.
#[derive(Debug, Clone)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
}

impl Simulator {
    /// A simulator with the given configuration.
    ///
    /// # Panics
    /// If `config.instances` holds a record without a unique, non-empty string `id` (a mistake in the
    /// test that builds it). Use [`Simulator::try_new`] for records that come from outside.
    pub fn new(config: SimulatorConfig) -> Simulator {
        match Simulator::try_new(config) {
            Ok(simulator) => simulator,
            Err(error) => panic!("Simulator::new: {error}"),
        }
    }

    /// A simulator with the given configuration, or why its instances cannot be stored.
    pub fn try_new(config: SimulatorConfig) -> Result<Simulator, SimulatorError> {
        let page_sizes = PageSizes::new(config.default_page_size, config.max_page_size);
        let state = State::new(config.api_keys, page_sizes, config.instances)?;
        Ok(Simulator {
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// Runs `change` with the state locked. A panic elsewhere while the lock was held cannot leave the
    /// state half-changed in a way that matters to a simulator, so a poisoned lock is simply taken over.
    pub(crate) fn with_state<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state)
    }

    /// The HTTP routes: `GET /gpus/v2/instances`, `GET /gpus/v2/products` and the control
    /// endpoints under `/_simulator/`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/gpus/v2/instances", get(api::list_instances))
            .route("/gpus/v2/products", get(api::list_products))
            .merge(control::routes())
            .fallback(api::not_found)
            .with_state(self.clone())
    }

    /// Serves the simulator on `listener` until the returned future is dropped.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Serves the simulator on `listener` until `shutdown` completes, then lets open requests finish.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Starts a simulator on a free port of 127.0.0.1 in a background task. Dropping the returned
    /// [`RunningSimulator`] stops it. Invalid `config.instances` give an `InvalidInput` error.
    pub async fn start(config: SimulatorConfig) -> std::io::Result<RunningSimulator> {
        let simulator = Simulator::try_new(config)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(simulator.clone().serve(listener));
        Ok(RunningSimulator {
            simulator,
            addr,
            task,
        })
    }

    /// Inserts a record, or replaces the one with the same `id`.
    ///
    /// # Panics
    /// If the record is not an object with a non-empty string `id`; see [`Simulator::try_upsert_instance`].
    pub fn upsert_instance(&self, record: Value) {
        if let Err(error) = self.try_upsert_instance(record) {
            panic!("Simulator::upsert_instance: {error}");
        }
    }

    /// Inserts a record, or replaces the one with the same `id`; returns whether it was new.
    pub fn try_upsert_instance(&self, record: Value) -> Result<bool, SimulatorError> {
        self.with_state(|state| state.upsert(record))
    }

    /// Applies a JSON merge patch (RFC 7386) to the stored record `id`; `false` if there is none.
    ///
    /// # Panics
    /// If the patch is not an object or would change the record's `id`; see
    /// [`Simulator::try_patch_instance`].
    pub fn patch_instance(&self, id: &str, merge_patch: Value) -> bool {
        match self.try_patch_instance(id, merge_patch) {
            Ok(patched) => patched.is_some(),
            Err(error) => panic!("Simulator::patch_instance: {error}"),
        }
    }

    /// Applies a JSON merge patch (RFC 7386) to the stored record `id` and returns the patched record,
    /// `None` if there is no such record. The patch must be an object and may not change the `id`.
    pub fn try_patch_instance(
        &self,
        id: &str,
        merge_patch: Value,
    ) -> Result<Option<Value>, SimulatorError> {
        self.with_state(|state| state.patch(id, &merge_patch))
    }

    /// Sets the endpoints of instance `id`'s exposed ports, by port number (an empty endpoint: none
    /// allocated), as a restart or a migration moves them; returns the record, `None` if there is
    /// no such record. Every port named must be one the record exposes.
    pub fn try_set_endpoints(
        &self,
        id: &str,
        endpoints: &std::collections::BTreeMap<i64, String>,
    ) -> Result<Option<Value>, SimulatorError> {
        self.with_state(|state| state.set_endpoints(id, endpoints))
    }

    /// [`Simulator::try_set_endpoints`]; `false` if there is no such record.
    ///
    /// # Panics
    /// If a port named is not one the record exposes.
    pub fn set_endpoints(&self, id: &str, endpoints: &[(i64, &str)]) -> bool {
        let endpoints = endpoints
            .iter()
            .map(|(port, endpoint)| (*port, (*endpoint).to_owned()))
            .collect();
        match self.try_set_endpoints(id, &endpoints) {
            Ok(record) => record.is_some(),
            Err(error) => panic!("Simulator::set_endpoints: {error}"),
        }
    }

    /// Removes the record `id`; `false` if there was none.
    pub fn remove_instance(&self, id: &str) -> bool {
        self.with_state(|state| state.instances.remove(id))
    }

    /// Replaces every record.
    ///
    /// # Panics
    /// If a record lacks a unique, non-empty string `id`; see [`Simulator::try_set_instances`].
    pub fn set_instances(&self, records: Vec<Value>) {
        if let Err(error) = self.try_set_instances(records) {
            panic!("Simulator::set_instances: {error}");
        }
    }

    /// Replaces every record; on error nothing changes.
    pub fn try_set_instances(&self, records: Vec<Value>) -> Result<(), SimulatorError> {
        self.with_state(|state| state.replace_all(records))
    }

    /// Every stored record, in listing order (by `created_at`, then `id`).
    pub fn instances(&self) -> Vec<Value> {
        self.with_state(|state| state.ordered_instances())
    }

    /// The stored record `id`, if any.
    pub fn instance(&self, id: &str) -> Option<Value> {
        self.with_state(|state| state.instances.get(id).cloned())
    }

    /// Every product of the product list, in wire format, by ID. At the start: the products of the
    /// generated instances (see [`crate::generate_instances`]).
    pub fn products(&self) -> Vec<Value> {
        self.with_state(|state| state.products.values().cloned().collect())
    }

    /// Inserts a product (wire format, with a non-empty string `id`), or replaces the one with the
    /// same `id`; returns whether it was new.
    pub fn try_upsert_product(&self, product: Value) -> Result<bool, SimulatorError> {
        self.with_state(|state| state.upsert_product(product))
    }

    /// Replaces the `pricing` object of product `id` (any shape: a unit other than `per_hour`, a
    /// precision of 40, ...), as a price change does; returns the product, `None` if there is none.
    pub fn try_set_product_pricing(
        &self,
        id: &str,
        pricing: Value,
    ) -> Result<Option<Value>, SimulatorError> {
        self.with_state(|state| state.set_product_pricing(id, pricing))
    }

    /// Retires product `id`: it leaves the product list, while instances of it may still run.
    /// `false` if there was none.
    pub fn retire_product(&self, id: &str) -> bool {
        self.with_state(|state| state.products.remove(id).is_some())
    }

    /// Every product list request since the start or the last [`Simulator::clear_requests`],
    /// oldest first.
    pub fn product_requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|state| state.product_requests.clone())
    }

    /// Replaces the accepted API keys; requests after this call are checked against the new ones.
    pub fn set_api_keys(&self, keys: Vec<String>) {
        self.with_state(|state| state.api_keys = keys);
    }

    /// Queues a fault behind those already queued. A `server_error` status outside 500..=599 is
    /// answered as 500; [`Fault::validate`] tells beforehand.
    pub fn inject_fault(&self, fault: Fault) {
        self.with_state(|state| state.faults.push(fault));
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.with_state(|state| state.faults.clear());
    }

    /// The faults still queued, head first, each with its remaining uses as `count`.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.with_state(|state| state.faults.pending())
    }

    /// Every list request since the start or the last [`Simulator::clear_requests`], oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|state| state.requests.clone())
    }

    /// Forgets the recorded list requests and product list requests.
    pub fn clear_requests(&self) {
        self.with_state(|state| {
            state.requests.clear();
            state.product_requests.clear();
        });
    }
}

/// A simulator serving on a loopback port in a background task; dropping it stops the server.
#[derive(Debug)]
pub struct RunningSimulator {
    simulator: Simulator,
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningSimulator {
    /// The handle onto the served simulator's state.
    pub fn simulator(&self) -> &Simulator {
        &self.simulator
    }

    /// The base URL to give a PPIO client, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_started_simulator_serves_real_http_until_dropped() {
        let running = Simulator::start(SimulatorConfig {
            api_keys: vec!["k".to_owned()],
            instances: vec![json!({"id": "ca338f12f3", "name": "demo"})],
            ..SimulatorConfig::default()
        })
        .await
        .expect("starts");
        assert!(running.base_url().starts_with("http://127.0.0.1:"));
        let client = reqwest::Client::new();
        let url = format!("{}/gpus/v2/instances?limit=10", running.base_url());
        let response = client
            .get(&url)
            .bearer_auth("k")
            .send()
            .await
            .expect("request succeeds");
        assert_eq!(response.status().as_u16(), 200);
        let page: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        assert_eq!(page["data"][0]["id"], json!("ca338f12f3"));
        assert_eq!(running.simulator().requests().len(), 1);

        let addr = running.addr();
        drop(running);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        // Kept-alive connections are closed too: the same client cannot reach it any more.
        assert!(client.get(&url).bearer_auth("k").send().await.is_err());
    }

    #[tokio::test]
    async fn start_refuses_instances_without_ids() {
        let error = Simulator::start(SimulatorConfig {
            instances: vec![json!({"name": "no id"})],
            ..SimulatorConfig::default()
        })
        .await
        .expect_err("must fail");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn clones_share_one_state() {
        let simulator = Simulator::new(SimulatorConfig::default());
        let clone = simulator.clone();
        clone.upsert_instance(json!({"id": "a", "created_at": 2}));
        simulator.upsert_instance(json!({"id": "b", "created_at": "1"}));
        assert_eq!(
            clone.instances(),
            vec![
                json!({"id": "b", "created_at": "1"}),
                json!({"id": "a", "created_at": 2})
            ]
        );
        assert!(simulator.patch_instance("a", json!({"name": "x"})));
        assert_eq!(
            clone.instance("a").map(|r| r["name"].clone()),
            Some(json!("x"))
        );
        assert!(!simulator.patch_instance("zz", json!({"name": "x"})));
        assert!(clone.remove_instance("a"));
        assert!(!clone.remove_instance("a"));
    }
}
