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

/// Every byte value at every place of string bodies up to 40 bytes long, in a flat object and as
/// a bare value: the string skip reads sixteen bytes at a time, then eight, then one, so a byte
/// that ends the run must be found wherever it falls (each width, each boundary, the tail).
#[test]
fn any_byte_anywhere_in_a_string_agrees() {
    for len in 1..=40 {
        for at in 0..len {
            for byte in 0..=255u8 {
                let mut body = vec![b'a'; len];
                body[at] = byte;
                let mut object = br#"{"k":""#.to_vec();
                object.extend_from_slice(&body);
                object.extend_from_slice(br#"","n":1}"#);
                agrees(&object);
                let mut bare = vec![b'"'];
                bare.extend_from_slice(&body);
                bare.push(b'"');
                agrees(&bare);
            }
        }
    }
}

/// The first byte from `i` on that ends a run of plain string characters, one byte at a time.
fn first_special(b: &[u8], i: usize) -> usize {
    (i..b.len())
        .find(|&k| matches!(b[k], b'"' | b'\\' | 0..0x20))
        .unwrap_or(b.len())
}

proptest! {
    /// Both string skips keep their promise on any text from any offset: the SSE2 one (x86-64)
    /// finds exactly the first byte that ends the run (or the end), the SWAR one (every other
    /// target, and the SSE2 one's fallback for texts under sixteen bytes) stops there or, with no
    /// such byte before them, within the last eight bytes.
    #[test]
    fn string_skips_stop_where_a_run_ends(
        text in proptest::collection::vec(prop_oneof![
            4 => Just(b'a'), 1 => Just(b'"'), 1 => Just(b'\\'), 1 => Just(0x1f), 1 => Just(0x80),
            1 => any::<u8>(),
        ], 0..80),
        from in any::<usize>(),
    ) {
        let i = if text.is_empty() { 0 } else { from % (text.len() + 1) };
        let exact = first_special(&text, i);
        let swar = plain_run_swar(&text, i);
        prop_assert!(swar >= i && swar <= exact);
        prop_assert!(swar == exact || text.len() - swar < 8, "{swar} {exact}");
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if text.len() >= 16 {
            prop_assert_eq!(plain_run_sse2(&text, i), exact);
        }
    }
}

/// `text` passes as the value `kept` (it without surrounding whitespace), and with the byte at
/// `flip.0` (modulo its length) set to `flip.1` it is judged as serde_json judges it.
fn passes_and_one_byte_change_agrees(text: &str, kept: &str, flip: (usize, u8)) {
    assert_eq!(Payload::parse(text.as_bytes()).unwrap().get(), kept);
    let mut bytes = text.as_bytes().to_vec();
    let at = flip.0 % bytes.len();
    bytes[at] = flip.1;
    agrees(&bytes);
}

/// A flat object's text (the common payload, which `flat_object` checks): keys and string values
/// with structural characters and non-ASCII inside, numbers in every JSON form, literals,
/// optional spaces.
fn flat_object_text() -> impl Strategy<Value = String> {
    let text = "[a-z0-9 _é{}:,]{0,12}";
    let value = prop_oneof![
        text.prop_map(|t| format!("\"{t}\"")),
        "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
    ];
    let space = prop_oneof![3 => Just(""), 1 => Just(" ")];
    let field = (text, space.clone(), value, space.clone())
        .prop_map(|(k, s1, v, s2)| format!("\"{k}\"{s1}:{s2}{v}"));
    (proptest::collection::vec(field, 0..6), space.clone(), space)
        .prop_map(|(fields, s1, s2)| format!("{s1}{{{}}}{s2}", fields.join(",")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Every flat object passes, and every one-byte change of it is judged as serde_json judges it.
    #[test]
    fn flat_objects_and_their_mutations_agree(text in flat_object_text(), flip in any::<(usize, u8)>()) {
        passes_and_one_byte_change_agrees(&text, text.trim(), flip);
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
        passes_and_one_byte_change_agrees(&text, &text, flip);
    }
}
