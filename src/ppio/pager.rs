//! A listing page by page: the caller handles each page as it arrives, so memory is bounded by a page,
//! not by the account, and is told at the end whether the listing was complete.
//!
//! The guards are those of [`Client::list_all_instances`], from [`Paging`]: each page must be a real
//! page, the server may not repeat a cursor, contradict itself about `has_more`, send an instance
//! twice or exceed the [`ListingLimits`]. A page that breaks a guard is an error, never handed out;
//! pages handed out before it were real remote data, but the listing as a whole is incomplete, so
//! nothing may be concluded from what it lacked.

use super::api_key::ApiKey;
use super::client::{Budget as ListingBudget, Client};
use super::config::{ListQuery, ListingLimits};
use super::error::PpioError;
use super::model::Instance;
use super::paging::{Paging, Progress};

/// One listing in progress; see the module documentation.
pub struct Pager<'a> {
    client: &'a Client,
    key: &'a ApiKey,
    query: &'a ListQuery,
    limits: ListingLimits,
    paging: Paging<'a>,
    paced: bool,
    finished: bool,
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
            paging: Paging::new(*limits, key),
            paced: false,
            finished: false,
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
        // Whatever happens below, a listing that failed asks for nothing more.
        self.finished = true;
        let next = self.paging.next_page()?;
        let (number, cursor) = (next.number, next.cursor.map(str::to_owned));
        let budget = ListingBudget {
            remaining: next.remaining_bytes,
            limit: self.limits.max_listing_bytes,
        };
        let paced = std::mem::take(&mut self.paced);
        let fetched = self
            .client
            .request_page_with_retries(
                self.key,
                self.query,
                cursor.as_deref(),
                number,
                budget,
                &self.limits,
                paced,
            )
            .await
            .map_err(|error| match error {
                PpioError::InvalidResponse { detail } => PpioError::InvalidResponse {
                    detail: format!("page {number}: {detail}"),
                },
                other => other,
            })?;
        match self.paging.accept(&fetched.page, fetched.body_bytes)? {
            Progress::More => self.finished = false,
            Progress::Complete => tracing::debug!(
                pages = self.paging.pages(),
                instances = self.paging.instances(),
                bytes = self.paging.bytes(),
                "listed all PPIO instances"
            ),
        }
        Ok(Some(fetched.page.instances))
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u32 {
        self.paging.pages()
    }
}
