//! What each view's listings read ([`ListingMemo`]: page layouts and record summaries), kept from
//! one sync of the view to the next so that what PPIO sends again is not read again; dropped when
//! the view is deleted or suspended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::runtime::reflector::ObjectRef;

use crate::api::GpuInstanceView;
use crate::ppio::ListingMemo;

/// The memo of every view this replica syncs.
#[derive(Default)]
pub(super) struct Memos(Mutex<HashMap<ObjectRef<GpuInstanceView>, Arc<ListingMemo>>>);

impl Memos {
    /// The memo of `view`, empty the first time.
    pub(super) fn of(&self, view: &ObjectRef<GpuInstanceView>) -> Arc<ListingMemo> {
        self.lock().entry(view.clone()).or_default().clone()
    }

    /// Drops the memo of `view`.
    pub(super) fn forget(&self, view: &ObjectRef<GpuInstanceView>) {
        self.lock().remove(view);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectRef<GpuInstanceView>, Arc<ListingMemo>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
