//! A faithful simulator of the PPIO GPU API v2 list endpoints (instances and products), for tests
//! and the local demo.
//!
//! The real API cannot be reached from tests, so this crate serves `GET /gpus/v2/instances` and
//! `GET /gpus/v2/products` the way PPIO's public documentation and the observed service behave,
//! from instance records it holds as PPIO wire-format JSON. It does **not** use the project's PPIO client
//! types: the client is tested against an independent implementation of the wire format.
//!
//! Integration tests use it in process ([`Simulator::start`], then change its state between syncs and
//! inject faults); the `ppio-simulator` binary serves it for the local demo.
//!
//! [`Workload`] serves what runs on an instance (an inference server's `GET /v1/models`, naming the
//! instance) at an address a test chooses, to be reached through a cluster Service.
//!
//! What it is not: a model of the rest of PPIO (creating, stopping or fetching single instances), nor a
//! load-testing tool.
//!
//! # The list endpoint
//! `GET /gpus/v2/instances` with `Authorization: Bearer <key>`:
//! - `limit`: absent or 0 → the default page size (20); above the maximum (100) → clamped; negative or
//!   not an integer → 400.
//! - `cursor`: opaque, from a previous `next_cursor`; it names the last instance served, so each page
//!   is cut from the state at the time of its request. Unknown or garbled → 400.
//! - `name` (case-insensitive substring of name or id), `status` (exact), `regions` (comma-separated,
//!   any of them, blanks ignored), `billing_mode` (`postpaid` | `prepaid` | `spot`; empty = no filter;
//!   anything else → 400). Over-long values (255, 63, 1024 characters, as documented) → 400.
//! - Answer: `{"data": [...], "next_cursor": "...", "has_more": bool, "total": N}`, ordered by
//!   `created_at` then `id`; every field is always sent (`data` is `[]` when nothing matches);
//!   `next_cursor` is `""` on the last page; `total` counts all matches.
//! - Errors: `{"code": <status>, "reason": "UNAUTHORIZED" | "FORBIDDEN" | "RATE_LIMIT_EXCEEDED" |
//!   "VALIDATOR_PARAM" | "RESOURCE_NOT_FOUND" | "INTERNAL_SERVER_ERROR", "message": "...", "metadata": {}}`.
//!
//! # The product list
//! `GET /gpus/v2/products` with `Authorization: Bearer <key>` (401 without a valid one):
//! - `type`: `gpu` or `cpu`; absent or empty → `gpu`. `category`: `instance` or `serverless`,
//!   required. Optional narrowing: `cpu`, `memory_gb`, `rootfs_size` (integers >= 0: products with
//!   at least that many cores, GB of memory, GB of root disk), `billing_method` (`postpaid` |
//!   `prepaid` | `spot`: products offering it), `region_ids` (comma-separated: products in any of
//!   them). Any other value → 400 `VALIDATOR_PARAM`, in the error shape below.
//! - Answer: `{"data": [...]}`, one array, no pagination, by product ID. Every product ID a
//!   generated instance names is listed, with its GPU model (`resource_spec.gpu.name`,
//!   `memory_gb`); prices are integers at `precision` 3, `postpaid` and `spot` per card-hour
//!   (`unit: per_hour`), `prepaid` terms of 1, 3, 6 and 12 months per card, the 1-month one exactly
//!   720 hours of the postpaid price, as in PPIO's documented example.
//! - The same queued faults apply, one use per request whichever list it asks for; `malformed_json`
//!   cuts the product list short, `repeating_cursor` and `duplicate_ids` leave it as it is.
//!   Product list requests are recorded in a log of their own ([`Simulator::product_requests`]).
//!
//! Every list request is recorded ([`RecordedRequest`]). Faults ([`Fault`], [`FaultKind`]) queue in
//! order, each for the next `count` list requests or until cleared; see [`Fault`] for the details.
//!
//! # Control endpoints
//! On the same port, without authentication, JSON in and out (malformed input → 400
//! `{"error": "..."}`):
//!
//! | Method and path                      | Body                                   | Answer |
//! |--------------------------------------|----------------------------------------|--------|
//! | `GET /_simulator/instances`          |                                        | 200, all records in listing order |
//! | `PUT /_simulator/instances`          | `[record, ...]` or `{"data": [...]}`   | 204; replaces all records |
//! | `POST /_simulator/instances`         | one record (with `"id"`)               | 201 if new, 200 if replaced; the record |
//! | `PATCH /_simulator/instances/{id}`   | JSON merge patch (RFC 7386), an object | 200, the patched record; 404 if absent |
//! | `DELETE /_simulator/instances/{id}`  |                                        | 204; 404 if absent |
//! | `PUT /_simulator/instances/{id}/endpoints` | `{"8080": "http://203.0.113.9:31000", "22": ""}` | 200, the record; sets those exposed ports' endpoints (empty: none allocated), as a restart or migration moves them; 400 for a port it does not expose |
//! | `GET /_simulator/faults`             |                                        | 200, queued faults with remaining counts |
//! | `POST /_simulator/faults`            | `{"kind": {"type": "rate_limited", "retry_after_secs": 2}, "count": 3}` | 204 |
//! | `DELETE /_simulator/faults`          |                                        | 204; clears all faults |
//! | `GET /_simulator/requests`           |                                        | 200, `[{"query": {...}, "authorized": true, "status": 200}, ...]` |
//! | `DELETE /_simulator/requests`        |                                        | 204; forgets recorded requests (product requests too) |
//! | `PUT /_simulator/api-keys`           | `["k1", "k2"]`                         | 204; replaces the accepted keys |
//! | `GET /_simulator/products`           |                                        | 200, every product by ID |
//! | `POST /_simulator/products`          | one product (with `"id"`)              | 201 if new, 200 if replaced; the product |
//! | `PUT /_simulator/products/{id}/pricing` | a `pricing` object, any shape       | 200, the product with its new prices; 404 if absent |
//! | `DELETE /_simulator/products/{id}`   |                                        | 204; retires the product from the list; 404 if absent |
//! | `GET /_simulator/product-requests`   |                                        | 200, the product list requests, as `requests` |
//!
//! Fault `type`s: `unauthorized`, `forbidden`, `rate_limited` (`retry_after_secs`), `server_error`
//! (`status`, 5xx, default 500), `resource_not_found`, `delay` (`ms`), `malformed_json`,
//! `repeating_cursor`, `duplicate_ids`, `error_body_ok` (200 with
//! `{"code":500,"reason":"INTERNAL_SERVER_ERROR","message":"upstream failed"}`, as a gateway may send)
//! and `empty_object_ok` (200 with `{}`). Without `count`, a fault lasts until cleared.
//!
//! ```sh
//! curl -s -H 'Authorization: Bearer demo-key' 'http://127.0.0.1:8080/gpus/v2/instances?limit=2&regions=us-west-1'
//! curl -s -X PATCH -d '{"status":{"status":"exited"}}' http://127.0.0.1:8080/_simulator/instances/ca338f12f3
//! curl -s -X POST -d '{"kind":{"type":"rate_limited","retry_after_secs":5},"count":2}' http://127.0.0.1:8080/_simulator/faults
//! ```
//!
//! # In process
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use ppio_simulator::{Fault, FaultKind, Simulator, SimulatorConfig, generate_instances};
//!
//! let running = Simulator::start(SimulatorConfig {
//!     api_keys: vec!["test-key".to_owned()],
//!     instances: generate_instances(50, 42),
//!     ..SimulatorConfig::default()
//! })
//! .await?;
//! let base_url = running.base_url(); // give this to the PPIO client
//! running.simulator().inject_fault(Fault::once(FaultKind::RateLimited { retry_after_secs: Some(1) }));
//! running.simulator().patch_instance("ca338f12f3", serde_json::json!({"status": {"status": "exited"}}));
//! assert!(running.simulator().requests().is_empty());
//! # let _ = base_url;
//! # Ok(())
//! # }
//! ```

mod api;
mod control;
mod error;
mod faults;
mod generate;
mod handle;
mod listing;
mod products;
mod records;
mod state;
mod store;
mod workload;

pub use error::SimulatorError;
pub use faults::{Fault, FaultKind};
pub use generate::generate_instances;
pub use handle::{RunningSimulator, Simulator, SimulatorConfig};
pub use records::load_instances;
pub use state::RecordedRequest;
pub use workload::Workload;
