//! One listing of a view, planned record by record: what each listed record needs (nothing, its
//! mirror created or updated, with which lifecycle Events), the counts of the view's status and of
//! the fleet metrics, which mirrors were listed, and, once the listing is complete, the removals.
//!
//! The controller fetches the pages and carries out what this plans; what the cluster holds of the
//! mirrors reaches the planner through [`Mirrors`], the controller's cache of their metadata. A
//! record is decoded whole only when its mirror may have to change: a trusted mirror of a record
//! that hashes as it did last time (and is as close to its prepaid end as it was) is unchanged, and
//! counting needs only the record's summary.

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use ppio::{Instance, PpioError, RecordSummary};
use rustc_hash::FxHashSet;

use crate::api::GpuInstanceView;
use crate::cost::report::{MirrorCost, PriceList};
use crate::cost::{HourlySpend, InstanceCost, SpendOverflow};
use crate::mirror;
use crate::services::{AddressPolicy, ServiceTally};
use crate::sync::expiry::ExpiryState;
use crate::sync::fleet::{FleetSnapshot, FleetTally};
use crate::sync::lifecycle::{self, InstanceEvent, Seen};
use crate::sync::plan::{self, DesiredMirror, InstancePlan, Observed};
use crate::sync::removals::{self, Unlisted};
use crate::sync::summary::Summary;
use crate::sync::view_status::{MirrorCounts, NamesTaken, ServiceCounts};

/// What the cluster holds of a view's mirrors, by name, as the controller knows it.
pub trait Mirrors {
    /// When the mirror `name` is trusted and was written from a record whose source hash is
    /// `source`, the listing confirms it (no write, no decoding) and this is its Service tally;
    /// otherwise `None`.
    fn confirm_unchanged(&self, name: &str, source: u64) -> Option<ServiceTally>;
    /// What the mirror `name`'s metadata says, when it exists.
    fn observed(&self, name: &str) -> Option<Observed>;
}

/// What one listed record needs.
#[derive(Debug)]
pub enum RecordPlan {
    /// Nothing: the view keeps no mirrors, the mirror was confirmed unchanged, the record was
    /// listed twice, or the mirror's name holds an object the view does not control.
    Nothing,
    /// The mirror is as the record says, though its record's source hash was not known: the
    /// controller records `source` for the next listing, which confirms the mirror.
    Unchanged {
        /// The mirror's name.
        name: String,
        /// The record's source hash.
        source: u64,
        /// What its Service plan came to.
        services: ServiceTally,
    },
    /// Create the mirror.
    Create(MirrorChange),
    /// Rewrite the mirror.
    Update(MirrorChange),
}

/// A mirror to write, with what follows its write.
#[derive(Debug)]
pub struct MirrorChange {
    /// The mirror.
    pub mirror: Box<DesiredMirror>,
    /// The source hash of its record, recorded once it is written.
    pub source: u64,
    /// Lifecycle Events to publish once it is written.
    pub events: Vec<InstanceEvent>,
}

/// What becomes of a mirror whose instance a complete listing lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Mark it absent: its instance is missing from a complete listing for the first time.
    MarkAbsent(String),
    /// Delete it, if it is still the object with this UID.
    Delete {
        /// Object name.
        name: String,
        /// The UID planned against.
        uid: String,
    },
}

/// What a complete listing came to.
#[derive(Debug)]
pub struct Listed {
    /// The view's summary counts.
    pub summary: Summary,
    /// The fleet metrics of the view.
    pub fleet: FleetSnapshot,
    /// What became of the view's mirrors.
    pub counts: MirrorCounts,
    /// What the listed instances billed now spend an hour.
    pub spend: Result<HourlySpend, SpendOverflow>,
}

/// One distinct price of a listing: what decides it, what it comes to, and its mirror's cost.
struct Priced {
    product_id: String,
    billing_mode: String,
    gpus: i64,
    months: Option<i64>,
    instance: InstanceCost,
    mirror: MirrorCost,
    /// [`MirrorCost::hash`] of `mirror`.
    hash: u64,
}

/// One listing of one view in progress: what it has seen and decided.
pub struct ListingPlanner {
    view: Arc<GpuInstanceView>,
    services: Option<AddressPolicy>,
    view_name: String,
    seed: plan::ViewSeed,
    now: Timestamp,
    summary: Summary,
    fleet: FleetTally,
    counts: MirrorCounts,
    /// The prices of the listing.
    prices: PriceList,
    /// What the instances listed so far spend an hour.
    spend: Result<HourlySpend, SpendOverflow>,
    /// Each distinct price of the listing, by a hash of what decides it ([`ListingPlanner::price`]).
    priced: rustc_hash::FxHashMap<u64, Arc<Priced>>,
    /// Names of the mirrors of listed instances.
    listed: FxHashSet<String>,
}

impl ListingPlanner {
    /// A listing of `view` starting at `now`, priced by `prices`. `services` is the address rule
    /// when the operator keeps Services (`None`: it keeps none, and a view that asks for them is
    /// told so); `instance_info` counts each instance for the per-instance info metric.
    pub fn new(
        view: Arc<GpuInstanceView>,
        services: Option<&AddressPolicy>,
        instance_info: bool,
        prices: PriceList,
        now: Timestamp,
    ) -> ListingPlanner {
        let counts = MirrorCounts {
            services: view.spec.services.enabled.then(|| ServiceCounts {
                unavailable: services.is_none(),
                ..ServiceCounts::default()
            }),
            ..MirrorCounts::default()
        };
        ListingPlanner {
            view_name: view.name_any(),
            seed: plan::ViewSeed::of(&view, services),
            services: services.cloned(),
            view,
            now,
            summary: Summary::default(),
            fleet: FleetTally::new(instance_info),
            counts,
            prices,
            spend: Ok(HourlySpend::default()),
            priced: rustc_hash::FxHashMap::default(),
            listed: FxHashSet::default(),
        }
    }

    /// Counts one listed record (its `summary`, and `source`, the hash of the record as sent) and
    /// plans its mirror; `decode` gives the whole record, asked for only when the mirror may have
    /// to change. A record that does not decode fails the listing.
    pub fn plan_record(
        &mut self,
        summary: &RecordSummary,
        source: u64,
        decode: impl FnOnce() -> Result<Instance, PpioError>,
        mirrors: &impl Mirrors,
    ) -> Result<RecordPlan, PpioError> {
        self.summary.add(summary);
        let priced = self.price(summary);
        let cost = &priced.instance;
        self.fleet.add(summary, cost);
        if let Ok(spend) = &mut self.spend
            && spend.add(cost).is_err()
        {
            self.spend = Err(SpendOverflow);
        }
        let expiry = self.seed.expiry_of(summary, self.now);
        self.summary.add_expiry(expiry);
        if !self.view.spec.mirror.enabled {
            return Ok(RecordPlan::Nothing);
        }
        let name = mirror::object_name(&self.view_name, summary.id.as_str());
        if self.listed.contains(&name) {
            // Two IDs that map to one name cannot happen (names carry a hash of odd IDs); the pager
            // refuses duplicate IDs.
            return Ok(RecordPlan::Nothing);
        }
        self.counts.mirrored += 1;
        let source = self.seed.source_hash(source, expiry, priced.hash);
        let cost = &priced.mirror;
        if let Some(services) = mirrors.confirm_unchanged(&name, source) {
            self.count_services(services);
            self.listed.insert(name);
            return Ok(RecordPlan::Nothing);
        }
        self.listed.insert(name.clone());
        let instance = decode()?;
        let observed = mirrors.observed(&name);
        let planned = plan::plan_instance(
            &self.view,
            self.services.as_ref(),
            &instance,
            cost,
            observed.as_ref(),
            self.now,
        );
        self.count_services(planned.service_tally());
        Ok(match planned {
            InstancePlan::NameTaken => {
                // Not this view's mirror: not counted, never written, never removed.
                self.counts.mirrored -= 1;
                NamesTaken::add(&mut self.counts.names_taken, &name);
                RecordPlan::Nothing
            }
            InstancePlan::Unchanged(services) => RecordPlan::Unchanged {
                name,
                source,
                services,
            },
            InstancePlan::Create(mirror) => {
                self.counts.created += 1;
                let events = self.lifecycle_events(Seen::First, &instance, expiry);
                RecordPlan::Create(MirrorChange {
                    mirror,
                    source,
                    events,
                })
            }
            InstancePlan::Update(mirror) => {
                self.counts.updated += 1;
                let seen = observed.as_ref().map_or(Seen::First, |o| Seen::Mirrored {
                    status: &o.status,
                    expiring_soon: o.expiring_soon,
                });
                let events = self.lifecycle_events(seen, &instance, expiry);
                RecordPlan::Update(MirrorChange {
                    mirror,
                    source,
                    events,
                })
            }
        })
    }

    /// The names of the mirrors of the instances listed so far.
    pub fn listed(&self) -> &FxHashSet<String> {
        &self.listed
    }

    /// After a complete listing: the marks and deletes of the mirrors whose instances it lacked
    /// (`unlisted`, out of `total` the view has, as the mass-removal guard weighs them), with the
    /// UID each delete is planned against (`uid_of`; a mirror gone since is left out).
    pub fn plan_removals(
        &mut self,
        unlisted: Vec<Unlisted>,
        total: usize,
        now: Timestamp,
        uid_of: impl Fn(&str) -> Option<String>,
    ) -> Vec<Removal> {
        let removals = removals::plan_removals(&self.view, unlisted, total, now);
        self.counts.mirrored += removals.kept;
        self.counts.kept_missing = removals.kept;
        self.counts.removed = removals.deletes.len();
        self.counts.held = removals.held;
        let mut planned: Vec<Removal> = removals
            .mark_absent
            .into_iter()
            .map(Removal::MarkAbsent)
            .collect();
        planned.extend(removals.deletes.into_iter().filter_map(|name| {
            let uid = uid_of(&name)?;
            Some(Removal::Delete { name, uid })
        }));
        planned
    }

    /// What the complete listing came to; `services_not_kept` of the Services it planned could not
    /// be kept (their name taken, their write refused).
    pub fn finish(self, services_not_kept: usize) -> Listed {
        let mut counts = self.counts;
        if let Some(services) = counts.services.as_mut() {
            services.kept = services.kept.saturating_sub(services_not_kept);
        }
        Listed {
            summary: self.summary.bounded(),
            fleet: self.fleet.finish(),
            counts,
            spend: self.spend,
        }
    }

    /// Counts what the Service plan of one listed mirror came to.
    fn count_services(&mut self, tally: ServiceTally) {
        if let Some(services) = &mut self.counts.services {
            services.add(tally);
        }
    }

    /// What `summary` costs, and its mirror's cost: worked out once per distinct price (product,
    /// billing mode, cards, prepaid months, billed or not) of the listing, as most records share
    /// one with many others.
    fn price(&mut self, summary: &RecordSummary) -> Arc<Priced> {
        use std::hash::BuildHasher;
        let months = summary.prepaid.map(|term| term.months);
        let billed = crate::cost::billed_now(summary, self.now);
        let id = rustc_hash::FxBuildHasher.hash_one((
            summary.product_id.as_str(),
            summary.billing_mode.as_str(),
            summary.gpus,
            months,
            billed,
        ));
        if let Some(priced) = self.priced.get(&id)
            && priced.product_id == summary.product_id
            && priced.billing_mode == summary.billing_mode
            && (priced.gpus, priced.months, priced.instance.billed_now)
                == (summary.gpus, months, billed)
        {
            return priced.clone();
        }
        let instance = self.prices.cost_of(summary, self.now);
        let mirror = MirrorCost::of(&instance, self.view.spec.cost.currency.as_deref());
        let priced = Arc::new(Priced {
            product_id: summary.product_id.clone(),
            billing_mode: summary.billing_mode.clone(),
            gpus: summary.gpus,
            months,
            hash: mirror.hash(),
            instance,
            mirror,
        });
        self.priced.insert(id, priced.clone());
        priced
    }

    /// The lifecycle Events due once the mirror of `instance` is written.
    fn lifecycle_events(
        &self,
        seen: Seen<'_>,
        instance: &Instance,
        expiry: ExpiryState,
    ) -> Vec<InstanceEvent> {
        lifecycle::instance_events(
            seen,
            instance,
            expiry,
            &self.view.spec.lifecycle_events,
            &self.view.spec.expiry_warning_window,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::sync::fixtures::{at, desired, instance, observed, view};

    /// Mirrors as a map from name to metadata; `unchanged` holds the names confirmed unchanged,
    /// and `confirmed` records which were asked and confirmed.
    #[derive(Default)]
    struct Cluster {
        observed: HashMap<String, Observed>,
        unchanged: HashMap<String, u64>,
        confirmed: RefCell<Vec<String>>,
    }

    impl Mirrors for Cluster {
        fn confirm_unchanged(&self, name: &str, source: u64) -> Option<ServiceTally> {
            (self.unchanged.get(name) == Some(&source)).then(|| {
                self.confirmed.borrow_mut().push(name.to_owned());
                ServiceTally::default()
            })
        }

        fn observed(&self, name: &str) -> Option<Observed> {
            self.observed.get(name).cloned()
        }
    }

    fn planner(view: GpuInstanceView) -> ListingPlanner {
        ListingPlanner::new(Arc::new(view), None, false, PriceList::default(), at(1_000))
    }

    fn plan(
        planner: &mut ListingPlanner,
        record: &Instance,
        source: u64,
        cluster: &Cluster,
    ) -> RecordPlan {
        planner
            .plan_record(&record.into(), source, || Ok(record.clone()), cluster)
            .expect("planned")
    }

    fn name_of(record: &Instance) -> String {
        mirror::object_name(&view(true).name_any(), record.id.as_str())
    }

    #[test]
    fn a_new_instance_is_created_with_its_first_events_and_counted() {
        let mut planner = planner(view(true));
        let record = instance("a", "running", "r", 2);
        let RecordPlan::Create(change) = plan(&mut planner, &record, 7, &Cluster::default()) else {
            panic!("a create");
        };
        assert_eq!(change.mirror.name, name_of(&record));
        assert!(planner.listed().contains(&name_of(&record)));
        let listed = planner.finish(0);
        assert_eq!(listed.counts.created, 1);
        assert_eq!(listed.counts.mirrored, 1);
        assert_eq!(listed.summary.instances, 1);
        assert_eq!(listed.summary.gpus, 2);
    }

    #[test]
    fn a_mirror_confirmed_unchanged_is_neither_decoded_nor_written_but_counted() {
        let mut cold = planner(view(true));
        let record = instance("a", "running", "r", 1);
        let RecordPlan::Create(change) = plan(&mut cold, &record, 7, &Cluster::default()) else {
            panic!("a create");
        };
        let cluster = Cluster {
            unchanged: HashMap::from([(name_of(&record), change.source)]),
            ..Cluster::default()
        };
        let mut warm = planner(view(true));
        let planned = warm
            .plan_record(&(&record).into(), 7, || panic!("not decoded"), &cluster)
            .expect("planned");
        assert!(matches!(planned, RecordPlan::Nothing));
        assert_eq!(*cluster.confirmed.borrow(), [name_of(&record)]);
        let listed = warm.finish(0);
        assert_eq!((listed.counts.mirrored, listed.counts.created), (1, 0));
        assert_eq!(listed.summary.instances, 1);
    }

    #[test]
    fn a_changed_instance_is_updated_and_an_unchanged_one_has_its_source_recorded() {
        let record = instance("a", "running", "r", 1);
        let RecordPlan::Create(change) =
            plan(&mut planner(view(true)), &record, 7, &Cluster::default())
        else {
            panic!("a create");
        };
        let cluster = Cluster {
            observed: HashMap::from([(name_of(&record), observed(&change.mirror))]),
            ..Cluster::default()
        };
        let mut listing = planner(view(true));
        // Sent as before, but its source not known to this process: planned, found unchanged.
        let RecordPlan::Unchanged { name, source, .. } = plan(&mut listing, &record, 7, &cluster)
        else {
            panic!("unchanged");
        };
        assert_eq!((name, source), (name_of(&record), change.source));
        // Exited since: rewritten, with the transition's Event.
        let mut listing = planner(view(true));
        let exited = instance("a", "exited", "r", 1);
        let RecordPlan::Update(update) = plan(&mut listing, &exited, 8, &cluster) else {
            panic!("an update");
        };
        assert!(!update.events.is_empty(), "the transition has its Event");
        assert_eq!(listing.finish(0).counts.updated, 1);
    }

    fn priced_at(final_price: u32) -> PriceList {
        let list = serde_json::json!({"data": [{"id": "a100", "name": "A100", "type": "gpu",
            "pricing": {"precision": 3,
                "postpaid": {"final_price": final_price, "unit": "per_hour"}}}]});
        PriceList {
            products: Some(Arc::new(
                ppio::Products::from_json(list.to_string().as_bytes()).expect("a product list"),
            )),
            ..PriceList::default()
        }
    }

    #[test]
    fn a_price_change_plans_the_mirror_again_and_the_spend_follows_the_prices() {
        let mut record = instance("a", "running", "r", 2);
        record.product_id = "a100".into();
        record.billing = Some(ppio::Billing {
            mode: "postpaid".into(),
            prepaid: None,
        });
        let listing = |prices: PriceList| {
            ListingPlanner::new(Arc::new(view(true)), None, false, prices, at(1_000))
        };
        let mut first = listing(priced_at(12_600));
        let RecordPlan::Create(change) = plan(&mut first, &record, 7, &Cluster::default()) else {
            panic!("a create");
        };
        let cost = change.mirror.status.cost.clone().expect("a cost");
        assert_eq!(cost.hourly.as_deref(), Some("25.200"));
        let spend = first.finish(0).spend.expect("a spend");
        assert_eq!(spend.postpaid.to_string(), "25.200");
        let cluster = Cluster {
            unchanged: HashMap::from([(name_of(&record), change.source)]),
            observed: HashMap::from([(name_of(&record), observed(&change.mirror))]),
            ..Cluster::default()
        };
        // The same record at the same prices: confirmed without decoding.
        let mut same = listing(priced_at(12_600));
        let planned = same
            .plan_record(&(&record).into(), 7, || panic!("not decoded"), &cluster)
            .expect("planned");
        assert!(matches!(planned, RecordPlan::Nothing));
        // At a new price: planned again and rewritten with its new rate.
        let mut repriced = listing(priced_at(12_000));
        let RecordPlan::Update(update) = plan(&mut repriced, &record, 7, &cluster) else {
            panic!("an update");
        };
        let cost = update.mirror.status.cost.clone().expect("a cost");
        assert_eq!(cost.hourly.as_deref(), Some("24.000"));
        assert_ne!(update.source, change.source);
        assert_eq!(
            repriced
                .finish(0)
                .spend
                .expect("a spend")
                .postpaid
                .to_string(),
            "24.000"
        );
    }

    #[test]
    fn records_of_one_product_are_priced_each_by_its_own_cards_mode_and_state() {
        let prices = priced_at(12_600);
        let mut planner = ListingPlanner::new(Arc::new(view(true)), None, false, prices, at(1_000));
        let record = |id: &str, state: &str, gpus: i64| {
            let mut record = instance(id, state, "r", gpus);
            record.product_id = "a100".into();
            record.billing = Some(ppio::Billing {
                mode: "postpaid".into(),
                prepaid: None,
            });
            record
        };
        let hourly = |planned: RecordPlan| match planned {
            RecordPlan::Create(change) => change.mirror.status.cost.expect("a cost").hourly,
            other => panic!("a create, not {other:?}"),
        };
        let cluster = Cluster::default();
        let one = hourly(plan(&mut planner, &record("a", "running", 1), 1, &cluster));
        let two = hourly(plan(&mut planner, &record("b", "running", 2), 2, &cluster));
        let again = hourly(plan(&mut planner, &record("c", "running", 1), 3, &cluster));
        let stopped = plan(&mut planner, &record("d", "exited", 1), 4, &cluster);
        assert_eq!(one.as_deref(), Some("12.600"));
        assert_eq!(two.as_deref(), Some("25.200"));
        assert_eq!(again, one);
        let RecordPlan::Create(stopped) = stopped else {
            panic!("a create");
        };
        assert!(!stopped.mirror.status.cost.expect("a cost").billed_now);
        let spend = planner.finish(0).spend.expect("a spend");
        assert_eq!(
            (spend.postpaid.to_string(), spend.priced),
            ("50.400".into(), 3)
        );
    }

    #[test]
    fn a_record_listed_twice_is_planned_and_counted_as_a_mirror_once() {
        let mut planner = planner(view(true));
        let record = instance("a", "running", "r", 1);
        assert!(matches!(
            plan(&mut planner, &record, 7, &Cluster::default()),
            RecordPlan::Create(_)
        ));
        assert!(matches!(
            plan(&mut planner, &record, 7, &Cluster::default()),
            RecordPlan::Nothing
        ));
        assert_eq!(planner.finish(0).counts.mirrored, 1);
    }

    #[test]
    fn a_view_without_mirrors_counts_every_record_and_plans_no_write() {
        let mut planner = planner(view(false));
        for id in ["a", "b"] {
            let record = instance(id, "running", "r", 1);
            let planned = planner
                .plan_record(
                    &(&record).into(),
                    7,
                    || panic!("not decoded"),
                    &Cluster::default(),
                )
                .expect("planned");
            assert!(matches!(planned, RecordPlan::Nothing));
        }
        assert!(planner.listed().is_empty());
        let listed = planner.finish(0);
        assert_eq!(listed.summary.instances, 2);
        assert_eq!(listed.counts.mirrored, 0);
    }

    #[test]
    fn a_mirror_name_held_by_another_views_object_is_reported_never_written() {
        let record = instance("a", "running", "r", 1);
        let mut other = view(true);
        other.metadata.uid = Some("another-view".into());
        let theirs = desired(plan::plan_instance(
            &other,
            None,
            &record,
            &crate::sync::fixtures::unpriced(),
            None,
            at(1_000),
        ));
        let cluster = Cluster {
            observed: HashMap::from([(name_of(&record), observed(&theirs))]),
            ..Cluster::default()
        };
        let mut planner = planner(view(true));
        assert!(matches!(
            plan(&mut planner, &record, 7, &cluster),
            RecordPlan::Nothing
        ));
        let counts = planner.finish(0).counts;
        assert_eq!(counts.mirrored, 0);
        let taken = counts.names_taken.expect("reported");
        assert_eq!(
            (taken.count, taken.first.as_str()),
            (1, name_of(&record).as_str())
        );
    }

    #[test]
    fn a_record_that_does_not_decode_fails_the_listing() {
        let mut planner = planner(view(true));
        let record = instance("a", "running", "r", 1);
        let failed = planner.plan_record(
            &(&record).into(),
            7,
            || {
                Err(PpioError::InvalidResponse {
                    detail: "record 0: not an instance".into(),
                })
            },
            &Cluster::default(),
        );
        assert!(matches!(failed, Err(PpioError::InvalidResponse { .. })));
    }

    #[test]
    fn removals_are_counted_and_a_delete_names_the_uid_it_was_planned_against() {
        let mut planner = planner(view(true));
        let unlisted = |name: &str| Unlisted {
            name: name.into(),
            marked: true,
            missing_for: Some(std::time::Duration::from_secs(3_600)),
        };
        let planned = planner.plan_removals(
            vec![unlisted("gone"), unlisted("vanished")],
            10,
            at(5_000),
            |name| (name == "gone").then(|| "uid-gone".to_owned()),
        );
        // "vanished" has no UID any more: deleted by someone already, nothing to delete.
        assert_eq!(
            planned,
            [Removal::Delete {
                name: "gone".into(),
                uid: "uid-gone".into()
            }]
        );
        let counts = planner.finish(0).counts;
        assert_eq!(counts.removed, 2);
        assert_eq!(counts.kept_missing, 0);
    }
}
