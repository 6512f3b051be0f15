//! Sync slots: how many views sync at once, operator-wide (`--concurrency`). A sync gives its slot up
//! while it waits for its API key's request budget, so views whose shared key is throttled do not
//! starve the views of other keys.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The operator's sync slots.
#[derive(Clone, Debug)]
pub struct SyncSlots(Arc<Semaphore>);

impl SyncSlots {
    /// `count` slots (at least one).
    pub fn new(count: usize) -> SyncSlots {
        SyncSlots(Arc::new(Semaphore::new(count.max(1))))
    }

    /// Waits for a free slot.
    pub async fn take(&self) -> Slot {
        Slot {
            slots: self.0.clone(),
            permit: self.0.clone().acquire_owned().await.ok(),
        }
    }
}

/// A slot held by one sync; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Slot {
    /// Runs `wait` without holding the slot, then takes a slot again.
    pub async fn released_while<T>(&mut self, wait: impl Future<Output = T>) -> T {
        self.permit = None;
        let out = wait.await;
        self.permit = self.slots.clone().acquire_owned().await.ok();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_sync_waiting_for_its_budget_lets_another_sync_run() {
        let slots = SyncSlots::new(1);
        let mut waiting = slots.take().await;
        let other = async {
            let _slot = slots.take().await;
            tokio::time::Instant::now()
        };
        let started = tokio::time::Instant::now();
        let (ran_at, ()) = tokio::join!(
            other,
            waiting.released_while(tokio::time::sleep(Duration::from_secs(60)))
        );
        assert!(
            ran_at - started < Duration::from_secs(1),
            "the other sync ran at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slots_bound_the_syncs_running_at_once() {
        let slots = SyncSlots::new(2);
        let _a = slots.take().await;
        let _b = slots.take().await;
        let third = tokio::time::timeout(Duration::from_secs(5), slots.take()).await;
        assert!(third.is_err(), "a third sync waits");
    }
}
