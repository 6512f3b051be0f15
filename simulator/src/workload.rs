//! What runs on a simulated instance: an inference server answering `GET /v1/models` (OpenAI's
//! list of models) with the instance's ID, served at an address of the caller's choosing, so a test
//! can tell which instance a request through a cluster Service reached.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::task::JoinHandle;

/// The workload of one instance, served until dropped.
pub struct Workload {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Workload {
    /// Serves the workload of instance `instance_id` on `address`, on the current runtime.
    pub async fn serve(address: SocketAddr, instance_id: &str) -> std::io::Result<Workload> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let body = json!({
            "object": "list",
            "data": [{ "id": "simulated-model", "object": "model", "owned_by": instance_id }],
        });
        let router = Router::new().route(
            "/v1/models",
            get(move || {
                let body = body.clone();
                async move { axum::Json(body) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Workload { address, task })
    }

    /// Where it is served.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_workload_names_its_instance() {
        let workload = Workload::serve("127.0.0.1:0".parse().unwrap(), "aa01")
            .await
            .expect("serve");
        let mut stream = tokio::net::TcpStream::connect(workload.address())
            .await
            .expect("connect");
        stream
            .write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"owned_by\":\"aa01\""), "{answer}");
    }
}
