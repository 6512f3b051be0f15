//! The operator's Services and EndpointSlices, known from a metadata-only watch (label
//! `app.kubernetes.io/managed-by`), so that one that someone else deletes is written again at the
//! next sync: its mirror stops being trusted, and the next sync rewrites the mirror and its Service.
//! Deletes the operator makes itself are announced first ([`ServiceWatch::expect_delete`]), and the
//! garbage collector's, which follow a mirror's, concern a mirror that is gone. What a watch that
//! restarts no longer lists was deleted while it was away, and counts the same.
//!
//! It also tells a mirror's write which objects the mirror controls ([`ServiceWatch::owned_by`]):
//! those need no read before they are written (a name it does not list is read first, so an object
//! the operator does not manage is never overwritten), and any of them the plan no longer wants is
//! deleted, also when an earlier write that should have deleted it failed half-way.
//!
//! A Service found turned not ready for want of confirmation ([`crate::services::freshness`]), by
//! this process or an earlier leader, distrusts its mirror, so that the next listing that confirms
//! the instance writes the mirror and its Service again, ready: the flip is remembered in the
//! cluster, not only in the memory of the process that made it.
//!
//! Only deletes are repaired: a Service someone edits keeps its edits until its mirror next
//! changes, when the operator's apply takes its fields back.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::cache::MirrorCache;
use super::scopes::{Scope, watch_scopes};
use crate::api::GpuInstance;
use crate::mirror;
use crate::services::freshness;
use crate::services::objects::READINESS_ANNOTATION;

/// An object: its kind (`services`, `endpointslices`), namespace and name.
type Key = (Arc<str>, String, String);

/// What the watches know of one object.
#[derive(Clone)]
struct Known {
    /// The mirror that controls it.
    owner: String,
    uid: String,
}

#[derive(Default)]
struct State {
    /// Every object the watches list.
    known: HashMap<Key, Known>,
    /// The names of the objects each mirror controls, by kind, namespace and mirror.
    by_mirror: HashMap<Key, HashSet<String>>,
    /// Per kind and scope, the objects of a relist in progress.
    relisting: HashMap<(Arc<str>, Scope), HashMap<Key, Known>>,
    /// Objects the operator is deleting itself, by UID (a later object of the same name is another).
    deleting: HashMap<String, Key>,
}

impl State {
    fn insert(&mut self, key: Key, known: Known) {
        if let Some(old) = self.known.insert(key.clone(), known.clone()) {
            self.unindex(&key, &old.owner);
        }
        self.by_mirror
            .entry((key.0.clone(), key.1.clone(), known.owner))
            .or_default()
            .insert(key.2);
    }

    fn remove(&mut self, key: &Key) -> Option<Known> {
        let old = self.known.remove(key)?;
        self.unindex(key, &old.owner);
        Some(old)
    }

    fn unindex(&mut self, key: &Key, owner: &str) {
        let mirror = (key.0.clone(), key.1.clone(), owner.to_owned());
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

    /// The names of the objects of kind `K` in `namespace` that the watch knows mirror `mirror`
    /// controls: the operator's own, so no read is needed before writing them, and what a write
    /// of the mirror may have left behind.
    pub fn owned_by<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        mirror: &str,
    ) -> HashSet<String> {
        self.lock()
            .by_mirror
            .get(&(kind_of::<K>(), namespace.to_owned(), mirror.to_owned()))
            .cloned()
            .unwrap_or_default()
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
                        self.gone(&key, &known.owner);
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
                        gone.push((key, known.owner));
                    }
                }
                // Announced deletes of objects the relist no longer has, whose event never came.
                let State {
                    deleting, known, ..
                } = &mut *state;
                deleting.retain(|_, key| !in_scope(key) || known.contains_key(key));
                drop(state);
                for (key, owner) in gone {
                    self.gone(&key, &owner);
                }
                true
            }
        }
    }

    /// Distrusts the mirror of `object` if it is a Service turned not ready for want of
    /// confirmation.
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
            self.mirrors.record_turned_service(&key.1, &known.owner);
        }
    }

    /// Object `key`, controlled by mirror `owner`, was deleted by someone else.
    fn gone(&self, key: &Key, owner: &str) {
        let (kind, namespace, name) = key;
        if self.mirrors.observed(namespace, owner).is_some() {
            info!(%namespace, kind = %kind, %name, mirror = %owner, "deleted by someone else; the mirror's next sync writes it again");
            self.mirrors.record_failed_write(namespace, owner);
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
        .find(|r| r.controller == Some(true) && r.kind == GpuInstance::kind(&()))?
        .name
        .clone();
    let key = (kind.clone(), object.namespace()?, object.name_any());
    let uid = object.uid()?;
    Some((key, Known { owner, uid }))
}

fn kind_of<K: Resource<DynamicType = ()>>() -> Arc<str> {
    Arc::from(K::plural(&()).as_ref())
}
