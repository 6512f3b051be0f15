//! The stored instance records: by id, and in listing order (`created_at`, then id), kept side by side
//! so that a page is cut from the order in time that grows with the page, not with the account. A
//! listing of 100,000 instances in pages of 100 then costs the simulator what PPIO's own index would,
//! instead of a pass over every record for each of its 1,000 pages.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde_json::Value;

use super::records::created_at;

/// Where a record sorts in a listing.
pub(crate) type SortKey = (i64, String);

/// Instance records by id, with their listing order; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Store {
    by_id: BTreeMap<String, Value>,
    order: BTreeSet<SortKey>,
}

impl Store {
    /// A store of `records`, whose ids are unique.
    pub(crate) fn new(records: impl IntoIterator<Item = (String, Value)>) -> Store {
        let mut store = Store::default();
        for (id, record) in records {
            store.insert(id, record);
        }
        store
    }

    /// How many records it holds.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The record `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Value> {
        self.by_id.get(id)
    }

    /// Every record with its id, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.by_id.iter().map(|(id, record)| (id.as_str(), record))
    }

    /// Stores `record` under `id`, replacing a record with that id; whether it was new.
    pub(crate) fn insert(&mut self, id: String, record: Value) -> bool {
        let key = (created_at(&record), id.clone());
        let previous = self.by_id.insert(id.clone(), record);
        if let Some(previous) = &previous {
            self.order.remove(&(created_at(previous), id));
        }
        self.order.insert(key);
        previous.is_none()
    }

    /// Removes the record `id`; whether there was one.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(record) = self.by_id.remove(id) else {
            return false;
        };
        self.order.remove(&(created_at(&record), id.to_owned()));
        true
    }

    /// Changes the record `id` with `change` (which may change its `created_at`, not its id) and
    /// returns it; `None` if there is no such record.
    pub(crate) fn modify(&mut self, id: &str, change: impl FnOnce(&mut Value)) -> Option<&Value> {
        let record = self.by_id.get_mut(id)?;
        let before = created_at(record);
        change(record);
        let after = created_at(record);
        if after != before {
            self.order.remove(&(before, id.to_owned()));
            self.order.insert((after, id.to_owned()));
        }
        self.by_id.get(id)
    }

    /// The records that sort after `key` (all of them for `None`), in listing order.
    pub(crate) fn after(&self, key: Option<&SortKey>) -> impl Iterator<Item = (&SortKey, &Value)> {
        let start = key.map_or(Bound::Unbounded, Bound::Excluded);
        self.in_order(self.order.range((start, Bound::Unbounded)))
    }

    /// The records that sort at or before `key`, the last first.
    pub(crate) fn up_to_backwards(
        &self,
        key: &SortKey,
    ) -> impl Iterator<Item = (&SortKey, &Value)> {
        self.in_order(self.order.range(..=key).rev())
    }

    fn in_order<'a>(
        &'a self,
        keys: impl Iterator<Item = &'a SortKey>,
    ) -> impl Iterator<Item = (&'a SortKey, &'a Value)> {
        keys.filter_map(|key| Some((key, self.by_id.get(&key.1)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids<'a>(records: impl Iterator<Item = (&'a SortKey, &'a Value)>) -> Vec<&'a str> {
        records.map(|(key, _)| key.1.as_str()).collect()
    }

    #[test]
    fn the_order_follows_inserts_replacements_changes_and_removals() {
        let mut store = Store::new([
            ("b".to_owned(), json!({"id": "b", "created_at": 20})),
            ("a".to_owned(), json!({"id": "a", "created_at": 30})),
        ]);
        assert_eq!(ids(store.after(None)), ["b", "a"]);

        // A replacement with another `created_at` moves; a new record takes its place in the order.
        assert!(!store.insert("a".to_owned(), json!({"id": "a", "created_at": 10})));
        assert!(store.insert("c".to_owned(), json!({"id": "c", "created_at": "15"})));
        assert_eq!(ids(store.after(None)), ["a", "c", "b"]);

        store.modify("a", |record| record["created_at"] = json!(40));
        assert_eq!(ids(store.after(None)), ["c", "b", "a"]);
        assert_eq!(store.modify("missing", |_| {}), None);

        assert!(store.remove("b"));
        assert!(!store.remove("b"));
        assert_eq!(ids(store.after(None)), ["c", "a"]);
        assert_eq!(store.len(), 2);
        assert_eq!(ids(store.after(Some(&(15, "c".to_owned())))), ["a"]);
        assert_eq!(ids(store.up_to_backwards(&(39, "z".to_owned()))), ["c"]);
    }
}
