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
    if bytes.iter().all(|&b| !needs_escape(b)) {
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
    // and the loop unrolls into table loads and stores.
    let start = out.len();
    out.resize(start + 2 * bytes.len() + 4, b'"');
    let digits = &mut out[start + 1..start + 3 + 2 * bytes.len()];
    digits[..2].copy_from_slice(b"0x");
    for (pair, &b) in digits[2..].chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[b as usize]);
    }
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
/// work (as a `u64` when they fit, its fastest path); larger ones are cut into 19-digit chunks
/// from the right by dividing by `10^19`.
fn uint_digits<const BITS: usize, const LIMBS: usize>(out: &mut Vec<u8>, mut x: Uint<BITS, LIMBS>) {
    if let Ok(small) = u64::try_from(&x) {
        out.extend_from_slice(itoa::Buffer::new().format(small).as_bytes());
        return;
    }
    if let Ok(small) = u128::try_from(&x) {
        out.extend_from_slice(itoa::Buffer::new().format(small).as_bytes());
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
