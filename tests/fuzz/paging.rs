//! The paging guards fed arbitrary page sequences: whatever a server sends, a listing ends within
//! its budgets, and it is complete exactly when the pages say so without contradicting themselves.
//! The outcome is compared with a plain restatement of the rules of `ppio::paging`.

use std::collections::HashSet;

use ppio::{ApiKey, Instance, InstanceId, ListingLimits, Page, Paging, PpioError, Progress};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};

use crate::corpus;

/// One page as the server sends it: instance IDs and cursors from small sets, so that repeats
/// happen often.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PageSpec {
    ids: Vec<u8>,
    next_cursor: Option<u8>,
    has_more: bool,
    body_bytes: usize,
}

/// The limits of a listing and the pages the server would send, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PagingCase {
    max_pages: u32,
    max_instances: usize,
    max_listing_bytes: usize,
    pages: Vec<PageSpec>,
}

/// How a listing ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Complete(Vec<String>),
    /// The server's pages ran out while the listing still asked for more.
    Unfinished,
    TooManyPages,
    TooManyBytes,
    TooManyInstances,
    DuplicateId,
    LastPageWithCursor,
    MorePagesWithoutCursor,
    CursorLoop,
}

fn id(n: u8) -> String {
    format!("i{n}")
}

fn cursor(n: u8) -> String {
    format!("c{n}")
}

/// The rules, restated plainly.
fn expected(case: &PagingCase) -> Outcome {
    let mut ids: Vec<String> = Vec::new();
    let mut cursors = HashSet::new();
    let mut bytes = 0usize;
    for (index, page) in case.pages.iter().enumerate() {
        if index >= case.max_pages as usize {
            return Outcome::TooManyPages;
        }
        bytes = bytes.saturating_add(page.body_bytes);
        if bytes > case.max_listing_bytes {
            return Outcome::TooManyBytes;
        }
        if ids.len() + page.ids.len() > case.max_instances {
            return Outcome::TooManyInstances;
        }
        for &n in &page.ids {
            if ids.contains(&id(n)) {
                return Outcome::DuplicateId;
            }
            ids.push(id(n));
        }
        match (page.has_more, page.next_cursor) {
            (false, None) => return Outcome::Complete(ids),
            (false, Some(_)) => return Outcome::LastPageWithCursor,
            (true, None) => return Outcome::MorePagesWithoutCursor,
            (true, Some(next)) => {
                if !cursors.insert(next) {
                    return Outcome::CursorLoop;
                }
            }
        }
    }
    if case.pages.len() >= case.max_pages as usize {
        Outcome::TooManyPages
    } else {
        Outcome::Unfinished
    }
}

fn outcome_of(error: &PpioError) -> Result<Outcome, TestCaseError> {
    let PpioError::InvalidResponse { detail } = error else {
        return Err(TestCaseError::fail(format!(
            "not an invalid response: {error:?}"
        )));
    };
    let outcomes = [
        ("pages; stopped", Outcome::TooManyPages),
        ("bytes; list fewer", Outcome::TooManyBytes),
        ("instances (page", Outcome::TooManyInstances),
        ("and again on page", Outcome::DuplicateId),
        ("but gives a next_cursor", Outcome::LastPageWithCursor),
        ("gives no next_cursor", Outcome::MorePagesWithoutCursor),
        ("already used", Outcome::CursorLoop),
    ];
    outcomes
        .into_iter()
        .find(|(words, _)| detail.contains(words))
        .map(|(_, outcome)| outcome)
        .ok_or_else(|| TestCaseError::fail(format!("unknown failure: {detail}")))
}

/// Feeds the pages to the guards as the client does, checking every request they ask for.
fn actual(case: &PagingCase) -> Result<Outcome, TestCaseError> {
    let key = ApiKey::new("sk_fuzz_paging_key_0123456789").expect("valid key");
    let limits = ListingLimits {
        max_pages: case.max_pages,
        max_instances: case.max_instances,
        max_listing_bytes: case.max_listing_bytes,
        ..ListingLimits::default()
    };
    let mut paging = Paging::new(limits, &key);
    let mut listed: Vec<String> = Vec::new();
    let mut previous_cursor: Option<String> = None;
    let mut bytes = 0usize;
    for (index, spec) in case.pages.iter().enumerate() {
        let next = match paging.next_page() {
            Ok(next) => next,
            Err(error) => return outcome_of(&error),
        };
        prop_assert_eq!(next.number as usize, index + 1);
        prop_assert_eq!(next.cursor, previous_cursor.as_deref());
        prop_assert_eq!(
            next.remaining_bytes,
            case.max_listing_bytes.saturating_sub(bytes)
        );
        let page = Page {
            instances: spec
                .ids
                .iter()
                .map(|&n| Instance::new(InstanceId::new(id(n)).expect("ID")))
                .collect(),
            next_cursor: spec.next_cursor.map(cursor),
            has_more: spec.has_more,
        };
        bytes = bytes.saturating_add(spec.body_bytes);
        previous_cursor = spec.next_cursor.map(cursor);
        let progress = paging.accept(&page, spec.body_bytes);
        listed.extend(page.instances.iter().map(|i| i.id.to_string()));
        match progress {
            Err(error) => return outcome_of(&error),
            Ok(Progress::More) => {}
            Ok(Progress::Complete) => {
                prop_assert_eq!(paging.pages() as usize, index + 1);
                prop_assert_eq!(paging.instances(), listed.len());
                return Ok(Outcome::Complete(listed));
            }
        }
    }
    Ok(match paging.next_page() {
        Ok(_) => Outcome::Unfinished,
        Err(error) => outcome_of(&error)?,
    })
}

fn check(case: PagingCase) -> Result<(), TestCaseError> {
    let actual = actual(&case)?;
    if let Outcome::Complete(ids) = &actual {
        let unique: HashSet<&String> = ids.iter().collect();
        prop_assert_eq!(
            unique.len(),
            ids.len(),
            "duplicate IDs in a complete listing"
        );
        prop_assert!(ids.len() <= case.max_instances);
    }
    prop_assert_eq!(actual, expected(&case));
    Ok(())
}

fn paging_case() -> impl Strategy<Value = PagingCase> {
    let page = (
        vec(0..40u8, 0..6),
        prop::option::weighted(0.8, 0..30u8),
        prop::bool::weighted(0.8),
        0..300usize,
    )
        .prop_map(|(ids, next_cursor, has_more, body_bytes)| PageSpec {
            ids,
            next_cursor,
            has_more,
            body_bytes,
        });
    (0..15u32, 0..40usize, 0..3000usize, vec(page, 0..20)).prop_map(
        |(max_pages, max_instances, max_listing_bytes, pages)| PagingCase {
            max_pages,
            max_instances,
            max_listing_bytes,
            pages,
        },
    )
}

#[test]
fn paging_ends_as_the_rules_say_for_any_page_sequence() {
    corpus::quick(paging_case(), check);
}

#[test]
fn the_paging_corpus_still_passes() {
    corpus::replay(
        "paging",
        |bytes| serde_json::from_slice::<PagingCase>(bytes).expect("a paging case"),
        check,
    );
}

#[test]
#[ignore = "runs until FUZZ_SECONDS have passed: make fuzz"]
fn fuzz_paging() {
    corpus::for_a_while(
        "paging",
        paging_case(),
        |case| serde_json::to_vec_pretty(case).expect("JSON"),
        check,
    );
}

#[test]
fn a_server_that_pages_forever_is_stopped_by_the_page_budget() {
    let key = ApiKey::new("sk_fuzz_paging_key_0123456789").expect("valid key");
    let mut paging = Paging::new(ListingLimits::default(), &key);
    let mut pages = 0u64;
    let error = loop {
        if let Err(error) = paging.next_page() {
            break error;
        }
        pages += 1;
        let page = Page {
            instances: Vec::new(),
            next_cursor: Some(format!("cursor-{pages}")),
            has_more: true,
        };
        if let Err(error) = paging.accept(&page, 10) {
            break error;
        }
    };
    assert_eq!(pages, u64::from(ListingLimits::default().max_pages));
    assert_eq!(outcome_of(&error).expect("known"), Outcome::TooManyPages);
}
