//! Writers that append one JSON value to a byte buffer, byte-identical to what `serde_json` writes
//! for the same value (its string escaping, `itoa` integers, `zmij` floats).

use alloy_primitives::{Sign, Signed, Uint};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two lowercase hex digits of each byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX_DIGITS[i >> 4], HEX_DIGITS[i & 0xf]];
        i += 1;
    }
    pairs
};

/// A JSON string: `"`, `\` and control characters (below U+0020) escaped as `serde_json` does
/// (`\b \t \n \f \r` short, the others `\u00xx`); everything else, including non-ASCII, as is.
#[inline(always)]
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Keys and most values need no escaping: copy them in one go (inlined for literal keys).
    if !any_needs_escape(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        escaped_string(out, bytes);
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte needs escaping. Without an early exit, so that for a literal (a key) the
/// compiler unrolls the loop and folds it to a constant; with one, the wasm build ran the loop
/// over every key of every payload.
#[inline(always)]
pub(crate) fn any_needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| any | needs_escape(b))
}

#[cold]
fn escaped_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 8);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                let [hi, lo] = HEX_PAIRS[b as usize];
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A JSON string `"0x…"` of lowercase hex digits, as `alloy_primitives::hex::encode_prefixed`.
#[inline(always)]
pub(crate) fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    // Sized first and filled in place: for an `Address` or `B256` the length is a constant here
    // and the loops unroll into a few word stores.
    let start = out.len();
    out.resize(start + 2 * bytes.len() + 4, b'"');
    let digits = &mut out[start + 1..start + 3 + 2 * bytes.len()];
    digits[..2].copy_from_slice(b"0x");
    let digits = &mut digits[2..];
    let mut quads = bytes.chunks_exact(4);
    let mut words = digits.chunks_exact_mut(8);
    for (word, quad) in (&mut words).zip(&mut quads) {
        word.copy_from_slice(&hex_word(quad).to_le_bytes());
    }
    for (pair, &b) in words
        .into_remainder()
        .chunks_exact_mut(2)
        .zip(quads.remainder())
    {
        pair.copy_from_slice(&HEX_PAIRS[b as usize]);
    }
}

/// The eight lowercase hex digits of four bytes, in memory order, as a little-endian word: a few
/// word operations instead of four table loads (in wasm each load is also an address
/// computation; this takes an address from 20 table loads to 5 words).
#[inline(always)]
fn hex_word(quad: &[u8]) -> u64 {
    const LOW_NIBBLES: u64 = 0x000f_000f_000f_000f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = u64::from(u32::from_le_bytes(
        <[u8; 4]>::try_from(quad).unwrap_or_default(),
    ));
    // Spread: byte 2i holds input byte i; then its high nibble, and byte 2i + 1 its low nibble.
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    let nibbles = ((x >> 4) & LOW_NIBBLES) | ((x & LOW_NIBBLES) << 8);
    // A nibble above 9 becomes a letter: `+ 6` carries into bit 4 exactly for 10..=15.
    let letters = ((nibbles + 6 * ONES) >> 4) & ONES;
    nibbles + u64::from(b'0') * ONES + letters * u64::from(b'a' - b'0' - 10)
}

mod sealed {
    pub trait Sealed {}
}

/// A value [`JsonObject::number`](super::JsonObject::number) writes as a JSON number: the
/// primitive integers, and `f64` (non-finite values become `null`, as in `serde_json`).
pub trait Number: sealed::Sealed + Copy {
    #[doc(hidden)]
    fn write_number(self, out: &mut Vec<u8>);
}

/// A value [`JsonObject::decimal`](super::JsonObject::decimal) writes as a JSON string of its
/// decimal digits (with `-` when negative), equal to its `to_string()`: the primitive integers and
/// alloy's `Uint` (`U256`, `U160`, …) and `Signed` (`I256`, …) of any width.
pub trait Decimal: sealed::Sealed {
    #[doc(hidden)]
    fn write_digits(&self, out: &mut Vec<u8>);
}

macro_rules! primitive_integers {
    ($($t:ty)*) => {$(
        impl sealed::Sealed for $t {}
        impl Number for $t {
            #[inline]
            fn write_number(self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(self).as_bytes());
            }
        }
        impl Decimal for $t {
            #[inline]
            fn write_digits(&self, out: &mut Vec<u8>) {
                self.write_number(out);
            }
        }
    )*};
}
primitive_integers!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

impl sealed::Sealed for f64 {}
impl Number for f64 {
    fn write_number(self, out: &mut Vec<u8>) {
        if self.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(self).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
}

impl<const BITS: usize, const LIMBS: usize> sealed::Sealed for Uint<BITS, LIMBS> {}
impl<const BITS: usize, const LIMBS: usize> Decimal for Uint<BITS, LIMBS> {
    fn write_digits(&self, out: &mut Vec<u8>) {
        uint_digits(out, *self);
    }
}

impl<const BITS: usize, const LIMBS: usize> sealed::Sealed for Signed<BITS, LIMBS> {}
impl<const BITS: usize, const LIMBS: usize> Decimal for Signed<BITS, LIMBS> {
    fn write_digits(&self, out: &mut Vec<u8>) {
        let (sign, abs) = self.into_sign_and_abs();
        if sign == Sign::Negative {
            out.push(b'-');
        }
        uint_digits(out, abs);
    }
}

/// `10^19`, the largest power of ten below `2^64`.
const TEN_19: u64 = 10_000_000_000_000_000_000;

/// Decimal digits of `x`. Values up to `u128::MAX` (every realistic token amount) are `itoa`'s
/// work for a `u64` (its fastest path) or [`u128_digits`]; larger ones are cut into 19-digit
/// chunks from the right by dividing by `10^19`.
fn uint_digits<const BITS: usize, const LIMBS: usize>(out: &mut Vec<u8>, mut x: Uint<BITS, LIMBS>) {
    if let Ok(small) = u64::try_from(&x) {
        u64_digits(out, small);
        return;
    }
    if let Ok(mid) = u128::try_from(&x) {
        u128_digits(out, mid);
        return;
    }
    // `x` needs more than 128 bits, so BITS > 128 and `10^19` fits: the divisor is not zero.
    let divisor = Uint::<BITS, LIMBS>::wrapping_from(TEN_19);
    // The digits are written least significant first, then the run is reversed in place.
    let start = out.len();
    loop {
        match u128::try_from(&x) {
            Ok(head) => {
                out.extend(itoa::Buffer::new().format(head).bytes().rev());
                break;
            }
            Err(_) => {
                let (quotient, remainder) = x.div_rem(divisor);
                // The remainder is below 10^19 < 2^64: all of it is in the first limb.
                let mut chunk = remainder.as_limbs().first().copied().unwrap_or(0);
                for _ in 0..19 {
                    out.push(b'0' + (chunk % 10) as u8);
                    chunk /= 10;
                }
                x = quotient;
            }
        }
    }
    out[start..].reverse();
}

/// `10^9`, the largest power of ten below `2^32`.
const TEN_9: u64 = 1_000_000_000;

/// The two ASCII digits of 0 to 99.
static DECIMAL_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};

/// Decimal digits of `x` with only 64-bit arithmetic. `itoa` formats a `u128` with 128-bit
/// multiplications, each a call to `__multi3` in wasm: a plugin's `U256` value took about four
/// times its native time. Here 9-digit chunks are cut from the right with 64-bit divisions by the
/// constant `10^9` (which the wasm compiler turns into a multiply), over 32-bit limbs, until the
/// rest fits a `u64` (at most three chunks); the rest is [`u64_digits`]'s, and each chunk is
/// written in place, two digits at a time, into a fixed-size extension of `out` (no copy of a
/// variable length, which is a `memory.copy` call in wasm).
#[inline(always)]
fn u128_digits(out: &mut Vec<u8>, x: u128) {
    let mut limbs = [
        (x >> 96) as u32,
        (x >> 64) as u32,
        (x >> 32) as u32,
        x as u32,
    ];
    let mut chunks = [0u32; 3];
    let mut cut = 0;
    while (limbs[0] != 0 || limbs[1] != 0) && cut < chunks.len() {
        let mut rest = 0u64;
        for limb in &mut limbs {
            let current = (rest << 32) | u64::from(*limb);
            *limb = (current / TEN_9) as u32;
            rest = current % TEN_9;
        }
        chunks[cut] = rest as u32;
        cut += 1;
    }
    u64_digits(out, (u64::from(limbs[2]) << 32) | u64::from(limbs[3]));
    for &chunk in chunks[..cut].iter().rev() {
        let start = out.len();
        out.extend_from_slice(&[0; 9]);
        nine_digits(&mut out[start..], chunk);
    }
}

/// Decimal digits of `x`, written in place like [`u128_digits`]'s chunks: no call to `itoa` and
/// no copy of a variable length, each a call in wasm, and a call costs more there than its
/// instructions (fuel metering keeps its counter in memory across a call).
#[inline(always)]
fn u64_digits(out: &mut Vec<u8>, x: u64) {
    // The leading 1 to 9 digits, then zero, one or two 9-digit chunks.
    let (head, chunks, count) = if x < TEN_9 {
        (x as u32, [0, 0], 0)
    } else if x < TEN_9 * TEN_9 {
        ((x / TEN_9) as u32, [(x % TEN_9) as u32, 0], 1)
    } else {
        let rest = x % (TEN_9 * TEN_9);
        let top = (x / (TEN_9 * TEN_9)) as u32;
        (top, [(rest / TEN_9) as u32, (rest % TEN_9) as u32], 2)
    };
    let head_len = head.checked_ilog10().unwrap_or(0) as usize + 1;
    let start = out.len();
    out.extend_from_slice(&[0; 27]);
    let digits = &mut out[start..];
    let (mut rest, mut end) = (head, head_len);
    while end >= 2 {
        digits[end - 2..end].copy_from_slice(&DECIMAL_PAIRS[(rest % 100) as usize]);
        rest /= 100;
        end -= 2;
    }
    if end == 1 {
        digits[0] = b'0' + rest as u8;
    }
    for (i, &chunk) in chunks[..count].iter().enumerate() {
        nine_digits(&mut digits[head_len + 9 * i..], chunk);
    }
    out.truncate(start + head_len + 9 * count);
}

/// Writes the nine decimal digits of `x < 10^9`, zero-padded, into `dst[..9]`.
#[inline(always)]
fn nine_digits(dst: &mut [u8], x: u32) {
    let (high, low) = (x / 10_000, x % 10_000);
    let pairs = [high / 100 % 100, high % 100, low / 100, low % 100];
    dst[0] = b'0' + (high / 10_000) as u8;
    for (i, pair) in pairs.into_iter().enumerate() {
        dst[1 + 2 * i..3 + 2 * i].copy_from_slice(&DECIMAL_PAIRS[pair as usize]);
    }
}
