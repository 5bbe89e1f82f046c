//! The batch write: deliveries, parked events, subscription status and chain cursors in one
//! transaction. Chain cursors and parked events are read back here too.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use super::rows::{self, Col, Rows};
use super::{
    BatchEvent, Cursor, HELD_UNTIL_RELEASED, NewDelivery, OutboxWrite, ParkedEvent, ParkedRow,
    Store, StoreError, now_ms,
};

/// Statements issued by one write, for the statements-per-event metric, and the chains whose
/// cursor was refused by fencing.
#[derive(Debug, Default, Clone)]
pub struct WriteStats {
    pub statements: u64,
    /// The lease new (not held) deliveries were written with: the claim token their jobs carry.
    pub lease_until: i64,
    pub fenced: Vec<i64>,
    /// Batches this write sealed (now due, for the poller).
    pub sealed: usize,
}

impl Store {
    /// Makes one batch durable. Returns the ids of deliveries that are new; ids already present
    /// (a replay after a crash) are skipped, so they are never sent twice from the hot path.
    ///
    /// A chain whose cursor is fenced (another replica took the chain over since this process
    /// did) has nothing of this write stored: not its cursor, nor its deliveries and parked
    /// events, nor the release of its held deliveries. They all come from blocks above the cursor
    /// the new owner started from, which it ingests again.
    pub async fn write_batch(
        &self,
        write: &OutboxWrite,
        lease_ms: i64,
    ) -> Result<(Vec<String>, WriteStats), StoreError> {
        let now = now_ms();
        let mut stats = WriteStats {
            lease_until: now + lease_ms,
            ..WriteStats::default()
        };
        let mut tx = self.writer.begin().await?;
        let (fenced, checks) = self.fenced_chains(&mut tx, &write.cursors).await?;
        stats.statements += checks;
        stats.fenced = fenced.iter().copied().collect();
        let ours = |chain_id: i64| !fenced.contains(&chain_id);
        let candidates: Vec<&NewDelivery> = write
            .deliveries
            .iter()
            .filter(|d| ours(d.chain_id))
            .collect();
        let cancelled = self.cancel_held(&mut tx, &candidates, &mut stats).await?;
        let deliveries: Vec<&NewDelivery> = candidates
            .into_iter()
            .filter(|d| {
                d.supersedes
                    .as_ref()
                    .is_none_or(|id| !cancelled.contains(id))
            })
            .collect();
        let mut inserted = Vec::new();
        for chunk in deliveries.chunks(rows::MAX_ROWS) {
            let new = self
                .insert_deliveries(&mut tx, chunk, now, lease_ms)
                .await?;
            // The rows, and their bodies when any was new.
            stats.statements += if new.is_empty() { 1 } else { 2 };
            inserted.extend(new);
        }
        if !write.batch_events.is_empty() {
            let events: Vec<&BatchEvent> = write
                .batch_events
                .iter()
                .filter(|e| ours(e.chain_id))
                .collect();
            let appended = self.append_batch_events(&mut tx, &events, now).await?;
            stats.sealed = appended.sealed;
            stats.statements += appended.statements;
        }
        let parked: Vec<&ParkedEvent> = write.parked.iter().filter(|p| ours(p.chain_id)).collect();
        self.insert_parked(&mut tx, &parked, now, &mut stats)
            .await?;
        self.resolve_parked(&mut tx, &write.resolved_parked, &mut stats)
            .await?;
        for change in &write.status_changes {
            sqlx::query("UPDATE subscriptions SET status = $2, last_error = $3, updated_at = $4 WHERE id = $1")
                .bind(&change.subscription_id)
                .bind(change.status.as_str())
                .bind(&change.last_error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            stats.statements += 1;
        }
        for cursor in write.cursors.iter().filter(|c| ours(c.chain_id)) {
            self.write_cursor(&mut tx, cursor, now).await?;
            stats.statements += 1;
            if write.release_chains.contains(&(cursor.chain_id as u64)) {
                self.release_held(&mut tx, cursor, now).await?;
                stats.statements += 1;
            }
        }
        tx.commit().await?;
        Ok((inserted, stats))
    }

    async fn write_cursor(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        cursor: &Cursor,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chain_cursors (chain_id, block_number, block_hash, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (chain_id) DO UPDATE SET block_number = excluded.block_number, \
             block_hash = excluded.block_hash, updated_at = excluded.updated_at",
        )
        .bind(cursor.chain_id)
        .bind(cursor.block_number)
        .bind(&cursor.block_hash)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Makes the chain's held deliveries up to the new cursor due.
    async fn release_held(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        cursor: &Cursor,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $3, updated_at = $3 \
             WHERE chain_id = $1 AND release_block IS NOT NULL AND release_block <= $2 AND next_attempt_at = $4",
        )
        .bind(cursor.chain_id)
        .bind(cursor.block_number)
        .bind(now)
        .bind(HELD_UNTIL_RELEASED)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn insert_parked(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        parked: &[&ParkedEvent],
        now: i64,
        stats: &mut WriteStats,
    ) -> Result<(), StoreError> {
        if parked.is_empty() {
            return Ok(());
        }
        let source = self.json_rows(
            1,
            &[
                ("subscription_id", "text"),
                ("chain_id", "bigint"),
                ("event_type", "text"),
                ("log", "text"),
                ("error", "text"),
                ("event_index", "bigint"),
                ("event_key", "text"),
            ],
        );
        // `WHERE true` lets SQLite tell the upsert clause from a join constraint.
        let sql = format!(
            "INSERT INTO parked_events (subscription_id, chain_id, event_type, log, error, event_index, event_key, created_at) \
             SELECT j.subscription_id, j.chain_id, j.event_type, j.log, j.error, j.event_index, j.event_key, $2 \
             FROM {source} WHERE true ON CONFLICT DO NOTHING"
        );
        let rows: Vec<KeyedParked> = parked.iter().map(|event| KeyedParked::new(event)).collect();
        let json = serde_json::to_string(&rows)?;
        sqlx::query(AssertSqlSafe(sql))
            .bind(json)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        stats.statements += 1;
        Ok(())
    }

    async fn resolve_parked(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        resolved: &[i64],
        stats: &mut WriteStats,
    ) -> Result<(), StoreError> {
        if resolved.is_empty() {
            return Ok(());
        }
        let seqs: Vec<serde_json::Value> = resolved
            .iter()
            .map(|seq| serde_json::json!({"seq": seq}))
            .collect();
        let source = self.json_rows(1, &[("seq", "bigint")]);
        let sql = format!("DELETE FROM parked_events WHERE seq IN (SELECT j.seq FROM {source})");
        sqlx::query(AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(seqs).to_string())
            .execute(&mut **tx)
            .await?;
        stats.statements += 1;
        Ok(())
    }

    /// Inserts one chunk of new deliveries; returns the ids that were new.
    async fn insert_deliveries(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        chunk: &[&NewDelivery],
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        const COLUMNS: [(&str, Col); 11] = [
            ("id", Col::Text),
            ("subscription_id", Col::Text),
            ("endpoint_id", Col::Text),
            ("chain_id", Col::BigInt),
            ("event_type", Col::Text),
            ("block_number", Col::BigInt),
            ("release_block", Col::BigInt),
            ("next_attempt_at", Col::BigInt),
            ("lease_until", Col::BigInt),
            ("at", Col::BigInt),
            ("ordering_key", Col::Text),
        ];
        let mut query = Rows::new(self.dialect, &COLUMNS, chunk.len(), |j| {
            format!(
                "{j} INSERT INTO deliveries (id, subscription_id, endpoint_id, chain_id, event_type, block_number, \
                 release_block, status, attempts, next_attempt_at, lease_until, created_at, updated_at, ordering_key) \
                 SELECT j.id, j.subscription_id, j.endpoint_id, j.chain_id, j.event_type, j.block_number, \
                 j.release_block, 'pending', 0, j.next_attempt_at, j.lease_until, j.at, j.at, j.ordering_key \
                 FROM j WHERE j.id IS NOT NULL ON CONFLICT (id) DO NOTHING RETURNING id, seq"
            )
        });
        for d in chunk {
            // New rows are leased to this process: it sends them from memory right away, and the
            // retry poller must not pick them up unless this process dies first, so they are not
            // due before the lease ends (which also keeps them out of the poller's index range).
            // Held rows wait, unleased, for their release. Ordered rows are due at once and
            // unleased: the poller claims each when it is the first undelivered one of its key.
            let (due, lease) = match (d.release_block, &d.ordering_key) {
                (Some(_), _) => (HELD_UNTIL_RELEASED, 0),
                (None, Some(_)) => (now, 0),
                (None, None) => (now + lease_ms, now + lease_ms),
            };
            query = query
                .bind(d.id.as_str())
                .bind(d.subscription_id.as_str())
                .bind(d.endpoint_id.as_str())
                .bind(d.chain_id)
                .bind(d.event_type.as_str())
                .bind(d.block_number)
                .bind(d.release_block)
                .bind(due)
                .bind(lease)
                .bind(now)
                .bind(d.ordering_key.as_deref());
        }
        let returned = query.finish().fetch_all(&mut **tx).await?;
        let new: Vec<(String, i64)> = returned
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let bodies: HashMap<&str, &str> = chunk
            .iter()
            .map(|d| (d.id.as_str(), d.body.as_str()))
            .collect();
        let rows: Vec<(i64, &str)> = new
            .iter()
            .filter_map(|(id, seq)| bodies.get(id.as_str()).map(|body| (*seq, *body)))
            .collect();
        self.insert_bodies(tx, &rows).await?;
        Ok(new.into_iter().map(|(id, _)| id).collect())
    }

    /// Inserts the bodies of new deliveries (`(seq, body)`), one statement.
    pub(super) async fn insert_bodies(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        rows: &[(i64, &str)],
    ) -> Result<(), StoreError> {
        const COLUMNS: [(&str, Col); 2] = [("seq", Col::BigInt), ("body", Col::Text)];
        if rows.is_empty() {
            return Ok(());
        }
        let mut query = Rows::new(self.dialect, &COLUMNS, rows.len(), |j| {
            format!(
                "{j} INSERT INTO delivery_bodies (seq, body) SELECT j.seq, j.body FROM j \
                 WHERE j.seq IS NOT NULL ON CONFLICT (seq) DO NOTHING"
            )
        });
        for (seq, body) in rows {
            query = query.bind(*seq).bind(*body);
        }
        query.finish().execute(&mut **tx).await?;
        Ok(())
    }
    /// Deletes held deliveries that a `log.removed` supersedes (the log was reorged out before it
    /// was confirmed enough to send); returns their ids.
    async fn cancel_held(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        deliveries: &[&NewDelivery],
        stats: &mut WriteStats,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let superseded: Vec<&str> = deliveries
            .iter()
            .filter_map(|d| d.supersedes.as_deref())
            .collect();
        if superseded.is_empty() {
            return Ok(Default::default());
        }
        let ids: Vec<serde_json::Value> = superseded
            .iter()
            .map(|id| serde_json::json!({"id": id}))
            .collect();
        let source = self.json_rows(1, &[("id", "text")]);
        let sql = format!(
            "DELETE FROM deliveries WHERE next_attempt_at = $2 AND id IN (SELECT j.id FROM {source}) RETURNING id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(ids).to_string())
            .bind(HELD_UNTIL_RELEASED)
            .fetch_all(&mut **tx)
            .await?;
        stats.statements += 1;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    pub async fn get_cursor(&self, chain_id: u64) -> Result<Option<Cursor>, StoreError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT block_number, block_hash FROM chain_cursors WHERE chain_id = $1",
        )
        .bind(chain_id as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(block_number, block_hash)| Cursor {
            chain_id: chain_id as i64,
            block_number,
            block_hash,
        }))
    }

    pub async fn list_parked(
        &self,
        subscription_id: &str,
        limit: i64,
    ) -> Result<Vec<ParkedRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, subscription_id, chain_id, event_type, log, error, event_index, created_at \
             FROM parked_events WHERE subscription_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(subscription_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ParkedRow {
                    seq: r.try_get(0)?,
                    event: ParkedEvent {
                        subscription_id: r.try_get(1)?,
                        chain_id: r.try_get(2)?,
                        event_type: r.try_get(3)?,
                        log: r.try_get(4)?,
                        error: r.try_get(5)?,
                        event_index: r.try_get(6)?,
                    },
                    created_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    pub async fn count_parked(&self, subscription_id: &str) -> Result<i64, StoreError> {
        let row: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM parked_events WHERE subscription_id = $1")
                .bind(subscription_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.0)
    }

    /// The number of parked events of every subscription that has any, in one statement (the
    /// subscription list shows it per row).
    pub async fn count_parked_by_subscription(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT subscription_id, COUNT(*) FROM parked_events GROUP BY subscription_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Removes every parked event of a subscription (the subscription is being deleted).
    pub async fn delete_all_parked(&self, subscription_id: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM parked_events WHERE subscription_id = $1")
            .bind(subscription_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

/// A parked event as written, with the key that makes parking idempotent: a batch replayed after
/// a crash (its cursor not yet written, a slow plugin call still out) parks the same events again,
/// and `parked_events (subscription_id, event_key)` is unique. Events without a block hash and log
/// index (none from a node) get no key and are never merged.
#[derive(serde::Serialize)]
struct KeyedParked<'a> {
    #[serde(flatten)]
    event: &'a ParkedEvent,
    event_key: Option<String>,
}

impl<'a> KeyedParked<'a> {
    fn new(event: &'a ParkedEvent) -> KeyedParked<'a> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Position {
            block_hash: Option<String>,
            log_index: Option<String>,
        }
        let event_key = serde_json::from_str::<Position>(&event.log)
            .ok()
            .and_then(|p| {
                Some(format!(
                    "{}:{}:{}",
                    event.event_type, p.block_hash?, p.log_index?
                ))
            });
        KeyedParked { event, event_key }
    }
}
