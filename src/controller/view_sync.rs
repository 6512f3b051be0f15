//! One sync of one view: its endpoint and API key, its listing from PPIO page by page, and the
//! writes that follow. Creates and updates of the instances a page lists are started as the page
//! arrives (they are true remote data); removals (absence marks, deletes) and the summary wait for a
//! complete listing. A listing that fails or runs too long therefore removes nothing, and the view's
//! counts stay as the last complete sync left them.
//!
//! Planning a page (decoding its records, redacting them, mapping each to its mirror) is CPU work
//! that grows with the page's body, up to its cap of 16 MiB; it runs on tokio's blocking pool
//! ([`plan_page`]), never on the async workers, so that however long a page takes, the HTTP
//! endpoints, the watches and the other views' syncs go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use url::Url;

use super::Context;
use super::cache::MirrorCache;
use super::credentials::read_api_key;
use super::endpoint_policy::endpoint_of;
use super::slots::Slot;
use super::writes::{MirrorWrite, Writes};
use ppio::{self, ListQuery};
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::cost::report::{PriceList, PriceListFailure};
use ppio_gpu_core::cost::{HourlySpend, SpendOverflow};
use ppio_gpu_core::services::ServiceTally;
use ppio_gpu_core::sync::fleet::FleetSnapshot;
use ppio_gpu_core::sync::listing::{ListingPlanner, Mirrors, RecordPlan};
use ppio_gpu_core::sync::plan::Observed;
use ppio_gpu_core::sync::summary::Summary;
use ppio_gpu_core::sync::view_status::{
    self, FailureReason, MirrorCounts, SyncFailure, ppio_failure,
};

/// How long a sync waits for the watch of GpuInstances to list them after the operator starts.
const CACHE_WAIT: Duration = Duration::from_secs(60);

/// The longest a read of the product list may take, its retries and the key's request budget
/// included; and the longest a sync waits for another's read of the same list.
const PRODUCT_READ_DEADLINE: Duration = Duration::from_secs(60);

/// A sync that completed.
pub(super) struct Synced {
    pub(super) summary: Summary,
    pub(super) fleet: FleetSnapshot,
    pub(super) counts: MirrorCounts,
    /// What the listed instances billed now spend an hour, at `prices`.
    pub(super) spend: Result<HourlySpend, SpendOverflow>,
    pub(super) prices: PriceList,
    pub(super) pages: u32,
    pub(super) writes: usize,
}

/// A sync that did not complete, and when PPIO asked us to come back.
pub(super) struct Failed {
    pub(super) failure: SyncFailure,
    pub(super) retry_after: Option<Duration>,
}

impl From<SyncFailure> for Failed {
    fn from(failure: SyncFailure) -> Self {
        Failed {
            failure,
            retry_after: None,
        }
    }
}

/// Syncs `view`, holding `slot` except while it reads its prices or waits for its API key's request
/// budget. The listing
/// is abandoned when one page takes longer than `deadline`, so that a stalled account cannot hold a
/// slot for hours. The writes are bounded by the same `deadline` ([`WritesStuck`]): starting a page's
/// writes (waiting for places among those in flight) may take that long, and so may every write
/// still to do once the listing ended (the rest, the removals, the summary Event), counted from
/// when it ended. Writes still running then are abandoned (cancelled): what they wrote is complete
/// per request, and the next sync plans again what is missing.
pub(super) async fn sync_view(
    view: Arc<GpuInstanceView>,
    ctx: &Arc<Context>,
    slot: &mut Slot,
    deadline: Duration,
) -> Result<Synced, Failed> {
    let namespace = view.namespace().unwrap_or_default();
    let endpoint: Url = endpoint_of(&view, &ctx.settings.endpoints)?;
    view.spec
        .expiry_warning_window()
        .map_err(|problem| SyncFailure {
            reason: FailureReason::InvalidSpec,
            message: format!("{problem}. Correct the view; nothing was listed."),
        })?;
    let key = read_api_key(&ctx.client, &namespace, &view).await?;
    let ppio = ctx
        .ppio_clients
        .of(&endpoint)
        .map_err(|e| Failed::from(ppio_failure(&e, &key)))?;
    // Read with the slot released: a product endpoint that answers slowly holds up no other view.
    let prices = slot
        .released_while(read_prices(&view, ctx, &ppio, &endpoint, &key, deadline))
        .await;
    if !ctx.mirrors.wait_ready(CACHE_WAIT).await {
        return Err(SyncFailure {
            reason: FailureReason::ListFailed,
            message: "The watch of GpuInstances has not listed them yet; nothing was changed. \
                      Retrying with backoff."
                .to_owned(),
        }
        .into());
    }

    let query = list_query(&view);
    let mut writes = Writes::new(
        ctx.client.clone(),
        view.clone(),
        ctx.mirrors.clone(),
        ctx.metrics.clone(),
        ctx.recorder.clone(),
        ctx.settings.write_concurrency,
        ctx.settings
            .services
            .as_ref()
            .map(|policy| (policy, ctx.service_watch.clone())),
    );
    let mut listing = ListingInProgress {
        planner: ListingPlanner::new(
            view.clone(),
            ctx.settings.services.as_ref(),
            ctx.settings.metrics_instance_info,
            prices.clone(),
            Timestamp::now(),
        ),
        mirrors: ListedMirrors {
            cache: ctx.mirrors.clone(),
            namespace: namespace.clone(),
            listed_at: Instant::now(),
        },
    };
    let started = Instant::now();
    let memo = ctx.memos.of(&ObjectRef::from_obj(&*view));
    let mut pager = ppio.pager(&key, &query, &ctx.settings.listing_limits, memo);
    // The deadline bounds each page (its answer, its retries and the key's budget), not the whole
    // listing, whose length grows with the account; and the start of each page's writes.
    let listed = loop {
        let page = tokio::time::timeout(deadline, async {
            slot.released_while(pager.pace()).await;
            pager.next_page().await
        })
        .await;
        let page = match page {
            Ok(Ok(Some(page))) => page,
            Ok(Ok(None)) => break Ended::Complete,
            Ok(Err(e)) => break Ended::Failed(e),
            Err(_) => break Ended::PageTimedOut,
        };
        // The page is planned whole before any of its writes starts: a record that does not decode
        // makes the page invalid, and nothing of an invalid page is written.
        let planned;
        (listing, planned) = plan_page(listing, page).await;
        match planned {
            Ok(planned) => {
                let started = tokio::time::timeout(deadline, async {
                    for write in planned.into_iter().flatten() {
                        writes.start(write).await;
                    }
                })
                .await;
                if started.is_err() {
                    // Dropping the writes cancels those in flight.
                    return Err(WritesStuck { deadline }.failure().into());
                }
            }
            Err(e) => break Ended::Failed(e),
        }
    };
    let pages = pager.pages();
    let failure = match listed {
        Ended::Complete => None,
        Ended::Failed(e) => Some(Failed {
            retry_after: e.retry_after(),
            failure: ppio_failure(&e, &key),
        }),
        Ended::PageTimedOut => Some(
            SyncFailure {
                reason: FailureReason::ApiUnavailable,
                message: format!(
                    "A page of the PPIO listing took longer than {}s (its retries and the API key's \
                     request budget included) and the listing was abandoned; nothing was removed. \
                     Retrying with backoff.",
                    deadline.as_secs()
                ),
            }
            .into(),
        ),
    };
    if let Some(failure) = failure {
        // The instances it listed exist: a listing that lacks them later starts their count over.
        ctx.mirrors
            .record_listed(&namespace, listing.planner.listed());
        // What the pages listed is being written; let it finish (within the deadline), then
        // report the listing.
        let _ = tokio::time::timeout(deadline, writes.finish()).await;
        return Err(failure);
    }

    // A complete listing: what it lacks may go, timed by when the listings that lacked them
    // started (this process's monotonic clock).
    let (unlisted, total) = ctx
        .mirrors
        .record_listing(&view, listing.planner.listed(), started);
    let removals = listing
        .planner
        .plan_removals(unlisted, total, Timestamp::now(), |name| {
            ctx.mirrors.observed(&namespace, name).map(|o| o.uid)
        });
    let finished = tokio::time::timeout(deadline, async move {
        for removal in removals {
            writes.start(MirrorWrite::from(removal)).await;
        }
        writes.finish().await
    })
    .await
    .map_err(|_| WritesStuck { deadline }.failure())?
    .map_err(|e| {
        if e.throttled > 0 {
            SyncFailure::throttled("write GpuInstances", &e)
        } else {
            SyncFailure::kube(FailureReason::WriteFailed, "write GpuInstances", &e)
        }
    })?;
    let listed = listing.planner.finish(finished.services_not_kept);
    Ok(Synced {
        summary: listed.summary,
        fleet: listed.fleet,
        counts: listed.counts,
        spend: listed.spend,
        prices,
        pages,
        writes: finished.writes,
    })
}

/// The prices of the view's key at its endpoint: PPIO's product list as kept, read again when it
/// is older than its time to live or the view asks for a refresh. A read that fails, or takes
/// longer than [`PRODUCT_READ_DEADLINE`] (or `deadline`, if shorter), keeps the last prices, and
/// the view says why; it never fails the sync. Waiting for another sync's read of the same list is
/// bounded alike.
async fn read_prices(
    view: &GpuInstanceView,
    ctx: &Context,
    ppio: &ppio::Client,
    endpoint: &Url,
    key: &ppio::ApiKey,
    deadline: Duration,
) -> PriceList {
    let refresh = view_status::refresh_requested(view).is_some_and(|requested| {
        view.status
            .as_ref()
            .and_then(|status| status.last_handled_refresh.as_deref())
            != Some(requested.as_str())
    });
    let limits = &ctx.settings.listing_limits;
    let deadline = deadline.min(PRODUCT_READ_DEADLINE);
    let read = || async {
        match tokio::time::timeout(deadline, ppio.list_instance_products(key, limits)).await {
            Ok(Ok(products)) => Ok(products),
            Ok(Err(error)) => Err(PriceListFailure::message_of(&error, key)),
            Err(_) => Err(format!(
                "reading it took longer than {}s (its retries and the API key's request budget \
                 included) and was abandoned.",
                deadline.as_secs()
            )),
        }
    };
    let prices = ctx.prices.of(endpoint, key, refresh, deadline, read).await;
    match (prices.read, &prices.list.failure) {
        (Some(true), _) => {
            let products = prices.list.products.as_ref().map_or(0, |p| p.len());
            tracing::debug!(products, refresh, "read the PPIO product list");
            ctx.metrics.record_product_list_read(true);
        }
        (Some(false), Some(failure)) => {
            tracing::warn!(
                detail = %failure.message,
                prices_read_at = ?prices.list.read_at.map(|at| at.to_string()),
                "reading the PPIO product list failed; the last prices read are kept"
            );
            ctx.metrics.record_product_list_read(false);
        }
        _ => {}
    }
    prices.list
}

/// How a listing ended.
enum Ended {
    /// Every page was listed.
    Complete,
    /// PPIO failed it.
    Failed(ppio::PpioError),
    /// A page took longer than the deadline.
    PageTimedOut,
}

/// The sync's writes did not finish within their deadline: the API server answered too slowly
/// (the per-request deadlines of many writes, refusals retried). Those still running are abandoned.
struct WritesStuck {
    deadline: Duration,
}

impl WritesStuck {
    fn failure(&self) -> SyncFailure {
        SyncFailure::throttled(
            "write GpuInstances",
            &format!(
                "the sync's writes did not finish within {}s of its listing; those still running \
                 were abandoned and the next sync plans them again",
                self.deadline.as_secs()
            ),
        )
    }
}

/// Plans every record of `page`, on tokio's blocking pool: decoding, redacting and mapping the
/// records of a page at the body cap takes a while even in linear time, and on an async worker it
/// would hold up everything else scheduled there (with a CPU limit of one core or less, the runtime
/// has a single worker: `/healthz`, `/metrics`, the watches). The blocking pool's threads are
/// started as needed, and at most one page per syncing view is planned at a time. `listing` moves
/// to the pool and back.
async fn plan_page(
    mut listing: ListingInProgress,
    page: ppio::ListedPage,
) -> (
    ListingInProgress,
    Result<Vec<Option<MirrorWrite>>, ppio::PpioError>,
) {
    let span = tracing::Span::current();
    // What a page lists is a true remote observation, whatever becomes of the rest of the listing.
    listing.mirrors.listed_at = Instant::now();
    let planned = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let planned = (0..page.len())
            .map(|index| listing.plan(&page, index))
            .collect::<Result<Vec<_>, _>>();
        (listing, planned)
    })
    .await;
    match planned {
        Ok(planned) => planned,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only when the runtime shuts down, which drops this sync too.
            Err(_) => std::future::pending().await,
        },
    }
}

/// A listing in progress: its planner, and the mirrors as the cache knows them when its page
/// arrived. It owns what it refers to, so that a page can be planned on the blocking pool
/// ([`plan_page`]).
struct ListingInProgress {
    planner: ListingPlanner,
    mirrors: ListedMirrors,
}

impl ListingInProgress {
    /// Plans record `index` of `page`: what the planner decides, as the write to carry out. A
    /// mirror found unchanged by planning has its record's source recorded, and is confirmed.
    fn plan(
        &mut self,
        page: &ppio::ListedPage,
        index: usize,
    ) -> Result<Option<MirrorWrite>, ppio::PpioError> {
        let planned = self.planner.plan_record(
            page.summary(index),
            page.source(index),
            || page.decode(index),
            &self.mirrors,
        )?;
        let listed_at = self.mirrors.listed_at;
        Ok(match planned {
            RecordPlan::Nothing => None,
            RecordPlan::Unchanged {
                name,
                source,
                services,
            } => {
                self.mirrors.cache.record_source(
                    &self.mirrors.namespace,
                    &name,
                    (source, listed_at),
                    services,
                );
                None
            }
            RecordPlan::Create(change) => Some(MirrorWrite::Create {
                mirror: change.mirror,
                source: change.source,
                listed_at,
                events: change.events,
            }),
            RecordPlan::Update(change) => Some(MirrorWrite::Update {
                mirror: change.mirror,
                source: change.source,
                listed_at,
                events: change.events,
            }),
        })
    }
}

/// The view's mirrors as the cache knows them, for the planner: a mirror confirmed unchanged is
/// confirmed as of `listed_at`, when the page that lists it arrived.
struct ListedMirrors {
    cache: Arc<MirrorCache>,
    namespace: String,
    listed_at: Instant,
}

impl Mirrors for ListedMirrors {
    fn confirm_unchanged(&self, name: &str, source: u64) -> Option<ServiceTally> {
        self.cache
            .unchanged_source(&self.namespace, name, source, self.listed_at)
    }

    fn observed(&self, name: &str) -> Option<Observed> {
        self.cache.observed(&self.namespace, name)
    }
}

fn list_query(view: &GpuInstanceView) -> ListQuery {
    let filter = &view.spec.filter;
    ListQuery {
        name: filter.name.clone(),
        status: filter.status.clone(),
        regions: filter.regions.clone(),
        billing_mode: filter.billing_mode.map(Into::into),
        page_size: u32::try_from(view.spec.page_size.max(1)).unwrap_or(50),
    }
}
