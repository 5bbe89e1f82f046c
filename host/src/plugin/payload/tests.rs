use super::*;
use proptest::prelude::*;

/// What the host accepted before: serde_json's raw value of the text, if any.
fn reference(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8(bytes.to_vec()).ok()?;
    RawValue::from_string(text)
        .ok()
        .map(|raw| raw.get().to_owned())
}

fn agrees(bytes: &[u8]) {
    let ours = Payload::parse(bytes).ok().map(|p| p.get().to_owned());
    assert_eq!(
        ours,
        reference(bytes),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn accepts_and_refuses_what_serde_json_does() {
    let cases: &[&str] = &[
        r#"{"from":"0xab","to":"0xcd","value":"1000"}"#,
        " \t\n{ \"a\" : [ 1 , -2.5e+3 , 0 , true , false , null , { } , [ ] ] }\r\n",
        r#""say \"hi\"\n\\ \/ \b\f\r\t \u00e9 \uD800 \uDFFF""#,
        "\"naïve ✓ 😀\"",
        "0",
        "-0.0E-0",
        "123456789012345678901234567890",
        "[[[[]]]]",
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":1 \"b\":2}",
        "[1 2]",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "tru",
        "nulll",
        "True",
        "\"unterminated",
        "\"tab\there\"",
        "\"nul\u{0}\"",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"\\u123\"",
        "1 2",
        "{}x",
        "[1]]",
        "{\"a\":[1}",
        "[\"a\":1]",
        "\"0123456789abcdef0123456789abcdef\"",
        // Flat objects (their own fast path) and near misses that fall back to the full check.
        r#" {"a" : "x" , "b":-1.5e3,"c":true,"d":null,"e":false} "#,
        r#"{"a":"x","b":[1,{"c":2}]}"#,
        r#"{"a":"\u00e9","b":""}"#,
        r#"{"a":"x",}"#,
        r#"{"a":"x"}}"#,
        r#"{"a":"x"} x"#,
        r#"{"a":"x" "b":1}"#,
        r#"{"a":tru}"#,
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{,}"#,
        r#"{"a":1}{"#,
        r#"{"a":01}"#,
        r#"{"a":"x"#,
        "{\"a\":\"x\"}\u{c}",
        "{\"a\":\"é\"}",
        "\"0123456789abcdef\\\"0123456789abcdef\"",
    ];
    for case in cases {
        agrees(case.as_bytes());
    }
    agrees(&[b'"', 0xff, b'"']);
}

#[test]
fn any_depth_passes_as_in_serde_json() {
    for depth in [1, 127, 128, 129, 130, 1000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        agrees(arrays.as_bytes());
        let objects = format!("{}1{}", "{\"k\":".repeat(depth), "}".repeat(depth));
        agrees(objects.as_bytes());
        let mixed = format!("{}1{}", "[{\"k\":".repeat(depth), "}]".repeat(depth));
        agrees(mixed.as_bytes());
        agrees(&mixed.as_bytes()[..mixed.len() - 1]);
        let crossed = format!("{}1{}", "[{\"k\":".repeat(depth), "]}".repeat(depth));
        agrees(crossed.as_bytes());
    }
}

/// Text made of JSON's own pieces, so random cases are often valid or nearly so.
fn jsonish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(","),
        Just(":"),
        Just("\""),
        Just("\\"),
        Just("\\u00e9"),
        Just("\\n"),
        Just("u"),
        Just("true"),
        Just("null"),
        Just("fals"),
        Just("0"),
        Just("7"),
        Just("-"),
        Just("."),
        Just("e"),
        Just("+"),
        Just(" "),
        Just("\n"),
        Just("\u{1}"),
        Just("é"),
        Just("\"key\":"),
        Just("\"abcdefghij\""),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(".*", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_agree(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        agrees(&bytes);
    }

    #[test]
    fn json_pieces_agree(text in jsonish()) {
        agrees(text.as_bytes());
    }

    /// Every value serde_json writes passes, compact or pretty, and one byte changed in it is
    /// judged as serde_json judges it.
    #[test]
    fn written_values_pass_and_mutations_agree(
        v in value(),
        pretty in any::<bool>(),
        flip in any::<(usize, u8)>(),
    ) {
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            serde_json::to_string(&v).unwrap()
        };
        let parsed = Payload::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(parsed.get(), text.as_str());
        let mut bytes = text.into_bytes();
        let at = flip.0 % bytes.len();
        bytes[at] = flip.1;
        agrees(&bytes);
    }
}
