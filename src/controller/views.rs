//! The views to sync: one watch per watched namespace (or one over all namespaces), merged into one
//! stream and one store that feed a single kube-runtime controller, so `--concurrency` means what it
//! says operator-wide. Only a new spec (generation) or a new refresh request wakes a view; the
//! operator's own status writes do not, and the schedule brings each view back on time.
//!
//! Views are read as [`StoredView`]s: a view whose spec this version cannot decode (a value a newer
//! CRD admitted) is one view to report, and never fails the list or watch of its neighbours.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::{Stream, StreamExt, stream};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::scopes::{Scope, watch_scopes};
use ppio_gpu_core::api::StoredView;
use ppio_gpu_core::sync::view_status;

/// Watches the views of `namespaces` (all when empty) whose labels match `selector`. Returns the
/// views to reconcile and the store the controller reads them from; `on_listed` is called once every
/// namespace has been listed.
pub(super) fn watch(
    client: Client,
    namespaces: &[String],
    selector: Option<&str>,
    on_listed: impl FnOnce() + Send + 'static,
) -> (
    impl Stream<Item = Result<StoredView, watcher::Error>> + Send + 'static,
    Store<StoredView>,
) {
    let mut writer = reflector::store::Writer::<StoredView>::default();
    let store = writer.as_reader();
    // Ready at once: each view is reconciled as soon as its namespace lists it.
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);

    let mut config = watcher::Config::default().any_semantic();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    let (mut pending, events) = watch_scopes::<StoredView>(&client, namespaces, &config);

    let reader = store.clone();
    let mut relisting: HashMap<Scope, HashSet<ObjectRef<StoredView>>> = HashMap::new();
    let mut on_listed = Some(on_listed);
    let views = events
        .flat_map(move |(scope, event)| {
            let mut touched: Vec<Result<StoredView, watcher::Error>> = Vec::new();
            match event {
                Err(e) => touched.push(Err(e)),
                Ok(watcher::Event::Apply(view)) => {
                    writer.apply_watcher_event(&watcher::Event::Apply(view.clone()));
                    touched.push(Ok(view));
                }
                Ok(watcher::Event::Delete(view)) => {
                    writer.apply_watcher_event(&watcher::Event::Delete(view.clone()));
                    touched.push(Ok(view));
                }
                Ok(watcher::Event::Init) => {
                    relisting.insert(scope, HashSet::new());
                }
                Ok(watcher::Event::InitApply(view)) => {
                    relisting
                        .entry(scope)
                        .or_default()
                        .insert(ObjectRef::from_obj(&view));
                    writer.apply_watcher_event(&watcher::Event::Apply(view.clone()));
                    touched.push(Ok(view));
                }
                Ok(watcher::Event::InitDone) => {
                    // Views of this scope that the relist no longer has were deleted meanwhile.
                    let listed = relisting.remove(&scope).unwrap_or_default();
                    for view in reader.state() {
                        let in_scope = scope
                            .as_deref()
                            .is_none_or(|ns| view.namespace().as_deref() == Some(ns));
                        if in_scope && !listed.contains(&ObjectRef::from_obj(&*view)) {
                            writer.apply_watcher_event(&watcher::Event::Delete((*view).clone()));
                            touched.push(Ok((*view).clone()));
                        }
                    }
                    pending = pending.saturating_sub(1);
                    if pending == 0
                        && let Some(on_listed) = on_listed.take()
                    {
                        on_listed();
                    }
                }
            }
            stream::iter(touched)
        })
        .predicate_filter(spec_or_refresh, PredicateConfig::default());
    (views, store)
}

/// What wakes a view: its spec's generation and its refresh request (and its UID, so that a view
/// deleted and created again under its name is new).
fn spec_or_refresh(view: &StoredView) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    view.metadata.uid.hash(&mut hasher);
    view.metadata.generation.hash(&mut hasher);
    view_status::refresh_requested(view).hash(&mut hasher);
    Some(hasher.finish())
}
