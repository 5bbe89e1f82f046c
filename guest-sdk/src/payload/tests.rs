use super::*;
use crate::{Decision, decode_output, encode_output};
use alloy_primitives::{Address, I256, U160, U256, U512, address, hex};
use serde_json::{Value, json};

fn text(p: &JsonPayload) -> &str {
    core::str::from_utf8(p.as_bytes()).unwrap()
}

fn one_string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write::string(&mut out, s);
    out
}

/// A small deterministic generator (xorshift64*), enough to spread test values.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn strings_are_escaped_exactly_as_serde_json_does() {
    for c in (0u32..0x80).chain([0xa0, 0x2028, 0x2029, 0xfffd, 0x1f600]) {
        let s = format!("a{}b", char::from_u32(c).unwrap());
        let ours = one_string(&s);
        assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "U+{c:04X}");
        assert_eq!(serde_json::from_slice::<String>(&ours).unwrap(), s);
    }
    let cases = [
        ("", r#""""#),
        ("plain", r#""plain""#),
        ("q\"b\\s/", r#""q\"b\\s/""#),
        ("\u{8}\t\n\u{c}\r", r#""\b\t\n\f\r""#),
        ("\0\u{1}\u{1f}\u{7f}", "\"\\u0000\\u0001\\u001f\u{7f}\""), // DEL is not escaped
        ("é ü 😀 \u{2028}", "\"é ü 😀 \u{2028}\""),
        ("\"\"", r#""\"\"""#),
    ];
    for (input, expected) in cases {
        assert_eq!(
            String::from_utf8(one_string(input)).unwrap(),
            expected,
            "{input:?}"
        );
    }
    // Keys are escaped too.
    let p = JsonObject::new().bool("a\"\n", true).finish();
    assert_eq!(text(&p), r#"{"a\"\n":true}"#);
    // Keys of every length around the one-copy limit (28 bytes), first or not, escaped or not.
    for len in [0, 1, 27, 28, 29, 40] {
        let plain = "k".repeat(len);
        let odd = format!("{}\t", "é".repeat(len / 2));
        let p = JsonObject::new()
            .null(&plain)
            .null(&odd)
            .bool(&plain, false)
            .finish();
        let mut expected = serde_json::Map::new();
        expected.insert(odd.clone(), serde_json::Value::Null);
        expected.insert(plain.clone(), false.into());
        assert_eq!(p.to_value().unwrap(), serde_json::Value::Object(expected));
        let written = format!(
            "{{{}:null,{}:null,{}:false}}",
            serde_json::to_string(&plain).unwrap(),
            serde_json::to_string(&odd).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
        assert_eq!(text(&p), written);
    }
    assert_eq!(p.to_value().unwrap(), json!({"a\"\n": true}));
}

#[test]
fn hex_is_lowercase_and_prefixed() {
    let mut rng = Rng(7);
    for len in [0, 1, 2, 3, 4, 5, 7, 8, 9, 20, 31, 32, 33, 64, 65, 100] {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut out = Vec::new();
        write::hex(&mut out, &bytes);
        assert_eq!(
            out,
            format!("\"{}\"", hex::encode_prefixed(&bytes)).as_bytes()
        );
    }
    // Every byte value at every place of a four-byte word (written a word at a time).
    for b in 0..=255u8 {
        let bytes = [b, b.wrapping_add(1), b.rotate_left(4), !b, b];
        let mut out = Vec::new();
        write::hex(&mut out, &bytes);
        assert_eq!(
            out,
            format!("\"{}\"", hex::encode_prefixed(bytes)).as_bytes()
        );
    }
    let a = address!("0xABCDEF0123456789abcdef0123456789ABCDEF01");
    let p = JsonArray::new().hex(a).hex(Address::ZERO).hex([]).finish();
    assert_eq!(
        text(&p),
        r#"["0xabcdef0123456789abcdef0123456789abcdef01","0x0000000000000000000000000000000000000000","0x"]"#
    );
}

fn digits(d: impl Decimal) -> String {
    let mut out = Vec::new();
    d.write_digits(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn decimals_equal_to_string() {
    let ten = U256::from(10);
    let mut u256s = vec![
        U256::ZERO,
        U256::from(1),
        U256::from(u64::MAX),
        U256::from(u64::MAX) + U256::from(1),
        U256::from(u128::MAX),
        U256::from(u128::MAX) + U256::from(1),
        U256::MAX,
        U256::MAX - U256::from(1),
    ];
    for e in [18u64, 19, 20, 27, 28, 29, 36, 37, 38, 39, 57, 76, 77] {
        let p = ten.pow(U256::from(e));
        u256s.extend([p - U256::from(1), p, p + U256::from(1)]);
    }
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let limbs = [rng.next(), rng.next(), rng.next(), rng.next()];
        // Spread the magnitudes: keep 1 to 4 limbs.
        let keep = 1 + (rng.next() % 4) as usize;
        let mut l = [0u64; 4];
        l[..keep].copy_from_slice(&limbs[..keep]);
        u256s.push(U256::from_limbs(l));
    }
    for v in &u256s {
        assert_eq!(digits(*v), v.to_string());
        let s = I256::from_raw(*v);
        assert_eq!(digits(s), s.to_string());
    }
    for s in [I256::ZERO, I256::MINUS_ONE, I256::MIN, I256::MAX] {
        assert_eq!(digits(s), s.to_string());
    }
    assert_eq!(digits(U160::MAX), U160::MAX.to_string());
    assert_eq!(digits(U512::MAX), U512::MAX.to_string());
    assert_eq!(digits(i128::MIN), i128::MIN.to_string());
    assert_eq!(digits(u128::MAX), u128::MAX.to_string());
    assert_eq!(digits(-7i8), "-7");
    let p = JsonObject::new().decimal("v", U256::MAX).finish();
    assert_eq!(p.to_value().unwrap(), json!({ "v": U256::MAX.to_string() }));
}

#[test]
fn numbers_as_serde_json_writes_them() {
    fn check(p: JsonPayload, expected: Value) {
        assert_eq!(p.as_bytes(), serde_json::to_vec(&expected).unwrap());
    }
    check(
        JsonArray::new()
            .number(0u8)
            .number(-1i32)
            .number(u64::MAX)
            .number(i64::MIN)
            .number(usize::MAX)
            .finish(),
        json!([0u8, -1i32, u64::MAX, i64::MIN, usize::MAX]),
    );
    let floats = [
        0.0,
        -0.0,
        1.0,
        0.1,
        -2.5e-300,
        1e21,
        3.824905780481311e-9,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let built = floats.iter().fold(JsonArray::new(), |a, &f| a.number(f));
    check(built.finish(), json!(floats));
    assert_eq!(text(&JsonArray::new().number(f64::NAN).finish()), "[null]");
}

#[test]
fn nested_builders_and_serde_fallback() {
    let empty = JsonObject::new().finish();
    assert_eq!(text(&empty), "{}");
    assert_eq!(text(&JsonArray::default().finish()), "[]");
    let inner = JsonObject::new().str("x", "y").finish();
    let p = JsonObject::new()
        .null("n")
        .bool("f", false)
        .object(
            "o",
            JsonObject::new()
                .number("a", 1)
                .array("e", JsonArray::new()),
        )
        .array(
            "list",
            JsonArray::new()
                .object(JsonObject::new())
                .array(JsonArray::new().number(2))
                .raw(&inner),
        )
        .raw("inner", &inner)
        .serialize("s", &("t", 3, [true]))
        .unwrap()
        .finish();
    assert_eq!(
        text(&p),
        r#"{"n":null,"f":false,"o":{"a":1,"e":[]},"list":[{},[2],{"x":"y"}],"inner":{"x":"y"},"s":["t",3,[true]]}"#
    );
    // A map with non-string keys does not serialize.
    let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let err = JsonObject::new()
        .str("a", "b")
        .serialize("bad", &bad)
        .unwrap_err();
    assert!(err.0.contains("key must be a string"), "{err}");
    assert!(JsonArray::new().serialize(&bad).is_err());
    assert_eq!(
        text(&JsonArray::new().number(1).serialize(&2).unwrap().finish()),
        "[1,2]"
    );
    // The written text is what `Debug` shows.
    assert_eq!(
        format!("{:?}", JsonArray::new().finish()),
        "JsonPayload([])"
    );
}

#[test]
fn keep_json_encodes_like_keep_with() {
    let payload = JsonObject::new()
        .hex(
            "from",
            address!("0x1b63142628311395ceafeea5667e7c9026c862ca"),
        )
        .hex("to", address!("0xac4df82fe37ea2187bc8c011a23d743b4f39019a"))
        .decimal("value", U256::from(100_000))
        .finish();
    let value = json!({
        "from": "0x1b63142628311395ceafeea5667e7c9026c862ca",
        "to": "0xac4df82fe37ea2187bc8c011a23d743b4f39019a",
        "value": "100000",
    });
    assert_eq!(payload.to_value().unwrap(), value);
    let fast = Decision::from(payload);
    assert_eq!(fast.code(), 2);
    let fast = encode_output(&[Decision::Keep, fast], Some((0, "x")));
    // serde_json without `preserve_order` sorts keys, so the bytes match too; with it (e.g. when
    // the host is in the same build) only the parsed values are equal.
    let slow = encode_output(
        &[Decision::Keep, Decision::KeepWith(value.clone())],
        Some((0, "x")),
    );
    assert_eq!(fast.len(), slow.len());
    let decoded = decode_output(&fast, Some(2)).unwrap();
    assert_eq!(decoded, decode_output(&slow, Some(2)).unwrap());
    assert_eq!(decoded.decisions[1], Decision::KeepWith(value));
}

#[test]
fn buffers_are_reused_across_payloads() {
    let first = JsonObject::new().str("k", "v").finish();
    let ptr = first.as_bytes().as_ptr();
    drop(first);
    let second = JsonObject::new().number("k", 1).finish();
    assert_eq!(second.as_bytes().as_ptr(), ptr);
    assert_eq!(text(&second), r#"{"k":1}"#);
    // A clone owns its own copy.
    let clone = second.clone();
    assert_ne!(clone.as_bytes().as_ptr(), ptr);
    assert_eq!(clone, second);
}
