use pipeline_sdk::testing::{logs_from_jsonl, run_native, run_one};
use pipeline_sdk::{Decision, parse_config};
use serde_json::Value;
use uniswap_v3_swaps::{Config, process};

/// Real mainnet logs (lines 5789, 6113, 6078, 11535, 19296 are V3 swaps; 3722 a V2 swap,
/// 1 an ERC-20 Transfer, 19735 a topic-less log) from `fixtures/mainnet-logs.jsonl`.
const FIXTURES: &str = include_str!("fixtures.jsonl");

/// pool, sender, recipient, amount0, amount1, sqrtPriceX96, liquidity, tick, price.
type Expected = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
    f64,
);

/// Expected fields, computed independently (Python big integers) from the raw logs.
const EXPECTED: [Expected; 5] = [
    (
        "0x4e68ccd3e89f51c3074ca5072bbac773960dfa36",
        "0xe592427a0aece92de3edee1f18e0157c05861564",
        "0x4d246be90c2f36730bb853ad41d0a189061192d3",
        "-83055530599724551961",
        "200000000000",
        "3883092957074042185804613",
        "7378982887576884324",
        -198480,
        2.4021294458674525e-09,
    ),
    (
        "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640",
        "0x3765521db364ee269e9540970fd21e5a3e825699",
        "0x3765521db364ee269e9540970fd21e5a3e825699",
        "447283100",
        "-209363465374808009",
        "1714538344471034906714100783973316",
        "11239483214956745915",
        199656,
        468311946.911657,
    ),
    (
        "0x11b815efb8f581194ae79006d24e0d814b7697f6",
        "0xe592427a0aece92de3edee1f18e0157c05861564",
        "0xe592427a0aece92de3edee1f18e0157c05861564",
        "-91887309600931557",
        "220847489",
        "3883234964151184815280135",
        "231651830172979190",
        -198479,
        2.4023051437571338e-09,
    ),
    (
        "0xe0554a476a092703abdb3ef35c80e0d76d32939f",
        "0x0000000099cb7fc48a935bceb9f05bbae54e8987",
        "0x0000000099cb7fc48a935bceb9f05bbae54e8987",
        "41286048401",
        "-26800399242923166208",
        "2018272821884208030565225938899333",
        "2526580130902425543",
        202918,
        648934071.0526996,
    ),
    (
        "0xc7bbec68d12a0d1830360f8ec58fa599ba1b0e9b",
        "0xe592427a0aece92de3edee1f18e0157c05861564",
        "0x767af52d988d1241a346851a1b39ccd11357376e",
        "-219328578887636659",
        "838953190",
        "4899930888527896817968577",
        "271863151141271760",
        -193828,
        3.824905780481311e-09,
    ),
];

fn check(d: &Decision, e: &Expected) {
    let Decision::KeepWith(v) = d else {
        panic!("expected a payload, got {d:?}")
    };
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .to_owned()
    };
    assert_eq!(
        (
            s("pool"),
            s("sender"),
            s("recipient"),
            s("amount0"),
            s("amount1")
        ),
        (e.0.into(), e.1.into(), e.2.into(), e.3.into(), e.4.into())
    );
    assert_eq!(
        (s("sqrtPriceX96"), s("liquidity")),
        (e.5.into(), e.6.into())
    );
    assert_eq!(v["tick"], Value::from(e.7));
    let price = v["price"].as_f64().unwrap();
    assert!(
        ((price - e.8) / e.8).abs() < 1e-12,
        "price {price} vs {}",
        e.8
    );
    assert_eq!(v.as_object().unwrap().len(), 9);
}

#[test]
fn decodes_v3_swaps_and_drops_the_rest() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    let out = run_native(process, "null", &logs).unwrap();
    assert_eq!(out.len(), 8);
    for (d, e) in out.iter().zip(&EXPECTED) {
        check(d, e);
    }
    assert_eq!(out[5..], [Decision::Drop, Decision::Drop, Decision::Drop]);
}

/// The payload of the first swap, byte for byte: keys sorted and numbers formatted as the
/// `serde_json::Value` this plugin built before wrote them.
#[test]
fn payload_bytes() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    let Ok(Decision::KeepJson(p)) = run_one(process, &Config::default(), &logs[0]) else {
        panic!("expected a payload")
    };
    assert_eq!(
        std::str::from_utf8(p.as_bytes()).unwrap(),
        concat!(
            r#"{"amount0":"-83055530599724551961","amount1":"200000000000","#,
            r#""liquidity":"7378982887576884324","#,
            r#""pool":"0x4e68ccd3e89f51c3074ca5072bbac773960dfa36","price":2.4021294458674525e-9,"#,
            r#""recipient":"0x4d246be90c2f36730bb853ad41d0a189061192d3","#,
            r#""sender":"0xe592427a0aece92de3edee1f18e0157c05861564","#,
            r#""sqrtPriceX96":"3883092957074042185804613","tick":-198480}"#
        )
    );
}

#[test]
fn pools_filter() {
    let logs = logs_from_jsonl(FIXTURES).unwrap();
    let config = r#"{"pools": ["0x88E6A0c2dDD26FEEb64F039a2c41296FcB3f5640",
                               "0xc7bbec68d12a0d1830360f8ec58fa599ba1b0e9b"]}"#;
    let out = run_native(process, config, &logs).unwrap();
    let kept: Vec<usize> = (0..out.len())
        .filter(|&i| out[i] != Decision::Drop)
        .collect();
    assert_eq!(kept, [1, 4]);
    check(&out[1], &EXPECTED[1]);
    check(&out[4], &EXPECTED[4]);
    // An empty list means every pool.
    assert_eq!(
        run_native(process, r#"{"pools":[]}"#, &logs),
        run_native(process, "{}", &logs)
    );
}

#[test]
fn config_validation() {
    assert!(
        parse_config::<Config>(br#"{"pools":["0x123"]}"#)
            .unwrap_err()
            .contains("pools[0]")
    );
    assert!(parse_config::<Config>(br#"{"pool":[]}"#).is_err());
    assert!(parse_config::<Config>(b"null").unwrap().pools.is_empty());
}
