//! Writing a mirror's Service and EndpointSlices, right after the mirror itself: created or
//! brought to what [`ppio_gpu_core::services::plan`] decided, and every Service or slice of the mirror's
//! that the plan no longer wants deleted: those its status named before this write (`previous`)
//! and those the watch of the operator's objects knows it controls, so that one an earlier,
//! half-done write left behind goes too.
//!
//! Ownership is by UID: an object is written or deleted only while its controller owner reference
//! is the mirror's UID, and on condition that it is still the object seen (its UID in the apply
//! body, or the delete's precondition; the API server refuses the write if the name now holds
//! another object). A name the plan uses that the watch does not know as the mirror's own is read
//! first; so the usual write costs no read. Creating a free name is the one write without such a
//! condition (an apply cannot require that nothing exists): an object someone creates between
//! the read and the apply, without a controller, is taken.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply::apply_params;
use super::mirror_meta::MirrorMeta;
use super::service_watch::ServiceWatch;
use crate::process::metrics::Metrics;
use ppio_gpu_core::api::instance::MirrorService;
use ppio_gpu_core::services::DesiredService;
use ppio_gpu_core::services::objects::{self, Holder};

/// What became of a mirror's Service.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Written as planned, or removed as planned.
    Done,
    /// A name it needs belongs to an object the mirror does not control (`Service x` or
    /// `EndpointSlice y`): that object was left alone.
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
    ///
    /// Only objects the mirror controls by UID are written or deleted. One the watch lists as the
    /// mirror's is written on condition it is still that object (its UID in the apply body, which
    /// the API server enforces); any other name is read first, and written only when free or the
    /// mirror's. A name held by anything else is reported, and nothing is written; when the watch
    /// was stale (the object replaced under it), the Service may be written but the slice is not.
    pub(super) async fn sync(
        &self,
        mirror: &MirrorMeta,
        labels: &BTreeMap<String, String>,
        desired: Option<&DesiredService>,
        previous: Option<&MirrorService>,
    ) -> Result<Outcome, kube::Error> {
        let mirror_name = mirror.name_any();
        let mirror_uid = mirror.uid().unwrap_or_default();
        let owned_services = self.owned_by::<Service>(&mirror_uid);
        let owned_slices = self.owned_by::<EndpointSlice>(&mirror_uid);
        let mut stale_services: BTreeSet<&str> =
            owned_services.keys().map(String::as_str).collect();
        stale_services.extend(previous.map(|p| p.name.as_str()));
        let mut stale_slices: BTreeSet<&str> = owned_slices.keys().map(String::as_str).collect();
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
            let Some(namespace) = mirror.namespace().filter(|_| !mirror_uid.is_empty()) else {
                return Ok(Outcome::Done);
            };
            // Every name first, so that a name taken leaves everything as it was.
            let Some(service_uid) = self
                .holder(&self.services, &desired.name, &owned_services, &mirror_uid)
                .await?
            else {
                return Ok(Outcome::NameTaken(format!("Service {}", desired.name)));
            };
            let mut slice_uids = Vec::with_capacity(desired.slices.len());
            for slice in &desired.slices {
                let Some(uid) = self
                    .holder(&self.slices, &slice.name, &owned_slices, &mirror_uid)
                    .await?
                else {
                    return Ok(Outcome::NameTaken(format!("EndpointSlice {}", slice.name)));
                };
                slice_uids.push(uid);
            }
            let owner = objects::owner(&mirror_name, &mirror_uid);
            let service = desired.service(&namespace, labels, &owner);
            if !self
                .write(&self.services, service, service_uid, &mirror_uid)
                .await?
            {
                return Ok(Outcome::NameTaken(format!("Service {}", desired.name)));
            }
            for (slice, uid) in desired
                .slices(&namespace, labels, &owner)
                .into_iter()
                .zip(slice_uids)
            {
                let name = slice.name_any();
                if !self.write(&self.slices, slice, uid, &mirror_uid).await? {
                    return Ok(Outcome::NameTaken(format!("EndpointSlice {name}")));
                }
            }
        }
        for stale in stale_slices {
            self.delete(&self.slices, stale, owned_slices.get(stale), &mirror_uid)
                .await?;
        }
        for stale in stale_services {
            self.delete(
                &self.services,
                stale,
                owned_services.get(stale),
                &mirror_uid,
            )
            .await?;
        }
        Ok(Outcome::Done)
    }

    /// Rewrites the Service of `mirror` (with `labels`) and its EndpointSlices as `desired`, for a
    /// freshness flip: only objects that exist and that the mirror controls by UID, each on
    /// condition it is still the object seen; nothing is created (a free name stays free) and
    /// nothing deleted. Whether the Service was written.
    pub(super) async fn rewrite_existing(
        &self,
        mirror: &MirrorMeta,
        labels: &BTreeMap<String, String>,
        desired: &DesiredService,
    ) -> Result<bool, kube::Error> {
        let mirror_name = mirror.name_any();
        let mirror_uid = mirror.uid().unwrap_or_default();
        let Some(namespace) = mirror.namespace().filter(|_| !mirror_uid.is_empty()) else {
            return Ok(false);
        };
        let owned_services = self.owned_by::<Service>(&mirror_uid);
        let owned_slices = self.owned_by::<EndpointSlice>(&mirror_uid);
        let Some(Some(service_uid)) = self
            .holder(&self.services, &desired.name, &owned_services, &mirror_uid)
            .await?
        else {
            return Ok(false);
        };
        let owner = objects::owner(&mirror_name, &mirror_uid);
        let mut service = desired.service(&namespace, labels, &owner);
        service.meta_mut().uid = Some(service_uid);
        if !self.apply_existing(&self.services, &service).await? {
            return Ok(false);
        }
        for mut slice in desired.slices(&namespace, labels, &owner) {
            let name = slice.name_any();
            if let Some(Some(uid)) = self
                .holder(&self.slices, &name, &owned_slices, &mirror_uid)
                .await?
            {
                slice.meta_mut().uid = Some(uid);
                self.apply_existing(&self.slices, &slice).await?;
            }
        }
        Ok(true)
    }

    /// Deletes the EndpointSlices that the mirror with UID `mirror_uid` controls, except those
    /// `keep` names: those the watch knows, and those `named` (what its status named), each read
    /// first and deleted only if the mirror controls it; every delete on condition it is still
    /// that object. So that nothing the mirror no longer plans routes: a slice left by a write
    /// that failed half-way, one of a Service that cannot be kept (its own name taken, a write
    /// refused) or that is gone. How many were deleted.
    pub(super) async fn withdraw_slices(
        &self,
        mirror_uid: &str,
        named: &[String],
        keep: &BTreeSet<&str>,
    ) -> Result<usize, kube::Error> {
        if mirror_uid.is_empty() {
            return Ok(0);
        }
        let owned = self.owned_by::<EndpointSlice>(mirror_uid);
        let mut names: BTreeSet<&str> = owned.keys().map(String::as_str).collect();
        names.extend(named.iter().map(String::as_str));
        let mut deleted = 0;
        for name in names.into_iter().filter(|name| !keep.contains(name)) {
            if self
                .delete(&self.slices, name, owned.get(name), mirror_uid)
                .await?
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Whether any of the EndpointSlices `desired` names that the mirror with UID `mirror_uid`
    /// controls has an endpoint that may receive traffic (ready, or of unknown readiness, which
    /// kube-proxy takes as ready).
    pub(super) async fn routes(
        &self,
        desired: &DesiredService,
        mirror_uid: &str,
    ) -> Result<bool, kube::Error> {
        for slice in &desired.slices {
            let Some(existing) = self.slices.get_opt(&slice.name).await? else {
                continue;
            };
            if !objects::controlled_by(existing.meta(), mirror_uid) {
                continue;
            }
            let ready = existing.endpoints.iter().any(|endpoint| {
                endpoint
                    .conditions
                    .as_ref()
                    .and_then(|conditions| conditions.ready)
                    != Some(false)
            });
            if ready {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Applies `object` on condition that it is still the object of the UID it carries; false
    /// when the API server says it is not (deleted or replaced since it was seen).
    async fn apply_existing<K>(&self, api: &Api<K>, object: &K) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        match apply(api, &self.metrics, &object.name_any(), object).await {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(refusal)) if objects::not_that_object(&refusal) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The objects of kind `K` (name, UID) the watch knows the mirror with UID `mirror_uid`
    /// controls.
    fn owned_by<K: Resource<DynamicType = ()>>(&self, mirror_uid: &str) -> HashMap<String, String> {
        self.watch
            .as_ref()
            .map(|watch| watch.owned_by::<K>(&self.namespace, mirror_uid))
            .unwrap_or_default()
    }

    /// Whether the mirror may write `name`: `Some` with the UID the write is conditional on (the
    /// one the watch knows, else the one read; `None` inside when the name is free), `None` when
    /// something else holds it.
    async fn holder<K>(
        &self,
        api: &Api<K>,
        name: &str,
        owned: &HashMap<String, String>,
        mirror_uid: &str,
    ) -> Result<Option<Option<String>>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        if let Some(uid) = owned.get(name) {
            return Ok(Some(Some(uid.clone())));
        }
        self.read_holder(api, name, mirror_uid).await
    }

    /// [`ServiceWrites::holder`], read from the cluster.
    async fn read_holder<K>(
        &self,
        api: &Api<K>,
        name: &str,
        mirror_uid: &str,
    ) -> Result<Option<Option<String>>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let existing = api.get_opt(name).await?;
        Ok(
            match objects::holder(existing.as_ref().map(Resource::meta), mirror_uid) {
                Holder::Free => Some(None),
                Holder::Mirror(uid) => Some(Some(uid)),
                Holder::Other => None,
            },
        )
    }

    /// Applies `object`, on condition that it is still the object with UID `uid` (created when
    /// `uid` is `None`). When the API server says it is not (deleted or replaced since the watch
    /// or the read saw it), the name is read once more and the object written only if it is free
    /// or the mirror's; false when something else holds it.
    async fn write<K>(
        &self,
        api: &Api<K>,
        mut object: K,
        uid: Option<String>,
        mirror_uid: &str,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let name = object.name_any();
        object.meta_mut().uid = uid;
        match apply(api, &self.metrics, &name, &object).await {
            Ok(()) => return Ok(true),
            Err(kube::Error::Api(refusal)) if objects::not_that_object(&refusal) => {}
            Err(e) => return Err(e),
        }
        let Some(uid) = self.read_holder(api, &name, mirror_uid).await? else {
            return Ok(false);
        };
        object.meta_mut().uid = uid;
        apply(api, &self.metrics, &name, &object).await?;
        Ok(true)
    }

    /// Deletes `name` if the mirror with UID `mirror_uid` controls it, on condition it is still
    /// that object: `known` is its UID when the watch lists it as the mirror's, else it is read.
    async fn delete<K>(
        &self,
        api: &Api<K>,
        name: &str,
        known: Option<&String>,
        mirror_uid: &str,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let uid = match known {
            Some(uid) => uid.clone(),
            None => match self.read_holder(api, name, mirror_uid).await? {
                Some(Some(uid)) => uid,
                _ => return Ok(false),
            },
        };
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
            Ok(_) => Ok(true),
            // Gone already, or another object by now: nothing of ours to delete.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
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
