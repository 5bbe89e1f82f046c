use passthrough::process;
use pipeline_sdk::Decision;
use pipeline_sdk::testing::{logs_from_jsonl, run_native};

/// Real mainnet logs (lines 1, 17, 888, 1856, 5789, 19735 of `fixtures/mainnet-logs.jsonl`):
/// 3-, 2-, 1-, 4- and 0-topic events.
const FIXTURES: &str = include_str!("fixtures.jsonl");

#[test]
fn keeps_everything() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    assert_eq!(logs.len(), 6);
    for config in ["null", "", "{}", r#"{"anything":[1,2]}"#] {
        assert_eq!(
            run_native(process, config, &logs),
            Ok(vec![Decision::Keep; 6]),
            "{config}"
        );
    }
    assert_eq!(run_native(process, "null", &[]), Ok(vec![]));
}
