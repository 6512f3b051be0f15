//! Fleet metrics of one view: what its complete PPIO listing holds, counted the way
//! kube-state-metrics counts objects. A [`FleetTally`] counts the instances page by page while the
//! listing arrives; only a complete listing turns it into a [`FleetSnapshot`], which
//! the operator's metrics export until the next complete listing replaces it. A listing that fails is
//! dropped with its tally, so the numbers stay as the last complete listing left them, like the view's
//! status counts.
//!
//! Pure, no I/O. PPIO data is untrusted, so every label value taken from it is bounded here:
//! - control characters are stripped and each value is cut to [`MAX_LABEL_BYTES`] (on a character
//!   boundary); an empty status, region or billing mode reads `unknown`;
//! - a view keeps at most [`MAX_COUNT_KEYS`] statuses and regions and [`MAX_BILLING_MODES`] billing
//!   modes, those with the most instances (as the view's status counts do); the rest count under
//!   [`OTHER`];
//! - a view exports at most [`MAX_GROUPS`] (status, region, billing mode) combinations, those with
//!   the most instances; the rest add up under (`other`, `other`, `other`).
//!
//! The per-instance series (the prepaid end time, and the opt-in info) are one per instance by
//! nature. Memory follows what is exported: during the listing, counts are kept per distinct label
//! value and per combination, and per instance only for prepaid instances (and for every instance
//! only with the info series on).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::cost::InstanceCost;
use crate::sync::counts::{self, OTHER};
use crate::sync::summary::MAX_COUNT_KEYS;
use ppio::{Decimal, RecordSummary};

/// Longest label value taken from PPIO data, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;
/// Distinct billing modes a view exports; PPIO knows three.
pub const MAX_BILLING_MODES: usize = 8;
/// Distinct (status, region, billing mode) combinations a view exports.
pub const MAX_GROUPS: usize = 256;
/// The labels the fleet counts are split by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    /// The remote status, e.g. `running`.
    pub status: String,
    /// The region, e.g. `eu-west-1`.
    pub region: String,
    /// `postpaid`, `prepaid`, `spot` (or what else PPIO sends).
    pub billing_mode: String,
}

/// Instances and their GPUs in one [`Group`], and what those billed now spend an hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Instances listed.
    pub instances: i64,
    /// Their GPUs (`resource_specs.gpu_num`, negative counts as 0).
    pub gpus: i64,
    /// The hourly rates of those billed now whose price is known, summed.
    pub hourly_spend: Decimal,
    /// Those billed now whose price is unknown.
    pub unpriced: i64,
}

/// The term of one prepaid instance, as its series says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepaidTermSeries {
    /// The instance's ID, as a label value.
    pub instance_id: String,
    /// When the term ends, in Unix seconds.
    pub end_time_seconds: i64,
    /// Whether the instance renews itself.
    pub auto_renew: bool,
}

/// What the info series says of one instance; every field is a bounded label value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    /// The instance's ID.
    pub instance_id: String,
    /// Its name (may be empty).
    pub name: String,
    /// Its status, bounded like the counts' status.
    pub status: String,
    /// Its region, bounded like the counts' region.
    pub region: String,
    /// Its billing mode, bounded like the counts' billing mode.
    pub billing_mode: String,
    /// Its product ID (may be empty).
    pub product_id: String,
}

/// The fleet of one view as its last complete listing showed it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetSnapshot {
    /// Instances and GPUs per combination of labels.
    pub groups: BTreeMap<Group, GroupCounts>,
    /// Per status of the listing: instances whose PPIO status carries an error (0 for none).
    pub with_error_by_status: BTreeMap<String, i64>,
    /// Prepaid instances with an end time, by instance ID.
    pub prepaid: Vec<PrepaidTermSeries>,
    /// Every listed instance, by instance ID; `None` unless the info series is on.
    pub instances: Option<Vec<InstanceInfo>>,
    /// The hourly spend of the instances billed now whose price is known, by product ID (at most
    /// [`MAX_COUNT_KEYS`] products, those with the most instances; the rest under [`OTHER`]).
    pub hourly_spend_by_product: BTreeMap<String, Decimal>,
}

/// Counts of a listing in progress. Feed it every listed instance with [`FleetTally::add`]; call
/// [`FleetTally::finish`] only once the listing is complete.
#[derive(Debug, Default)]
pub struct FleetTally {
    statuses: Interned,
    regions: Interned,
    billing_modes: Interned,
    /// Counts per (status, region, billing mode) index triple.
    groups: HashMap<(usize, usize, usize), GroupCounts>,
    /// Instances with an error per status index.
    with_error: HashMap<usize, i64>,
    /// Prepaid terms by instance ID; a second instance whose cleaned ID collides is dropped.
    prepaid: BTreeMap<String, (i64, bool)>,
    /// With the info series on, every instance by ID.
    instances: Option<BTreeMap<String, ListedInstance>>,
    products: Interned,
    /// Hourly spend per product index.
    spend_by_product: HashMap<usize, Decimal>,
}

/// An instance for the info series, with its bounded labels still as indices.
#[derive(Debug)]
struct ListedInstance {
    name: String,
    product_id: String,
    status: usize,
    region: usize,
    billing_mode: usize,
}

impl FleetTally {
    /// An empty tally; `instance_info` keeps every instance for the info series.
    pub fn new(instance_info: bool) -> FleetTally {
        FleetTally {
            instances: instance_info.then(BTreeMap::new),
            ..FleetTally::default()
        }
    }

    /// Counts one listed instance, which costs `cost`.
    pub fn add(&mut self, instance: &RecordSummary, cost: &InstanceCost) {
        let status = self.statuses.add(&instance.status);
        let region = self.regions.add(&instance.region);
        let billing_mode = self.billing_modes.add(&instance.billing_mode);
        let product = self.products.add(&instance.product_id);
        let counts = self
            .groups
            .entry((status, region, billing_mode))
            .or_default();
        counts.instances += 1;
        counts.gpus = counts.gpus.saturating_add(instance.gpus.max(0));
        if cost.billed_now {
            match &cost.price {
                Ok(price) => {
                    add_spend(&mut counts.hourly_spend, price.hourly);
                    add_spend(
                        self.spend_by_product.entry(product).or_default(),
                        price.hourly,
                    );
                }
                Err(_) => counts.unpriced += 1,
            }
        }
        if instance.has_error {
            *self.with_error.entry(status).or_default() += 1;
        }

        let prepaid = instance
            .prepaid
            .filter(|_| instance.is_prepaid())
            .and_then(|p| Some((p.end_time?.as_second(), p.auto_renew)));
        if prepaid.is_none() && self.instances.is_none() {
            return;
        }
        let id = metric_label_value(instance.id.as_str()).into_owned();
        if let Some(term) = prepaid {
            self.prepaid.entry(id.clone()).or_insert(term);
        }
        if let Some(instances) = &mut self.instances {
            instances.entry(id).or_insert_with(|| ListedInstance {
                name: metric_label_value(&instance.name).into_owned(),
                product_id: metric_label_value(&instance.product_id).into_owned(),
                status,
                region,
                billing_mode,
            });
        }
    }

    /// The snapshot of a complete listing, bounded as the module says.
    pub fn finish(self) -> FleetSnapshot {
        let statuses = self.statuses.bounded(MAX_COUNT_KEYS);
        let regions = self.regions.bounded(MAX_COUNT_KEYS);
        let billing_modes = self.billing_modes.bounded(MAX_BILLING_MODES);
        let products = self.products.bounded(MAX_COUNT_KEYS);
        let mut hourly_spend_by_product: BTreeMap<String, Decimal> = BTreeMap::new();
        for (product, spend) in self.spend_by_product {
            add_spend(
                hourly_spend_by_product
                    .entry(products[product].clone())
                    .or_default(),
                spend,
            );
        }
        let mut groups: BTreeMap<Group, GroupCounts> = BTreeMap::new();
        for ((status, region, billing_mode), counts) in self.groups {
            let group = Group {
                status: statuses[status].clone(),
                region: regions[region].clone(),
                billing_mode: billing_modes[billing_mode].clone(),
            };
            add_counts(groups.entry(group).or_default(), counts);
        }
        let mut with_error_by_status: BTreeMap<String, i64> =
            statuses.iter().map(|s| (s.clone(), 0)).collect();
        for (status, count) in self.with_error {
            *with_error_by_status
                .entry(statuses[status].clone())
                .or_default() += count;
        }
        let prepaid = self
            .prepaid
            .into_iter()
            .map(
                |(instance_id, (end_time_seconds, auto_renew))| PrepaidTermSeries {
                    instance_id,
                    end_time_seconds,
                    auto_renew,
                },
            )
            .collect();
        let instances = self.instances.map(|instances| {
            instances
                .into_iter()
                .map(|(instance_id, listed)| InstanceInfo {
                    instance_id,
                    name: listed.name,
                    status: statuses[listed.status].clone(),
                    region: regions[listed.region].clone(),
                    billing_mode: billing_modes[listed.billing_mode].clone(),
                    product_id: listed.product_id,
                })
                .collect()
        });
        FleetSnapshot {
            groups: bounded_groups(groups),
            with_error_by_status,
            prepaid,
            instances,
            hourly_spend_by_product,
        }
    }
}

/// `raw` as the value of a Prometheus label, which may be any text: control characters and
/// bidirectional marks stripped, at most [`MAX_LABEL_BYTES`]. Not the rule of Kubernetes labels
/// ([`crate::mirror::kubernetes_label_value`]).
pub fn metric_label_value(raw: &str) -> Cow<'_, str> {
    let clean = ppio::text::strip_control(raw, false);
    if clean.len() <= MAX_LABEL_BYTES {
        clean
    } else {
        Cow::Owned(ppio::text::truncate(&clean, MAX_LABEL_BYTES))
    }
}

/// The distinct values of one label, each stored once; instances refer to them by index.
#[derive(Debug, Default)]
struct Interned {
    index: HashMap<String, usize>,
    values: Vec<String>,
    instances: Vec<i64>,
}

impl Interned {
    /// Counts one more instance with `raw`, allocating only for a value not seen before.
    fn add(&mut self, raw: &str) -> usize {
        let label = metric_label_value(raw);
        let value = counts::key_of(&label, MAX_LABEL_BYTES);
        let id = match self.index.get(value.as_ref()) {
            Some(&id) => id,
            None => {
                let id = self.values.len();
                self.index.insert(value.clone().into_owned(), id);
                self.values.push(value.into_owned());
                self.instances.push(0);
                id
            }
        };
        self.instances[id] += 1;
        id
    }

    /// The label of each index: the `max` values with the most instances keep their own, the rest
    /// read [`OTHER`].
    fn bounded(self, max: usize) -> Vec<String> {
        let mut values = self.values;
        let entries = values
            .iter()
            .enumerate()
            .map(|(id, value)| (value.as_str(), (id, self.instances[id])));
        let (_, rest) = counts::split_largest(entries, max, |(_, n)| *n);
        let dropped: Vec<usize> = rest.into_iter().map(|(_, (id, _))| id).collect();
        for id in dropped {
            values[id] = OTHER.to_owned();
        }
        values
    }
}

fn add_counts(total: &mut GroupCounts, more: GroupCounts) {
    total.instances += more.instances;
    total.gpus = total.gpus.saturating_add(more.gpus);
    total.unpriced += more.unpriced;
    add_spend(&mut total.hourly_spend, more.hourly_spend);
}

/// Adds `more` to `total`. Within the bounds of prices, cards and a listing the sum is exact; were
/// it ever not to fit, the total stays as it was rather than wrap.
fn add_spend(total: &mut Decimal, more: Decimal) {
    if let Some(sum) = total.checked_add(more) {
        *total = sum;
    }
}

/// Keeps the [`MAX_GROUPS`] combinations with the most instances and adds the rest up under
/// (`other`, `other`, `other`).
fn bounded_groups(groups: BTreeMap<Group, GroupCounts>) -> BTreeMap<Group, GroupCounts> {
    let (ranked, rest) = counts::split_largest(groups, MAX_GROUPS, |c| c.instances);
    if rest.is_empty() {
        return ranked.into_iter().collect();
    }
    let mut kept: BTreeMap<_, _> = ranked.into_iter().collect();
    let other = kept
        .entry(Group {
            status: OTHER.to_owned(),
            region: OTHER.to_owned(),
            billing_mode: OTHER.to_owned(),
        })
        .or_default();
    for (_, counts) in rest {
        add_counts(other, counts);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fixtures::instance;
    use jiff::Timestamp;
    use ppio::{AutoRenew, Billing, Instance, Prepaid};

    fn billed(mut i: Instance, mode: &str) -> Instance {
        i.billing = Some(Billing {
            mode: mode.into(),
            prepaid: None,
        });
        i
    }

    fn prepaid(id: &str, end: i64, auto_renew: Option<bool>) -> Instance {
        let mut i = billed(instance(id, "running", "us-1", 1), "prepaid");
        if let Some(billing) = &mut i.billing {
            billing.prepaid = Some(Prepaid {
                months: 1,
                end_time: Timestamp::from_second(end).ok(),
                auto_renew: auto_renew.map(|enabled| AutoRenew {
                    enabled,
                    ..Default::default()
                }),
            });
        }
        i
    }

    fn group(status: &str, region: &str, billing_mode: &str) -> Group {
        Group {
            status: status.into(),
            region: region.into(),
            billing_mode: billing_mode.into(),
        }
    }

    fn tally(instances: &[Instance], info: bool) -> FleetSnapshot {
        let mut tally = FleetTally::new(info);
        for i in instances {
            let summary = i.into();
            tally.add(
                &summary,
                &crate::cost::instance_cost_unlisted(&summary, jiff::Timestamp::UNIX_EPOCH),
            );
        }
        tally.finish()
    }

    #[test]
    fn instances_and_gpus_are_counted_by_status_region_and_billing_mode() {
        let mut failing = billed(instance("d", "exited", "eu-1", 2), "spot");
        if let Some(status) = &mut failing.status {
            status.error = "OutOfStock".into();
        }
        let snapshot = tally(
            &[
                billed(instance("a", "running", "eu-1", 4), "postpaid"),
                billed(instance("b", "running", "eu-1", 2), "postpaid"),
                billed(instance("c", "running", "us-1", -3), "postpaid"),
                failing,
                instance("e", "", "", 1),
            ],
            false,
        );
        let expected: BTreeMap<_, _> = [
            // Without a product list, every instance billed now is unpriced: the running ones, and
            // the one whose status PPIO does not document.
            (group("running", "eu-1", "postpaid"), (2, 6, 2)),
            (group("running", "us-1", "postpaid"), (1, 0, 1)),
            (group("exited", "eu-1", "spot"), (1, 2, 0)),
            (group("unknown", "unknown", "unknown"), (1, 1, 1)),
        ]
        .into_iter()
        .map(|(g, (instances, gpus, unpriced))| {
            (
                g,
                GroupCounts {
                    instances,
                    gpus,
                    unpriced,
                    hourly_spend: Decimal::ZERO,
                },
            )
        })
        .collect();
        assert_eq!(snapshot.groups, expected);
        assert_eq!(
            snapshot.with_error_by_status,
            BTreeMap::from([
                ("exited".to_owned(), 1),
                ("running".to_owned(), 0),
                ("unknown".to_owned(), 0)
            ])
        );
        assert_eq!(snapshot.prepaid, vec![]);
        assert_eq!(snapshot.instances, None, "the info series is off");
    }

    #[test]
    fn only_prepaid_instances_with_an_end_time_have_a_term() {
        let mut mislabelled = prepaid("x", 1_900_000_000, Some(true));
        if let Some(billing) = &mut mislabelled.billing {
            billing.mode = "postpaid".into();
        }
        let mut no_end = prepaid("y", 0, None);
        if let Some(p) = no_end.billing.as_mut().and_then(|b| b.prepaid.as_mut()) {
            p.end_time = None;
        }
        let snapshot = tally(
            &[
                prepaid("b", 1_800_000_000, Some(true)),
                prepaid("a", 1_700_000_000, None),
                prepaid("c", 1_750_000_000, Some(false)),
                mislabelled,
                no_end,
            ],
            false,
        );
        let term = |id: &str, end: i64, auto_renew: bool| PrepaidTermSeries {
            instance_id: id.into(),
            end_time_seconds: end,
            auto_renew,
        };
        assert_eq!(
            snapshot.prepaid,
            vec![
                term("a", 1_700_000_000, false),
                term("b", 1_800_000_000, true),
                term("c", 1_750_000_000, false),
            ]
        );
    }

    #[test]
    fn the_info_series_lists_every_instance_with_clean_labels() {
        let mut odd = billed(instance("id\u{7}-1", "run\nning", "eu-1", 1), "spot");
        odd.name = format!("{}é", "n".repeat(MAX_LABEL_BYTES - 1));
        odd.product_id = "p-\u{202e}1".into();
        let plain = instance("id-2", "exited", "us-1", 0);
        let snapshot = tally(&[plain, odd], true);
        let instances = snapshot.instances.expect("info on");
        assert_eq!(
            instances,
            vec![
                InstanceInfo {
                    instance_id: "id-1".into(),
                    // The two-byte character would cross the limit: cut before it.
                    name: "n".repeat(MAX_LABEL_BYTES - 1),
                    status: "running".into(),
                    region: "eu-1".into(),
                    billing_mode: "spot".into(),
                    product_id: "p-1".into(),
                },
                InstanceInfo {
                    instance_id: "id-2".into(),
                    name: String::new(),
                    status: "exited".into(),
                    region: "us-1".into(),
                    billing_mode: "unknown".into(),
                    product_id: String::new(),
                },
            ]
        );
    }

    #[test]
    fn hostile_statuses_and_regions_stay_bounded() {
        let mut instances: Vec<Instance> = (0..1000)
            .map(|n| {
                billed(
                    instance(&format!("i{n}"), &format!("s{n}"), &format!("r{n}"), 1),
                    &format!("m{n}"),
                )
            })
            .collect();
        // The common values keep their own labels.
        for n in 0..5 {
            instances.push(billed(
                instance(&format!("common{n}"), "running", "eu-1", 1),
                "postpaid",
            ));
        }
        let long = "x".repeat(10 * MAX_LABEL_BYTES);
        instances.push(instance("long", &long, &long, 1));
        let snapshot = tally(&instances, true);

        let statuses: std::collections::BTreeSet<_> =
            snapshot.groups.keys().map(|g| g.status.as_str()).collect();
        let regions: std::collections::BTreeSet<_> =
            snapshot.groups.keys().map(|g| g.region.as_str()).collect();
        let modes: std::collections::BTreeSet<_> = snapshot
            .groups
            .keys()
            .map(|g| g.billing_mode.as_str())
            .collect();
        assert!(statuses.len() <= MAX_COUNT_KEYS + 1, "{}", statuses.len());
        assert!(regions.len() <= MAX_COUNT_KEYS + 1, "{}", regions.len());
        assert!(modes.len() <= MAX_BILLING_MODES + 1, "{}", modes.len());
        assert!(snapshot.groups.len() <= MAX_GROUPS + 1);
        assert!(snapshot.with_error_by_status.len() <= MAX_COUNT_KEYS + 1);
        assert!(statuses.contains("running") && statuses.contains(OTHER));
        assert_eq!(
            snapshot.groups.get(&group("running", "eu-1", "postpaid")),
            Some(&GroupCounts {
                instances: 5,
                gpus: 5,
                // Running, and no product list: billed at an unknown price.
                unpriced: 5,
                hourly_spend: Decimal::ZERO,
            })
        );
        // Nothing is lost: every instance and GPU is counted somewhere.
        let total: i64 = snapshot.groups.values().map(|c| c.instances).sum();
        assert_eq!(total, 1006);
        let info = snapshot.instances.unwrap_or_default();
        assert_eq!(info.len(), 1006);
        assert!(info.iter().all(|i| i.status.len() <= MAX_LABEL_BYTES));
        assert!(
            info.iter()
                .all(|i| i.status == OTHER || statuses.contains(i.status.as_str()))
        );
    }

    #[test]
    fn combinations_beyond_the_limit_add_up_under_other() {
        // 20 statuses x 20 regions: each dimension is within bounds, the combinations are not.
        let instances: Vec<Instance> = (0..400)
            .map(|n| {
                instance(
                    &format!("i{n}"),
                    &format!("s{}", n % 20),
                    &format!("r{}", n / 20),
                    2,
                )
            })
            .collect();
        let snapshot = tally(&instances, false);
        assert_eq!(snapshot.groups.len(), MAX_GROUPS + 1);
        let other = snapshot
            .groups
            .get(&group(OTHER, OTHER, OTHER))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            other,
            GroupCounts {
                instances: 400 - MAX_GROUPS as i64,
                gpus: 2 * (400 - MAX_GROUPS as i64),
                // Statuses PPIO does not document count as billed; no product list prices them.
                unpriced: 400 - MAX_GROUPS as i64,
                hourly_spend: Decimal::ZERO,
            }
        );
    }
}
