//! x86_64 Q4_0 × int8 tiles: `R` weight rows × `T` activation rows per call, so each
//! unpacked weight block is reused `T` times and each activation block `R` times.
//!
//! Per 32-value block: the 16 nibble bytes become 32 unsigned values (low nibbles are
//! values 0..16, high nibbles 16..32, GGML's order), an int8 dot product with the
//! activations runs in 8 i32 lanes seeded with `-8 * Σ a` (so the result is
//! `Σ (q - 8) * a`), and the lanes are scaled by `d_w * d_a` into f32 accumulators.

use std::arch::x86_64::*;

use super::activations::{QuantizedRows, GROUP};
use super::q4_0::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_VALUES};
use super::tier::Tier;

/// The largest tile each tier uses: VEX tiers have 16 vector registers, AVX-512 has 32.
pub(crate) fn max_tile(tier: Tier) -> (usize, usize) {
    match tier {
        Tier::Avx512Vnni => (4, 4),
        _ => (4, 2),
    }
}

#[target_feature(enable = "avx2")]
#[inline]
fn dot_avx2(seed: __m256i, w: __m256i, a: __m256i) -> __m256i {
    // Nibbles are at most 15, so each u8×i8 pair sum (≤ 2·15·128) fits an i16.
    let pairs = _mm256_maddubs_epi16(w, a);
    _mm256_add_epi32(seed, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

// The VNNI intrinsics are stable since Rust 1.89, which candle-core 0.11.1 (it uses
// them too) already requires.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
fn dot_avxvnni(seed: __m256i, w: __m256i, a: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(seed, w, a)
}

#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[inline]
fn dot_avx512vnni(seed: __m256i, w: __m256i, a: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(seed, w, a)
}

#[target_feature(enable = "avx2")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

macro_rules! tile_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// The CPU must have `$features`; `w` must point at `R` rows of `row_bytes` bytes
        /// (`k / 32` blocks each) and `qs`, `offsets`, `scales` at `T` rows of `k`
        /// activations in [`QuantizedRows`]' layout.
        #[target_feature(enable = $features)]
        unsafe fn $name<const R: usize, const T: usize>(
            w: *const u8,
            row_bytes: usize,
            qs: *const i8,
            offsets: *const i32,
            scales: *const f32,
            k: usize,
        ) -> [[f32; T]; R] {
            let blocks = k / Q4_0_BLOCK_VALUES;
            let low_nibbles = _mm256_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..blocks {
                let mut wq = [_mm256_setzero_si256(); R];
                let mut dw = [_mm256_setzero_ps(); R];
                for r in 0..R {
                    // SAFETY: block `b` of row `r` lies inside the `R * row_bytes` bytes
                    // the caller vouches for; loads are unaligned.
                    let (bits, packed) = unsafe {
                        let p = w.add(r * row_bytes + b * Q4_0_BLOCK_BYTES);
                        (
                            p.cast::<u16>().read_unaligned(),
                            _mm_loadu_si128(p.add(2).cast()),
                        )
                    };
                    let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
                    wq[r] = _mm256_and_si256(both, low_nibbles);
                    dw[r] = _mm256_cvtph_ps(_mm_set1_epi16(bits as i16));
                }
                for t in 0..T {
                    // SAFETY: activation row `t` has `k` values, `k / 4` offsets and
                    // `k / 32` scales, as the caller vouches; loads are unaligned.
                    let (a, seed, da) = unsafe {
                        (
                            _mm256_loadu_si256(qs.add(t * k + b * Q4_0_BLOCK_VALUES).cast()),
                            _mm256_loadu_si256(
                                offsets.add((t * k + b * Q4_0_BLOCK_VALUES) / GROUP).cast(),
                            ),
                            _mm256_set1_ps(*scales.add(t * blocks + b)),
                        )
                    };
                    for r in 0..R {
                        let dot = _mm256_cvtepi32_ps($dot(seed, wq[r], a));
                        acc[r][t] = _mm256_fmadd_ps(dot, _mm256_mul_ps(dw[r], da), acc[r][t]);
                    }
                }
            }
            let mut out = [[0f32; T]; R];
            for r in 0..R {
                for t in 0..T {
                    out[r][t] = hsum(acc[r][t]);
                }
            }
            out
        }
    };
}

tile_kernel!(tile_avx2, "avx2,fma,f16c", dot_avx2);
tile_kernel!(tile_avxvnni, "avx2,fma,f16c,avxvnni", dot_avxvnni);

/// The AVX512-VNNI tile: two blocks per 512-bit register. Weight nibbles unpack to
/// `A[0..16] B[0..16] A[16..32] B[16..32]`, the activations' [`Layout::Paired`] order,
/// so lanes 0..4 and 8..12 belong to block A and lanes 4..8 and 12..16 to block B.
///
/// # Safety
/// As for the 256-bit tiles, and the activations must be in [`Layout::Paired`].
///
/// [`Layout::Paired`]: super::activations::Layout::Paired
// Index loops over the const-size tile arrays read like the math they do.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_avx512vnni<const R: usize, const T: usize>(
    w: *const u8,
    row_bytes: usize,
    qs: *const i8,
    offsets: *const i32,
    scales: *const f32,
    k: usize,
) -> [[f32; T]; R] {
    let blocks = k / Q4_0_BLOCK_VALUES;
    let low_nibbles = _mm512_set1_epi8(0x0F);
    let pattern = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    for b in (0..blocks - blocks % 2).step_by(2) {
        let mut wq = [_mm512_setzero_si512(); R];
        let mut dw = [_mm512_setzero_ps(); R];
        for r in 0..R {
            // SAFETY: blocks `b` and `b + 1` of row `r` lie inside the caller's rows.
            let (bits, first, second) = unsafe {
                let p = w.add(r * row_bytes + b * Q4_0_BLOCK_BYTES);
                let q = p.add(Q4_0_BLOCK_BYTES);
                (
                    u32::from(p.cast::<u16>().read_unaligned())
                        | (u32::from(q.cast::<u16>().read_unaligned()) << 16),
                    _mm_loadu_si128(p.add(2).cast()),
                    _mm_loadu_si128(q.add(2).cast()),
                )
            };
            let low = _mm256_inserti128_si256(_mm256_castsi128_si256(first), second, 1);
            let both =
                _mm512_inserti64x4(_mm512_castsi256_si512(low), _mm256_srli_epi16(low, 4), 1);
            wq[r] = _mm512_and_si512(both, low_nibbles);
            let pair = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
            dw[r] = _mm512_permutexvar_ps(pattern, _mm512_castps128_ps512(pair));
        }
        for t in 0..T {
            // SAFETY: activation row `t` holds `k` values, `k / 4` offsets, `k / 32` scales.
            let (a, seed, da) = unsafe {
                let at = t * k + b * Q4_0_BLOCK_VALUES;
                (
                    _mm512_loadu_si512(qs.add(at).cast()),
                    _mm512_loadu_si512(offsets.add(at / GROUP).cast()),
                    _mm_castsi128_ps(_mm_loadl_epi64(scales.add(t * blocks + b).cast())),
                )
            };
            let da = _mm512_permutexvar_ps(pattern, _mm512_castps128_ps512(da));
            for r in 0..R {
                let dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(seed, wq[r], a));
                acc[r][t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(dw[r], da), acc[r][t]);
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
        }
    }
    if blocks % 2 == 1 {
        // SAFETY: the last block of each row and activation row, in natural order; the
        // pointers are offset to it and the 256-bit tile reads one block per row.
        let tail = unsafe {
            let b = blocks - 1;
            tile_avx512vnni_tail::<R, T>(
                w.add(b * Q4_0_BLOCK_BYTES),
                row_bytes,
                qs.add(b * Q4_0_BLOCK_VALUES),
                offsets.add(b * Q4_0_BLOCK_VALUES / GROUP),
                scales.add(b),
                k,
                blocks,
            )
        };
        for r in 0..R {
            for t in 0..T {
                out[r][t] += tail[r][t];
            }
        }
    }
    out
}

/// One block per row and activation row with 256-bit VNNI: the odd block left over by
/// [`tile_avx512vnni`]. Pointers point at that block; strides are the full rows'.
///
/// # Safety
/// As for [`tile_avx512vnni`].
// Index loops over the const-size tile arrays read like the math they do.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn tile_avx512vnni_tail<const R: usize, const T: usize>(
    w: *const u8,
    row_bytes: usize,
    qs: *const i8,
    offsets: *const i32,
    scales: *const f32,
    k: usize,
    blocks: usize,
) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        // SAFETY: the block of row `r` lies inside the caller's rows.
        let (bits, packed) = unsafe {
            let p = w.add(r * row_bytes);
            (
                p.cast::<u16>().read_unaligned(),
                _mm_loadu_si128(p.add(2).cast()),
            )
        };
        let wq = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
            _mm256_set1_epi8(0x0F),
        );
        let dw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
        for t in 0..T {
            // SAFETY: the block of activation row `t` lies inside the caller's rows.
            let (a, seed, da) = unsafe {
                (
                    _mm256_loadu_si256(qs.add(t * k).cast()),
                    _mm256_loadu_si256(offsets.add(t * k / GROUP).cast()),
                    *scales.add(t * blocks),
                )
            };
            let dot = _mm256_cvtepi32_ps(dot_avx512vnni(seed, wq, a));
            out[r][t] = hsum(dot) * dw * da;
        }
    }
    out
}

/// Dot products of `R` weight rows (the start of `w`) with activation rows `t0..t0 + T`:
/// `out[r][t]`. Panics if the slices are too short or `tier` is not a SIMD tier this CPU
/// runs (callers check [`Tier::is_available`] once per matmul).
pub(crate) fn tile<const R: usize, const T: usize>(
    tier: Tier,
    w: &[u8],
    row_bytes: usize,
    acts: &QuantizedRows,
    t0: usize,
) -> [[f32; T]; R] {
    let k = acts.k;
    assert!(
        k.is_multiple_of(Q4_0_BLOCK_VALUES)
            && row_bytes == k / Q4_0_BLOCK_VALUES * Q4_0_BLOCK_BYTES
    );
    assert!(w.len() >= R * row_bytes && (t0 + T) * k <= acts.qs.len());
    assert!(acts.offsets.len() * GROUP == acts.qs.len());
    assert!(acts.scales.len() * Q4_0_BLOCK_VALUES == acts.qs.len());
    assert!(tier.is_available(), "{tier:?} is not available on this CPU");
    let qs = acts.qs[t0 * k..].as_ptr();
    let offsets = acts.offsets[t0 * k / GROUP..].as_ptr();
    let scales = acts.scales[t0 * k / Q4_0_BLOCK_VALUES..].as_ptr();
    let w = w.as_ptr();
    // SAFETY: the asserts above bound every pointer the kernel reads (R rows of weights,
    // T rows of activations from t0); the tier's CPU features were detected by the caller.
    unsafe {
        match tier {
            Tier::Avx512Vnni => tile_avx512vnni::<R, T>(w, row_bytes, qs, offsets, scales, k),
            Tier::AvxVnni => tile_avxvnni::<R, T>(w, row_bytes, qs, offsets, scales, k),
            Tier::Avx2 => tile_avx2::<R, T>(w, row_bytes, qs, offsets, scales, k),
            Tier::Scalar => unreachable!("the scalar tier has no SIMD tile"),
        }
    }
}
