//! Owned events and the pure ABI v1 batch encoder (the layout the host writes; see `ABI.md`).

use crate::batch::Log;
use alloy_primitives::{Address, B256};

/// An owned event, e.g. parsed from a JSON-RPC log (see `testing::log_from_json`) or copied
/// from a [`Log`] view with [`OwnedLog::from`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedLog {
    pub address: Address,
    /// At most 4 ([`encode_log`] panics otherwise).
    pub topics: Vec<B256>,
    pub data: Vec<u8>,
    pub block_number: u64,
    pub block_hash: B256,
    pub transaction_hash: B256,
    pub transaction_index: u32,
    pub log_index: u32,
    pub removed: bool,
}

impl From<Log<'_>> for OwnedLog {
    fn from(l: Log<'_>) -> Self {
        OwnedLog {
            address: l.address(),
            topics: l.topics().to_vec(),
            data: l.data().to_vec(),
            block_number: l.block_number(),
            block_hash: l.block_hash(),
            transaction_hash: l.transaction_hash(),
            transaction_index: l.transaction_index(),
            log_index: l.log_index(),
            removed: l.removed(),
        }
    }
}

/// Appends one event, including its `u32 event_len` prefix, in ABI v1 layout (little-endian):
///
/// ```text
/// u32 event_len | [u8;20] address | u8 topic_count | [u8;32]×topic_count | u64 block_number
/// | [u8;32] block_hash | [u8;32] transaction_hash | u32 transaction_index | u32 log_index
/// | u8 removed | u32 data_len | [u8] data
/// ```
///
/// `event_len = 21 + 32·topic_count + 85 + data_len`. Panics if there are more than 4 topics.
pub fn encode_log(out: &mut Vec<u8>, log: &OwnedLog) {
    assert!(log.topics.len() <= 4, "an event has at most 4 topics");
    let event_len = 21 + 32 * log.topics.len() + 85 + log.data.len();
    out.reserve(4 + event_len);
    out.extend_from_slice(&(event_len as u32).to_le_bytes());
    out.extend_from_slice(log.address.as_slice());
    out.push(log.topics.len() as u8);
    for t in &log.topics {
        out.extend_from_slice(t.as_slice());
    }
    out.extend_from_slice(&log.block_number.to_le_bytes());
    out.extend_from_slice(log.block_hash.as_slice());
    out.extend_from_slice(log.transaction_hash.as_slice());
    out.extend_from_slice(&log.transaction_index.to_le_bytes());
    out.extend_from_slice(&log.log_index.to_le_bytes());
    out.push(log.removed as u8);
    out.extend_from_slice(&(log.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&log.data);
}

/// Encodes a whole batch: `u32 event_count` followed by each event as in [`encode_log`].
pub fn encode_batch<'a>(logs: impl IntoIterator<Item = &'a OwnedLog>) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    let mut n: u32 = 0;
    for log in logs {
        encode_log(&mut out, log);
        n += 1;
    }
    out[..4].copy_from_slice(&n.to_le_bytes());
    out
}
