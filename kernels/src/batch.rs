//! The per-frame audio pipeline, run on up to [`LANES`] frames at once, vectorised *across*
//! frames (structure of arrays): value `n` of frame `f` sits in lane `f` of vector `n`, so every
//! step of the FFT, the split into the real spectrum, |X|² or |X|, the sparse mel sums and
//! log10 is a full-width vertical operation with no shuffles.
//!
//! A call first transposes the region once (rows of `hop` samples become columns), so that one
//! sample of consecutive frames is consecutive values. The FFT is an in-place mixed-radix
//! decimation-in-frequency FFT (radices 8, 5, 4, 3, 2) of the N/2 complex values
//! `x[2m] + i·x[2m+1]`, whose first pass reads the transposed region and windows it; Whisper's
//! N/2 = 200 = 8·25 takes a prime-factor first pass (no twiddles), dMel's 512 = 8·8·8 the plain
//! one. The split step to the N/2 + 1 bins of the real transform reads the FFT's output through
//! its digit-reversal table, two bins at a time.
//!
//! A call computes up to 24 frames: 16 lanes and 8 more in lockstep, or 16 and at most 4 more
//! whose split and mel steps pair two steps in one 8-lane vector ([`twin`]), so that the 20
//! frames of a Whisper micro-turn are one call.
//!
//! Lanes never mix, and every lane goes through the same IEEE operations in the same order
//! (fused multiply-adds included: the plain build uses `f32::mul_add`, exact like the FMA
//! instruction), so a frame's result does not depend on which batch or lane it was computed
//! in, nor on which build ran ([`Path`]: AVX-512F on 16 lanes, AVX2 + FMA on 8 or 4, plain Rust
//! on 8 or 16): the streamed and offline outputs stay bit-identical whatever the chunking.

use crate::framer::Region;
#[cfg(test)]
use crate::spectrum::log10_floor_in_place;
use crate::spectrum::{
    LG2_HI, LG2_LO, LOG1P_C, MelFilterbank, SpectrumKind, has_avx2, log_split, periodic_hann,
};

/// Frames per call to [`BatchSpectrum::run`]: the 16 `f32` lanes of an AVX-512 register and
/// the 8 of an AVX2 one, computed in lockstep (see [`run_lanes`]). A 200 ms micro-turn of
/// Whisper frames (20) is one call.
pub(crate) const LANES: usize = 24;

/// One output value for each of up to [`LANES`] frames.
pub(crate) type Out = [f32; LANES];

/// Which build of the batch code runs, and how many lanes it computes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Plain Rust, 8 lanes, or two batches of 8 in lockstep, and at most 4 frames paired
    /// ([`twin`]) alone or after 8 or 16 lanes (CPUs without AVX2).
    Plain8,
    /// Plain Rust, 16 lanes and 8 more in lockstep (only for the equality tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Plain16,
    /// AVX2 + FMA, as `Plain8`.
    Avx2,
    /// AVX-512F, 16 lanes, and up to 4 more frames paired ([`twin`]) or 8 more in lockstep
    /// (calls of 5–8 frames take the AVX2 code on 8 lanes, and calls of at most 4 are paired,
    /// all built with AVX-512VL's 32 registers).
    Avx512,
}

impl Path {
    /// The fastest path this CPU has.
    pub(crate) fn detect() -> Path {
        if has_avx512() {
            Path::Avx512
        } else if has_avx2() {
            Path::Avx2
        } else {
            Path::Plain8
        }
    }
}

/// AVX-512F and VL (and AVX2 + FMA, which the 16-lane path also uses to load frames).
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The vertical operations the batch code needs, on `L` lanes. [`Plain`] is ordinary Rust on
/// arrays; [`Avx`] is AVX2 intrinsics (8 lanes), [`Avx512`] AVX-512F intrinsics (16 lanes). All
/// perform the same IEEE operation per lane, so they give bit-identical results.
trait Simd<const L: usize>: Copy {
    type V: Copy;
    fn splat(x: f32) -> Self::V;
    fn load(a: &[f32; L]) -> Self::V;
    fn store(v: Self::V, a: &mut [f32; L]);
    fn add(a: Self::V, b: Self::V) -> Self::V;
    fn sub(a: Self::V, b: Self::V) -> Self::V;
    fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c` with one rounding (fused multiply-add).
    fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c − a·b` with one rounding.
    fn fnma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `max(a, b)`; `b` where `a` is NaN.
    fn max(a: Self::V, b: Self::V) -> Self::V;
    fn sqrt(a: Self::V) -> Self::V;
    /// `(e, m, 1/c, log10 c)` with `x = m · 2^e`, m ∈ [√½, √2), and `c` from the table, for
    /// positive normal `x` (see [`crate::spectrum::log_split`], which every build matches bit
    /// for bit).
    fn log_split(x: Self::V) -> (Self::V, Self::V, Self::V, Self::V);
}

/// The 8-lane operations that load frames into lanes (used by every path, 8 frames at a time).
trait Rows8: Simd<8> {
    /// The first 8 values of `s` (at least 8 long).
    fn load_slice(s: &[f32]) -> Self::V;
    /// 8 × 8 transpose: lane `j` of output `i` is lane `i` of input `j`.
    fn transpose(rows: [Self::V; 8]) -> [Self::V; 8];
}

#[derive(Clone, Copy)]
struct Plain<const L: usize>;

/// Eight lanes as two halves of 4 from two places: the paired 4-frame code ([`twin`]) runs two
/// steps of a 4-lane batch (two split steps, or two mel filters) in one 8-lane vector.
trait Twin: Simd<8> {
    /// `a` into lanes 0..4, `b` into lanes 4..8.
    fn load2(a: &[f32; 4], b: &[f32; 4]) -> Self::V;
    fn store_lo(v: Self::V, a: &mut [f32; 4]);
    fn store_hi(v: Self::V, b: &mut [f32; 4]);
    /// `a` in lanes 0..4, `b` in lanes 4..8.
    fn splat2(a: f32, b: f32) -> Self::V;
}

impl Twin for Plain<8> {
    #[inline(always)]
    fn load2(a: &[f32; 4], b: &[f32; 4]) -> [f32; 8] {
        std::array::from_fn(|i| if i < 4 { a[i] } else { b[i - 4] })
    }
    #[inline(always)]
    fn store_lo(v: [f32; 8], a: &mut [f32; 4]) {
        a.copy_from_slice(&v[..4]);
    }
    #[inline(always)]
    fn store_hi(v: [f32; 8], b: &mut [f32; 4]) {
        b.copy_from_slice(&v[4..]);
    }
    #[inline(always)]
    fn splat2(a: f32, b: f32) -> [f32; 8] {
        std::array::from_fn(|i| if i < 4 { a } else { b })
    }
}

impl<const L: usize> Simd<L> for Plain<L> {
    type V = [f32; L];
    #[inline(always)]
    fn splat(x: f32) -> [f32; L] {
        [x; L]
    }
    #[inline(always)]
    fn load(a: &[f32; L]) -> [f32; L] {
        *a
    }
    #[inline(always)]
    fn store(v: [f32; L], a: &mut [f32; L]) {
        *a = v;
    }
    #[inline(always)]
    fn add(a: [f32; L], b: [f32; L]) -> [f32; L] {
        std::array::from_fn(|j| a[j] + b[j])
    }
    #[inline(always)]
    fn sub(a: [f32; L], b: [f32; L]) -> [f32; L] {
        std::array::from_fn(|j| a[j] - b[j])
    }
    #[inline(always)]
    fn mul(a: [f32; L], b: [f32; L]) -> [f32; L] {
        std::array::from_fn(|j| a[j] * b[j])
    }
    #[inline(always)]
    fn fma(a: [f32; L], b: [f32; L], c: [f32; L]) -> [f32; L] {
        std::array::from_fn(|j| a[j].mul_add(b[j], c[j]))
    }
    #[inline(always)]
    fn fnma(a: [f32; L], b: [f32; L], c: [f32; L]) -> [f32; L] {
        std::array::from_fn(|j| (-a[j]).mul_add(b[j], c[j]))
    }
    #[inline(always)]
    fn max(a: [f32; L], b: [f32; L]) -> [f32; L] {
        std::array::from_fn(|j| if a[j] > b[j] { a[j] } else { b[j] })
    }
    #[inline(always)]
    fn sqrt(a: [f32; L]) -> [f32; L] {
        std::array::from_fn(|j| a[j].sqrt())
    }
    #[inline(always)]
    fn log_split(x: [f32; L]) -> ([f32; L], [f32; L], [f32; L], [f32; L]) {
        let parts: [(f32, f32, f32, f32); L] = std::array::from_fn(|j| log_split(x[j]));
        (
            std::array::from_fn(|j| parts[j].0),
            std::array::from_fn(|j| parts[j].1),
            std::array::from_fn(|j| parts[j].2),
            std::array::from_fn(|j| parts[j].3),
        )
    }
}

impl Rows8 for Plain<8> {
    #[inline(always)]
    fn load_slice(s: &[f32]) -> [f32; 8] {
        let mut r = [0.0; 8];
        r.copy_from_slice(&s[..8]);
        r
    }
    #[inline(always)]
    fn transpose(rows: [[f32; 8]; 8]) -> [[f32; 8]; 8] {
        std::array::from_fn(|i| std::array::from_fn(|j| rows[j][i]))
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx;

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx512;

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Sse;

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{Avx, Avx512, Rows8, Simd, Sse, Twin};
    use crate::spectrum::{LOG_INV_C, LOG10_C, MANTISSA, SQRT_HALF_BITS};
    use std::arch::x86_64::*;

    // SAFETY (every method): `Avx` is only used inside functions compiled with
    // `#[target_feature(enable = "avx2,fma")]` (or more), which run only where the CPU has
    // them; loads and stores go through references of 8 `f32`.
    impl Simd<8> for Avx {
        type V = __m256;
        #[inline(always)]
        fn splat(x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        fn load(a: &[f32; 8]) -> __m256 {
            unsafe { _mm256_loadu_ps(a.as_ptr()) }
        }
        #[inline(always)]
        fn store(v: __m256, a: &mut [f32; 8]) {
            unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn fnma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fnmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(a: __m256, b: __m256) -> __m256 {
            // maxps is `a > b ? a : b` per lane, exactly `Plain::max`.
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        fn sqrt(a: __m256) -> __m256 {
            unsafe { _mm256_sqrt_ps(a) }
        }
        #[inline(always)]
        fn log_split(x: __m256) -> (__m256, __m256, __m256, __m256) {
            unsafe {
                let i = _mm256_sub_epi32(_mm256_castps_si256(x), _mm256_set1_epi32(SQRT_HALF_BITS));
                let e = _mm256_cvtepi32_ps(_mm256_srai_epi32::<23>(i));
                let f = _mm256_and_si256(i, _mm256_set1_epi32(MANTISSA));
                let m = _mm256_add_epi32(f, _mm256_set1_epi32(SQRT_HALF_BITS));
                let j = _mm256_srli_epi32::<19>(f);
                let (inv_c, lg_c) = (lookup16(&LOG_INV_C, j), lookup16(&LOG10_C, j));
                (e, _mm256_castsi256_ps(m), inv_c, lg_c)
            }
        }
    }

    impl Rows8 for Avx {
        #[inline(always)]
        fn load_slice(s: &[f32]) -> __m256 {
            assert!(s.len() >= 8);
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn transpose(r: [__m256; 8]) -> [__m256; 8] {
            unsafe {
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ]
            }
        }
    }

    /// `t[j]` per lane, `j < 16`: each half of the table by an 8-entry permute, the half picked
    /// by bit 3 of `j`.
    ///
    /// # Safety
    /// Only inside functions compiled with AVX2 (as `Simd<8> for Avx`).
    #[inline(always)]
    unsafe fn lookup16(t: &[f32; 16], j: __m256i) -> __m256 {
        unsafe {
            let lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t.as_ptr()), j);
            let hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t[8..].as_ptr()), j);
            _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(j)))
        }
    }

    // SAFETY (every method): `Avx` is only used inside functions compiled with AVX2 (as for
    // `Simd<8> for Avx`); loads and stores go through references of 4 `f32`.
    impl Twin for Avx {
        #[inline(always)]
        fn load2(a: &[f32; 4], b: &[f32; 4]) -> __m256 {
            unsafe { _mm256_loadu2_m128(b.as_ptr(), a.as_ptr()) }
        }
        #[inline(always)]
        fn store_lo(v: __m256, a: &mut [f32; 4]) {
            unsafe { _mm_storeu_ps(a.as_mut_ptr(), _mm256_castps256_ps128(v)) }
        }
        #[inline(always)]
        fn store_hi(v: __m256, b: &mut [f32; 4]) {
            unsafe { _mm_storeu_ps(b.as_mut_ptr(), _mm256_extractf128_ps::<1>(v)) }
        }
        #[inline(always)]
        fn splat2(a: f32, b: f32) -> __m256 {
            unsafe { _mm256_set_m128(_mm_set1_ps(b), _mm_set1_ps(a)) }
        }
    }

    // SAFETY (every method): `Sse` is only used inside functions compiled with
    // `#[target_feature(enable = "avx2,fma")]` (or more), which run only where the CPU has
    // them; loads and stores go through references of 4 `f32`.
    impl Simd<4> for Sse {
        type V = __m128;
        #[inline(always)]
        fn splat(x: f32) -> __m128 {
            unsafe { _mm_set1_ps(x) }
        }
        #[inline(always)]
        fn load(a: &[f32; 4]) -> __m128 {
            unsafe { _mm_loadu_ps(a.as_ptr()) }
        }
        #[inline(always)]
        fn store(v: __m128, a: &mut [f32; 4]) {
            unsafe { _mm_storeu_ps(a.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(a: __m128, b: __m128) -> __m128 {
            unsafe { _mm_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(a: __m128, b: __m128, c: __m128) -> __m128 {
            unsafe { _mm_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn fnma(a: __m128, b: __m128, c: __m128) -> __m128 {
            unsafe { _mm_fnmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(a: __m128, b: __m128) -> __m128 {
            // maxps is `a > b ? a : b` per lane, exactly `Plain::max`.
            unsafe { _mm_max_ps(a, b) }
        }
        #[inline(always)]
        fn sqrt(a: __m128) -> __m128 {
            unsafe { _mm_sqrt_ps(a) }
        }
        #[inline(always)]
        fn log_split(x: __m128) -> (__m128, __m128, __m128, __m128) {
            unsafe {
                let i = _mm_sub_epi32(_mm_castps_si128(x), _mm_set1_epi32(SQRT_HALF_BITS));
                let e = _mm_cvtepi32_ps(_mm_srai_epi32::<23>(i));
                let f = _mm_and_si128(i, _mm_set1_epi32(MANTISSA));
                let m = _mm_add_epi32(f, _mm_set1_epi32(SQRT_HALF_BITS));
                // The lookup of the AVX2 build, on the low half.
                let j = _mm256_zextsi128_si256(_mm_srli_epi32::<19>(f));
                let (inv_c, lg_c) = (lookup16(&LOG_INV_C, j), lookup16(&LOG10_C, j));
                (
                    e,
                    _mm_castsi128_ps(m),
                    _mm256_castps256_ps128(inv_c),
                    _mm256_castps256_ps128(lg_c),
                )
            }
        }
    }

    // SAFETY (every method): `Avx512` is only used inside functions compiled with
    // `#[target_feature(enable = "avx512f,avx2,fma")]`, which run only where the CPU has them;
    // loads and stores go through references of 16 `f32`.
    impl Simd<16> for Avx512 {
        type V = __m512;
        #[inline(always)]
        fn splat(x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn load(a: &[f32; 16]) -> __m512 {
            unsafe { _mm512_loadu_ps(a.as_ptr()) }
        }
        #[inline(always)]
        fn store(v: __m512, a: &mut [f32; 16]) {
            unsafe { _mm512_storeu_ps(a.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn fnma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fnmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(a: __m512, b: __m512) -> __m512 {
            // vmaxps is `a > b ? a : b` per lane, like maxps and `Plain::max`.
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        fn sqrt(a: __m512) -> __m512 {
            unsafe { _mm512_sqrt_ps(a) }
        }
        #[inline(always)]
        fn log_split(x: __m512) -> (__m512, __m512, __m512, __m512) {
            unsafe {
                let i = _mm512_sub_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(SQRT_HALF_BITS));
                let e = _mm512_cvtepi32_ps(_mm512_srai_epi32::<23>(i));
                let f = _mm512_and_si512(i, _mm512_set1_epi32(MANTISSA));
                let m = _mm512_add_epi32(f, _mm512_set1_epi32(SQRT_HALF_BITS));
                let j = _mm512_srli_epi32::<19>(f);
                let inv_c = _mm512_permutexvar_ps(j, _mm512_loadu_ps(LOG_INV_C.as_ptr()));
                let lg_c = _mm512_permutexvar_ps(j, _mm512_loadu_ps(LOG10_C.as_ptr()));
                (e, _mm512_castsi512_ps(m), inv_c, lg_c)
            }
        }
    }
}

/// One complex value per lane, in memory.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct C<const L: usize> {
    re: [f32; L],
    im: [f32; L],
}

impl<const L: usize> C<L> {
    const ZERO: Self = C {
        re: [0.0; L],
        im: [0.0; L],
    };
}

/// One complex value per lane, in registers.
#[derive(Clone, Copy)]
struct Cv<const L: usize, S: Simd<L>> {
    re: S::V,
    im: S::V,
}

impl<const L: usize, S: Simd<L>> Cv<L, S> {
    #[inline(always)]
    fn load(c: &C<L>) -> Self {
        Cv {
            re: S::load(&c.re),
            im: S::load(&c.im),
        }
    }
    #[inline(always)]
    fn store(self, c: &mut C<L>) {
        S::store(self.re, &mut c.re);
        S::store(self.im, &mut c.im);
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Cv {
            re: S::add(self.re, o.re),
            im: S::add(self.im, o.im),
        }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Cv {
            re: S::sub(self.re, o.re),
            im: S::sub(self.im, o.im),
        }
    }
    /// self + (−i)·v, without negating.
    #[inline(always)]
    fn add_neg_i(self, v: Self) -> Self {
        Cv {
            re: S::add(self.re, v.im),
            im: S::sub(self.im, v.re),
        }
    }
    /// self − (−i)·v, without negating.
    #[inline(always)]
    fn sub_neg_i(self, v: Self) -> Self {
        Cv {
            re: S::sub(self.re, v.im),
            im: S::add(self.im, v.re),
        }
    }
    #[inline(always)]
    fn scale(self, c: S::V) -> Self {
        Cv {
            re: S::mul(self.re, c),
            im: S::mul(self.im, c),
        }
    }
    /// self · (wr + i·wi), the same twiddle in every lane.
    #[inline(always)]
    fn twiddle(self, wr: S::V, wi: S::V) -> Self {
        Cv {
            re: S::fnma(self.im, wi, S::mul(self.re, wr)),
            im: S::fma(self.re, wi, S::mul(self.im, wr)),
        }
    }
    /// self + a·c (real c).
    #[inline(always)]
    fn fma(self, a: Self, c: S::V) -> Self {
        Cv {
            re: S::fma(a.re, c, self.re),
            im: S::fma(a.im, c, self.im),
        }
    }
}

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// In-place forward DFT of `R` points (R ∈ {2, 3, 4, 5, 8}), `W = e^{−2πi/R}`.
#[inline(always)]
fn dft<const L: usize, S: Simd<L>, const R: usize>(a: &mut [Cv<L, S>; R]) {
    match R {
        2 => {
            let (x0, x1) = (a[0], a[1]);
            a[0] = x0.add(x1);
            a[1] = x0.sub(x1);
        }
        3 => {
            const H: f32 = 0.866_025_4; // sin(π/3)
            let (x0, x1, x2) = (a[0], a[1], a[2]);
            let s = x1.add(x2);
            let d = x1.sub(x2);
            let t = x0.fma(s, S::splat(-0.5));
            let v = d.scale(S::splat(H));
            a[0] = x0.add(s);
            a[1] = t.add_neg_i(v);
            a[2] = t.sub_neg_i(v);
        }
        4 => {
            let b = dft4([a[0], a[1], a[2], a[3]]);
            a[..4].copy_from_slice(&b);
        }
        5 => {
            let c1 = S::splat((2.0 * std::f64::consts::PI / 5.0).cos() as f32);
            let c2 = S::splat((4.0 * std::f64::consts::PI / 5.0).cos() as f32);
            let s1 = S::splat((2.0 * std::f64::consts::PI / 5.0).sin() as f32);
            let s2 = S::splat((4.0 * std::f64::consts::PI / 5.0).sin() as f32);
            let minus_s1 = S::splat(-(2.0 * std::f64::consts::PI / 5.0).sin() as f32);
            let x0 = a[0];
            let a1 = a[1].add(a[4]);
            let b1 = a[1].sub(a[4]);
            let a2 = a[2].add(a[3]);
            let b2 = a[2].sub(a[3]);
            let t1 = x0.fma(a1, c1).fma(a2, c2);
            let t2 = x0.fma(a1, c2).fma(a2, c1);
            // Outputs 1 and 4: t1 ∓ i·(s1·b1 + s2·b2); 2 and 3: t2 ∓ i·(s2·b1 − s1·b2).
            let v1 = b1.scale(s1).fma(b2, s2);
            let v2 = b1.scale(s2).fma(b2, minus_s1);
            a[0] = x0.add(a1).add(a2);
            a[1] = t1.add_neg_i(v1);
            a[4] = t1.sub_neg_i(v1);
            a[2] = t2.add_neg_i(v2);
            a[3] = t2.sub_neg_i(v2);
        }
        8 => {
            let e = dft4([a[0], a[2], a[4], a[6]]);
            let o = dft4([a[1], a[3], a[5], a[7]]);
            let h = S::splat(SQRT_HALF);
            // W8¹·o1 = ((o1.re + o1.im) + i(o1.im − o1.re))/√2, W8²·o2 = −i·o2,
            // W8³·o3 = ((o3.im − o3.re) − i(o3.re + o3.im))/√2; the 1/√2 goes into fused
            // multiply-adds with e1 and e3.
            let (s1, d1) = (S::add(o[1].re, o[1].im), S::sub(o[1].im, o[1].re));
            let (s3, d3) = (S::add(o[3].re, o[3].im), S::sub(o[3].im, o[3].re));
            a[0] = e[0].add(o[0]);
            a[4] = e[0].sub(o[0]);
            a[1] = Cv {
                re: S::fma(s1, h, e[1].re),
                im: S::fma(d1, h, e[1].im),
            };
            a[5] = Cv {
                re: S::fnma(s1, h, e[1].re),
                im: S::fnma(d1, h, e[1].im),
            };
            a[2] = e[2].add_neg_i(o[2]);
            a[6] = e[2].sub_neg_i(o[2]);
            a[3] = Cv {
                re: S::fma(d3, h, e[3].re),
                im: S::fnma(s3, h, e[3].im),
            };
            a[7] = Cv {
                re: S::fnma(d3, h, e[3].re),
                im: S::fma(s3, h, e[3].im),
            };
        }
        _ => unreachable!("radix {R} is not planned"),
    }
}

#[inline(always)]
fn dft4<const L: usize, S: Simd<L>>(a: [Cv<L, S>; 4]) -> [Cv<L, S>; 4] {
    let t0 = a[0].add(a[2]);
    let t1 = a[0].sub(a[2]);
    let t2 = a[1].add(a[3]);
    let t3 = a[1].sub(a[3]);
    [t0.add(t2), t1.add_neg_i(t3), t0.sub(t2), t1.sub_neg_i(t3)]
}

/// A butterfly's twiddles, real and imaginary parts, in registers.
type Twiddles<V, const R: usize> = ([V; R], [V; R]);

/// The twiddles `w_p^k = e^{−2πi p·k / n}`, k = 1..R, of butterfly `p` (index 0 unused).
#[inline(always)]
fn twiddles<const L: usize, S: Simd<L>, const R: usize>(
    tw: &[(f32, f32)],
    p: usize,
) -> Twiddles<S::V, R> {
    let w = &tw[p * (R - 1)..(p + 1) * (R - 1)];
    let mut wr = [S::splat(1.0); R];
    let mut wi = [S::splat(0.0); R];
    for k in 1..R {
        wr[k] = S::splat(w[k - 1].0);
        wi[k] = S::splat(w[k - 1].1);
    }
    (wr, wi)
}

/// `x[at + j·m]`, `j < R`: the places a butterfly reads and writes, checked once.
#[inline(always)]
fn strided<const L: usize, const R: usize>(
    x: &mut [C<L>],
    at: usize,
    m: usize,
) -> Strided<'_, L, R> {
    let last = m.checked_mul(R - 1).and_then(|o| o.checked_add(at));
    assert!(
        last.is_some_and(|last| last < x.len()),
        "butterfly out of range"
    );
    Strided { x, at, m }
}

/// See [`strided`]: indices `j < R` are in range.
struct Strided<'a, const L: usize, const R: usize> {
    x: &'a mut [C<L>],
    at: usize,
    m: usize,
}

impl<const L: usize, const R: usize> Strided<'_, L, R> {
    #[inline(always)]
    fn get(&mut self, j: usize) -> &mut C<L> {
        debug_assert!(j < R);
        // SAFETY: `j.min(R − 1)·m + at ≤ at + (R − 1)·m`, which `strided` (the only place a
        // `Strided` is made) checked to be below `x.len()`, without overflow.
        unsafe { self.x.get_unchecked_mut(self.at + j.min(R - 1) * self.m) }
    }
}

/// Stores a butterfly's outputs at `x[at + k·m]`, twiddled by `w` where it has twiddles.
#[inline(always)]
fn store_twiddled<const L: usize, S: Simd<L>, const R: usize>(
    a: &[Cv<L, S>; R],
    w: Option<&Twiddles<S::V, R>>,
    x: &mut [C<L>],
    (at, m): (usize, usize),
) {
    let mut x = strided::<L, R>(x, at, m);
    a[0].store(x.get(0));
    for k in 1..R {
        let v = match w {
            Some((wr, wi)) => a[k].twiddle(wr[k], wi[k]),
            None => a[k],
        };
        v.store(x.get(k));
    }
}

/// One in-place pass of radix `R` (decimation in frequency) over the `n`-point sub-transforms
/// `x[g·n..(g + 1)·n]` (and the same on `x2`, in lockstep): butterfly `p < m = n / R` reads
/// `x[g·n + p + j·m]` and writes `(Σ_j x[g·n + p + j·m] W_R^{jk}) · w_p^k` back to
/// `x[g·n + p + k·m]` (`w_p = e^{−2πi p / n}`, `tw[p·(R−1) + k − 1] = w_p^k`). The frequencies
/// end up in mixed-radix digit-reversed order ([`positions`]).
#[inline(always)]
fn pass<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>, const R: usize>(
    n: usize,
    x: &mut [C<L>],
    mut x2: Option<&mut [C<L2>]>,
    tw: &[(f32, f32)],
) {
    let m = n / R;
    assert!(x.len().is_multiple_of(n) && tw.len() >= m * (R - 1));
    assert!(x2.as_ref().is_none_or(|x2| x2.len() == x.len()));
    for p in 0..m {
        let w = twiddles::<L, S, R>(tw, p);
        let w2 = x2.is_some().then(|| twiddles::<L2, S2, R>(tw, p));
        for base in (0..x.len()).step_by(n) {
            butterfly::<L, S, R>(x, base + p, m, (p > 0).then_some(&w));
            if let Some(x2) = x2.as_deref_mut() {
                butterfly::<L2, S2, R>(x2, base + p, m, w2.as_ref().filter(|_| p > 0));
            }
        }
    }
}

/// [`pass`] over the blocks of a [`Layout`] with gaps (a function of its own: the blocks'
/// loop inside [`pass`] made Whisper's micro-turn, whose layout has none, 3 % slower on Zen 3).
#[inline(always)]
fn pass_blocks<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>, const R: usize>(
    n: usize,
    layout: Layout,
    x: &mut [C<L>],
    mut x2: Option<&mut [C<L2>]>,
    tw: &[(f32, f32)],
) {
    let m = n / R;
    let Layout {
        blocks,
        len,
        stride,
    } = layout;
    assert!(len.is_multiple_of(n) && tw.len() >= m * (R - 1));
    assert!(blocks > 0 && (blocks - 1) * stride + len <= x.len());
    assert!(x2.as_ref().is_none_or(|x2| x2.len() == x.len()));
    for p in 0..m {
        let w = twiddles::<L, S, R>(tw, p);
        let w2 = x2.is_some().then(|| twiddles::<L2, S2, R>(tw, p));
        for block in (0..blocks).map(|b| b * stride) {
            for base in (block..block + len).step_by(n) {
                butterfly::<L, S, R>(x, base + p, m, (p > 0).then_some(&w));
                if let Some(x2) = x2.as_deref_mut() {
                    butterfly::<L2, S2, R>(x2, base + p, m, w2.as_ref().filter(|_| p > 0));
                }
            }
        }
    }
}

/// Where the first pass leaves its `blocks` sub-transforms of `len` points: block `g` at
/// `x[g·stride..g·stride + len]`. Every later butterfly stays within one block.
///
/// `stride` is `len` plus one where `len` is a multiple of 16: the first pass writes its
/// `r` outputs `stride` entries apart, and at `len` apart (dMel: 64 entries of 64 bytes on 8
/// lanes, 4 KB) all of them fell in one set of the L1 data cache. One entry more spreads them
/// over `r` sets: a dMel micro-turn on Zen 3 (AVX2, two batches of 8 in lockstep) 12.4 →
/// 11.7 µs (medians of 8 alternating runs).
#[derive(Debug, Clone, Copy)]
struct Layout {
    blocks: usize,
    len: usize,
    stride: usize,
}

impl Layout {
    /// Where logical position `i` (block `i / len`, entry `i % len`) is.
    fn at(&self, i: usize) -> usize {
        (i / self.len) * self.stride + i % self.len
    }

    /// Entries a buffer needs.
    fn size(&self) -> usize {
        (self.blocks - 1) * self.stride + self.len
    }
}

/// One butterfly of [`pass`]: `x[at + j·m]`, `j < R`, in place (butterfly 0 has no twiddles).
#[inline(always)]
fn butterfly<const L: usize, S: Simd<L>, const R: usize>(
    x: &mut [C<L>],
    at: usize,
    m: usize,
    w: Option<&Twiddles<S::V, R>>,
) {
    let mut a = [Cv {
        re: S::splat(0.0),
        im: S::splat(0.0),
    }; R];
    {
        let mut x = strided::<L, R>(x, at, m);
        for (j, a) in a.iter_mut().enumerate() {
            *a = Cv::load(x.get(j));
        }
    }
    dft::<L, S, R>(&mut a);
    store_twiddled(&a, w, x, (at, m));
}

/// The first pass, as [`pass`] over the whole transform (on `x` and, in lockstep, `x2`) but
/// with its sub-transforms `stride` apart ([`Layout`]),
/// reading its inputs from the transposed region (`cols`, see [`transpose_region`]) and
/// windowing them: complex input `c` of lane `f` is `cols[re + f] · w_re + i · cols[im + f] ·
/// w_im` with the offsets and taps of its [`Source`], where `f0` (`f2`) is added to the
/// offsets for a batch of later frames.
#[inline(always)]
fn first_pass<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>, const R: usize>(
    src: &Sources,
    stride: usize,
    cols: &[f32],
    (f0, x): (usize, &mut [C<L>]),
    mut x2: Option<(&mut [C<L2>], usize)>,
    tw: Option<&[(f32, f32)]>,
) {
    let n = src.len();
    let m = n / R;
    assert!(tw.is_none_or(|tw| tw.len() >= m * (R - 1)));
    // `store_twiddled` checks that its `R` places are within `x`.
    assert!(
        x2.as_ref()
            .is_none_or(|(x2, f2)| x2.len() == x.len() && L2 <= LANES && *f2 <= LANES - L2)
    );
    // What `first_inputs` relies on.
    assert!(L <= LANES && f0 <= LANES - L && cols.len() >= src.end);
    for p in 0..m {
        // SAFETY: checked above: `f0 + L ≤ LANES`, `f2 + L2 ≤ LANES`, `cols.len() ≥ src.end`.
        unsafe {
            first_butterfly::<L, S, R>(src, cols, (f0, stride), x, p, tw);
            if let Some((x2, f2)) = x2.as_mut() {
                first_butterfly::<L2, S2, R>(src, cols, (*f2, stride), x2, p, tw);
            }
        }
    }
}

/// Butterfly `p` of [`first_pass`] on one batch, its outputs `stride` apart.
///
/// # Safety
/// As [`first_inputs`]: `f0 + L ≤ LANES` and `cols.len() ≥ src.end`.
#[inline(always)]
unsafe fn first_butterfly<const L: usize, S: Simd<L>, const R: usize>(
    src: &Sources,
    cols: &[f32],
    (f0, stride): (usize, usize),
    x: &mut [C<L>],
    p: usize,
    tw: Option<&[(f32, f32)]>,
) {
    // SAFETY: the function's contract.
    let mut a = unsafe { first_inputs::<L, S, R>(src, cols, f0, p) };
    dft::<L, S, R>(&mut a);
    // No twiddles for a prime-factor split (see `BatchSpectrum::with_path`); butterfly 0's
    // are all 1.
    match tw {
        Some(tw) if p > 0 => {
            let w = twiddles::<L, S, R>(tw, p);
            store_twiddled(&a, Some(&w), x, (p, stride));
        }
        _ => store_twiddled(&a, None, x, (p, stride)),
    }
}

/// The windowed inputs of butterfly `p` of [`first_pass`], lanes
/// `f0..f0 + L`. The loads are unchecked (on Zen 3, bounds checks in the first pass and the
/// butterflies made a Whisper micro-turn 6.8 µs against 6.1–6.3, dMel's 13.5 against
/// 12.5–12.7).
///
/// # Safety
/// `f0 + L ≤ LANES` and `cols.len() ≥ src.end`.
#[inline(always)]
unsafe fn first_inputs<const L: usize, S: Simd<L>, const R: usize>(
    src: &Sources,
    cols: &[f32],
    f0: usize,
    p: usize,
) -> [Cv<L, S>; R] {
    // A loop, not `array::from_fn`: its closure would not inherit the caller's target
    // features, and the intrinsics in it would not inline.
    let mut a = [Cv {
        re: S::splat(0.0),
        im: S::splat(0.0),
    }; R];
    for (a, s) in a.iter_mut().zip(src.butterfly::<R>(p)) {
        let (re, im) = (s.re as usize + f0, s.im as usize + f0);
        debug_assert!(re.max(im) + L <= cols.len());
        // SAFETY: `re`, `im` ≤ `src.end − LANES + f0` and `f0 + L ≤ LANES`, so
        // `re + L`, `im + L` ≤ `src.end` ≤ `cols.len()` (the function's contract).
        let (re, im): (&[f32; L], &[f32; L]) = unsafe {
            (
                &*cols.as_ptr().add(re).cast::<[f32; L]>(),
                &*cols.as_ptr().add(im).cast::<[f32; L]>(),
            )
        };
        a.re = S::mul(S::load(re), S::splat(s.w_re));
        a.im = S::mul(S::load(im), S::splat(s.w_im));
    }
    a
}

/// Where frequency `f` of an in-place transform with these radices (first pass first) ends up:
/// the first pass leaves the frequencies `f ≡ k (mod r₁)` in block `k`, and so on recursively.
fn positions(radices: &[usize], n: usize) -> Vec<usize> {
    let Some((&r, rest)) = radices.split_first() else {
        return vec![0; n];
    };
    let m = n / r;
    let sub = positions(rest, m);
    (0..n).map(|f| (f % r) * m + sub[f / r]).collect()
}

/// Where complex input `c` of the first pass comes from (see [`first_pass`]): the offsets in
/// the transposed region of its real and imaginary samples, and their window taps (0 outside
/// the window, with an offset that is valid all the same).
#[derive(Debug, Clone, Copy)]
struct Source {
    re: u32,
    w_re: f32,
    im: u32,
    w_im: f32,
}

/// The [`Source`]s of every complex input, in the order the first pass reads them, and how
/// far the first pass may read: every offset plus [`LANES`]. The first pass checks once per
/// call that the transposed region is that long, and its loads are unchecked.
///
/// Butterfly-major: the `r` inputs of first-pass butterfly `p` (complex inputs `p + j·m`,
/// `m = n / r`) lie next to each other, at `p·r + j`. In input order a butterfly read from `r`
/// places `m` entries apart, and kept a pointer to each (spilled on AVX2, with 16 registers):
/// butterfly-major made the micro-turn on Zen 3 faster (medians of two sets of alternating
/// runs: Whisper 6.22 → 6.08 and 6.30 → 6.01 µs, dMel 11.98 → 11.58 and 11.61 → 11.48).
struct Sources {
    at: Vec<Source>,
    r: usize,
    end: usize,
}

impl Sources {
    /// `input[c]` is complex input `c`'s source; `r` is the first pass's radix.
    fn new(input: Vec<Source>, r: usize) -> Self {
        let m = input.len() / r;
        assert_eq!(m * r, input.len(), "the first radix divides the transform");
        let at: Vec<Source> = (0..input.len())
            .map(|i| input[(i % r) * m + i / r])
            .collect();
        let end = at
            .iter()
            .map(|s| s.re.max(s.im) as usize)
            .max()
            .unwrap_or(0)
            + LANES;
        Sources { at, r, end }
    }

    /// Complex inputs (the transform's length).
    fn len(&self) -> usize {
        self.at.len()
    }

    /// The inputs of first-pass butterfly `p`, in the order `j` of its `R` inputs.
    #[inline(always)]
    fn butterfly<const R: usize>(&self, p: usize) -> &[Source; R] {
        debug_assert_eq!(R, self.r);
        self.at[p * R..(p + 1) * R]
            .try_into()
            .expect("R sources per butterfly")
    }
}

/// Radices for a complex FFT of `m` points, or `None` when `m` has a prime factor above 5.
fn plan(mut m: usize) -> Option<Vec<usize>> {
    let mut radices = Vec::new();
    while m > 1 {
        let r = [8, 5, 4, 3, 2].into_iter().find(|r| m.is_multiple_of(*r))?;
        radices.push(r);
        m /= r;
    }
    Some(radices)
}

/// The frames a [`BatchSpectrum`] computes: `win_len` samples every `hop`, centred in an FFT of
/// `n_fft`, and whether the mel filters sum |X|² or |X|.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchShape {
    pub win_len: usize,
    pub hop: usize,
    pub n_fft: usize,
    pub kind: SpectrumKind,
}

/// One in-place FFT pass after the first: (radix, n, twiddles), see [`pass`].
type Pass = (usize, usize, Vec<(f32, f32)>);

/// What does not depend on the lane width.
struct Tables {
    win_len: usize,
    hop: usize,
    /// Values per column of the transposed region (a multiple of 8, more than any lane reads).
    stride: usize,
    /// Per complex FFT input: where its samples come from.
    src: Sources,
    /// The first pass: (radix, twiddles; none for a prime-factor split).
    first: (usize, Option<Vec<(f32, f32)>>),
    /// The other passes, in place.
    passes: Vec<Pass>,
    /// Where the first pass leaves its sub-transforms (also in `split_pairs`; not in `order`,
    /// nor in [`folded_fft`], which has its own layout).
    layout: Layout,
    /// `order[f]`: where the FFT leaves frequency `f`, as a position without the gaps
    /// (`layout.at(order[f])` is its place in the buffer).
    #[cfg_attr(not(test), allow(dead_code))]
    order: Vec<usize>,
    kind: SpectrumKind,
    /// Mel filter `m` sums `spec[filters[m].bin + i] · weights[filters[m].weight + i]`,
    /// `i < filters[m].len`.
    mel_filters: Vec<MelFilter>,
    mel_weights: Vec<f32>,
    /// The bin pairs `(k, M − k)` with a bin that a mel filter reads: only these are computed.
    split_pairs: Vec<SplitPair>,
    /// The paired schedule of at most 4 frames ([`twin`]): a call's, or the rest of one.
    twin: TwinPlan,
}

/// One mel filter's nonzero run (see [`Tables::mel_filters`]).
#[derive(Debug, Clone, Copy)]
struct MelFilter {
    bin: u32,
    weight: u32,
    len: u32,
}

/// One step of [`split`]: bins `k` and `M − k` from `Z[k]` at `x[a]` and `Z[M − k]` at `x[b]`
/// (`k ≤ M/2`, places in the buffer: the FFT's output order through [`Layout::at`]), with
/// `e^{−2πik/N}`.
#[derive(Debug, Clone, Copy)]
struct SplitPair {
    k: u32,
    a: u32,
    b: u32,
    wr: f32,
    wi: f32,
}

/// The working vectors of an `L`-lane batch (empty until a path of that width is chosen).
struct Buffers<const L: usize> {
    x: Vec<C<L>>,
    spec: Aligned<L>,
}

/// 16 values on a 64-byte boundary.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// `len` vectors of `L` values from a 64-byte boundary on, so that a vector of 16 (8) values
/// never straddles two cache lines (a `Vec<[f32; L]>` starts wherever the allocator puts it,
/// 16-byte aligned in practice). The transposed region ([`BatchSpectrum::cols`], `L` = 1):
/// its 8-value stores. The spectra ([`Buffers::spec`]): three of four 64-byte loads and
/// stores were split, which alone, on the Intel VM, measured within the noise (Whisper
/// micro-turn 3.88 → 3.82 µs).
struct Aligned<const L: usize> {
    lines: Vec<Line>,
    len: usize,
}

impl<const L: usize> Aligned<L> {
    fn new(len: usize) -> Self {
        Aligned {
            lines: vec![Line([0.0; 16]); (len * L).div_ceil(16)],
            len,
        }
    }
}

impl<const L: usize> std::ops::Deref for Aligned<L> {
    type Target = [[f32; L]];
    fn deref(&self) -> &[[f32; L]] {
        // SAFETY: `lines` holds at least `len · L` initialised `f32`, contiguous (`Line` is
        // `repr(C)` of 16 of them, size 64), aligned for `[f32; L]`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl<const L: usize> std::ops::DerefMut for Aligned<L> {
    fn deref_mut(&mut self) -> &mut [[f32; L]] {
        // SAFETY: as in `deref`, borrowed uniquely.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

impl<const L: usize> Buffers<L> {
    fn empty() -> Self {
        Buffers {
            x: Vec::new(),
            spec: Aligned::new(0),
        }
    }

    /// For an FFT of `half` points in `entries` (see [`Layout`]; at least `half`).
    fn allocate(&mut self, half: usize, entries: usize) {
        if self.x.is_empty() {
            self.x = vec![C::ZERO; entries];
            self.spec = Aligned::new(half + 1);
        }
    }
}

/// Window → FFT → |X|² or |X| → mel → `log10(max(·, 1e-10))` for up to [`LANES`] frames.
pub(crate) struct BatchSpectrum {
    t: Tables,
    half: usize,
    b4: Buffers<4>,
    b8: Buffers<8>,
    /// The second batch of 8 lanes of a lockstep pair on the 8-lane paths.
    b8x: Buffers<8>,
    b16: Buffers<16>,
    /// The region of the current call, transposed: column `c` (`stride` values) holds sample
    /// `c` of every row of `hop` samples. Then [`SPARE_ROWS`] rows of `hop` for
    /// [`transpose_region`], the last of them zeros.
    cols: Aligned<1>,
    /// `log10(max(mel, 1e-10))`, `[n_mels]` vectors, lane = frame of the call.
    pub(crate) out: Vec<Out>,
    path: Path,
}

impl BatchSpectrum {
    /// `None` when `n_fft / 2` has a prime factor above 5 (callers keep the per-frame path).
    pub(crate) fn new(shape: BatchShape, mel: &MelFilterbank) -> Option<Self> {
        Self::with_path(shape, mel, Path::detect())
    }

    /// [`BatchSpectrum::new`] on a given path (the caller checks the CPU has it).
    pub(crate) fn with_path(shape: BatchShape, mel: &MelFilterbank, path: Path) -> Option<Self> {
        let BatchShape {
            win_len,
            hop,
            n_fft,
            kind,
        } = shape;
        assert!(
            hop > 0 && win_len > 0 && win_len <= n_fft,
            "checked by the configs"
        );
        let half = n_fft / 2;
        let radices = plan(half).filter(|r| !r.is_empty())?;
        let twiddles_of = |r: usize, n: usize| -> Vec<(f32, f32)> {
            let m = n / r;
            let mut tw = Vec::with_capacity(m * (r - 1));
            for p in 0..m {
                for k in 1..r {
                    let theta = -2.0 * std::f64::consts::PI * (p * k) as f64 / n as f64;
                    tw.push((theta.cos() as f32, theta.sin() as f32));
                }
            }
            tw
        };
        // Prime-factor (Good–Thomas) split when the first radix is the whole power-of-two part
        // of M and an odd part m is left (Whisper: 200 = 8 · 25): with the input permuted to
        // n = (m·n1 + r·n2) mod M and the output read back by the Chinese remainder theorem,
        // the first pass needs no twiddles (its 7 complex products per butterfly).
        let r = radices[0];
        let m = half / r;
        let prime_factor = r.is_power_of_two() && m % 2 == 1 && m > 1;
        let first = (r, (!prime_factor).then(|| twiddles_of(r, half)));
        let order = if prime_factor {
            let sub = positions(&radices[1..], m);
            (0..half).map(|k| (k % r) * m + sub[k % m]).collect()
        } else {
            positions(&radices, half)
        };
        // Complex input at first-pass position `c = n2 + m·n1`.
        let input = |c: usize| {
            if prime_factor {
                (m * (c / m) + r * (c % m)) % half
            } else {
                c
            }
        };
        let mut passes = Vec::new();
        let mut n = half / radices[0];
        for &r in &radices[1..] {
            passes.push((r, n, twiddles_of(r, n)));
            n /= r;
        }
        // Frame sample `i` of lane `f` is region row `f + i / hop`, column `i % hop`.
        let stride = (LANES + (win_len - 1) / hop).next_multiple_of(8);
        let window = periodic_hann(win_len);
        let offset = (n_fft - win_len) / 2;
        let source = |n: usize| -> (u32, f32) {
            match n.checked_sub(offset).filter(|&i| i < win_len) {
                Some(i) => (((i % hop) * stride + i / hop) as u32, window[i]),
                None => (0, 0.0),
            }
        };
        let src = Sources::new(
            (0..half)
                .map(|c| {
                    let n = input(c);
                    let ((re, w_re), (im, w_im)) = (source(2 * n), source(2 * n + 1));
                    Source { re, w_re, im, w_im }
                })
                .collect(),
            radices[0],
        );
        assert!(
            src.end <= hop * stride,
            "the first pass reads within the region"
        );
        let bins = half + 1;
        let dense = mel.dense();
        let mut mel_filters = Vec::new();
        let mut mel_weights = Vec::new();
        for row in dense.chunks_exact(bins) {
            let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
            let last = row.iter().rposition(|&w| w != 0.0).map_or(first, |i| i + 1);
            mel_filters.push(MelFilter {
                bin: first as u32,
                weight: mel_weights.len() as u32,
                len: (last - first) as u32,
            });
            // The split step leaves |X|² four times (|X| twice) too large: an exact power of
            // two, taken back here.
            let scale = match kind {
                SpectrumKind::Power => 0.25,
                SpectrumKind::Magnitude => 0.5,
            };
            mel_weights.extend(row[first..last].iter().map(|w| w * scale));
        }
        let lo = mel_filters
            .iter()
            .map(|f| f.bin as usize)
            .min()
            .unwrap_or(0);
        let hi = mel_filters
            .iter()
            .map(|f| (f.bin + f.len) as usize)
            .max()
            .unwrap_or(bins);
        let split_pairs: Vec<SplitPair> = (0..=half / 2)
            .filter(|&k| (lo..hi).contains(&k) || (lo..hi).contains(&(half - k)))
            .map(|k| {
                let theta = 2.0 * std::f64::consts::PI * k as f64 / n_fft as f64;
                SplitPair {
                    k: k as u32,
                    a: order[k % half] as u32,
                    b: order[(half - k) % half] as u32,
                    wr: theta.cos() as f32,
                    wi: -(theta.sin() as f32),
                }
            })
            .collect();
        let twin = TwinPlan::new(&split_pairs, &mel_filters, &mel_weights, (r, half));
        let layout = Layout {
            blocks: r,
            len: m,
            stride: if m.is_multiple_of(16) { m + 1 } else { m },
        };
        // `TwinPlan` took the positions of `folded_fft`; the split steps read the others.
        let split_pairs = split_pairs
            .into_iter()
            .map(|p| SplitPair {
                a: layout.at(p.a as usize) as u32,
                b: layout.at(p.b as usize) as u32,
                ..p
            })
            .collect();
        let mut batch = BatchSpectrum {
            t: Tables {
                twin,
                split_pairs,
                win_len,
                hop,
                stride,
                src,
                first,
                passes,
                layout,
                order,
                kind,
                mel_filters,
                mel_weights,
            },
            half,
            b4: Buffers::empty(),
            b8: Buffers::empty(),
            b8x: Buffers::empty(),
            b16: Buffers::empty(),
            cols: Aligned::new(hop * (stride + SPARE_ROWS)),
            out: vec![[0.0; LANES]; mel.n_mels()],
            path,
        };
        batch.set_path(path);
        Some(batch)
    }

    /// Switches to `path` (the caller checks the CPU has it); allocates its buffers once.
    pub(crate) fn set_path(&mut self, path: Path) {
        self.path = path;
        // See `run` for the widths each path uses.
        let (half, entries) = (self.half, self.t.layout.size().max(self.half));
        self.b4.allocate(half, entries);
        self.b8.allocate(half, entries);
        match path {
            Path::Plain8 | Path::Avx2 => self.b8x.allocate(half, entries),
            Path::Plain16 | Path::Avx512 => self.b16.allocate(half, entries),
        }
    }

    /// The path [`BatchSpectrum::run`] takes.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn path(&self) -> Path {
        self.path
    }

    /// Frames `f = 0..count` (`count ≤ LANES`), frame `f` being `region[f·hop..f·hop + win_len]`,
    /// into [`BatchSpectrum::out`] (lanes ≥ `count` hold leftovers).
    ///
    /// Widths. AVX-512: 1–4 frames [`twin`]; 5–8 on 8 lanes; 9–16 on 16; 17–20 on 16, then
    /// the rest by [`twin`]; 21–24 on 16 with 8 more in lockstep. AVX2 and `Plain8`: 1–4
    /// [`twin`]; 5–8 on 8 lanes; 9–12 on 8, then the rest by [`twin`]; 13–16 two batches of 8
    /// in lockstep; 17–20 the same, then the rest by [`twin`]; 21–24 two batches of 8 in
    /// lockstep, then 8 lanes. `Plain16` (tests) mirrors the
    /// AVX-512 path with 16 plain lanes.
    pub(crate) fn run(&mut self, region: Region<'_>, count: usize) {
        debug_assert!(count <= LANES && count > 0);
        debug_assert!(region.len() >= (count - 1) * self.t.hop + self.t.win_len);
        let Self {
            t,
            b4,
            b8,
            b8x,
            b16,
            cols,
            out,
            path,
            ..
        } = self;
        let cols = cols.as_flattened_mut();
        // At most 4 frames, or 16 and at most 4 more: `twin` after (or without) 16 lanes.
        let paired = count <= 4 || (17..=20).contains(&count);
        // On 8 lanes (AVX2, `Plain8`): at most 4 frames, or 8 and at most 4 more, or two
        // batches of 8 in lockstep and at most 4 more. On Zen 3 (AVX2 only) a Whisper
        // micro-turn (20 frames) took 8.4-9.0 µs with the last 4 on 8 lanes, 6.7-7.1 with
        // them paired; 12 frames 5.3-5.6 µs in lockstep, 4.3-4.4 as 8 and 4 paired.
        let paired8 = paired || (9..=12).contains(&count);
        match *path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is chosen only where the CPU was detected to have AVX-512F, VL,
            // AVX2 and FMA (`Path::detect`, or a test that checked).
            Path::Avx512 => unsafe {
                // Fewer lanes are not faster per lane, but unused lanes are not free: 4 frames
                // on 4 lanes measured 1.72 µs against 1.9-2.0 µs on 8 (Whisper, Zen 4), and
                // 1.48 µs with the paired split and mel steps of `twin`, 1.40 µs with its
                // folded FFT.
                if paired {
                    run_avx512_twin(t, cols, b16, b4, out, region, count);
                } else if count <= 8 {
                    run_avx2_vl(t, cols, b8, None, out, region, count);
                } else if count <= 16 {
                    run_avx512_avx2(t, cols, b16, None, out, region, count);
                } else {
                    run_avx512_avx2(t, cols, b16, Some(b8), out, region, count);
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` is chosen only where the CPU was detected to have AVX2 and FMA.
            Path::Avx2 => unsafe {
                if paired8 {
                    run_avx2_twin(t, cols, b8, b8x, b4, out, region, count);
                } else {
                    run_avx2(t, cols, b8, Some(b8x), out, region, count);
                }
            },
            Path::Plain16 if paired => {
                run_twin::<16, Plain<16>, 8, Plain<8>, Plain<8>, Plain<4>, Plain<8>>(
                    t, cols, b16, None, b4, out, region, count,
                )
            }
            Path::Plain16 => run_lanes::<16, Plain<16>, 8, Plain<8>, Plain<8>>(
                t,
                cols,
                b16,
                Some(b8),
                out,
                region,
                count,
            ),
            // The paired code also on the plain path, so that the equality tests cover it on
            // every CPU.
            _ if paired8 => run_twin::<8, Plain<8>, 8, Plain<8>, Plain<8>, Plain<4>, Plain<8>>(
                t,
                cols,
                b8,
                Some(b8x),
                b4,
                out,
                region,
                count,
            ),
            _ => run_lanes::<8, Plain<8>, 8, Plain<8>, Plain<8>>(
                t,
                cols,
                b8,
                Some(b8x),
                out,
                region,
                count,
            ),
        }
    }

    /// Frames `0..count` of the last [`BatchSpectrum::run`], frame-major: frame `f`'s mel
    /// values at `dst[f·n_mels..(f + 1)·n_mels]` (`dst` holds at least `count · n_mels`).
    pub(crate) fn frames_into(&self, count: usize, dst: &mut [f32]) {
        match self.path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: every path but the plain ones was chosen where the CPU has AVX2 and FMA.
            Path::Avx2 | Path::Avx512 => unsafe { frames_into_avx2(&self.out, count, dst) },
            _ => transpose_out::<Plain<8>>(&self.out, count, dst),
        }
    }
}

/// The arguments of [`run_lanes`] with a first batch of `L` lanes and a second of `L2`.
macro_rules! lanes_fn {
    ($(#[$doc:meta])* $name:ident, $features:literal, $l:literal, $s:ty, $l2:literal, $s2:ty) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $name(
            t: &Tables,
            cols: &mut [f32],
            b: &mut Buffers<$l>,
            b2: Option<&mut Buffers<$l2>>,
            out: &mut [Out],
            region: Region<'_>,
            count: usize,
        ) {
            run_lanes::<$l, $s, $l2, $s2, Avx>(t, cols, b, b2, out, region, count);
        }
    };
}

lanes_fn!(run_avx2, "avx2,fma", 8, Avx, 8, Avx);
lanes_fn!(
    /// The AVX2 code with AVX-512VL's 32 vector registers (fewer spills in the butterflies).
    run_avx2_vl, "avx512f,avx512vl,avx2,fma", 8, Avx, 8, Avx
);
lanes_fn!(
    run_avx512_avx2,
    "avx512f,avx512vl,avx2,fma",
    16,
    Avx512,
    8,
    Avx
);

/// At most 4 frames, or 16 and at most 4 more on the AVX-512 path: see [`run_twin`]; with
/// AVX-512VL's 32 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
fn run_avx512_twin(
    t: &Tables,
    cols: &mut [f32],
    b16: &mut Buffers<16>,
    b4: &mut Buffers<4>,
    out: &mut [Out],
    region: Region<'_>,
    count: usize,
) {
    run_twin::<16, Avx512, 8, Avx, Avx, Sse, Avx>(t, cols, b16, None, b4, out, region, count);
}

/// At most 4 frames, or 8 or 16 and at most 4 more, on the AVX2 path: see [`run_twin`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn run_avx2_twin(
    t: &Tables,
    cols: &mut [f32],
    b8: &mut Buffers<8>,
    b8x: &mut Buffers<8>,
    b4: &mut Buffers<4>,
    out: &mut [Out],
    region: Region<'_>,
    count: usize,
) {
    run_twin::<8, Avx, 8, Avx, Avx, Sse, Avx>(t, cols, b8, Some(b8x), b4, out, region, count);
}

/// At most `L + L2 + 4` frames (`L + 4` without `b2`): where there are more than 4, the first
/// `L` on `L` lanes, or, where there are more than `L + 4` and `b2` is given, the first
/// `L + L2` in lockstep (as in [`run_lanes`]); the last at most 4 by [`twin`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run_twin<
    const L: usize,
    S: Simd<L>,
    const L2: usize,
    S2: Simd<L2>,
    T: Twin,
    S4: Simd<4>,
    R: Rows8,
>(
    t: &Tables,
    cols: &mut [f32],
    b: &mut Buffers<L>,
    b2: Option<&mut Buffers<L2>>,
    b4: &mut Buffers<4>,
    out: &mut [Out],
    region: Region<'_>,
    count: usize,
) {
    let wide = if b2.is_some() { L + L2 } else { L };
    debug_assert!(count <= 4 || (count > L && count <= wide + 4));
    transpose_region::<R>(t, cols, region, count + (t.win_len - 1) / t.hop);
    let mut f0 = 0;
    // Literal `Some` and `None` calls, as in `run_lanes`.
    match b2.filter(|_| count > L + 4) {
        Some(b2) => {
            run_batch::<L, S, L2, S2>(t, cols, 0, b, Some(b2), out);
            f0 = L + L2;
        }
        None if count > 4 => {
            run_batch::<L, S, L2, S2>(t, cols, 0, b, None, out);
            f0 = L;
        }
        None => {}
    }
    // The `L`-lane buffer is free again: the folded FFT of `twin` works in it.
    twin::<T, S4, L, S>(t, cols, f0, b4, &mut b.x, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn frames_into_avx2(out: &[Out], count: usize, dst: &mut [f32]) {
    transpose_out::<Avx>(out, count, dst);
}

/// `out` (`[n_mels]` vectors, lane = frame) to frame-major `dst`, by 8 × 8 blocks.
#[inline(always)]
fn transpose_out<R: Rows8>(out: &[Out], count: usize, dst: &mut [f32]) {
    let n_mels = out.len();
    assert!(count <= LANES && dst.len() >= count * n_mels);
    let blocks = n_mels / 8;
    for g in 0..count.div_ceil(8) {
        for b in 0..blocks {
            let mut rows = [R::splat(0.0); 8];
            for (r, row) in rows.iter_mut().enumerate() {
                *row = R::load_slice(&out[8 * b + r][8 * g..]);
            }
            let cols = R::transpose(rows);
            for (j, col) in cols.iter().enumerate().take(count - 8 * g) {
                let at = (8 * g + j) * n_mels + 8 * b;
                let d: &mut [f32; 8] = (&mut dst[at..at + 8]).try_into().expect("8 values");
                R::store(*col, d);
            }
        }
    }
    for m in 8 * blocks..n_mels {
        for f in 0..count {
            dst[f * n_mels + m] = out[m][f];
        }
    }
}

/// `count` frames as batches of `L` lanes; where `b2` is given and more than `L` frames are
/// left, a batch of `L` lanes and one of `L2` go through every step in lockstep (each
/// butterfly, split step and mel filter of the first, then the same of the second), sharing
/// the loops, index and twiddle loads, and giving the out-of-order core two independent
/// chains. The log10 mel sums of frame `f` go to lane `f` of `out`.
#[inline(always)]
fn run_lanes<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>, R: Rows8>(
    t: &Tables,
    cols: &mut [f32],
    b: &mut Buffers<L>,
    mut b2: Option<&mut Buffers<L2>>,
    out: &mut [Out],
    region: Region<'_>,
    count: usize,
) {
    transpose_region::<R>(t, cols, region, count + (t.win_len - 1) / t.hop);
    let mut done = 0;
    while done < count {
        // Two calls with a literal `Some` and `None`, so that each inlined copy is built for
        // its case (one taking the `Option` at run time made dMel 0.5 µs slower).
        match b2.as_deref_mut().filter(|_| count - done > L) {
            Some(b2) => {
                run_batch::<L, S, L2, S2>(t, cols, done, b, Some(b2), out);
                done += L + L2;
            }
            None => {
                run_batch::<L, S, L2, S2>(t, cols, done, b, None, out);
                done += L;
            }
        }
    }
}

/// Frames `f0..f0 + L` on `b` (and `f0 + L..f0 + L + L2` on `b2`, in lockstep) through the
/// FFT, the split and the mel sums, into those lanes of `out`.
#[inline(always)]
fn run_batch<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>>(
    t: &Tables,
    cols: &[f32],
    f0: usize,
    b: &mut Buffers<L>,
    mut b2: Option<&mut Buffers<L2>>,
    out: &mut [Out],
) {
    let x2 = b2.as_deref_mut().map(|b2| (&mut b2.x[..], f0 + L));
    fft::<L, S, L2, S2>(t, cols, f0, &mut b.x, x2);
    split::<L, S, L2, S2>(t, b, b2.as_deref_mut());
    mel::<L, S, L2, S2>(t, b, b2.as_deref(), out, f0);
}

/// The first `rows` rows of `hop` samples of `region` (zeros past its end) into `cols`,
/// transposed: sample `c` of row `r` at `cols[c·stride + r]`. Then sample `i` of frame `f` is
/// at `cols[(i % hop)·stride + i / hop + f]`, and one sample of `L` consecutive frames is `L`
/// consecutive values. Each sample is moved once, however many frames overlap it. `cols` holds
/// `hop · stride` values and, after them, [`SPARE_ROWS`] rows of `hop` whose last stays zero.
#[inline(always)]
fn transpose_region<R: Rows8>(t: &Tables, cols: &mut [f32], region: Region<'_>, rows: usize) {
    let (hop, stride) = (t.hop, t.stride);
    debug_assert!(rows <= stride && cols.len() >= hop * (stride + SPARE_ROWS));
    let (cols, spare) = cols.split_at_mut(hop * stride);
    if !hop.is_multiple_of(8) {
        for r in 0..rows {
            for c in 0..hop {
                cols[c * stride + r] = region.get(r * hop + c);
            }
        }
        return;
    }
    let (n, s8) = (hop / 8, stride / 8);
    let (cols, _) = cols.as_chunks_mut::<8>();
    let (spare, zero) = spare[..SPARE_ROWS * hop].split_at_mut((SPARE_ROWS - 1) * hop);
    // Up to `GROUPS` groups of 8 rows at a time, and within them column group by column
    // group, so that each column's rows are written one after another. Against all columns
    // of one group of rows, then of the next: on the Intel VM of 2026-12-07 (AVX-512) a
    // Whisper micro-turn 4.12 → 4.01 µs and a dMel one 8.62 → 8.41 (medians of 12
    // alternating runs); on Zen 3 (AVX2, the tenth session) one form of this order measured
    // Whisper +2.5 % and dMel −2.5 %, on Zen 4 no change. The rows are raw pointers, checked
    // once per set of groups: with slices, each 8 × 8 block reloaded its 8 row slices and
    // their lengths from the stack and checked every load and store (about 90 instructions
    // for 24 shuffles). On the Intel VM (twelfth session, with the spectra in `Aligned`) a Whisper
    // micro-turn 4.05 → 3.91 µs, dMel 8.22 → 7.86 (medians of 12 and 8 alternating runs).
    for g0 in (0..rows.div_ceil(8)).step_by(GROUPS) {
        let groups = (rows.div_ceil(8) - g0).min(GROUPS);
        // Each row as one slice: in place where it lies within one of the region's two
        // slices, else (where it straddles them, or reaches past the end: zeros there) copied
        // into its spare row; rows past `rows` read the zero row. Then the inner loop has no
        // bookkeeping left (a look-up per 8 samples took about 2 % more of a Whisper
        // micro-turn on Zen 3; on Zen 4 the two measured alike).
        let mut src: [*const f32; 8 * GROUPS] = [std::ptr::null(); 8 * GROUPS];
        let spare_rows = spare.chunks_exact_mut(hop);
        for ((i, row), spare) in src.iter_mut().enumerate().take(8 * groups).zip(spare_rows) {
            let r = 8 * g0 + i;
            *row = if r >= rows {
                zero.as_ptr()
            } else if let Some(row) = region.contiguous(r * hop, hop) {
                row.as_ptr()
            } else {
                region.copy_to(r * hop, spare);
                spare.as_ptr()
            };
        }
        assert!((8 * n - 1) * s8 + g0 + groups <= cols.len());
        let cols = cols.as_mut_ptr();
        for cg in 0..n {
            for g in 0..groups {
                // Fixed-count loops (unrolled, the block stays in registers), not
                // `array::from_fn` (see `first_pass`).
                let mut block = [R::splat(0.0); 8];
                for (i, v) in block.iter_mut().enumerate() {
                    // SAFETY: every row pointer points at `hop` = `8 n` values (a row of the
                    // region, a spare row or the zero row, all borrowed for this loop).
                    *v = R::load(unsafe { &*src[8 * g + i].add(8 * cg).cast::<[f32; 8]>() });
                }
                let block = R::transpose(block);
                for (j, col) in block.into_iter().enumerate() {
                    // SAFETY: `(8 cg + j)·s8 + g0 + g` < `cols.len()` (asserted above).
                    R::store(col, unsafe { &mut *cols.add((8 * cg + j) * s8 + g0 + g) });
                }
            }
        }
    }
}

/// Groups of 8 rows that [`transpose_region`] transposes together.
const GROUPS: usize = 4;

/// Rows of `hop` after the transposed region in [`BatchSpectrum::cols`]: one for each row of
/// the [`GROUPS`] that [`transpose_region`] transposes together (it copies there the rows that
/// are not in one piece), and a zero row.
const SPARE_ROWS: usize = 8 * GROUPS + 1;

/// The windowed frames `f0..f0 + L` (and `f2..f2 + L2` into `x2`), packed as
/// `x[2m] + i·x[2m+1]`, through the in-place FFT (the first pass reads the transposed region);
/// the result in `x` (and `x2`): frequency `f` at `t.layout.at(t.order[f])`.
#[inline(always)]
fn fft<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>>(
    t: &Tables,
    cols: &[f32],
    f0: usize,
    x: &mut [C<L>],
    mut x2: Option<(&mut [C<L2>], usize)>,
) {
    let (r, tw) = (t.first.0, t.first.1.as_deref());
    let second = x2.as_mut().map(|(x2, f2)| (&mut **x2, *f2));
    let (src, stride) = (&t.src, t.layout.stride);
    match r {
        8 => first_pass::<L, S, L2, S2, 8>(src, stride, cols, (f0, x), second, tw),
        5 => first_pass::<L, S, L2, S2, 5>(src, stride, cols, (f0, x), second, tw),
        4 => first_pass::<L, S, L2, S2, 4>(src, stride, cols, (f0, x), second, tw),
        3 => first_pass::<L, S, L2, S2, 3>(src, stride, cols, (f0, x), second, tw),
        _ => first_pass::<L, S, L2, S2, 2>(src, stride, cols, (f0, x), second, tw),
    }
    // Where the buffer is larger than a typical L1 data cache (dMel: 512 × 128 bytes on 16
    // lanes), the later passes go block by block (each block of the second pass is a whole
    // transform of its own), so that a block stays in L1 through all of them. Smaller buffers
    // stay in L1 anyway, and whole passes have fewer loop and twiddle overheads.
    if t.passes.is_empty() {
        return;
    }
    // The threshold looks at the first batch's buffer alone: Whisper on 16 + 8 lanes in
    // lockstep (25.6 + 12.8 KB) ran whole passes as fast as on 16.
    let layout = t.layout;
    if t.src.len() * size_of::<C<L>>() <= 32 * 1024 {
        let mut x2 = x2.map(|(x2, _)| x2);
        if layout.stride == layout.len {
            let n = t.src.len();
            later_passes::<L, S, L2, S2>(&t.passes, &mut x[..n], x2.map(|x2| &mut x2[..n]));
        } else {
            for (r, n, tw) in &t.passes {
                let x2 = x2.as_deref_mut();
                match r {
                    8 => pass_blocks::<L, S, L2, S2, 8>(*n, layout, x, x2, tw),
                    5 => pass_blocks::<L, S, L2, S2, 5>(*n, layout, x, x2, tw),
                    4 => pass_blocks::<L, S, L2, S2, 4>(*n, layout, x, x2, tw),
                    3 => pass_blocks::<L, S, L2, S2, 3>(*n, layout, x, x2, tw),
                    _ => pass_blocks::<L, S, L2, S2, 2>(*n, layout, x, x2, tw),
                }
            }
        }
        return;
    }
    for g in 0..layout.blocks {
        let block = g * layout.stride..g * layout.stride + layout.len;
        let x2 = x2.as_mut().map(|(x2, _)| &mut x2[block.clone()]);
        later_passes::<L, S, L2, S2>(&t.passes, &mut x[block], x2);
    }
}

/// The passes after the first, in place on `x` (and `x2`, in lockstep).
#[inline(always)]
fn later_passes<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>>(
    passes: &[Pass],
    x: &mut [C<L>],
    mut x2: Option<&mut [C<L2>]>,
) {
    for (r, n, tw) in passes {
        let x2 = x2.as_deref_mut();
        match r {
            8 => pass::<L, S, L2, S2, 8>(*n, x, x2, tw),
            5 => pass::<L, S, L2, S2, 5>(*n, x, x2, tw),
            4 => pass::<L, S, L2, S2, 4>(*n, x, x2, tw),
            3 => pass::<L, S, L2, S2, 3>(*n, x, x2, tw),
            _ => pass::<L, S, L2, S2, 2>(*n, x, x2, tw),
        }
    }
}

/// The split step to the real spectrum, two bins at a time: `X[k]` and `X[M − k]` both come
/// from `A = Z[k]` and `B = conj(Z[M − k])`. With `E = A + B`, `D = A − B` (twice the textbook
/// halves), `P = wr·dr − wi·di` and `Q = wr·di + wi·dr` (`w = e^{−2πik/N}`):
/// `2·X[k] = (er + Q) + i(ei − P)` and `2·X[M − k] = (er − Q) − i(ei + P)`. The factor 2
/// stays in: |2X|² = 4|X|² exactly, and the mel weights carry the exact ¼ (or ½ for |X|, with
/// the floor 4e-10 for 1e-10). Into `b.spec` (and `b2.spec`, in lockstep).
#[inline(always)]
fn split<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>>(
    t: &Tables,
    b: &mut Buffers<L>,
    mut b2: Option<&mut Buffers<L2>>,
) {
    for pair in &t.split_pairs {
        split_step::<L, S>(t.kind, pair, b);
        if let Some(b2) = b2.as_deref_mut() {
            split_step::<L2, S2>(t.kind, pair, b2);
        }
    }
}

/// One step of [`split`] on one batch.
#[inline(always)]
fn split_step<const L: usize, S: Simd<L>>(
    kind: SpectrumKind,
    pair: &SplitPair,
    b: &mut Buffers<L>,
) {
    let half = b.spec.len() - 1;
    let k = pair.k as usize;
    let a = Cv::<L, S>::load(&b.x[pair.a as usize]);
    let b_ = Cv::<L, S>::load(&b.x[pair.b as usize]);
    let (wr, wi) = (S::splat(pair.wr), S::splat(pair.wi));
    let (x, y) = split_math::<L, S>(kind, a, b_, wr, wi);
    S::store(x, &mut b.spec[k]);
    S::store(y, &mut b.spec[half - k]);
}

/// The arithmetic of a split step: |2X[k]|² and |2X[M − k]|² (or |2X|) from `a = Z[k]`,
/// `b = Z[M − k]` and `w = e^{−2πik/N}`. `P` and `Q` are formed first and the four parts are
/// additions: 8 operations for the multiply units and 8 for the adders, where nested
/// multiply-adds gave 12 and 4 and left the adders idle (the 16-lane split is bound by those
/// units). Whisper micro-turn in the report's loop, Zen 4: 4.01–4.21 → 3.94–4.20 µs over 16
/// alternating runs (mean 4.14 → 4.08 over the last 6, 13 of 16 faster).
#[inline(always)]
fn split_math<const L: usize, S: Simd<L>>(
    kind: SpectrumKind,
    a: Cv<L, S>,
    b: Cv<L, S>,
    wr: S::V,
    wi: S::V,
) -> (S::V, S::V) {
    let power = |re: S::V, im: S::V| {
        let p = S::fma(re, re, S::mul(im, im));
        match kind {
            SpectrumKind::Power => p,
            SpectrumKind::Magnitude => S::sqrt(S::max(p, S::splat(4.0 * 1e-10))),
        }
    };
    let (er, ei) = (S::add(a.re, b.re), S::sub(a.im, b.im));
    let (dr, di) = (S::sub(a.re, b.re), S::add(a.im, b.im));
    let p = S::fnma(wi, di, S::mul(wr, dr));
    let q = S::fma(wi, dr, S::mul(wr, di));
    let (xr, xi) = (S::add(er, q), S::sub(ei, p));
    let (yr, yi) = (S::sub(er, q), S::add(ei, p));
    (power(xr, xi), power(yr, yi))
}

/// `log10(max(v, floor))` per lane: the same IEEE operations in the same order as
/// [`log10_floor_in_place`], so the same bits.
#[inline(always)]
fn log10_floor<const L: usize, S: Simd<L>>(v: S::V, floor: S::V) -> S::V {
    let (e, m, inv_c, lg_c) = S::log_split(S::max(v, floor));
    let r = S::fma(m, inv_c, S::splat(-1.0));
    let z = S::mul(r, r);
    let p = S::fma(S::splat(LOG1P_C[1]), r, S::splat(LOG1P_C[0]));
    let y = S::mul(S::fma(p, r, S::splat(-0.5)), z);
    let small = S::fma(S::splat(std::f32::consts::LOG10_E), S::add(r, y), lg_c);
    S::fma(e, S::splat(LG2_HI), S::fma(e, S::splat(LG2_LO), small))
}

/// The mel sums, then log10, into lanes `f0..f0 + L` of `out` (and `f0 + L..f0 + L + L2` from
/// `b2`, in lockstep).
#[inline(always)]
fn mel<const L: usize, S: Simd<L>, const L2: usize, S2: Simd<L2>>(
    t: &Tables,
    b: &Buffers<L>,
    b2: Option<&Buffers<L2>>,
    out: &mut [Out],
    f0: usize,
) {
    for (f, o) in t.mel_filters.iter().zip(out.iter_mut()) {
        let (bin, weight, len) = (f.bin as usize, f.weight as usize, f.len as usize);
        let w = &t.mel_weights[weight..weight + len];
        mel_step::<L, S>(w, &b.spec[bin..bin + len], &mut o[f0..f0 + L]);
        if let Some(b2) = b2 {
            mel_step::<L2, S2>(w, &b2.spec[bin..bin + len], &mut o[f0 + L..f0 + L + L2]);
        }
    }
    // The sums first, then log10 (as in `twin`): on Zen 3 each filter's log10 waited for
    // its chain of multiply-adds (dMel micro-turn 12.84 → 12.52 µs median, Whisper 6.24 →
    // 6.16; on Zen 4 the two orders measured alike).
    for o in out.iter_mut().take(t.mel_filters.len()) {
        log10_lanes::<L, S>(&mut o[f0..f0 + L]);
        if b2.is_some() {
            log10_lanes::<L2, S2>(&mut o[f0 + L..f0 + L + L2]);
        }
    }
}

/// One filter of [`mel`] on one batch: `Σ w·spec` into `o`.
#[inline(always)]
fn mel_step<const L: usize, S: Simd<L>>(w: &[f32], spec: &[[f32; L]], o: &mut [f32]) {
    let mut acc = S::splat(0.0);
    for (&wk, v) in w.iter().zip(spec) {
        acc = S::fma(S::load(v), S::splat(wk), acc);
    }
    let o: &mut [f32; L] = o.try_into().expect("L lanes");
    S::store(acc, o);
}

/// `log10(max(o, 1e-10))` in place, `L` lanes.
#[inline(always)]
fn log10_lanes<const L: usize, S: Simd<L>>(o: &mut [f32]) {
    let o: &mut [f32; L] = o.try_into().expect("L lanes");
    S::store(log10_floor::<L, S>(S::load(o), S::splat(1e-10)), o);
}

/// The schedule of the paired 4-frame code ([`twin`]): which two split steps, and which two mel
/// filters, of a 4-lane batch share one 8-lane vector. Each half does exactly the operations
/// the unpaired code does for its step, so the bits are the same. A shorter mel filter is
/// padded with zero weights on one of its bins (bin 0 for an empty one), which add exactly
/// +0: the power values are finite and non-negative, since every caller refuses samples
/// beyond ±[`crate::MAX_SAMPLE_MAGNITUDE`] (1e9), which bounds |2X|² far below `f32::MAX`.
struct TwinPlan {
    /// Split-step pairs, as indices into [`Tables::split_pairs`].
    split: Vec<(u32, u32)>,
    /// The same pairs after [`folded_fft`] on 8 (16) lanes; empty where the first radix is
    /// not a multiple of 2 (4).
    folded8: Vec<FoldedStep>,
    folded16: Vec<FoldedStep>,
    /// Mel filter pairs (adjacent filters: their lengths are close).
    mel: Vec<TwinMel>,
    /// The weights of filter `a` in lanes 0..4, of `b` in lanes 4..8, tap by tap.
    weights: Vec<[f32; 8]>,
}

/// Filters `a` and `b` sum `len` consecutive bins each, from `bin_a` and `bin_b`, with
/// `weights[start..start + len]`: each filter's own run of nonzero weights, and zero weights
/// around it to the common length (they add exactly nothing), on bins that exist.
#[derive(Debug, Clone, Copy)]
struct TwinMel {
    a: u32,
    b: u32,
    bin_a: u32,
    bin_b: u32,
    start: u32,
    len: u32,
}

/// A pair of split steps (bins `k[0]` and `k[1]`, in lanes 0..4 and 4..8) after
/// [`folded_fft`]: where it leaves the values they read (`Z[k]` of each, then `Z[M − k]` of
/// each, as offsets into its buffer's floats), and their twiddles.
#[derive(Debug, Clone, Copy)]
struct FoldedStep {
    at: [u32; 4],
    k: [u32; 2],
    wr: [f32; 8],
    wi: [f32; 8],
}

impl TwinPlan {
    /// For an FFT of `half` points whose first pass has radix `r`.
    fn new(
        steps: &[SplitPair],
        filters: &[MelFilter],
        mel_weights: &[f32],
        (r, half): (usize, usize),
    ) -> Self {
        // Step `i` with step `i + ⌈n/2⌉`; the middle one of an odd count with itself.
        let h = steps.len().div_ceil(2);
        let split: Vec<(u32, u32)> = (0..h)
            .map(|i| (i as u32, if i + h < steps.len() { i + h } else { i } as u32))
            .collect();
        let folded = |q: usize| -> Vec<FoldedStep> {
            if !r.is_multiple_of(q) {
                return Vec::new();
            }
            let m = half / r;
            let at = |c: u32| {
                let (k, j) = (c as usize / m, c as usize % m);
                ((((k / q) * m + j) * 8 * q) + 4 * (k % q)) as u32
            };
            let step = |&(i, j): &(u32, u32)| {
                let (p, q) = (&steps[i as usize], &steps[j as usize]);
                let two = |a: f32, b: f32| std::array::from_fn(|l| if l < 4 { a } else { b });
                FoldedStep {
                    at: [at(p.a), at(q.a), at(p.b), at(q.b)],
                    k: [p.k, q.k],
                    wr: two(p.wr, q.wr),
                    wi: two(p.wi, q.wi),
                }
            };
            split.iter().map(step).collect()
        };
        let (mut mel, mut weights) = (Vec::new(), Vec::new());
        let bins = half as u32 + 1;
        for (i, pair) in filters.chunks(2).enumerate() {
            let (fa, fb) = (pair[0], *pair.get(1).unwrap_or(&pair[0]));
            let len = fa.len.max(fb.len);
            // The first bin of a filter's `len` bins: its own first, or earlier near the top.
            let from = |f: MelFilter| f.bin.min(bins - len);
            let (bin_a, bin_b) = (from(fa), from(fb));
            mel.push(TwinMel {
                a: (2 * i) as u32,
                b: (2 * i + pair.len() - 1) as u32,
                bin_a,
                bin_b,
                start: weights.len() as u32,
                len,
            });
            let weight = |f: MelFilter, bin: u32| match bin.checked_sub(f.bin) {
                Some(j) if j < f.len => mel_weights[(f.weight + j) as usize],
                _ => 0.0,
            };
            for j in 0..len {
                let (wa, wb) = (weight(fa, bin_a + j), weight(fb, bin_b + j));
                weights.push(std::array::from_fn(|l| if l < 4 { wa } else { wb }));
            }
        }
        let (folded8, folded16) = (folded(2), folded(4));
        TwinPlan {
            split,
            folded8,
            folded16,
            mel,
            weights,
        }
    }
}

/// Up to 4 frames, `f0..f0 + 4`, on the 4-lane buffers `b`: the FFT's first pass on 4 lanes,
/// the later passes folded onto `L` lanes in `wide` ([`folded_fft`]; where the first radix
/// does not allow that, the whole FFT on 4 lanes), the split and the mel sums with two steps per
/// 8-lane vector (see [`TwinPlan`]); the log10 mel sums into lanes `f0..f0 + 4` of `out`.
/// Zen 4 issues 128-bit and 256-bit operations at the same rate, so folding and pairing save
/// issue slots (Whisper's 4-frame remainder of a micro-turn, phase-timing runs on Zen 4: split
/// 0.33 → 0.13 µs, mel and log10 0.51 → 0.43 µs, where the dependency chains limit; the FFT
/// 0.66 → 0.43 µs folded). Paired first-pass butterflies (two in the halves of one vector) were
/// slower than the 4-lane ones (0.86 against 0.64 µs for the FFT in the same run): the
/// two-place loads and stores cost more than they save. The kernels README has the current
/// phase table.
#[inline(always)]
fn twin<S: Twin, S4: Simd<4>, const L: usize, SL: Simd<L>>(
    t: &Tables,
    cols: &[f32],
    f0: usize,
    b: &mut Buffers<4>,
    wide: &mut [C<L>],
    out: &mut [Out],
) {
    let plan = &t.twin;
    let folded = if L == 16 {
        &plan.folded16
    } else {
        &plan.folded8
    };
    if folded.is_empty() {
        fft::<4, S4, 4, S4>(t, cols, f0, &mut b.x, None);
        for &(i, j) in &plan.split {
            let (p, q) = (&t.split_pairs[i as usize], &t.split_pairs[j as usize]);
            let a = load2::<S>(&b.x, p.a as usize, q.a as usize);
            let b_ = load2::<S>(&b.x, p.b as usize, q.b as usize);
            let w = (S::splat2(p.wr, q.wr), S::splat2(p.wi, q.wi));
            twin_split::<S>(t.kind, [p.k, q.k], w, a, b_, &mut b.spec);
        }
    } else {
        folded_fft::<S4, L, SL>(t, cols, f0, wide);
        let wide = floats(wide);
        for step in folded {
            let a = load2_folded::<S, L>(wide, step.at[0], step.at[1]);
            let b_ = load2_folded::<S, L>(wide, step.at[2], step.at[3]);
            let w = (S::load(&step.wr), S::load(&step.wi));
            twin_split::<S>(t.kind, step.k, w, a, b_, &mut b.spec);
        }
    }
    // The sums first, then log10: a filter's log10 waits for its whole chain of multiply-adds,
    // and these short loops leave the out-of-order core many independent ones at a time.
    for f in &plan.mel {
        let mut acc = S::splat(0.0);
        let (n, start) = (f.len as usize, f.start as usize);
        let (a, b_) = (f.bin_a as usize, f.bin_b as usize);
        let taps = plan.weights[start..start + n]
            .iter()
            .zip(&b.spec[a..a + n])
            .zip(&b.spec[b_..b_ + n]);
        for ((w, xa), xb) in taps {
            acc = S::fma(S::load2(xa, xb), S::load(w), acc);
        }
        S::store_lo(acc, lanes4(&mut out[f.a as usize], f0));
        S::store_hi(acc, lanes4(&mut out[f.b as usize], f0));
    }
    for f in &plan.mel {
        let (a, b) = (f.a as usize, f.b as usize);
        let v = S::load2(lanes4_of(&out[a], f0), lanes4_of(&out[b], f0));
        let v = log10_floor::<8, S>(v, S::splat(1e-10));
        S::store_lo(v, lanes4(&mut out[a], f0));
        S::store_hi(v, lanes4(&mut out[b], f0));
    }
}

/// The FFT of 4 frames (lanes `f0..f0 + 4`) with every pass after the first on `L` lanes. The
/// first pass, on 4 lanes, leaves sub-transform `k` (of `r`, each of `m = M / r` points) in
/// quarter `k % q` of `x[(k / q)·m..(k / q + 1)·m]`, `q = L / 4`; a later butterfly then works
/// on `q` sub-transforms at once, with the twiddles they share, and each lane goes through the
/// same operations as on 4 lanes: the same bits. `TwinPlan::folded8` (`folded16`) say where
/// the split steps find their values. Needs `r` a multiple of `q`.
#[inline(always)]
fn folded_fft<S4: Simd<4>, const L: usize, S: Simd<L>>(
    t: &Tables,
    cols: &[f32],
    f0: usize,
    x: &mut [C<L>],
) {
    let tw = t.first.1.as_deref();
    match t.first.0 {
        8 => folded_first::<S4, L, 8>(&t.src, cols, f0, x, tw),
        4 => folded_first::<S4, L, 4>(&t.src, cols, f0, x, tw),
        _ => folded_first::<S4, L, 2>(&t.src, cols, f0, x, tw),
    }
    later_passes::<L, S, L, S>(&t.passes, &mut x[..t.src.len() / (L / 4)], None);
}

/// The first pass of [`folded_fft`]: [`first_butterfly`] on 4 lanes, each output to its
/// quarter.
#[inline(always)]
fn folded_first<S4: Simd<4>, const L: usize, const R: usize>(
    src: &Sources,
    cols: &[f32],
    f0: usize,
    x: &mut [C<L>],
    tw: Option<&[(f32, f32)]>,
) {
    let (m, q) = (src.len() / R, L / 4);
    debug_assert!(R.is_multiple_of(q) && x.len() >= src.len() / q);
    // What `first_inputs` relies on.
    assert!(f0 <= LANES - 4 && cols.len() >= src.end);
    for p in 0..m {
        // SAFETY: checked above: `f0 + 4 ≤ LANES`, `cols.len() ≥ src.end`.
        let mut a = unsafe { first_inputs::<4, S4, R>(src, cols, f0, p) };
        dft::<4, S4, R>(&mut a);
        let w = match tw {
            Some(tw) if p > 0 => Some(twiddles::<4, S4, R>(tw, p)),
            _ => None,
        };
        for (k, v) in a.iter().enumerate() {
            let v = match &w {
                Some((wr, wi)) if k > 0 => v.twiddle(wr[k], wi[k]),
                _ => *v,
            };
            let c = &mut x[(k / q) * m + p];
            S4::store(v.re, quarter_mut(&mut c.re, k % q));
            S4::store(v.im, quarter_mut(&mut c.im, k % q));
        }
    }
}

/// Lanes `4i..4i + 4`.
#[inline(always)]
fn quarter_mut<const L: usize>(a: &mut [f32; L], i: usize) -> &mut [f32; 4] {
    (&mut a[4 * i..4 * i + 4]).try_into().expect("4 lanes")
}

/// The values at two positions of [`folded_fft`]'s result (each given as the offset of its
/// real parts among the buffer's floats; the imaginary parts are `L` further), in lanes 0..4
/// and 4..8.
#[inline(always)]
fn load2_folded<S: Twin, const L: usize>(x: &[f32], a: u32, b: u32) -> Cv<8, S> {
    let (a, b) = (a as usize, b as usize);
    let four = |o: usize| -> &[f32; 4] { x[o..o + 4].try_into().expect("4 lanes") };
    Cv {
        re: S::load2(four(a), four(b)),
        im: S::load2(four(a + L), four(b + L)),
    }
}

/// `x` as its floats, each entry's `re` then `im`.
#[inline(always)]
fn floats<const L: usize>(x: &[C<L>]) -> &[f32] {
    const { assert!(size_of::<C<L>>() == 2 * L * size_of::<f32>(), "no padding") };
    // SAFETY: `C<L>` is `repr(C)`: two `[f32; L]` and, as checked when this is compiled, no
    // padding, so the entries are `2 L` initialised `f32` each, contiguous.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len() * 2 * L) }
}

/// Two split steps, bins `pk` (lanes 0..4) and `qk` (4..8) with their twiddles `w`, from
/// their `Z[k]` in `a` and `Z[M − k]` in `b`, into `spec`.
#[inline(always)]
fn twin_split<S: Twin>(
    kind: SpectrumKind,
    [pk, qk]: [u32; 2],
    (wr, wi): (S::V, S::V),
    a: Cv<8, S>,
    b: Cv<8, S>,
    spec: &mut [[f32; 4]],
) {
    let half = spec.len() - 1;
    let (x, y) = split_math::<8, S>(kind, a, b, wr, wi);
    let (pk, qk) = (pk as usize, qk as usize);
    S::store_lo(x, &mut spec[pk]);
    S::store_hi(x, &mut spec[qk]);
    S::store_lo(y, &mut spec[half - pk]);
    S::store_hi(y, &mut spec[half - qk]);
}

/// Lanes `f0..f0 + 4` of `o`.
#[inline(always)]
fn lanes4_of(o: &Out, f0: usize) -> &[f32; 4] {
    o[f0..f0 + 4].try_into().expect("4 lanes")
}

/// Lanes `f0..f0 + 4` of `o`.
#[inline(always)]
fn lanes4(o: &mut Out, f0: usize) -> &mut [f32; 4] {
    (&mut o[f0..f0 + 4]).try_into().expect("4 lanes")
}

/// `x[a]` in lanes 0..4 and `x[b]` in lanes 4..8.
#[inline(always)]
fn load2<S: Twin>(x: &[C<4>], a: usize, b: usize) -> Cv<8, S> {
    Cv {
        re: S::load2(&x[a].re, &x[b].re),
        im: S::load2(&x[a].im, &x[b].im),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectrum::FrameSpectrum;

    fn signal(n: usize) -> Vec<f32> {
        // Two tones over white noise (an LCG), so that every mel channel has energy.
        let mut state = 12345u32;
        (0..n)
            .map(|i| {
                let t = i as f32;
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                (t * 0.031).sin() * 0.3 + (t * 0.173).cos() * 0.1 + noise * 0.05
            })
            .collect()
    }

    #[test]
    fn batch_matches_per_frame_spectrum_and_lanes_are_independent() {
        // Whisper, dMel, and odd shapes: a hop that is not a multiple of 8 (the region is
        // transposed value by value), an odd window offset, radices 5·4·3·3.
        // The fifth shape has an odd number of mel filters, some of them empty (narrower than a
        // bin): the paired mel steps pair the last filter with itself and pad empty ones. The
        // sixth has radices 4·3·3: its folded FFT ([`folded_fft`]) is one block on 16 lanes.
        // The last overlaps its frames ten times: up to 33 rows, more than one set of
        // [`GROUPS`] in `transpose_region`.
        for (win, hop, n_fft, kind, fmin, fmax, n_mels) in [
            (400, 160, 400, SpectrumKind::Power, 0.0, 8000.0, 80),
            (800, 200, 1024, SpectrumKind::Magnitude, 80.0, 7600.0, 80),
            (300, 160, 360, SpectrumKind::Power, 0.0, 8000.0, 80),
            (301, 77, 360, SpectrumKind::Magnitude, 0.0, 8000.0, 80),
            (300, 160, 360, SpectrumKind::Power, 0.0, 8000.0, 171),
            (72, 40, 72, SpectrumKind::Power, 0.0, 8000.0, 20),
            (400, 40, 400, SpectrumKind::Power, 0.0, 8000.0, 80),
        ] {
            let mut frame = FrameSpectrum::build(win, n_fft, kind);
            let mel = MelFilterbank::slaney(16_000.0, n_fft / 2 + 1, n_mels, fmin, fmax);
            if n_mels == 171 {
                let dense = mel.dense();
                let mut rows = dense.chunks(n_fft / 2 + 1);
                assert!(
                    rows.any(|r| r.iter().all(|&w| w == 0.0)),
                    "the shape is meant to have empty filters"
                );
            }
            let shape = BatchShape {
                win_len: win,
                hop,
                n_fft,
                kind,
            };
            let mut batch = BatchSpectrum::new(shape, &mel).expect("plan");
            let sig = signal(hop * (LANES + 4) + win);
            // Reference: the per-frame path (rustfft) in f32, then mel and log10 as before.
            let mut want = vec![0.0f32; n_mels];
            // Every path this CPU has, every batch size: the same bits for every frame.
            let mut paths = vec![Path::Plain8, Path::Plain16];
            if has_avx2() {
                paths.push(Path::Avx2);
            }
            if has_avx512() {
                paths.push(Path::Avx512);
            }
            let fast = batch.path();
            assert!(paths.contains(&fast));
            batch.run(Region::one(&sig[hop * 2..]), LANES);
            let full = batch.out.clone();
            for &path in &paths {
                batch.set_path(path);
                for count in [24, 21, 20, 19, 18, 17, 16, 12, 11, 10, 9, 8, 5, 4, 3, 1] {
                    // Also as a stream hands it over: two slices, cut inside a row, ending
                    // where the last frame ends (the last row reaches past the end).
                    let exact = &sig[hop * 2..hop * 2 + (count - 1) * hop + win];
                    let cut = (hop * 3 + 37).min(exact.len());
                    let (head, tail) = exact.split_at(cut);
                    for region in [Region::one(&sig[hop * 2..]), Region::two(head, tail)] {
                        batch.run(region, count);
                        for (m, (got, all)) in batch.out.iter().zip(&full).enumerate() {
                            for f in 0..count {
                                assert_eq!(
                                    got[f].to_bits(),
                                    all[f].to_bits(),
                                    "{path:?} (vs {fast:?}) count {count} frame {f} mel {m}: \
                                     paths, batch sizes, lanes or regions differ"
                                );
                            }
                        }
                    }
                }
            }
            // Against the same recipe in f64 (a direct DFT), and against the per-frame path.
            let window: Vec<f64> = (0..win)
                .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / win as f64).cos())
                .collect();
            let dense = mel.dense();
            let bins = n_fft / 2 + 1;
            let off = (n_fft - win) / 2;
            let mut worst = 0.0f64;
            #[allow(clippy::needless_range_loop)]
            for f in 0..LANES {
                let start = hop * (2 + f);
                let spec = frame.compute(&sig[start..start + win]);
                mel.apply(spec, &mut want);
                log10_floor_in_place(&mut want, 1e-10);
                let power: Vec<f64> = (0..bins)
                    .map(|k| {
                        let (mut re, mut im) = (0.0, 0.0);
                        for n in 0..win {
                            let x = f64::from(sig[start + n]) * window[n];
                            let th =
                                -2.0 * std::f64::consts::PI * (k * (n + off)) as f64 / n_fft as f64;
                            re += x * th.cos();
                            im += x * th.sin();
                        }
                        let p = re * re + im * im;
                        if kind == SpectrumKind::Magnitude {
                            p.max(1e-10).sqrt()
                        } else {
                            p
                        }
                    })
                    .collect();
                for m in 0..n_mels {
                    let exact: f64 = (0..bins)
                        .map(|k| f64::from(dense[m * bins + k]) * power[k])
                        .sum();
                    let exact = exact.max(1e-10).log10();
                    let got = full[m][f];
                    worst = worst.max((f64::from(got) - exact).abs());
                    assert!(
                        (f64::from(got) - exact).abs() < 1e-4,
                        "n_fft {n_fft} frame {f} mel {m}: {got} vs {exact}"
                    );
                    assert!(
                        (got - want[m]).abs() < 2e-4,
                        "n_fft {n_fft} frame {f} mel {m}: {got} vs {}",
                        want[m]
                    );
                }
            }
            eprintln!("n_fft {n_fft} ({fast:?}): max |log10 mel − f64| = {worst:.2e}");
        }
    }

    /// The FFT stage alone, for plans of every kind (prime-factor first passes with radix 4
    /// and 8, plain ones, mixed radices), against a direct DFT of the same windowed, packed
    /// input in f64, read back through the output order.
    #[test]
    fn fft_matches_a_direct_dft_for_every_plan() {
        // (N/2, plan): 12 = 4·3 and 24 = 8·3 and 40 = 8·5 and 200 = 8·25 prime-factor, 48 =
        // 8·3·2 and 512 = 8·8·8 and 180 = 5·4·3·3 and 30 = 5·3·2 plain; 512's sub-transforms
        // with a gap between them ([`Layout`]).
        for half in [12, 24, 40, 200, 48, 512, 180, 30] {
            let n_fft = 2 * half;
            // An odd window offset, a hop that is a multiple of 8 (the vector transpose).
            let (win, hop) = (n_fft - 2, 8);
            let mel = MelFilterbank::slaney(16_000.0, half + 1, 4, 0.0, 8000.0);
            let shape = BatchShape {
                win_len: win,
                hop,
                n_fft,
                kind: SpectrumKind::Power,
            };
            let mut batch = BatchSpectrum::with_path(shape, &mel, Path::Plain8).expect("plan");
            let sig = signal(hop * 8 + win);
            let BatchSpectrum { t, cols, b8, .. } = &mut batch;
            assert_eq!(
                t.layout.stride > t.layout.len,
                half == 512,
                "gaps for 512 only"
            );
            let cols = cols.as_flattened_mut();
            transpose_region::<Plain<8>>(t, cols, Region::one(&sig), 8 + (win - 1) / hop);
            fft::<8, Plain<8>, 8, Plain<8>>(t, cols, 0, &mut b8.x, None);
            let window = periodic_hann(win);
            let off = (n_fft - win) / 2;
            for f in 0..8 {
                let x = |n: usize| -> f64 {
                    match n.checked_sub(off).filter(|&i| i < win) {
                        Some(i) => f64::from(sig[f * hop + i] * window[i]),
                        None => 0.0,
                    }
                };
                let mut worst = 0.0f64;
                let mut scale = 0.0f64;
                for k in 0..half {
                    let (mut re, mut im) = (0.0, 0.0);
                    for m in 0..half {
                        let th = -2.0 * std::f64::consts::PI * (k * m) as f64 / half as f64;
                        let (zr, zi) = (x(2 * m), x(2 * m + 1));
                        re += zr * th.cos() - zi * th.sin();
                        im += zr * th.sin() + zi * th.cos();
                    }
                    let got = &b8.x[t.layout.at(t.order[k])];
                    let err = (f64::from(got.re[f]) - re).hypot(f64::from(got.im[f]) - im);
                    worst = worst.max(err);
                    scale = scale.max(re.hypot(im));
                }
                assert!(
                    worst <= 1e-5 * scale,
                    "N/2 = {half}, frame {f}: error {worst:e} against a largest bin of {scale:e}"
                );
            }
        }
    }

    /// Every build's vector log10 gives the bits of the scalar [`log10_floor_in_place`].
    #[test]
    fn vector_log10_matches_the_scalar_form_bit_for_bit() {
        let mut values = vec![f32::NAN, -1.0, 0.0, 1e-12, 1e-10, f32::MIN_POSITIVE, 3.0e38];
        let mut x = 1e-10f32;
        while x < 1e10 {
            values.push(x);
            x *= 1.000_71;
        }
        values.extend((0..4000).map(|i| 0.5 + i as f32 * 2.5e-4));
        while !values.len().is_multiple_of(16) {
            values.push(1.0);
        }
        let mut want = values.clone();
        log10_floor_in_place(&mut want, 1e-10);
        let floor = 1e-10;
        let check = |name: &str, got: &[f32]| {
            for ((g, w), v) in got.iter().zip(&want).zip(&values) {
                assert_eq!(g.to_bits(), w.to_bits(), "{name}: log10({v}) = {g} vs {w}");
            }
        };
        let plain: Vec<f32> = values
            .as_chunks::<16>()
            .0
            .iter()
            .flat_map(|c| log10_floor::<16, Plain<16>>(*c, [floor; 16]))
            .collect();
        check("plain", &plain);
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(c: &[f32; 8]) -> [f32; 8] {
                let mut o = [0.0; 8];
                Avx::store(
                    log10_floor::<8, Avx>(Avx::load(c), Avx::splat(1e-10)),
                    &mut o,
                );
                o
            }
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512(c: &[f32; 16]) -> [f32; 16] {
                let mut o = [0.0; 16];
                let v = log10_floor::<16, Avx512>(Avx512::load(c), Avx512::splat(1e-10));
                Avx512::store(v, &mut o);
                o
            }
            if has_avx2() {
                // SAFETY: the CPU has AVX2 and FMA.
                let got: Vec<f32> = values
                    .as_chunks::<8>()
                    .0
                    .iter()
                    .flat_map(|c| unsafe { avx2(c) })
                    .collect();
                check("avx2", &got);
            }
            if has_avx512() {
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                let got: Vec<f32> = values
                    .as_chunks::<16>()
                    .0
                    .iter()
                    .flat_map(|c| unsafe { avx512(c) })
                    .collect();
                check("avx512", &got);
            }
        }
    }
}
