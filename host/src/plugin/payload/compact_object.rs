//! The fast path of [`super::check_into`] for the commonest payload: a compact, flat object —
//! no whitespace, values that are strings without escapes, numbers or literals — as the SDK's
//! `JsonObject` writes it: `{"from":"0x…","to":"0x…","token":"0x…","value":"…"}`,
//! `{…,"price":1.5e-7,"tick":-201234}`.
//!
//! Why: the general check walks a payload token by token, and each string's end found by a
//! vector compare is the address of the next load: a chain of dependent steps per field. Here the
//! text is classified 64 bytes at a time into bit masks (quotes, colons, commas, and the bytes
//! this path does not take: `\` and controls), and the object's shape is judged by bit arithmetic
//! on those masks, with no branch on the text but one per 64 bytes and one per number; the text
//! is copied to the output as it is read (BENCHMARKS.md, "Session of 2026-12-05 (fourth)").
//!
//! The shape, from the masks: quotes pair into strings (a running XOR of the quote mask marks the
//! bytes inside); the bytes outside the strings, but for the first `{` and the last `}`, are
//! colons, commas and "scalar" bytes. A string opened right after a colon is a value and is
//! followed by a comma or the last `}` (an addition carries each value's opening quote to its
//! closing one); any other string is a key and is followed by a colon; a comma is followed by a
//! quote, a colon by a quote or a scalar byte; each run of scalar bytes is read as a JSON number
//! or literal, followed by a comma or the last `}`. With byte 1 a
//! quote, that is exactly `{` KEY `:` VALUE (`,` KEY `:` VALUE)* `}`: valid JSON. Anything else —
//! whitespace, a nested value, an escape, `{}`, or an error — is left to the general check, which
//! decides (and says where an error is).

use classify::Isa;

mod classify;

/// Bit `k` of each mask: byte `k` of a 64-byte block is that kind of byte.
#[derive(Default, Clone, Copy)]
struct Masks {
    quote: u64,
    colon: u64,
    comma: u64,
    /// Whether any byte of the block is `\` or below 0x20, which this path does not take.
    refused: bool,
}

/// Whether `b` has this path's shape; if it has, `b` has been appended to `out`
/// (as the blocks are read: no second pass over the text to copy it), else `out` is as it was.
pub(super) fn compact_object(b: &[u8], out: &mut Vec<u8>) -> bool {
    compact_object_with(Isa::detected(), b, out)
}

/// [`compact_object`] compiled for `isa`, which this CPU has ([`Isa`] says only what it has).
fn compact_object_with(isa: Isa, b: &[u8], out: &mut Vec<u8>) -> bool {
    let at = out.len();
    let taken = match isa {
        Isa::Portable => judge(b, out, classify::portable, classify::running_xor),
        // SAFETY: an `Isa` other than `Portable` is made only when the CPU has that feature.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { judge_avx2(b, out) },
    };
    if !taken {
        out.truncate(at);
    }
    taken
}

/// [`judge`] with everything in it compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,pclmulqdq")]
fn judge_avx2(b: &[u8], out: &mut Vec<u8>) -> bool {
    judge(
        b,
        out,
        |block| classify::avx2(block),
        |x| classify::running_xor_clmul(x),
    )
}

/// [`compact_object`], leaving some of `b` in `out` when it is refused; `classify` makes a
/// block's [`Masks`], `running_xor` the running XOR of a mask (bit k: the XOR of bits 0..=k).
#[inline(always)]
fn judge(
    b: &[u8],
    out: &mut Vec<u8>,
    classify: impl Fn(&[u8; 64]) -> Masks,
    running_xor: impl Fn(u64) -> u64,
) -> bool {
    let n = b.len();
    if n < 4 || b.first() != Some(&b'{') || b.last() != Some(&b'}') || b.get(1) != Some(&b'"') {
        return false;
    }
    let at = out.len();
    let mut carried = Carried::default();
    let mut start = 0;
    while start < n {
        let masks = block_masks(b, start, at, out, &classify);
        let quoted = running_xor(masks.quote);
        let Some(mut scalar_starts) = carried.judge_block(&masks, quoted, start == 0, n - start)
        else {
            return false;
        };
        while scalar_starts != 0 {
            if !scalar_ends_at_a_comma(b, start + scalar_starts.trailing_zeros() as usize) {
                return false;
            }
            scalar_starts &= scalar_starts - 1;
        }
        start += 64;
    }
    carried.inside == 0
}

/// What one block passes to the next: the last bit of each mask (as bit 0 of the shifted
/// masks), whether the block ends inside a string (all ones or all zeros, to XOR into the next
/// block's running XOR), and the carry of the addition that finds the values' ends.
#[derive(Default)]
struct Carried {
    inside: u64,
    value_carry: bool,
    colons: u64,
    commas: u64,
    scalars: u64,
    key_closes: u64,
    value_closes: u64,
}

impl Carried {
    /// Judges the block whose masks are `m` (the text's first block if `is_first`), `left` bytes
    /// before the end of the text, `quoted` the running XOR of its quote mask: the first bytes of
    /// its numbers and literals (each still to be read), or `None` when the text does not have
    /// this path's shape.
    #[inline(always)]
    fn judge_block(&mut self, m: &Masks, quoted: u64, is_first: bool, left: usize) -> Option<u64> {
        let valid = if left >= 64 { !0 } else { (1u64 << left) - 1 };
        let first = u64::from(is_first);
        let last = if left <= 64 { 1u64 << (left - 1) } else { 0 };
        // Bytes inside a string, with its opening quote and without its closing one.
        let inside = quoted ^ self.inside;
        let outside = !(inside | m.quote) & valid & !(first | last);
        let colons = outside & m.colon;
        let commas = outside & m.comma;
        // Numbers and literals: every other byte outside the strings.
        let scalars = outside & !(colons | commas);
        let after_colon = shifted(colons, self.colons);
        // A value's string opens right after a colon. Added at the start of its run of `inside`
        // bits, the carry runs to the bit after the run: the value's closing quote.
        let (sum, carry_a) = inside.overflowing_add(after_colon & m.quote);
        let (sum, carry_b) = sum.overflowing_add(u64::from(self.value_carry));
        let value_closes = sum & !inside;
        let key_closes = m.quote & !inside & !value_closes;
        let after_scalar = shifted(scalars, self.scalars);
        let errors = u64::from(m.refused)
            | (shifted(key_closes, self.key_closes) & !colons)
            | (shifted(value_closes, self.value_closes) & !(commas | last))
            | (shifted(commas, self.commas) & !m.quote)
            | (after_colon & !(m.quote | scalars));
        if errors != 0 {
            return None;
        }
        *self = Carried {
            inside: top_bit_everywhere(inside),
            value_carry: carry_a | carry_b,
            colons,
            commas,
            scalars,
            key_closes,
            value_closes,
        };
        Some(scalars & !after_scalar)
    }
}

/// Whether the run of scalar bytes starting at `i` is one number or literal (JSON's grammar,
/// [`super::number`]) followed by a comma or the text's last byte. Where such a run may start
/// is the masks' rule (after a colon: after anything else one of their rules fails); what ends
/// it is checked here.
fn scalar_ends_at_a_comma(b: &[u8], i: usize) -> bool {
    let end = match b.get(i) {
        Some(b'-' | b'0'..=b'9') => super::number(b, i),
        Some(b't') => super::literal(b, i, b"true"),
        Some(b'f') => super::literal(b, i, b"false"),
        Some(b'n') => super::literal(b, i, b"null"),
        _ => return false,
    };
    matches!(end, Ok(end) if end + 1 == b.len() || b.get(end) == Some(&b','))
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

/// The masks of the 64 bytes from `start` (bytes past the end of `b` in none of them), and those
/// bytes appended to `out`, which holds `b` up to `start` from `at` on. A full block is copied
/// as a fixed-size chunk (a few vector moves, not a call). The last, partial block of a text of
/// at least 64 bytes is read as the text's last 64 bytes, its masks shifted, and copied over the
/// same bytes of `out` (its bytes before `start` were judged and copied already; a refused one
/// among them refuses again, rightly); a shorter text is copied into a block filled with a byte
/// of no kind.
#[inline(always)]
fn block_masks(
    b: &[u8],
    start: usize,
    at: usize,
    out: &mut Vec<u8>,
    classify: &impl Fn(&[u8; 64]) -> Masks,
) -> Masks {
    if let Some(block) = b.get(start..).and_then(|rest| rest.first_chunk::<64>()) {
        out.extend_from_slice(block);
        return classify(block);
    }
    let n = b.len();
    if let Some(last) = n
        .checked_sub(64)
        .and_then(|from| b.get(from..)?.first_chunk::<64>())
    {
        out.truncate(at + n - 64);
        out.extend_from_slice(last);
        let skip = start + 64 - n;
        let m = classify(last);
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
    classify(&block)
}

#[cfg(test)]
mod tests;
