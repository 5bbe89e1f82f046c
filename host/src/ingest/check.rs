//! Checks of what a node answers against what was asked. Pure: a failed check refuses the whole
//! answer (the caller drops the connection and tries the next URL), so nothing of a lying or
//! oversized answer is ever delivered.

use std::sync::Arc;

use alloy_primitives::B256;
use serde_json::value::RawValue;

use super::IngestError;
use super::rpc::{Answer, Header};
use crate::event::{ChainLog, MAX_BLOCK_NUMBER, MalformedLog};

/// The logs of one block's `eth_getLogs {blockHash}` answer, each log's text shared with the
/// node's message rather than copied. Refused whole when the answer's text is over `max_bytes`
/// (checked before any log is parsed), when a log is malformed, or when a log names another block
/// than `header` (by hash or by number) or says it was removed.
pub(super) fn shared_block_logs(
    answer: &Answer,
    header: &Header,
    max_bytes: usize,
) -> Result<Vec<Arc<ChainLog>>, IngestError> {
    block_logs_parsed_by(answer.get(), header, max_bytes, |raw| {
        ChainLog::from_shared(answer.message(), raw)
    })
}

/// The same checks of an answer's text, each log's text copied.
#[cfg(test)]
pub(super) fn block_logs(
    answer: &str,
    header: &Header,
    max_bytes: usize,
) -> Result<Vec<Arc<ChainLog>>, IngestError> {
    block_logs_parsed_by(answer, header, max_bytes, ChainLog::from_raw)
}

fn block_logs_parsed_by(
    answer: &str,
    header: &Header,
    max_bytes: usize,
    parse: impl Fn(&RawValue) -> Result<ChainLog, MalformedLog>,
) -> Result<Vec<Arc<ChainLog>>, IngestError> {
    let bytes = answer.len();
    if bytes > max_bytes {
        return Err(IngestError::LogsTooLarge {
            block: header.number,
            bytes,
            limit: max_bytes,
        });
    }
    let bad = |reason: String| IngestError::BadLog {
        block: header.number,
        reason,
    };
    let raw: Vec<&RawValue> =
        serde_json::from_str(answer).map_err(|e| bad(format!("not a list of logs: {e}")))?;
    let mut logs = Vec::with_capacity(raw.len());
    for item in raw {
        let log = parse(item).map_err(|e| bad(e.to_string()))?;
        if log.block_hash != header.hash {
            return Err(bad(format!(
                "log {} names block hash {}, the header {}",
                log.log_index, log.block_hash, header.hash
            )));
        }
        if log.block_number != header.number {
            return Err(bad(format!(
                "log {} names block number {}, the header {}",
                log.log_index, log.block_number, header.number
            )));
        }
        if log.removed {
            return Err(bad(format!(
                "log {} of a canonical block is marked removed",
                log.log_index
            )));
        }
        logs.push(Arc::new(log));
    }
    Ok(logs)
}

/// `eth_getBlockByNumber` must answer the block asked for.
pub(super) fn header_number(header: &Header, number: u64) -> Result<(), IngestError> {
    if header.number == number {
        return Ok(());
    }
    Err(IngestError::BadHeader {
        method: "eth_getBlockByNumber",
        reason: format!("asked for block {number}, got block {}", header.number),
    })
}

/// `eth_getBlockByHash` must answer the block asked for.
pub(super) fn header_hash(header: &Header, hash: &B256) -> Result<(), IngestError> {
    if header.hash == *hash {
        return Ok(());
    }
    Err(IngestError::BadHeader {
        method: "eth_getBlockByHash",
        reason: format!("asked for {hash}, got {}", header.hash),
    })
}

/// The stored cursor as a block number and hash; a negative or too-large number is an error,
/// never a wrapped one.
pub(super) fn cursor(number: i64, hash: &str) -> Result<(u64, B256), IngestError> {
    let number = u64::try_from(number)
        .ok()
        .filter(|n| *n <= MAX_BLOCK_NUMBER)
        .ok_or_else(|| IngestError::BadCursor(format!("block number {number}")))?;
    let hash = hash
        .parse::<B256>()
        .map_err(|e| IngestError::BadCursor(format!("block hash {hash:?}: {e}")))?;
    Ok((number, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(number: u64, tag: u8) -> Header {
        Header {
            number,
            hash: B256::repeat_byte(tag),
            parent_hash: B256::ZERO,
            timestamp: 0,
        }
    }

    fn answer(number: &str, tag: u8, extra: &str) -> Box<RawValue> {
        let text = format!(
            r#"[{{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"{number}","blockHash":"{}","transactionHash":"{}","transactionIndex":"0x0","logIndex":"0x0"{extra}}}]"#,
            B256::repeat_byte(tag),
            B256::repeat_byte(0xee)
        );
        RawValue::from_string(text).unwrap()
    }

    fn refused(answer: &RawValue, header: &Header, max: usize) -> String {
        block_logs(answer.get(), header, max)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_log_of_its_own_block_passes() {
        let logs = block_logs(answer("0x5", 5, "").get(), &header(5, 5), 1 << 20).unwrap();
        assert_eq!((logs[0].block_number, logs[0].log_index), (5, 0));
    }

    #[test]
    fn logs_that_disagree_with_their_header_are_refused() {
        let why = refused(&answer("0x6", 5, ""), &header(5, 5), 1 << 20);
        assert!(why.contains("names block number 6"), "{why}");
        let why = refused(&answer("0x5", 7, ""), &header(5, 5), 1 << 20);
        assert!(why.contains("names block hash"), "{why}");
        let why = refused(
            &answer("0x5", 5, r#","removed":true"#),
            &header(5, 5),
            1 << 20,
        );
        assert!(why.contains("marked removed"), "{why}");
    }

    #[test]
    fn numbers_that_do_not_fit_are_errors() {
        let why = refused(
            &answer("0xffffffffffffffffff", 5, ""),
            &header(5, 5),
            1 << 20,
        );
        assert!(why.contains("malformed log"), "{why}");
        // Fits u64 but not the host's i64 columns (and would wrap negative in an `as i64`).
        let why = refused(&answer("0x8000000000000000", 5, ""), &header(5, 5), 1 << 20);
        assert!(why.contains("is above"), "{why}");
        let big_index = r#","logIndex":"0x100000000""#;
        let text = answer("0x5", 5, "")
            .get()
            .replace(r#","logIndex":"0x0""#, big_index);
        let why = refused(
            &RawValue::from_string(text).unwrap(),
            &header(5, 5),
            1 << 20,
        );
        assert!(why.contains("logIndex 4294967296 is above"), "{why}");
        assert!(cursor(-1, &B256::ZERO.to_string()).is_err());
        assert_eq!(cursor(7, &B256::ZERO.to_string()).unwrap().0, 7);
    }

    #[test]
    fn an_answer_over_the_byte_budget_is_refused_before_parsing() {
        let answer = answer("0x5", 5, "");
        let why = refused(&answer, &header(5, 5), answer.get().len() - 1);
        assert!(why.contains("over the budget"), "{why}");
        let garbage = RawValue::from_string(format!("\"{}\"", "x".repeat(100))).unwrap();
        assert!(refused(&garbage, &header(5, 5), 10).contains("over the budget"));
    }

    #[test]
    fn headers_must_be_the_ones_asked_for() {
        assert!(header_number(&header(5, 5), 5).is_ok());
        assert!(header_number(&header(6, 5), 5).is_err());
        assert!(header_hash(&header(5, 5), &B256::repeat_byte(5)).is_ok());
        assert!(header_hash(&header(5, 5), &B256::repeat_byte(6)).is_err());
    }
}
