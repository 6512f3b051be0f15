//! A listing page by page: the caller handles each page as it arrives, so memory is bounded by a page,
//! not by the account, and is told at the end whether the listing was complete.
//!
//! The guards are those of [`Client::list_all_instances`]: each page must be a real page, the server
//! may not repeat a cursor, contradict itself about `has_more`, send an instance twice or exceed the
//! [`ListingLimits`]. A page that breaks a guard is an error, never handed out; pages handed out before
//! it were real remote data, but the listing as a whole is incomplete, so nothing may be concluded
//! from what it lacked.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use super::api_key::ApiKey;
use super::client::{Client, ListQuery, ListingBudget, ListingLimits};
use super::error::{PpioError, sanitize};
use super::model::Instance;

/// One listing in progress; see the module documentation.
pub struct Pager<'a> {
    client: &'a Client,
    key: &'a ApiKey,
    query: &'a ListQuery,
    limits: ListingLimits,
    cursor: Option<String>,
    pages: u32,
    instances: usize,
    bytes: usize,
    paced: bool,
    finished: bool,
    // IDs and cursors seen so far, as hashes: a listing of 100,000 instances costs about 2 MiB here.
    hasher: RandomState,
    seen_ids: HashSet<u64>,
    seen_cursors: HashSet<u64>,
}

impl Client {
    /// Starts a listing with `key` and `query`, to be read with [`Pager::next_page`].
    pub fn pager<'a>(
        &'a self,
        key: &'a ApiKey,
        query: &'a ListQuery,
        limits: &ListingLimits,
    ) -> Pager<'a> {
        Pager {
            client: self,
            key,
            query,
            limits: *limits,
            cursor: None,
            pages: 0,
            instances: 0,
            bytes: 0,
            paced: false,
            finished: false,
            hasher: RandomState::new(),
            seen_ids: HashSet::new(),
            seen_cursors: HashSet::new(),
        }
    }
}

impl Pager<'_> {
    /// Waits for the key's request budget for the next page (see [`Client::pace`]); optional, since
    /// [`Pager::next_page`] paces itself otherwise.
    pub async fn pace(&mut self) {
        if !self.paced && !self.finished {
            self.client.pace(self.key).await;
            self.paced = true;
        }
    }

    /// The next page's instances, with the API key redacted from them; `Ok(None)` once the listing is
    /// complete. After an error the listing is over and incomplete.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Instance>>, PpioError> {
        if self.finished {
            return Ok(None);
        }
        // Whatever happens below, this listing asks for nothing more once it failed.
        self.finished = true;
        let invalid = |detail: String| PpioError::InvalidResponse { detail };
        let limits = self.limits;
        if self.pages >= limits.max_pages {
            return Err(invalid(format!(
                "the listing did not end within {} pages; stopped so as not to page forever \
                 (raise the page size if the account really has that many instances)",
                limits.max_pages
            )));
        }
        let number = self.pages + 1;
        let budget = ListingBudget {
            remaining: limits.max_listing_bytes.saturating_sub(self.bytes),
            limit: limits.max_listing_bytes,
        };
        let paced = std::mem::take(&mut self.paced);
        let fetched = self
            .client
            .request_page_with_retries(
                self.key,
                self.query,
                self.cursor.as_deref(),
                number,
                budget,
                &limits,
                paced,
            )
            .await
            .map_err(|error| match error {
                PpioError::InvalidResponse { detail } => {
                    invalid(format!("page {number}: {detail}"))
                }
                other => other,
            })?;
        let page = fetched.page;
        self.pages = number;
        self.bytes = self.bytes.saturating_add(fetched.body_bytes);
        if self.instances + page.instances.len() > limits.max_instances {
            return Err(invalid(format!(
                "the listing holds more than {} instances (page {number}); stopped to bound memory",
                limits.max_instances
            )));
        }
        for instance in &page.instances {
            if !self
                .seen_ids
                .insert(self.hasher.hash_one(instance.id.as_str()))
            {
                return Err(invalid(format!(
                    "listing inconsistent: instance {} appears twice, again on page {number}; the \
                     list changed while paging or the server pages incorrectly",
                    sanitize(instance.id.as_str(), self.key)
                )));
            }
        }
        self.instances += page.instances.len();
        if !page.has_more {
            if page.next_cursor.is_some() {
                // The spec says the cursor is empty on the last page: an answer that says both
                // "last page" and "here is the next" cannot be trusted to be complete.
                return Err(invalid(format!(
                    "page {number} says it is the last (has_more false) but gives a next_cursor; \
                     the listing may be incomplete"
                )));
            }
            tracing::debug!(
                pages = self.pages,
                instances = self.instances,
                bytes = self.bytes,
                "listed all PPIO instances"
            );
            return Ok(Some(page.instances));
        }
        let Some(next) = page.next_cursor else {
            return Err(invalid(format!(
                "page {number} says more pages follow (has_more) but gives no next_cursor"
            )));
        };
        if !self.seen_cursors.insert(self.hasher.hash_one(&next)) {
            return Err(invalid(format!(
                "page {number} gave a next_cursor already used in this listing; the server is \
                 paging in a loop"
            )));
        }
        self.cursor = Some(next);
        self.finished = false;
        Ok(Some(page.instances))
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Instances handed out so far.
    pub fn instances(&self) -> usize {
        self.instances
    }
}
