use crate::testing::{log_from_json, logs_from_jsonl, run_native, run_one, take_logs, with_log};
use crate::*;
use alloy_primitives::{address, b256, hex};

const FIXTURES: &str = include_str!("../tests/fixtures.jsonl");

fn fixtures() -> Vec<OwnedLog> {
    logs_from_jsonl(FIXTURES).unwrap()
}

alloy_sol_types::sol! {
    event Transfer(address indexed from, address indexed to, uint256 value);
    event Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1,
        uint160 sqrtPriceX96, uint128 liquidity, int24 tick);
}

fn sample() -> OwnedLog {
    OwnedLog {
        address: address!("0x00000000000000000000000000000000000000aa"),
        topics: vec![B256::repeat_byte(1), B256::repeat_byte(2)],
        data: vec![9, 8, 7],
        block_number: 0x0102030405060708,
        block_hash: B256::repeat_byte(3),
        transaction_hash: B256::repeat_byte(4),
        transaction_index: 0xaabbccdd,
        log_index: 7,
        removed: true,
    }
}

#[test]
fn encodes_the_documented_layout() {
    let bytes = encode_batch([&sample()]);
    let event_len = 21 + 64 + 85 + 3;
    assert_eq!(bytes.len(), 4 + 4 + event_len);
    assert_eq!(&bytes[..4], &1u32.to_le_bytes());
    assert_eq!(&bytes[4..8], &(event_len as u32).to_le_bytes());
    assert_eq!(bytes[8 + 19], 0xaa);
    assert_eq!(bytes[8 + 20], 2);
    let tail = 8 + 21 + 64;
    assert_eq!(&bytes[tail..tail + 8], &0x0102030405060708u64.to_le_bytes());
    assert_eq!(&bytes[tail + 72..tail + 76], &0xaabbccddu32.to_le_bytes());
    assert_eq!(bytes[tail + 80], 1);
    assert_eq!(&bytes[tail + 81..tail + 85], &3u32.to_le_bytes());
    assert_eq!(&bytes[tail + 85..], &[9, 8, 7]);
}

#[test]
fn batch_round_trip_and_accessors() {
    let logs = fixtures();
    let mut all = logs.clone();
    all.push(sample());
    let bytes = encode_batch(&all);
    let batch = Batch::parse(&bytes).unwrap();
    assert_eq!(batch.len(), all.len());
    assert_eq!(batch.iter().len(), all.len());
    for (view, owned) in batch.iter().zip(&all) {
        assert_eq!(&OwnedLog::from(view), owned);
        assert_eq!(view.topics().len(), owned.topics.len());
        for i in 0..5 {
            assert_eq!(view.topic(i), owned.topics.get(i).copied());
        }
    }

    // Field values of the first fixture line, checked against the JSON by hand.
    let l = batch.iter().next().unwrap();
    assert_eq!(
        l.address(),
        address!("0xf4eced2f682ce333f96f2d8966c613ded8fc95dd")
    );
    assert_eq!(
        l.topic0(),
        Some(b256!(
            "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        ))
    );
    assert_eq!(
        l.topics()[2],
        b256!("0x000000000000000000000000ac4df82fe37ea2187bc8c011a23d743b4f39019a")
    );
    assert_eq!(
        l.data(),
        &hex!("00000000000000000000000000000000000000000000000000000000000186a0")
    );
    assert_eq!(l.block_number(), 0x76250);
    assert_eq!(
        l.block_hash(),
        b256!("0x246edb4b351d93c27926f4649bcf6c24366e2a7c7c718dc9158eea20c03bc6ae")
    );
    assert_eq!(
        l.transaction_hash(),
        b256!("0x04cbcb236043d8fb7839e07bbc7f5eed692fb2ca55d897f1101eac3e3ad4fab8")
    );
    assert_eq!(l.transaction_index(), 0);
    assert_eq!(l.log_index(), 0);
    assert!(!l.removed());

    let s = batch.iter().last().unwrap();
    assert!(s.removed());
    assert_eq!(s.transaction_index(), 0xaabbccdd);
    assert_eq!(s.log_index(), 7);
    assert_eq!(s.block_number(), 0x0102030405060708);
    assert_eq!(s.data(), &[9, 8, 7]);

    // The zero-topic fixture line.
    let z = batch.iter().nth(4).unwrap();
    assert!(z.topics().is_empty());
    assert_eq!(z.topic0(), None);
    assert_eq!(z.block_number(), 0x145d0bd);
}

#[test]
fn empty_batch() {
    let bytes = encode_batch([]);
    assert_eq!(bytes, 0u32.to_le_bytes());
    let b = Batch::parse(&bytes).unwrap();
    assert!(b.is_empty());
    assert_eq!(b.iter().count(), 0);
}

#[test]
fn detects_malformed_batches() {
    let bytes = encode_batch(&fixtures());
    // Every proper prefix is truncated.
    for cut in 0..bytes.len() {
        let err = Batch::parse(&bytes[..cut]).err();
        assert!(
            matches!(
                err,
                Some(BatchError::Truncated { .. } | BatchError::LengthMismatch { .. })
            ),
            "prefix {cut}: {err:?}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Batch::parse(&trailing).err(),
        Some(BatchError::TrailingBytes {
            offset: bytes.len()
        })
    );

    let one = encode_batch([&sample()]);
    let mut bad = one.clone();
    bad[8 + 20] = 5; // topic_count
    assert_eq!(
        Batch::parse(&bad).err(),
        Some(BatchError::TooManyTopics { event: 0, count: 5 })
    );
    let mut bad = one.clone();
    bad[8 + 21 + 64 + 80] = 2; // removed
    assert_eq!(
        Batch::parse(&bad).err(),
        Some(BatchError::BadRemoved { event: 0, value: 2 })
    );
    let mut bad = one.clone();
    bad[8 + 21 + 64 + 81] = 2; // data_len 3 -> 2
    assert!(matches!(
        Batch::parse(&bad),
        Err(BatchError::LengthMismatch { event: 0, .. })
    ));
    let mut bad = one.clone();
    bad[0] = 2; // claims two events
    assert!(matches!(
        Batch::parse(&bad),
        Err(BatchError::Truncated { event: Some(1), .. })
    ));
    // Errors are printable.
    assert!(
        Batch::parse(&bad)
            .err()
            .unwrap()
            .to_string()
            .contains("event 1")
    );
}

#[test]
fn decodes_sol_events() {
    let logs = fixtures();
    let t = run_one(
        |_: &(), l| Decision::keep_with(&l.is::<Transfer>()),
        &(),
        &logs[0],
    );
    assert_eq!(t, Ok(Decision::KeepWith(json!(true))));

    let transfer = with_log(&logs[0], |l| l.decode::<Transfer>()).unwrap();
    assert_eq!(
        transfer.from,
        address!("0x1b63142628311395ceafeea5667e7c9026c862ca")
    );
    assert_eq!(
        transfer.to,
        address!("0xac4df82fe37ea2187bc8c011a23d743b4f39019a")
    );
    assert_eq!(transfer.value, U256::from(100_000));

    // 1-topic (CryptoKitties) and 4-topic (ERC-721) Transfers share topic 0 but do not decode.
    for i in [1, 2] {
        assert!(with_log(&logs[i], |l| l.is::<Transfer>()));
        assert!(
            with_log(&logs[i], |l| l.decode::<Transfer>()).is_none(),
            "line {i}"
        );
    }
    // Wrong event and no topics.
    for i in [3, 4] {
        assert!(with_log(&logs[i], |l| l.try_decode::<Transfer>().is_err()));
    }

    let swap = with_log(&logs[3], |l| l.decode::<Swap>()).unwrap();
    assert_eq!(
        swap.sender,
        address!("0xe592427a0aece92de3edee1f18e0157c05861564")
    );
    assert!(swap.amount0.is_negative());
    assert_eq!(swap.amount1.to_string(), "200000000000");
}

#[test]
fn output_encoding_of_each_decision_and_error() {
    let out = encode_output(&[Decision::Drop, Decision::Keep], None);
    assert_eq!(out, [2, 0, 0, 0, 0, 1, 0]);

    let out = encode_output(&[Decision::KeepWith(json!({"a": 1}))], None);
    let payload = br#"{"a":1}"#;
    let mut expected = vec![1, 0, 0, 0, 2];
    expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    expected.extend_from_slice(payload);
    expected.push(0);
    assert_eq!(out, expected);

    let out = encode_output(&[Decision::Keep, Decision::Drop], Some((1, "boom")));
    assert_eq!(
        out,
        [
            2, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 4, 0, 0, 0, b'b', b'o', b'o', b'm'
        ]
    );

    // decode_output is the inverse and is strict.
    let ds = vec![
        Decision::Drop,
        Decision::Keep,
        Decision::KeepWith(json!([1, "x", null])),
    ];
    let enc = encode_output(&ds, Some((2, "bad")));
    let dec = decode_output(&enc, Some(3)).unwrap();
    assert_eq!(dec.decisions, ds);
    assert_eq!(dec.error, Some((2, "bad".into())));
    assert!(decode_output(&enc, Some(2)).is_err());
    let mut trailing = enc.clone();
    trailing.push(0);
    assert!(decode_output(&trailing, None).is_err());
    assert!(decode_output(&[1, 0, 0, 0, 3, 0], None).is_err());
    assert!(decode_output(&[1, 0, 0, 0, 2, 1, 0, 0, 0, b'{', 0], None).is_err());
}

fn by_topic_count(min: &usize, l: &Log) -> Result<Decision, Error> {
    match l.topics().len() {
        0 => Err("no topics".into()),
        n if n >= *min => Ok(Decision::KeepWith(json!({ "n": n }))),
        1 => Ok(Decision::Keep),
        _ => Ok(Decision::Drop),
    }
}

#[test]
fn run_native_goes_through_the_abi() {
    let logs = fixtures();
    let r = run_native(by_topic_count, "3", &logs[..4]);
    assert_eq!(
        r,
        Ok(vec![
            Decision::KeepWith(json!({"n": 3})),
            Decision::Keep,
            Decision::KeepWith(json!({"n": 4})),
            Decision::KeepWith(json!({"n": 3})),
        ])
    );
    // null and empty config mean default (0: every log with a topic is kept with payload).
    assert_eq!(
        run_native(by_topic_count, "null", &logs[..1])
            .unwrap()
            .len(),
        1
    );
    assert_eq!(run_native(by_topic_count, "", &logs[..1]).unwrap().len(), 1);
    // The zero-topic log fails the batch at its index.
    assert_eq!(
        run_native(by_topic_count, "3", &logs),
        Err((4, "no topics".into()))
    );
}

#[test]
fn process_batch_stops_at_first_error() {
    let logs = fixtures();
    let input = encode_batch(&logs);
    let mut out = Vec::new();
    let calls = std::cell::Cell::new(0);
    let f = |_: &(), l: &Log| {
        calls.set(calls.get() + 1);
        if l.topics().len() == 4 {
            Err("four")
        } else {
            Ok(Decision::Keep)
        }
    };
    process_batch(&(), &input, f, &mut out).unwrap();
    assert_eq!(calls.get(), 3);
    let o = decode_output(&out, Some(5)).unwrap();
    assert_eq!(
        o.decisions,
        [
            Decision::Keep,
            Decision::Keep,
            Decision::Drop,
            Decision::Drop,
            Decision::Drop
        ]
    );
    assert_eq!(o.error, Some((2, "four".into())));
    assert!(process_batch(&(), &input[..10], f, &mut out).is_err());
}

#[test]
fn config_parsing() {
    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct C {
        x: u32,
    }
    assert_eq!(parse_config::<C>(b""), Ok(C::default()));
    assert_eq!(parse_config::<C>(b" null\n"), Ok(C::default()));
    assert_eq!(parse_config::<C>(br#"{"x":5}"#), Ok(C { x: 5 }));
    let err = parse_config::<C>(br#"{"y":5}"#).unwrap_err();
    assert!(
        err.starts_with("invalid config: unknown field `y`"),
        "{err}"
    );
}

#[test]
fn logging_is_captured_natively() {
    take_logs();
    crate::info!("hello {}", 42);
    crate::error!("plain");
    crate::trace!("t");
    assert_eq!(
        take_logs(),
        vec![
            (Level::Info, "hello 42".into()),
            (Level::Error, "plain".into()),
            (Level::Trace, "t".into())
        ]
    );
    assert!(take_logs().is_empty());
}

#[test]
fn json_rpc_log_parsing() {
    let l = log_from_json(
        r#"{"address":"0x00000000000000000000000000000000000000AA","topics":[],"data":"0x",
            "blockNumber":null,"blockHash":null,"removed":true}"#,
    )
    .unwrap();
    assert_eq!(
        l.address,
        address!("0x00000000000000000000000000000000000000aa")
    );
    assert_eq!(l.block_number, 0);
    assert!(l.removed);
    assert!(log_from_json(r#"{"topics":[]}"#).is_err());
    assert!(log_from_json(r#"{"address":"0x00","topics":[]}"#).is_err());
    assert!(logs_from_jsonl("\n\n").unwrap().is_empty());
}

mod exported {
    use crate::{Decision, Log};
    #[derive(serde::Deserialize, Default)]
    pub struct Cfg {}
    pub fn process(_: &Cfg, _: &Log) -> Result<Decision, String> {
        Ok(Decision::Drop)
    }
    crate::export_plugin!(Cfg, process);
}
