//! Every Prometheus metric of the operator, in one registry, served at `/metrics` in the Prometheus
//! text format. Names carry the `ppio_gpu_operator_` prefix and their unit; counters end in `_total`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a sync outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `success` or `failure`.
    pub result: String,
    /// The view's Ready reason: `Synced`, or why it failed (`AuthFailed`, `ApiUnavailable`, ...).
    pub reason: String,
}

/// Labels of one PPIO request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PpioRequestLabels {
    /// HTTP status code, or `none` when no response arrived (timeout, connection failure).
    pub code: String,
}

/// Labels of one Kubernetes write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `apply` (object), `apply_status` (status subresource) or `delete`.
    pub verb: String,
    /// `gpuinstances` or `gpuinstanceviews`.
    pub resource: String,
}

/// Labels naming a view.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabels {
    /// The view's namespace.
    pub namespace: String,
    /// The view's name.
    pub view: String,
}

/// The operator's metrics. Cheap to clone: every metric is shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Duration of whole view syncs.
    pub sync_duration: Histogram,
    /// Syncs by result and reason.
    pub syncs: Family<SyncLabels, Counter>,
    /// PPIO requests by status code.
    pub ppio_requests: Family<PpioRequestLabels, Counter>,
    /// PPIO request latency.
    pub ppio_request_duration: Histogram,
    /// GpuInstances each view keeps.
    pub mirrored_instances: Family<ViewLabels, Gauge>,
    /// Writes to the Kubernetes API by verb and resource.
    pub kubernetes_writes: Family<WriteLabels, Counter>,
    /// 1 while this replica leads (or runs without leader election), else 0.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry holding every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ppio_gpu_operator");
        let sync_duration =
            Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]);
        let ppio_request_duration =
            Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let metrics = Metrics {
            registry: Arc::new(Registry::default()),
            sync_duration,
            syncs: Family::default(),
            ppio_requests: Family::default(),
            ppio_request_duration,
            mirrored_instances: Family::default(),
            kubernetes_writes: Family::default(),
            leader: Gauge::default(),
        };
        registry.register_with_unit(
            "sync_duration",
            "Duration of one GpuInstanceView sync, listing and writes included",
            prometheus_client::registry::Unit::Seconds,
            metrics.sync_duration.clone(),
        );
        registry.register(
            "syncs",
            "GpuInstanceView syncs by result and reason",
            metrics.syncs.clone(),
        );
        registry.register(
            "ppio_requests",
            "Requests to the PPIO API by HTTP status code",
            metrics.ppio_requests.clone(),
        );
        registry.register_with_unit(
            "ppio_request_duration",
            "Latency of requests to the PPIO API",
            prometheus_client::registry::Unit::Seconds,
            metrics.ppio_request_duration.clone(),
        );
        registry.register(
            "mirrored_instances",
            "GpuInstance objects each GpuInstanceView keeps",
            metrics.mirrored_instances.clone(),
        );
        registry.register(
            "kubernetes_writes",
            "Writes to the Kubernetes API by verb and resource",
            metrics.kubernetes_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the active controller, else 0",
            metrics.leader.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// Records one finished sync.
    pub fn record_sync(&self, reason: &str, success: bool, elapsed: Duration) {
        self.sync_duration.observe(elapsed.as_secs_f64());
        self.syncs
            .get_or_create(&SyncLabels {
                result: if success { "success" } else { "failure" }.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Records one PPIO request.
    pub fn record_ppio_request(&self, status_code: Option<u16>, latency: Duration) {
        let code = status_code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        self.ppio_requests
            .get_or_create(&PpioRequestLabels { code })
            .inc();
        self.ppio_request_duration.observe(latency.as_secs_f64());
    }

    /// Records one write to the Kubernetes API.
    pub fn record_write(&self, verb: &str, resource: &str) {
        self.kubernetes_writes
            .get_or_create(&WriteLabels {
                verb: verb.into(),
                resource: resource.into(),
            })
            .inc();
    }

    /// Sets how many GpuInstances a view keeps.
    pub fn set_mirrored(&self, namespace: &str, view: &str, count: i64) {
        self.mirrored_instances
            .get_or_create(&ViewLabels {
                namespace: namespace.into(),
                view: view.into(),
            })
            .set(count);
    }

    /// Forgets a deleted view.
    pub fn forget_view(&self, namespace: &str, view: &str) {
        self.mirrored_instances.remove(&ViewLabels {
            namespace: namespace.into(),
            view: view.into(),
        });
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_conventional_names() {
        let metrics = Metrics::new();
        metrics.record_sync("Synced", true, Duration::from_millis(120));
        metrics.record_ppio_request(Some(429), Duration::from_millis(30));
        metrics.record_ppio_request(None, Duration::from_secs(3));
        metrics.record_write("apply_status", "gpuinstances");
        metrics.set_mirrored("ml", "team", 7);
        let text = metrics.render();
        for expected in [
            "ppio_gpu_operator_sync_duration_seconds_bucket{le=\"0.25\"} 1",
            "ppio_gpu_operator_syncs_total{result=\"success\",reason=\"Synced\"} 1",
            "ppio_gpu_operator_ppio_requests_total{code=\"429\"} 1",
            "ppio_gpu_operator_ppio_requests_total{code=\"none\"} 1",
            "ppio_gpu_operator_ppio_request_duration_seconds_count 2",
            "ppio_gpu_operator_kubernetes_writes_total{verb=\"apply_status\",resource=\"gpuinstances\"} 1",
            "ppio_gpu_operator_mirrored_instances{namespace=\"ml\",view=\"team\"} 7",
            "ppio_gpu_operator_leader 0",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn a_forgotten_view_leaves_the_metrics() {
        let metrics = Metrics::new();
        metrics.set_mirrored("ml", "team", 7);
        metrics.forget_view("ml", "team");
        assert!(!metrics.render().contains("view=\"team\""));
    }
}
