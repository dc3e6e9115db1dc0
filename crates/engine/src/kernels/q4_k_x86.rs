//! x86_64 Q4_K × int8 dot products: `R` weight rows against one activation row per call,
//! so each activation super-block is loaded once for `R` rows.
//!
//! Per super-block and row: the nibbles unpack to unsigned bytes, `vpmaddubsw` multiplies
//! them with the int8 activations into i16 pair sums (at most 2·15·127, no saturation),
//! and `vpmaddwd` with the sub-block's 6-bit scale both applies the scale and widens to
//! i32. VNNI's `vpdpbusd` would fuse the first step but not the scale, which differs per
//! sub-block and must be applied before the lanes of different sub-blocks meet, so it
//! saves nothing here: the VNNI tiers run these same instructions (AVX-VNNI on 256-bit
//! registers like AVX2, AVX512-VNNI on 512-bit ones). The mins term
//! `dmin · Σ_s min[s] · Σ a_s` comes from the activations' per-sub-block sums.

use std::arch::x86_64::*;

use super::q4_k::{
    unpack_scales_mins, Q8KRow, SubBlockOrder, NIBBLES_AT, Q4_K_BLOCK_BYTES, Q4_K_BLOCK_VALUES,
    SCALES_AT, SUB_BLOCK, SUB_BLOCKS,
};
use super::tier::Tier;

/// Weight rows per kernel call.
pub(crate) const ROWS: usize = 4;

/// Rows ahead of the ones being read whose blocks are prefetched: a row of a few KB is
/// too short a stream for the hardware prefetcher to ramp up before it ends.
const PREFETCH_ROWS: usize = 16;

/// Prefetches the `len`-byte block at the same place `PREFETCH_ROWS` rows further on.
/// Prefetches never fault, so the address may lie past the matrix.
#[inline(always)]
pub(crate) fn prefetch_ahead(p: *const u8, row_bytes: usize, len: usize) {
    let ahead = p.wrapping_add(PREFETCH_ROWS * row_bytes);
    let mut line = 0;
    while line < len {
        // SAFETY: prefetching is a hint with no memory access semantics; any address is fine.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
        line += 64;
    }
    // The block may straddle one more line than `len / 64` covers.
    // SAFETY: as above.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(len - 1).cast()) };
}

/// `[d, dmin, 0, 0]` of the super-block at `p`, times the activation scale `da`.
///
/// # Safety
/// The CPU must have F16C; `p` must point at a super-block.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn d_dmin_times(p: *const u8, da: f32) -> __m128 {
    // SAFETY: the first 4 bytes of the super-block are `d` and `dmin`.
    let bits = unsafe { p.cast::<i32>().read_unaligned() };
    _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)), _mm_set1_ps(da))
}

/// The 8 scales and 8 mins of the super-block at `p` as i16s.
///
/// # Safety
/// The CPU must have AVX2; `p` must point at a super-block.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn scales_mins(p: *const u8) -> (__m128i, __m128i) {
    // SAFETY: bytes 4..16 of the super-block are its packed scales and mins.
    let packed = unsafe { p.add(SCALES_AT).cast::<[u8; 12]>().read_unaligned() };
    let (scales, mins) = unpack_scales_mins(packed);
    (
        _mm_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64)),
        _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mins as i64)),
    )
}

#[target_feature(enable = "avx2")]
#[inline]
fn hsum128(v: __m128) -> f32 {
    let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2")]
#[inline]
fn hsum256(v: __m256) -> f32 {
    hsum128(_mm_add_ps(
        _mm256_castps256_ps128(v),
        _mm256_extractf128_ps(v, 1),
    ))
}

/// The 256-bit kernel (AVX2 and AVX-VNNI tiers): one 32-byte nibble chunk at a time, its
/// low nibbles (sub-block `2j`) and high nibbles (`2j + 1`) against natural-order
/// activations.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` must point at `R` rows of `row_bytes` bytes
/// (`blocks` super-blocks each), `qs` at `blocks * 256` activations in natural order,
/// `sums` at `blocks * 8` sub-block sums and `scales` at `blocks` scales.
// Index loops over the const-size row arrays read like the math they do.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_avx2<const R: usize>(
    w: *const u8,
    row_bytes: usize,
    qs: *const i8,
    sums: *const i16,
    scales: *const f32,
    blocks: usize,
) -> [f32; R] {
    let low_nibbles = _mm256_set1_epi8(0x0F);
    // `vpshufb` masks that spread i16 scale `s` over a whole register.
    let spread: [__m256i; SUB_BLOCKS] =
        std::array::from_fn(|s| _mm256_set1_epi16(((2 * s) | ((2 * s + 1) << 8)) as i16));
    let mut acc = [_mm256_setzero_ps(); R];
    let mut acc_min = [_mm_setzero_ps(); R];
    for b in 0..blocks {
        // SAFETY: super-block `b` of the activations lies inside what the caller vouches for.
        let (a, sums_b, da) = unsafe {
            (
                qs.add(b * Q4_K_BLOCK_VALUES),
                _mm_loadu_si128(sums.add(b * SUB_BLOCKS).cast()),
                *scales.add(b),
            )
        };
        for r in 0..R {
            // SAFETY: super-block `b` of row `r` lies inside the caller's rows.
            let p = unsafe { w.add(r * row_bytes + b * Q4_K_BLOCK_BYTES) };
            prefetch_ahead(p, row_bytes, Q4_K_BLOCK_BYTES);
            // SAFETY: `p` points at a whole super-block.
            let (dm, (sc, mn)) = unsafe { (d_dmin_times(p, da), scales_mins(p)) };
            let sc = _mm256_broadcastsi128_si256(sc);
            let mut isum = _mm256_setzero_si256();
            for j in 0..SUB_BLOCKS / 2 {
                // SAFETY: nibble chunk `j` and activation sub-blocks `2j`, `2j + 1` lie
                // inside the super-blocks above.
                let (q, a_lo, a_hi) = unsafe {
                    (
                        _mm256_loadu_si256(p.add(NIBBLES_AT + SUB_BLOCK * j).cast()),
                        _mm256_loadu_si256(a.add(2 * SUB_BLOCK * j).cast()),
                        _mm256_loadu_si256(a.add(2 * SUB_BLOCK * j + SUB_BLOCK).cast()),
                    )
                };
                let lo = _mm256_and_si256(q, low_nibbles);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_nibbles);
                let lo = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(lo, a_lo),
                    _mm256_shuffle_epi8(sc, spread[2 * j]),
                );
                let hi = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi, a_hi),
                    _mm256_shuffle_epi8(sc, spread[2 * j + 1]),
                );
                isum = _mm256_add_epi32(isum, _mm256_add_epi32(lo, hi));
            }
            let mins = _mm_cvtepi32_ps(_mm_madd_epi16(mn, sums_b));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(dm), acc[r]);
            acc_min[r] = _mm_fmadd_ps(mins, _mm_permute_ps(dm, 0b01_01_01_01), acc_min[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = hsum256(acc[r]) - hsum128(acc_min[r]);
    }
    out
}

/// The 512-bit kernel (AVX512-VNNI tier): 64 nibble bytes (two chunks) at a time; their
/// low nibbles are sub-blocks `(0, 2)` or `(4, 6)` and their high nibbles `(1, 3)` or
/// `(5, 7)`, which is why the activations come in [`SubBlockOrder::Paired`].
///
/// # Safety
/// As for [`rows_avx2`], the CPU must also have AVX512-F/BW/VL, and the activations must
/// be in [`SubBlockOrder::Paired`].
///
// Index loops over the const-size row arrays read like the math they do.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn rows_avx512<const R: usize>(
    w: *const u8,
    row_bytes: usize,
    qs: *const i8,
    sums: *const i16,
    scales: *const f32,
    blocks: usize,
) -> [f32; R] {
    let low_nibbles = _mm512_set1_epi8(0x0F);
    // `vpermw` indices: scale `lo` into the first 16 i16 lanes, `hi` into the last 16.
    let spread = |lo: i16, hi: i16| {
        _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set1_epi16(lo)),
            _mm256_set1_epi16(hi),
            1,
        )
    };
    let spread = [spread(0, 2), spread(1, 3), spread(4, 6), spread(5, 7)];
    let mut acc = [_mm512_setzero_ps(); R];
    let mut acc_min = [_mm_setzero_ps(); R];
    for b in 0..blocks {
        // SAFETY: super-block `b` of the activations lies inside what the caller vouches for.
        let (a, sums_b, da) = unsafe {
            let a = qs.add(b * Q4_K_BLOCK_VALUES);
            (
                [
                    _mm512_loadu_si512(a.cast()),
                    _mm512_loadu_si512(a.add(64).cast()),
                    _mm512_loadu_si512(a.add(128).cast()),
                    _mm512_loadu_si512(a.add(192).cast()),
                ],
                _mm_loadu_si128(sums.add(b * SUB_BLOCKS).cast()),
                *scales.add(b),
            )
        };
        for r in 0..R {
            // SAFETY: super-block `b` of row `r` lies inside the caller's rows.
            let p = unsafe { w.add(r * row_bytes + b * Q4_K_BLOCK_BYTES) };
            prefetch_ahead(p, row_bytes, Q4_K_BLOCK_BYTES);
            // SAFETY: `p` points at a whole super-block, whose nibbles are 128 bytes.
            let (dm, (sc, mn), q01, q23) = unsafe {
                (
                    d_dmin_times(p, da),
                    scales_mins(p),
                    _mm512_loadu_si512(p.add(NIBBLES_AT).cast()),
                    _mm512_loadu_si512(p.add(NIBBLES_AT + 64).cast()),
                )
            };
            let sc = _mm512_castsi128_si512(sc);
            let nibbles = [
                _mm512_and_si512(q01, low_nibbles),
                _mm512_and_si512(_mm512_srli_epi16(q01, 4), low_nibbles),
                _mm512_and_si512(q23, low_nibbles),
                _mm512_and_si512(_mm512_srli_epi16(q23, 4), low_nibbles),
            ];
            let mut isum = _mm512_setzero_si512();
            for k in 0..4 {
                let dot = _mm512_madd_epi16(
                    _mm512_maddubs_epi16(nibbles[k], a[k]),
                    _mm512_permutexvar_epi16(spread[k], sc),
                );
                isum = _mm512_add_epi32(isum, dot);
            }
            let mins = _mm_cvtepi32_ps(_mm_madd_epi16(mn, sums_b));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(dm), acc[r]);
            acc_min[r] = _mm_fmadd_ps(mins, _mm_permute_ps(dm, 0b01_01_01_01), acc_min[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(acc[r]) - hsum128(acc_min[r]);
    }
    out
}

/// Dot products of the `R` weight rows at the start of `w` with the activation row.
/// Panics if the slices do not match or `tier` is not a SIMD tier this CPU runs (the
/// matrix checks the tier once per matvec).
pub(crate) fn dot_rows<const R: usize>(
    tier: Tier,
    w: &[u8],
    row_bytes: usize,
    acts: &Q8KRow,
) -> [f32; R] {
    let blocks = acts.scales.len();
    assert!(row_bytes == blocks * Q4_K_BLOCK_BYTES && w.len() >= R * row_bytes);
    assert!(acts.qs.len() == blocks * Q4_K_BLOCK_VALUES);
    assert!(acts.sum_width == SUB_BLOCK && acts.sums.len() == blocks * SUB_BLOCKS);
    let (w, qs, sums, scales) = (
        w.as_ptr(),
        acts.qs.as_ptr(),
        acts.sums.as_ptr(),
        acts.scales.as_ptr(),
    );
    match tier {
        Tier::Avx512Vnni => {
            assert!(
                tier.is_available() && std::is_x86_feature_detected!("avx512bw"),
                "AVX-512 is not available on this CPU"
            );
            assert!(acts.order == SubBlockOrder::Paired);
            // SAFETY: the asserts above bound every pointer the kernel reads (R rows of
            // `blocks` super-blocks, one activation row of `blocks` super-blocks) and
            // check the CPU features; the matrix quantized the activations Paired.
            unsafe { rows_avx512::<R>(w, row_bytes, qs, sums, scales, blocks) }
        }
        Tier::AvxVnni | Tier::Avx2 => {
            assert!(tier.is_available(), "{tier:?} is not available on this CPU");
            assert!(acts.order == SubBlockOrder::Natural);
            // SAFETY: as above, in natural order.
            unsafe { rows_avx2::<R>(w, row_bytes, qs, sums, scales, blocks) }
        }
        Tier::Scalar => unreachable!("the scalar tier has no SIMD kernel"),
    }
}
