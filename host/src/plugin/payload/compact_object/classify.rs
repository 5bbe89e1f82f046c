//! Classifying 64 bytes into [`Masks`], and the running XOR of the quote mask, with what the CPU
//! has: AVX2 (two 32-byte compares per kind of byte) with a carry-less multiply, else SSE2, which
//! every x86-64 has (four 16-byte compares, and the XOR as a chain of shifts), else byte by byte.
//!
//! Why: with SSE2, classifying was two thirds of the check's instructions (four loads, fifteen
//! compares, twelve mask moves, shifts and ORs per block, plus the register copies of SSE's
//! two-operand form); AVX2 took the check from 755 to 504 instructions per `erc20-transfers`
//! payload (BENCHMARKS.md, "Session of 2026-12-06 (tenth)"). AVX-512BW, one compare per kind
//! straight into a 64-bit mask, measured no faster than AVX2 on a CPU that has both, so it is
//! not here. The release build targets plain x86-64, so AVX2 is chosen at run time
//! ([`Isa::detected`]) and the whole check is compiled for it (`judge_avx2` in the parent). A
//! `#[target_feature]` function is called through `unsafe`, sound only on a CPU that has the
//! feature: an [`Isa`] other than `Portable` is made only after the CPU said it has it.

use std::sync::LazyLock;

use super::Masks;

/// An instruction set the check can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    /// SSE2 on x86-64, bytes elsewhere.
    Portable,
    /// AVX2, with BMI1 and the carry-less multiply.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The widest this CPU has, asked once per process.
    #[inline(always)]
    pub(super) fn detected() -> Isa {
        static DETECTED: LazyLock<Isa> = LazyLock::new(Isa::detect);
        *DETECTED
    }

    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // The check's other instructions: `andn` (BMI1) and the carry-less multiply.
            if has!("avx2") && has!("bmi1") && has!("pclmulqdq") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every one this CPU has, for the tests to compare.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Isa> {
        let mut all = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            all.push(Isa::detect());
        }
        all
    }
}

/// The masks of 64 bytes with SSE2 (`safe_arch` wraps its intrinsics in safe functions). The
/// refused bytes of all four chunks are gathered in one vector: one mask extraction instead of
/// four.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(super) fn portable(block: &[u8; 64]) -> Masks {
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

/// The masks of 64 bytes, byte by byte.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(super) fn portable(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (k, &c) in block.iter().enumerate() {
        m.quote |= u64::from(c == b'"') << k;
        m.colon |= u64::from(c == b':') << k;
        m.comma |= u64::from(c == b',') << k;
        m.refused |= c == b'\\' || c < 0x20;
    }
    m
}

/// Bit k: the XOR of bits 0..=k of `x` (for the quote mask: inside a string, from its opening
/// quote on).
#[inline(always)]
pub(super) fn running_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// [`running_xor`] as one carry-less multiplication by all ones (each bit k of the product's
/// low half is the XOR of bits 0..=k): one instruction instead of a chain of twelve.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
#[inline]
pub(super) fn running_xor_clmul(x: u64) -> u64 {
    use std::arch::x86_64::{_mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x};
    let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set_epi64x(0, -1), 0);
    _mm_cvtsi128_si64(product) as u64
}

/// The masks of 64 bytes with AVX2: two 32-byte halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn avx2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_max_epu8, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8, _mm256_setzero_si256,
    };
    let mut m = Masks::default();
    let mut refused = _mm256_setzero_si256();
    let control_max = _mm256_set1_epi8(0x1f);
    for (k, half) in block.as_chunks::<32>().0.iter().enumerate() {
        let v = safe_arch::m256i::from(*half).0;
        let equal = |byte: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(byte as i8));
        let control = _mm256_cmpeq_epi8(_mm256_max_epu8(v, control_max), control_max);
        refused = _mm256_or_si256(refused, _mm256_or_si256(control, equal(b'\\')));
        // Thirty-two mask bits in an `i32`: the cast to `u32` keeps them.
        let bits = |mask| u64::from(_mm256_movemask_epi8(mask) as u32) << (32 * k);
        m.quote |= bits(equal(b'"'));
        m.colon |= bits(equal(b':'));
        m.comma |= bits(equal(b','));
    }
    m.refused = _mm256_movemask_epi8(refused) != 0;
    m
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Isa, Masks};

    fn masks(isa: Isa, block: &[u8; 64]) -> (u64, u64, u64, bool) {
        let m: Masks = match isa {
            Isa::Portable => super::portable(block),
            // SAFETY: `Isa::available` lists only what this CPU has.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { super::avx2(block) },
        };
        (m.quote, m.colon, m.comma, m.refused)
    }

    /// Byte by byte, the definition.
    fn expected(block: &[u8; 64]) -> (u64, u64, u64, bool) {
        let bits = |kind: u8| (0..64).fold(0u64, |m, k| m | (u64::from(block[k] == kind) << k));
        let refused = block.iter().any(|&c| c == b'\\' || c < 0x20);
        (bits(b'"'), bits(b':'), bits(b','), refused)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn the_carry_less_running_xor_is_the_running_xor(x in any::<u64>()) {
            let by_shifts = super::running_xor(x);
            prop_assert_eq!(by_shifts, (0..64).fold(0u64, |r, k| r | (((x << (63 - k)).count_ones() as u64 & 1) << k)));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("pclmulqdq") {
                // SAFETY: the CPU has the feature.
                prop_assert_eq!(unsafe { super::running_xor_clmul(x) }, by_shifts);
            }
        }

        /// Every byte value at every position, on every instruction set this CPU has.
        #[test]
        fn every_isa_classifies_as_the_definition(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'"'), Just(b':'), Just(b','), Just(b'\\'), Just(0x1fu8), Just(0x20u8),
                    Just(0x7fu8), Just(0x80u8), Just(0xffu8), any::<u8>(),
                ],
                64,
            ),
        ) {
            let block: [u8; 64] = bytes.try_into().unwrap_or([b'a'; 64]);
            for isa in Isa::available() {
                prop_assert_eq!(masks(isa, &block), expected(&block), "{:?}", isa);
            }
        }
    }
}
