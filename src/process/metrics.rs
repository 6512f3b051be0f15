//! Every Prometheus metric of the operator, in one registry, served at `/metrics` in the Prometheus
//! text format. Names carry the `ppio_gpu_operator_` prefix and their unit; counters end in `_total`.
//!
//! The fleet series of each view (its instances, GPUs, errors, prepaid terms, sync times; see
//! [`ppio_gpu_core::sync::fleet`]) are not gauges set one by one: the last [`FleetSnapshot`] of each view is kept
//! whole and encoded at scrape time. Replacing a view's snapshot therefore drops the series of
//! instances it no longer lists, and forgetting a deleted view drops all of its series, with nothing
//! to remove by hand. A scrape holds the lock only to copy the list of snapshots (reference counted).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use ppio::Decimal;
use ppio_gpu_core::sync::fleet::FleetSnapshot;

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
    /// `apply` (object), `apply_status` (status subresource), `merge_status` (the status of a view
    /// whose stored spec no longer fits the CRD, which server-side apply refuses) or `delete`.
    pub verb: String,
    /// `gpuinstances` or `gpuinstanceviews`.
    pub resource: String,
}

/// Labels naming a view.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
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
    /// Services turned not ready because no recent listing confirmed their instance.
    pub endpoint_freshness_flips: Counter,
    /// 1 while this replica leads (or runs without leader election), else 0.
    pub leader: Gauge,
    /// Reads of PPIO's product list by result.
    pub product_list_reads: Family<ResultLabels, Counter>,
    fleet: FleetViews,
}

/// Labels of an attempt's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: String,
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
        let syncs: Family<SyncLabels, Counter> = Family::default();
        let ppio_requests = Family::default();
        let mirrored_instances = Family::default();
        let kubernetes_writes = Family::default();
        let endpoint_freshness_flips = Counter::default();
        let leader = Gauge::default();
        let product_list_reads = Family::default();
        let fleet = FleetViews::default();
        registry.register_with_unit(
            "sync_duration",
            "Duration of one GpuInstanceView sync, listing and writes included",
            prometheus_client::registry::Unit::Seconds,
            sync_duration.clone(),
        );
        registry.register(
            "syncs",
            "GpuInstanceView syncs by result and reason",
            syncs.clone(),
        );
        registry.register(
            "ppio_requests",
            "Requests to the PPIO API by HTTP status code",
            ppio_requests.clone(),
        );
        registry.register_with_unit(
            "ppio_request_duration",
            "Latency of requests to the PPIO API",
            prometheus_client::registry::Unit::Seconds,
            ppio_request_duration.clone(),
        );
        registry.register(
            "mirrored_instances",
            "GpuInstance objects each GpuInstanceView keeps",
            mirrored_instances.clone(),
        );
        registry.register(
            "kubernetes_writes",
            "Writes to the Kubernetes API by verb and resource",
            kubernetes_writes.clone(),
        );
        registry.register(
            "endpoint_freshness_flips",
            "Services turned not ready because no listing confirmed their instance within the \
             view's freshness window",
            endpoint_freshness_flips.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the active controller, else 0",
            leader.clone(),
        );
        registry.register(
            "product_list_reads",
            "Reads of the PPIO product list (the prices) by result",
            product_list_reads.clone(),
        );
        registry.register_collector(Box::new(fleet.clone()));
        Metrics {
            registry: Arc::new(registry),
            sync_duration,
            syncs,
            ppio_requests,
            ppio_request_duration,
            mirrored_instances,
            kubernetes_writes,
            endpoint_freshness_flips,
            leader,
            product_list_reads,
            fleet,
        }
    }

    /// Records one read of the product list.
    pub fn record_product_list_read(&self, success: bool) {
        self.product_list_reads
            .get_or_create(&ResultLabels {
                result: if success { "success" } else { "failure" }.into(),
            })
            .inc();
    }

    /// Sets what the view's instances billed now spend an hour (`None`: too large to say) and its
    /// hourly budget (`None`: it has none).
    pub fn set_view_cost(
        &self,
        namespace: &str,
        view: &str,
        spend: Option<Decimal>,
        budget: Option<Decimal>,
    ) {
        let mut views = self.fleet.lock();
        let fleet = views.entry(view_labels(namespace, view)).or_default();
        fleet.hourly_spend = spend.map(as_float);
        fleet.hourly_budget = budget.map(as_float);
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

    /// Records one Service turned not ready for want of confirmation.
    pub fn record_freshness_flip(&self) {
        self.endpoint_freshness_flips.inc();
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

    /// Notes that the view is reconciled with `sync_interval`: from now on its sync interval and
    /// its last successful sync (0 until one succeeds) are exported.
    pub fn observe_view(&self, namespace: &str, view: &str, sync_interval: Duration) {
        self.fleet
            .lock()
            .entry(view_labels(namespace, view))
            .or_default()
            .sync_interval = sync_interval;
    }

    /// Replaces the view's fleet series with those of a complete listing, made by a sync that
    /// succeeded at `synced_at`.
    pub fn record_fleet(
        &self,
        namespace: &str,
        view: &str,
        snapshot: FleetSnapshot,
        synced_at: Timestamp,
    ) {
        let mut views = self.fleet.lock();
        let fleet = views.entry(view_labels(namespace, view)).or_default();
        fleet.snapshot = Some(Arc::new(snapshot));
        fleet.last_success = Some(synced_at);
    }

    /// Forgets a deleted view: every series that names it goes.
    pub fn forget_view(&self, namespace: &str, view: &str) {
        let labels = view_labels(namespace, view);
        self.mirrored_instances.remove(&labels);
        self.fleet.lock().remove(&labels);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn view_labels(namespace: &str, view: &str) -> ViewLabels {
    ViewLabels {
        namespace: namespace.into(),
        view: view.into(),
    }
}

/// `decimal` as a sample value: the nearest float, as Prometheus keeps every sample.
fn as_float(decimal: Decimal) -> f64 {
    decimal.to_string().parse().unwrap_or(f64::NAN)
}

/// What is exported of one view besides its counters.
#[derive(Clone, Debug, Default)]
struct ViewFleet {
    sync_interval: Duration,
    last_success: Option<Timestamp>,
    /// What its instances billed now spend an hour, as its last complete listing priced them.
    hourly_spend: Option<f64>,
    /// Its hourly budget, when it has one.
    hourly_budget: Option<f64>,
    /// The last complete listing; `None` before the first.
    snapshot: Option<Arc<FleetSnapshot>>,
}

/// The fleet of every view this replica reconciles, encoded at scrape time.
#[derive(Clone, Debug, Default)]
struct FleetViews(Arc<Mutex<BTreeMap<ViewLabels, ViewFleet>>>);

impl FleetViews {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ViewLabels, ViewFleet>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Collector for FleetViews {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Copied out (the snapshots are shared, not cloned) so that no sync waits for the encoding.
        let views: Vec<(ViewLabels, ViewFleet)> = self
            .lock()
            .iter()
            .map(|(labels, fleet)| (labels.clone(), fleet.clone()))
            .collect();
        let snapshots = || {
            views.iter().filter_map(|(view, fleet)| {
                let snapshot = fleet.snapshot.as_deref()?;
                Some((
                    [
                        ("namespace", view.namespace.as_str()),
                        ("view", view.view.as_str()),
                    ],
                    snapshot,
                ))
            })
        };
        let seconds = Unit::Seconds;

        let groups = || {
            snapshots().flat_map(|(view, snapshot)| {
                snapshot.groups.iter().map(move |(group, counts)| {
                    let labels = [
                        view[0],
                        view[1],
                        ("status", group.status.as_str()),
                        ("region", group.region.as_str()),
                        ("billing_mode", group.billing_mode.as_str()),
                    ];
                    (labels, *counts)
                })
            })
        };
        encode_gauges(
            &mut encoder,
            "instances",
            "PPIO instances in the last complete listing of each view, by status, region and \
             billing mode.",
            None,
            groups().map(|(labels, counts)| (labels, counts.instances)),
        )?;
        encode_gauges(
            &mut encoder,
            "gpus",
            "GPUs of the PPIO instances in the last complete listing of each view, by status, region \
             and billing mode.",
            None,
            groups().map(|(labels, counts)| (labels, counts.gpus)),
        )?;
        encode_gauges(
            &mut encoder,
            "hourly_spend",
            "What the PPIO instances billed now in the last complete listing of each view cost an \
             hour, summed, by status, region and billing mode: those whose price is known, in the \
             view's currency (spec.cost.currency).",
            None,
            // A group billed only at unknown prices has no spend to show: zero would read as one.
            groups()
                .filter(|(_, counts)| counts.unpriced == 0 || !counts.hourly_spend.is_zero())
                .map(|(labels, counts)| (labels, as_float(counts.hourly_spend))),
        )?;
        encode_gauges(
            &mut encoder,
            "unpriced_instances",
            "PPIO instances billed now in the last complete listing of each view whose price is \
             unknown, by status, region and billing mode.",
            None,
            groups().map(|(labels, counts)| (labels, counts.unpriced)),
        )?;
        encode_gauges(
            &mut encoder,
            "product_hourly_spend",
            "What the PPIO instances billed now in the last complete listing of each view cost an \
             hour, summed, by product: those whose price is known, in the view's currency.",
            None,
            snapshots().flat_map(|(view, snapshot)| {
                snapshot
                    .hourly_spend_by_product
                    .iter()
                    .map(move |(product, spend)| {
                        (
                            [view[0], view[1], ("product_id", product.as_str())],
                            as_float(*spend),
                        )
                    })
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "view_hourly_spend",
            "What the PPIO instances billed now in the last complete listing of each view cost an \
             hour, all modes together: those whose price is known, in the view's currency.",
            None,
            views.iter().filter_map(|(view, fleet)| {
                let labels = [
                    ("namespace", view.namespace.as_str()),
                    ("view", view.view.as_str()),
                ];
                Some((labels, fleet.hourly_spend?))
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "view_hourly_budget",
            "The hourly budget of each view that sets one (spec.cost.hourlyBudget), in the view's \
             currency.",
            None,
            views.iter().filter_map(|(view, fleet)| {
                let labels = [
                    ("namespace", view.namespace.as_str()),
                    ("view", view.view.as_str()),
                ];
                Some((labels, fleet.hourly_budget?))
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "instances_with_error",
            "PPIO instances in the last complete listing of each view whose status carries an error, \
             by status.",
            None,
            snapshots().flat_map(|(view, snapshot)| {
                snapshot
                    .with_error_by_status
                    .iter()
                    .map(move |(status, count)| {
                        ([view[0], view[1], ("status", status.as_str())], *count)
                    })
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "instance_prepaid_end_time",
            "Unix time when the term of a prepaid PPIO instance ends.",
            Some(&seconds),
            snapshots().flat_map(|(view, snapshot)| {
                snapshot.prepaid.iter().map(move |term| {
                    let labels = [
                        view[0],
                        view[1],
                        ("instance_id", term.instance_id.as_str()),
                        ("auto_renew", if term.auto_renew { "true" } else { "false" }),
                    ];
                    (labels, term.end_time_seconds)
                })
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "view_last_successful_sync_timestamp",
            "Unix time of the last successful sync of each view; 0 before the first.",
            Some(&seconds),
            views.iter().map(|(view, fleet)| {
                let labels = [
                    ("namespace", view.namespace.as_str()),
                    ("view", view.view.as_str()),
                ];
                (labels, fleet.last_success.map_or(0, |at| at.as_second()))
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "view_sync_interval",
            "The sync interval of each view.",
            Some(&seconds),
            views.iter().map(|(view, fleet)| {
                let labels = [
                    ("namespace", view.namespace.as_str()),
                    ("view", view.view.as_str()),
                ];
                (labels, fleet.sync_interval.as_secs_f64())
            }),
        )?;
        // Opt-in: exported only when the operator keeps it (--metrics-instance-info).
        if snapshots().any(|(_, snapshot)| snapshot.instances.is_some()) {
            encode_gauges(
                &mut encoder,
                "instance_info",
                "1 for each PPIO instance in the last complete listing of each view, its labels \
                 describing it.",
                None,
                snapshots().flat_map(|(view, snapshot)| {
                    snapshot.instances.iter().flatten().map(move |info| {
                        let labels = [
                            view[0],
                            view[1],
                            ("instance_id", info.instance_id.as_str()),
                            ("name", info.name.as_str()),
                            ("status", info.status.as_str()),
                            ("region", info.region.as_str()),
                            ("billing_mode", info.billing_mode.as_str()),
                            ("product_id", info.product_id.as_str()),
                        ];
                        (labels, 1_i64)
                    })
                }),
            )?;
        }
        Ok(())
    }
}

/// Encodes one gauge family from its series.
fn encode_gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl Iterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
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
        metrics.record_freshness_flip();
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
            "ppio_gpu_operator_endpoint_freshness_flips_total 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn a_forgotten_view_leaves_the_metrics() {
        let metrics = Metrics::new();
        metrics.set_mirrored("ml", "team", 7);
        metrics.observe_view("ml", "team", Duration::from_secs(60));
        metrics.record_fleet("ml", "team", snapshot(&fleet(), true), at(1_750_000_000));
        metrics.observe_view("ml", "other", Duration::from_secs(60));
        assert!(metrics.render().contains("view=\"team\""));
        metrics.forget_view("ml", "team");
        let text = metrics.render();
        assert!(!text.contains("view=\"team\""), "{text}");
        assert!(text.contains("view=\"other\""), "{text}");
    }

    use ppio::{AutoRenew, Billing, Instance, Prepaid};
    use ppio_gpu_core::sync::fixtures::instance;
    use ppio_gpu_core::sync::fleet::{FleetSnapshot, FleetTally};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn with_billing(mut i: Instance, mode: &str, prepaid: Option<(i64, bool)>) -> Instance {
        i.billing = Some(Billing {
            mode: mode.into(),
            prepaid: prepaid.map(|(end, enabled)| Prepaid {
                months: 1,
                end_time: Timestamp::from_second(end).ok(),
                auto_renew: Some(AutoRenew {
                    enabled,
                    ..Default::default()
                }),
            }),
        });
        i
    }

    fn fleet() -> Vec<Instance> {
        let mut broken = with_billing(instance("c3", "exited", "us-1", 1), "postpaid", None);
        if let Some(status) = &mut broken.status {
            status.error = "ImagePullFailed".into();
        }
        broken.name = "say \"hi\"\\".into();
        // Not in the product list: its price is unknown, but it is not billed (exited).
        broken.product_id = "p-retired".into();
        vec![
            with_billing(
                instance("a1", "running", "eu-1", 8),
                "prepaid",
                Some((1_800_000_000, true)),
            ),
            with_billing(
                instance("b2", "running", "eu-1", 4),
                "prepaid",
                Some((1_700_000_000, false)),
            ),
            broken,
        ]
    }

    /// The fleet's products: the A100 prepaid at 9,072.000 a card and month (12.600 an hour).
    fn products() -> ppio::Products {
        ppio::Products::from_json(
            br#"{"data":[{"id":"p-a100","name":"A100","type":"gpu","pricing":{"precision":3,
            "postpaid":{"base_price":18000,"final_price":12600,"unit":"per_hour"},
            "prepaid":[{"duration_months":1,"base_price":12960000,"final_price":9072000}]}}]}"#,
        )
        .unwrap()
    }

    fn snapshot(instances: &[Instance], info: bool) -> FleetSnapshot {
        let products = products();
        let mut tally = FleetTally::new(info);
        for i in instances {
            let mut i = i.clone();
            if i.product_id.is_empty() {
                i.product_id = "p-a100".into();
            }
            let summary = (&i).into();
            tally.add(
                &summary,
                &ppio_gpu_core::cost::instance_cost(&summary, &products, at(1_750_000_000)),
            );
        }
        tally.finish()
    }

    /// The sample lines of the fleet series (those naming a view), in order.
    fn fleet_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains("view=\""))
            .filter(|l| !l.starts_with("ppio_gpu_operator_mirrored_instances"))
            .collect()
    }

    #[test]
    fn the_fleet_of_a_view_renders_as_its_last_complete_listing() {
        let metrics = Metrics::new();
        metrics.observe_view("ml", "team", Duration::from_secs(90));
        assert_eq!(
            fleet_lines(&metrics.render()),
            vec![
                "ppio_gpu_operator_view_last_successful_sync_timestamp_seconds{namespace=\"ml\",view=\"team\"} 0",
                "ppio_gpu_operator_view_sync_interval_seconds{namespace=\"ml\",view=\"team\"} 90.0",
            ],
            "before the first success: the sync times only, the last one 0"
        );

        metrics.record_fleet("ml", "team", snapshot(&fleet(), true), at(1_750_000_123));
        metrics.set_view_cost("ml", "team", Decimal::new(100_800, 3), Decimal::new(150, 0));
        let text = metrics.render();
        assert_eq!(
            fleet_lines(&text),
            vec![
                r#"ppio_gpu_operator_instances{namespace="ml",view="team",status="exited",region="us-1",billing_mode="postpaid"} 1"#,
                r#"ppio_gpu_operator_instances{namespace="ml",view="team",status="running",region="eu-1",billing_mode="prepaid"} 2"#,
                r#"ppio_gpu_operator_gpus{namespace="ml",view="team",status="exited",region="us-1",billing_mode="postpaid"} 1"#,
                r#"ppio_gpu_operator_gpus{namespace="ml",view="team",status="running",region="eu-1",billing_mode="prepaid"} 12"#,
                // Prepaid: 8 cards at 12.600 an hour, billed for the term (which renews); the other
                // prepaid term ended without renewal, and the exited postpaid instance is not
                // billed, so its unknown price is not counted.
                r#"ppio_gpu_operator_hourly_spend{namespace="ml",view="team",status="exited",region="us-1",billing_mode="postpaid"} 0.0"#,
                r#"ppio_gpu_operator_hourly_spend{namespace="ml",view="team",status="running",region="eu-1",billing_mode="prepaid"} 100.8"#,
                r#"ppio_gpu_operator_unpriced_instances{namespace="ml",view="team",status="exited",region="us-1",billing_mode="postpaid"} 0"#,
                r#"ppio_gpu_operator_unpriced_instances{namespace="ml",view="team",status="running",region="eu-1",billing_mode="prepaid"} 0"#,
                r#"ppio_gpu_operator_product_hourly_spend{namespace="ml",view="team",product_id="p-a100"} 100.8"#,
                r#"ppio_gpu_operator_view_hourly_spend{namespace="ml",view="team"} 100.8"#,
                r#"ppio_gpu_operator_view_hourly_budget{namespace="ml",view="team"} 150.0"#,
                r#"ppio_gpu_operator_instances_with_error{namespace="ml",view="team",status="exited"} 1"#,
                r#"ppio_gpu_operator_instances_with_error{namespace="ml",view="team",status="running"} 0"#,
                r#"ppio_gpu_operator_instance_prepaid_end_time_seconds{namespace="ml",view="team",instance_id="a1",auto_renew="true"} 1800000000"#,
                r#"ppio_gpu_operator_instance_prepaid_end_time_seconds{namespace="ml",view="team",instance_id="b2",auto_renew="false"} 1700000000"#,
                r#"ppio_gpu_operator_view_last_successful_sync_timestamp_seconds{namespace="ml",view="team"} 1750000123"#,
                r#"ppio_gpu_operator_view_sync_interval_seconds{namespace="ml",view="team"} 90.0"#,
                r#"ppio_gpu_operator_instance_info{namespace="ml",view="team",instance_id="a1",name="",status="running",region="eu-1",billing_mode="prepaid",product_id="p-a100"} 1"#,
                r#"ppio_gpu_operator_instance_info{namespace="ml",view="team",instance_id="b2",name="",status="running",region="eu-1",billing_mode="prepaid",product_id="p-a100"} 1"#,
                r#"ppio_gpu_operator_instance_info{namespace="ml",view="team",instance_id="c3",name="say \"hi\"\\",status="exited",region="us-1",billing_mode="postpaid",product_id="p-retired"} 1"#,
            ]
        );
        for (name, unit_suffix) in [
            ("instances", ""),
            ("gpus", ""),
            ("instances_with_error", ""),
            ("hourly_spend", ""),
            ("unpriced_instances", ""),
            ("product_hourly_spend", ""),
            ("view_hourly_spend", ""),
            ("view_hourly_budget", ""),
            ("instance_prepaid_end_time", "_seconds"),
            ("view_last_successful_sync_timestamp", "_seconds"),
            ("view_sync_interval", "_seconds"),
            ("instance_info", ""),
        ] {
            let full = format!("ppio_gpu_operator_{name}{unit_suffix}");
            assert!(
                text.contains(&format!("# TYPE {full} gauge\n")),
                "{full}: {text}"
            );
            assert!(text.contains(&format!("# HELP {full} ")), "{full}: {text}");
        }
    }

    #[test]
    fn a_new_listing_replaces_the_series_of_the_last_one() {
        let metrics = Metrics::new();
        metrics.observe_view("ml", "team", Duration::from_secs(60));
        metrics.record_fleet("ml", "team", snapshot(&fleet(), true), at(1_750_000_000));
        // b2 is gone and a1 stopped.
        let mut next = fleet();
        next.remove(1);
        if let Some(status) = &mut next[0].status {
            status.status = "exited".into();
        }
        metrics.record_fleet("ml", "team", snapshot(&next, true), at(1_750_000_060));
        let text = metrics.render();
        let lines = fleet_lines(&text);
        assert!(!text.contains("b2"), "{text}");
        assert!(!text.contains("status=\"running\""), "{text}");
        for expected in [
            r#"ppio_gpu_operator_instances{namespace="ml",view="team",status="exited",region="eu-1",billing_mode="prepaid"} 1"#,
            r#"ppio_gpu_operator_instance_prepaid_end_time_seconds{namespace="ml",view="team",instance_id="a1",auto_renew="true"} 1800000000"#,
            r#"ppio_gpu_operator_view_last_successful_sync_timestamp_seconds{namespace="ml",view="team"} 1750000060"#,
        ] {
            assert!(lines.contains(&expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn the_info_series_is_absent_unless_asked_for() {
        let metrics = Metrics::new();
        metrics.record_fleet("ml", "team", snapshot(&fleet(), false), at(1_750_000_000));
        let text = metrics.render();
        assert!(!text.contains("instance_info"), "{text}");
        assert!(text.contains("ppio_gpu_operator_instances{"), "{text}");
    }

    #[test]
    fn every_fleet_series_has_a_prometheus_name() {
        let metrics = Metrics::new();
        metrics.observe_view("ml", "team", Duration::from_secs(60));
        metrics.record_fleet("ml", "team", snapshot(&fleet(), true), at(1_750_000_000));
        for line in metrics.render().lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split(' ').nth(2).unwrap_or_default();
            let kind = line.split(' ').nth(3).unwrap_or_default();
            assert!(name.starts_with("ppio_gpu_operator_"), "{line}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{line}"
            );
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
            if kind != "histogram" {
                for reserved in ["_count", "_sum", "_bucket"] {
                    assert!(!name.ends_with(reserved), "{line}");
                }
            }
        }
    }
}
