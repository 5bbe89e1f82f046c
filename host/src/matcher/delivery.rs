//! The delivery row and webhook body (DESIGN §5) for one kept event, with its deterministic id.

use sha2::{Digest, Sha256};

use super::{Candidate, Subscription};
use crate::event::{ChainLog, EventType};
use crate::store::NewDelivery;

/// The delivery row for one kept event: deterministic id and the webhook body. The chain is
/// ingested `chain_confirmations` behind its head; a subscription asking for more has its
/// deliveries held until the cursor has moved that much further.
pub fn new_delivery(
    sub: &Subscription,
    event: &Candidate,
    chain_confirmations: u64,
    data: Option<&str>,
) -> NewDelivery {
    let id = delivery_id(&sub.id, event.chain_id, &event.log, event.event_type);
    let extra = sub.confirmations.saturating_sub(chain_confirmations);
    let body = webhook_body(
        &id,
        sub,
        event,
        chain_confirmations.max(sub.confirmations),
        data,
    );
    let held = extra > 0;
    NewDelivery {
        subscription_id: sub.id.clone(),
        endpoint_id: sub.endpoint_id.clone(),
        chain_id: db_int(event.chain_id),
        event_type: event.event_type.as_str().to_string(),
        block_number: db_int(event.log.block_number),
        body,
        release_block: (held && event.event_type == EventType::Log)
            .then(|| db_int(event.log.block_number.saturating_add(extra))),
        supersedes: if held && event.event_type == EventType::LogRemoved {
            held_log_ids(&sub.id, event.chain_id, &event.log)
        } else {
            Vec::new()
        },
        ordering_key: ordering_key(sub, &event.log),
        id,
    }
}

/// Deterministic webhook id: the same subscription, chain, block, log and type always give the
/// same id, across retries, replays and restarts.
///
/// `msg_`, the block number in 12 hex digits, then 20 hex digits (80 bits) of the hash: 36
/// characters, as when all 32 digits were hash. The number first puts a block's ids next to each
/// other, and after the previous block's, in every index ordered by id (both stores compare ids
/// bytewise): a new delivery's entry in the unique index on `deliveries.id` lands on the same few
/// pages as the rest of its block instead of on a random page each, every such page a 4 KiB
/// frame in SQLite's log at the next commit: the host wrote 43 % fewer bytes at 20K events/s
/// once ids had this form (BENCHMARKS.md, "Session of 2026-12-04"). Uniqueness rests on the
/// hash within a block; the number adds no information the hash did not already cover.
pub fn delivery_id(
    subscription_id: &str,
    chain_id: u64,
    log: &ChainLog,
    event_type: EventType,
) -> String {
    let digest = id_digest(subscription_id, chain_id, log, event_type);
    block_first(log.block_number, &digest)
}

fn block_first(block_number: u64, digest: &[u8]) -> String {
    let hash = digest.get(..ID_HASH_BYTES).unwrap_or(digest);
    format!("msg_{block_number:012x}{}", hex::encode(hash))
}

/// The ids the held `log` delivery of `log` may be stored under: this version's, and the form
/// versions before 2026-12-04 wrote (`msg_` and 32 hex digits of the same hash). A delivery held
/// for confirmations across an upgrade is then still cancelled by its `log.removed`, instead of
/// being sent after its removal.
fn held_log_ids(subscription_id: &str, chain_id: u64, log: &ChainLog) -> Vec<String> {
    let digest = id_digest(subscription_id, chain_id, log, EventType::Log);
    let legacy = digest.get(..LEGACY_ID_HASH_BYTES).unwrap_or(&digest);
    vec![
        block_first(log.block_number, &digest),
        format!("msg_{}", hex::encode(legacy)),
    ]
}

fn id_digest(
    subscription_id: &str,
    chain_id: u64,
    log: &ChainLog,
    event_type: EventType,
) -> sha2::digest::Output<Sha256> {
    let mut hasher = Sha256::new();
    hasher.update(subscription_id.as_bytes());
    hasher.update(chain_id.to_be_bytes());
    hasher.update(log.block_hash.as_slice());
    hasher.update(log.log_index.to_be_bytes());
    hasher.update(event_type.as_str().as_bytes());
    hasher.finalize()
}

/// Bytes of the hash in a delivery id, after the block number.
const ID_HASH_BYTES: usize = 10;
/// Bytes of the hash in a delivery id of the form written before 2026-12-04 (all of the id).
const LEGACY_ID_HASH_BYTES: usize = 16;

/// The webhook body of DESIGN §5, with the node's log object embedded verbatim.
pub fn webhook_body(
    id: &str,
    sub: &Subscription,
    event: &Candidate,
    confirmations: u64,
    data: Option<&str>,
) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"id\":{},\"type\":{},\"subscription_id\":{},\"chain_id\":{},\"confirmations\":{},\"log\":{},\"data\":{}}}",
        quote(id),
        quote(event.event_type.as_str()),
        quote(&sub.id),
        event.chain_id,
        confirmations,
        event.log.raw,
        data.unwrap_or("null"),
    )
}

/// A chain number as the store's signed 64-bit integer. Ingest refuses block numbers above
/// 2^53 − 1 and chain ids are configured, so this never saturates in practice; it must never wrap.
pub fn db_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The ordering key of the subscription's delivery of `log` (`None`: unordered).
pub fn ordering_key(sub: &Subscription, log: &ChainLog) -> Option<String> {
    match sub.mode.ordering {
        crate::modes::Ordering::None => None,
        _ => sub
            .mode
            .ordering_key(&sub.id, &format!("{:#x}", log.address)),
    }
}
