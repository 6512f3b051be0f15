//! Writing a mirror's Service and EndpointSlices, right after the mirror itself: created or
//! brought to what [`crate::services::plan`] decided, and every Service or slice of the mirror's
//! that the plan no longer wants deleted: those its status named before this write (`previous`)
//! and those the watch of the operator's objects knows it controls, so that one an earlier,
//! half-done write left behind goes too. A name the plan uses that is not known as the mirror's
//! own is read first, and one that belongs to an object the operator does not manage is never
//! overwritten or deleted; so the usual write costs no read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashSet as HashSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply_params;
use super::mirror_meta::MirrorMeta;
use super::service_watch::ServiceWatch;
use crate::api::instance::MirrorService;
use crate::process::metrics::Metrics;
use crate::services::DesiredService;
use crate::services::objects::{self, is_managed};

/// What became of a mirror's Service.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Written as planned, or removed as planned.
    Done,
    /// A name it needs belongs to an object the operator does not manage (`Service x` or
    /// `EndpointSlice y`): nothing was written.
    NameTaken(String),
}

/// The writers of Services and EndpointSlices in one namespace.
#[derive(Clone)]
pub(super) struct ServiceWrites {
    namespace: String,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    metrics: Metrics,
    /// What the operator's Services and slices are, and told of its own deletes.
    watch: Option<Arc<ServiceWatch>>,
}

impl ServiceWrites {
    /// Writers in `namespace`, asking `watch` what each mirror controls and telling it of their
    /// deletes.
    pub(super) fn new(
        client: Client,
        namespace: &str,
        metrics: Metrics,
        watch: Option<Arc<ServiceWatch>>,
    ) -> ServiceWrites {
        ServiceWrites {
            namespace: namespace.to_owned(),
            services: Api::namespaced(client.clone(), namespace),
            slices: Api::namespaced(client, namespace),
            metrics,
            watch,
        }
    }

    /// Brings the Service of `mirror` (just written, with `labels`) to `desired`, or removes it
    /// when `desired` is `None`; `previous` is what the mirror's status named before.
    pub(super) async fn sync(
        &self,
        mirror: &MirrorMeta,
        labels: &BTreeMap<String, String>,
        desired: Option<&DesiredService>,
        previous: Option<&MirrorService>,
    ) -> Result<Outcome, kube::Error> {
        let mirror_name = mirror.name_any();
        let owned_services = self.owned_by::<Service>(&mirror_name);
        let owned_slices = self.owned_by::<EndpointSlice>(&mirror_name);
        let mut stale_services: BTreeSet<&str> =
            owned_services.iter().map(String::as_str).collect();
        stale_services.extend(previous.map(|p| p.name.as_str()));
        let mut stale_slices: BTreeSet<&str> = owned_slices.iter().map(String::as_str).collect();
        stale_slices.extend(
            previous
                .iter()
                .flat_map(|p| p.endpoint_slices.iter().map(String::as_str)),
        );
        if let Some(desired) = desired {
            stale_services.remove(desired.name.as_str());
            for slice in &desired.slices {
                stale_slices.remove(slice.name.as_str());
            }
            if !owned_services.contains(&desired.name)
                && self.taken(&self.services, &desired.name).await?
            {
                return Ok(Outcome::NameTaken(format!("Service {}", desired.name)));
            }
            for slice in &desired.slices {
                if !owned_slices.contains(&slice.name)
                    && self.taken(&self.slices, &slice.name).await?
                {
                    return Ok(Outcome::NameTaken(format!("EndpointSlice {}", slice.name)));
                }
            }
            let (Some(namespace), Some(uid)) = (mirror.namespace(), mirror.uid()) else {
                return Ok(Outcome::Done);
            };
            let owner = objects::owner(&mirror_name, &uid);
            let service = desired.service(&namespace, labels, &owner);
            apply(&self.services, &self.metrics, &desired.name, &service).await?;
            for slice in desired.slices(&namespace, labels, &owner) {
                apply(&self.slices, &self.metrics, &slice.name_any(), &slice).await?;
            }
        }
        for stale in stale_slices {
            self.delete(&self.slices, stale).await?;
        }
        for stale in stale_services {
            self.delete(&self.services, stale).await?;
        }
        Ok(Outcome::Done)
    }

    /// The names of the objects of kind `K` the watch knows mirror `mirror` controls.
    fn owned_by<K: Resource<DynamicType = ()>>(&self, mirror: &str) -> HashSet<String> {
        self.watch
            .as_ref()
            .map(|watch| watch.owned_by::<K>(&self.namespace, mirror))
            .unwrap_or_default()
    }

    /// Whether `name` is an object the operator does not manage (one it does, or none, is free).
    async fn taken<K>(&self, api: &Api<K>, name: &str) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        Ok(api
            .get_opt(name)
            .await?
            .is_some_and(|existing| !is_managed(existing.meta())))
    }

    /// Deletes `name` if it is an object the operator manages (and still the one it read).
    async fn delete<K>(&self, api: &Api<K>, name: &str) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let Some(existing) = api.get_opt(name).await? else {
            return Ok(());
        };
        if !is_managed(existing.meta()) {
            return Ok(());
        }
        let uid = existing.uid().unwrap_or_default();
        if let Some(watch) = &self.watch {
            watch.expect_delete::<K>(&self.namespace, name, &uid);
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        self.metrics.record_write("delete", &K::plural(&()));
        let deleted = api.delete(name, &params).await;
        if deleted.is_err()
            && let Some(watch) = &self.watch
        {
            watch.cancel_delete(&uid);
        }
        match deleted {
            Ok(_) => Ok(()),
            // Gone already, or another object by now: nothing of ours to delete.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Server-side apply of one object, as the operator's field manager.
async fn apply<K>(
    api: &Api<K>,
    metrics: &Metrics,
    name: &str,
    object: &K,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    metrics.record_write("apply", &K::plural(&()));
    api.patch(name, &apply_params(), &Patch::Apply(object))
        .await
        .map(drop)
}
