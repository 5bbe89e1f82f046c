//! The `seq` of a delivery row that a batch write is still inserting.
//!
//! With `[delivery] send_before_commit` the outbox hands a batch's jobs to the workers before its
//! write has committed, so a job's row has no number yet when its attempt ends. The job carries a
//! [`PendingSeq`] instead; the recorder asks it for the number before writing the outcome, and
//! drops the outcome of a row the write did not insert (an id already stored, or a chain another
//! replica now owns): there is no row under that lease to write it to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::InsertedDelivery;

/// What the write said: the seq of every delivery it inserted, by id.
type Written = Option<Arc<HashMap<String, i64>>>;

/// The answer a batch's jobs wait for (one per batch, shared by its jobs).
#[derive(Clone, Debug)]
pub struct PendingSeq(watch::Receiver<Written>);

/// The outbox's end: tells the batch's jobs what the write inserted. Dropped without
/// [`SeqPromise::written`] (the write was given up), every job hears "not written".
#[derive(Debug)]
pub struct SeqPromise(watch::Sender<Written>);

/// A promise for a batch write's seqs, and what its jobs hold.
pub fn pending_seqs() -> (SeqPromise, PendingSeq) {
    let (sender, receiver) = watch::channel(None);
    (SeqPromise(sender), PendingSeq(receiver))
}

impl SeqPromise {
    /// The write committed and inserted `inserted`.
    pub fn written(self, inserted: &[InsertedDelivery]) {
        let seqs = inserted.iter().map(|d| (d.id.clone(), d.seq)).collect();
        // No receiver left means no job is waiting: nothing to tell.
        let _ = self.0.send(Some(Arc::new(seqs)));
    }
}

impl PendingSeq {
    /// The seq of delivery `id` once its batch's write has committed; `None` when the write did
    /// not insert it, was given up, or did not answer within `patience`.
    pub async fn seq_of(&mut self, id: &str, patience: Duration) -> Option<i64> {
        let answered = tokio::time::timeout(patience, self.0.wait_for(Option::is_some)).await;
        let written = answered.ok()?.ok()?;
        written.as_ref()?.get(id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inserted(id: &str, seq: i64) -> InsertedDelivery {
        InsertedDelivery { id: id.into(), seq }
    }

    #[tokio::test]
    async fn a_job_learns_its_seq_once_the_write_has_committed() {
        let (promise, pending) = pending_seqs();
        let mut waiting = pending.clone();
        let asked =
            tokio::spawn(async move { waiting.seq_of("msg_b", Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        promise.written(&[inserted("msg_a", 7), inserted("msg_b", 8)]);
        assert_eq!(asked.await.unwrap(), Some(8));
        // Asked after the answer, the same.
        assert_eq!(
            pending.clone().seq_of("msg_a", Duration::ZERO).await,
            Some(7)
        );
    }

    #[tokio::test]
    async fn a_row_the_write_did_not_insert_has_no_seq() {
        let (promise, mut pending) = pending_seqs();
        promise.written(&[inserted("msg_a", 7)]);
        assert_eq!(
            pending.seq_of("msg_replayed", Duration::from_secs(5)).await,
            None
        );
    }

    #[tokio::test]
    async fn a_write_given_up_or_too_slow_gives_no_seq() {
        let (promise, mut pending) = pending_seqs();
        drop(promise);
        assert_eq!(pending.seq_of("msg_a", Duration::from_secs(5)).await, None);
        let (_promise, mut pending) = pending_seqs();
        assert_eq!(
            pending.seq_of("msg_a", Duration::from_millis(10)).await,
            None
        );
    }
}
