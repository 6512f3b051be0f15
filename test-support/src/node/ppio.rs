//! The PPIO simulator, serving for the whole test run on the node's address, with a log of the list
//! requests it answered: who asked (the pod's address), with which API key, and whether for a first
//! page, so tests can tell which pod synced which view, and when.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use ppio_simulator::{Simulator, SimulatorConfig, generate_instances};

use super::{INSTANCES, NODE_IP, SIMULATOR_PORT};

/// A list request the simulator answered.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: SystemTime,
    /// Who sent it: the operator pod's address.
    pub peer: IpAddr,
    /// The API key it carried.
    pub api_key: String,
    /// Whether it asked for a later page (a `cursor`), rather than starting a listing.
    pub continues: bool,
}

/// The PPIO simulator, serving for the whole test run on the node's address.
pub struct Ppio {
    /// Its state: keys, instances, faults.
    pub simulator: Simulator,
    seen: Arc<Mutex<Vec<Seen>>>,
    api_keys: Mutex<Vec<String>>,
}

impl Ppio {
    /// Accepts one more API key.
    pub fn accept_key(&self, api_key: &str) {
        let mut keys = self.api_keys.lock().expect("API keys");
        keys.push(api_key.to_owned());
        self.simulator.set_api_keys(keys.clone());
    }

    /// The list requests made with `api_key`, in the order they arrived.
    pub fn seen_with(&self, api_key: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("request log")
            .iter()
            .filter(|s| s.api_key == api_key)
            .cloned()
            .collect()
    }
}

/// The simulator with [`INSTANCES`] instances, started on first use.
pub fn ppio() -> &'static Ppio {
    ppio_with(INSTANCES)
}

/// The simulator, started on first use with `instances` generated instances, on a runtime of its own
/// (each test has its own runtime). Later calls get the same simulator, whatever they ask.
pub fn ppio_with(instances: usize) -> &'static Ppio {
    static PPIO: OnceLock<Ppio> = OnceLock::new();
    PPIO.get_or_init(|| {
        let simulator = Simulator::new(SimulatorConfig {
            api_keys: Vec::new(),
            instances: generate_instances(instances, 16),
            max_page_size: 200,
            ..SimulatorConfig::default()
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = simulator.router().layer(middleware::from_fn({
            let seen = seen.clone();
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next| {
                let seen = seen.clone();
                async move { record(seen, peer, request, next).await }
            }
        }));
        let address: SocketAddr = format!("{NODE_IP}:{SIMULATOR_PORT}")
            .parse()
            .expect("the simulator's address");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the simulator's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(address).await;
                let listener = match listener {
                    Ok(listener) => {
                        let _ = ready_tx.send(Ok(()));
                        listener
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await;
            });
        });
        ready_rx
            .recv()
            .expect("the simulator's thread")
            .unwrap_or_else(|e| {
                panic!("cannot serve the simulator on {address} (is this the node's network namespace?): {e}")
            });
        Ppio {
            simulator,
            seen,
            api_keys: Mutex::new(Vec::new()),
        }
    })
}

async fn record(
    seen: Arc<Mutex<Vec<Seen>>>,
    peer: SocketAddr,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/gpus/v2/instances" {
        let api_key = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_owned();
        let continues = request.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|p| p.starts_with("cursor=") && p.len() > 7)
        });
        seen.lock().expect("request log").push(Seen {
            at: SystemTime::now(),
            peer: peer.ip(),
            api_key,
            continues,
        });
    }
    next.run(request).await
}

/// The listings in `seen`: runs of requests from one peer, each starting with a first page, as
/// (peer, first request's time, last request's time).
pub fn listings(seen: &[Seen]) -> Vec<(IpAddr, SystemTime, SystemTime)> {
    let mut open: BTreeMap<IpAddr, (SystemTime, SystemTime)> = BTreeMap::new();
    let mut done = Vec::new();
    for s in seen {
        if !s.continues {
            if let Some((start, end)) = open.remove(&s.peer) {
                done.push((s.peer, start, end));
            }
            open.insert(s.peer, (s.at, s.at));
        } else if let Some(entry) = open.get_mut(&s.peer) {
            entry.1 = s.at;
        }
    }
    done.extend(
        open.into_iter()
            .map(|(peer, (start, end))| (peer, start, end)),
    );
    done.sort_by_key(|(_, start, _)| *start);
    done
}

/// Panics when two listings of one view, from two different pods, overlap in time.
pub fn assert_no_two_syncs_at_once(seen: &[Seen]) {
    let all = listings(seen);
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let overlap = a.0 != b.0 && b.1 <= a.2 && a.1 <= b.2;
            assert!(
                !overlap,
                "two pods listed the same view at once: {} from {:?} to {:?}, {} from {:?} to {:?}",
                a.0, a.1, a.2, b.0, b.1, b.2
            );
        }
    }
}
