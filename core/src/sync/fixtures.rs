//! Test fixtures of the pure core, shared by its unit tests: a view, records, the time, and what a
//! planned mirror's metadata says once applied.

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::GpuInstanceView;
use crate::api::view::GpuInstanceViewSpec;
use crate::mirror;
use crate::sync::plan::{DesiredMirror, Digest, InstancePlan, Observed};
use crate::sync::summary::Summary;
use ppio::Instance;
use ppio::{InstanceId, InstanceStatus, ResourceSpecs};

pub fn view(mirror: bool) -> GpuInstanceView {
    let mut spec: GpuInstanceViewSpec = serde_json::from_value(serde_json::json!({
        "credentials": { "secretRef": { "name": "ppio" } }
    }))
    .unwrap();
    spec.mirror.enabled = mirror;
    let mut view = GpuInstanceView::new("team-a", spec);
    view.metadata.namespace = Some("ml".into());
    view.metadata.uid = Some("0000-view-uid".into());
    view.metadata.generation = Some(3);
    view
}

/// The summary of a complete `listing`, counted as a sync counts it.
pub fn summarize(listing: &[Instance]) -> Summary {
    let mut summary = Summary::default();
    for instance in listing {
        summary.add(&instance.into());
    }
    summary.bounded()
}

pub fn instance(id: &str, state: &str, region: &str, gpus: i64) -> Instance {
    let mut i = Instance::new(InstanceId::new(id).unwrap());
    i.region = region.into();
    i.status = Some(InstanceStatus {
        status: state.into(),
        ..Default::default()
    });
    i.resource_specs = Some(ResourceSpecs {
        gpu_num: gpus,
        ..Default::default()
    });
    i
}

pub fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

/// What the metadata of `desired`, once applied, says of it.
pub fn observed(desired: &DesiredMirror) -> Observed {
    Observed {
        uid: format!("uid-{}", desired.name),
        digest: Digest::of_metadata(&desired.object.metadata),
        absent_since: None,
        trusted: true,
        source: None,
        status: Arc::from(
            desired
                .object
                .labels()
                .get(mirror::STATUS_LABEL)
                .map_or("", String::as_str),
        ),
        expiring_soon: desired
            .object
            .labels()
            .get(mirror::EXPIRING_SOON_LABEL)
            .and_then(|v| mirror::parse_expiring_soon(v)),
    }
}

pub fn desired(plan: InstancePlan) -> DesiredMirror {
    match plan {
        InstancePlan::Create(d) | InstancePlan::Update(d) => *d,
        InstancePlan::Unchanged(_) | InstancePlan::NameTaken => panic!("expected a write"),
    }
}

pub fn prepaid(id: &str, end: i64, auto_renew: bool) -> Instance {
    let mut i = instance(id, "running", "r", 1);
    i.billing = Some(ppio::Billing {
        mode: "prepaid".into(),
        prepaid: Some(ppio::Prepaid {
            months: 1,
            end_time: Some(at(end)),
            auto_renew: Some(ppio::AutoRenew {
                enabled: auto_renew,
                ..Default::default()
            }),
        }),
    });
    i
}

/// The cost of a mirror when no product list was read: unknown, billed.
pub fn unpriced() -> crate::cost::report::MirrorCost {
    crate::cost::report::MirrorCost::of(
        &crate::cost::InstanceCost {
            product_name: None,
            gpu_model: None,
            price: Err(crate::cost::UnknownCost::NoProductList),
            billed_now: true,
        },
        None,
    )
}
