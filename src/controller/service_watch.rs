//! The operator's Services and EndpointSlices, known from a metadata-only watch (label
//! `app.kubernetes.io/managed-by`), so that one that someone else deletes is written again at the
//! next sync: its mirror stops being trusted, and the next sync rewrites the mirror and its Service.
//! Deletes the operator makes itself are announced first ([`ServiceWatch::expect_delete`]), and the
//! garbage collector's, which follow a mirror's, concern a mirror that is gone. What a watch that
//! restarts no longer lists was deleted while it was away, and counts the same.
//!
//! Only deletes: a Service someone edits keeps its edits until its mirror next changes, when the
//! operator's apply takes its fields back.

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

/// An object: its kind (`services`, `endpointslices`), namespace and name.
type Key = (Arc<str>, String, String);

#[derive(Default)]
struct State {
    /// Every object the watches list, and the mirror that controls it.
    known: HashMap<Key, String>,
    /// Per kind and scope, the objects of a relist in progress.
    relisting: HashMap<(Arc<str>, Scope), HashMap<Key, String>>,
    /// Objects the operator is deleting itself.
    deleting: HashSet<Key>,
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

    /// Announces that the operator deletes object `name` of kind `K` in `namespace`.
    pub fn expect_delete<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        self.lock()
            .deleting
            .insert((kind_of::<K>(), namespace.to_owned(), name.to_owned()));
    }

    /// Takes back [`ServiceWatch::expect_delete`]: the delete did not happen.
    pub fn cancel_delete<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        self.lock()
            .deleting
            .remove(&(kind_of::<K>(), namespace.to_owned(), name.to_owned()));
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
                if let Some((key, owner)) = entry_of(kind, &object) {
                    self.lock().known.insert(key, owner);
                }
                false
            }
            watcher::Event::Delete(object) => {
                if let Some((key, owner)) = entry_of(kind, &object) {
                    let mut state = self.lock();
                    state.known.remove(&key);
                    let ours = state.deleting.remove(&key);
                    drop(state);
                    if !ours {
                        self.gone(&key, &owner);
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
                if let Some((key, owner)) = entry_of(kind, &object) {
                    self.lock()
                        .relisting
                        .entry((kind.clone(), scope))
                        .or_default()
                        .insert(key, owner);
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
                let vanished: Vec<(Key, String)> = state
                    .known
                    .iter()
                    .filter(|(key, _)| in_scope(key) && !listed.contains_key(*key))
                    .map(|(key, owner)| (key.clone(), owner.clone()))
                    .collect();
                state.known.retain(|key, _| !in_scope(key));
                state.known.extend(listed);
                for (key, _) in &vanished {
                    state.deleting.remove(key);
                }
                drop(state);
                for (key, owner) in vanished {
                    self.gone(&key, &owner);
                }
                true
            }
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

/// The key of `object` and the mirror that controls it, if a mirror does.
fn entry_of<K: Resource>(kind: &Arc<str>, object: &PartialObjectMeta<K>) -> Option<(Key, String)> {
    let owner = object
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == GpuInstance::kind(&()))?
        .name
        .clone();
    let key = (kind.clone(), object.namespace()?, object.name_any());
    Some((key, owner))
}

fn kind_of<K: Resource<DynamicType = ()>>() -> Arc<str> {
    Arc::from(K::plural(&()).as_ref())
}
