//! x86_64 Q4_0 × int8 tiles over repacked row groups: `G` groups of four weight rows ×
//! `T` activation rows per call, so each unpacked weight block is reused `T` times and
//! each activation block `4 G` times.
//!
//! A group's block is 64 nibble bytes, 16 per row; byte `j` of a row holds values `j`
//! (low nibble) and `j + 16` (high nibble). Against the activation halves `a[0..16]` and
//! `a[16..32]`, broadcast to every 128-bit lane, two `dpbusd` give each row four i32
//! lanes of partial sums. The lanes are seeded with `-8 * Σ a` ([`QuantizedRows`]'
//! `block_offsets`), so the sums are `Σ (q - 8) * a`, and scaled by `d_w * d_a` into
//! f32 accumulators. One AVX-512 register holds a whole group; 256-bit tiers use two.

use std::arch::x86_64::*;

use super::activations::{QuantizedRows, BLOCK_LANES};
use super::q4_0::{Groups, GROUP_ROWS, NIBBLE_BYTES, Q4_0_BLOCK_VALUES};
use super::tier::Tier;

const GROUP_BYTES: usize = GROUP_ROWS * NIBBLE_BYTES;
/// How far ahead, in blocks of the same group, the decode tile asks for nibbles: each
/// group is a stream of its own (a few KB), too short for the hardware prefetcher to
/// reach full speed on.
const PREFETCH_BLOCKS: usize = 8;

/// Groups × activation rows per tile: AVX-512 has 32 vector registers, VEX tiers 16.
/// A single activation row (decode) spends them on more groups instead.
fn max_tile(tier: Tier, m: usize) -> (usize, usize) {
    match (tier, m) {
        (Tier::Avx512Vnni, 1) => (4, 1),
        (Tier::Avx512Vnni, _) => (2, 4),
        (_, 1) => (2, 1),
        _ => (1, 3),
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

/// Pointers a tile reads, each at its first group or activation row.
#[derive(Clone, Copy)]
struct TilePtrs {
    nibbles: *const u8,
    scales: *const u16,
    blocks: usize,
    qs: *const i8,
    seeds: *const i32,
    act_scales: *const f32,
    k: usize,
}

/// `out[g][t][r]`: the dot product of row `r` of group `g` with activation row `t`.
type TileOut<const G: usize, const T: usize> = [[[f32; GROUP_ROWS]; T]; G];

macro_rules! tile_kernel_256 {
    ($name:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// The CPU must have `$features`; the pointers must cover `G` groups of `blocks`
        /// blocks and `T` activation rows of `k` values, as [`tile`] checks.
        // Index loops over the const-size tile arrays read like the math they do.
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        unsafe fn $name<const G: usize, const T: usize>(p: TilePtrs) -> TileOut<G, T> {
            let low = _mm256_set1_epi8(0x0F);
            let spread = [
                _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0),
                _mm256_set_epi32(3, 3, 3, 3, 2, 2, 2, 2),
            ];
            let mut acc = [[[_mm256_setzero_ps(); 2]; T]; G];
            for b in 0..p.blocks {
                let mut lo = [[_mm256_setzero_si256(); 2]; G];
                let mut hi = [[_mm256_setzero_si256(); 2]; G];
                let mut dw = [[_mm256_setzero_ps(); 2]; G];
                for g in 0..G {
                    let slot = g * p.blocks + b;
                    // SAFETY: block `b` of group `g` lies inside the caller's groups.
                    let (packed, bits) = unsafe {
                        let at = p.nibbles.add(slot * GROUP_BYTES);
                        (
                            [
                                _mm256_loadu_si256(at.cast()),
                                _mm256_loadu_si256(at.add(GROUP_BYTES / 2).cast()),
                            ],
                            _mm_loadl_epi64(p.scales.add(slot * GROUP_ROWS).cast()),
                        )
                    };
                    let d = _mm256_castps128_ps256(_mm_cvtph_ps(bits));
                    for h in 0..2 {
                        lo[g][h] = _mm256_and_si256(packed[h], low);
                        hi[g][h] = _mm256_and_si256(_mm256_srli_epi16(packed[h], 4), low);
                        dw[g][h] = _mm256_permutevar8x32_ps(d, spread[h]);
                    }
                }
                for t in 0..T {
                    // SAFETY: block `b` of activation row `t` lies inside the caller's rows.
                    let (a_lo, a_hi, seed, da) = unsafe {
                        let a = p.qs.add(t * p.k + b * Q4_0_BLOCK_VALUES);
                        let seed = p.seeds.add((t * p.blocks + b) * BLOCK_LANES);
                        (
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(a.cast())),
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                a.add(NIBBLE_BYTES).cast(),
                            )),
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(seed.cast())),
                            _mm256_set1_ps(*p.act_scales.add(t * p.blocks + b)),
                        )
                    };
                    for g in 0..G {
                        for h in 0..2 {
                            let dot = $dot($dot(seed, lo[g][h], a_lo), hi[g][h], a_hi);
                            acc[g][t][h] = _mm256_fmadd_ps(
                                _mm256_cvtepi32_ps(dot),
                                _mm256_mul_ps(dw[g][h], da),
                                acc[g][t][h],
                            );
                        }
                    }
                }
            }
            let mut out = [[[0f32; GROUP_ROWS]; T]; G];
            for g in 0..G {
                for t in 0..T {
                    for h in 0..2 {
                        let mut lanes = [0f32; 8];
                        // SAFETY: `lanes` holds exactly one 256-bit register.
                        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[g][t][h]) };
                        for (r, four) in lanes.chunks_exact(4).enumerate() {
                            out[g][t][2 * h + r] = four.iter().sum();
                        }
                    }
                }
            }
            out
        }
    };
}

tile_kernel_256!(tile_avx2, "avx2,fma,f16c", dot_avx2);
tile_kernel_256!(tile_avxvnni, "avx2,fma,f16c,avxvnni", dot_avxvnni);

/// The AVX512-VNNI tile: one register holds a group's block, four rows in four lanes.
///
/// # Safety
/// As for the 256-bit tiles.
// Index loops over the const-size tile arrays read like the math they do.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_avx512vnni<const G: usize, const T: usize>(p: TilePtrs) -> TileOut<G, T> {
    let low = _mm512_set1_epi8(0x0F);
    let spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    for b in 0..p.blocks {
        let mut lo = [_mm512_setzero_si512(); G];
        let mut hi = [_mm512_setzero_si512(); G];
        let mut dw = [_mm512_setzero_ps(); G];
        for g in 0..G {
            let slot = g * p.blocks + b;
            // SAFETY: block `b` of group `g` lies inside the caller's groups.
            let (packed, bits) = unsafe {
                (
                    _mm512_loadu_si512(p.nibbles.add(slot * GROUP_BYTES).cast()),
                    _mm_loadl_epi64(p.scales.add(slot * GROUP_ROWS).cast()),
                )
            };
            if T == 1 {
                let ahead = p
                    .nibbles
                    .wrapping_add((slot + PREFETCH_BLOCKS) * GROUP_BYTES);
                // A prefetch never faults, even past the end of the weights.
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            lo[g] = _mm512_and_si512(packed, low);
            hi[g] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
            dw[g] = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(bits)));
        }
        for t in 0..T {
            // SAFETY: block `b` of activation row `t` lies inside the caller's rows.
            let (a_lo, a_hi, seed, da) = unsafe {
                let a = p.qs.add(t * p.k + b * Q4_0_BLOCK_VALUES);
                let seed = p.seeds.add((t * p.blocks + b) * BLOCK_LANES);
                (
                    _mm512_broadcast_i32x4(_mm_loadu_si128(a.cast())),
                    _mm512_broadcast_i32x4(_mm_loadu_si128(a.add(NIBBLE_BYTES).cast())),
                    _mm512_broadcast_i32x4(_mm_loadu_si128(seed.cast())),
                    _mm512_set1_ps(*p.act_scales.add(t * p.blocks + b)),
                )
            };
            for g in 0..G {
                let dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(seed, lo[g], a_lo), hi[g], a_hi);
                acc[g][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw[g], da), acc[g][t]);
            }
        }
    }
    let mut out = [[[0f32; GROUP_ROWS]; T]; G];
    for g in 0..G {
        for t in 0..T {
            let mut lanes = [0f32; 16];
            // SAFETY: `lanes` holds exactly one 512-bit register.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[g][t]) };
            for (r, four) in lanes.chunks_exact(4).enumerate() {
                out[g][t][r] = four.iter().sum();
            }
        }
    }
    out
}

/// Dot products of groups `g0..g0 + G` with activation rows `t0..t0 + T`. Panics if the
/// slices are too short or `tier` is not a SIMD tier this CPU runs (callers check
/// [`Tier::is_available`] once per matmul).
fn tile<const G: usize, const T: usize>(
    tier: Tier,
    groups: Groups,
    g0: usize,
    acts: &QuantizedRows,
    t0: usize,
) -> TileOut<G, T> {
    let (k, blocks) = (acts.k, groups.blocks);
    assert_eq!(k, blocks * Q4_0_BLOCK_VALUES);
    assert!(groups.nibbles.len() >= (g0 + G) * blocks * GROUP_BYTES);
    assert!(groups.scales.len() >= (g0 + G) * blocks * GROUP_ROWS);
    assert!((t0 + T) * k <= acts.qs.len());
    assert!(acts.block_offsets.len() * Q4_0_BLOCK_VALUES == acts.qs.len() * BLOCK_LANES);
    assert!(acts.scales.len() * Q4_0_BLOCK_VALUES == acts.qs.len());
    assert!(tier.is_available(), "{tier:?} is not available on this CPU");
    let p = TilePtrs {
        nibbles: groups.nibbles[g0 * blocks * GROUP_BYTES..].as_ptr(),
        scales: groups.scales[g0 * blocks * GROUP_ROWS..].as_ptr(),
        blocks,
        qs: acts.qs[t0 * k..].as_ptr(),
        seeds: acts.block_offsets[t0 * blocks * BLOCK_LANES..].as_ptr(),
        act_scales: acts.scales[t0 * blocks..].as_ptr(),
        k,
    };
    // SAFETY: the asserts above bound every pointer the kernel reads (G groups from g0,
    // T activation rows from t0); the tier's CPU features were detected by the caller.
    unsafe {
        match tier {
            Tier::Avx512Vnni => tile_avx512vnni::<G, T>(p),
            Tier::AvxVnni => tile_avxvnni::<G, T>(p),
            Tier::Avx2 => tile_avx2::<G, T>(p),
            Tier::Scalar => unreachable!("the scalar tier has no SIMD tile"),
        }
    }
}

/// Writes one tile's results into the transposed output (`rows x m`).
fn store<const G: usize, const T: usize>(
    tier: Tier,
    groups: Groups,
    g0: usize,
    acts: &QuantizedRows,
    t0: usize,
    out: &mut [f32],
) {
    let m = acts.rows();
    let tile = tile::<G, T>(tier, groups, g0, acts, t0);
    for (g, per_token) in tile.iter().enumerate() {
        for (t, rows) in per_token.iter().enumerate() {
            for (r, &v) in rows.iter().enumerate() {
                out[((g0 + g) * GROUP_ROWS + r) * m + t0 + t] = v;
            }
        }
    }
}

type StoreFn = fn(Tier, Groups, usize, &QuantizedRows, usize, &mut [f32]);

/// The tile function for `g` groups × `t` activation rows (each 1..=4).
fn store_fn(g: usize, t: usize) -> StoreFn {
    match (g, t) {
        (1, 1) => store::<1, 1>,
        (1, 2) => store::<1, 2>,
        (1, 3) => store::<1, 3>,
        (1, _) => store::<1, 4>,
        (2, 1) => store::<2, 1>,
        (2, 2) => store::<2, 2>,
        (2, 3) => store::<2, 3>,
        (2, _) => store::<2, 4>,
        (3, 1) => store::<3, 1>,
        (3, 2) => store::<3, 2>,
        (3, 3) => store::<3, 3>,
        (3, _) => store::<3, 4>,
        (_, 1) => store::<4, 1>,
        (_, 2) => store::<4, 2>,
        (_, 3) => store::<4, 3>,
        _ => store::<4, 4>,
    }
}

/// `out[r * m + t] = w_r · x_t` for every row of `groups` and every activation row.
pub(crate) fn groups_times_acts(tier: Tier, groups: Groups, acts: &QuantizedRows, out: &mut [f32]) {
    let m = acts.rows();
    let count = groups.scales.len() / (groups.blocks * GROUP_ROWS);
    let (max_g, max_t) = max_tile(tier, m);
    for t0 in (0..m).step_by(max_t) {
        let nt = max_t.min(m - t0);
        for g0 in (0..count).step_by(max_g) {
            let ng = max_g.min(count - g0);
            store_fn(ng, nt)(tier, groups, g0, acts, t0, out);
        }
    }
}
