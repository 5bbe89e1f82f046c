use erc20_transfers::{Config, process, process_via_value};
use pipeline_sdk::testing::{logs_from_jsonl, run_native, run_one};
use pipeline_sdk::{Decision, U256, json, parse_config};

/// Real mainnet logs (lines 1, 2, 17, 60, 103, 116, 215, 888, 1856, 5789, 19735 of
/// `fixtures/mainnet-logs.jsonl`).
const FIXTURES: &str = include_str!("fixtures.jsonl");

fn keep(token: &str, from: &str, to: &str, value: &str) -> Decision {
    Decision::KeepWith(json!({"token": token, "from": from, "to": to, "value": value}))
}

fn expected_all() -> Vec<Decision> {
    vec![
        keep(
            "0xf4eced2f682ce333f96f2d8966c613ded8fc95dd",
            "0x1b63142628311395ceafeea5667e7c9026c862ca",
            "0xac4df82fe37ea2187bc8c011a23d743b4f39019a",
            "100000",
        ),
        keep(
            "0xf4eced2f682ce333f96f2d8966c613ded8fc95dd",
            "0x9b22a80d5c7b3374a05b446081f97d0a34079e7f",
            "0x66f183060253cfbe45beff1e6e7ebbe318c81e56",
            "200000",
        ),
        Decision::Drop, // 2-topic event
        keep(
            "0x86fa049857e0209aa7d9e616f7eb3b3b78ecfdb0",
            "0xd0a6e6c54dbc68db5db3a091b171a77407ff7ccf",
            "0x37f8633ef0daa0052c1d0591478a792b1f450971",
            "0",
        ),
        keep(
            "0x68aa3f232da9bdc2343465545794ef3eea5209bd",
            "0x0000000000000000000000000000000000000000",
            "0x33705f983c202dfdad58c99359c7cf449b520a3d",
            "17400000000000000000000",
        ),
        Decision::Drop, // Approval
        keep(
            "0x77777779b121ccf5cecda0edc3502c6085914fa5",
            "0x1b0556afc65528c96252b5d3d176f7c3788e9b59",
            "0x70707270785f133a4b0b4f8338ef56eefdaeec9e",
            "70000000000000000000000000",
        ),
        Decision::Drop, // 1-topic Transfer (CryptoKitties)
        Decision::Drop, // ERC-721 Transfer (4 topics)
        Decision::Drop, // Uniswap V3 Swap
        Decision::Drop, // no topics
    ]
}

#[test]
fn default_config_keeps_every_erc20_transfer() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    assert_eq!(logs.len(), 11);
    assert_eq!(run_native(process, "null", &logs), Ok(expected_all()));
    assert_eq!(run_native(process, "{}", &logs), Ok(expected_all()));
}

#[test]
fn min_value_filters() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    let out = run_native(process, r#"{"min_value":"200000"}"#, &logs).unwrap();
    let kept: Vec<_> = out.iter().filter(|d| **d != Decision::Drop).collect();
    assert_eq!(kept.len(), 3);
    let mut expected = expected_all();
    expected[0] = Decision::Drop;
    expected[3] = Decision::Drop;
    assert_eq!(out, expected);

    let out = run_native(
        process,
        r#"{"min_value":"70000000000000000000000001"}"#,
        &logs,
    )
    .unwrap();
    assert!(out.iter().all(|d| *d == Decision::Drop));
    // A JSON integer is accepted too.
    assert_eq!(
        run_native(process, r#"{"min_value":200001}"#, &logs).unwrap(),
        out_with_big(&logs)
    );
}

fn out_with_big(logs: &[pipeline_sdk::OwnedLog]) -> Vec<Decision> {
    run_native(process, r#"{"min_value":"17400000000000000000000"}"#, logs).unwrap()
}

#[test]
fn config_validation() {
    let c: Config = parse_config(br#"{"min_value":"1000000"}"#).unwrap();
    assert_eq!(c.min_value, U256::from(1_000_000));
    assert_eq!(
        parse_config::<Config>(b"null").unwrap().min_value,
        U256::ZERO
    );
    for bad in [
        r#"{"min_value":"abc"}"#,
        r#"{"min_value":"-1"}"#,
        r#"{"min_value":""}"#,
        r#"{"min_value":"0x10"}"#,
        r#"{"min_value":"1e6"}"#,
        r#"{"min_value":-5}"#,
        r#"{"min_value":"1000000000000000000000000000000000000000000000000000000000000000000000000000000"}"#,
        r#"{"minValue":"1"}"#,
        r#""1000""#,
    ] {
        let err = parse_config::<Config>(bad.as_bytes()).unwrap_err();
        assert!(err.starts_with("invalid config: "), "{bad}: {err}");
        if bad.contains("min_value") {
            assert!(
                err.contains("min_value must be a decimal string"),
                "{bad}: {err}"
            );
        }
    }
}

/// The payload of the first fixture line, byte for byte (keys sorted, as a `serde_json::Value`
/// map has always written them).
#[test]
fn payload_bytes() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    let Ok(Decision::KeepJson(p)) = run_one(process, &Config::default(), &logs[0]) else {
        panic!("expected a payload")
    };
    assert_eq!(
        std::str::from_utf8(p.as_bytes()).unwrap(),
        r#"{"from":"0x1b63142628311395ceafeea5667e7c9026c862ca","to":"0xac4df82fe37ea2187bc8c011a23d743b4f39019a","token":"0xf4eced2f682ce333f96f2d8966c613ded8fc95dd","value":"100000"}"#
    );
}

/// On every recorded log, `process` decides as `process_via_value` (the `serde_json::Value` path)
/// and writes the same JSON: byte for byte where serde_json sorts map keys (its default; its
/// `preserve_order` feature, which the host enables in a workspace-wide build, keeps insertion
/// order), and always the same value once parsed.
#[test]
fn payload_matches_the_value_path_on_recorded_logs() {
    let sorted = serde_json::to_string(&json!({"b": 1, "a": 2})).unwrap() == r#"{"a":2,"b":1}"#;
    let recorded = [
        FIXTURES,
        include_str!("../../../fixtures/mainnet-sample.jsonl"),
        include_str!("../../../fixtures/optimism-logs.jsonl"),
        include_str!("../../../fixtures/arbitrum-one-logs.jsonl"),
    ];
    let config = Config::default();
    let mut kept = 0;
    for log in recorded
        .iter()
        .flat_map(|text| logs_from_jsonl(text).unwrap())
    {
        let fast = run_one(process, &config, &log).unwrap();
        let slow = run_one(process_via_value, &config, &log).unwrap();
        match (&fast, &slow) {
            (Decision::Drop, Decision::Drop) => {}
            (Decision::KeepJson(payload), Decision::KeepWith(value)) => {
                kept += 1;
                assert_eq!(&payload.to_value().unwrap(), value);
                if sorted {
                    assert_eq!(payload.as_bytes(), serde_json::to_vec(value).unwrap());
                }
            }
            _ => panic!("{fast:?} versus {slow:?} for {log:?}"),
        }
    }
    assert!(kept >= 100, "only {kept} transfers kept");
}
