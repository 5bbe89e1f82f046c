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

/// What a block's logs are charged, and how many KiB of the budget that holds.
const BLOCK_BYTES: usize = 10 * 1024;
fn held() -> usize {
    Budget::kib_for(BLOCK_BYTES) as usize
}

/// A block's logs stay charged to the ingest budget until the outbox drops the batch that writes
/// its cursor: until that write commits, the reorg window holds them (`WindowLogs::Writing`).
#[tokio::test]
async fn a_blocks_logs_stay_charged_until_the_batch_carrying_its_cursor_is_dropped() {
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    let logs = Budget::kib(64);
    let mut batch = with_window_row(batch_at(1));
    batch.blocks[0].in_flight = logs.charge(BLOCK_BYTES).await;
    let mut m = matcher(vec![sub("sub_a", None)], &runtime);
    let out = m.process(batch).await;
    assert_eq!(out.write.cursors.len(), 1);
    assert_eq!(
        logs.available_kib(),
        64 - held(),
        "matching is over, the write is not"
    );
    drop(out); // the outbox has written it
    assert_eq!(logs.available_kib(), 64);
}

/// Behind a straggling call the permits wait for the batch that finally releases the cursor.
#[tokio::test]
async fn a_straggler_holds_the_logs_until_the_batch_with_its_cursor_is_dropped() {
    let mut m = beside_a_spinning_plugin();
    let logs = Budget::kib(64);
    let mut batch = with_window_row(batch_at(1));
    batch.blocks[0].in_flight = logs.charge(BLOCK_BYTES).await;
    let out = m.process(batch).await;
    assert!(out.write.cursors.is_empty(), "held by the straggler");
    assert!(out.logs_in_flight.is_empty());
    drop(out);
    assert_eq!(
        logs.available_kib(),
        64 - held(),
        "the straggler still has the block's events"
    );
    let late = m.next_straggler().await.unwrap();
    assert_eq!(late.write.cursors[0].block_number, 1);
    assert_eq!(
        logs.available_kib(),
        64 - held(),
        "the cursor's write has not committed"
    );
    drop(late);
    assert_eq!(logs.available_kib(), 64);
}
