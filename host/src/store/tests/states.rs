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
