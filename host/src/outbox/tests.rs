//! Test module: compiled only under #[cfg(test)], from its parent module.
//! `send_before_commit` against a real store (SQLite): what goes before the write, what after.

use super::*;
use crate::deliver::JobRoom;
use crate::event::Budget;
use crate::store::OutboxWrite;
use crate::store::tests::delivery;

fn batch(ids: &[&str]) -> MatchedBatch {
    let mut batch = MatchedBatch::default();
    batch.write = OutboxWrite {
        deliveries: ids.iter().map(|id| delivery(id)).collect(),
        ..OutboxWrite::default()
    };
    batch
}

async fn stored_seq(store: &Store, id: &str) -> i64 {
    store.get_delivery(id).await.unwrap().unwrap().0.seq
}

/// With room in the workers' queue every job goes before the write, and learns its row's seq
/// from it.
#[tokio::test]
async fn jobs_go_before_the_write_and_learn_their_seq_from_it() {
    let store = crate::store::tests::sqlite().await;
    let (jobs, mut receiver) = mpsc::channel(16);
    let sender = JobRoom::default().sender(jobs);
    let metrics = Metrics::new().unwrap();
    let sent = send_before_commit(
        &store,
        batch(&["msg_a", "msg_b"]),
        &sender,
        &metrics,
        60_000,
    );
    assert_eq!(sent.await, Some(false));
    for id in ["msg_a", "msg_b"] {
        let job = receiver.try_recv().unwrap();
        assert_eq!(job.id, id, "in the batch's order");
        let (row, _) = store.get_delivery(id).await.unwrap().unwrap();
        // The write was given the time the jobs' lease was counted from.
        assert_eq!(job.lease_until, row.created_at + 60_000);
        let mut pending = job.pending_seq.expect("sent before the write");
        let seq = pending.seq_of(id, Duration::from_secs(5)).await;
        assert_eq!(seq, Some(row.seq));
    }
    assert!(receiver.try_recv().is_err());
}

/// A job the queue has no room for does not wait before the write (the recorder may be waiting
/// for that write): it and every later one of the batch go after it, with their seqs.
#[tokio::test]
async fn jobs_without_room_go_after_the_write_with_their_seq() {
    let store = crate::store::tests::sqlite().await;
    let (jobs, mut receiver) = mpsc::channel(1);
    let sender = JobRoom::default().sender(jobs);
    let metrics = Metrics::new().unwrap();
    let outbox = {
        let store = store.clone();
        tokio::spawn(async move {
            let batch = batch(&["msg_a", "msg_b", "msg_c"]);
            send_before_commit(&store, batch, &sender, &metrics, 60_000).await
        })
    };
    let first = receiver.recv().await.unwrap();
    assert_eq!((first.id.as_str(), first.seq), ("msg_a", 0));
    assert!(first.pending_seq.is_some());
    for id in ["msg_b", "msg_c"] {
        let job = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.id, id, "in the batch's order");
        assert!(job.pending_seq.is_none(), "{id} waited for the write");
        assert_eq!(job.seq, stored_seq(&store, id).await);
    }
    assert_eq!(outbox.await.unwrap(), Some(false));
    let mut pending = first.pending_seq.unwrap();
    let seq = pending.seq_of("msg_a", Duration::from_secs(5)).await;
    assert_eq!(seq, Some(stored_seq(&store, "msg_a").await));
}

/// The same when the queue has places but the room for bodies in memory is spent: the job that
/// does not fit waits for the write, and for room, and each job holds its body's room until it
/// is dropped.
#[tokio::test]
async fn jobs_whose_bodies_find_no_room_go_after_the_write() {
    let store = crate::store::tests::sqlite().await;
    let (jobs, mut receiver) = mpsc::channel(16);
    let room = JobRoom {
        bodies: Budget::kib(1), // one small body
        ..JobRoom::default()
    };
    let sender = room.sender(jobs);
    let metrics = Metrics::new().unwrap();
    let outbox = {
        let store = store.clone();
        tokio::spawn(async move {
            let batch = batch(&["msg_a", "msg_b"]);
            send_before_commit(&store, batch, &sender, &metrics, 60_000).await
        })
    };
    let first = receiver.recv().await.unwrap();
    assert_eq!(first.id, "msg_a");
    assert!(first.pending_seq.is_some(), "sent before the write");
    assert_eq!(room.bodies.available_kib(), 0, "held by the first job");
    drop(first); // its attempt is over
    let second = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, "msg_b");
    assert!(second.pending_seq.is_none(), "waited for the write");
    assert_eq!(second.seq, stored_seq(&store, "msg_b").await);
    assert_eq!(outbox.await.unwrap(), Some(false));
    drop(second);
    assert_eq!(room.bodies.available_kib(), 1);
}

/// Events of one subscription batched by two: three make one batch sealed whole by the write and
/// one still filling.
fn batched(n: i64) -> crate::store::BatchEvent {
    use crate::event::EventType;
    use crate::modes::batching::Element;
    crate::store::BatchEvent {
        subscription_id: "sub_1".into(),
        endpoint_id: "ep_1".into(),
        chain_id: 31337,
        event_id: format!("msg_ev{n}"),
        event_type: "log".into(),
        block_number: n,
        element: Element::new(EventType::Log, format!("{{\"n\":{n}}}").into(), None),
        max_events: 2,
        max_wait_ms: 60_000,
        confirmations: 0,
        extra_confirmations: 0,
        ordering_key: None,
    }
}

/// A batch the write seals goes to the workers from memory after the write, in both modes, with
/// the body and seq stored for it and the lease it was written with; the poller, which has
/// nothing from this write to send, is not woken.
#[tokio::test]
async fn batches_sealed_by_the_write_go_from_memory_after_it() {
    for early in [false, true] {
        let store = crate::store::tests::sqlite().await;
        let (jobs, mut receiver) = mpsc::channel(16);
        let sender = JobRoom::default().sender(jobs);
        let metrics = Metrics::new().unwrap();
        let mut write = batch(&["msg_a"]);
        write.write.batch_events = (1..4).map(batched).collect();
        let sent = if early {
            send_before_commit(&store, write, &sender, &metrics, 60_000).await
        } else {
            send_after_commit(&store, write, &sender, &metrics, 60_000).await
        };
        assert_eq!(sent, Some(false), "nothing for the poller (early: {early})");
        assert_eq!(receiver.try_recv().unwrap().id, "msg_a");
        let sealed = receiver.try_recv().unwrap();
        let (row, body) = store.get_delivery(&sealed.id).await.unwrap().unwrap();
        assert_eq!(&*sealed.body, body);
        // Not due before its lease ends: the poller leaves it to this job.
        assert_eq!(
            (sealed.seq, sealed.lease_until),
            (row.seq, row.next_attempt_at)
        );
        assert!(sealed.lease_until > 0 && sealed.pending_seq.is_none());
        let events: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(events["events"][1]["log"]["n"], 2);
        assert!(receiver.try_recv().is_err(), "the filling batch stays");
    }
}
