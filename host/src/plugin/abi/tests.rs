use super::*;

fn output(decisions: &[(u8, Option<&str>)], error: Option<(u32, &str)>) -> Vec<u8> {
    let mut out = (decisions.len() as u32).to_le_bytes().to_vec();
    for (tag, payload) in decisions {
        out.push(*tag);
        if let Some(p) = payload {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p.as_bytes());
        }
    }
    match error {
        None => out.push(0),
        Some((index, msg)) => {
            out.push(1);
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            out.extend_from_slice(msg.as_bytes());
        }
    }
    out
}

#[test]
fn decodes_every_decision_kind() {
    let bytes = output(&[(0, None), (1, None), (2, Some("{\"v\":\"5\"}"))], None);
    let Output::Decisions(d) = decode_output(&bytes, 3).unwrap() else {
        panic!()
    };
    let d = d.to_vec();
    assert_eq!(d[0], Decision::Drop);
    assert_eq!(d[1], Decision::Keep);
    assert!(matches!(&d[2], Decision::KeepWith(v) if v.get() == "{\"v\":\"5\"}"));
}

#[test]
fn decodes_an_error_record() {
    let bytes = output(&[(0, None), (0, None)], Some((1, "bad value")));
    assert_eq!(
        decode_output(&bytes, 2).unwrap(),
        Output::Failed {
            event_index: 1,
            message: "bad value".into()
        }
    );
}

#[test]
fn refuses_malformed_output() {
    let good = output(&[(1, None)], None);
    assert_eq!(
        decode_output(&good, 2),
        Err(OutputError::WrongCount {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(decode_output(&good[..3], 1), Err(OutputError::Truncated(0)));
    let mut trailing = good.clone();
    trailing.push(9);
    assert_eq!(decode_output(&trailing, 1), Err(OutputError::Trailing(1)));
    let bad_tag = output(&[(7, None)], None);
    assert_eq!(
        decode_output(&bad_tag, 1),
        Err(OutputError::BadDecision { index: 0, byte: 7 })
    );
    let bad_json = output(&[(2, Some("{nope"))], None);
    assert!(matches!(
        decode_output(&bad_json, 1),
        Err(OutputError::BadPayload { index: 0, .. })
    ));
    let huge_len = [1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0x7f];
    assert!(matches!(
        decode_output(&huge_len, 1),
        Err(OutputError::Truncated(_))
    ));
    let bad_index = output(&[(0, None)], Some((5, "x")));
    assert!(matches!(
        decode_output(&bad_index, 1),
        Err(OutputError::BadErrorIndex { .. })
    ));
}

#[test]
fn guest_text_is_bounded_and_escapes_control_characters() {
    let text = guest_text(&[b'a', 0, 0xff, b'b']);
    assert_eq!(text, "a\\u{0}\u{FFFD}b");
    // A plugin cannot forge a second log line or drive the operator's terminal.
    assert_eq!(
        guest_text(b"ok\nlevel=ERROR forged\r\x1b[31m"),
        "ok\\nlevel=ERROR forged\\r\\u{1b}[31m"
    );
    assert_eq!(guest_text("naïve ✓".as_bytes()), "naïve ✓");
    assert_eq!(guest_text(&vec![b'x'; 5000]).len(), GUEST_TEXT_MAX);
    let mut bytes = output(&[(0, None)], Some((0, "bad")));
    let flag = bytes.len() - 12;
    bytes[flag] = 2;
    assert_eq!(decode_output(&bytes, 1), Err(OutputError::BadErrorFlag(2)));
}

#[test]
fn encodes_the_documented_layout() {
    let log = ChainLog::from_json(r#"{"address":"0x00000000000000000000000000000000000000aa","topics":["0x00000000000000000000000000000000000000000000000000000000000000bb"],"data":"0x0102","blockNumber":"0x10","blockHash":"0x00000000000000000000000000000000000000000000000000000000000000cc","transactionHash":"0x00000000000000000000000000000000000000000000000000000000000000dd","transactionIndex":"0x3","logIndex":"0x4","removed":false}"#).unwrap();
    let mut out = Vec::new();
    encode_batch([&log].into_iter(), &mut out);
    assert_eq!(&out[0..4], &1u32.to_le_bytes());
    let event_len = u32::from_le_bytes([out[4], out[5], out[6], out[7]]) as usize;
    assert_eq!(out.len(), 8 + event_len);
    assert_eq!(out[8 + 19], 0xaa);
    assert_eq!(out[28], 1); // topic count
    assert_eq!(out[29 + 31], 0xbb);
    let after_topic = 29 + 32;
    assert_eq!(&out[after_topic..after_topic + 8], &16u64.to_le_bytes());
    assert_eq!(
        &out[after_topic + 8..after_topic + 40],
        log.block_hash.as_slice()
    );
    assert_eq!(
        &out[after_topic + 40..after_topic + 72],
        log.transaction_hash.as_slice()
    );
    assert_eq!(
        &out[after_topic + 72..after_topic + 76],
        &3u32.to_le_bytes()
    );
    assert_eq!(
        &out[after_topic + 76..after_topic + 80],
        &4u32.to_le_bytes()
    );
    assert_eq!(out[after_topic + 80], 0); // removed
    assert_eq!(&out[out.len() - 2..], &[1, 2]);
    assert_eq!(&out[out.len() - 6..out.len() - 2], &2u32.to_le_bytes());
}

#[test]
fn encodes_in_place_only_into_a_buffer_that_fits() {
    let log = ChainLog::from_json(r#"{"address":"0x00000000000000000000000000000000000000aa","topics":[],"data":"0x010203","blockNumber":"0x10","blockHash":"0x00000000000000000000000000000000000000000000000000000000000000cc","transactionHash":"0x00000000000000000000000000000000000000000000000000000000000000dd","transactionIndex":"0x3","logIndex":"0x4","removed":true}"#).unwrap();
    let logs = [&log, &log];
    let mut vec = Vec::new();
    encode_batch(logs.iter().copied(), &mut vec);
    assert_eq!(vec.len(), batch_len(logs.iter().copied()));
    let mut exact = vec![0u8; vec.len()];
    assert_eq!(
        encode_batch_into(logs.iter().copied(), &mut exact),
        Some(())
    );
    assert_eq!(exact, vec);
    let mut short = vec![0u8; vec.len() - 1];
    assert_eq!(encode_batch_into(logs.iter().copied(), &mut short), None);
}

#[test]
fn payloads_of_one_output_share_one_text() {
    let bytes = output(
        &[(2, Some(" {\"a\":1} ")), (0, None), (2, Some("\"é\"\n"))],
        None,
    );
    let Ok(Output::Decisions(d)) = decode_output(&bytes, 3) else {
        panic!()
    };
    let d = d.to_vec();
    assert!(matches!(&d[0], Decision::KeepWith(p) if p.get() == "{\"a\":1}"));
    assert!(matches!(&d[2], Decision::KeepWith(p) if p.get() == "\"é\""));
    let mut bad_utf8 = output(&[(2, Some("\"ab\""))], None);
    bad_utf8[10] = 0xff;
    assert!(matches!(
        decode_output(&bad_utf8, 1),
        Err(OutputError::BadPayload { index: 0, .. })
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever bytes a plugin returns, decoding ends in decisions for exactly the batch
        /// or an error: it never panics and never yields the wrong number of decisions.
        #[test]
        fn arbitrary_output_decodes_to_the_batch_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            expected in 0usize..8,
        ) {
            if let Ok(Output::Decisions(decisions)) = decode_output(&bytes, expected) {
                prop_assert_eq!(decisions.len(), expected);
            }
        }

        /// A valid output with one byte changed, cut short or extended is still decoded
        /// safely, and payloads that decode are valid JSON.
        #[test]
        fn mutated_valid_output_decodes_safely(
            flip in any::<(usize, u8)>(),
            cut in any::<usize>(),
        ) {
            let mut bytes = output(&[(1, None), (2, Some("{\"a\":[1,2]}")), (0, None)], None);
            let at = flip.0 % bytes.len();
            bytes[at] ^= flip.1;
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(Output::Decisions(decisions)) = decode_output(&bytes, 3) {
                for decision in decisions.iter() {
                    if let DecisionRef::KeepWith(raw) = decision {
                        prop_assert!(serde_json::from_str::<serde_json::Value>(raw).is_ok());
                    }
                }
            }
        }

        /// The one-pass decoder of valid output accepts exactly what the step-by-step decoder
        /// accepts, with the same decisions and payload text: on outputs built from payloads
        /// that are valid, invalid, padded with whitespace or not UTF-8, then perhaps damaged.
        #[test]
        fn one_pass_decoding_agrees_with_step_by_step(
            decisions in proptest::collection::vec((0u8..4, payload_bytes()), 0..6),
            error in proptest::option::of((0u32..8, proptest::collection::vec(any::<u8>(), 0..8))),
            expected_delta in 0usize..3,
            damage in proptest::option::of(any::<(usize, u8)>()),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut bytes = (decisions.len() as u32).to_le_bytes().to_vec();
            for (tag, payload) in &decisions {
                bytes.push(*tag);
                if *tag == 2 {
                    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(payload);
                }
            }
            match &error {
                None => bytes.push(0),
                Some((index, message)) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&index.to_le_bytes());
                    bytes.extend_from_slice(&(message.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(message);
                }
            }
            if let Some((at, byte)) = damage {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            // Mostly the right count, sometimes one more or less than the output holds.
            let expected = (decisions.len() + expected_delta).saturating_sub(1);
            let one_pass = decode_valid(&bytes, expected);
            let step_by_step = decode_checked(&bytes, expected);
            match (one_pass, step_by_step) {
                (Some(fast), Ok(checked)) => prop_assert_eq!(fast, checked),
                (None, Err(_)) => {}
                (fast, checked) => prop_assert!(false, "one-pass {:?}, step by step {:?}", fast, checked),
            }
        }

        /// Guest text is always safe to store and log, whatever the bytes.
        #[test]
        fn guest_text_never_holds_control_characters(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let text = guest_text(&bytes);
            prop_assert!(!text.chars().any(char::is_control));
        }
    }
}

/// Payload bytes that are often valid JSON: values serde_json would write, the same with
/// whitespace around or a character that is not valid UTF-8, and arbitrary bytes.
fn payload_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let valid = prop_oneof![
        Just(r#"{"from":"0xab","to":"0xcd","value":"1000"}"#),
        Just(r#"["naïve ✓",1,-2.5e3,true,null,{}]"#),
        Just(r#""\u00e9\n""#),
        Just("0"),
        Just("[]"),
    ];
    prop_oneof![
        valid.clone().prop_map(|v| v.as_bytes().to_vec()),
        (
            valid.clone(),
            prop_oneof![Just(" "), Just("\n\t "), Just("\u{c}")]
        )
            .prop_map(|(v, ws)| format!("{ws}{v}{ws}").into_bytes()),
        (
            valid,
            any::<usize>(),
            prop_oneof![Just(0xffu8), Just(0xc3), Just(0xa9), Just(0x80)]
        )
            .prop_map(|(v, at, byte)| {
                let mut bytes = v.as_bytes().to_vec();
                let at = at % bytes.len();
                bytes[at] = byte;
                bytes
            }),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}
