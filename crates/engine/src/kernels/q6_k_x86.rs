//! x86_64 Q6_K × int8 dot products: `R` weight rows against one activation row per call.
//!
//! Per super-block and row: 4-bit `ql` and 2-bit `qh` combine into unsigned 6-bit values
//! `q`, `vpmaddubsw` multiplies them with the int8 activations into i16 pair sums (at
//! most 2·63·127, no saturation), and `vpmaddwd` with the signed scale of each group of
//! 16 applies it and widens to i32. The `- 32` offset comes out of the activations'
//! per-group sums: `Σ scale · (Σ q·a - 32 Σ a)`. As for Q4_K, the per-group scale leaves
//! VNNI nothing to fuse, so the VNNI tiers run these same instructions.

use std::arch::x86_64::*;

use super::q6_k::{D_AT, GROUP, GROUPS, Q6_K_BLOCK_BYTES, Q6_K_BLOCK_VALUES, QH_AT, SCALES_AT};
use super::q8_k_row::Q8KRow;
use super::tier::Tier;

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

/// Weight rows per kernel call.
pub(crate) const ROWS: usize = 4;

/// `d * da` and the 16 scales (i16) of the super-block at `p`.
///
/// # Safety
/// The CPU must have AVX2 and F16C; `p` must point at a super-block.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn d_and_scales(p: *const u8, da: f32) -> (f32, __m256i) {
    // SAFETY: bytes 192..210 of the super-block are its scales and `d`.
    let (bits, scales) = unsafe {
        (
            p.add(D_AT).cast::<u16>().read_unaligned(),
            _mm_loadu_si128(p.add(SCALES_AT).cast()),
        )
    };
    let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
    (d * da, _mm256_cvtepi8_epi16(scales))
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

/// The 256-bit kernel (AVX2 and AVX-VNNI tiers): 32 values at a time.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` must point at `R` rows of `row_bytes` bytes
/// (`blocks` super-blocks each), `qs` at `blocks * 256` activations in natural order,
/// `sums` at `blocks * 16` group sums and `scales` at `blocks` scales.
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
    let low4 = _mm256_set1_epi8(0x0F);
    let bits45 = _mm256_set1_epi8(0x30);
    // `vpshufb` masks: i16 scale `2k` of a half over the low 128 bits, `2k + 1` over the
    // high 128 bits, for the 32 values `32k..32k + 32` of that half.
    let spread: [__m256i; 4] = std::array::from_fn(|k| {
        let pick = |e: usize| ((2 * e) | ((2 * e + 1) << 8)) as i16;
        _mm256_set_m128i(_mm_set1_epi16(pick(2 * k + 1)), _mm_set1_epi16(pick(2 * k)))
    });
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..blocks {
        // SAFETY: super-block `b` of the activations lies inside what the caller vouches for.
        let (a, sums_b, da) = unsafe {
            (
                qs.add(b * Q6_K_BLOCK_VALUES),
                _mm256_loadu_si256(sums.add(b * GROUPS).cast()),
                *scales.add(b),
            )
        };
        for r in 0..R {
            // SAFETY: super-block `b` of row `r` lies inside the caller's rows.
            let p = unsafe { w.add(r * row_bytes + b * Q6_K_BLOCK_BYTES) };
            prefetch_ahead(p, row_bytes, Q6_K_BLOCK_BYTES);
            // SAFETY: `p` points at a whole super-block.
            let (dd, sc) = unsafe { d_and_scales(p, da) };
            let mut isum = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32(_mm256_madd_epi16(sc, sums_b), 5),
            );
            for half in 0..2 {
                let sc_half = _mm256_broadcastsi128_si256(if half == 0 {
                    _mm256_castsi256_si128(sc)
                } else {
                    _mm256_extracti128_si256(sc, 1)
                });
                // SAFETY: this half's `ql` (64 bytes), `qh` (32 bytes) and activations.
                let (ql, qh) = unsafe {
                    (
                        [
                            _mm256_loadu_si256(p.add(64 * half).cast()),
                            _mm256_loadu_si256(p.add(64 * half + 32).cast()),
                        ],
                        _mm256_loadu_si256(p.add(QH_AT + 32 * half).cast()),
                    )
                };
                let high = [
                    _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45),
                    _mm256_and_si256(qh, bits45),
                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45),
                ];
                for k in 0..4 {
                    let low = if k < 2 {
                        _mm256_and_si256(ql[k], low4)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16(ql[k - 2], 4), low4)
                    };
                    let q = _mm256_or_si256(low, high[k]);
                    // SAFETY: values `128 half + 32k ..+ 32` of this super-block.
                    let a = unsafe { _mm256_loadu_si256(a.add(128 * half + 32 * k).cast()) };
                    let dot = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(q, a),
                        _mm256_shuffle_epi8(sc_half, spread[k]),
                    );
                    isum = _mm256_add_epi32(isum, dot);
                }
            }
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dd), acc[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = hsum256(acc[r]);
    }
    out
}

/// The 512-bit kernel (AVX512-VNNI tier): 64 values at a time. A half's 64 `ql` bytes
/// unpack to its values `0..64` (low nibbles) and `64..128` (high nibbles), in order.
///
/// # Safety
/// As for [`rows_avx2`], and the CPU must also have AVX512-F/BW/VL.
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
    let low4 = _mm512_set1_epi8(0x0F);
    let bits45 = _mm512_set1_epi8(0x30);
    // `vpermw` indices: i16 lane `i` of the 64 values from `64k` takes scale `4k + i / 8`.
    let spread: [__m512i; 4] = std::array::from_fn(|k| {
        let lanes: [i16; 32] = std::array::from_fn(|i| (4 * k + i / 8) as i16);
        // SAFETY: 32 i16s are exactly one 512-bit register.
        unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
    });
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..blocks {
        // SAFETY: super-block `b` of the activations lies inside what the caller vouches for.
        let (a, sums_b, da) = unsafe {
            let a = qs.add(b * Q6_K_BLOCK_VALUES);
            (
                [
                    _mm512_loadu_si512(a.cast()),
                    _mm512_loadu_si512(a.add(64).cast()),
                    _mm512_loadu_si512(a.add(128).cast()),
                    _mm512_loadu_si512(a.add(192).cast()),
                ],
                _mm256_loadu_si256(sums.add(b * GROUPS).cast()),
                *scales.add(b),
            )
        };
        for r in 0..R {
            // SAFETY: super-block `b` of row `r` lies inside the caller's rows.
            let p = unsafe { w.add(r * row_bytes + b * Q6_K_BLOCK_BYTES) };
            prefetch_ahead(p, row_bytes, Q6_K_BLOCK_BYTES);
            // SAFETY: `p` points at a whole super-block.
            let (dd, sc) = unsafe { d_and_scales(p, da) };
            let offset = _mm256_slli_epi32(_mm256_madd_epi16(sc, sums_b), 5);
            let mut isum = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), offset));
            isum = _mm512_inserti64x4(isum, _mm256_setzero_si256(), 1);
            let sc = _mm512_castsi256_si512(sc);
            for half in 0..2 {
                // SAFETY: this half's `ql` (64 bytes) and `qh` (32 bytes).
                let (ql, qh) = unsafe {
                    (
                        _mm512_loadu_si512(p.add(64 * half).cast()),
                        _mm256_loadu_si256(p.add(QH_AT + 32 * half).cast()),
                    )
                };
                let qh =
                    _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
                let q = [
                    _mm512_or_si512(
                        _mm512_and_si512(ql, low4),
                        _mm512_and_si512(_mm512_slli_epi16(qh, 4), bits45),
                    ),
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                        _mm512_and_si512(qh, bits45),
                    ),
                ];
                for k in 0..2 {
                    let dot = _mm512_madd_epi16(
                        _mm512_maddubs_epi16(q[k], a[2 * half + k]),
                        _mm512_permutexvar_epi16(spread[2 * half + k], sc),
                    );
                    isum = _mm512_add_epi32(isum, dot);
                }
            }
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(dd), acc[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(acc[r]);
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
    assert!(row_bytes == blocks * Q6_K_BLOCK_BYTES && w.len() >= R * row_bytes);
    assert!(acts.qs.len() == blocks * Q6_K_BLOCK_VALUES);
    assert!(acts.sum_width == GROUP && acts.sums.len() == blocks * GROUPS);
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
            // SAFETY: the asserts above bound every pointer the kernel reads (R rows of
            // `blocks` super-blocks, one activation row of `blocks` super-blocks) and
            // check the CPU features.
            unsafe { rows_avx512::<R>(w, row_bytes, qs, sums, scales, blocks) }
        }
        Tier::AvxVnni | Tier::Avx2 => {
            assert!(tier.is_available(), "{tier:?} is not available on this CPU");
            // SAFETY: as above.
            unsafe { rows_avx2::<R>(w, row_bytes, qs, sums, scales, blocks) }
        }
        Tier::Scalar => unreachable!("the scalar tier has no SIMD kernel"),
    }
}
