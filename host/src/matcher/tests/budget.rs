//! Matched batches are bounded in bytes until the outbox is done with them.

use std::time::Duration;

use super::*;
use crate::event::Budget;

#[tokio::test]
async fn the_matcher_waits_for_the_outbox_once_its_matched_bytes_are_spent() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    // A budget of exactly two batches' charge: a third does not fit.
    let one = matcher(vec![sub("sub_a", None)], &runtime)
        .process(batch_at(0))
        .await;
    let charge = Budget::kib_for(one.memory_bytes());
    let budget = Budget::kib(2 * charge);
    let m = matcher(vec![sub("sub_a", None)], &runtime).with_budget(budget.clone());
    let (batches_tx, batches_rx) = mpsc::channel(8);
    let (matched_tx, mut matched_rx) = mpsc::channel(8);
    let running = tokio::spawn(m.run(batches_rx, matched_tx));
    for number in 1..=3 {
        batches_tx.send(batch_at(number)).await.unwrap();
    }
    let receive = async |rx: &mut mpsc::Receiver<MatchedBatch>| {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a matched batch within 10 s")
            .unwrap()
    };
    let first = receive(&mut matched_rx).await;
    let second = receive(&mut matched_rx).await;
    assert_eq!(
        budget.available_kib(),
        0,
        "two batches hold the whole budget"
    );
    // The third is matched but waits for room: nothing arrives while both are held.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), matched_rx.recv())
            .await
            .is_err(),
        "a third batch passed a spent budget"
    );
    drop(first); // the outbox is done with it
    let third = receive(&mut matched_rx).await;
    assert_eq!(third.write.cursors[0].block_number, 3);
    drop((second, third));
    drop(batches_tx);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        budget.available_kib(),
        2 * charge as usize,
        "every permit returned"
    );
}
