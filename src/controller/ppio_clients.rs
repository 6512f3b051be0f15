//! PPIO clients, one per endpoint, reused across syncs; one request budget per API key across
//! every endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ppio::PpioError;
use url::Url;

use crate::process::metrics::Metrics;

/// PPIO clients kept for reuse (one per endpoint).
const MAX_CACHED_CLIENTS: usize = 64;

/// The PPIO clients of every view, by endpoint.
pub(super) struct PpioClients {
    config: ppio::ClientConfig,
    metrics: Metrics,
    rate_limiter: Arc<ppio::RateLimiter>,
    clients: Mutex<HashMap<Url, ppio::Client>>,
}

impl PpioClients {
    /// Clients of `config` to any endpoint, recording their requests into `metrics`.
    pub(super) fn new(config: ppio::ClientConfig, metrics: Metrics) -> PpioClients {
        PpioClients {
            rate_limiter: Arc::new(ppio::RateLimiter::new(config.requests_per_minute)),
            config,
            metrics,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `endpoint`.
    pub(super) fn of(&self, endpoint: &Url) -> Result<ppio::Client, PpioError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(endpoint) {
            return Ok(client.clone());
        }
        let metrics = self.metrics.clone();
        let client = ppio::Client::new(ppio::ClientConfig {
            base_url: endpoint.clone(),
            ..self.config.clone()
        })?
        .with_rate_limiter(self.rate_limiter.clone())
        .with_request_observer(move |outcome| {
            metrics.record_ppio_request(outcome.status_code, outcome.latency)
        });
        // Views choose endpoints (within the allow-list): keep the cache from growing without end.
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        clients.insert(endpoint.clone(), client.clone());
        Ok(client)
    }
}
