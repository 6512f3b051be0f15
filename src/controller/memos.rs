//! What each view's listings read ([`ListingMemo`]: page layouts and record summaries), kept from
//! one sync of the view to the next so that what PPIO sends again is not read again; dropped when
//! the view is deleted or suspended.
//!
//! Every view's memo is capped ([`ppio::MAX_MEMO_BYTES`]), and all of them together share one
//! operator-wide bound (`--memo-memory-limit-mib`, a [`MemoPool`]): whoever may create views cannot
//! take the operator's memory by creating many over one large account. A memo the pool has no room
//! for reads every time what it could not keep; when its view syncs next, the views used least
//! recently give their memos up ([`least_recently_used`]) until what it lacked fits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::runtime::reflector::ObjectRef;

use ppio::{ListingMemo, MemoPool};
use ppio_gpu_core::api::GpuInstanceView;

/// The memo of every view this replica syncs.
pub(super) struct Memos {
    pool: Arc<MemoPool>,
    views: Mutex<Views>,
}

#[derive(Default)]
struct Views {
    memos: HashMap<ObjectRef<GpuInstanceView>, Used>,
    /// Counts the calls of [`Memos::of`]: the time of the last use of each memo.
    clock: u64,
}

struct Used {
    memo: Arc<ListingMemo>,
    last_used: u64,
}

impl Memos {
    /// Memos that hold at most `limit` bytes together.
    pub(super) fn new(limit: usize) -> Memos {
        Memos {
            pool: Arc::new(MemoPool::new(limit)),
            views: Mutex::default(),
        }
    }

    /// The memo of `view`, empty the first time; it is now the one used most recently. When its
    /// last listing lacked room in the pool, the memos of the views used least recently are
    /// forgotten until that fits (or none other is left).
    pub(super) fn of(&self, view: &ObjectRef<GpuInstanceView>) -> Arc<ListingMemo> {
        let mut views = self.lock();
        views.clock += 1;
        let now = views.clock;
        let used = views.memos.entry(view.clone()).or_insert_with(|| Used {
            memo: Arc::new(ListingMemo::in_pool(self.pool.clone())),
            last_used: now,
        });
        used.last_used = now;
        let memo = used.memo.clone();
        let need = memo.shortfall();
        if need > 0 && self.pool.used().saturating_add(need) > self.pool.limit() {
            let others = views
                .memos
                .iter()
                .filter(|(other, _)| *other != view)
                .map(|(other, used)| (other.clone(), used.last_used, used.memo.bytes()));
            let evicted = least_recently_used(others, self.pool.used(), need, self.pool.limit());
            for other in evicted {
                if let Some(used) = views.memos.remove(&other) {
                    // A sync of that view in progress keeps its (now empty) memo until it ends.
                    used.memo.forget_all();
                }
            }
        }
        memo
    }

    /// Drops the memo of `view`.
    pub(super) fn forget(&self, view: &ObjectRef<GpuInstanceView>) {
        self.lock().memos.remove(view);
    }

    /// Records the memo of `view` holds, without using it.
    #[cfg(test)]
    fn held(&self, view: &ObjectRef<GpuInstanceView>) -> usize {
        self.lock()
            .memos
            .get(view)
            .map_or(0, |used| used.memo.len())
    }

    fn lock(&self) -> MutexGuard<'_, Views> {
        self.views
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The memos to give up, least recently used first, so that `need` more bytes fit within `limit`
/// when `used` are held: of `others` (each a memo, when it was last used, and the bytes it holds),
/// as few as that takes, or all when even that is not enough.
pub(super) fn least_recently_used<K>(
    others: impl Iterator<Item = (K, u64, usize)>,
    used: usize,
    need: usize,
    limit: usize,
) -> Vec<K> {
    let mut others: Vec<_> = others.collect();
    others.sort_by_key(|&(_, last_used, _)| last_used);
    let mut held = used;
    let mut evicted = Vec::new();
    for (memo, _, bytes) in others {
        if held.saturating_add(need) <= limit {
            break;
        }
        held = held.saturating_sub(bytes);
        evicted.push(memo);
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppio::{ApiKey, ListingLimits, RawPage};
    use serde_json::json;

    #[test]
    fn the_least_recently_used_give_theirs_up_first_and_no_more_than_needed() {
        let others = [("b", 2, 30), ("a", 1, 10), ("c", 3, 50)];
        // 90 held of 100; 25 more are needed: `a` then `b` (40 freed), not `c`.
        assert_eq!(
            least_recently_used(others.into_iter(), 90, 25, 100),
            vec!["a", "b"]
        );
        // Enough room already: nobody gives anything up.
        assert!(least_recently_used(others.into_iter(), 60, 40, 100).is_empty());
        // More than the pool could ever hold: every other view gives up its memo.
        assert_eq!(
            least_recently_used(others.into_iter(), 90, 500, 100),
            vec!["a", "b", "c"]
        );
        // A memo holding nothing is given up only if those before it were not enough.
        let with_empty = [("e", 0, 0), ("a", 1, 40)];
        assert_eq!(
            least_recently_used(with_empty.into_iter(), 90, 40, 100),
            vec!["e", "a"]
        );
    }

    fn fill(memo: &ListingMemo, key: &ApiKey, view: &str) {
        let name = "n".repeat(1024);
        let records: Vec<_> = (0..64)
            .map(|i| json!({"id": format!("{view}-{i}"), "name": name}))
            .collect();
        let body = json!({"data": records, "has_more": false}).to_string();
        let page = RawPage::from_json(body.into_bytes()).expect("a page");
        memo.start_listing(key, &ListingLimits::default());
        memo.summaries(&page, key).expect("summaries");
        memo.finish_listing();
    }

    #[test]
    fn many_views_hold_no_more_than_the_bound_and_the_one_used_least_recently_gives_way() {
        let key = ApiKey::new("sk_test_memos_0123456789").expect("a key");
        let per_view = {
            let alone = ListingMemo::default();
            fill(&alone, &key, "x");
            alone.bytes()
        };
        // Room for two and a half views.
        let limit = 2 * per_view + per_view / 2;
        let memos = Memos::new(limit);
        let view = |name: &str| ObjectRef::<GpuInstanceView>::new(name).within("ml");
        for name in ["a", "b", "c", "d"] {
            fill(&memos.of(&view(name)), &key, name);
            assert!(memos.pool.used() <= limit, "{}", memos.pool.used());
        }
        assert_eq!((memos.held(&view("a")), memos.held(&view("b"))), (64, 64));
        assert!(
            (1..64).contains(&memos.held(&view("c"))),
            "`c` kept part of its own"
        );
        assert_eq!(memos.held(&view("d")), 0, "no room was left for `d`");

        // `d` syncs again: the view used least recently (`a`) gives its memo up, no other.
        let d = memos.of(&view("d"));
        assert_eq!(memos.held(&view("a")), 0);
        fill(&d, &key, "d");
        assert_eq!(d.len(), 64, "room was made for `d`");
        assert_eq!(memos.held(&view("b")), 64);
        assert!(memos.held(&view("c")) > 0);
        assert!(memos.pool.used() <= limit, "{}", memos.pool.used());

        // A deleted view's memo gives its memory back.
        memos.forget(&view("d"));
        drop(d);
        let left = memos.of(&view("b")).bytes() + memos.of(&view("c")).bytes();
        assert_eq!(memos.pool.used(), left);
    }
}
