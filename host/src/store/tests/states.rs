//! A status column holding a value this build does not know is an error, not a default.

use super::*;

#[tokio::test]
async fn an_unknown_delivery_status_in_the_database_is_an_error() {
    each_store(async |store: Store| {
        let write = OutboxWrite {
            deliveries: vec![delivery("msg_odd")],
            ..OutboxWrite::default()
        };
        store.write_batch(&write, 60_000).await.unwrap();
        let (row, _) = store.get_delivery("msg_odd").await.unwrap().unwrap();
        assert_eq!(row.status, DeliveryStatus::Pending);
        sqlx::query("UPDATE deliveries SET status = 'parked' WHERE id = $1")
            .bind("msg_odd")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.get_delivery("msg_odd").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::UnknownState(s) if s.value == "parked"),
            "{err}"
        );
        let filter = DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        };
        let listed = store.list_deliveries(&filter).await;
        assert!(matches!(listed, Err(StoreError::UnknownState(_))));
    })
    .await;
}

#[tokio::test]
async fn an_unknown_endpoint_status_in_the_database_is_an_error() {
    each_store(async |store: Store| {
        let endpoint = EndpointRow {
            id: "ep_odd".into(),
            url: "http://127.0.0.1:9/hook".into(),
            description: "d".into(),
            secret: "whsec_first".into(),
            previous_secret: None,
            previous_secret_expires_at: None,
            status: EndpointStatus::Disabled,
            disabled_reason: Some("test".into()),
            created_at: 1,
            updated_at: 1,
        };
        store.insert_endpoint(&endpoint).await.unwrap();
        let row = store.get_endpoint("ep_odd").await.unwrap().unwrap();
        assert_eq!(row.status, EndpointStatus::Disabled);
        let page = store.endpoints_page(Some(EndpointStatus::Enabled), None, 10);
        assert!(page.await.unwrap().is_empty(), "the filter binds the text");
        sqlx::query("UPDATE endpoints SET status = 'Enabled' WHERE id = $1")
            .bind("ep_odd")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.get_endpoint("ep_odd").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::UnknownState(s) if s.value == "Enabled"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_unknown_subscription_status_in_the_database_is_an_error() {
    each_store(async |store: Store| {
        sqlx::query(
            "INSERT INTO endpoints (id, url, description, secret, status, created_at, updated_at) \
             VALUES ('ep_1', 'http://127.0.0.1:9/hook', 'd', 'whsec_first', 'enabled', 1, 1)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let subscription = SubscriptionRow {
            id: "sub_odd".into(),
            endpoint_id: "ep_1".into(),
            chain_id: 1,
            addresses: None,
            topics: None,
            plugin_id: None,
            plugin_config: None,
            confirmations: 0,
            status: SubscriptionStatus::Paused,
            last_error: None,
            created_at: 1,
            updated_at: 1,
            mode: Default::default(),
        };
        store.insert_subscription(&subscription).await.unwrap();
        let row = store.get_subscription("sub_odd").await.unwrap().unwrap();
        assert_eq!(row.status, SubscriptionStatus::Paused);
        sqlx::query("UPDATE subscriptions SET status = 'frozen' WHERE id = $1")
            .bind("sub_odd")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.get_subscription("sub_odd").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::UnknownState(s) if s.value == "frozen"),
            "{err}"
        );
    })
    .await;
}
