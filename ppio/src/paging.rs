//! The guards of a paged listing, as a pure state machine fed one decoded page at a time: what to
//! ask for next, and whether the pages so far still make a complete listing. No I/O, and it keeps no
//! instances (only their IDs): the client fetches each page [`Paging::next_page`] names and shows it
//! to [`Paging::accept`], then keeps or hands out its instances; the same guards can be fed any
//! sequence of pages in tests.
//!
//! A listing fails, rather than ending early with part of the instances, when
//! - it needs more than [`ListingLimits::max_pages`] pages, more than
//!   [`ListingLimits::max_instances`] instances or more than [`ListingLimits::max_listing_bytes`]
//!   of bodies (the budgets: however the server pages, a listing stops);
//! - a page says more pages follow (`has_more`) but gives no `next_cursor`, or says it is the last
//!   but gives one;
//! - a `next_cursor` is longer than [`MAX_CURSOR_BYTES`] (PPIO documents cursors of at most 1,024
//!   characters), or was already used in this listing (the server pages in a loop);
//! - an instance ID appears twice (the list changed while paging, or the server pages wrongly).
//!
//! Every failure is a [`PpioError::InvalidResponse`] naming the page, so callers never prune on it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use super::api_key::ApiKey;
use super::config::ListingLimits;
use super::error::{PpioError, sanitize};
use super::model::InstanceId;
#[cfg(any(test, feature = "testing"))]
use super::model::Page;
use super::raw_page::RawPage;

/// The longest `next_cursor` a listing accepts, in bytes: four times the 1,024 characters PPIO
/// documents, so a cursor that grows a little still works, while a server cannot make the operator
/// keep and send back a cursor of megabytes.
pub const MAX_CURSOR_BYTES: usize = 4 * 1024;

/// A listing in progress: what the guards remember of the pages accepted so far.
#[derive(Debug)]
pub struct Paging<'k> {
    limits: ListingLimits,
    key: &'k ApiKey,
    instances: usize,
    /// The page of each ID seen, by a hash of the ID: a listing of a million costs some 30 MB.
    page_of_id: HashMap<u64, u32>,
    hasher: RandomState,
    /// The cursors used so far, by a keyed hash (so no server can choose two that collide): a loop
    /// is told without keeping them.
    seen_cursors: HashSet<u64>,
    cursor: Option<String>,
    pages: u32,
    bytes: usize,
}

/// The page to fetch next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextPage<'p> {
    /// 1 for the first page.
    pub number: u32,
    /// The previous page's `next_cursor`; `None` for the first page.
    pub cursor: Option<&'p str>,
    /// Most body bytes this page may have before the listing's byte budget is spent.
    pub remaining_bytes: usize,
}

/// Where a listing stands after a page was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More pages follow: ask for [`Paging::next_page`].
    More,
    /// That was the last page: the listing is complete.
    Complete,
}

impl<'k> Paging<'k> {
    /// A listing that has not fetched anything yet. `key` is only used to clean instance IDs quoted
    /// in errors.
    pub fn new(limits: ListingLimits, key: &'k ApiKey) -> Paging<'k> {
        Paging {
            limits,
            key,
            instances: 0,
            page_of_id: HashMap::new(),
            hasher: RandomState::new(),
            seen_cursors: HashSet::new(),
            cursor: None,
            pages: 0,
            bytes: 0,
        }
    }

    /// The page to fetch next, or the error that ends the listing because it already took
    /// [`ListingLimits::max_pages`] pages.
    pub fn next_page(&self) -> Result<NextPage<'_>, PpioError> {
        if self.pages >= self.limits.max_pages {
            return Err(invalid(format!(
                "the listing did not end within {} pages; stopped so as not to page forever \
                 (raise the page size if the account really has that many instances)",
                self.limits.max_pages
            )));
        }
        Ok(NextPage {
            number: self.pages + 1,
            cursor: self.cursor.as_deref(),
            remaining_bytes: self.limits.max_listing_bytes.saturating_sub(self.bytes),
        })
    }

    /// Checks the page [`Paging::next_page`] named, decoded from a body of `body_bytes` bytes, and
    /// says whether more follow; an error means the listing is incomplete: conclude nothing from
    /// what it lacks. A test helper (feature `testing`): the client checks each page as it reads
    /// it, by the same rules.
    #[cfg(any(test, feature = "testing"))]
    pub fn accept(&mut self, page: &Page, body_bytes: usize) -> Result<Progress, PpioError> {
        let ids = page.instances.iter().map(|instance| &instance.id);
        self.accept_listed(ids, page.next_cursor.as_deref(), page.has_more, body_bytes)
    }

    /// `Paging::accept` for a page read as a [`RawPage`], whose records have the IDs `ids`.
    pub(crate) fn accept_raw<'i>(
        &mut self,
        page: &RawPage,
        ids: impl ExactSizeIterator<Item = &'i InstanceId>,
        body_bytes: usize,
    ) -> Result<Progress, PpioError> {
        self.accept_listed(ids, page.next_cursor.as_deref(), page.has_more, body_bytes)
    }

    /// The checks of [`Paging::accept`], on what a page says: its IDs, its cursor, `has_more`.
    fn accept_listed<'i>(
        &mut self,
        ids: impl ExactSizeIterator<Item = &'i InstanceId>,
        next_cursor: Option<&str>,
        has_more: bool,
        body_bytes: usize,
    ) -> Result<Progress, PpioError> {
        let number = self.next_page()?.number;
        self.pages = number;
        self.bytes = self.bytes.saturating_add(body_bytes);
        if self.bytes > self.limits.max_listing_bytes {
            // The client stops reading a body at the budget; this holds for any other caller.
            return Err(invalid(format!(
                "page {number}: the listing exceeded {} bytes; list fewer instances at once (narrower filters)",
                self.limits.max_listing_bytes
            )));
        }
        if self.instances + ids.len() > self.limits.max_instances {
            return Err(invalid(format!(
                "the listing holds more than {} instances (page {number}); stopped to bound \
                 memory",
                self.limits.max_instances
            )));
        }
        for id in ids {
            let hash = self.hasher.hash_one(id.as_str());
            if let Some(first) = self.page_of_id.insert(hash, number) {
                return Err(invalid(format!(
                    "listing inconsistent: instance {} appears on page {first} and again on \
                     page {number}; the list changed while paging or the server pages \
                     incorrectly",
                    sanitize(id.as_str(), self.key)
                )));
            }
            self.instances += 1;
        }
        if !has_more {
            if next_cursor.is_some() {
                // The spec says the cursor is empty on the last page: an answer that says both
                // "last page" and "here is the next" cannot be trusted to be complete.
                return Err(invalid(format!(
                    "page {number} says it is the last (has_more false) but gives a next_cursor; \
                     the listing may be incomplete"
                )));
            }
            return Ok(Progress::Complete);
        }
        let Some(next) = next_cursor else {
            return Err(invalid(format!(
                "page {number} says more pages follow (has_more) but gives no next_cursor"
            )));
        };
        if next.len() > MAX_CURSOR_BYTES {
            // Not quoted: only its length says anything, and it may echo the key.
            return Err(invalid(format!(
                "page {number} gave a next_cursor of {} bytes, longer than the {MAX_CURSOR_BYTES} \
                 bytes a cursor may have (PPIO documents at most 1,024 characters); the server \
                 is not paging as documented",
                next.len()
            )));
        }
        if !self.seen_cursors.insert(self.hasher.hash_one(next)) {
            return Err(invalid(format!(
                "page {number} gave a next_cursor already used in this listing; the server is \
                 paging in a loop"
            )));
        }
        self.cursor = Some(next.to_owned());
        Ok(Progress::More)
    }

    /// Body bytes of the pages accepted so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Pages accepted so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Instances on the pages accepted so far.
    pub fn instances(&self) -> usize {
        self.instances
    }
}

fn invalid(detail: String) -> PpioError {
    PpioError::InvalidResponse { detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Instance, InstanceId};

    fn key() -> ApiKey {
        ApiKey::new("sk_test_paging_0123").expect("valid key")
    }

    fn page(ids: &[&str], next_cursor: Option<&str>, has_more: bool) -> Page {
        Page {
            instances: ids
                .iter()
                .map(|id| Instance::new(InstanceId::new(*id).expect("ID")))
                .collect(),
            next_cursor: next_cursor.map(str::to_owned),
            has_more,
        }
    }

    fn detail(error: PpioError) -> String {
        match error {
            PpioError::InvalidResponse { detail } => detail,
            other => panic!("expected an invalid response, got {other:?}"),
        }
    }

    #[test]
    fn pages_are_asked_for_with_the_previous_cursor_until_the_last() {
        let key = key();
        let mut paging = Paging::new(ListingLimits::default(), &key);
        let first = paging.next_page().expect("first page");
        assert_eq!((first.number, first.cursor), (1, None));
        assert_eq!(
            paging.accept(&page(&["a"], Some("c1"), true), 10),
            Ok(Progress::More)
        );
        let second = paging.next_page().expect("second page");
        assert_eq!((second.number, second.cursor), (2, Some("c1")));
        assert_eq!(
            second.remaining_bytes,
            ListingLimits::default().max_listing_bytes - 10
        );
        assert_eq!(
            paging.accept(&page(&["b"], None, false), 10),
            Ok(Progress::Complete)
        );
        assert_eq!(paging.pages(), 2);
        assert_eq!(paging.instances(), 2);
    }

    #[test]
    fn a_listing_needing_more_than_max_pages_fails() {
        let key = key();
        let limits = ListingLimits {
            max_pages: 2,
            ..ListingLimits::default()
        };
        let mut paging = Paging::new(limits, &key);
        for cursor in ["c1", "c2"] {
            paging
                .accept(&page(&[cursor], Some(cursor), true), 1)
                .expect("within budget");
        }
        assert!(detail(paging.next_page().expect_err("spent")).contains("within 2 pages"));
        let error = paging
            .accept(&page(&[], None, false), 1)
            .expect_err("spent");
        assert!(detail(error).contains("within 2 pages"));
    }

    #[test]
    fn a_listing_over_its_byte_budget_fails_naming_the_page() {
        let key = key();
        let limits = ListingLimits {
            max_listing_bytes: 15,
            ..ListingLimits::default()
        };
        let mut paging = Paging::new(limits, &key);
        paging
            .accept(&page(&["a"], Some("c1"), true), 10)
            .expect("within");
        assert_eq!(paging.next_page().expect("next").remaining_bytes, 5);
        let error = paging
            .accept(&page(&["b"], None, false), 6)
            .expect_err("over");
        assert_eq!(
            detail(error),
            "page 2: the listing exceeded 15 bytes; list fewer instances at once (narrower filters)"
        );
    }

    #[test]
    fn contradictions_loops_and_duplicates_fail_the_listing() {
        let key = key();
        let run = |pages: Vec<Page>| {
            let mut paging = Paging::new(ListingLimits::default(), &key);
            for page in pages {
                if paging.accept(&page, 1)? == Progress::Complete {
                    return Ok(paging.instances());
                }
            }
            panic!("the sequence did not end");
        };
        let cases = [
            (
                vec![page(&["a"], Some("x"), false)],
                "but gives a next_cursor",
            ),
            (vec![page(&["a"], None, true)], "gives no next_cursor"),
            (
                vec![page(&["a"], Some("c"), true), page(&["b"], Some("c"), true)],
                "already used",
            ),
            (
                vec![page(&["a"], Some("c"), true), page(&["a"], None, false)],
                "instance a appears on page 1 and again on page 2",
            ),
        ];
        for (pages, problem) in cases {
            let error = detail(run(pages).expect_err(problem));
            assert!(error.contains(problem), "{problem}: {error}");
        }
    }

    #[test]
    fn a_cursor_longer_than_the_limit_fails_the_listing_without_being_quoted() {
        let key = key();
        let mut paging = Paging::new(ListingLimits::default(), &key);
        let longest = "c".repeat(MAX_CURSOR_BYTES);
        paging
            .accept(&page(&["a"], Some(&longest), true), 1)
            .expect("a cursor of the limit is accepted");
        assert_eq!(paging.next_page().expect("next").cursor, Some(&*longest));
        let echo = format!("{}{}", key.expose(), "x".repeat(MAX_CURSOR_BYTES));
        let error = detail(
            paging
                .accept(&page(&["b"], Some(&echo), true), 1)
                .expect_err("too long"),
        );
        assert!(
            error.contains(&format!(
                "page 2 gave a next_cursor of {} bytes, longer than the {MAX_CURSOR_BYTES}",
                echo.len()
            )),
            "{error}"
        );
        assert!(
            !error.contains(key.expose()) && !error.contains("xxxxxxxx"),
            "{error}"
        );
    }

    #[test]
    fn more_instances_than_max_instances_fail_the_listing() {
        let key = key();
        let limits = ListingLimits {
            max_instances: 2,
            ..ListingLimits::default()
        };
        let mut paging = Paging::new(limits, &key);
        paging
            .accept(&page(&["a", "b"], Some("c"), true), 1)
            .expect("two fit");
        let error = paging
            .accept(&page(&["c"], None, false), 1)
            .expect_err("three do not");
        assert!(detail(error).contains("more than 2 instances (page 2)"));
    }
}
