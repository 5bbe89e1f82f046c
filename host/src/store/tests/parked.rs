//! Parked events: the idempotency key set where an event is parked.

use super::*;
use crate::event::ChainLog;

/// A node's log, as parked (block hash and log index in the node's own spelling).
const LOG: &str = r#"{"address":"0xf4eced2f682ce333f96f2d8966c613ded8fc95dd","topics":[],"data":"0x","blockNumber":"0x76250","blockHash":"0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae","transactionHash":"0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8","transactionIndex":"0x0","logIndex":"0x1a","removed":false}"#;

/// The key built from the parsed log is the one earlier builds derived from the node's JSON
/// (`type:blockHash:logIndex` as the node writes them), so a batch replayed across an upgrade
/// still collapses onto the rows parked before it.
#[test]
fn the_key_from_the_parsed_log_spells_the_position_as_the_node_does() {
    let log = ChainLog::from_json(LOG).unwrap();
    let key = ParkedEvent::key("log.removed", log.block_hash, log.log_index);
    assert_eq!(
        key,
        "log.removed:0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae:0x1a"
    );
}

#[tokio::test]
async fn an_event_parked_twice_under_its_key_is_one_row_and_reads_back_whole() {
    each_store(async |store: Store| {
        let log = ChainLog::from_json(LOG).unwrap();
        let event = |key: Option<String>| ParkedEvent {
            subscription_id: "sub_p".into(),
            chain_id: 1,
            event_type: "log".into(),
            log: LOG.into(),
            error: "trap".into(),
            event_index: Some(4),
            event_key: key,
        };
        let keyed = event(Some(ParkedEvent::key("log", log.block_hash, log.log_index)));
        let write = OutboxWrite {
            parked: vec![keyed.clone(), keyed, event(None), event(None)],
            ..OutboxWrite::default()
        };
        let (_, stats) = store.write_batch(&write, 0).await.unwrap();
        assert_eq!(stats.statements, 1, "one statement for the parked events");
        store.write_batch(&write, 0).await.unwrap();
        let parked = store.list_parked("sub_p", 10).await.unwrap();
        let keys: Vec<Option<&str>> = parked
            .iter()
            .map(|p| p.event.event_key.as_deref())
            .collect();
        // The keyed event once; events without a key are never merged.
        assert_eq!(keys.iter().filter(|k| k.is_some()).count(), 1);
        assert_eq!(keys.iter().filter(|k| k.is_none()).count(), 4);
        assert_eq!(parked[0].event.event_index, Some(4));
        assert_eq!(parked[0].event.log, LOG);
        assert_eq!(store.count_parked("sub_p").await.unwrap(), 5);
    })
    .await;
}
