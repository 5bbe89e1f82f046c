//! The delivery backlog as the operator's dashboard shows it (sampled by `crate::backlog`).

use sqlx::AssertSqlSafe;

use super::deliveries::UNFINISHED;
use super::{HELD_UNTIL_RELEASED, Store, StoreError, now_ms};

/// Deliveries not finished yet, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Pending or retrying, held ones excluded: in flight, due, or waiting for a retry.
    pub outstanding: i64,
    /// Due now and leased to no one: waiting for a worker.
    pub due: i64,
    /// `next_attempt_at` (ms) of the longest-waiting due delivery.
    pub oldest_due_at: Option<i64>,
    /// Ordering keys held back by a failing first delivery (`Store::blocked_keys`, capped).
    pub ordered_keys_blocked: i64,
}

impl Store {
    /// Counts the backlog with two reads on the `(status, next_attempt_at)` index. Not on the hot
    /// path: sampled every few seconds.
    pub async fn backlog(&self) -> Result<Backlog, StoreError> {
        let now = now_ms();
        let sql = format!(
            "SELECT COUNT(*), MIN(next_attempt_at) FROM deliveries \
             WHERE {} AND next_attempt_at <= $1 AND lease_until <= $1",
            *UNFINISHED
        );
        let (due, oldest_due_at): (i64, Option<i64>) = sqlx::query_as(AssertSqlSafe(sql))
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        let sql = format!(
            "SELECT COUNT(*) FROM deliveries WHERE {} AND next_attempt_at < $1",
            *UNFINISHED
        );
        let (outstanding,): (i64,) = sqlx::query_as(AssertSqlSafe(sql))
            .bind(HELD_UNTIL_RELEASED)
            .fetch_one(&self.pool)
            .await?;
        let blocked = self.blocked_keys(None).await?;
        Ok(Backlog {
            ordered_keys_blocked: blocked.len() as i64,
            outstanding,
            due,
            oldest_due_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewDelivery, OutboxWrite};

    fn delivery(id: &str, release_block: Option<i64>) -> NewDelivery {
        NewDelivery {
            id: id.into(),
            subscription_id: "sub_1".into(),
            endpoint_id: "ep_1".into(),
            chain_id: 31337,
            event_type: "log".into(),
            block_number: 7,
            body: "{}".into(),
            release_block,
            supersedes: Vec::new(),
            ordering_key: None,
        }
    }

    /// Leased (in flight) rows are outstanding but not due; once their lease ends they are due,
    /// the oldest first; held rows are neither. On SQLite and, when configured, PostgreSQL.
    #[tokio::test]
    async fn counts_outstanding_and_due_deliveries_and_the_oldest_due() {
        let dir = std::env::temp_dir().join(format!("pipeline-backlog-{}", rand::random::<u32>()));
        let sqlite = Store::connect(&format!("sqlite://{}/p.db", dir.display()))
            .await
            .unwrap();
        sqlite.migrate().await.unwrap();
        check(sqlite).await;
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(pg) = crate::store::tests::postgres().await {
            check(pg).await;
        }
    }

    async fn check(store: Store) {
        assert_eq!(store.backlog().await.unwrap(), Backlog::default());
        let leased = OutboxWrite {
            deliveries: vec![delivery("msg_a", None), delivery("msg_held", Some(1_000))],
            ..OutboxWrite::default()
        };
        store.write_batch(&leased, 60_000).await.unwrap();
        let b = store.backlog().await.unwrap();
        assert_eq!((b.outstanding, b.due, b.oldest_due_at), (1, 0, None));

        let before = now_ms();
        let expired = OutboxWrite {
            deliveries: vec![delivery("msg_b", None), delivery("msg_c", None)],
            ..OutboxWrite::default()
        };
        // A lease that has already ended: as if the writing replica died.
        store.write_batch(&expired, -1_000).await.unwrap();
        let b = store.backlog().await.unwrap();
        assert_eq!((b.outstanding, b.due), (3, 2));
        let oldest = b.oldest_due_at.unwrap();
        assert!(oldest <= before, "{oldest} > {before}");
    }
}
