//! What the cluster holds of every GpuInstance the operator manages, known from a metadata-only watch
//! (no LIST per sync, and no status is ever read to plan) and reduced per object to what planning
//! needs: a [`plan::Observed`].
//!
//! The cache also remembers the resourceVersion of the operator's own last write of each object. Any
//! other write (labels, spec or status alike) changes the resourceVersion the watch reports, so the
//! mirror stops being trusted and is written again at the next sync. After a restart nothing is
//! remembered and the metadata (fingerprint, labels, owner) is taken at its word.
//!
//! A write's response must not wipe out what the watches learnt while it was in flight: a write
//! holds a [`WriteTicket`], and a mark set after the ticket was taken (a Service of the mirror
//! deleted by someone else, a write that failed) survives the write's record; a watch event newer
//! than the write's response (someone else's write, by resourceVersion) keeps the mirror untrusted.
//!
//! The labels `gpu.ppio.io/status` and `gpu.ppio.io/expiring-soon` are kept too: they say which
//! remote status, and which prepaid end time, the mirror last showed, so a lifecycle Event is
//! published once per transition, across restarts as well.
//!
//! Not kube-runtime's reflector `Store`, which would keep each whole `PartialObjectMeta` (labels,
//! annotations, owner references: about a kilobyte an object); an entry here is about 200 bytes
//! (namespace, view and status names are interned: a few distinct values shared by every entry).
//! An interned name is released with the last entry that used it, so names that come and go
//! (views, namespaces, statuses) do not add up.
//!
//! It also remembers when this process first saw each mirror's instance missing from a complete
//! listing, by its monotonic clock: removals are timed by that alone (see [`ppio_gpu_core::sync::removals`]),
//! never by the `absentSince` another replica's wall clock wrote. It is not persisted: after a restart
//! or a failover the count starts over.
//!
//! Each entry also holds when this process last saw its instance listed (an [`Instant`]: its own
//! clock, never another replica's), for [`ppio_gpu_core::services::freshness`]: an entry the watch brings
//! in counts as confirmed when this process first sees it, so a new leader that can never list
//! turns its Services not ready one freshness window after it started, not at once.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroI64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::core::ObjectMeta;
use kube::runtime::watcher;
use kube::{Client, Resource};
use tokio::sync::watch;
use tracing::{info, warn};

use super::mirror_meta::MirrorMeta;
use super::scopes::watch_scopes;
use ppio_gpu_core::api::GpuInstanceView;
use ppio_gpu_core::mirror;
use ppio_gpu_core::services::ServiceTally;
use ppio_gpu_core::services::freshness::{self, Confirmation, Unconfirmed};
use ppio_gpu_core::sync::plan::{self, Digest, Observed};
use ppio_gpu_core::sync::removals::Unlisted;

/// One mirror, as far as planning needs it.
#[derive(Clone, Debug)]
struct Entry {
    uid: String,
    view: Arc<str>,
    resource_version: u64,
    /// The resourceVersion as a number, when it is one (an etcd revision): what tells a watch
    /// event newer than a write's response.
    revision: Option<u64>,
    digest: Digest,
    absent_since: Option<Timestamp>,
    /// When the first complete listing this process saw lack its instance started, if no listing
    /// listed it since.
    missing_since: Option<Instant>,
    /// When this process first knew the mirror (from the watch, or its own create): a mirror it
    /// came to know after its view's instances went missing is not one of those the mass-removal
    /// guard protects.
    first_seen: Instant,
    /// The resourceVersion of the operator's last write of it, if this process wrote it.
    written: Option<u64>,
    /// The operator's last write of it failed part-way (e.g. the object, not its status).
    write_failed: bool,
    /// The source hash of the record the mirror was last found or written to match.
    source: Option<u64>,
    /// What its Service plan counted for that record.
    services: ServiceTally,
    /// Its `gpu.ppio.io/status` label, interned.
    status: Arc<str>,
    /// Its `gpu.ppio.io/expiring-soon` label: Unix seconds.
    expiring_soon: Option<NonZeroI64>,
    /// When this process last saw the instance listed, or first saw the mirror.
    confirmed: Instant,
    /// Its Service was turned not ready for want of confirmation since the mirror was last
    /// written.
    turned: bool,
}

impl Entry {
    /// Whether its metadata can be taken at its word: the operator's own last write of it succeeded
    /// whole, and nobody wrote it since.
    fn trusted(&self) -> bool {
        !self.write_failed && self.written.is_none_or(|w| w == self.resource_version)
    }

    /// A listing that saw its instance at `listed_at` finds it as listed: what its Service
    /// shows is confirmed, and is no longer turned.
    fn confirm(&mut self, listed_at: Instant) {
        self.confirmed = self.confirmed.max(listed_at);
        self.turned = false;
    }

    /// Makes the next sync write it again, whatever its metadata says.
    fn distrust(&mut self) {
        self.write_failed = true;
        self.source = None;
    }
}

/// The key of an entry: namespace and name.
type Key = (Arc<str>, String);

/// Entries by namespace, then by name: looked up with borrowed strings, no allocation per lookup.
type Entries = HashMap<Arc<str>, HashMap<String, Entry>>;

#[derive(Default)]
struct State {
    entries: Entries,
    /// Per watch scope (a namespace, or `None` for all), the entries of a relist in progress.
    relisting: HashMap<Option<Arc<str>>, HashMap<Key, Entry>>,
    /// Interned namespace, view and status names: many entries share them.
    names: HashSet<Arc<str>>,
    /// How many names [`MirrorCache::intern`] may hold before it releases those no entry uses.
    sweep_at: usize,
    /// Counts the marks of untrusted mirrors; a [`WriteTicket`] remembers its value at the start.
    epoch: u64,
    /// Writes holding a [`WriteTicket`].
    writes_in_flight: usize,
    /// While writes are in flight, the last mark of each mirror (namespace, name), also of one
    /// not in the cache yet (a create whose watch event has not come): its epoch, and the UID of
    /// the mirror it concerns when the mark says (`None`: whichever holds the name). What a
    /// write's record must not wipe out. Emptied when no write is in flight.
    marks: HashMap<(String, String), (u64, Option<String>)>,
    /// Mirrors (namespace, name, UID) to distrust when the watch brings them in: their Services
    /// were found turned not ready (by an earlier leader, say) before the watch of mirrors had
    /// listed. Only kept until it has: what did not arrive by then is dropped, and nothing is
    /// added after.
    distrust_on_arrival: HashSet<(String, String, String)>,
}

/// The fewest names [`State::names`] holds before a sweep: a few hundred strings are not worth one.
const MIN_NAMES_SWEPT: usize = 256;

impl State {
    /// Releases the interned names no entry (nor anyone else) holds any more.
    fn release_unused_names(&mut self) {
        // The set's own reference is the only one left: nothing else can reach the name.
        self.names.retain(|name| Arc::strong_count(name) > 1);
        self.sweep_at = (2 * self.names.len()).max(MIN_NAMES_SWEPT);
    }

    /// Inserts an entry the watch brought in, distrusting it if its Service was found turned.
    fn arrive(&mut self, key: Key, mut entry: Entry) {
        if !self.distrust_on_arrival.is_empty()
            && self.distrust_on_arrival.remove(&(
                key.0.to_string(),
                key.1.clone(),
                entry.uid.clone(),
            ))
        {
            entry.distrust();
        }
        insert(&mut self.entries, key, entry);
    }

    /// Distrusts mirror `namespace/name` if its UID is `uid` (any UID when `None`), and remembers
    /// the mark while writes are in flight, also for a mirror not in the cache yet, so that a
    /// write's record does not wipe it out.
    fn mark(&mut self, namespace: &str, name: &str, uid: Option<&str>) {
        self.epoch += 1;
        if self.writes_in_flight > 0 {
            let epoch = self.epoch;
            self.marks.insert(
                (namespace.to_owned(), name.to_owned()),
                (epoch, uid.map(str::to_owned)),
            );
        }
        if let Some(entry) = self
            .entries
            .get_mut(namespace)
            .and_then(|names| names.get_mut(name))
            .filter(|entry| uid.is_none_or(|uid| entry.uid == uid))
        {
            entry.distrust();
        }
    }
}

/// Held by a write of a mirror from before it starts until it is recorded: marks set meanwhile
/// outlive the write's record ([`MirrorCache::record_write`]).
pub struct WriteTicket<'a> {
    cache: &'a MirrorCache,
    /// The cache's epoch when the write started.
    started: u64,
}

impl Drop for WriteTicket<'_> {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        state.writes_in_flight = state.writes_in_flight.saturating_sub(1);
        if state.writes_in_flight == 0 {
            state.marks = HashMap::default();
        }
    }
}

/// The cache of mirrors; see the module documentation. Shared by every sync.
pub struct MirrorCache {
    state: Mutex<State>,
    hasher: RandomState,
    /// Watch scopes that have not completed their first list yet.
    pending: watch::Sender<usize>,
}

impl Default for MirrorCache {
    fn default() -> Self {
        MirrorCache {
            state: Mutex::default(),
            hasher: RandomState::new(),
            pending: watch::Sender::new(usize::MAX),
        }
    }
}

impl MirrorCache {
    /// Watches the operator's GpuInstances (label `app.kubernetes.io/managed-by`, and `selector`
    /// when the operator is sharded) in `namespaces` (all when empty) and keeps the cache current until
    /// the returned future is dropped. `on_listed` is called once when every watch has listed.
    pub async fn watch(
        self: Arc<Self>,
        client: Client,
        namespaces: &[String],
        selector: Option<&str>,
        on_listed: impl FnOnce() + Send,
    ) {
        let mut labels = format!("{}={}", mirror::MANAGED_BY_LABEL, mirror::MANAGER);
        if let Some(selector) = selector {
            labels.push(',');
            labels.push_str(selector);
        }
        let config = watcher::Config::default().labels(&labels).any_semantic();
        // An `Api` of `MirrorMeta` asks for metadata only.
        let (scopes, mut events) = watch_scopes::<MirrorMeta>(&client, namespaces, &config);
        self.pending.send_replace(scopes);
        let mut on_listed = Some(on_listed);
        while let Some((scope, event)) = events.next().await {
            match event {
                Ok(event) => {
                    if self.apply(scope, event) && *self.pending.borrow() == 0 {
                        info!(
                            mirrors = self.mirror_count(),
                            "the watch listed every GpuInstance"
                        );
                        if let Some(on_listed) = on_listed.take() {
                            on_listed();
                        }
                    }
                }
                Err(e) => warn!(error = %e, "the watch of GpuInstances failed; retrying"),
            }
        }
    }

    /// Waits until every watch has listed, at most `timeout`; whether it has.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut pending = self.pending.subscribe();
        tokio::time::timeout(timeout, pending.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// What the cache knows of mirror `name` in `namespace`.
    pub fn observed(&self, namespace: &str, name: &str) -> Option<Observed> {
        let state = self.lock();
        let entry = state.entries.get(namespace)?.get(name)?;
        Some(Observed {
            uid: entry.uid.clone(),
            digest: entry.digest,
            absent_since: entry.absent_since,
            trusted: entry.trusted(),
            source: entry.source,
            status: entry.status.clone(),
            expiring_soon: entry.expiring_soon.map(NonZeroI64::get),
        })
    }

    /// Says whether mirror `namespace/name` is trusted, not marked absent, and was last found or
    /// written to match the record whose [`plan::ViewSeed::source_hash`] is `source`: then it is
    /// unchanged, and this is what its Service plan counted; and then the listing that saw the
    /// record at `listed_at` confirms it ([`ppio_gpu_core::services::freshness`]). A mirror that must
    /// change is confirmed only once it is written as listed ([`MirrorCache::record_confirmed`]):
    /// until then its Service shows what an earlier listing saw. The check every listed record
    /// of a sync makes, so it allocates nothing.
    pub fn unchanged_source(
        &self,
        namespace: &str,
        name: &str,
        source: u64,
        listed_at: Instant,
    ) -> Option<ServiceTally> {
        let mut state = self.lock();
        let entry = state.entries.get_mut(namespace)?.get_mut(name)?;
        if entry.source != Some(source) || entry.absent_since.is_some() || !entry.trusted() {
            return None;
        }
        entry.confirm(listed_at);
        Some(entry.services)
    }

    /// Records that a listing that saw the instance of mirror `namespace/name` at `listed_at`
    /// found its mirror as listed, or had it written so: the listing confirms it.
    pub fn record_confirmed(&self, namespace: &str, name: &str, listed_at: Instant) {
        if let Some(entry) = self
            .lock()
            .entries
            .get_mut(namespace)
            .and_then(|names| names.get_mut(name))
        {
            entry.confirm(listed_at);
        }
    }

    /// Which mirrors of `view` (by its UID as their controller, whatever their labels say) must
    /// have their Services turned not ready at `now`, no listing having confirmed them within
    /// `window`, and when the next one is due ([`freshness::unconfirmed`]). `controls_objects`
    /// says whether Services or EndpointSlices that a mirror (by its UID) controls are known to
    /// exist: such a mirror is a candidate whatever its status label says, since its labels are
    /// written last. It is called under the cache's lock, so it must not call back into the cache.
    pub fn unconfirmed(
        &self,
        view: &GpuInstanceView,
        window: Duration,
        now: Instant,
        controls_objects: impl Fn(&str) -> bool,
    ) -> Unconfirmed {
        let namespace = view.meta().namespace.as_deref().unwrap_or_default();
        let owner = plan::owner_hash(view.meta().uid.as_deref().unwrap_or_default());
        let state = self.lock();
        let mirrors = state
            .entries
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, entry)| entry.digest.owner == owner)
            .map(|(name, entry)| {
                // Asked only of the mirrors that are due: one that is not is counted for when
                // the next is due, and asked then.
                let due = now.saturating_duration_since(entry.confirmed) >= window;
                Confirmation {
                    name,
                    routable: *entry.status == *mirror::RUNNING
                        || !due
                        || (!entry.turned && controls_objects(&entry.uid)),
                    turned: entry.turned,
                    confirmed: entry.confirmed,
                }
            });
        freshness::unconfirmed(mirrors, window, now)
    }

    /// Records that the Service of mirror `name` was turned not ready; `distrust`: one was written,
    /// so the next listing that confirms the instance writes the mirror and its Service again.
    pub fn record_turned(&self, namespace: &str, name: &str, distrust: bool) {
        if let Some(entry) = self
            .lock()
            .entries
            .get_mut(namespace)
            .and_then(|names| names.get_mut(name))
        {
            entry.turned = true;
            if distrust {
                entry.distrust();
            }
        }
    }

    /// Records that a Service controlled by the mirror `namespace/name` whose UID is `uid` is found
    /// turned not ready (by an earlier leader, say): that mirror is written again at the next
    /// listing that confirms it. The Service is not taken to be the mirror's real one (anyone may
    /// create a Service naming the mirror as its owner), so the mirror is only distrusted, never
    /// counted as turned: its own Service stays subject to the freshness rule. A mirror the watch
    /// has not brought in yet is distrusted when it arrives with that UID, if it does before the
    /// watch of mirrors has listed; after that, a mirror not in the cache is none of the
    /// operator's.
    pub fn record_unconfirmed_service(&self, namespace: &str, name: &str, uid: &str) {
        let mut state = self.lock();
        let known = state
            .entries
            .get(namespace)
            .and_then(|names| names.get(name))
            .map(|entry| entry.uid == uid);
        match known {
            Some(true) => state.mark(namespace, name, Some(uid)),
            Some(false) => {}
            None if *self.pending.borrow() != 0 => {
                state.distrust_on_arrival.insert((
                    namespace.to_owned(),
                    name.to_owned(),
                    uid.to_owned(),
                ));
            }
            None => {}
        }
    }

    /// Records that someone else deleted a Service or EndpointSlice controlled by the mirror
    /// `namespace/name` whose UID is `uid`: that mirror is written again at its next sync. A write
    /// of a mirror of that name in flight (a create whose watch event has not come, say) keeps the
    /// mark when it records its response, if the mirror it wrote has that UID. Says whether the
    /// cache holds that mirror.
    pub fn record_gone(&self, namespace: &str, name: &str, uid: &str) -> bool {
        let mut state = self.lock();
        if !state.distrust_on_arrival.is_empty() {
            state.distrust_on_arrival.remove(&(
                namespace.to_owned(),
                name.to_owned(),
                uid.to_owned(),
            ));
        }
        state.mark(namespace, name, Some(uid));
        state
            .entries
            .get(namespace)
            .and_then(|names| names.get(name))
            .is_some_and(|entry| entry.uid == uid)
    }

    /// After a complete listing of `view` that started at `started` (this process's monotonic
    /// clock) and listed the mirrors named in `listed`: the view's mirrors (by its view label and its
    /// UID as controlling owner) that it lacked, each with what this process observed of its
    /// absence, and how many mirrors the view had before its instances went missing. A mirror lacked
    /// for the first time is remembered as missing since `started`; one listed forgets that it was
    /// missing.
    ///
    /// The count is what the mass-removal guard weighs the removals against: the mirrors lacked,
    /// and those listed that this process knew before the first of these listings that lacked one
    /// started. A mirror created by that listing or a later one (a new instance) does not count, so
    /// a listing that lacks every mirror the view had, however many new instances it lists instead
    /// (another account's key, an answer of the wrong account), is still one that lacks them all.
    pub fn record_listing(
        &self,
        view: &GpuInstanceView,
        listed: &HashSet<String>,
        started: Instant,
    ) -> (Vec<Unlisted>, usize) {
        let namespace = view.meta().namespace.as_deref().unwrap_or_default();
        let label = mirror::kubernetes_label_value(view.meta().name.as_deref().unwrap_or_default());
        let owner = plan::owner_hash(view.meta().uid.as_deref().unwrap_or_default());
        let mut state = self.lock();
        let mut unlisted = Vec::new();
        // When the listed mirrors were first known, to count those the view had before the misses.
        let mut listed_seen = Vec::new();
        let mut first_miss = started;
        let entries = state.entries.get_mut(namespace).into_iter().flatten();
        for (name, entry) in entries {
            if *entry.view != *label || entry.digest.owner != owner {
                continue;
            }
            if listed.contains(name) {
                entry.missing_since = None;
                listed_seen.push(entry.first_seen);
                continue;
            }
            let since = *entry.missing_since.get_or_insert(started);
            first_miss = first_miss.min(since);
            unlisted.push(Unlisted {
                name: name.clone(),
                marked: entry.absent_since.is_some(),
                missing_for: (since < started).then(|| started.saturating_duration_since(since)),
            });
        }
        let before = listed_seen
            .into_iter()
            .filter(|seen| *seen < first_miss)
            .count();
        let mirrors = if unlisted.is_empty() {
            before
        } else {
            unlisted.len() + before
        };
        (unlisted, mirrors)
    }

    /// Records that a listing, complete or not, listed the mirrors named in `listed` in `namespace`:
    /// their instances exist, so any absence this process saw before is forgotten.
    pub fn record_listed(&self, namespace: &str, listed: &HashSet<String>) {
        let mut state = self.lock();
        let Some(entries) = state.entries.get_mut(namespace) else {
            return;
        };
        for name in listed {
            if let Some(entry) = entries.get_mut(name) {
                entry.missing_since = None;
            }
        }
    }

    /// Mirrors in the cache.
    pub fn mirror_count(&self) -> usize {
        self.lock().entries.values().map(HashMap::len).sum()
    }

    /// A ticket for a write about to start: see [`WriteTicket`].
    pub fn begin_write(&self) -> WriteTicket<'_> {
        let mut state = self.lock();
        state.writes_in_flight += 1;
        WriteTicket {
            cache: self,
            started: state.epoch,
        }
    }

    /// Records the object an operator write returned (its metadata): its resourceVersion is now the
    /// operator's, and it matches the record with `source` hash, whose Service plan counted `services`.
    /// The write held `ticket` since before it started: a mark set since, or a watch event newer
    /// than this response, leaves the mirror untrusted.
    pub fn record_write(
        &self,
        object: &MirrorMeta,
        source: Option<u64>,
        services: ServiceTally,
        ticket: &WriteTicket<'_>,
    ) {
        let Some(mut entry) = self.entry_of(&object.metadata) else {
            return;
        };
        entry.written = Some(entry.resource_version);
        entry.source = source;
        entry.services = services;
        let key = self.key_of(&object.metadata);
        let mut state = self.lock();
        let marked = state
            .marks
            .get(&(key.0.to_string(), key.1.clone()))
            .is_some_and(|(epoch, uid)| {
                *epoch > ticket.started && uid.as_ref().is_none_or(|uid| *uid == entry.uid)
            });
        let known = state
            .entries
            .get(&key.0)
            .and_then(|names| names.get(&key.1))
            .filter(|known| known.uid == entry.uid);
        // What this process saw of its instance's absence outlives its writes (the mark, say), and
        // the listing that planned this write confirmed the instance already.
        entry.missing_since = known.and_then(|known| known.missing_since);
        if let Some(known) = known {
            entry.confirmed = known.confirmed;
            entry.first_seen = known.first_seen;
        }
        if let Some(known) = known.filter(|known| {
            known
                .revision
                .zip(entry.revision)
                .is_some_and(|(k, w)| k > w)
        }) {
            // The watch already reported a later version, someone else's: keep what it said,
            // not trusted against this older response.
            let written = entry.written;
            entry = known.clone();
            entry.written = written;
        }
        if marked {
            entry.write_failed = true;
            entry.source = None;
        }
        insert(&mut state.entries, key, entry);
    }

    /// Records that mirror `name` was found to match the record with `source` hash, whose Service
    /// plan counted `services`.
    /// The listing that saw the record at `listed_at` confirms it.
    pub fn record_source(
        &self,
        namespace: &str,
        name: &str,
        (source, listed_at): (u64, Instant),
        services: ServiceTally,
    ) {
        if let Some(entry) = self
            .lock()
            .entries
            .get_mut(namespace)
            .and_then(|names| names.get_mut(name))
        {
            entry.source = Some(source);
            entry.services = services;
            entry.confirm(listed_at);
        }
    }

    /// Records that a write of mirror `name` failed part-way: it is written again at the next sync,
    /// whatever its metadata says.
    pub fn record_failed_write(&self, namespace: &str, name: &str) {
        self.lock().mark(namespace, name, None);
    }

    /// Records that a write of mirror `name` starts: until it records its outcome, the mirror is
    /// written again by the next sync, whatever its metadata says (a write abandoned half-way
    /// records nothing). Unlike [`MirrorCache::record_failed_write`] it leaves no mark for the
    /// write itself to respect.
    pub fn record_write_started(&self, namespace: &str, name: &str) {
        if let Some(entry) = self
            .lock()
            .entries
            .get_mut(namespace)
            .and_then(|names| names.get_mut(name))
        {
            entry.distrust();
        }
    }

    /// Records that the operator deleted mirror `name`, the object with `uid`, or found it gone: a
    /// GpuInstance of another UID that the watch already reports under the name (created since, by
    /// anyone) stays known, so that the next listing does not take it for a free name.
    pub fn record_delete(&self, namespace: &str, name: &str, uid: &str) {
        let mut state = self.lock();
        let known = state
            .entries
            .get(namespace)
            .and_then(|names| names.get(name));
        if known.is_some_and(|entry| entry.uid != uid) {
            return;
        }
        let removed = remove(&mut state.entries, namespace, name);
        release_names(&mut state.names, removed);
    }

    /// Applies a watch event reporting `object`, as the watch would.
    #[cfg(test)]
    pub(super) fn apply_for_test(&self, object: MirrorMeta) {
        self.apply(None, watcher::Event::Apply(object));
    }

    /// Applies one watch event of `scope`; true when it completed that scope's first list.
    fn apply(&self, scope: Option<Arc<str>>, event: watcher::Event<MirrorMeta>) -> bool {
        match event {
            watcher::Event::Apply(object) => {
                if let Some(entry) = self.entry_of(&object.metadata) {
                    let key = self.key_of(&object.metadata);
                    let mut state = self.lock();
                    let known = state
                        .entries
                        .get(&key.0)
                        .and_then(|names| names.get(&key.1));
                    let entry = carry_memory(known, entry);
                    state.arrive(key, entry);
                }
                false
            }
            watcher::Event::Delete(object) => {
                let key = self.key_of(&object.metadata);
                let mut state = self.lock();
                let removed = remove(&mut state.entries, &key.0, &key.1);
                drop(key);
                release_names(&mut state.names, removed);
                false
            }
            watcher::Event::Init => {
                self.lock().relisting.insert(scope, HashMap::default());
                false
            }
            watcher::Event::InitApply(object) => {
                if let Some(entry) = self.entry_of(&object.metadata) {
                    let key = self.key_of(&object.metadata);
                    self.lock()
                        .relisting
                        .entry(scope)
                        .or_default()
                        .insert(key, entry);
                }
                false
            }
            watcher::Event::InitDone => {
                let mut state = self.lock();
                let listed = state.relisting.remove(&scope).unwrap_or_default();
                // Entries of other scopes stay; this scope's are replaced by what it listed.
                let previous: Entries = match &scope {
                    Some(ns) => state.entries.remove_entry(ns).into_iter().collect(),
                    None => std::mem::take(&mut state.entries),
                };
                for (key, entry) in listed {
                    let known = previous.get(&key.0).and_then(|names| names.get(&key.1));
                    let entry = carry_memory(known, entry);
                    state.arrive(key, entry);
                }
                drop(previous);
                state.release_unused_names();
                drop(state);
                let mut completed = false;
                self.pending.send_if_modified(|pending| {
                    if *pending > 0 && *pending != usize::MAX {
                        *pending -= 1;
                        completed = true;
                    }
                    completed
                });
                if completed && *self.pending.borrow() == 0 {
                    // Every mirror there is has arrived: what is still waiting is none of ours.
                    self.lock().distrust_on_arrival = HashSet::default();
                }
                completed
            }
        }
    }

    /// The entry for an object's metadata, or `None` when it has no name or UID.
    fn entry_of(&self, meta: &ObjectMeta) -> Option<Entry> {
        let uid = meta.uid.clone()?;
        meta.name.as_ref()?;
        let labels = meta.labels.clone().unwrap_or_default();
        let annotations = meta.annotations.as_ref();
        let view = labels.get(mirror::VIEW_LABEL).map_or("", String::as_str);
        let status = labels.get(mirror::STATUS_LABEL).map_or("", String::as_str);
        let expiring_soon = labels
            .get(mirror::EXPIRING_SOON_LABEL)
            .and_then(|v| mirror::parse_expiring_soon(v))
            .and_then(NonZeroI64::new);
        let digest = Digest::of_metadata(meta);
        Some(Entry {
            uid,
            view: self.intern(view),
            resource_version: self
                .hasher
                .hash_one(meta.resource_version.as_deref().unwrap_or_default()),
            revision: meta
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok()),
            digest,
            absent_since: annotations
                .and_then(|a| a.get(mirror::ABSENT_SINCE_ANNOTATION))
                .and_then(|t| t.parse().ok()),
            missing_since: None,
            first_seen: Instant::now(),
            written: None,
            write_failed: false,
            source: None,
            services: ServiceTally::default(),
            status: self.intern(status),
            expiring_soon,
            confirmed: Instant::now(),
            turned: false,
        })
    }

    fn key_of(&self, meta: &ObjectMeta) -> Key {
        (
            self.intern(meta.namespace.as_deref().unwrap_or_default()),
            meta.name.clone().unwrap_or_default(),
        )
    }

    fn intern(&self, text: &str) -> Arc<str> {
        let mut state = self.lock();
        if let Some(interned) = state.names.get(text) {
            return interned.clone();
        }
        if state.names.len() >= state.sweep_at {
            // Amortised: the set at most doubles between sweeps of names whose entries went
            // (replaced by a write with another status, say).
            state.release_unused_names();
        }
        let interned: Arc<str> = Arc::from(text);
        state.names.insert(interned.clone());
        interned
    }

    /// Interned names held.
    #[cfg(test)]
    fn interned_names(&self) -> usize {
        self.lock().names.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn insert(entries: &mut Entries, (namespace, name): Key, entry: Entry) {
    entries.entry(namespace).or_default().insert(name, entry);
}

/// Removes entry `namespace/name`; returns its interned names (its namespace's only when it was
/// the namespace's last entry).
fn remove(entries: &mut Entries, namespace: &str, name: &str) -> Vec<Arc<str>> {
    let Some(names) = entries.get_mut(namespace) else {
        return Vec::new();
    };
    let Some(entry) = names.remove(name) else {
        return Vec::new();
    };
    let mut released = vec![entry.view, entry.status];
    if names.is_empty() {
        released.extend(
            entries
                .remove_entry(namespace)
                .map(|(namespace, _)| namespace),
        );
    }
    released
}

/// Releases each of `removed` that nothing but the set of interned `names` holds any more.
fn release_names(names: &mut HashSet<Arc<str>>, removed: Vec<Arc<str>>) {
    for name in removed {
        // Two references: the set's and this one.
        if Arc::strong_count(&name) == 2 {
            names.remove(&*name);
        }
    }
}

/// `observed` with what this process remembers of the same object (same UID) from `known`: a write
/// of its own is recognised, and a failed write stays failed until the next successful one.
fn carry_memory(known: Option<&Entry>, mut observed: Entry) -> Entry {
    if let Some(known) = known.filter(|k| k.uid == observed.uid) {
        observed.written = known.written;
        observed.write_failed = known.write_failed;
        observed.source = known.source;
        observed.services = known.services;
        observed.missing_since = known.missing_since;
        observed.first_seen = known.first_seen;
        observed.confirmed = known.confirmed;
        observed.turned = known.turned;
    }
    observed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(name: &str, rv: &str, view: &str, fingerprint: &str) -> MirrorMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ml".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some(rv.into()),
            labels: Some(BTreeMap::from([(mirror::VIEW_LABEL.into(), view.into())])),
            annotations: Some(BTreeMap::from([(
                mirror::FINGERPRINT_ANNOTATION.into(),
                fingerprint.into(),
            )])),
            ..ObjectMeta::default()
        }
        .into()
    }

    #[test]
    fn a_first_list_makes_the_cache_ready_and_a_relist_replaces_it() {
        let cache = MirrorCache::default();
        cache.pending.send_replace(1);
        let scope = Some(Arc::from("ml"));
        cache.apply(scope.clone(), watcher::Event::Init);
        cache.apply(
            scope.clone(),
            watcher::Event::InitApply(meta("a", "1", "v", "00000000000000aa")),
        );
        assert!(
            cache.observed("ml", "a").is_none(),
            "not before the list is done"
        );
        assert!(cache.apply(scope.clone(), watcher::Event::InitDone));
        let a = cache.observed("ml", "a").expect("listed");
        assert_eq!(a.digest.fingerprint, 0xaa);
        assert!(a.trusted);

        // A relist that no longer has `a` (deleted while the watch was down) forgets it.
        cache.apply(scope.clone(), watcher::Event::Init);
        cache.apply(
            scope.clone(),
            watcher::Event::InitApply(meta("b", "2", "v", "00000000000000bb")),
        );
        assert!(
            !cache.apply(scope, watcher::Event::InitDone),
            "only the first list counts"
        );
        assert!(cache.observed("ml", "a").is_none());
        assert!(cache.observed("ml", "b").is_some());
    }

    #[test]
    fn a_write_by_anyone_else_makes_a_mirror_untrusted_until_written_again() {
        let cache = MirrorCache::default();
        let ours = meta("a", "10", "v", "00000000000000aa");
        cache.apply(None, watcher::Event::Apply(ours.clone()));
        cache.record_write(&ours, None, ServiceTally::default(), &cache.begin_write());
        assert!(cache.observed("ml", "a").unwrap().trusted);

        // Someone edits its status: the watch reports a new resourceVersion.
        cache.apply(
            None,
            watcher::Event::Apply(meta("a", "11", "v", "00000000000000aa")),
        );
        assert!(!cache.observed("ml", "a").unwrap().trusted);

        // The operator writes it again.
        cache.record_write(
            &meta("a", "12", "v", "00000000000000aa"),
            None,
            ServiceTally::default(),
            &cache.begin_write(),
        );
        cache.apply(
            None,
            watcher::Event::Apply(meta("a", "12", "v", "00000000000000aa")),
        );
        assert!(cache.observed("ml", "a").unwrap().trusted);
    }

    #[test]
    fn a_mark_set_while_a_write_is_in_flight_outlives_the_writes_record() {
        let cache = MirrorCache::default();
        let first = meta("a", "10", "v", "00000000000000aa");
        cache.apply(None, watcher::Event::Apply(first.clone()));
        cache.record_write(
            &first,
            Some(1),
            ServiceTally::default(),
            &cache.begin_write(),
        );
        assert!(cache.observed("ml", "a").unwrap().trusted);

        // A write starts; meanwhile the mirror's Service is deleted by someone else.
        let ticket = cache.begin_write();
        cache.record_failed_write("ml", "a");
        cache.record_write(
            &meta("a", "11", "v", "00000000000000bb"),
            Some(2),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        let a = cache.observed("ml", "a").unwrap();
        assert!(!a.trusted, "the mark set during the write stays");
        assert_eq!(a.source, None);

        // A mark from before a write started is what that write repairs.
        let ticket = cache.begin_write();
        cache.record_write(
            &meta("a", "12", "v", "00000000000000bb"),
            Some(2),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        assert!(cache.observed("ml", "a").unwrap().trusted);
    }

    #[test]
    fn a_mark_on_a_mirror_being_created_outlives_the_creates_record() {
        let cache = MirrorCache::default();
        let ticket = cache.begin_write();
        // Not in the cache yet: the watch has not reported the create.
        cache.record_failed_write("ml", "a");
        cache.record_write(
            &meta("a", "5", "v", "00000000000000aa"),
            Some(1),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        assert!(!cache.observed("ml", "a").unwrap().trusted);
        assert!(
            cache.lock().marks.is_empty(),
            "no marks are kept once no write is in flight"
        );
    }

    #[test]
    fn someone_elses_write_reported_before_the_operators_response_keeps_the_mirror_untrusted() {
        let cache = MirrorCache::default();
        let first = meta("a", "10", "v", "00000000000000aa");
        cache.apply(None, watcher::Event::Apply(first.clone()));
        cache.record_write(&first, None, ServiceTally::default(), &cache.begin_write());

        // The operator's write returns version 11; before it is recorded, the watch reports
        // version 12: someone else's edit right after it.
        let ticket = cache.begin_write();
        cache.apply(
            None,
            watcher::Event::Apply(meta("a", "11", "v", "00000000000000bb")),
        );
        cache.apply(
            None,
            watcher::Event::Apply(meta("a", "12", "v", "00000000000000cc")),
        );
        cache.record_write(
            &meta("a", "11", "v", "00000000000000bb"),
            None,
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        let a = cache.observed("ml", "a").unwrap();
        assert!(!a.trusted);
        assert_eq!(a.digest.fingerprint, 0xcc, "what the watch last reported");
    }

    #[test]
    fn a_failed_write_is_remembered_through_watch_events() {
        let cache = MirrorCache::default();
        cache.apply(
            None,
            watcher::Event::Apply(meta("a", "1", "v", "00000000000000aa")),
        );
        cache.record_failed_write("ml", "a");
        cache.apply(
            None,
            watcher::Event::Apply(meta("a", "2", "v", "00000000000000aa")),
        );
        assert!(!cache.observed("ml", "a").unwrap().trusted);
    }

    #[test]
    fn the_remote_status_and_expiry_warning_are_known_from_labels() {
        let cache = MirrorCache::default();
        let mut labelled = meta("a", "1", "v", "00000000000000aa");
        let labels = labelled.metadata.labels.get_or_insert_default();
        labels.insert(mirror::STATUS_LABEL.into(), "running".into());
        labels.insert(mirror::EXPIRING_SOON_LABEL.into(), "1785780950".into());
        cache.apply(None, watcher::Event::Apply(labelled));
        let a = cache.observed("ml", "a").unwrap();
        assert_eq!((&*a.status, a.expiring_soon), ("running", Some(1785780950)));

        // The operator's own write is known before the watch reports it.
        let mut written = meta("a", "2", "v", "00000000000000aa");
        written
            .metadata
            .labels
            .get_or_insert_default()
            .insert(mirror::STATUS_LABEL.into(), "exited".into());
        cache.record_write(
            &written,
            None,
            ServiceTally::default(),
            &cache.begin_write(),
        );
        let a = cache.observed("ml", "a").unwrap();
        assert_eq!((&*a.status, a.expiring_soon), ("exited", None));
    }

    #[test]
    fn a_delete_refused_for_another_object_under_the_name_keeps_that_object_known() {
        let cache = MirrorCache::default();
        // The watch already reports the object created under the name since the delete was
        // planned against the old one.
        let mut replacement = meta("m", "9", "v", "00000000000000aa");
        replacement.metadata.uid = Some("uid-replacement".into());
        cache.apply_for_test(replacement);
        cache.record_delete("ml", "m", "uid-m");
        let known = cache.observed("ml", "m").expect("still known");
        assert_eq!(known.uid, "uid-replacement");
        // The object the delete named goes.
        cache.record_delete("ml", "m", "uid-replacement");
        assert!(cache.observed("ml", "m").is_none());
    }

    #[test]
    fn interned_names_are_released_with_the_last_mirror_that_used_them() {
        let cache = MirrorCache::default();
        let object = |namespace: &str, view: &str, status: &str| {
            let mut object = meta("m", "1", view, "00000000000000aa");
            object.metadata.namespace = Some(namespace.into());
            object
                .metadata
                .labels
                .get_or_insert_default()
                .insert(mirror::STATUS_LABEL.into(), status.into());
            object
        };
        let kept = object("kept", "v", "running");
        cache.apply(None, watcher::Event::Apply(kept.clone()));
        let baseline = cache.interned_names();
        assert_eq!(baseline, 3, "namespace, view and status");

        // Views, namespaces and statuses come and go, by watch events and by the operator's
        // own deletes: the names go with them.
        for i in 0..2_000 {
            let (namespace, view) = (format!("ns-{i}"), format!("view-{i}"));
            let transient = object(&namespace, &view, &format!("status-{i}"));
            cache.apply(None, watcher::Event::Apply(transient.clone()));
            assert_eq!(cache.interned_names(), baseline + 3);
            if i % 2 == 0 {
                cache.apply(None, watcher::Event::Delete(transient));
            } else {
                cache.record_delete(&namespace, "m", "uid-m");
            }
            assert_eq!(cache.interned_names(), baseline, "after {i}");
        }

        // A mirror whose status keeps changing does not pile up statuses either.
        for i in 0..2_000 {
            cache.record_write(
                &object("kept", "v", &format!("s{i}")),
                None,
                ServiceTally::default(),
                &cache.begin_write(),
            );
        }
        assert!(
            cache.interned_names() <= MIN_NAMES_SWEPT,
            "{}",
            cache.interned_names()
        );

        // Names still in use are never released.
        assert_eq!(&*cache.observed("kept", "m").expect("kept").status, "s1999");
        cache.apply(None, watcher::Event::Delete(kept));
        assert_eq!(cache.mirror_count(), 0);
    }

    /// A view `v` of namespace `ml`.
    fn view_v() -> GpuInstanceView {
        let mut view = GpuInstanceView::new(
            "v",
            serde_json::from_value(serde_json::json!({
                "credentials": { "secretRef": { "name": "ppio" } }
            }))
            .unwrap(),
        );
        view.metadata.namespace = Some("ml".into());
        view.metadata.uid = Some("uid-of-v".into());
        view
    }

    /// Mirror `name` of [`view_v`], at resourceVersion `rv`.
    fn mirror_of_v(name: &str, rv: &str) -> MirrorMeta {
        let mut object = meta(name, rv, "v", "00000000000000aa");
        object.metadata.owner_references = plan::owner_reference(&view_v()).map(|r| vec![r]);
        object
    }

    #[test]
    fn removals_are_timed_by_this_process_alone_whatever_absent_since_says() {
        use ppio_gpu_core::sync::removals::plan_removals;
        let year = jiff::SignedDuration::from_hours(365 * 24);
        let interval = Duration::from_secs(60);
        for marked_at in [Timestamp::now() - year, Timestamp::now() + year] {
            // The mirror was marked absent by another replica, whose wall clock said `marked_at`.
            let cache = MirrorCache::default();
            let mut marked = mirror_of_v("gone", "1");
            marked.metadata.annotations.get_or_insert_default().insert(
                mirror::ABSENT_SINCE_ANNOTATION.into(),
                marked_at.to_string(),
            );
            cache.apply(None, watcher::Event::Apply(marked));
            cache.apply(None, watcher::Event::Apply(mirror_of_v("kept", "1")));
            let listed: HashSet<String> = ["kept".to_owned()].into_iter().collect();
            let start = Instant::now();
            let plan = |now: Instant| {
                let (unlisted, mirrors) = cache.record_listing(&view_v(), &listed, now);
                assert_eq!(mirrors, 2);
                plan_removals(&view_v(), unlisted, mirrors, Timestamp::now())
            };

            let first = plan(start);
            assert!(first.deletes.is_empty(), "{marked_at}: {first:?}");
            assert!(first.mark_absent.is_empty(), "the mark stays as written");
            // A write of the mirror (or a watch event) keeps what this process saw.
            let ticket = cache.begin_write();
            cache.record_write(
                &mirror_of_v("gone", "2"),
                None,
                ServiceTally::default(),
                &ticket,
            );
            drop(ticket);
            cache.apply(None, watcher::Event::Apply(mirror_of_v("gone", "3")));
            let early = plan(start + interval - Duration::from_millis(1));
            assert!(early.deletes.is_empty(), "{marked_at}: {early:?}");
            let due = plan(start + interval);
            assert_eq!(due.deletes, ["gone"], "{marked_at}");
        }
    }

    #[test]
    fn a_listing_that_lists_a_mirror_again_starts_its_count_over() {
        use ppio_gpu_core::sync::removals::plan_removals;
        let cache = MirrorCache::default();
        cache.apply(None, watcher::Event::Apply(mirror_of_v("m", "1")));
        cache.apply(None, watcher::Event::Apply(mirror_of_v("n", "1")));
        let none = HashSet::default();
        let only_n: HashSet<String> = ["n".to_owned()].into_iter().collect();
        let with_m: HashSet<String> = ["m".to_owned()].into_iter().collect();
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let plan = |now: Instant| {
            let (unlisted, mirrors) = cache.record_listing(&view_v(), &only_n, now);
            plan_removals(&view_v(), unlisted, mirrors, Timestamp::now())
        };
        assert_eq!(plan(start).mark_absent, ["m"]);
        // A complete listing lists it again; then one lacks it a minute after the first miss.
        cache.record_listing(&view_v(), &with_m, start + minute / 2);
        assert!(plan(start + minute).deletes.is_empty());
        assert_eq!(plan(start + 2 * minute).deletes, ["m"]);

        // A listing that failed part-way but listed it does the same.
        let cache = MirrorCache::default();
        cache.apply(None, watcher::Event::Apply(mirror_of_v("m", "1")));
        let (unlisted, _) = cache.record_listing(&view_v(), &none, start);
        assert_eq!(unlisted[0].missing_for, None);
        cache.record_listed("ml", &with_m);
        let (unlisted, _) = cache.record_listing(&view_v(), &none, start + minute);
        assert_eq!(unlisted[0].missing_for, None, "seen missing afresh");
    }

    /// A mirror of [`view`] showing a running instance.
    fn running(name: &str, rv: &str) -> MirrorMeta {
        let mut object = meta(name, rv, "team-a", "00000000000000aa");
        object
            .metadata
            .labels
            .get_or_insert_default()
            .insert(mirror::STATUS_LABEL.into(), mirror::RUNNING.into());
        object.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "gpu.ppio.io/v1alpha1".into(),
                kind: "GpuInstanceView".into(),
                name: "team-a".into(),
                uid: "0000-view-uid".into(),
                controller: Some(true),
                block_owner_deletion: None,
            },
        ]);
        object
    }

    fn view() -> GpuInstanceView {
        ppio_gpu_core::sync::fixtures::view(true)
    }

    #[test]
    fn a_listing_confirms_a_mirror_and_a_turned_one_is_written_again() {
        let cache = MirrorCache::default();
        let window = Duration::from_secs(30);
        cache.apply(None, watcher::Event::Apply(running("a", "1")));
        let first_seen = Instant::now();
        let later = first_seen + Duration::from_secs(100);
        let due = cache.unconfirmed(&view(), window, later, |_| false);
        assert_eq!(
            due.stale.len(),
            1,
            "first seen, never listed: due one window on"
        );

        // A listing at `later - 1s` finds it as listed and confirms it: nothing is due, and a
        // watch event keeps that.
        cache.record_source(
            "ml",
            "a",
            (7, later - Duration::from_secs(1)),
            ServiceTally::default(),
        );
        cache.apply(None, watcher::Event::Apply(running("a", "2")));
        let due = cache.unconfirmed(&view(), window, later, |_| false);
        assert!(due.stale.is_empty());
        assert_eq!(due.next, Some(Duration::from_secs(29)));

        // Turned (a Service written): never due again, and no longer trusted until rewritten.
        let ticket = cache.begin_write();
        cache.record_write(
            &running("a", "3"),
            Some(7),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        assert!(cache.unchanged_source("ml", "a", 7, later).is_some());
        cache.record_turned("ml", "a", true);
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(
            cache.unconfirmed(&view(), window, much_later, |_| false),
            Unconfirmed::default()
        );
        assert!(
            cache.unchanged_source("ml", "a", 7, much_later).is_none(),
            "the next listing writes the mirror and its Service again"
        );
        // That write makes it an ordinary mirror again, confirmed by the listing.
        let ticket = cache.begin_write();
        cache.record_write(
            &running("a", "4"),
            Some(7),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        let due = cache.unconfirmed(&view(), window, much_later + window, |_| false);
        assert_eq!(due.stale.len(), 1);
    }

    #[test]
    fn a_changed_record_confirms_its_mirror_only_once_it_is_written() {
        let cache = MirrorCache::default();
        let window = Duration::from_secs(30);
        cache.apply(None, watcher::Event::Apply(running("a", "1")));
        let start = Instant::now();
        cache.record_source("ml", "a", (7, start), ServiceTally::default());
        // Listed again and again with another record (e.g. stopped), whose write never happens
        // (a later record of the page does not decode, or the write is refused): its Service
        // still shows the record confirmed at `start`.
        for seconds in [10, 20, 30, 40] {
            let listed_at = start + Duration::from_secs(seconds);
            assert!(cache.unchanged_source("ml", "a", 8, listed_at).is_none());
        }
        let due = cache.unconfirmed(&view(), window, start + window, |_| false);
        assert_eq!(due.stale, [("a".to_owned(), start)]);

        // Written as listed at 40 s: confirmed from then on.
        cache.record_confirmed("ml", "a", start + Duration::from_secs(40));
        let due = cache.unconfirmed(&view(), window, start + Duration::from_secs(50), |_| false);
        assert!(due.stale.is_empty());
        assert_eq!(due.next, Some(Duration::from_secs(20)));
    }

    #[test]
    fn candidates_are_the_views_mirrors_by_its_uid_running_or_controlling_objects() {
        let cache = MirrorCache::default();
        let labelled = |name: &str, label: &str, value: &str| {
            let mut mirror = running(name, "1");
            mirror
                .metadata
                .labels
                .get_or_insert_default()
                .insert(label.into(), value.into());
            watcher::Event::Apply(mirror)
        };
        cache.apply(None, labelled("stopped", mirror::STATUS_LABEL, "exited"));
        // Another view's label, this view's UID as controller: the UID decides.
        cache.apply(
            None,
            labelled("relabelled", mirror::VIEW_LABEL, "someone-else"),
        );
        let late = Instant::now() + Duration::from_secs(3600);
        let window = Duration::from_secs(30);
        let names = |due: Unconfirmed| {
            let mut names: Vec<String> = due.stale.into_iter().map(|(n, _)| n).collect();
            names.sort();
            names
        };
        assert_eq!(
            names(cache.unconfirmed(&view(), window, late, |_| false)),
            ["relabelled"],
            "a stopped mirror that controls nothing has nothing to turn"
        );
        // Its labels lag its Service (written last): what it controls makes it a candidate.
        assert_eq!(
            names(cache.unconfirmed(&view(), window, late, |uid| uid == "uid-stopped")),
            ["relabelled", "stopped"]
        );
        cache.record_turned("ml", "stopped", false);
        assert_eq!(
            names(cache.unconfirmed(&view(), window, late, |_| true)),
            ["relabelled"],
            "turned once, not again"
        );
        // Another view's mirror is never a candidate.
        let mut other = view();
        other.metadata.uid = Some("another-view-uid".into());
        assert!(
            cache
                .unconfirmed(&other, window, late, |_| true)
                .stale
                .is_empty()
        );
    }

    #[test]
    fn a_service_found_turned_distrusts_only_the_mirror_of_its_owners_uid_and_never_turns_it() {
        let cache = MirrorCache::default();
        cache.apply(None, watcher::Event::Apply(running("a", "1")));
        // A Service someone made, naming the mirror as its owner with another UID.
        cache.record_unconfirmed_service("ml", "a", "forged-uid");
        assert!(cache.observed("ml", "a").unwrap().trusted);

        cache.record_unconfirmed_service("ml", "a", "uid-a");
        assert!(
            !cache.observed("ml", "a").unwrap().trusted,
            "the next listing writes it again"
        );
        // Not counted as turned: the mirror's own Service stays subject to the freshness rule.
        let due = cache.unconfirmed(&view(), Duration::ZERO, Instant::now(), |_| false);
        assert_eq!(due.stale.len(), 1, "{due:?}");
    }

    #[test]
    fn a_turned_service_seen_before_the_mirrors_are_listed_waits_for_its_mirror_until_they_are() {
        let cache = MirrorCache::default();
        cache.pending.send_replace(1);
        cache.record_unconfirmed_service("ml", "a", "uid-a");
        cache.record_unconfirmed_service("ml", "b", "forged-uid");
        cache.record_unconfirmed_service("ml", "never", "uid-never");
        // One whose Service is deleted meanwhile waits no more.
        cache.record_unconfirmed_service("ml", "deleted", "uid-deleted");
        assert!(!cache.record_gone("ml", "deleted", "uid-deleted"));
        assert_eq!(cache.lock().distrust_on_arrival.len(), 3);

        cache.apply(None, watcher::Event::Init);
        for name in ["a", "b", "deleted"] {
            cache.apply(None, watcher::Event::InitApply(running(name, "1")));
        }
        assert!(cache.apply(None, watcher::Event::InitDone));
        assert!(!cache.observed("ml", "a").unwrap().trusted);
        assert!(cache.observed("ml", "b").unwrap().trusted, "another UID");
        assert!(cache.observed("ml", "deleted").unwrap().trusted);
        assert!(
            cache.lock().distrust_on_arrival.is_empty(),
            "what did not arrive is dropped once the mirrors are listed"
        );

        // Listed: a Service whose mirror is not in the cache is none of the operator's.
        cache.record_unconfirmed_service("ml", "late", "uid-late");
        assert!(cache.lock().distrust_on_arrival.is_empty());
        cache.apply(None, watcher::Event::Apply(running("late", "1")));
        assert!(cache.observed("ml", "late").unwrap().trusted);
    }

    #[test]
    fn a_service_deleted_while_its_mirror_is_created_marks_that_mirror_only() {
        // The create's watch event has not come: the mirror is not in the cache.
        let cache = MirrorCache::default();
        let ticket = cache.begin_write();
        assert!(!cache.record_gone("ml", "a", "uid-a"));
        cache.record_write(
            &running("a", "1"),
            Some(1),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        assert!(
            !cache.observed("ml", "a").unwrap().trusted,
            "the next sync writes the Service again"
        );

        // A Service naming the mirror with another UID leaves the mirror as written.
        let cache = MirrorCache::default();
        let ticket = cache.begin_write();
        cache.record_gone("ml", "a", "forged-uid");
        cache.record_write(
            &running("a", "1"),
            Some(1),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        assert!(cache.observed("ml", "a").unwrap().trusted);
    }

    #[test]
    fn a_running_mirror_marked_absent_is_subject_to_the_freshness_rule_from_its_last_listing() {
        let cache = MirrorCache::default();
        let mut marked = running("a", "1");
        marked.metadata.annotations.get_or_insert_default().insert(
            mirror::ABSENT_SINCE_ANNOTATION.into(),
            Timestamp::now().to_string(),
        );
        cache.apply(None, watcher::Event::Apply(marked));
        let window = Duration::from_secs(30);
        let listed = Instant::now();
        assert!(
            cache.unchanged_source("ml", "a", 7, listed).is_none(),
            "marked absent: rewritten, not confirmed as it is"
        );
        cache.record_confirmed("ml", "a", listed);
        assert_eq!(
            cache
                .unconfirmed(&view(), window, listed + window / 2, |_| false)
                .next,
            Some(window / 2)
        );
        let due = cache.unconfirmed(&view(), window, listed + window, |_| false);
        assert_eq!(due.stale, [("a".to_owned(), listed)]);
    }

    #[test]
    fn deletes_by_anyone_remove_the_entry() {
        let cache = MirrorCache::default();
        let a = meta("a", "1", "v", "00000000000000aa");
        cache.apply(None, watcher::Event::Apply(a.clone()));
        cache.apply(None, watcher::Event::Delete(a));
        assert!(cache.observed("ml", "a").is_none());
        assert_eq!(cache.mirror_count(), 0);
    }
    #[test]
    fn a_listing_that_replaces_every_mirror_with_new_instances_is_held() {
        use ppio_gpu_core::sync::removals::plan_removals;
        for (old, new) in [(1usize, 1usize), (3, 1), (100, 100), (10, 1_000)] {
            let cache = MirrorCache::default();
            for i in 0..old {
                cache.apply(
                    None,
                    watcher::Event::Apply(mirror_of_v(&format!("old{i}"), "1")),
                );
            }
            // Another account's instances only: none of the view's, `new` it never had.
            let listed: HashSet<String> = (0..new).map(|i| format!("new{i}")).collect();
            let interval = view_v().spec.sync_interval();
            let start = Instant::now();
            let (unlisted, mirrors) = cache.record_listing(&view_v(), &listed, start);
            let first = plan_removals(&view_v(), unlisted, mirrors, Timestamp::now());
            assert!(first.deletes.is_empty(), "{old}/{new}: {first:?}");
            // The first listing's creates reach the cache.
            for name in &listed {
                cache.apply(None, watcher::Event::Apply(mirror_of_v(name, "1")));
            }
            let (unlisted, mirrors) = cache.record_listing(&view_v(), &listed, start + interval);
            assert_eq!(
                mirrors, old,
                "the mirrors the view had, not those it gained"
            );
            let second = plan_removals(&view_v(), unlisted, mirrors, Timestamp::now());
            assert!(
                second.deletes.is_empty(),
                "{old} old, {new} new: every mirror the view had would go at once: {second:?}"
            );
            assert_eq!(second.held.map(|h| (h.count, h.of)), Some((old, old)));
        }
    }

    #[test]
    fn a_listing_that_lacks_some_mirrors_and_lists_new_ones_removes_as_usual() {
        use ppio_gpu_core::sync::removals::plan_removals;
        let cache = MirrorCache::default();
        for i in 0..10 {
            cache.apply(
                None,
                watcher::Event::Apply(mirror_of_v(&format!("old{i}"), "1")),
            );
        }
        let mut listed: HashSet<String> = (1..10).map(|i| format!("old{i}")).collect();
        listed.insert("new".to_owned());
        let interval = view_v().spec.sync_interval();
        let start = Instant::now();
        let (unlisted, mirrors) = cache.record_listing(&view_v(), &listed, start);
        assert!(
            plan_removals(&view_v(), unlisted, mirrors, Timestamp::now())
                .deletes
                .is_empty()
        );
        cache.apply(None, watcher::Event::Apply(mirror_of_v("new", "1")));
        let (unlisted, mirrors) = cache.record_listing(&view_v(), &listed, start + interval);
        assert_eq!(mirrors, 10);
        let second = plan_removals(&view_v(), unlisted, mirrors, Timestamp::now());
        assert_eq!(second.deletes, ["old0"]);
        assert_eq!(second.held, None);
    }

    #[test]
    fn a_write_abandoned_half_way_leaves_the_mirror_to_the_next_sync() {
        let cache = MirrorCache::default();
        // Found by the watch, never written by this process: its metadata is taken at its word.
        cache.apply(None, watcher::Event::Apply(mirror_of_v("m", "1")));
        let source = 42;
        cache.record_source("ml", "m", (source, Instant::now()), ServiceTally::default());
        assert!(
            cache
                .unchanged_source("ml", "m", source, Instant::now())
                .is_some()
        );
        cache.record_write_started("ml", "m");
        // Its status is written (a new resourceVersion), then the write is dropped: nothing records.
        cache.apply(None, watcher::Event::Apply(mirror_of_v("m", "2")));
        assert!(
            cache
                .unchanged_source("ml", "m", source, Instant::now())
                .is_none(),
            "the next sync writes it again"
        );
        assert!(!cache.observed("ml", "m").unwrap().trusted);
        // A write that records its outcome makes it trusted again.
        let ticket = cache.begin_write();
        cache.record_write(
            &mirror_of_v("m", "3"),
            Some(source),
            ServiceTally::default(),
            &ticket,
        );
        drop(ticket);
        assert!(
            cache
                .unchanged_source("ml", "m", source, Instant::now())
                .is_some()
        );
    }
}
