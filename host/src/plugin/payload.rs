//! A plugin's webhook payload: checked once to be one JSON value, then kept as the guest's text.
//! Pure.
//!
//! The check accepts exactly what `serde_json::value::RawValue::from_string` accepts (RFC 8259,
//! strings with any `\u` escape, any depth of nesting), which is what the host used before:
//! that parse, with the copy into a `String` before it, cost more instructions than the whole
//! native `erc20-transfers` batch (BENCHMARKS.md, "Plugins — session of 2026-12-02 (sixth)").
//! Here a string body, most of a payload, is skipped sixteen bytes at a time (SSE2; eight with
//! SWAR elsewhere).
//!
//! The payloads of one call share one text (`abi::Decisions`): one allocation per call instead
//! of one per kept event, and one UTF-8 check over all of them (`abi::decode_output`).

use std::fmt;
use std::ops::Range;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use compact_object::compact_object;

mod compact_object;

/// One JSON value as UTF-8 text, without surrounding whitespace.
#[derive(Clone)]
pub struct Payload {
    text: Box<str>,
}

impl Payload {
    /// Checks `bytes` (UTF-8, one JSON value, whitespace around it allowed) and keeps the value.
    pub fn parse(bytes: &[u8]) -> Result<Payload, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let mut value = Vec::new();
        check_into(text.as_bytes(), &mut value)
            .map_err(|at| format!("invalid JSON at byte {at} of {}", bytes.len()))?;
        // A value cut from UTF-8 text at ASCII bytes (see `check_into`) is UTF-8.
        let text = String::from_utf8(value).map_err(|e| e.to_string())?;
        Ok(Payload {
            text: text.into_boxed_str(),
        })
    }

    /// `json`, which the caller took from text that [`check`] accepted, as it found the value.
    pub(super) fn checked_text(json: &str) -> Payload {
        Payload {
            text: Box::from(json),
        }
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({})", self.get())
    }
}

/// As the JSON value itself (for reports; not on the hot path).
impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.get()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// The open arrays and objects: the first 128 levels in bits (no allocation for any real
/// payload), deeper ones in a vector — serde_json sets no depth limit on a raw value.
#[derive(Default)]
struct Nesting {
    /// Bit d set: the container at depth d + 1 is an object.
    bits: u128,
    deeper: Vec<bool>,
    depth: usize,
}

impl Nesting {
    fn open(&mut self, is_object: bool) {
        if self.depth < 128 {
            let bit = 1u128 << self.depth;
            self.bits = if is_object {
                self.bits | bit
            } else {
                self.bits & !bit
            };
        } else {
            self.deeper.push(is_object);
        }
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth -= 1;
        if self.depth >= 128 {
            self.deeper.pop();
        }
    }

    fn in_object(&self) -> bool {
        match self.depth {
            0 => false,
            d if d <= 128 => self.bits & (1u128 << (d - 1)) != 0,
            _ => self.deeper.last().copied().unwrap_or(false),
        }
    }
}

/// The common payload, a flat object (`{"k":v,…}` whose values are strings, numbers or
/// literals), checked without the nesting bookkeeping: about a fifth fewer instructions for an
/// `erc20-transfers` payload. `None` for anything else, valid or not, which [`check`] then
/// reads in full (a nested value is found after its object's earlier fields were read twice).
#[inline(always)]
fn flat_object(b: &[u8]) -> Option<(usize, usize)> {
    let start = whitespace(b, 0);
    if b.get(start) != Some(&b'{') {
        return None;
    }
    let mut i = whitespace(b, start + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            i = key(b, i).ok()?;
            i = match b.get(i).copied() {
                Some(b'"') => string(b, i).ok()?,
                Some(b'-' | b'0'..=b'9') => number(b, i).ok()?,
                Some(b't') => literal(b, i, b"true").ok()?,
                Some(b'f') => literal(b, i, b"false").ok()?,
                Some(b'n') => literal(b, i, b"null").ok()?,
                _ => return None,
            };
            i = whitespace(b, i);
            match b.get(i).copied() {
                Some(b',') => i = whitespace(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (whitespace(b, i) == b.len()).then_some((start, i))
}

/// Checks that `b` is one JSON value (whitespace around it allowed) and appends the value,
/// without that whitespace, to `out`: its range there, or the offset of the first error (and
/// `out` as it was). Checks the JSON only: bytes above 0x7f pass inside strings (UTF-8 is the
/// caller's check) and fail anywhere else, so an accepted value starts and ends with an ASCII
/// byte. The commonest payload is checked and copied in one pass ([`compact_object`]).
#[inline]
pub(super) fn check_into(b: &[u8], out: &mut Vec<u8>) -> Result<Range<usize>, usize> {
    let at = out.len();
    if !compact_object(b, out) {
        let (start, end) = check(b)?;
        out.extend_from_slice(b.get(start..end).unwrap_or_default());
    }
    Ok(at..out.len())
}

/// Where the one JSON value of `b` starts and ends, or the offset of the first error.
fn check(b: &[u8]) -> Result<(usize, usize), usize> {
    if let Some(found) = flat_object(b) {
        return Ok(found);
    }
    let mut i = whitespace(b, 0);
    let start = i;
    let mut nesting = Nesting::default();
    // Whether the innermost open container is an object (false at depth 0).
    let mut in_object = false;
    'value: loop {
        match b.get(i).copied() {
            Some(b'"') => i = string(b, i)?,
            Some(open @ (b'{' | b'[')) => {
                let is_object = open == b'{';
                i = whitespace(b, i + 1);
                if b.get(i) == Some(&(open + 2)) {
                    // `{}` or `[]`: the closing bracket is the opening one plus 2 in ASCII.
                    i += 1;
                } else {
                    nesting.open(is_object);
                    in_object = is_object;
                    if is_object {
                        i = key(b, i)?;
                    }
                    continue 'value;
                }
            }
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            _ => return Err(i),
        }
        // After a value: a separator, the end of its container(s), or the end of the text.
        loop {
            if nesting.depth == 0 {
                let end = i;
                return match whitespace(b, i) {
                    at if at == b.len() => Ok((start, end)),
                    at => Err(at),
                };
            }
            i = whitespace(b, i);
            match b.get(i).copied() {
                Some(b',') => {
                    i = whitespace(b, i + 1);
                    if in_object {
                        i = key(b, i)?;
                    }
                    continue 'value;
                }
                Some(b'}') if in_object => {}
                Some(b']') if !in_object => {}
                _ => return Err(i),
            }
            i += 1;
            nesting.close();
            in_object = nesting.in_object();
        }
    }
}

/// JSON whitespace from `i` on; the offset after it. Compact JSON has none: one compare.
#[inline(always)]
fn whitespace(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(&c) if c > b' ' => i,
        _ => more_whitespace(b, i),
    }
}

fn more_whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A key, the colon and the whitespace up to the value.
#[inline(always)]
fn key(b: &[u8], i: usize) -> Result<usize, usize> {
    if b.get(i) != Some(&b'"') {
        return Err(i);
    }
    let i = whitespace(b, string(b, i)?);
    if b.get(i) != Some(&b':') {
        return Err(i);
    }
    Ok(whitespace(b, i + 1))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, usize> {
    match b.get(i..i + word.len()) {
        Some(found) if found == word => Ok(i + word.len()),
        _ => Err(i),
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number(b: &[u8], mut i: usize) -> Result<usize, usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i),
        _ => return Err(i),
    }
    if b.get(i) == Some(&b'.') {
        i = at_least_one_digit(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = at_least_one_digit(b, i)?;
    }
    Ok(i)
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

fn at_least_one_digit(b: &[u8], i: usize) -> Result<usize, usize> {
    match digits(b, i) {
        end if end > i => Ok(end),
        _ => Err(i),
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` that are `"`, `\\` or below 0x20, as their high bits. The lowest set bit
/// is exact (a false positive can only follow a true byte, through the subtraction's borrow), so
/// `trailing_zeros / 8` is the index of the first such byte (little-endian: the first in memory).
#[inline(always)]
fn specials(w: u64) -> u64 {
    // `"` (0x22) is the only byte above 0x1f that `^ 0x02` takes below 0x21, and the control
    // characters stay below 0x20: one "less than" test finds both.
    let v = w ^ (ONES * 0x02);
    let quote_or_control = v.wrapping_sub(ONES * 0x21) & !v;
    let x = w ^ (ONES * u64::from(b'\\'));
    let backslash = x.wrapping_sub(ONES) & !x;
    (quote_or_control | backslash) & HIGHS
}

/// The eight bytes at `i` as a little-endian word, if there are eight.
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// The offset of the first byte from `i` on that ends a run of plain string characters (`"`, `\\`
/// or a control byte), or an offset before it (the caller steps over a plain byte and asks again)
/// or the end of the text when there is none: sixteen bytes at a time with SSE2 (every x86-64 has
/// it; the last sixteen of the text for the tail), elsewhere eight at a time (SWAR).
/// Most of a payload is string bodies — 42-byte hex strings for an `erc20-transfers` payload —
/// so this loop is most of the check's instructions.
#[inline(always)]
fn plain_run(b: &[u8], i: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return plain_run_sse2(b, i);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    return plain_run_swar(b, i);
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn plain_run_sse2(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 16) {
        match chunk.try_into().map(specials16) {
            Ok(0) => i += 16,
            Ok(found) => return i + found.trailing_zeros() as usize,
            Err(_) => break,
        }
    }
    // Fewer than sixteen bytes left (the last string of a payload): the last sixteen bytes of the
    // text, without those before `i`.
    match b
        .len()
        .checked_sub(16)
        .map(|last| (last, b.get(last..).map(<&[u8; 16]>::try_from)))
    {
        Some((last, Some(Ok(chunk)))) => {
            let found = specials16(chunk) >> (i - last).min(16);
            if found == 0 {
                b.len()
            } else {
                i + found.trailing_zeros() as usize
            }
        }
        _ => plain_run_swar(b, i),
    }
}

/// Eight bytes at a time; stops at the first byte that ends the run or where fewer than eight
/// bytes are left.
#[inline(always)]
fn plain_run_swar(b: &[u8], mut i: usize) -> usize {
    while let Some(w) = word(b, i) {
        match specials(w) {
            0 => i += 8,
            found => return i + found.trailing_zeros() as usize / 8,
        }
    }
    i
}

/// [`specials`] for sixteen bytes, one bit per byte (bit k: byte k). `safe_arch` wraps the SSE2
/// intrinsics in safe functions: this crate itself has no `unsafe` for it.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn specials16(chunk: &[u8; 16]) -> u32 {
    use safe_arch::{
        bitor_m128i, bitxor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, max_u8_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let v = load_unaligned_m128i(chunk);
    // As in `specials`: `^ 0x02` takes `"` to 0x20 and keeps control bytes below it, so
    // "at most 0x20" (max(x, 0x20) == 0x20, unsigned) finds both.
    let x = bitxor_m128i(v, set_splat_i8_m128i(0x02));
    let limit = set_splat_i8_m128i(0x20);
    let quote_or_control = cmp_eq_mask_i8_m128i(max_u8_m128i(x, limit), limit);
    let backslash = cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'\\' as i8));
    // Sixteen mask bits in an `i32`: the cast keeps them.
    move_mask_i8_m128i(bitor_m128i(quote_or_control, backslash)) as u32
}

/// A string starting at its opening quote (`b[i]`); returns the offset after its closing quote.
/// Non-ASCII bytes need no check here: UTF-8 is checked separately. Inlined into its two
/// callers (a key, a value): the call cost more than skipping a short key.
#[inline(always)]
fn string(b: &[u8], i: usize) -> Result<usize, usize> {
    let mut i = i + 1;
    loop {
        i = plain_run(b, i);
        match b.get(i).copied() {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => i = escape(b, i + 1)?,
            Some(0..0x20) | None => return Err(i),
            Some(_) => i += 1,
        }
    }
}

/// The rest of an escape after its backslash. Like serde_json for a raw value, any four hex
/// digits pass after `\u` (a lone surrogate too).
fn escape(b: &[u8], i: usize) -> Result<usize, usize> {
    match b.get(i) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
        Some(b'u') => match b.get(i + 1..i + 5) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(i + 5),
            _ => Err(i),
        },
        _ => Err(i),
    }
}

#[cfg(test)]
mod tests;
