//! What a plugin returns per event, and the output encoding (guest → host; see `ABI.md`).

use crate::payload::JsonPayload;
use core::fmt;

/// The plugin's verdict on one event.
// `repr(u64)`: a whole word for the tag keeps each variant's data 8-byte aligned right after it,
// so moving a decision (every `process` call returns one) copies aligned words. The default layout
// copied from byte 1 on, and the misaligned copies stalled store forwarding (measured: ~4% of
// erc20-transfers' native batch time).
#[derive(Debug, Clone, PartialEq)]
#[repr(u64)]
pub enum Decision {
    /// Do not deliver the event.
    Drop,
    /// Deliver the event with webhook `data = null`.
    Keep,
    /// Deliver the event with this JSON value as the webhook's `data`.
    KeepWith(serde_json::Value),
    /// Deliver the event with this JSON as the webhook's `data`, written by a
    /// [`JsonObject`](crate::JsonObject) or [`JsonArray`](crate::JsonArray): the fast path, with no
    /// `serde_json::Value` in between. Same output encoding as `KeepWith` (decision byte 2).
    KeepJson(JsonPayload),
}

impl Decision {
    /// `KeepWith` the JSON form of any `Serialize` value.
    pub fn keep_with<T: serde::Serialize + ?Sized>(value: &T) -> Result<Decision, Error> {
        Ok(Decision::KeepWith(serde_json::to_value(value)?))
    }

    /// The ABI decision byte: 0 drop, 1 keep, 2 keep with payload.
    pub fn code(&self) -> u8 {
        match self {
            Decision::Drop => 0,
            Decision::Keep => 1,
            Decision::KeepWith(_) | Decision::KeepJson(_) => 2,
        }
    }
}

impl From<JsonPayload> for Decision {
    fn from(payload: JsonPayload) -> Self {
        Decision::KeepJson(payload)
    }
}

/// A per-event failure with a message. Plugins may return any `E: Display` as their error; this
/// type exists so `?` works on the common error sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl fmt::Display) -> Self {
        Error(msg.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_owned())
    }
}

impl From<alloy_sol_types::Error> for Error {
    fn from(e: alloy_sol_types::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(e.to_string())
    }
}

/// Appends one decision in output layout: the decision byte, then for `KeepWith` and `KeepJson`
/// `u32 payload_len` and the JSON bytes.
pub fn encode_decision(out: &mut Vec<u8>, d: &Decision) {
    match d {
        Decision::Drop | Decision::Keep => out.push(d.code()),
        Decision::KeepWith(v) => encode_keep_with(out, v),
        Decision::KeepJson(p) => encode_keep_json(out, p),
    }
}

/// [`encode_decision`] of a `KeepWith`: the value written after a length that is then filled in.
fn encode_keep_with(out: &mut Vec<u8>, v: &serde_json::Value) {
    out.push(2);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, v).expect("a serde_json::Value always serializes");
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// [`encode_decision`] of a `KeepJson`, the common case: inlined into the batch loop, with one
/// capacity check for the whole record.
#[inline]
pub(crate) fn encode_keep_json(out: &mut Vec<u8>, p: &JsonPayload) {
    let bytes = p.as_bytes();
    let [l0, l1, l2, l3] = (bytes.len() as u32).to_le_bytes();
    out.reserve(5 + bytes.len());
    out.extend_from_slice(&[2, l0, l1, l2, l3]);
    out.extend_from_slice(bytes);
}

/// Appends the error trailer: `u8 has_error`, and when present `u32 event_index`,
/// `u32 message_len`, message bytes.
pub fn encode_error(out: &mut Vec<u8>, error: Option<(u32, &str)>) {
    match error {
        None => out.push(0),
        Some((index, msg)) => {
            out.push(1);
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            out.extend_from_slice(msg.as_bytes());
        }
    }
}

/// Encodes a complete output: `u32 event_count`, one decision per event, the error trailer.
pub fn encode_output(decisions: &[Decision], error: Option<(u32, &str)>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(decisions.len() as u32).to_le_bytes());
    for d in decisions {
        encode_decision(&mut out, d);
    }
    encode_error(&mut out, error);
    out
}

/// A decoded output (payloads come back as `KeepWith`, whichever variant encoded them).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub decisions: Vec<Decision>,
    /// `(event_index, message)` of the error record, if any.
    pub error: Option<(u32, String)>,
}

/// Strictly decodes an output as the host must: checks the count against `expected_count` (when
/// given), decision bytes, payload JSON and UTF-8, the error index, and that nothing follows.
pub fn decode_output(bytes: &[u8], expected_count: Option<u32>) -> Result<Output, String> {
    struct Rd<'a>(&'a [u8], usize);
    impl<'a> Rd<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() - self.1 < n {
                return Err(format!("output truncated at byte {}", self.0.len()));
            }
            let s = &self.0[self.1..self.1 + n];
            self.1 += n;
            Ok(s)
        }
        fn u8(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?[0])
        }
        fn u32(&mut self) -> Result<u32, String> {
            Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
        }
    }
    let mut r = Rd(bytes, 0);
    let count = r.u32()?;
    if let Some(expected) = expected_count
        && count != expected
    {
        return Err(format!("output has {count} decisions, expected {expected}"));
    }
    let mut decisions = Vec::with_capacity(count.min(1 << 16) as usize);
    for i in 0..count {
        let d = match r.u8()? {
            0 => Decision::Drop,
            1 => Decision::Keep,
            2 => {
                let len = r.u32()? as usize;
                let payload = r.take(len)?;
                let v = serde_json::from_slice(payload)
                    .map_err(|e| format!("event {i}: payload is not valid JSON: {e}"))?;
                Decision::KeepWith(v)
            }
            b => return Err(format!("event {i}: unknown decision byte {b}")),
        };
        decisions.push(d);
    }
    let error = match r.u8()? {
        0 => None,
        1 => {
            let index = r.u32()?;
            if index >= count {
                return Err(format!("error record names event {index} of {count}"));
            }
            let len = r.u32()? as usize;
            let msg = core::str::from_utf8(r.take(len)?)
                .map_err(|_| "error message is not UTF-8".to_string())?;
            Some((index, msg.to_owned()))
        }
        b => return Err(format!("has_error byte is {b}")),
    };
    if r.1 != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the output",
            bytes.len() - r.1
        ));
    }
    Ok(Output { decisions, error })
}
