//! The byte layouts of ABI v1 (`guest-sdk/ABI.md`): batch encoding in, decision decoding out. Pure.

use super::payload::Payload;
use crate::event::ChainLog;

/// What a plugin decided for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Drop,
    /// Deliver with `data: null`.
    Keep,
    /// Deliver with this JSON value as `data`.
    KeepWith(Payload),
}

impl Decision {
    pub fn is_kept(&self) -> bool {
        !matches!(self, Decision::Drop)
    }
}

/// A decoded output: the decisions, or the guest's own error record.
#[derive(Debug, PartialEq)]
pub enum Output {
    Decisions(Vec<Decision>),
    Failed { event_index: usize, message: String },
}

/// Why output bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OutputError {
    #[error("output ends early at byte {0}")]
    Truncated(usize),
    #[error("output holds {got} decisions for {expected} events")]
    WrongCount { expected: usize, got: usize },
    #[error("unknown decision byte {byte} for event {index}")]
    BadDecision { index: usize, byte: u8 },
    #[error("payload of event {index} is not valid JSON: {error}")]
    BadPayload { index: usize, error: String },
    #[error("error record names event {index}, but the batch has {count}")]
    BadErrorIndex { index: usize, count: usize },
    #[error("{0} bytes follow the output")]
    Trailing(usize),
    #[error("has_error byte is {0}, not 0 or 1")]
    BadErrorFlag(u8),
}

/// Appends the batch encoding of `logs` to `out` (cleared first, so the buffer can be reused).
pub fn encode_batch<'a>(logs: impl ExactSizeIterator<Item = &'a ChainLog>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(logs.len() as u32).to_le_bytes());
    for log in logs {
        let event_len =
            20 + 1 + 32 * log.topics.len() + 8 + 32 + 32 + 4 + 4 + 1 + 4 + log.data.len();
        out.extend_from_slice(&(event_len as u32).to_le_bytes());
        out.extend_from_slice(log.address.as_slice());
        out.push(log.topics.len() as u8);
        for topic in &log.topics {
            out.extend_from_slice(topic.as_slice());
        }
        out.extend_from_slice(&log.block_number.to_le_bytes());
        out.extend_from_slice(log.block_hash.as_slice());
        out.extend_from_slice(log.transaction_hash.as_slice());
        out.extend_from_slice(&(log.transaction_index as u32).to_le_bytes());
        out.extend_from_slice(&(log.log_index as u32).to_le_bytes());
        out.push(u8::from(log.removed));
        out.extend_from_slice(&(log.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&log.data);
    }
}

/// Decodes and checks a plugin's output for a batch of `expected` events.
pub fn decode_output(bytes: &[u8], expected: usize) -> Result<Output, OutputError> {
    let mut r = Reader { bytes, pos: 0 };
    let count = r.u32()? as usize;
    if count != expected {
        return Err(OutputError::WrongCount {
            expected,
            got: count,
        });
    }
    let mut decisions = Vec::with_capacity(count);
    for index in 0..count {
        let decision = match r.u8()? {
            0 => Decision::Drop,
            1 => Decision::Keep,
            2 => {
                let len = r.u32()? as usize;
                let payload = Payload::parse(r.take(len)?)
                    .map_err(|error| OutputError::BadPayload { index, error })?;
                Decision::KeepWith(payload)
            }
            byte => return Err(OutputError::BadDecision { index, byte }),
        };
        decisions.push(decision);
    }
    let output = match r.u8()? {
        0 => Output::Decisions(decisions),
        1 => {
            let event_index = r.u32()? as usize;
            let len = r.u32()? as usize;
            let message = guest_text(r.take(len)?);
            if event_index >= count.max(1) {
                return Err(OutputError::BadErrorIndex {
                    index: event_index,
                    count,
                });
            }
            Output::Failed {
                event_index,
                message,
            }
        }
        byte => return Err(OutputError::BadErrorFlag(byte)),
    };
    match bytes.len() - r.pos {
        0 => Ok(output),
        n => Err(OutputError::Trailing(n)),
    }
}

/// Text that came from a guest, made safe to store and log: lossy UTF-8, at most
/// `GUEST_TEXT_MAX` bytes of input, and every control character escaped (`\n`, `\u{1b}`…) — a
/// NUL would make PostgreSQL refuse the row, and a newline or terminal escape would let a plugin
/// forge lines in the host's log.
pub fn guest_text(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(GUEST_TEXT_MAX)];
    let text = String::from_utf8_lossy(bytes);
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Longest guest-provided message kept (log line, panic, error record).
pub const GUEST_TEXT_MAX: usize = 1024;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OutputError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(OutputError::Truncated(self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, OutputError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, OutputError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(&out[out.len() - 2..], &[1, 2]);
        assert_eq!(&out[out.len() - 6..out.len() - 2], &2u32.to_le_bytes());
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
                    for decision in decisions {
                        if let Decision::KeepWith(raw) = decision {
                            prop_assert!(serde_json::from_str::<serde_json::Value>(raw.get()).is_ok());
                        }
                    }
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
}
