//! PostgreSQL's `deliveries_due` is partial (migration 0016): it must serve every query for
//! unfinished deliveries, and hold no final ones.

use super::*;

/// The index PostgreSQL picks for `predicate` on an empty table, sequential scans switched off,
/// as `EXPLAIN` prints it.
async fn plan_for(store: &Store, predicate: &str) -> String {
    let mut conn = store.pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let lines: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
        "EXPLAIN SELECT 1 FROM deliveries WHERE {predicate} AND next_attempt_at <= 0"
    )))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    lines
        .into_iter()
        .map(|(l,)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_due_index_serves_every_unfinished_state_and_no_final_one() {
    let Some(pg) = postgres().await else { return };
    // The claim's and the backlog's own predicate.
    let unfinished = plan_for(&pg, &super::deliveries::UNFINISHED).await;
    assert!(unfinished.contains("deliveries_due"), "{unfinished}");
    for status in DeliveryStatus::ALL {
        let plan = plan_for(&pg, &format!("status = {}", status.sql())).await;
        assert_eq!(
            plan.contains("deliveries_due"),
            !status.is_final(),
            "{status}: {plan}"
        );
    }
}
