//! Property tests of what ingest parses from a node — messages (answers and `newHeads`
//! notifications), headers, `eth_getLogs` answers and their logs: arbitrary bytes and mutated valid
//! messages never panic, and what parses is checked (numbers in range, logs of the asked block).
//! 256 cases each, so they stay brief in the test command.

use proptest::prelude::*;
use serde_json::value::RawValue;

use super::super::check;
use super::super::rpc::{Header, parse_incoming};
use crate::event::MAX_BLOCK_NUMBER;

const HASH: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

fn header() -> Header {
    Header {
        number: 5,
        hash: HASH.parse().unwrap(),
        parent_hash: alloy_primitives::B256::ZERO,
        timestamp: 0,
    }
}

fn log_json(block_number: &str, tx_index: &str, log_index: &str) -> String {
    format!(
        r#"{{"address":"0x00000000000000000000000000000000000000aa","topics":["{HASH}"],"data":"0x0102","blockNumber":"{block_number}","blockHash":"{HASH}","transactionHash":"{HASH}","transactionIndex":"{tx_index}","logIndex":"{log_index}","removed":false}}"#
    )
}

/// Valid messages of each kind a node sends: a head notification, a header answer, a logs answer.
fn valid_messages() -> Vec<String> {
    let head = format!(
        r#"{{"number":"0x5","hash":"{HASH}","parentHash":"{HASH}","timestamp":"0x6553f100"}}"#
    );
    vec![
        format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0x1","result":{head}}}}}"#
        ),
        format!(r#"{{"jsonrpc":"2.0","id":7,"result":{head}}}"#),
        format!(
            r#"{{"jsonrpc":"2.0","id":8,"result":[{},{}]}}"#,
            log_json("0x5", "0x0", "0x0"),
            log_json("0x5", "0x1", "0x1")
        ),
        r#"{"jsonrpc":"2.0","id":9,"error":{"code":-32000,"message":"nope"}}"#.to_string(),
    ]
}

/// A mutation of a valid message: bytes overwritten, cut out or inserted at some place.
#[derive(Debug, Clone)]
enum Mutation {
    Overwrite(usize, Vec<u8>),
    Cut(usize, usize),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = prop::collection::vec(any::<u8>(), 1..12);
    prop_oneof![
        (any::<usize>(), bytes.clone()).prop_map(|(at, b)| Mutation::Overwrite(at, b)),
        (any::<usize>(), 1..40usize).prop_map(|(at, n)| Mutation::Cut(at, n)),
        (any::<usize>(), bytes).prop_map(|(at, b)| Mutation::Insert(at, b)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Overwrite(at, b) => {
                for (i, byte) in b.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut((at % len) + i) {
                        *slot = *byte;
                    }
                }
            }
            Mutation::Cut(at, n) => {
                let start = (at % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert(at, b) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, b.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whatever parses is in range and, for logs, of the block asked for.
fn check_message(text: &str) {
    let Ok(incoming) = parse_incoming(text) else {
        return;
    };
    if let Some(head) = &incoming.head {
        assert!(head.number <= MAX_BLOCK_NUMBER);
    }
    if let Some(result) = &incoming.result {
        if let Ok(head) = serde_json::from_str::<Header>(result.get()) {
            assert!(head.number <= MAX_BLOCK_NUMBER);
        }
        if let Ok(logs) = check::block_logs(result.get(), &header(), 1 << 20) {
            for log in logs {
                assert_eq!((log.block_number, log.block_hash), (5, header().hash));
                assert!(log.log_index <= u64::from(u32::MAX) && !log.removed);
            }
        }
    }
}

/// Small numbers, 32-bit, 53-bit, 64-bit and up to 96-bit ones, about equally often.
fn quantity() -> impl Strategy<Value = u128> {
    prop_oneof![
        (0..10u128),
        any::<u32>().prop_map(u128::from),
        (0..=MAX_BLOCK_NUMBER + 10).prop_map(u128::from),
        any::<u64>().prop_map(u128::from),
        any::<u128>().prop_map(|n| n >> 32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_message(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_messages_never_panic_and_parse_to_checked_values(
        which in 0..4usize,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let text = mutate(&valid_messages()[which], &mutations);
        check_message(&text);
    }

    /// Any quantity, up to 96 bits: the log is accepted exactly when its block number is the
    /// header's and its indexes fit 32 bits, and then carries those very values.
    #[test]
    fn log_numbers_are_checked_never_truncated(
        block in prop_oneof![Just(5u128), quantity()],
        tx_index in quantity(),
        log_index in quantity(),
    ) {
        let log = log_json(&format!("{block:#x}"), &format!("{tx_index:#x}"), &format!("{log_index:#x}"));
        let answer = RawValue::from_string(format!("[{log}]")).unwrap();
        let fits = block == 5 && tx_index <= u128::from(u32::MAX) && log_index <= u128::from(u32::MAX);
        match check::block_logs(answer.get(), &header(), 1 << 20) {
            Ok(logs) => {
                prop_assert!(fits);
                prop_assert_eq!(u128::from(logs[0].transaction_index), tx_index);
                prop_assert_eq!(u128::from(logs[0].log_index), log_index);
            }
            Err(_) => prop_assert!(!fits),
        }
    }

    /// A header number is accepted exactly when it is at most 2^53 − 1.
    #[test]
    fn header_numbers_are_checked_never_truncated(number in quantity()) {
        let text = format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0x1","result":{{"number":"{number:#x}","hash":"{HASH}","parentHash":"{HASH}"}}}}}}"#
        );
        match parse_incoming(&text) {
            Ok(incoming) => {
                prop_assert!(number <= u128::from(MAX_BLOCK_NUMBER));
                prop_assert_eq!(incoming.head.map(|h| u128::from(h.number)), Some(number));
            }
            Err(_) => prop_assert!(number > u128::from(MAX_BLOCK_NUMBER)),
        }
    }
}
