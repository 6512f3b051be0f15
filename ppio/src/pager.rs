//! A listing page by page: the caller handles each page as it arrives, so memory is bounded by a page,
//! not by the account, and is told at the end whether the listing was complete.
//!
//! The guards are those of [`Paging`]: each page must be a real page, the server may not repeat a
//! cursor, contradict itself about `has_more`, send an instance twice or exceed the
//! [`ListingLimits`]. A page that breaks a guard is an error, never handed out;
//! pages handed out before it were real remote data, but the listing as a whole is incomplete, so
//! nothing may be concluded from what it lacked.
//!
//! A page hands out each record's summary at once (from the view's [`ListingMemo`] for a record sent
//! before byte for byte) and the whole record only when asked ([`ListedPage::decode`]), with a hash
//! that tells a record unchanged since the last listing without decoding it
//! ([`ListedPage::source`]). Both come with the API key redacted.
//!
//! Reading a page's summaries (decoding part of every record it does not remember, redacting it)
//! costs CPU time that grows with the body, up to its cap of 16 MiB: it runs on tokio's blocking
//! pool, not on the async workers, which must stay free for the HTTP endpoints and the watches
//! whatever a page holds. A [`ListedPage`] owns what it needs (its body, its summaries, the key),
//! so that planning its records can move to the blocking pool as well.

use std::sync::Arc;

use super::api_key::ApiKey;
use super::client::decode_record;
use super::client::{Budget as ListingBudget, Client};
use super::config::{ListQuery, ListingLimits};
use super::error::PpioError;
use super::memo::ListingMemo;
use super::model::Instance;
use super::paging::{Paging, Progress};
use super::raw_page::RawPage;
use super::record_summary::RecordSummary;

/// One listing in progress; see the module documentation.
pub struct Pager<'a> {
    client: &'a Client,
    key: &'a ApiKey,
    query: &'a ListQuery,
    limits: ListingLimits,
    paging: Paging<'a>,
    memo: Arc<ListingMemo>,
    /// A hash of the key, part of every record's [`ListedPage::source`].
    key_hash: u64,
    paced: bool,
    finished: bool,
}

impl Client {
    /// Starts a listing with `key` and `query`, to be read with [`Pager::next_page`]. `memo` holds
    /// what earlier listings of the same view read, and learns what this one reads.
    pub fn pager<'a>(
        &'a self,
        key: &'a ApiKey,
        query: &'a ListQuery,
        limits: &ListingLimits,
        memo: Arc<ListingMemo>,
    ) -> Pager<'a> {
        let key_hash = {
            use std::hash::Hasher;
            let mut hasher = rustc_hash::FxHasher::default();
            hasher.write(key.expose().as_bytes());
            hasher.finish()
        };
        memo.start_listing(key, limits);
        Pager {
            client: self,
            key,
            query,
            limits: *limits,
            paging: Paging::new(*limits, key),
            memo,
            key_hash,
            paced: false,
            finished: false,
        }
    }
}

impl<'a> Pager<'a> {
    /// Waits for the key's request budget for the next page (see [`Client::pace`]); optional, since
    /// [`Pager::next_page`] paces itself otherwise.
    pub async fn pace(&mut self) {
        if !self.paced && !self.finished {
            self.client.pace(self.key).await;
            self.paced = true;
        }
    }

    /// The next page; `Ok(None)` once the listing is complete. After an error the listing is over and
    /// incomplete.
    pub async fn next_page(&mut self) -> Result<Option<ListedPage>, PpioError> {
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
                Some(&self.memo),
            )
            .await;
        let fetched = match fetched {
            Ok(fetched) => {
                let (memo, key) = (self.memo.clone(), self.key.clone());
                let summarized = tokio::task::spawn_blocking(move || {
                    let summaries = memo.summaries(&fetched.page, &key);
                    summaries.map(|summaries| (fetched, summaries))
                })
                .await;
                match summarized {
                    Ok(summarized) => summarized,
                    Err(error) => match error.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        // Only when the runtime shuts down, which drops this listing too.
                        Err(_) => std::future::pending().await,
                    },
                }
            }
            Err(error) => Err(error),
        };
        let (fetched, summaries) = fetched.map_err(|error| match error {
            PpioError::InvalidResponse { detail } => PpioError::InvalidResponse {
                detail: format!("page {number}: {detail}"),
            },
            other => other,
        })?;
        let ids = summaries.iter().map(|summary| &summary.id);
        match self
            .paging
            .accept_raw(&fetched.page, ids, fetched.body_bytes)?
        {
            Progress::More => self.finished = false,
            Progress::Complete => {
                self.memo.finish_listing();
                tracing::debug!(
                    pages = self.paging.pages(),
                    instances = self.paging.instances(),
                    bytes = self.paging.bytes(),
                    remembered = self.memo.len(),
                    "listed all PPIO instances"
                );
            }
        }
        Ok(Some(ListedPage {
            page: fetched.page,
            summaries,
            key: self.key.clone(),
            key_hash: self.key_hash,
            number,
        }))
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u32 {
        self.paging.pages()
    }
}

/// One page of a listing; see the module documentation.
pub struct ListedPage {
    page: RawPage,
    /// The summary of each record, in order.
    summaries: Vec<Arc<RecordSummary>>,
    key: ApiKey,
    key_hash: u64,
    number: u32,
}

impl ListedPage {
    /// Records on the page.
    pub fn len(&self) -> usize {
        self.page.len()
    }

    /// Whether the page holds no record.
    pub fn is_empty(&self) -> bool {
        self.page.is_empty()
    }

    /// Record `index`'s summary, redacted (see [`RecordSummary`]).
    pub fn summary(&self, index: usize) -> &RecordSummary {
        &self.summaries[index]
    }

    /// A hash of record `index` as sent and of the API key it is read with. A record that hashes as
    /// an earlier one decodes, and is redacted, to the same instance. In memory only.
    pub fn source(&self, index: usize) -> u64 {
        use std::hash::Hasher;
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write_u64(self.key_hash);
        hasher.write_u64(self.page.record_hash(index));
        hasher.finish()
    }

    /// Record `index` decoded whole, redacted. A record that does not decode is an invalid response,
    /// which ends the listing as incomplete.
    pub fn decode(&self, index: usize) -> Result<Instance, PpioError> {
        decode_record(&self.page, index, &self.key).map_err(|error| match error {
            PpioError::InvalidResponse { detail } => PpioError::InvalidResponse {
                detail: format!("page {}: {detail}", self.number),
            },
            other => other,
        })
    }
}
