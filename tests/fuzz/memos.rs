//! What listing memos sharing one bound really hold on the heap, measured by the counting
//! allocator, against what the bound counts: a view whose listing was once large and is now empty
//! (its filter edited to match nothing, its account shrunk, its Secret switched to a smaller
//! account) holds no more than an empty memo, and many such views together stay within the
//! bound.

use std::sync::Arc;

use ppio::{ApiKey, ListingLimits, ListingMemo, MemoPool};

use crate::alloc::live_bytes;

const SECRET: &str = "sk_test_memo_memory_0123456789";

/// A list page of `records` records (`r0`, `r1`...).
fn body(records: usize) -> Vec<u8> {
    let records: Vec<String> = (0..records)
        .map(|index| {
            format!(
                r#"{{"id":"r{index}","name":"n","region":"eu","status":{{"status":"running"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"data":[{}],"has_more":false}}"#, records.join(",")).into_bytes()
}

/// One complete listing of one page, `body`.
fn list(memo: &ListingMemo, key: &ApiKey, body: Vec<u8>) {
    memo.start_listing(key, &ListingLimits::default());
    let page = memo.page(body).expect("a page");
    memo.summaries(&page, key).expect("summaries");
    memo.finish_listing();
}

/// What the memos' own structures and the vector holding them may take besides what they count.
const SLACK: usize = 64 * 1024;

#[test]
fn memos_that_held_a_large_listing_and_now_hold_none_give_its_memory_back() {
    const LIMIT: usize = 2 * 1024 * 1024;
    const VIEWS: usize = 24;
    const RECORDS: usize = 5_000;
    let key = ApiKey::new(SECRET).expect("a key");
    let pool = Arc::new(MemoPool::new(LIMIT));
    let (large, empty) = (body(RECORDS), body(0));
    let before = live_bytes();
    let mut memos = Vec::with_capacity(VIEWS);
    for view in 0..VIEWS {
        let memo = ListingMemo::in_pool(pool.clone());
        let held = live_bytes();
        list(&memo, &key, large.clone());
        assert!(memo.len() > RECORDS / 2, "view {view} kept {}", memo.len());
        let grew = live_bytes() - held;
        assert!(
            grew <= memo.bytes(),
            "a full memo holds {grew} bytes and counts {}",
            memo.bytes()
        );
        list(&memo, &key, empty.clone());
        assert_eq!(memo.len(), 0);
        memos.push(memo);
    }
    let held = live_bytes() - before;
    assert!(pool.used() <= LIMIT, "{}", pool.used());
    assert!(
        held <= pool.used() + SLACK,
        "{VIEWS} emptied memos hold {held} bytes and count {} (limit {LIMIT})",
        pool.used()
    );

    // A new API key drops what was read with the old one, its tables too.
    let memo = &memos[0];
    list(memo, &key, large.clone());
    let full = live_bytes() - before;
    memo.start_listing(
        &ApiKey::new("sk_test_memo_memory_other_987654").expect("a key"),
        &ListingLimits::default(),
    );
    let dropped = full - (live_bytes() - before);
    assert!(memo.is_empty());
    assert!(
        dropped >= memo_grew_at_least(RECORDS / 2),
        "a new key gave back {dropped} bytes"
    );
    assert!(
        live_bytes() - before <= pool.used() + SLACK,
        "{} held, {} counted",
        live_bytes() - before,
        pool.used()
    );
}

/// At least what a memo of `records` summaries holds: a table slot and a summary each.
fn memo_grew_at_least(records: usize) -> usize {
    records * (std::mem::size_of::<u64>() * 2 + 64)
}
