//! x86_64 tiles for [`super::Q8_0Matrix`]: `G` row groups (16 rows each) × `T`
//! activation rows per call, so each weight chunk is loaded once for `T` activation rows
//! and each broadcast activation word once for `G` groups.
//!
//! Per block, i32 lanes (one per weight row) sum 8 chunk products, then are scaled by
//! `d_w * d_a` into f32 accumulators. The VNNI tiers multiply the stored `q + 128` bytes
//! and start each block's lanes at `-128 * Σ a`; AVX2 has no u8 × i8 dot product that
//! cannot saturate at these magnitudes, so it restores `q` and uses `|q|` × `sign(a, q)`.

use std::arch::x86_64::*;
use std::ops::Range;

use super::q8_0::{Chunk, BLOCK_CHUNKS, GROUP_ROWS, LANE_VALUES, Q8_0_BLOCK_VALUES};
use super::q8_0_acts::Q8Activations;
use super::tier::Tier;

/// Outputs of one tile: `[group][activation row][row in group]`.
type TileOut<const G: usize, const T: usize> = [[[f32; GROUP_ROWS]; T]; G];

/// Where a tile reads: the first group's chunks and scales, the first activation row.
#[derive(Clone, Copy)]
struct TilePtrs {
    chunks: *const Chunk,
    /// Chunks (and, times 2, scales) between one group and the next.
    group_chunks: usize,
    scales: *const u16,
    qs: *const i8,
    seeds: *const i32,
    act_scales: *const f32,
    k: usize,
}

impl TilePtrs {
    fn blocks(&self) -> usize {
        self.k / Q8_0_BLOCK_VALUES
    }
}

/// The 4 activation bytes `t` multiplies by chunk `c` of block `b`, in every i32 lane.
///
/// # Safety
/// Activation row `t` must hold block `b`.
#[inline(always)]
unsafe fn act_word(p: &TilePtrs, t: usize, b: usize, c: usize) -> i32 {
    // SAFETY: in bounds per the caller; the read is unaligned.
    unsafe {
        p.qs.add(t * p.k + b * Q8_0_BLOCK_VALUES + c * LANE_VALUES)
            .cast::<i32>()
            .read_unaligned()
    }
}

/// The 512-bit tile: one register per row group and activation row.
///
/// # Safety
/// The CPU must have AVX512-VNNI (and what [`Tier::Avx512Vnni`] checks); `p` must point at
/// `G` groups of `k / 32` blocks and `T` activation rows of `k` values.
// Index loops over the const-size tile arrays read like the math they do.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_avx512vnni<const G: usize, const T: usize>(p: TilePtrs) -> TileOut<G, T> {
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    for b in 0..p.blocks() {
        let mut dots = [[_mm512_setzero_si512(); T]; G];
        for t in 0..T {
            // SAFETY: row `t` has `k / 32` seeds.
            let seed = _mm512_set1_epi32(unsafe { *p.seeds.add(t * p.blocks() + b) });
            for g in 0..G {
                dots[g][t] = seed;
            }
        }
        for c in 0..BLOCK_CHUNKS {
            let mut w = [_mm512_setzero_si512(); G];
            for g in 0..G {
                // SAFETY: chunk `c` of block `b` of group `g` is inside the caller's groups;
                // chunks are 64-byte aligned.
                w[g] = unsafe {
                    _mm512_load_si512(
                        p.chunks
                            .add(g * p.group_chunks + b * BLOCK_CHUNKS + c)
                            .cast(),
                    )
                };
            }
            for t in 0..T {
                // SAFETY: row `t` holds block `b`.
                let a = _mm512_set1_epi32(unsafe { act_word(&p, t, b, c) });
                for g in 0..G {
                    dots[g][t] = _mm512_dpbusd_epi32(dots[g][t], w[g], a);
                }
            }
        }
        for g in 0..G {
            // SAFETY: 16 scales per group and block, inside the caller's groups.
            let dw = _mm512_cvtph_ps(unsafe {
                _mm256_loadu_si256(p.scales.add(2 * g * p.group_chunks + b * GROUP_ROWS).cast())
            });
            for t in 0..T {
                // SAFETY: row `t` has `k / 32` scales.
                let da = _mm512_set1_ps(unsafe { *p.act_scales.add(t * p.blocks() + b) });
                let scale = _mm512_mul_ps(dw, da);
                acc[g][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[g][t]), scale, acc[g][t]);
            }
        }
    }
    let mut out = [[[0f32; GROUP_ROWS]; T]; G];
    for g in 0..G {
        for t in 0..T {
            // SAFETY: `out[g][t]` holds 16 floats.
            unsafe { _mm512_storeu_ps(out[g][t].as_mut_ptr(), acc[g][t]) };
        }
    }
    out
}

#[target_feature(enable = "avx2,avxvnni")]
#[inline]
fn dot_avxvnni(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, w, a)
}

/// `acc + Σ q·a` per i32 lane with `w` the stored `q + 128`, without VNNI: `|q|` (≤ 128)
/// times `sign(a, q)` (|a| ≤ 127) sums pairs within an i16.
#[target_feature(enable = "avx2")]
#[inline]
fn dot_avx2(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
    let q = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
    let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(a, q));
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

macro_rules! tile_256 {
    ($name:ident, $features:literal, $dot:ident, $seeded:literal) => {
        /// A 256-bit tile: each row group is two registers of 8 rows.
        ///
        /// # Safety
        /// The CPU must have `$features`; `p` as for [`tile_avx512vnni`].
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        unsafe fn $name<const G: usize, const T: usize>(p: TilePtrs) -> TileOut<G, T> {
            let mut acc = [[[_mm256_setzero_ps(); 2]; T]; G];
            for b in 0..p.blocks() {
                let mut dots = [[[_mm256_setzero_si256(); 2]; T]; G];
                if $seeded {
                    for t in 0..T {
                        // SAFETY: row `t` has `k / 32` seeds.
                        let seed = _mm256_set1_epi32(unsafe { *p.seeds.add(t * p.blocks() + b) });
                        for g in 0..G {
                            dots[g][t] = [seed; 2];
                        }
                    }
                }
                for c in 0..BLOCK_CHUNKS {
                    let mut w = [[_mm256_setzero_si256(); 2]; G];
                    for g in 0..G {
                        // SAFETY: as in the 512-bit tile; both halves are 32-byte aligned.
                        let chunk = unsafe {
                            p.chunks
                                .add(g * p.group_chunks + b * BLOCK_CHUNKS + c)
                                .cast::<__m256i>()
                        };
                        // SAFETY: the chunk's two 32-byte halves.
                        w[g] =
                            unsafe { [_mm256_load_si256(chunk), _mm256_load_si256(chunk.add(1))] };
                    }
                    for t in 0..T {
                        // SAFETY: row `t` holds block `b`.
                        let a = _mm256_set1_epi32(unsafe { act_word(&p, t, b, c) });
                        for g in 0..G {
                            for h in 0..2 {
                                dots[g][t][h] = $dot(dots[g][t][h], w[g][h], a);
                            }
                        }
                    }
                }
                for g in 0..G {
                    // SAFETY: 16 scales per group and block, inside the caller's groups.
                    let dw = unsafe {
                        let s = p.scales.add(2 * g * p.group_chunks + b * GROUP_ROWS);
                        [
                            _mm256_cvtph_ps(_mm_loadu_si128(s.cast())),
                            _mm256_cvtph_ps(_mm_loadu_si128(s.add(8).cast())),
                        ]
                    };
                    for t in 0..T {
                        // SAFETY: row `t` has `k / 32` scales.
                        let da = _mm256_set1_ps(unsafe { *p.act_scales.add(t * p.blocks() + b) });
                        for h in 0..2 {
                            let scale = _mm256_mul_ps(dw[h], da);
                            let dot = _mm256_cvtepi32_ps(dots[g][t][h]);
                            acc[g][t][h] = _mm256_fmadd_ps(dot, scale, acc[g][t][h]);
                        }
                    }
                }
            }
            let mut out = [[[0f32; GROUP_ROWS]; T]; G];
            for g in 0..G {
                for t in 0..T {
                    for h in 0..2 {
                        // SAFETY: 8 floats at offset `8h` of a 16-float row.
                        unsafe { _mm256_storeu_ps(out[g][t][8 * h..].as_mut_ptr(), acc[g][t][h]) };
                    }
                }
            }
            out
        }
    };
}

tile_256!(tile_avxvnni, "avx2,fma,f16c,avxvnni", dot_avxvnni, true);
tile_256!(tile_avx2, "avx2,fma,f16c", dot_avx2, false);

/// The largest tile (row groups, activation rows) each tier uses: VEX tiers have 16
/// vector registers, AVX-512 has 32.
fn max_tile(tier: Tier) -> (usize, usize) {
    match tier {
        Tier::Avx512Vnni => (2, 6),
        Tier::AvxVnni => (1, 3),
        _ => (1, 2),
    }
}

/// Runs the `G x T` tile of `tier` and hands its rows to `emit`.
///
/// # Safety
/// As for the tile functions; `tier` must be a SIMD tier this CPU runs.
unsafe fn run<const G: usize, const T: usize>(
    tier: Tier,
    p: TilePtrs,
    t0: usize,
    g0: usize,
    emit: &mut dyn FnMut(usize, usize, &[f32]),
) {
    // SAFETY: forwarded from the caller.
    let out: TileOut<G, T> = unsafe {
        match tier {
            Tier::Avx512Vnni => tile_avx512vnni::<G, T>(p),
            Tier::AvxVnni => tile_avxvnni::<G, T>(p),
            Tier::Avx2 => tile_avx2::<G, T>(p),
            Tier::Scalar => unreachable!("the scalar tier has no SIMD tile"),
        }
    };
    for (g, rows) in out.iter().enumerate() {
        for (t, values) in rows.iter().enumerate() {
            emit(t0 + t, g0 + g, values);
        }
    }
}

/// Every tile over the row groups in `chunks` / `scales` and activation rows `tokens`:
/// `emit(t, g, values)` gets the 16 outputs of group `g` (counted from the first one
/// given) for activation row `t`. Panics if the slices disagree with `acts` or `tier` is
/// not a SIMD tier this CPU runs (callers check [`Tier::is_available`] once per matmul).
pub(crate) fn tiles(
    tier: Tier,
    chunks: &[Chunk],
    scales: &[u16],
    acts: &Q8Activations,
    tokens: Range<usize>,
    emit: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let k = acts.k;
    let blocks = k / Q8_0_BLOCK_VALUES;
    let group_chunks = blocks * BLOCK_CHUNKS;
    assert!(k.is_multiple_of(Q8_0_BLOCK_VALUES) && group_chunks > 0);
    assert!(chunks.len().is_multiple_of(group_chunks));
    let groups = chunks.len() / group_chunks;
    assert!(scales.len() == groups * blocks * GROUP_ROWS);
    assert!(tokens.end * k <= acts.qs.len());
    assert!(acts.scales.len() * Q8_0_BLOCK_VALUES == acts.qs.len());
    assert!(acts.seeds.len() == acts.scales.len());
    assert!(tier.is_available(), "{tier:?} is not available on this CPU");
    let (max_g, max_t) = max_tile(tier);
    assert!(
        max_g <= 2 && max_t <= 6,
        "no tile instantiated for {max_g}x{max_t}"
    );
    for t0 in tokens.clone().step_by(max_t) {
        let nt = max_t.min(tokens.end - t0);
        for g0 in (0..groups).step_by(max_g) {
            let ng = max_g.min(groups - g0);
            let p = TilePtrs {
                chunks: chunks[g0 * group_chunks..].as_ptr(),
                group_chunks,
                scales: scales[g0 * blocks * GROUP_ROWS..].as_ptr(),
                qs: acts.qs[t0 * k..].as_ptr(),
                seeds: acts.seeds[t0 * blocks..].as_ptr(),
                act_scales: acts.scales[t0 * blocks..].as_ptr(),
                k,
            };
            let f = match (ng, nt) {
                (1, 1) => run::<1, 1>,
                (1, 2) => run::<1, 2>,
                (1, 3) => run::<1, 3>,
                (1, 4) => run::<1, 4>,
                (1, 5) => run::<1, 5>,
                (1, _) => run::<1, 6>, // nt ≤ 6, checked above
                (_, 1) => run::<2, 1>,
                (_, 2) => run::<2, 2>,
                (_, 3) => run::<2, 3>,
                (_, 4) => run::<2, 4>,
                (_, 5) => run::<2, 5>,
                _ => run::<2, 6>,
            };
            // SAFETY: the asserts bound every pointer (`ng` groups from `g0`, `nt`
            // activation rows from `t0`, each tile size at most `max_tile`); the tier's
            // CPU features were detected.
            unsafe { f(tier, p, t0, g0, emit) };
        }
    }
}
