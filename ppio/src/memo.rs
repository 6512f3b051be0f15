//! What one view's earlier listings read, so that what the server sends again byte for byte is not
//! read again.
//!
//! Most syncs of a large account find most of it as it was, and reading every page (locating its
//! records) and every record (its [`RecordSummary`]) only to find them unchanged was most of the CPU
//! a sync in which nothing changed cost. A [`ListingMemo`] keeps, by a hash of the bytes:
//! - each page body's layout (where its records are, their hashes, its cursor and `has_more`), so a
//!   page sent again is not parsed;
//! - each record's summary, so a record sent again (on whatever page) is not decoded.
//!
//! A new or changed page or record is read as if there were no memo, by the same rules. The hash
//! is keyed per process, so no server can choose bytes that collide. A memo holds what was read
//! with one API key (summaries are redacted with it) and forgets everything when the key changes.
//! It keeps what the last complete listing sent and what the listing in progress adds, no more:
//! what an incomplete listing added is forgotten when the next one starts. It never holds more
//! than a listing's page and instance bounds, nor more than [`MAX_MEMO_BYTES`]; past that, what is
//! sent is read every time, as without a memo. What it holds is counted with its hash tables, by
//! their capacity (not only by their entries), and a memo that forgets entries gives the tables'
//! memory back: a memo that once held a large listing and now holds a small one holds the memory
//! of a small one.
//!
//! Memos may also share one [`MemoPool`]: together they then never hold more than its limit. A memo
//! that the pool has no room for reads what it could not keep every time, and says how much that
//! was ([`ListingMemo::shortfall`]), so that its owner can make room, taking it from other memos
//! ([`ListingMemo::forget_all`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap as HashMap;

use super::api_key::ApiKey;
use super::config::ListingLimits;
use super::error::{PpioError, sanitize};
use super::model::DecodeError;
use super::paging::MAX_CURSOR_BYTES;
use super::raw_page::{Layout, RawPage, hash_of};
use super::record_summary::{RecordSummary, id_holds_key};

/// The most one memo holds (an estimate of its entries' memory): some 200,000 instances' worth.
pub const MAX_MEMO_BYTES: usize = 64 * 1024 * 1024;

/// The memo of one view's listings; see the module documentation. Shared through `&` by the pages
/// of a listing.
#[derive(Debug, Default)]
pub struct ListingMemo(Mutex<Memory>);

/// One bound on the memory of several memos together: a memo reserves here what it keeps, and gives
/// it back when it forgets it or is dropped.
#[derive(Debug)]
pub struct MemoPool {
    limit: usize,
    used: AtomicUsize,
}

impl MemoPool {
    /// A pool of `limit` bytes (estimated as [`ListingMemo::bytes`] counts them); 0 keeps nothing.
    pub fn new(limit: usize) -> MemoPool {
        MemoPool {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What the memos of this pool hold together, at most [`MemoPool::limit`].
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Takes `bytes` from the pool, when they fit.
    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

#[derive(Debug, Default)]
struct Memory {
    /// A hash of the API key what is remembered was read with.
    key: Option<u64>,
    /// The listing in progress.
    listing: u32,
    /// Layouts of page bodies by the body's hash, at most `max_pages`.
    pages: HashMap<u64, (Layout, Mark)>,
    max_pages: usize,
    /// Summaries by the record's hash, at most `max_records`.
    summaries: HashMap<u64, (Arc<RecordSummary>, Mark)>,
    max_records: usize,
    /// The estimated memory of both maps' entries, besides the maps' tables.
    entries: usize,
    /// What is counted (in the pool too): `entries` and the maps' tables ([`table_bytes`]), or,
    /// while an entry is being added, what its map's table may grow to.
    bytes: usize,
    /// A bound other than [`MAX_MEMO_BYTES`], for tests.
    max_bytes: Option<usize>,
    /// The pool `bytes` are reserved in, when the memo shares one.
    pool: Option<Arc<MemoPool>>,
    /// What the pool had no room for since the last listing started: entries' bytes, besides
    /// their places in the tables.
    shortfall: usize,
    /// How many pages and records the pool had no room for since the last listing started.
    refused: [usize; 2],
}

/// One of a memo's maps.
#[derive(Clone, Copy)]
enum Table {
    Pages = 0,
    Summaries = 1,
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.set_bytes(0);
    }
}

/// When an entry was last sent.
#[derive(Clone, Copy, Debug)]
struct Mark {
    /// The last listing that sent it.
    listing: u32,
    /// Whether the last complete listing sent it.
    complete: bool,
}

impl Memory {
    /// Forgets everything unless it was read with `key`.
    fn read_with(&mut self, key: &ApiKey) {
        let key = hash_of(key.expose().as_bytes());
        if self.key != Some(key) {
            self.clear();
            self.key = Some(key);
        }
    }

    /// Forgets every entry, and the maps' tables with them.
    fn clear(&mut self) {
        self.pages = HashMap::default();
        self.summaries = HashMap::default();
        self.entries = 0;
        self.set_bytes(0);
    }

    /// Counts `bytes` as what the entries hold, giving back to the pool what is no longer held.
    /// Only ever lowers the count: more is taken through [`Memory::admit`].
    fn set_bytes(&mut self, bytes: usize) {
        if let Some(pool) = &self.pool {
            pool.release(self.bytes.saturating_sub(bytes));
        }
        self.bytes = bytes;
    }

    /// Keeps only the entries `keep` says, in tables no larger than they need, and counts their
    /// memory again.
    fn retain(&mut self, keep: impl Fn(&mut Mark) -> bool) {
        retain_shrinking(&mut self.pages, |(_, mark)| keep(mark));
        retain_shrinking(&mut self.summaries, |(_, mark)| keep(mark));
        self.entries = self
            .pages
            .values()
            .map(|(l, _)| l.footprint())
            .sum::<usize>()
            + self
                .summaries
                .values()
                .map(|(s, _)| footprint(s))
                .sum::<usize>();
        self.settle();
    }

    /// Counts what the entries and the tables now hold, giving back what an entry's admission
    /// counted for a table's growth that did not happen.
    fn settle(&mut self) {
        let held = self.entries + table_bytes(&self.pages) + table_bytes(&self.summaries);
        debug_assert!(held <= self.bytes, "{held} > {}", self.bytes);
        self.set_bytes(held);
    }

    fn mark(&self) -> Mark {
        Mark {
            listing: self.listing,
            complete: false,
        }
    }

    /// Counts `entry` bytes of a new entry of `table`, and `growth` more for the table, when they
    /// fit within the memo's bound and in its pool. After the entry is inserted,
    /// [`Memory::settle`] gives back what the table did not take.
    fn admit(&mut self, table: Table, entry: usize, growth: usize) -> bool {
        let more = entry.saturating_add(growth);
        if self.bytes.saturating_add(more) > self.max_bytes.unwrap_or(MAX_MEMO_BYTES) {
            return false;
        }
        if let Some(pool) = &self.pool
            && !pool.reserve(more)
        {
            self.shortfall = self.shortfall.saturating_add(entry);
            self.refused[table as usize] += 1;
            return false;
        }
        self.bytes += more;
        self.entries += entry;
        true
    }
}

/// The memory of `map`'s table, at least what it allocates: Rust's map (hashbrown) keeps a power of
/// two of buckets, at most 8/7 of its capacity (plus one), each an entry and one control byte, and
/// one group of control bytes more, aligned. A table with tombstones reports less capacity than
/// its buckets hold: [`retain_shrinking`] leaves none.
fn table_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    table_bytes_of::<(K, V)>(map.capacity())
}

fn table_bytes_of<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    (capacity / 7 * 8 + capacity % 7 + 2) * (std::mem::size_of::<T>() + 1) + 32
}

/// What one more entry may add to `map`'s table: nothing while it has room; when full, a table
/// of the next size (hashbrown resizes to at most twice its capacity plus one's worth of buckets,
/// and to at least 7 entries).
fn growth<K, V>(map: &HashMap<K, V>) -> usize {
    let capacity = map.capacity();
    if map.len() < capacity {
        return 0;
    }
    let grown = (capacity.saturating_mul(2).saturating_add(2)).max(7);
    table_bytes_of::<(K, V)>(grown) - table_bytes_of::<(K, V)>(capacity)
}

/// What `map`'s table would grow by to hold `refused` entries more, one by one (see [`growth`]).
fn table_shortfall<K, V>(map: &HashMap<K, V>, refused: usize) -> usize {
    if refused == 0 {
        return 0;
    }
    let grown = map.len().saturating_add(refused).saturating_mul(2).max(7);
    table_bytes_of::<(K, V)>(grown).saturating_sub(table_bytes(map))
}

/// Keeps the entries of `map` that `keep` says; when any is removed, moves those kept to a table
/// sized for them, so that the memory of a larger one is given back and no tombstone is left
/// (which would hide buckets from [`table_bytes`]).
fn retain_shrinking<V>(map: &mut HashMap<u64, V>, mut keep: impl FnMut(&mut V) -> bool) {
    let before = map.len();
    map.retain(|_, value| keep(value));
    if map.len() < before {
        *map = std::mem::take(map).into_iter().collect();
    }
}

/// The estimated memory of a remembered summary: its fields, its strings, its `Arc`'s counts and
/// the allocator's overhead (its place in the map is counted with the map's table).
fn footprint(summary: &RecordSummary) -> usize {
    std::mem::size_of::<RecordSummary>()
        + 48
        + summary.id.as_str().len()
        + summary.name.capacity()
        + summary.product_id.capacity()
        + summary.region.capacity()
        + summary.status.capacity()
        + summary.billing_mode.capacity()
}

impl ListingMemo {
    /// An empty memo whose entries count against `pool`, besides its own bound.
    pub fn in_pool(pool: Arc<MemoPool>) -> ListingMemo {
        let mut memory = Memory::default();
        memory.pool = Some(pool);
        ListingMemo(Mutex::new(memory))
    }

    /// Starts a listing read with `key` within `limits`. A memo of another key forgets everything;
    /// what an incomplete listing added since the last complete one is forgotten.
    pub fn start_listing(&self, key: &ApiKey, limits: &ListingLimits) {
        let mut memory = self.lock();
        memory.read_with(key);
        memory.retain(|mark| mark.complete);
        memory.shortfall = 0;
        memory.refused = [0; 2];
        memory.listing = memory.listing.wrapping_add(1);
        memory.max_pages = usize::try_from(limits.max_pages).unwrap_or(usize::MAX);
        memory.max_records = limits.max_instances;
    }

    /// `body` as a page: as [`RawPage::from_json`] reads it, or, for a body sent before, as it was
    /// read then.
    pub fn page(&self, body: Vec<u8>) -> Result<RawPage, (DecodeError, Vec<u8>)> {
        let hash = hash_of(&body);
        let body = {
            let mut memory = self.lock();
            let listing = memory.listing;
            match memory.pages.get_mut(&hash) {
                Some((layout, mark)) => match RawPage::with_layout(body, layout) {
                    Ok(page) => {
                        mark.listing = listing;
                        return Ok(page);
                    }
                    Err(body) => body,
                },
                None => body,
            }
        };
        let page = RawPage::from_json(body)?;
        if page.next_cursor.as_ref().map_or(0, String::len) > MAX_CURSOR_BYTES {
            // The paging guards refuse this page: nothing of it is worth keeping.
            return Ok(page);
        }
        let layout = page.layout();
        let mut memory = self.lock();
        let (bytes, growth) = (layout.footprint(), growth(&memory.pages));
        if memory.pages.len() < memory.max_pages
            && !memory.pages.contains_key(&hash)
            && memory.admit(Table::Pages, bytes, growth)
        {
            let mark = memory.mark();
            memory.pages.insert(hash, (layout, mark));
            memory.settle();
        }
        Ok(page)
    }

    /// The summaries of every record of `page`, redacted of `key`, in order: remembered ones as
    /// they were, the others read from the page and remembered. A record whose summary does not
    /// decode, or whose ID holds the key, fails the page. Summaries remembered with another key are
    /// forgotten first.
    pub fn summaries(
        &self,
        page: &RawPage,
        key: &ApiKey,
    ) -> Result<Vec<Arc<RecordSummary>>, PpioError> {
        let mut memory = self.lock();
        memory.read_with(key);
        let listing = memory.listing;
        let mut summaries = Vec::with_capacity(page.len());
        let mut redacted = 0;
        for index in 0..page.len() {
            let hash = page.record_hash(index);
            if let Some((summary, mark)) = memory.summaries.get_mut(&hash) {
                mark.listing = listing;
                summaries.push(summary.clone());
                continue;
            }
            let mut summary =
                page.decode_summary(index)
                    .map_err(|error| PpioError::InvalidResponse {
                        detail: sanitize(
                            &format!("the list response does not decode: {error}"),
                            key,
                        ),
                    })?;
            if key.appears_in(summary.id.as_str()) {
                return Err(id_holds_key(index));
            }
            redacted += summary.redact(key);
            let summary = Arc::new(summary);
            let (bytes, growth) = (footprint(&summary), growth(&memory.summaries));
            if memory.summaries.len() < memory.max_records
                && !memory.summaries.contains_key(&hash)
                && memory.admit(Table::Summaries, bytes, growth)
            {
                let mark = memory.mark();
                memory.summaries.insert(hash, (summary.clone(), mark));
                memory.settle();
            }
            summaries.push(summary);
        }
        if redacted > 0 {
            tracing::debug!(
                strings = redacted,
                "PPIO records echoed the API key; replaced it with [redacted]"
            );
        }
        Ok(summaries)
    }

    /// After a complete listing: forgets the pages and records it did not send, and keeps the rest
    /// until the next complete listing.
    pub fn finish_listing(&self) {
        let mut memory = self.lock();
        let listing = memory.listing;
        memory.retain(|mark| {
            mark.complete = mark.listing == listing;
            mark.complete
        });
    }

    /// Records remembered.
    pub fn len(&self) -> usize {
        self.lock().summaries.len()
    }

    /// Whether no record is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pages remembered.
    pub fn pages(&self) -> usize {
        self.lock().pages.len()
    }

    /// The estimated memory of what is remembered, at most [`MAX_MEMO_BYTES`].
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// What the memo's pool had no room for since the current (or last) listing started: about what
    /// it would need besides what it holds.
    pub fn shortfall(&self) -> usize {
        let memory = self.lock();
        let [pages, summaries] = memory.refused;
        memory.shortfall
            + table_shortfall(&memory.pages, pages)
            + table_shortfall(&memory.summaries, summaries)
    }

    /// Forgets everything and gives its memory back to the pool; the next listing reads every page
    /// and record as if there had been no memo.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    #[cfg(test)]
    fn with_max_bytes(max_bytes: usize) -> ListingMemo {
        let mut memory = Memory::default();
        memory.max_bytes = Some(max_bytes);
        ListingMemo(Mutex::new(memory))
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "sk_test_memo_0123456789";

    fn key(secret: &str) -> ApiKey {
        ApiKey::new(secret).expect("a key")
    }

    fn limits(max_instances: usize) -> ListingLimits {
        ListingLimits {
            max_instances,
            ..ListingLimits::default()
        }
    }

    fn page(records: serde_json::Value) -> RawPage {
        let body = json!({"data": records, "has_more": false});
        RawPage::from_json(body.to_string().into_bytes()).expect("a page")
    }

    fn record(id: &str, status: &str) -> serde_json::Value {
        json!({"id": id, "region": "eu", "status": {"status": status}, "image": "img"})
    }

    #[test]
    fn a_record_sent_again_byte_for_byte_is_recalled_and_a_changed_one_is_read() {
        let (key, memo) = (key(SECRET), ListingMemo::default());
        memo.start_listing(&key, &limits(10));
        let first = memo
            .summaries(
                &page(json!([record("a", "running"), record("b", "running")])),
                &key,
            )
            .expect("summaries");
        memo.finish_listing();
        assert_eq!(memo.len(), 2);

        memo.start_listing(&key, &limits(10));
        let second = memo
            .summaries(
                &page(json!([record("a", "running"), record("b", "exited")])),
                &key,
            )
            .expect("summaries");
        assert!(Arc::ptr_eq(&first[0], &second[0]), "recalled, not read");
        assert!(!Arc::ptr_eq(&first[1], &second[1]), "changed, so read");
        assert_eq!(
            (second[1].id.as_str(), second[1].status.as_str()),
            ("b", "exited")
        );
    }

    #[test]
    fn a_memo_keeps_the_last_complete_listing_and_what_the_one_in_progress_adds() {
        let (key, memo) = (key(SECRET), ListingMemo::default());
        memo.start_listing(&key, &limits(10));
        memo.summaries(&page(json!([record("a", "x"), record("b", "x")])), &key)
            .expect("summaries");
        memo.finish_listing();

        // A listing that stops after its first page, which sends `b` and a new `c`.
        memo.start_listing(&key, &limits(10));
        memo.summaries(&page(json!([record("b", "x"), record("c", "x")])), &key)
            .expect("summaries");
        assert_eq!(
            memo.len(),
            3,
            "nothing forgotten without a complete listing"
        );

        // The next listing starts from the last complete one: `c` is forgotten, `a` is not.
        memo.start_listing(&key, &limits(10));
        assert_eq!(memo.len(), 2);
        let kept = memo
            .summaries(&page(json!([record("a", "x")])), &key)
            .expect("summaries");
        memo.finish_listing();
        assert_eq!(memo.len(), 1);
        assert_eq!(kept[0].id.as_str(), "a");
    }

    #[test]
    fn a_memo_holds_no_more_than_its_byte_bound_and_counts_what_it_forgets() {
        const BOUND: usize = 256 * 1024;
        let (key, memo) = (key(SECRET), ListingMemo::with_max_bytes(BOUND));
        memo.start_listing(&key, &limits(1_000_000));
        // Records of 16 KiB names: the bound lets in a dozen or so, whatever the listing's size.
        let name = "n".repeat(16 * 1024);
        let records: Vec<_> = (0..40)
            .map(|i| json!({"id": format!("r{i}"), "name": name}))
            .collect();
        let summaries = memo
            .summaries(&page(json!(records)), &key)
            .expect("summaries");
        assert_eq!(summaries.len(), 40, "every record is summarised");
        assert!(memo.len() < 16 && memo.bytes() <= BOUND, "{}", memo.bytes());
        assert!(memo.bytes() > BOUND / 2);
        memo.finish_listing();
        memo.start_listing(&key, &limits(1_000_000));
        memo.summaries(&page(json!([record("a", "x")])), &key)
            .expect("summaries");
        memo.finish_listing();
        assert_eq!(memo.len(), 1);
        assert!(
            memo.bytes() < 4096,
            "forgotten entries are not counted: {}",
            memo.bytes()
        );
    }

    #[test]
    fn memos_sharing_a_pool_hold_no_more_than_its_limit_and_give_back_what_they_forget() {
        const LIMIT: usize = 64 * 1024;
        let key = key(SECRET);
        let pool = Arc::new(MemoPool::new(LIMIT));
        let (first, second) = (
            ListingMemo::in_pool(pool.clone()),
            ListingMemo::in_pool(pool.clone()),
        );
        let name = "n".repeat(4 * 1024);
        let records: Vec<_> = (0..40)
            .map(|i| json!({"id": format!("r{i}"), "name": name}))
            .collect();
        for memo in [&first, &second] {
            memo.start_listing(&key, &limits(1_000));
            let read = memo
                .summaries(&page(json!(records)), &key)
                .expect("summaries");
            assert_eq!(read.len(), 40, "every record is summarised");
            memo.finish_listing();
        }
        assert!(first.len() > 8, "the first fills the pool: {}", first.len());
        assert_eq!(pool.used(), first.bytes() + second.bytes());
        assert!(pool.used() <= LIMIT, "{}", pool.used());
        assert!(second.shortfall() > LIMIT / 2, "{}", second.shortfall());

        // The first gives its memory up: the second has room at its next listing.
        first.forget_all();
        assert_eq!((first.len(), pool.used()), (0, second.bytes()));
        second.start_listing(&key, &limits(1_000));
        assert_eq!(second.shortfall(), 0, "counted afresh by each listing");
        second
            .summaries(&page(json!(records)), &key)
            .expect("summaries");
        second.finish_listing();
        assert!(second.len() > 8, "{}", second.len());
        drop(second);
        assert_eq!(pool.used(), 0, "a dropped memo gives everything back");
    }

    #[test]
    fn summaries_read_with_another_key_than_the_listing_started_with_are_not_reused() {
        let memo = ListingMemo::default();
        let (first, second) = (key(SECRET), key("sk_test_other_9876543210"));
        memo.start_listing(&first, &limits(10));
        let records = json!([{"id": "a", "name": "sk_test_other_9876543210"}]);
        memo.summaries(&page(records.clone()), &first)
            .expect("summaries");
        let read = memo.summaries(&page(records), &second).expect("summaries");
        assert_eq!(
            read[0].name, "[redacted]",
            "redacted with the key it is read with"
        );
    }

    #[test]
    fn a_new_api_key_forgets_every_summary_and_the_memo_never_outgrows_its_capacity() {
        let memo = ListingMemo::default();
        let (old, new) = (key(SECRET), key("sk_test_other_9876543210"));
        memo.start_listing(&old, &limits(2));
        let records = json!([record("a", "x"), record("b", "x"), record("c", "x")]);
        let summaries = memo
            .summaries(&page(records.clone()), &old)
            .expect("summaries");
        assert_eq!(
            (summaries.len(), memo.len()),
            (3, 2),
            "every summary, two remembered"
        );

        memo.start_listing(&new, &limits(2));
        assert!(
            memo.is_empty(),
            "summaries redacted with another key are not reused"
        );
        memo.summaries(&page(records), &new).expect("summaries");
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn summaries_are_redacted_and_a_record_whose_id_holds_the_key_fails_the_page() {
        let (key, memo) = (key(SECRET), ListingMemo::default());
        memo.start_listing(&key, &limits(10));
        let echo = json!([{"id": "a", "name": format!("job-{SECRET}"), "region": SECRET}]);
        let summaries = memo.summaries(&page(echo), &key).expect("summaries");
        assert_eq!(summaries[0].name, "job-[redacted]");
        assert_eq!(summaries[0].region, "[redacted]");

        let bad = json!([{"id": "ok"}, {"id": format!("id-{SECRET}")}]);
        let error = memo
            .summaries(&page(bad), &key)
            .expect_err("an ID with the key");
        let shown = format!("{error} {error:?}");
        assert!(
            shown.contains("record 2 of the page") && !shown.contains(SECRET),
            "{shown}"
        );
    }

    #[test]
    fn a_body_sent_again_is_not_parsed_and_reads_as_it_did() {
        let (key, memo) = (key(SECRET), ListingMemo::default());
        memo.start_listing(&key, &limits(10));
        let body = json!({"data": [record("a", "x"), record("b", "y")], "next_cursor": "c2",
            "has_more": true})
        .to_string()
        .into_bytes();
        let first = memo.page(body.clone()).expect("a page");
        assert_eq!(memo.pages(), 1);
        let again = memo.page(body.clone()).expect("a page");
        assert_eq!(memo.pages(), 1, "recalled, not added");
        assert_eq!(
            (again.len(), again.next_cursor.as_deref(), again.has_more),
            (2, Some("c2"), true)
        );
        for index in 0..2 {
            assert_eq!(again.record_hash(index), first.record_hash(index));
            assert_eq!(again.decode(index), first.decode(index));
        }

        // A body that does not decode is never remembered, and fails every time.
        let bad = br#"{"data": [{"id": "a"}], "has_more": "no"}"#.to_vec();
        assert!(memo.page(bad.clone()).is_err() && memo.page(bad).is_err());
        assert_eq!(memo.pages(), 1);

        // Only what a complete listing sent is kept.
        memo.start_listing(&key, &limits(10));
        let other = json!({"data": [record("c", "x")], "has_more": false}).to_string();
        memo.page(other.into_bytes()).expect("a page");
        memo.finish_listing();
        assert_eq!(memo.pages(), 1);
        assert!(memo.page(body).is_ok());
        assert_eq!(memo.pages(), 2, "forgotten, so read again");
    }
}
