//! What the chain says now about a parked event's block, for reprocessing: is the block still
//! canonical (judged from the durable reorg window, walking parent hashes back from the cursor),
//! and has the chain moved far enough past it for the subscription's confirmations?

use std::collections::HashMap;

use crate::admin::ApiResult;
use crate::store::Store;

/// The chain as this host's store knows it.
#[derive(Debug, Default)]
pub struct ChainView {
    /// The chain's cursor (last block processed), if it has one.
    pub cursor: Option<i64>,
    /// Canonical block hash per height, for the heights the stored window covers.
    pub canonical: HashMap<i64, String>,
    /// The confirmations the chain is ingested with (0 if this host does not ingest it).
    pub chain_confirmations: u64,
}

/// What to do with one parked event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver; `held` when the subscription's confirmations are not reached yet (the delivery
    /// waits for the cursor like any held delivery).
    Deliver { held: bool },
    /// Its block was reorged out: never delivered; the parked row is resolved.
    Orphaned,
}

impl ChainView {
    pub async fn load(store: &Store, chain_id: u64, chain_confirmations: u64) -> ApiResult<Self> {
        let Some(cursor) = store.get_cursor(chain_id).await? else {
            return Ok(ChainView {
                chain_confirmations,
                ..ChainView::default()
            });
        };
        let window = crate::ingest::REORG_WINDOW as i64;
        // Links only: the blocks' logs are not needed to walk the branch.
        let links = store
            .chain_block_links(chain_id, cursor.block_number - window, cursor.block_number)
            .await?;
        let by_hash: HashMap<&str, (i64, &str)> = links
            .iter()
            .map(|(number, hash, parent)| (hash.as_str(), (*number, parent.as_str())))
            .collect();
        let mut canonical = HashMap::new();
        let mut hash = cursor.block_hash.as_str();
        // Bounded by the blocks read; a cycle cannot occur in hashes, but the map lookup bounds it too.
        while let Some(&(number, parent)) = by_hash.get(hash) {
            if canonical.insert(number, hash.to_string()).is_some() {
                break;
            }
            hash = parent;
        }
        Ok(ChainView {
            cursor: Some(cursor.block_number),
            canonical,
            chain_confirmations,
        })
    }

    /// Pure: the verdict for an event of block `number` / `hash` of a subscription that waits for
    /// `confirmations`. Blocks below the stored window are final; without a cursor nothing can
    /// be judged and the event is delivered as before.
    pub fn judge(&self, number: i64, hash: &str, confirmations: u64) -> Verdict {
        if let Some(canonical) = self.canonical.get(&number)
            && !canonical.eq_ignore_ascii_case(hash)
        {
            return Verdict::Orphaned;
        }
        let extra = confirmations.saturating_sub(self.chain_confirmations);
        let release = number.saturating_add(i64::try_from(extra).unwrap_or(i64::MAX));
        let held = extra > 0 && self.cursor.is_some_and(|cursor| cursor < release);
        Verdict::Deliver { held }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ChainView {
        ChainView {
            cursor: Some(105),
            canonical: [(104, "0xaa".to_string()), (105, "0xbb".to_string())]
                .into_iter()
                .collect(),
            chain_confirmations: 2,
        }
    }

    #[test]
    fn an_event_of_a_block_reorged_out_is_orphaned() {
        assert_eq!(view().judge(104, "0xcc", 0), Verdict::Orphaned);
        assert_eq!(
            view().judge(104, "0xAA", 0),
            Verdict::Deliver { held: false }
        );
        // Below the stored window: final, delivered.
        assert_eq!(
            view().judge(10, "0xdd", 0),
            Verdict::Deliver { held: false }
        );
    }

    #[test]
    fn confirmations_not_yet_reached_hold_the_delivery() {
        // 12 wanted, chain ingested 2 behind: 10 more blocks past 104 = 114 > cursor 105.
        assert_eq!(
            view().judge(104, "0xaa", 12),
            Verdict::Deliver { held: true }
        );
        // 5 wanted: 3 more past 100 = 103 ≤ 105: released at once.
        assert_eq!(
            view().judge(100, "0x01", 5),
            Verdict::Deliver { held: false }
        );
        // Without a cursor nothing is held back.
        assert_eq!(
            ChainView::default().judge(100, "0x01", 50),
            Verdict::Deliver { held: false }
        );
    }
}
