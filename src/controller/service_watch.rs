//! The operator's Services and EndpointSlices, known from a metadata-only watch (label
//! `app.kubernetes.io/managed-by`), so that one that someone else deletes is written again at the
//! next sync: its mirror stops being trusted, and the next sync rewrites the mirror and its Service.
//! Deletes the operator makes itself are announced first ([`ServiceWatch::expect_delete`]), and the
//! garbage collector's, which follow a mirror's, concern a mirror that is gone. What a watch that
//! restarts no longer lists was deleted while it was away, and counts the same.
//!
//! It also tells a mirror's write which objects the mirror controls, by the mirror's UID
//! ([`ServiceWatch::owned_by`]): those need no read before they are written, on condition that
//! they are still the objects the watch saw (their UIDs), and any of them the plan no longer wants
//! is deleted, also when an earlier write that should have deleted it failed half-way.
//!
//! A deleted object marks its mirror untrusted in the [`MirrorCache`]; a write of the mirror in
//! flight at that moment does not clear the mark when it records its response
//! ([`super::cache::WriteTicket`]).
//!
//! A Service found turned not ready for want of confirmation ([`ppio_gpu_core::services::freshness`]), by
//! this process or an earlier leader, distrusts its mirror, so that the next listing that confirms
//! the instance writes the mirror and its Service again, ready: the flip is remembered in the
//! cluster, not only in the memory of the process that made it.
//!
//! A mirror is acted on only by its UID, the one the controller ownerReference names, never by the
//! name there: anyone who may create Services may create one that names a mirror as its owner.
//!
//! Only deletes are repaired: a Service someone edits keeps its edits until its mirror next
//! changes, when the operator's apply takes its fields back.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use rustc_hash::FxHashMap as HashMap;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::cache::MirrorCache;
use super::scopes::{Scope, watch_scopes};
use ppio_gpu_core::api::GpuInstance;
use ppio_gpu_core::mirror;
use ppio_gpu_core::services::freshness;
use ppio_gpu_core::services::objects::READINESS_ANNOTATION;

/// An object: its kind (`services`, `endpointslices`), namespace and name.
type Key = (Arc<str>, String, String);

/// What the watches know of one object.
#[derive(Clone)]
struct Known {
    /// The name of the mirror that controls it.
    owner: String,
    /// That mirror's UID: what ownership is decided by.
    owner_uid: String,
    uid: String,
}

#[derive(Default)]
struct State {
    /// Every object the watches list.
    known: HashMap<Key, Known>,
    /// The objects (name, UID) each mirror controls, by kind, namespace and the mirror's UID.
    by_mirror: HashMap<Key, HashMap<String, String>>,
    /// Per kind and scope, the objects of a relist in progress.
    relisting: HashMap<(Arc<str>, Scope), HashMap<Key, Known>>,
    /// Objects the operator is deleting itself, by UID (a later object of the same name is another).
    deleting: HashMap<String, Key>,
}

impl State {
    fn insert(&mut self, key: Key, known: Known) {
        if let Some(old) = self.known.insert(key.clone(), known.clone()) {
            self.unindex(&key, &old.owner_uid);
        }
        self.by_mirror
            .entry((key.0.clone(), key.1.clone(), known.owner_uid))
            .or_default()
            .insert(key.2, known.uid);
    }

    fn remove(&mut self, key: &Key) -> Option<Known> {
        let old = self.known.remove(key)?;
        self.unindex(key, &old.owner_uid);
        Some(old)
    }

    fn unindex(&mut self, key: &Key, owner_uid: &str) {
        let mirror = (key.0.clone(), key.1.clone(), owner_uid.to_owned());
        if let Some(names) = self.by_mirror.get_mut(&mirror) {
            names.remove(&key.2);
            if names.is_empty() {
                self.by_mirror.remove(&mirror);
            }
        }
    }
}

/// See the module documentation.
pub struct ServiceWatch {
    mirrors: Arc<MirrorCache>,
    state: Mutex<State>,
}

impl ServiceWatch {
    /// A watch that distrusts the mirrors in `mirrors` whose Services go.
    pub fn new(mirrors: Arc<MirrorCache>) -> ServiceWatch {
        ServiceWatch {
            mirrors,
            state: Mutex::default(),
        }
    }

    /// The objects of kind `K` in `namespace` (name, UID) that the watch knows the mirror with UID
    /// `mirror_uid` controls: the operator's own, so no read is needed before writing them (on
    /// condition of that UID), and what a write of the mirror may have left behind.
    pub fn owned_by<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        mirror_uid: &str,
    ) -> HashMap<String, String> {
        self.lock()
            .by_mirror
            .get(&(kind_of::<K>(), namespace.to_owned(), mirror_uid.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the watch knows any Service or EndpointSlice in `namespace` that the mirror with
    /// UID `mirror_uid` controls.
    pub fn controls_any(&self, namespace: &str, mirror_uid: &str) -> bool {
        let state = self.lock();
        [kind_of::<Service>(), kind_of::<EndpointSlice>()]
            .into_iter()
            .any(|kind| {
                state
                    .by_mirror
                    .contains_key(&(kind, namespace.to_owned(), mirror_uid.to_owned()))
            })
    }

    /// Announces that the operator deletes the object of kind `K`, `namespace/name`, whose UID is
    /// `uid`.
    pub fn expect_delete<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) {
        self.lock().deleting.insert(
            uid.to_owned(),
            (kind_of::<K>(), namespace.to_owned(), name.to_owned()),
        );
    }

    /// Takes back [`ServiceWatch::expect_delete`]: the delete did not happen.
    pub fn cancel_delete(&self, uid: &str) {
        self.lock().deleting.remove(uid);
    }

    /// Watches the operator's objects of kind `K` (its label, and `selector` when sharded) in
    /// `namespaces` (all when empty) until dropped; `on_listed` is called once every scope listed.
    pub async fn watch<K>(
        self: Arc<Self>,
        client: Client,
        namespaces: &[String],
        selector: Option<&str>,
        on_listed: impl FnOnce() + Send,
    ) where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let mut labels = format!("{}={}", mirror::MANAGED_BY_LABEL, mirror::MANAGER);
        if let Some(selector) = selector {
            labels.push(',');
            labels.push_str(selector);
        }
        let config = watcher::Config::default().labels(&labels).any_semantic();
        let (mut pending, mut events) =
            watch_scopes::<PartialObjectMeta<K>>(&client, namespaces, &config);
        let mut on_listed = Some(on_listed);
        let kind = kind_of::<K>();
        while let Some((scope, event)) = events.next().await {
            match event {
                Ok(event) => {
                    if self.apply(&kind, scope, event) {
                        pending = pending.saturating_sub(1);
                        if pending == 0
                            && let Some(on_listed) = on_listed.take()
                        {
                            on_listed();
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, kind = %kind, "the watch of the operator's objects failed; retrying")
                }
            }
        }
    }

    /// Applies one watch event; true when it completed a scope's first list.
    fn apply<K: Resource>(
        &self,
        kind: &Arc<str>,
        scope: Scope,
        event: watcher::Event<PartialObjectMeta<K>>,
    ) -> bool {
        match event {
            watcher::Event::Apply(object) => {
                if let Some((key, known)) = entry_of(kind, &object) {
                    self.note_unconfirmed(&key, &known, &object);
                    self.lock().insert(key, known);
                }
                false
            }
            watcher::Event::Delete(object) => {
                if let Some((key, known)) = entry_of(kind, &object) {
                    let mut state = self.lock();
                    state.remove(&key);
                    let ours = state.deleting.remove(&known.uid).is_some();
                    drop(state);
                    if !ours {
                        self.gone(&key, &known);
                    }
                }
                false
            }
            watcher::Event::Init => {
                self.lock()
                    .relisting
                    .insert((kind.clone(), scope), HashMap::default());
                false
            }
            watcher::Event::InitApply(object) => {
                if let Some((key, known)) = entry_of(kind, &object) {
                    self.note_unconfirmed(&key, &known, &object);
                    self.lock()
                        .relisting
                        .entry((kind.clone(), scope))
                        .or_default()
                        .insert(key, known);
                }
                false
            }
            watcher::Event::InitDone => {
                let mut state = self.lock();
                let listed = state
                    .relisting
                    .remove(&(kind.clone(), scope.clone()))
                    .unwrap_or_default();
                let in_scope =
                    |key: &Key| key.0 == *kind && scope.as_deref().is_none_or(|ns| *ns == *key.1);
                let dropped: Vec<Key> = state
                    .known
                    .keys()
                    .filter(|key| in_scope(key))
                    .cloned()
                    .collect();
                let mut vanished = Vec::new();
                for key in dropped {
                    if let Some(known) = state.remove(&key)
                        && !listed.contains_key(&key)
                    {
                        vanished.push((key, known));
                    }
                }
                for (key, known) in listed {
                    state.insert(key, known);
                }
                // Deleted while the watch was away: by the operator (announced), or by someone else.
                let mut gone = Vec::new();
                for (key, known) in vanished {
                    if state.deleting.remove(&known.uid).is_none() {
                        gone.push((key, known));
                    }
                }
                // Announced deletes of objects the relist no longer has, whose event never came.
                let State {
                    deleting, known, ..
                } = &mut *state;
                deleting.retain(|_, key| !in_scope(key) || known.contains_key(key));
                drop(state);
                for (key, known) in gone {
                    self.gone(&key, &known);
                }
                true
            }
        }
    }

    /// Distrusts the mirror that controls `object` (by its UID) if `object` is a Service turned
    /// not ready for want of confirmation, so that the next listing writes it again. Only
    /// distrusts: whoever may create Services may create one that names a mirror as its owner.
    fn note_unconfirmed<K: Resource>(
        &self,
        key: &Key,
        known: &Known,
        object: &PartialObjectMeta<K>,
    ) {
        let turned = object
            .annotations()
            .get(READINESS_ANNOTATION)
            .is_some_and(|readiness| freshness::is_unconfirmed(readiness));
        if turned {
            self.mirrors
                .record_unconfirmed_service(&key.1, &known.owner, &known.owner_uid);
        }
    }

    /// Object `key`, controlled by the mirror `known` names (by name and UID), was deleted by
    /// someone else: that mirror, and only a mirror of that UID, is written again.
    fn gone(&self, key: &Key, known: &Known) {
        let (kind, namespace, name) = key;
        if self
            .mirrors
            .record_gone(namespace, &known.owner, &known.owner_uid)
        {
            info!(%namespace, kind = %kind, %name, mirror = %known.owner, "deleted by someone else; the mirror's next sync writes it again");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The key of `object`, the mirror that controls it and its UID, if a mirror controls it.
fn entry_of<K: Resource>(kind: &Arc<str>, object: &PartialObjectMeta<K>) -> Option<(Key, Known)> {
    let owner = object
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == GpuInstance::kind(&()))?;
    let key = (kind.clone(), object.namespace()?, object.name_any());
    let uid = object.uid()?;
    Some((
        key,
        Known {
            owner: owner.name.clone(),
            owner_uid: owner.uid.clone(),
            uid,
        },
    ))
}

fn kind_of<K: Resource<DynamicType = ()>>() -> Arc<str> {
    Arc::from(K::plural(&()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::mirror_meta::MirrorMeta;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use kube::core::PartialObjectMetaExt;
    use ppio_gpu_core::services::ServiceTally;

    fn mirror(rv: &str) -> MirrorMeta {
        ObjectMeta {
            name: Some("v-aa01".into()),
            namespace: Some("ml".into()),
            uid: Some("mirror-uid".into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        }
        .into()
    }

    fn service(name: &str, owner_uid: &str) -> PartialObjectMeta<Service> {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ml".into()),
            uid: Some(format!("{name}-uid")),
            owner_references: Some(vec![OwnerReference {
                kind: "GpuInstance".into(),
                name: "v-aa01".into(),
                uid: owner_uid.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        }
        .into_response_partial()
    }

    #[test]
    fn ownership_is_known_by_the_mirrors_uid() {
        let watch = ServiceWatch::new(Arc::new(MirrorCache::default()));
        let kind = kind_of::<Service>();
        watch.apply(
            &kind,
            None,
            watcher::Event::Apply(service("v-aa01", "mirror-uid")),
        );
        // Left by an earlier mirror of the same name.
        watch.apply(
            &kind,
            None,
            watcher::Event::Apply(service("v-aa01-old", "earlier-uid")),
        );
        let owned = watch.owned_by::<Service>("ml", "mirror-uid");
        assert_eq!(
            owned.into_iter().collect::<Vec<_>>(),
            [("v-aa01".to_owned(), "v-aa01-uid".to_owned())]
        );
    }

    /// `service` turned not ready for want of confirmation.
    fn turned(mut object: PartialObjectMeta<Service>) -> PartialObjectMeta<Service> {
        object.metadata.annotations = Some(
            [(
                READINESS_ANNOTATION.to_owned(),
                freshness::unconfirmed_readiness(jiff::Timestamp::UNIX_EPOCH),
            )]
            .into(),
        );
        object
    }

    #[test]
    fn a_service_naming_a_mirror_by_name_only_is_never_acted_on() {
        let cache = Arc::new(MirrorCache::default());
        let watch = ServiceWatch::new(cache.clone());
        let kind = kind_of::<Service>();
        cache.apply_for_test(mirror("10"));
        cache.record_write(
            &mirror("10"),
            Some(1),
            ServiceTally::default(),
            &cache.begin_write(),
        );
        // Someone creates Services naming the mirror as controller with another UID: one turned,
        // then deletes one.
        let forged = turned(service("forged", "another-uid"));
        watch.apply(&kind, None, watcher::Event::Apply(forged.clone()));
        watch.apply(
            &kind,
            None,
            watcher::Event::Apply(service("other", "another-uid")),
        );
        watch.apply(&kind, None, watcher::Event::Delete(forged));
        assert!(cache.observed("ml", "v-aa01").expect("the mirror").trusted);

        // The mirror's own Service, found turned: the mirror is written again.
        watch.apply(
            &kind,
            None,
            watcher::Event::Apply(turned(service("v-aa01", "mirror-uid"))),
        );
        assert!(!cache.observed("ml", "v-aa01").expect("the mirror").trusted);
    }

    #[test]
    fn a_service_deleted_while_its_mirror_is_created_leaves_the_mirror_untrusted() {
        let cache = Arc::new(MirrorCache::default());
        let watch = ServiceWatch::new(cache.clone());
        let kind = kind_of::<Service>();
        // The create of the mirror and its Service is in flight; the watch sees the Service come
        // and go before the mirror's own watch event.
        let ticket = cache.begin_write();
        let ours = service("v-aa01", "mirror-uid");
        watch.apply(&kind, None, watcher::Event::Apply(ours.clone()));
        watch.apply(&kind, None, watcher::Event::Delete(ours));
        cache.record_write(&mirror("11"), Some(1), ServiceTally::default(), &ticket);
        drop(ticket);
        let observed = cache.observed("ml", "v-aa01").expect("the mirror");
        assert!(!observed.trusted, "the next sync writes the Service again");
    }

    #[test]
    fn a_service_deleted_while_its_mirror_is_written_leaves_the_mirror_untrusted() {
        let cache = Arc::new(MirrorCache::default());
        let watch = ServiceWatch::new(cache.clone());
        let kind = kind_of::<Service>();
        cache.apply_for_test(mirror("10"));
        let ours = service("v-aa01", "mirror-uid");
        watch.apply(&kind, None, watcher::Event::Apply(ours.clone()));

        // A write of the mirror is in flight when someone deletes its Service.
        let ticket = cache.begin_write();
        watch.apply(&kind, None, watcher::Event::Delete(ours));
        cache.record_write(&mirror("11"), Some(1), ServiceTally::default(), &ticket);
        drop(ticket);
        let observed = cache.observed("ml", "v-aa01").expect("the mirror");
        assert!(!observed.trusted, "the next sync writes the Service again");
    }
}
