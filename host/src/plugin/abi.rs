//! The byte layouts of ABI v1 (`guest-sdk/ABI.md`): batch encoding in, decision decoding out. Pure.

use std::sync::Arc;

use super::payload::{self, Payload};
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

/// Bytes of one event's encoding after its `event_len` field, without its topics and data.
const EVENT_FIXED: usize = 20 + 1 + 8 + 32 + 32 + 4 + 4 + 1 + 4;

fn event_len(log: &ChainLog) -> usize {
    EVENT_FIXED + 32 * log.topics.len() + log.data.len()
}

/// Bytes of the batch encoding of `logs`.
pub fn batch_len<'a>(logs: impl Iterator<Item = &'a ChainLog>) -> usize {
    logs.fold(4, |len, log| len + 4 + event_len(log))
}

/// Appends the batch encoding of `logs` to `out` (cleared first, so the buffer can be reused).
pub fn encode_batch<'a>(
    logs: impl ExactSizeIterator<Item = &'a ChainLog> + Clone,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.resize(batch_len(logs.clone()), 0);
    // Sized by `batch_len` just above, so it fits.
    let _fits = encode_batch_into(logs, out);
}

/// Writes the batch encoding of `logs` at the start of `out` (straight into a guest's memory:
/// no copy in between). `None` when `out` is shorter than [`batch_len`].
pub fn encode_batch_into<'a>(
    logs: impl ExactSizeIterator<Item = &'a ChainLog>,
    out: &mut [u8],
) -> Option<()> {
    let mut w = Writer { out };
    w.put(&(logs.len() as u32).to_le_bytes())?;
    for log in logs {
        w.put(&(event_len(log) as u32).to_le_bytes())?;
        w.put(log.address.as_slice())?;
        w.put(&[log.topics.len() as u8])?;
        for topic in &log.topics {
            w.put(topic.as_slice())?;
        }
        w.put(&log.block_number.to_le_bytes())?;
        w.put(log.block_hash.as_slice())?;
        w.put(log.transaction_hash.as_slice())?;
        w.put(&(log.transaction_index as u32).to_le_bytes())?;
        w.put(&(log.log_index as u32).to_le_bytes())?;
        w.put(&[u8::from(log.removed)])?;
        w.put(&(log.data.len() as u32).to_le_bytes())?;
        w.put(&log.data)?;
    }
    Some(())
}

/// Fills a slice from its start, field by field.
struct Writer<'o> {
    out: &'o mut [u8],
}

impl Writer<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let (head, rest) = std::mem::take(&mut self.out).split_at_mut_checked(bytes.len())?;
        head.copy_from_slice(bytes);
        self.out = rest;
        Some(())
    }
}

/// Decodes and checks a plugin's output for a batch of `expected` events.
///
/// Valid output, the rule, is decoded in two passes with every payload copied once into one
/// shared text; anything else is decoded again by [`decode_checked`] for the first error in
/// order, with its details.
pub fn decode_output(bytes: &[u8], expected: usize) -> Result<Output, OutputError> {
    match decode_valid(bytes, expected) {
        Some(output) => Ok(output),
        None => decode_checked(bytes, expected),
    }
}

/// The output when it is valid, else `None`. First pass ([`gather`]): the layout, each payload's
/// JSON, and the payloads' text copied into one buffer; then one UTF-8 check over that buffer,
/// exact because each accepted payload starts and ends with an ASCII byte (`payload::check`),
/// so no character spans two payloads. Second pass ([`shared_decisions`]): the decisions.
fn decode_valid(bytes: &[u8], expected: usize) -> Option<Output> {
    let (texts, failed) = gather(bytes, expected)?;
    let texts = Arc::new(String::from_utf8(texts).ok()?);
    match failed {
        Some((event_index, message)) => Some(Output::Failed {
            event_index,
            message,
        }),
        None => shared_decisions(bytes, expected, &texts).map(Output::Decisions),
    }
}

/// An error record: the failing event's index and the guest's message.
type ErrorRecord = (usize, String);

/// The payloads' text, one after the other, and the error record if any; `None` when anything
/// but UTF-8 is wrong.
fn gather(bytes: &[u8], expected: usize) -> Option<(Vec<u8>, Option<ErrorRecord>)> {
    let mut r = Reader { bytes, pos: 0 };
    if r.u32().ok()? as usize != expected {
        return None;
    }
    let mut texts = Vec::new();
    for _ in 0..expected {
        match r.u8().ok()? {
            0 | 1 => {}
            2 => {
                let len = r.u32().ok()? as usize;
                let json = r.take(len).ok()?;
                let (start, end) = payload::check(json).ok()?;
                if texts.capacity() == 0 {
                    texts.reserve(bytes.len());
                }
                texts.extend_from_slice(json.get(start..end)?);
            }
            _ => return None,
        }
    }
    let failed = match r.u8().ok()? {
        0 => None,
        1 => {
            let event_index = r.u32().ok()? as usize;
            let len = r.u32().ok()? as usize;
            let message = guest_text(r.take(len).ok()?);
            if event_index >= expected.max(1) {
                return None;
            }
            Some((event_index, message))
        }
        _ => return None,
    };
    (r.pos == bytes.len()).then_some((texts, failed))
}

/// The decisions of output that [`gather`] accepted, each payload a range of `texts`.
fn shared_decisions(bytes: &[u8], expected: usize, texts: &Arc<String>) -> Option<Vec<Decision>> {
    let mut decisions = Vec::with_capacity(expected);
    let mut r = Reader { bytes, pos: 4 };
    let mut at = 0;
    for _ in 0..expected {
        decisions.push(match r.u8().ok()? {
            0 => Decision::Drop,
            1 => Decision::Keep,
            _ => {
                let len = r.u32().ok()? as usize;
                // The value without the whitespace around it, as `check` found it (ASCII
                // whitespace is JSON's four and form feed, which cannot end a valid value).
                let json = r.take(len).ok()?.trim_ascii();
                let end = at + json.len();
                let payload = Payload::shared(texts, at, end);
                at = end;
                Decision::KeepWith(payload)
            }
        });
    }
    Some(decisions)
}

/// Decodes and checks output step by step, each payload on its own: the first error in order.
fn decode_checked(bytes: &[u8], expected: usize) -> Result<Output, OutputError> {
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
mod tests;
