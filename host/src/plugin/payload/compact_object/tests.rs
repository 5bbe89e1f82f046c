use proptest::prelude::*;
use serde_json::value::RawValue;

use super::classify::Isa;
use super::{compact_object, compact_object_with};

/// `Some((0, len))` when the path takes `bytes`, with `bytes` then appended after what the output
/// held; `None` with the output as it was. The same on every instruction set this CPU has.
fn taken(bytes: &[u8]) -> Option<(usize, usize)> {
    let judged = taken_with(None, bytes);
    for isa in Isa::available() {
        assert_eq!(
            taken_with(Some(isa), bytes),
            judged,
            "{isa:?}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
    judged
}

/// [`taken`] on `isa`, or on the one [`compact_object`] chooses.
fn taken_with(isa: Option<Isa>, bytes: &[u8]) -> Option<(usize, usize)> {
    let before = b"earlier payloads".to_vec();
    let mut out = before.clone();
    let is_taken = match isa {
        Some(isa) => compact_object_with(isa, bytes, &mut out),
        None => compact_object(bytes, &mut out),
    };
    if is_taken {
        assert_eq!(out, [&before[..], bytes].concat());
        Some((0, bytes.len()))
    } else {
        assert_eq!(out, before);
        None
    }
}

/// serde_json's judgement: whether the text is one JSON value. UTF-8 is not this path's check
/// (the caller checks it over all payloads at once), so a byte sequence that is not UTF-8 is judged
/// as its replacement character, which keeps it inside or outside a string as it was.
fn valid(bytes: &[u8]) -> bool {
    RawValue::from_string(String::from_utf8_lossy(bytes).into_owned()).is_ok()
}

/// Taken only if valid, and then as the whole text.
fn never_wrong(bytes: &[u8]) {
    if let Some(found) = taken(bytes) {
        let text = String::from_utf8_lossy(bytes);
        assert_eq!(found, (0, bytes.len()), "{text}");
        assert!(valid(bytes), "taken but not JSON: {text}");
    }
}

#[test]
fn takes_its_shape_and_leaves_the_rest() {
    let shapes = [
        r#"{"a":"b"}"#,
        r#"{"":""}"#,
        r#"{"a":"b","c":"d"}"#,
        r#"{"k{":"v}","[":"]:,","é":"ü"}"#,
        r#"{"from":"0x00000000000000000000000000000000000000ab","to":"0x00000000000000000000000000000000000000cd","token":"0xdac17f958d2ee523a2206206994597c13d831ec7","value":"1000000"}"#,
        r#"{"a":1}"#,
        r#"{"a":0,"b":-0,"c":-1.5e+3,"d":2E-7,"e":10.25}"#,
        r#"{"a":true,"b":false,"c":null,"d":"x"}"#,
        r#"{"amount0":"-1","pool":"0xab","price":0.000123456789,"tick":-201234}"#,
    ];
    for text in shapes {
        assert_eq!(taken(text.as_bytes()), Some((0, text.len())), "{text}");
    }
    let left = [
        "{}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":"b",}"#,
        r#"{,"a":"b"}"#,
        r#"{"a":"b","c"}"#,
        r#"{"a":"b":"c"}"#,
        r#"{"a","b"}"#,
        r#"{"a"::"b"}"#,
        r#"{"a":"b""c":"d"}"#,
        r#"{"a":"b""c"}"#,
        r#"{"a""b":"c"}"#,
        r#"{"a":"b" }"#,
        r#"{ "a":"b"}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":1e}"#,
        r#"{"a":--1}"#,
        r#"{"a":+1}"#,
        r#"{"a":tru}"#,
        r#"{"a":truee}"#,
        r#"{"a":nul,"b":"c"}"#,
        r#"{"a":1 }"#,
        r#"{"a":1,}"#,
        r#"{"a":1"b":"c"}"#,
        r#"{"a":1}}"#,
        r#"{"a":1}"c":"d"}"#,
        r#"{"a":"b",1:"c"}"#,
        r#"{"a"1:"b"}"#,
        r#"{"a":1:"b"}"#,
        r#"{"a":1x2}"#,
        r#"{"a":"b\"c"}"#,
        r#"{"a":"b\nc"}"#,
        "{\"a\":\"b\tc\"}",
        r#"{"a":{"b":"c"}}"#,
        r#"{"a":["b"]}"#,
        r#"{"a":"b}"#,
        r#"{"a:"b"}"#,
        r#"["a","b"]"#,
        r#""{}""#,
    ];
    for text in left {
        assert_eq!(taken(text.as_bytes()), None, "{text}");
    }
}

/// Separators, quotes and ends at every offset around the 64-byte block edges.
#[test]
fn block_edges() {
    for key in 0..140 {
        for value in [0, 1, 2, 60, 61, 62, 63, 64, 65, 127] {
            let text = format!(r#"{{"{}":"{}"}}"#, "k".repeat(key), "v".repeat(value));
            assert_eq!(taken(text.as_bytes()), Some((0, text.len())), "{text}");
            let two = format!(r#"{text},"x":"y"}}"#).replacen("}", "", 1);
            assert_eq!(taken(two.as_bytes()), Some((0, two.len())), "{two}");
            let broken = two.replace(r#"","#, r#"""#);
            assert_eq!(taken(broken.as_bytes()), None, "{broken}");
            let unclosed = format!(r#"{{"{}":"{}}}"#, "k".repeat(key), "v".repeat(value));
            assert_eq!(taken(unclosed.as_bytes()), None, "{unclosed}");
            // A key followed by a comma, a value by a colon: its end may be a block's last byte.
            let key_then_comma =
                format!(r#"{{"{}","{}":"x"}}"#, "k".repeat(key), "v".repeat(value));
            assert_eq!(taken(key_then_comma.as_bytes()), None, "{key_then_comma}");
            let value_then_colon =
                format!(r#"{{"a":"{}":"{}"}}"#, "k".repeat(key), "v".repeat(value));
            assert_eq!(
                taken(value_then_colon.as_bytes()),
                None,
                "{value_then_colon}"
            );
        }
    }
}

/// A compact, flat object: strings long enough to cross blocks, with structural characters and
/// non-ASCII inside them; numbers in every JSON form; literals.
fn compact_object_text() -> impl Strategy<Value = String> {
    let text = "[a-z0-9_é{}:,\\[\\] ]{0,70}";
    let value = prop_oneof![
        3 => text.prop_map(|t| format!("\"{t}\"")),
        1 => "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        1 => prop_oneof![Just("true"), Just("false"), Just("null")].prop_map(str::to_owned),
    ];
    let field = (text, value).prop_map(|(k, v)| format!("\"{k}\":{v}"));
    proptest::collection::vec(field, 1..6).prop_map(|fields| format!("{{{}}}", fields.join(",")))
}

/// A change: a byte set to one that matters to JSON, removed, or inserted.
fn edit() -> impl Strategy<Value = (usize, u8, u8)> {
    let bytes = prop_oneof![
        Just(b'"'),
        Just(b'\\'),
        Just(b':'),
        Just(b','),
        Just(b'{'),
        Just(b'}'),
        Just(b' '),
        Just(b'1'),
        Just(b'-'),
        Just(b'.'),
        Just(b'e'),
        Just(b't'),
        Just(0x01),
        Just(0xc3),
        Just(b'a'),
    ];
    (any::<usize>(), 0u8..3, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn takes_every_compact_object(text in compact_object_text()) {
        prop_assert_eq!(taken(text.as_bytes()), Some((0, text.len())));
        prop_assert!(valid(text.as_bytes()));
    }

    #[test]
    fn edits_are_taken_only_when_valid(
        text in compact_object_text(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let mut bytes = text.into_bytes();
        for (at, kind, byte) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        never_wrong(&bytes);
    }

    /// Braces around the bytes this path tells apart, in any order.
    #[test]
    fn random_bytes_are_taken_only_when_valid(
        inner in proptest::collection::vec(
            prop_oneof![
                Just(b'"'),
                Just(b':'),
                Just(b','),
                Just(b'a'),
                Just(b'{'),
                Just(b'}'),
                Just(b'1'),
                Just(b'0'),
                Just(b'-'),
            ],
            0..140,
        ),
    ) {
        let bytes = [&b"{"[..], &inner, b"}"].concat();
        never_wrong(&bytes);
    }
}
