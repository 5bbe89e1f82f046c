//! Plugin canaries in the store (issue 12): one per subscription, tallies added by id, at most
//! 100 examples, promote swaps the plugin in one transaction, delete and subscription delete
//! remove it. On both stores.

use super::*;

async fn setup(store: &Store) {
    store
        .insert_endpoint(&EndpointRow {
            id: "ep_1".into(),
            url: "http://127.0.0.1:9/hook".into(),
            description: String::new(),
            secret: "whsec_x".into(),
            previous_secret: None,
            previous_secret_expires_at: None,
            status: EndpointStatus::Enabled,
            disabled_reason: None,
            created_at: 1,
            updated_at: 1,
        })
        .await
        .unwrap();
    for id in ["plug_old", "plug_new"] {
        let row = PluginRow {
            id: id.into(),
            name: id.into(),
            size: 1,
            created_at: 1,
        };
        store.insert_plugin(&row, b"\0asm").await.unwrap();
    }
    store
        .insert_subscription(&SubscriptionRow {
            id: "sub_1".into(),
            endpoint_id: "ep_1".into(),
            chain_id: 1,
            addresses: None,
            topics: None,
            plugin_id: Some("plug_old".into()),
            plugin_config: Some(r#"{"min_value":"100"}"#.into()),
            confirmations: 0,
            status: SubscriptionStatus::Quarantined,
            last_error: Some("trap".into()),
            created_at: 1,
            updated_at: 1,
            mode: Default::default(),
        })
        .await
        .unwrap();
}

fn canary(id: &str) -> CanaryRow {
    CanaryRow {
        id: id.into(),
        subscription_id: "sub_1".into(),
        plugin_id: "plug_new".into(),
        plugin_config: Some(r#"{"min_value":"50"}"#.into()),
        created_at: 5,
        updated_at: 5,
        ..CanaryRow::default()
    }
}

fn example(n: i64) -> CanaryExample {
    CanaryExample {
        block_number: n,
        block_hash: format!("0x{n:064x}"),
        tx_hash: format!("0x{:064x}", n + 1),
        log_index: 0,
        event_type: "log".into(),
        live: r#"{"kept":false,"data":null}"#.into(),
        canary: format!(r#"{{"kept":true,"data":{{"n":{n}}}}}"#),
    }
}

#[tokio::test]
async fn one_canary_per_subscription_and_tallies_add_up() {
    each_store(async |store: Store| {
        setup(&store).await;
        assert!(store.get_canary("sub_1").await.unwrap().is_none());
        assert!(store.insert_canary(&canary("can_1")).await.unwrap());
        assert!(
            !store.insert_canary(&canary("can_2")).await.unwrap(),
            "a second canary is refused while one runs"
        );
        let tally = CanaryTally {
            events_compared: 3,
            same: 1,
            only_canary_kept: 2,
            batches_compared: 1,
            ..CanaryTally::default()
        };
        assert!(
            store
                .record_canary("can_1", &tally, &[example(2), example(1)])
                .await
                .unwrap()
        );
        let failed = CanaryTally {
            traps: 1,
            batches_skipped: 2,
            events_skipped: 7,
            last_failure: Some("trap: unreachable".into()),
            ..CanaryTally::default()
        };
        assert!(
            store
                .record_canary("can_1", &failed, &[example(2)])
                .await
                .unwrap()
        );
        // Results of a canary that is gone are not written anywhere.
        assert!(
            !store
                .record_canary("can_2", &tally, &[example(9)])
                .await
                .unwrap()
        );

        let row = store.get_canary("sub_1").await.unwrap().unwrap();
        assert_eq!(row.id, "can_1");
        assert_eq!(row.plugin_config.as_deref(), Some(r#"{"min_value":"50"}"#));
        let expected = CanaryTally {
            events_compared: 3,
            same: 1,
            only_canary_kept: 2,
            batches_compared: 1,
            traps: 1,
            batches_skipped: 2,
            events_skipped: 7,
            last_failure: Some("trap: unreachable".into()),
            ..CanaryTally::default()
        };
        assert_eq!(row.tally, expected);
        let examples = store.list_canary_examples("can_1").await.unwrap();
        assert_eq!(
            examples,
            vec![example(1), example(2)],
            "chain order, a replay not added twice"
        );
        assert_eq!(store.list_canaries().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn examples_stop_at_one_hundred() {
    each_store(async |store: Store| {
        setup(&store).await;
        store.insert_canary(&canary("can_1")).await.unwrap();
        let first: Vec<CanaryExample> = (0..60).map(example).collect();
        let second: Vec<CanaryExample> = (60..130).map(example).collect();
        let tally = CanaryTally::default();
        store.record_canary("can_1", &tally, &first).await.unwrap();
        store.record_canary("can_1", &tally, &second).await.unwrap();
        let examples = store.list_canary_examples("can_1").await.unwrap();
        assert_eq!(examples.len(), MAX_CANARY_EXAMPLES as usize);
        assert_eq!(
            examples.last().unwrap().block_number,
            99,
            "the first 100 are kept"
        );
    })
    .await;
}

#[tokio::test]
async fn promote_swaps_the_plugin_and_removes_the_canary_in_one_step() {
    each_store(async |store: Store| {
        setup(&store).await;
        assert!(store.promote_canary("sub_1").await.unwrap().is_none());
        store.insert_canary(&canary("can_1")).await.unwrap();
        store
            .record_canary("can_1", &CanaryTally::default(), &[example(1)])
            .await
            .unwrap();
        let promoted = store.promote_canary("sub_1").await.unwrap().unwrap();
        assert_eq!(promoted.id, "can_1");
        let sub = store.get_subscription("sub_1").await.unwrap().unwrap();
        assert_eq!(sub.plugin_id.as_deref(), Some("plug_new"));
        assert_eq!(sub.plugin_config.as_deref(), Some(r#"{"min_value":"50"}"#));
        assert_eq!(
            sub.status,
            SubscriptionStatus::Active,
            "a new plugin lifts a quarantine"
        );
        assert_eq!(sub.last_error, None);
        assert!(store.get_canary("sub_1").await.unwrap().is_none());
        assert!(
            store
                .list_canary_examples("can_1")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.promote_canary("sub_1").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn delete_and_subscription_delete_remove_the_canary() {
    each_store(async |store: Store| {
        setup(&store).await;
        assert!(!store.delete_canary("sub_1").await.unwrap());
        store.insert_canary(&canary("can_1")).await.unwrap();
        store
            .record_canary("can_1", &CanaryTally::default(), &[example(1)])
            .await
            .unwrap();
        assert!(store.delete_canary("sub_1").await.unwrap());
        assert!(store.get_canary("sub_1").await.unwrap().is_none());
        assert!(
            store
                .list_canary_examples("can_1")
                .await
                .unwrap()
                .is_empty()
        );
        let sub = store.get_subscription("sub_1").await.unwrap().unwrap();
        assert_eq!(
            sub.plugin_id.as_deref(),
            Some("plug_old"),
            "discarding changes nothing live"
        );

        store.insert_canary(&canary("can_2")).await.unwrap();
        assert!(store.delete_subscription("sub_1").await.unwrap());
        assert!(store.get_canary("sub_1").await.unwrap().is_none());
        assert!(store.list_canaries().await.unwrap().is_empty());
    })
    .await;
}
