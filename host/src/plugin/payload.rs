//! A plugin's webhook payload: checked once to be one JSON value, then kept as the guest's text.
//! Pure.
//!
//! The check accepts exactly what `serde_json::value::RawValue::from_string` accepts (RFC 8259,
//! strings with any `\u` escape, any depth of nesting), which is what the host used before:
//! that parse, with the copy into a `String` before it, cost more instructions than the whole
//! native `erc20-transfers` batch (BENCHMARKS.md, "Plugins — session of 2026-12-02 (sixth)").
//! Here a string body, most of a payload, is skipped eight bytes at a time.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// One JSON value as UTF-8 text, without surrounding whitespace.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(Box<str>);

impl Payload {
    /// Checks `bytes` (UTF-8, one JSON value, whitespace around it allowed) and keeps the value.
    pub fn parse(bytes: &[u8]) -> Result<Payload, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let (start, end) = check(text.as_bytes())
            .map_err(|at| format!("invalid JSON at byte {at} of {}", bytes.len()))?;
        Ok(Payload(text[start..end].into()))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

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

/// Where the one JSON value of `b` starts and ends, or the offset of the first error.
fn check(b: &[u8]) -> Result<(usize, usize), usize> {
    let mut i = whitespace(b, 0);
    let start = i;
    let mut nesting = Nesting::default();
    'value: loop {
        match b.get(i).copied() {
            Some(open @ (b'{' | b'[')) => {
                let is_object = open == b'{';
                i = whitespace(b, i + 1);
                let close = if is_object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    i += 1;
                } else {
                    nesting.open(is_object);
                    if is_object {
                        i = key(b, i)?;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => i = string(b, i)?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
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
            let in_object = nesting.in_object();
            match (b.get(i).copied(), in_object) {
                (Some(b','), _) => {
                    i = whitespace(b, i + 1);
                    if in_object {
                        i = key(b, i)?;
                    }
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    i += 1;
                    nesting.close();
                }
                _ => return Err(i),
            }
        }
    }
}

fn whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A key, the colon and the whitespace up to the value.
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

/// The bytes of `w` that are `"`, `\` or below 0x20, as their high bits. The lowest set bit
/// is exact (a false positive can only follow a true byte, through the subtraction's borrow), so
/// `trailing_zeros / 8` is the index of the first such byte (little-endian: the first in memory).
fn specials(w: u64) -> u64 {
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero_bytes(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    quote | backslash | control
}

/// A string starting at its opening quote (`b[i]`); returns the offset after its closing quote.
/// Non-ASCII bytes need no check here: the whole text is valid UTF-8.
fn string(b: &[u8], i: usize) -> Result<usize, usize> {
    let mut i = i + 1;
    loop {
        // Eight bytes at a time up to the first byte that ends the run of plain characters.
        while let Some(chunk) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            match specials(u64::from_le_bytes(word)) {
                0 => i += 8,
                found => {
                    i += found.trailing_zeros() as usize / 8;
                    break;
                }
            }
        }
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
