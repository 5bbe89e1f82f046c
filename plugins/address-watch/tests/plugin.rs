use address_watch::{Config, process};
use pipeline_sdk::testing::{logs_from_jsonl, run_native};
use pipeline_sdk::{Decision, json, parse_config};

/// Real mainnet logs (lines 1, 2, 17, 103, 1856, 5789, 6113, 19735 of
/// `fixtures/mainnet-logs.jsonl`).
const FIXTURES: &str = include_str!("fixtures.jsonl");

#[test]
fn matches_emitter_and_address_topics() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    // Mixed case on purpose; the token, the Uniswap V3 router, a mint recipient, a Swap
    // sender+recipient.
    let config = r#"{"addresses": [
        "0xF4ECED2F682CE333F96F2D8966C613DED8FC95DD",
        "0xe592427a0aece92de3edee1f18e0157c05861564",
        "0x33705f983c202dfdad58c99359c7cf449b520a3d",
        "0x3765521db364ee269e9540970fd21e5a3e825699",
        "0x3765521db364ee269e9540970fd21e5a3e825699"
    ]}"#;
    let token = "0xf4eced2f682ce333f96f2d8966c613ded8fc95dd";
    let out = run_native(process, config, &logs).unwrap();
    assert_eq!(
        out,
        vec![
            Decision::KeepWith(json!({"matched": [token], "via": ["emitter"]})),
            Decision::KeepWith(json!({"matched": [token], "via": ["emitter"]})),
            Decision::Drop,
            Decision::KeepWith(json!({
                "matched": ["0x33705f983c202dfdad58c99359c7cf449b520a3d"], "via": ["topic2"]
            })),
            Decision::Drop,
            Decision::KeepWith(json!({
                "matched": ["0xe592427a0aece92de3edee1f18e0157c05861564"], "via": ["topic1"]
            })),
            Decision::KeepWith(json!({
                "matched": ["0x3765521db364ee269e9540970fd21e5a3e825699"],
                "via": ["topic1", "topic2"]
            })),
            Decision::Drop,
        ]
    );
}

#[test]
fn non_address_topics_do_not_match() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    // Line 1856 is an ERC-721 Transfer whose topic 3 is token id 0x6f51: it has 12 zero bytes,
    // so it reads as address 0x…6f51; line 17's topic 1 is a hash and never matches.
    let config = r#"{"addresses": ["0x0000000000000000000000000000000000006f51"]}"#;
    let out = run_native(process, config, &logs).unwrap();
    assert_eq!(
        out[4],
        Decision::KeepWith(json!({
            "matched": ["0x0000000000000000000000000000000000006f51"], "via": ["topic3"]
        }))
    );
    assert_eq!(out.iter().filter(|d| **d != Decision::Drop).count(), 1);
}

#[test]
fn default_config_matches_nothing() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    assert!(
        run_native(process, "null", &logs)
            .unwrap()
            .iter()
            .all(|d| *d == Decision::Drop)
    );
}

#[test]
fn config_validation() {
    let c: Config = parse_config(br#"{"addresses":["0x00000000000000000000000000000000000000bb","0x00000000000000000000000000000000000000aa","0x00000000000000000000000000000000000000AA"]}"#).unwrap();
    assert_eq!(c.addresses.len(), 2);
    assert!(c.addresses[0] < c.addresses[1]);
    for bad in [
        r#"{"addresses":["0x1234"]}"#,
        r#"{"addresses":["00000000000000000000000000000000000000aa00"]}"#,
        r#"{"addresses":["0xzz000000000000000000000000000000000000aa"]}"#,
        r#"{"addresses":"0x00000000000000000000000000000000000000aa"}"#,
        r#"{"address":[]}"#,
    ] {
        let err = parse_config::<Config>(bad.as_bytes()).unwrap_err();
        assert!(err.starts_with("invalid config: "), "{bad}: {err}");
    }
    let err = parse_config::<Config>(
        br#"{"addresses":["0x00000000000000000000000000000000000000aa","0x12"]}"#,
    )
    .unwrap_err();
    assert!(err.contains("addresses[1] = \"0x12\" is not"), "{err}");
}
