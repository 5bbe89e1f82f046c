//! The byte layouts of ABI v1 (`guest-sdk/ABI.md`): batch encoding in, decision decoding out. Pure.

mod decisions;

pub use decisions::{DecisionRef, Decisions};

use super::payload::{self, Payload};
use crate::event::ChainLog;
use decisions::Slot;

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
    Decisions(Decisions),
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
    let (count, mut rest) = out.split_first_chunk_mut::<4>()?;
    *count = (logs.len() as u32).to_le_bytes();
    for log in logs {
        rest = encode_event(log, rest)?;
    }
    Some(())
}

/// Bytes of an event's encoding before its topics: `event_len`, address, topic count.
const EVENT_HEAD: usize = 4 + 20 + 1;
/// Bytes between its topics and its data: block number and hash, transaction hash and index,
/// log index, `removed`, data length.
const EVENT_TAIL: usize = 8 + 32 + 32 + 4 + 4 + 1 + 4;
const _: () = assert!(EVENT_HEAD - 4 + EVENT_TAIL == EVENT_FIXED);

/// Writes one event at the start of `out`; the rest of `out`. The fixed-size parts are written
/// into arrays split off once each (four length checks per event instead of one per field:
/// −35 % of the encoding's instructions, BENCHMARKS.md "Session of 2026-12-05 (third)").
#[inline(always)]
fn encode_event<'o>(log: &ChainLog, out: &'o mut [u8]) -> Option<&'o mut [u8]> {
    let (head, rest) = out.split_first_chunk_mut::<EVENT_HEAD>()?;
    head[..4].copy_from_slice(&(event_len(log) as u32).to_le_bytes());
    head[4..24].copy_from_slice(log.address.as_slice());
    head[24] = log.topics.len() as u8;
    let (topics, rest) = rest.split_at_mut_checked(32 * log.topics.len())?;
    for (slot, topic) in topics.as_chunks_mut::<32>().0.iter_mut().zip(&log.topics) {
        *slot = topic.0;
    }
    let (tail, rest) = rest.split_first_chunk_mut::<EVENT_TAIL>()?;
    tail[..8].copy_from_slice(&log.block_number.to_le_bytes());
    tail[8..40].copy_from_slice(log.block_hash.as_slice());
    tail[40..72].copy_from_slice(log.transaction_hash.as_slice());
    tail[72..76].copy_from_slice(&(log.transaction_index as u32).to_le_bytes());
    tail[76..80].copy_from_slice(&(log.log_index as u32).to_le_bytes());
    tail[80] = u8::from(log.removed);
    tail[81..].copy_from_slice(&(log.data.len() as u32).to_le_bytes());
    let (data, rest) = rest.split_at_mut_checked(log.data.len())?;
    data.copy_from_slice(&log.data);
    Some(rest)
}

/// Decodes and checks a plugin's output for a batch of `expected` events.
///
/// Valid output, the rule, is decoded in one pass with every payload copied once into one text
/// that the call's [`Decisions`] own; anything else is decoded again by [`decode_checked`] for the first error in
/// order, with its details.
pub fn decode_output(bytes: &[u8], expected: usize) -> Result<Output, OutputError> {
    match decode_valid(bytes, expected) {
        Some(output) => Ok(output),
        None => decode_checked(bytes, expected),
    }
}

/// The output when it is valid, else `None`. One pass over the bytes ([`gather`]): the layout,
/// each payload's JSON, and the payloads' text copied into one buffer; then one UTF-8 check over
/// that buffer, exact because each accepted payload starts and ends with an ASCII byte
/// (`payload::check`), so no character spans two payloads; then the decisions, each payload a
/// range of that text.
fn decode_valid(bytes: &[u8], expected: usize) -> Option<Output> {
    let gathered = gather(bytes, expected)?;
    let text = String::from_utf8(gathered.texts).ok()?;
    Some(match gathered.failed {
        Some((event_index, message)) => Output::Failed {
            event_index,
            message,
        },
        None => Output::Decisions(Decisions::from_parts(text, gathered.slots)),
    })
}

/// An error record: the failing event's index and the guest's message.
type ErrorRecord = (usize, String);

/// What [`gather`] read from valid output.
struct Gathered {
    /// The payloads' text, one after the other (UTF-8 not yet checked).
    texts: Vec<u8>,
    slots: Vec<Slot>,
    failed: Option<ErrorRecord>,
}

/// The decisions, the payloads' text and the error record if any; `None` when anything but UTF-8
/// is wrong.
fn gather(bytes: &[u8], expected: usize) -> Option<Gathered> {
    let mut r = Reader { bytes, pos: 0 };
    if r.u32().ok()? as usize != expected {
        return None;
    }
    let mut texts = Vec::new();
    let mut slots = Vec::with_capacity(expected);
    for _ in 0..expected {
        slots.push(match r.u8().ok()? {
            0 => Slot::Drop,
            1 => Slot::Keep,
            2 => {
                let len = r.u32().ok()? as usize;
                let json = r.take(len).ok()?;
                if texts.capacity() == 0 {
                    texts.reserve(bytes.len());
                }
                let range = payload::check_into(json, &mut texts).ok()?;
                Slot::Text {
                    start: range.start,
                    end: range.end,
                }
            }
            _ => return None,
        });
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
    (r.pos == bytes.len()).then_some(Gathered {
        texts,
        slots,
        failed,
    })
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
        0 => Output::Decisions(decisions.into()),
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
