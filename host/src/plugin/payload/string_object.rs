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
//! bytes inside); every byte outside the strings is the first `{`, the last `}`, or a separator
//! (`:` or `,`); every separator has a quote on each side (so exactly one separator lies between
//! two strings and none before the first or after the last); a string opened after a colon is a
//! value and is followed by a comma or the last `}`, any other string is a key and is followed by
//! a colon (an addition carries each value's opening quote to its closing one). That is exactly
//! `{` STRING (`:` STRING `,` STRING)* `:` STRING `}`, with strings free of `"`, `\` and
//! controls: valid JSON. Anything else — whitespace, a
//! number, a nested value, an escape, `{}`, or an error — returns `None`, and the general check
//! decides (and reports where an error is).

/// Bit `k` of each mask: byte `k` of a 64-byte block is that kind of byte.
#[derive(Default, Clone, Copy)]
struct Masks {
    quote: u64,
    colon: u64,
    comma: u64,
    /// Whether any byte of the block is `\` or below 0x20, which this path does not take.
    refused: bool,
}

/// Whether `b` is a compact object of unescaped strings; if it is, `b` has been appended to `out`
/// (as the blocks are read: no second pass over the text to copy it), else `out` is as it was.
pub(super) fn string_object(b: &[u8], out: &mut Vec<u8>) -> bool {
    let at = out.len();
    let taken = judge(b, out);
    if !taken {
        out.truncate(at);
    }
    taken
}

/// [`string_object`], leaving some of `b` in `out` when it is refused.
fn judge(b: &[u8], out: &mut Vec<u8>) -> bool {
    let n = b.len();
    if n < 4 || b.first() != Some(&b'{') || b.last() != Some(&b'}') || b.get(1) != Some(&b'"') {
        return false;
    }
    let at = out.len();
    // Carried from one block to the next: the last bit of each mask (as bit 0 of the shifted
    // masks), whether the block ends inside a string (all ones or all zeros, to XOR into the
    // next block's running XOR), and the carry of the addition that finds the values' ends.
    let mut inside_carry = 0u64;
    let mut value_carry = false;
    let mut previous_separators = 0u64;
    let mut previous_colons = 0u64;
    let mut previous_key_closes = 0u64;
    let mut previous_value_closes = 0u64;
    let mut start = 0;
    while start < n {
        let masks = block_masks(b, start, at, out);
        let left = n - start;
        let valid = if left >= 64 { !0 } else { (1u64 << left) - 1 };
        let first = u64::from(start == 0);
        let last = if left <= 64 { 1u64 << (left - 1) } else { 0 };
        // Bytes inside a string, with its opening quote and without its closing one.
        let inside = running_xor(masks.quote) ^ inside_carry;
        let outside = !(inside | masks.quote) & valid;
        let separators = outside & !(first | last);
        let colons = separators & masks.colon;
        let commas = separators & masks.comma;
        // A value's string opens right after a colon. Added at the start of its run of `inside`
        // bits, the carry runs to the bit after the run: the value's closing quote.
        let value_opens = shifted(colons, previous_colons) & masks.quote;
        let (sum, carry_a) = inside.overflowing_add(value_opens);
        let (sum, carry_b) = sum.overflowing_add(u64::from(value_carry));
        let value_closes = sum & !inside;
        let key_closes = masks.quote & !inside & !value_closes;
        let errors = u64::from(masks.refused)
            | (shifted(separators, previous_separators) & !masks.quote)
            | (shifted(key_closes, previous_key_closes) & !colons)
            | (shifted(value_closes, previous_value_closes) & !(commas | last));
        if errors != 0 {
            return false;
        }
        inside_carry = top_bit_everywhere(inside);
        value_carry = carry_a | carry_b;
        previous_separators = separators;
        previous_colons = colons;
        previous_key_closes = key_closes;
        previous_value_closes = value_closes;
        start += 64;
    }
    inside_carry == 0
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

/// Bit k: the XOR of bits 0..=k of `x` (for the quote mask: inside a string, from its opening
/// quote on).
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

/// The masks of the 64 bytes from `start` (bytes past the end of `b` in none of them), and those
/// bytes appended to `out`, which holds `b` up to `start` from `at` on. A full block is copied
/// as a fixed-size chunk (a few vector moves, not a call). The last, partial block of a text of
/// at least 64 bytes is read as the text's last 64 bytes, its masks shifted, and copied over the
/// same bytes of `out` (its bytes before `start` were judged and copied already; a refused one
/// among them refuses again, rightly); a shorter text is copied into a block filled with a byte
/// of no kind.
#[inline(always)]
fn block_masks(b: &[u8], start: usize, at: usize, out: &mut Vec<u8>) -> Masks {
    if let Some(block) = b.get(start..).and_then(|rest| rest.first_chunk::<64>()) {
        out.extend_from_slice(block);
        return masks64(block);
    }
    let n = b.len();
    if let Some(last) = n
        .checked_sub(64)
        .and_then(|from| b.get(from..)?.first_chunk::<64>())
    {
        out.truncate(at + n - 64);
        out.extend_from_slice(last);
        let skip = start + 64 - n;
        let m = masks64(last);
        return Masks {
            quote: m.quote >> skip,
            colon: m.colon >> skip,
            comma: m.comma >> skip,
            refused: m.refused,
        };
    }
    let rest = b.get(start..).unwrap_or_default();
    out.extend_from_slice(rest);
    let mut block = [b'a'; 64];
    if let Some(head) = block.get_mut(..rest.len()) {
        head.copy_from_slice(rest);
    }
    masks64(&block)
}

/// The masks of 64 bytes (SSE2, which every x86-64 has; `safe_arch` wraps its intrinsics in safe
/// functions). The refused bytes of all four chunks are gathered in one vector: one mask
/// extraction instead of four.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn masks64(block: &[u8; 64]) -> Masks {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, max_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i, zeroed_m128i,
    };
    let mut m = Masks::default();
    let mut refused = zeroed_m128i();
    let control_max = set_splat_i8_m128i(0x1f);
    for (k, chunk) in block.as_chunks::<16>().0.iter().enumerate() {
        let v = load_unaligned_m128i(chunk);
        let equal = |byte: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(byte as i8));
        // Below 0x20 (unsigned): max(x, 0x1f) == 0x1f.
        let control = cmp_eq_mask_i8_m128i(max_u8_m128i(v, control_max), control_max);
        refused = bitor_m128i(refused, bitor_m128i(control, equal(b'\\')));
        // Sixteen mask bits in an `i32`, never negative: the casts keep them.
        let bits = |mask| u64::from(move_mask_i8_m128i(mask) as u16) << (16 * k);
        m.quote |= bits(equal(b'"'));
        m.colon |= bits(equal(b':'));
        m.comma |= bits(equal(b','));
    }
    m.refused = move_mask_i8_m128i(refused) != 0;
    m
}

/// [`masks64`] byte by byte, elsewhere.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn masks64(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (k, &c) in block.iter().enumerate() {
        m.quote |= u64::from(c == b'"') << k;
        m.colon |= u64::from(c == b':') << k;
        m.comma |= u64::from(c == b',') << k;
        m.refused |= c == b'\\' || c < 0x20;
    }
    m
}

#[cfg(test)]
mod tests;
