//! Zero-copy reader for the ABI v1 batch encoding (host → guest). See `ABI.md`.

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolEvent;
use core::fmt;

/// Bytes of the fixed-size part of an event that follow its topics:
/// block_number (8) + block_hash (32) + transaction_hash (32) + transaction_index (4)
/// + log_index (4) + removed (1) + data_len (4).
const TAIL_FIXED: usize = 8 + 32 + 32 + 4 + 4 + 1 + 4;
/// address (20) + topic_count (1).
const HEAD_FIXED: usize = 20 + 1;

/// Why a batch could not be read. Offsets are byte offsets into the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The input ended before a field could be read.
    Truncated { event: Option<u32>, offset: usize },
    /// `topic_count` was greater than 4.
    TooManyTopics { event: u32, count: u8 },
    /// `removed` was neither 0 nor 1.
    BadRemoved { event: u32, value: u8 },
    /// `event_len` disagrees with the length implied by the event's fields.
    LengthMismatch {
        event: u32,
        declared: usize,
        actual: usize,
    },
    /// Bytes remain after the last event.
    TrailingBytes { offset: usize },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated {
                event: None,
                offset,
            } => {
                write!(f, "malformed batch: truncated at byte {offset}")
            }
            BatchError::Truncated {
                event: Some(i),
                offset,
            } => {
                write!(f, "malformed batch: event {i} truncated at byte {offset}")
            }
            BatchError::TooManyTopics { event, count } => {
                write!(
                    f,
                    "malformed batch: event {event} has {count} topics (max 4)"
                )
            }
            BatchError::BadRemoved { event, value } => {
                write!(f, "malformed batch: event {event} has removed = {value}")
            }
            BatchError::LengthMismatch {
                event,
                declared,
                actual,
            } => write!(
                f,
                "malformed batch: event {event} declares {declared} bytes but its fields take {actual}"
            ),
            BatchError::TrailingBytes { offset } => {
                write!(
                    f,
                    "malformed batch: trailing bytes after the last event at byte {offset}"
                )
            }
        }
    }
}

impl core::error::Error for BatchError {}

#[inline]
fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[inline]
fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[inline]
fn rd_b256(b: &[u8], at: usize) -> B256 {
    B256::from_slice(&b[at..at + 32])
}

/// A validated batch of events. Construction checks every length, so iteration cannot fail.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    /// The bytes after `event_count`.
    events: &'a [u8],
    count: u32,
}

impl<'a> Batch<'a> {
    /// Validates `bytes` as an ABI v1 batch: every `event_len` must match its fields exactly,
    /// `topic_count <= 4`, `removed` is 0 or 1 and nothing follows the last event.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < 4 {
            return Err(BatchError::Truncated {
                event: None,
                offset: bytes.len(),
            });
        }
        let count = rd_u32(bytes, 0);
        let mut pos = 4usize;
        for i in 0..count {
            let trunc = |offset| BatchError::Truncated {
                event: Some(i),
                offset,
            };
            if bytes.len() - pos < 4 {
                return Err(trunc(bytes.len()));
            }
            let declared = rd_u32(bytes, pos) as usize;
            pos += 4;
            if bytes.len() - pos < declared {
                return Err(trunc(bytes.len()));
            }
            let ev = &bytes[pos..pos + declared];
            if ev.len() < HEAD_FIXED {
                return Err(trunc(pos + ev.len()));
            }
            let n = ev[20];
            if n > 4 {
                return Err(BatchError::TooManyTopics { event: i, count: n });
            }
            let tail = HEAD_FIXED + 32 * n as usize;
            if ev.len() < tail + TAIL_FIXED {
                return Err(trunc(pos + ev.len()));
            }
            let removed = ev[tail + 8 + 32 + 32 + 4 + 4];
            if removed > 1 {
                return Err(BatchError::BadRemoved {
                    event: i,
                    value: removed,
                });
            }
            let data_len = rd_u32(ev, tail + TAIL_FIXED - 4) as usize;
            let actual = tail + TAIL_FIXED + data_len;
            if actual != declared {
                return Err(BatchError::LengthMismatch {
                    event: i,
                    declared,
                    actual,
                });
            }
            pos += declared;
        }
        if pos != bytes.len() {
            return Err(BatchError::TrailingBytes { offset: pos });
        }
        Ok(Batch {
            events: &bytes[4..],
            count,
        })
    }

    /// Number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the batch holds no events.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates the events in order.
    #[inline]
    pub fn iter(&self) -> LogIter<'a> {
        LogIter {
            rest: self.events,
            left: self.count,
        }
    }
}

impl<'a> IntoIterator for Batch<'a> {
    type Item = Log<'a>;
    type IntoIter = LogIter<'a>;
    fn into_iter(self) -> LogIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &Batch<'a> {
    type Item = Log<'a>;
    type IntoIter = LogIter<'a>;
    fn into_iter(self) -> LogIter<'a> {
        self.iter()
    }
}

/// Iterator over the events of a [`Batch`].
#[derive(Clone)]
pub struct LogIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for LogIter<'a> {
    type Item = Log<'a>;
    #[inline]
    fn next(&mut self) -> Option<Log<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = rd_u32(self.rest, 0) as usize;
        let (ev, rest) = self.rest[4..].split_at(len);
        self.rest = rest;
        Some(Log::new_unchecked(ev))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for LogIter<'_> {}

/// A view over one encoded event (the bytes after its `event_len`). Nothing is copied until an
/// accessor is called; accessors return alloy primitives by value (they are small arrays).
#[derive(Clone, Copy)]
pub struct Log<'a> {
    bytes: &'a [u8],
    /// Offset of `block_number`, i.e. just past the topics.
    tail: usize,
}

impl<'a> Log<'a> {
    /// `bytes` must be a validated event (as checked by [`Batch::parse`]).
    #[inline]
    fn new_unchecked(bytes: &'a [u8]) -> Self {
        let tail = HEAD_FIXED + 32 * bytes[20] as usize;
        Log { bytes, tail }
    }

    /// The emitting contract.
    #[inline]
    pub fn address(&self) -> Address {
        Address::from_slice(&self.bytes[..20])
    }

    /// The topics (0..=4) as a slice, e.g. `log.topics()[0]`, `log.topics().len()`.
    #[inline]
    pub fn topics(&self) -> &'a [B256] {
        let raw = &self.bytes[HEAD_FIXED..self.tail];
        // SAFETY: `B256` (`FixedBytes<32>`) is `repr(transparent)` over `[u8; 32]`, so it has size
        // 32 and alignment 1; `raw` holds exactly `raw.len() / 32` of them and lives for `'a`.
        unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<B256>(), raw.len() / 32) }
    }

    /// Topic `i`, if present.
    #[inline]
    pub fn topic(&self, i: usize) -> Option<B256> {
        self.topics().get(i).copied()
    }

    /// Topic 0 (the event signature hash of a non-anonymous event), if present.
    #[inline]
    pub fn topic0(&self) -> Option<B256> {
        self.topic(0)
    }

    /// The non-indexed event data.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        &self.bytes[self.tail + TAIL_FIXED..]
    }

    #[inline]
    pub fn block_number(&self) -> u64 {
        rd_u64(self.bytes, self.tail)
    }

    #[inline]
    pub fn block_hash(&self) -> B256 {
        rd_b256(self.bytes, self.tail + 8)
    }

    #[inline]
    pub fn transaction_hash(&self) -> B256 {
        rd_b256(self.bytes, self.tail + 40)
    }

    #[inline]
    pub fn transaction_index(&self) -> u32 {
        rd_u32(self.bytes, self.tail + 72)
    }

    #[inline]
    pub fn log_index(&self) -> u32 {
        rd_u32(self.bytes, self.tail + 76)
    }

    /// True when the log's block was reorged out.
    #[inline]
    pub fn removed(&self) -> bool {
        self.bytes[self.tail + 80] == 1
    }

    /// True when topic 0 equals `E`'s signature hash (always false for anonymous events).
    pub fn is<E: SolEvent>(&self) -> bool {
        !E::ANONYMOUS && self.topic0() == Some(E::SIGNATURE_HASH)
    }

    /// Decodes a `sol!` event. `None` when topic 0 does not match, the topic count differs from the
    /// event's indexed parameters, or the data does not decode. Uses
    /// [`SolEvent::decode_raw_log`] (non-validating: e.g. dirty high bytes of an address are ignored).
    pub fn decode<E: SolEvent>(&self) -> Option<E> {
        self.try_decode::<E>().ok()
    }

    /// Like [`decode`](Self::decode) but returns alloy's error.
    pub fn try_decode<E: SolEvent>(&self) -> Result<E, alloy_sol_types::Error> {
        if !E::ANONYMOUS {
            match self.topic0() {
                Some(t) if t == E::SIGNATURE_HASH => {}
                Some(got) => {
                    return Err(alloy_sol_types::Error::InvalidEventSignatureHash {
                        name: E::SIGNATURE,
                        got,
                        expected: E::SIGNATURE_HASH,
                    });
                }
                None => return Err(alloy_sol_types::Error::Other("log has no topics".into())),
            }
        }
        E::decode_raw_log(self.topics().iter().copied(), self.data())
    }

    /// The encoded bytes of this event (without its `event_len` prefix).
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl fmt::Debug for Log<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("address", &self.address())
            .field("topics", &self.topics())
            .field("data", &alloy_primitives::hex::encode_prefixed(self.data()))
            .field("block_number", &self.block_number())
            .field("block_hash", &self.block_hash())
            .field("transaction_hash", &self.transaction_hash())
            .field("transaction_index", &self.transaction_index())
            .field("log_index", &self.log_index())
            .field("removed", &self.removed())
            .finish()
    }
}
