//! Writing a mirror's Service and EndpointSlices, right after the mirror itself: created or
//! brought to what [`crate::services::plan`] decided, slices no longer needed deleted, and all of
//! them deleted when the mirror needs none any more. What the mirror's status said of its Service
//! before this write (`previous`) is what the operator wrote last, so the usual write costs no
//! read. A name the plan uses that belongs to an object the operator does not manage is never
//! overwritten or deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

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
    /// Its name belongs to a Service the operator does not manage: nothing was written.
    NameTaken(String),
}

/// The writers of Services and EndpointSlices in one namespace.
#[derive(Clone)]
pub(super) struct ServiceWrites {
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    metrics: Metrics,
    /// Told of the operator's own deletes, so it does not take them for someone else's.
    watch: Option<Arc<ServiceWatch>>,
}

impl ServiceWrites {
    /// Writers in `namespace`, telling `watch` of their deletes.
    pub(super) fn new(
        client: Client,
        namespace: &str,
        metrics: Metrics,
        watch: Option<Arc<ServiceWatch>>,
    ) -> ServiceWrites {
        ServiceWrites {
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
        let Some(desired) = desired else {
            if let Some(previous) = previous {
                for slice in &previous.endpoint_slices {
                    self.delete(&self.slices, slice).await?;
                }
                self.delete(&self.services, &previous.name).await?;
            }
            return Ok(Outcome::Done);
        };
        let known = previous.is_some_and(|p| p.name == desired.name);
        if !known
            && let Some(existing) = self.services.get_opt(&desired.name).await?
            && !is_managed(existing.meta())
        {
            return Ok(Outcome::NameTaken(desired.name.clone()));
        }
        let (Some(namespace), Some(uid)) = (mirror.namespace(), mirror.uid()) else {
            return Ok(Outcome::Done);
        };
        let owner = objects::owner(&mirror.name_any(), &uid);
        let service = desired.service(&namespace, labels, &owner);
        apply(&self.services, &self.metrics, &desired.name, &service).await?;
        for slice in desired.slices(&namespace, labels, &owner) {
            apply(&self.slices, &self.metrics, &slice.name_any(), &slice).await?;
        }
        for stale in previous.into_iter().flat_map(|p| &p.endpoint_slices) {
            if !desired.slices.iter().any(|s| &s.name == stale) {
                self.delete(&self.slices, stale).await?;
            }
        }
        if let Some(previous) = previous.filter(|p| p.name != desired.name) {
            self.delete(&self.services, &previous.name).await?;
        }
        Ok(Outcome::Done)
    }
}

impl ServiceWrites {
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
        let namespace = existing.namespace().unwrap_or_default();
        if let Some(watch) = &self.watch {
            watch.expect_delete::<K>(&namespace, name);
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: existing.uid(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        self.metrics.record_write("delete", &K::plural(&()));
        let deleted = api.delete(name, &params).await;
        if deleted.is_err()
            && let Some(watch) = &self.watch
        {
            watch.cancel_delete::<K>(&namespace, name);
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
