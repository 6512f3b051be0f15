//! The namespaces the operator watches, as watch scopes: one watch per namespace it is given (or
//! one over all namespaces), merged into one stream whose events say which scope they come from,
//! so that a relist of one namespace replaces only what that namespace held. The views' watch and
//! the mirrors' watch both fan out this way.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use kube::core::NamespaceResourceScope;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// A watch scope: one namespace, or `None` for all of them.
pub(super) type Scope = Option<Arc<str>>;

/// The scopes of `namespaces`: each of them, or all namespaces at once when it is empty.
pub(super) fn scopes_of(namespaces: &[String]) -> Vec<Scope> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces
            .iter()
            .map(|ns| Some(Arc::from(ns.as_str())))
            .collect()
    }
}

/// One watch of `K` per scope of `namespaces`, with `config` and kube's default backoff, merged:
/// each event comes with its scope. Also returns how many scopes there are, each of which ends its
/// first list with [`watcher::Event::InitDone`].
pub(super) fn watch_scopes<K>(
    client: &Client,
    namespaces: &[String],
    config: &watcher::Config,
) -> (
    usize,
    impl Stream<Item = (Scope, watcher::Result<watcher::Event<K>>)> + Send + 'static + use<K>,
)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    let scopes = scopes_of(namespaces);
    let count = scopes.len();
    let streams = scopes.into_iter().map(|scope| {
        let api: Api<K> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        watcher(api, config.clone())
            .default_backoff()
            .map(move |event| (scope.clone(), event))
            .boxed()
    });
    (count, stream::select_all(streams))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_namespaces_is_one_scope_over_all_and_each_namespace_is_a_scope_of_its_own() {
        assert_eq!(scopes_of(&[]), [None]);
        assert_eq!(
            scopes_of(&["a".to_owned(), "b".to_owned()]),
            [Some(Arc::from("a")), Some(Arc::from("b"))]
        );
    }
}
