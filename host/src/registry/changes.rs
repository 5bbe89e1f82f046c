//! Snapshots from changed rows: the admin API names the subscription or endpoint it wrote, the
//! registry reads that row (a subscription's with its canary) and publishes snapshots built from
//! the previous ones. The cost of one change is a few point reads and a pass over the snapshot in
//! memory (`SubscriptionSet::with_changes`), not a read of every row: creating the 10,000th
//! subscription costs about what the 10th does.
//!
//! Concurrent callers share the work the way `reload` shares rebuilds: each adds its row to
//! `Pending` after its store write, then takes a number; whoever holds the lock applies every row
//! pending when it starts, and a caller whose number is covered returns without reading again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Registry;
use crate::store::{CanaryRow, EndpointRow, StoreError, SubscriptionRow};

/// Rows changed and not yet in a snapshot, by id.
#[derive(Default)]
pub(super) struct Pending {
    subscriptions: BTreeSet<String>,
    endpoints: BTreeSet<String>,
}

/// A stored subscription with its canary, if one runs.
type StoredSubscription = (SubscriptionRow, Option<CanaryRow>);

/// What the store holds now for the pending rows (`None`: deleted).
struct Read {
    endpoints: Vec<(String, Option<EndpointRow>)>,
    subscriptions: Vec<(String, Option<StoredSubscription>)>,
}

impl Registry {
    /// Publishes snapshots that show subscription `id` as the store holds it now — created,
    /// changed, paused, deleted, its canary started, promoted or discarded — reading only that
    /// row and its canary. When it returns, the snapshot includes every write the caller made
    /// before calling.
    pub async fn reload_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.reload_rows(|pending| pending.subscriptions.insert(id.to_string()))
            .await
    }

    /// The same for endpoint `id` (created, changed, secret rotated, disabled, deleted).
    pub async fn reload_endpoint(&self, id: &str) -> Result<(), StoreError> {
        self.reload_rows(|pending| pending.endpoints.insert(id.to_string()))
            .await
    }

    async fn reload_rows(&self, ask: impl FnOnce(&mut Pending) -> bool) -> Result<(), StoreError> {
        ask(&mut self.lock_pending());
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.covered.lock().await;
        if covered.rows >= ticket {
            return Ok(());
        }
        // Every caller numbered up to `generation` added its row before taking its number, so
        // the rows taken after reading it include theirs.
        let generation = self.requested.load(Ordering::SeqCst);
        let taken = self.take_pending();
        if let Err(error) = self.apply(&taken).await {
            // Another caller's row may be among them: it stays pending for whoever goes next.
            self.restore_pending(taken);
            return Err(error);
        }
        self.updates.fetch_add(1, Ordering::Relaxed);
        covered.rows = generation;
        Ok(())
    }

    /// Reads every pending row first and publishes after, so a failed read changes nothing.
    async fn apply(&self, pending: &Pending) -> Result<(), StoreError> {
        let read = self.read(pending).await?;
        if !read.endpoints.is_empty() {
            let mut endpoints = (**self.endpoints.borrow()).clone();
            for (id, row) in read.endpoints {
                match row {
                    Some(row) => endpoints.insert(id, Arc::new(row)),
                    None => endpoints.remove(&id),
                };
            }
            self.endpoints.send_replace(Arc::new(endpoints));
        }
        if !read.subscriptions.is_empty() {
            let previous = self.subscriptions.borrow().clone();
            let mut changed = HashMap::with_capacity(read.subscriptions.len());
            for (id, stored) in read.subscriptions {
                let live = match stored {
                    Some((row, canary)) => self.live(row, canary, &previous).await,
                    None => None,
                };
                changed.insert(id, live);
            }
            self.subscriptions
                .send_replace(Arc::new(previous.with_changes(changed)));
        }
        Ok(())
    }

    async fn read(&self, pending: &Pending) -> Result<Read, StoreError> {
        let mut read = Read {
            endpoints: Vec::with_capacity(pending.endpoints.len()),
            subscriptions: Vec::with_capacity(pending.subscriptions.len()),
        };
        for id in &pending.endpoints {
            let row = self.store.get_endpoint(id).await?;
            read.endpoints.push((id.clone(), row));
        }
        for id in &pending.subscriptions {
            let stored = match self.store.get_subscription(id).await? {
                Some(row) => Some((row, self.store.get_canary(id).await?)),
                None => None,
            };
            read.subscriptions.push((id.clone(), stored));
        }
        Ok(read)
    }

    pub(super) fn take_pending(&self) -> Pending {
        std::mem::take(&mut *self.lock_pending())
    }

    pub(super) fn restore_pending(&self, taken: Pending) {
        let mut pending = self.lock_pending();
        pending.subscriptions.extend(taken.subscriptions);
        pending.endpoints.extend(taken.endpoints);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Held only to add or take ids, never across an await: a poisoned lock's data is whole.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
