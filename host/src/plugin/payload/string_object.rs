//! The fast path of [`super::check`] for the commonest payload: a compact object whose values are
//! all strings without escapes — what the SDK's `JsonObject` writes for hex and decimal fields,
//! `{"from":"0x…","to":"0x…","token":"0x…","value":"…"}`.
//!
//! Why: the general check walks a payload token by token, and each string's end found by a
//! vector compare is the address of the next load, a chain of dependent steps per field. Here the
//! text is classified 64 bytes at a time into bit masks (quotes, colons, commas, and the bytes
//! this path does not take: `\` and controls), and the object's shape is judged by bit arithmetic
//! on those masks, with no branch on the text but one per 64 bytes (BENCHMARKS.md, "Session of
//! 2026-12-05 (fourth)").
//!
//! The shape, from the masks: quotes pair into strings (a running XOR of the quote mask marks the
//! bytes inside); every byte outside the strings is the first `{`, the last `}`, or a separator;
//! every separator has a quote on each side (so exactly one separator lies between two strings
//! and none before the first or after the last); the separators alternate `:`, `,`, … and end on
//! a `:` (key, value, key, value). That is exactly `{` STRING (`:` STRING `,` STRING)* `:` STRING
//! `}`, with strings free of `"`, `\` and controls: valid JSON. Anything else — whitespace, a
//! number, a nested value, an escape, `{}`, or an error — returns `None`, and the general check
//! decides (and reports where an error is).

/// Bit `k` of each mask: byte `k` of a 64-byte block is that kind of byte.
#[derive(Default, Clone, Copy)]
struct Masks {
    quote: u64,
    colon: u64,
    comma: u64,
    /// `\` or below 0x20: not taken by this path.
    refused: u64,
}

/// `(start, end)` of the value when `b` is a compact object of unescaped strings (then it is the
/// whole text), else `None`.
pub(super) fn string_object(b: &[u8]) -> Option<(usize, usize)> {
    let n = b.len();
    if n < 4 || b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return None;
    }
    // Carried from one block to the next: the last bit of each mask (as bit 0 of the shifted
    // masks), and whether the block ends inside a string or after an odd number of separators
    // (all ones or all zeros, to XOR into the next block's running XOR).
    let mut inside_carry = 0u64;
    let mut separators_odd = 0u64;
    let mut previous = Masks::default();
    let mut previous_close = 0u64;
    let mut previous_separators = 0u64;
    let mut start = 0;
    while start < n {
        let masks = block_masks(b, start);
        let valid = match n - start {
            left if left >= 64 => !0,
            left => (1u64 << left) - 1,
        };
        let mut ends = 0u64;
        if start == 0 {
            ends |= 1;
        }
        if n - 1 - start < 64 {
            ends |= 1u64 << (n - 1 - start);
        }
        // Bytes inside a string, with its opening quote and without its closing one.
        let inside = running_xor(masks.quote) ^ inside_carry;
        let close = masks.quote & !inside;
        let outside = !(inside | masks.quote) & valid;
        let separators = outside & !ends;
        let separators_seen = running_xor(separators) ^ separators_odd;
        let errors = masks.refused
            | (separators & !(masks.colon | masks.comma))
            | (separators & !shifted(masks.quote, previous.quote))
            | (shifted(separators, previous_separators) & !masks.quote)
            | (shifted(close, previous_close) & !outside)
            | (separators & masks.colon & !separators_seen)
            | (separators & masks.comma & separators_seen);
        if errors != 0 {
            return None;
        }
        inside_carry = top_bit_everywhere(inside);
        separators_odd = top_bit_everywhere(separators_seen);
        previous = masks;
        previous_close = close;
        previous_separators = separators;
        start += 64;
    }
    (inside_carry == 0 && separators_odd == !0).then_some((0, n))
}

/// `x` moved one byte later, with the previous block's last bit as its first.
#[inline(always)]
fn shifted(x: u64, previous: u64) -> u64 {
    (x << 1) | (previous >> 63)
}

/// All ones if bit 63 is set, else zero.
#[inline(always)]
fn top_bit_everywhere(x: u64) -> u64 {
    0u64.wrapping_sub(x >> 63)
}

/// Bit k: the XOR of bits 0..=k of `x` (inside a string after its opening quote; after an odd
/// number of separators).
#[inline(always)]
fn running_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The masks of the 64 bytes from `start` (bytes past the end of `b` in none of them). The last,
/// partial block of a text of at least 64 bytes is read as the text's last 64 bytes, shifted;
/// a shorter text is copied into a block filled with a byte of no kind.
#[inline(always)]
fn block_masks(b: &[u8], start: usize) -> Masks {
    if let Some(block) = b.get(start..).and_then(|rest| rest.first_chunk::<64>()) {
        return masks64(block);
    }
    let n = b.len();
    if let Some(last) = n
        .checked_sub(64)
        .and_then(|at| b.get(at..)?.first_chunk::<64>())
    {
        let skip = start + 64 - n;
        let m = masks64(last);
        return Masks {
            quote: m.quote >> skip,
            colon: m.colon >> skip,
            comma: m.comma >> skip,
            refused: m.refused >> skip,
        };
    }
    let mut block = [b'a'; 64];
    let rest = b.get(start..).unwrap_or_default();
    if let Some(head) = block.get_mut(..rest.len()) {
        head.copy_from_slice(rest);
    }
    masks64(&block)
}

#[inline(always)]
fn masks64(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (k, chunk) in block.as_chunks::<16>().0.iter().enumerate() {
        let [quote, colon, comma, refused] = masks16(chunk);
        let shift = 16 * k;
        m.quote |= u64::from(quote) << shift;
        m.colon |= u64::from(colon) << shift;
        m.comma |= u64::from(comma) << shift;
        m.refused |= u64::from(refused) << shift;
    }
    m
}

/// Quote, colon, comma and refused bits of sixteen bytes (SSE2, which every x86-64 has;
/// `safe_arch` wraps its intrinsics in safe functions).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn masks16(chunk: &[u8; 16]) -> [u16; 4] {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, max_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let v = load_unaligned_m128i(chunk);
    let equal = |byte: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(byte as i8));
    let control_max = set_splat_i8_m128i(0x1f);
    // Below 0x20 (unsigned): max(x, 0x1f) == 0x1f.
    let control = cmp_eq_mask_i8_m128i(max_u8_m128i(v, control_max), control_max);
    let refused = bitor_m128i(control, equal(b'\\'));
    // Sixteen mask bits in an `i32`: the casts keep them.
    [
        move_mask_i8_m128i(equal(b'"')) as u16,
        move_mask_i8_m128i(equal(b':')) as u16,
        move_mask_i8_m128i(equal(b',')) as u16,
        move_mask_i8_m128i(refused) as u16,
    ]
}

/// [`masks16`] byte by byte, elsewhere.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn masks16(chunk: &[u8; 16]) -> [u16; 4] {
    let mut m = [0u16; 4];
    for (k, &c) in chunk.iter().enumerate() {
        let kinds = [c == b'"', c == b':', c == b',', c == b'\\' || c < 0x20];
        for (mask, is) in m.iter_mut().zip(kinds) {
            *mask |= u16::from(is) << k;
        }
    }
    m
}

#[cfg(test)]
mod tests;
