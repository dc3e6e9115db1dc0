//! x86_64 tiles for [`super::Interleaved`] matrices: `G` row groups (16 rows each) × `T`
//! activation rows per call, so each weight chunk is loaded (and, for Q4_0, split into
//! nibbles) once for `T` activation rows and each broadcast activation word once for `G`
//! groups.
//!
//! Per block, i32 lanes (one per weight row) sum the chunk products (Q6_K: one sum per
//! half block), then are scaled by `d_w * d_a` into f32 accumulators. The VNNI tiers
//! multiply the stored unsigned values and start each block's lanes at `-offset * Σ a`.
//! AVX2 multiplies with `vpmaddubsw`, whose i16 pair sums hold 4- and 6-bit values (≤ 63)
//! but not Q8_0's `q + 128`, so for Q8_0 it restores `q` and uses `|q|` × `sign(a, q)`,
//! unseeded.

use std::arch::x86_64::*;
use std::ops::Range;

use super::activations::Q8Activations;
use super::interleaved::{
    Chunk, Interleaved, BLOCK_VALUES, BLOCK_WORDS, GROUP_ROWS, LANE_VALUES, Q6K_HALF_CHUNKS,
    SUPER_BLOCKS,
};
use super::tier::Tier;

/// Outputs of one tile: `[group][activation row][row in group]`.
type TileOut<const G: usize, const T: usize> = [[[f32; GROUP_ROWS]; T]; G];

/// How far ahead of the chunk it multiplies a single-row (decode) tile asks for weights:
/// each group is a stream of its own, too short for the hardware prefetcher to reach
/// full speed on.
const PREFETCH_CHUNKS: usize = 16;

/// Where a tile reads: the first group's chunks and scales, the first activation row.
#[derive(Clone, Copy)]
struct TilePtrs {
    chunks: *const Chunk,
    /// Chunks between one group and the next.
    group_chunks: usize,
    scales: *const u16,
    /// `scales` entries between one group and the next.
    group_scales: usize,
    qs: *const i8,
    sums: *const i32,
    low_sums: *const i32,
    act_scales: *const f32,
    k: usize,
}

impl TilePtrs {
    fn blocks(&self) -> usize {
        self.k / BLOCK_VALUES
    }

    /// Block `b`'s 16 scale entries of group `g`.
    ///
    /// # Safety
    /// Group `g` must be inside the tile's groups.
    #[inline(always)]
    unsafe fn scales(&self, g: usize, b: usize) -> *const u16 {
        // SAFETY: per the caller; each group's entries start with 16 per block.
        unsafe { self.scales.add(g * self.group_scales + b * GROUP_ROWS) }
    }

    /// The 16 f16 `d` (then Q4_K's 16 f16 `dmin`) of the K-quant super-block holding
    /// block `b` of group `g`.
    ///
    /// # Safety
    /// Group `g` must be inside the tile's groups, and be a K-quant group.
    #[inline(always)]
    unsafe fn super_scales<const BITS: usize, const MINS: bool>(
        &self,
        g: usize,
        b: usize,
    ) -> *const u16 {
        let at = self.blocks() * GROUP_ROWS + Interleaved::<BITS, MINS>::shared_at(b);
        // SAFETY: per the caller; K-quant groups end with their super-blocks' entries.
        unsafe { self.scales.add(g * self.group_scales + at) }
    }

    /// Block `b`'s chunk `c` of group `g`.
    ///
    /// # Safety
    /// Group `g` must be inside the tile's groups.
    #[inline(always)]
    unsafe fn chunk<const BITS: usize, const MINS: bool>(
        &self,
        g: usize,
        b: usize,
        c: usize,
    ) -> *const Chunk {
        let at = g * self.group_chunks + b * Interleaved::<BITS, MINS>::BLOCK_CHUNKS + c;
        // SAFETY: per the caller.
        unsafe { self.chunks.add(at) }
    }

    /// The seeds that undo the weights' offset in block `b` of activation row `t`: per
    /// half block for Q6_K, else the whole block's in the first.
    ///
    /// # Safety
    /// Activation row `t` must hold block `b`.
    #[inline(always)]
    unsafe fn seeds<const BITS: usize, const MINS: bool>(&self, t: usize, b: usize) -> [i32; 2] {
        let offset = Interleaved::<BITS, MINS>::OFFSET;
        // SAFETY: per the caller.
        let sum = unsafe { self.sum(t, b) };
        if Interleaved::<BITS, MINS>::SPLIT {
            // SAFETY: as above; low sums are laid out as the sums.
            let low = unsafe { *self.low_sums.add(t * self.blocks() + b) };
            [-offset * low, -offset * (sum - low)]
        } else {
            [-offset * sum, 0]
        }
    }

    /// The sum of activation row `t`'s block `b`.
    ///
    /// # Safety
    /// Activation row `t` must hold block `b`.
    #[inline(always)]
    unsafe fn sum(&self, t: usize, b: usize) -> i32 {
        // SAFETY: per the caller.
        unsafe { *self.sums.add(t * self.blocks() + b) }
    }

    /// The scale of activation row `t`'s block `b`.
    ///
    /// # Safety
    /// Activation row `t` must hold block `b`.
    #[inline(always)]
    unsafe fn act_scale(&self, t: usize, b: usize) -> f32 {
        // SAFETY: per the caller.
        unsafe { *self.act_scales.add(t * self.blocks() + b) }
    }

    /// The 4 activation bytes of word `w` of block `b` of row `t`, in every i32 lane.
    ///
    /// # Safety
    /// Activation row `t` must hold block `b`.
    #[inline(always)]
    unsafe fn word(&self, t: usize, b: usize, w: usize) -> i32 {
        // SAFETY: in bounds per the caller; the read is unaligned.
        unsafe {
            self.qs
                .add(t * self.k + b * BLOCK_VALUES + w * LANE_VALUES)
                .cast::<i32>()
                .read_unaligned()
        }
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
unsafe fn tile_avx512vnni<const BITS: usize, const MINS: bool, const G: usize, const T: usize>(
    p: TilePtrs,
) -> TileOut<G, T> {
    let nibble = _mm512_set1_epi8(0x0F);
    let split = Interleaved::<BITS, MINS>::SPLIT;
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    for b in 0..p.blocks() {
        // Per half block for Q6_K, else all in the first.
        let mut dots = [[[_mm512_setzero_si512(); T]; G]; 2];
        for t in 0..T {
            // SAFETY: row `t` has `k / 32` sums.
            let seeds = unsafe { p.seeds::<BITS, MINS>(t, b) };
            for (dots, seed) in dots.iter_mut().zip(seeds) {
                dots.iter_mut().for_each(|d| d[t] = _mm512_set1_epi32(seed));
            }
        }
        if BITS == 6 {
            for half in 0..2 {
                let mut stored = [[_mm512_setzero_si512(); Q6K_HALF_CHUNKS]; G];
                for g in 0..G {
                    for (i, stored) in stored[g].iter_mut().enumerate() {
                        // SAFETY: chunk `3 half + i` of block `b` of group `g`, inside the
                        // caller's groups, 64-byte aligned.
                        let chunk =
                            unsafe { p.chunk::<BITS, MINS>(g, b, Q6K_HALF_CHUNKS * half + i) };
                        if T == 1 {
                            _mm_prefetch::<_MM_HINT_T0>(chunk.wrapping_add(PREFETCH_CHUNKS).cast());
                        }
                        // SAFETY: as above.
                        *stored = unsafe { _mm512_load_si512(chunk.cast()) };
                    }
                }
                for i in 0..=Q6K_HALF_CHUNKS {
                    let mut w = [_mm512_setzero_si512(); G];
                    for g in 0..G {
                        w[g] = q6_k_word_512(&stored[g], i);
                    }
                    let word = half * BLOCK_WORDS / 2 + i;
                    for t in 0..T {
                        // SAFETY: row `t` holds block `b`.
                        let a = _mm512_set1_epi32(unsafe { p.word(t, b, word) });
                        for g in 0..G {
                            dots[half][g][t] = _mm512_dpbusd_epi32(dots[half][g][t], w[g], a);
                        }
                    }
                }
            }
        }
        for c in 0..if BITS == 6 { 0 } else { BITS } {
            let mut stored = [_mm512_setzero_si512(); G];
            for g in 0..G {
                // SAFETY: chunk `c` of block `b` of group `g` is inside the caller's groups;
                // chunks are 64-byte aligned.
                let chunk = unsafe { p.chunk::<BITS, MINS>(g, b, c) };
                if T == 1 {
                    // A prefetch never faults, even past the end of the weights.
                    _mm_prefetch::<_MM_HINT_T0>(chunk.wrapping_add(PREFETCH_CHUNKS).cast());
                }
                // SAFETY: as above.
                stored[g] = unsafe { _mm512_load_si512(chunk.cast()) };
            }
            for part in 0..Interleaved::<BITS, MINS>::PER_BYTE {
                let mut w = stored;
                if BITS != 8 {
                    for g in 0..G {
                        let shifted = _mm512_srli_epi16::<4>(stored[g]);
                        let bits = if part == 0 { stored[g] } else { shifted };
                        w[g] = _mm512_and_si512(bits, nibble);
                    }
                }
                let word = Interleaved::<BITS, MINS>::word(c, part);
                for t in 0..T {
                    // SAFETY: row `t` holds block `b`.
                    let a = _mm512_set1_epi32(unsafe { p.word(t, b, word) });
                    for g in 0..G {
                        dots[0][g][t] = _mm512_dpbusd_epi32(dots[0][g][t], w[g], a);
                    }
                }
            }
        }
        for g in 0..G {
            // SAFETY: the group's scale entries of block `b`, inside the caller's groups.
            let entries = unsafe { _mm256_loadu_si256(p.scales(g, b).cast()) };
            // Per half block (the second only for Q6_K): `d_w`; with `MINS`, `dmin * min`.
            let (dw, mins) = if MINS || split {
                // SAFETY: as above; K-quant groups hold their super-blocks' `d` (and
                // `dmin`).
                let s = unsafe { p.super_scales::<BITS, MINS>(g, b) };
                // SAFETY: as above.
                let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s.cast()) });
                let wide = _mm512_cvtepu16_epi32(entries);
                if split {
                    let low = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(wide));
                    let high = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<16>(wide));
                    let dw = [low, high].map(|s| _mm512_mul_ps(d, _mm512_cvtepi32_ps(s)));
                    (dw, _mm512_setzero_ps())
                } else {
                    // SAFETY: as above; `dmin` follows `d`.
                    let dmin =
                        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s.add(GROUP_ROWS).cast()) });
                    let scale = _mm512_and_si512(wide, _mm512_set1_epi32(0xFF));
                    let min = _mm512_srli_epi32::<8>(wide);
                    (
                        [_mm512_mul_ps(d, _mm512_cvtepi32_ps(scale)); 2],
                        _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(min)),
                    )
                }
            } else {
                ([_mm512_cvtph_ps(entries); 2], _mm512_setzero_ps())
            };
            for t in 0..T {
                // SAFETY: row `t` has `k / 32` scales and sums.
                let (da, sum) = unsafe { (p.act_scale(t, b), p.sum(t, b)) };
                let da = _mm512_set1_ps(da);
                for h in 0..if split { 2 } else { 1 } {
                    let dot = _mm512_cvtepi32_ps(dots[h][g][t]);
                    acc[g][t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(dw[h], da), acc[g][t]);
                }
                if MINS {
                    let min_scale = _mm512_mul_ps(da, _mm512_set1_ps(sum as f32));
                    acc[g][t] = _mm512_fnmadd_ps(mins, min_scale, acc[g][t]);
                }
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

/// Word `i` (`0..=3`) of a Q6_K half block from its 3 chunks: the low 6 bits of chunk
/// `i`, or for word 3 the top bit pairs of all three put together. 16-bit shifts bring
/// bits over from the next byte only where the masks clear them.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn q6_k_word_512(chunks: &[__m512i; Q6K_HALF_CHUNKS], i: usize) -> __m512i {
    let bits = |v: i8| _mm512_set1_epi8(v);
    if i < Q6K_HALF_CHUNKS {
        return _mm512_and_si512(chunks[i], bits(0x3F));
    }
    let pair0 = _mm512_and_si512(_mm512_srli_epi16::<6>(chunks[0]), bits(0x03));
    let pair1 = _mm512_and_si512(_mm512_srli_epi16::<4>(chunks[1]), bits(0x0C));
    let pair2 = _mm512_and_si512(_mm512_srli_epi16::<2>(chunks[2]), bits(0x30));
    _mm512_or_si512(_mm512_or_si512(pair0, pair1), pair2)
}

/// [`q6_k_word_512`] on 256-bit halves.
#[target_feature(enable = "avx2")]
#[inline]
fn q6_k_word_256(chunks: &[__m256i; Q6K_HALF_CHUNKS], i: usize) -> __m256i {
    let bits = |v: i8| _mm256_set1_epi8(v);
    if i < Q6K_HALF_CHUNKS {
        return _mm256_and_si256(chunks[i], bits(0x3F));
    }
    let pair0 = _mm256_and_si256(_mm256_srli_epi16::<6>(chunks[0]), bits(0x03));
    let pair1 = _mm256_and_si256(_mm256_srli_epi16::<4>(chunks[1]), bits(0x0C));
    let pair2 = _mm256_and_si256(_mm256_srli_epi16::<2>(chunks[2]), bits(0x30));
    _mm256_or_si256(_mm256_or_si256(pair0, pair1), pair2)
}

#[target_feature(enable = "avx2,avxvnni")]
#[inline]
fn dot_avxvnni<const BITS: usize>(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, w, a)
}

/// `acc + Σ w·a` per i32 lane without VNNI. Stored 4- and 6-bit values (≤ 63) times `a`
/// (|a| ≤ 128) sum pairs within an i16; Q8_0's `q + 128` would not, so its `q` is
/// restored and multiplied as `|q|` (≤ 128) times `sign(a, q)`.
#[target_feature(enable = "avx2")]
#[inline]
fn dot_avx2<const BITS: usize>(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
    let pairs = if BITS != 8 {
        _mm256_maddubs_epi16(w, a)
    } else {
        let q = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
        _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(a, q))
    };
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// Whether a tier's dot products run on the stored (offset) values and need seeds.
const fn vnni_seeded(_bits: usize) -> bool {
    true
}

const fn avx2_seeded(bits: usize) -> bool {
    bits != 8
}

macro_rules! tile_256 {
    ($name:ident, $features:literal, $dot:ident, $seeded:ident) => {
        /// A 256-bit tile: each row group is two registers of 8 rows.
        ///
        /// # Safety
        /// The CPU must have `$features`; `p` as for [`tile_avx512vnni`].
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        unsafe fn $name<const BITS: usize, const MINS: bool, const G: usize, const T: usize>(
            p: TilePtrs,
        ) -> TileOut<G, T> {
            let nibble = _mm256_set1_epi8(0x0F);
            let split = Interleaved::<BITS, MINS>::SPLIT;
            let mut acc = [[[_mm256_setzero_ps(); 2]; T]; G];
            for b in 0..p.blocks() {
                // Per half block for Q6_K, else all in the first; two registers a group.
                let mut dots = [[[[_mm256_setzero_si256(); 2]; T]; G]; 2];
                if $seeded(BITS) {
                    for t in 0..T {
                        // SAFETY: row `t` has `k / 32` sums.
                        let seeds = unsafe { p.seeds::<BITS, MINS>(t, b) };
                        for (dots, seed) in dots.iter_mut().zip(seeds) {
                            dots.iter_mut()
                                .for_each(|d| d[t] = [_mm256_set1_epi32(seed); 2]);
                        }
                    }
                }
                if BITS == 6 {
                    for half in 0..2 {
                        // Per group and register half: the half block's 3 chunks.
                        let mut stored = [[[_mm256_setzero_si256(); Q6K_HALF_CHUNKS]; 2]; G];
                        for g in 0..G {
                            for i in 0..Q6K_HALF_CHUNKS {
                                // SAFETY: chunk `3 half + i` of block `b` of group `g`,
                                // inside the caller's groups; both halves 32-byte aligned.
                                let chunk = unsafe {
                                    p.chunk::<BITS, MINS>(g, b, Q6K_HALF_CHUNKS * half + i)
                                        .cast::<__m256i>()
                                };
                                for h in 0..2 {
                                    // SAFETY: as above.
                                    stored[g][h][i] = unsafe { _mm256_load_si256(chunk.add(h)) };
                                }
                            }
                        }
                        for i in 0..=Q6K_HALF_CHUNKS {
                            let mut w = [[_mm256_setzero_si256(); 2]; G];
                            for g in 0..G {
                                for h in 0..2 {
                                    w[g][h] = q6_k_word_256(&stored[g][h], i);
                                }
                            }
                            let word = half * BLOCK_WORDS / 2 + i;
                            for t in 0..T {
                                // SAFETY: row `t` holds block `b`.
                                let a = _mm256_set1_epi32(unsafe { p.word(t, b, word) });
                                for g in 0..G {
                                    for h in 0..2 {
                                        let dot = &mut dots[half][g][t][h];
                                        *dot = $dot::<BITS>(*dot, w[g][h], a);
                                    }
                                }
                            }
                        }
                    }
                }
                for c in 0..if BITS == 6 { 0 } else { BITS } {
                    let mut stored = [[_mm256_setzero_si256(); 2]; G];
                    for g in 0..G {
                        // SAFETY: as in the 512-bit tile; both halves are 32-byte aligned.
                        let chunk = unsafe { p.chunk::<BITS, MINS>(g, b, c).cast::<__m256i>() };
                        // SAFETY: the chunk's two 32-byte halves.
                        stored[g] =
                            unsafe { [_mm256_load_si256(chunk), _mm256_load_si256(chunk.add(1))] };
                    }
                    for part in 0..Interleaved::<BITS, MINS>::PER_BYTE {
                        let mut w = stored;
                        if BITS != 8 {
                            for g in 0..G {
                                for h in 0..2 {
                                    let shifted = _mm256_srli_epi16::<4>(stored[g][h]);
                                    let bits = if part == 0 { stored[g][h] } else { shifted };
                                    w[g][h] = _mm256_and_si256(bits, nibble);
                                }
                            }
                        }
                        let word = Interleaved::<BITS, MINS>::word(c, part);
                        for t in 0..T {
                            // SAFETY: row `t` holds block `b`.
                            let a = _mm256_set1_epi32(unsafe { p.word(t, b, word) });
                            for g in 0..G {
                                for h in 0..2 {
                                    dots[0][g][t][h] = $dot::<BITS>(dots[0][g][t][h], w[g][h], a);
                                }
                            }
                        }
                    }
                }
                for g in 0..G {
                    // Per half block and register: `d_w`; with `MINS`, `dmin * min`.
                    let mut dw = [[_mm256_setzero_ps(); 2]; 2];
                    let mut mins = [_mm256_setzero_ps(); 2];
                    for h in 0..2 {
                        // SAFETY: the group's scale entries of block `b` (16 in two
                        // halves), inside the caller's groups.
                        let entries = unsafe { _mm_loadu_si128(p.scales(g, b).add(8 * h).cast()) };
                        if MINS || split {
                            // SAFETY: K-quant groups hold their super-blocks' `d` (and
                            // `dmin`).
                            let s = unsafe { p.super_scales::<BITS, MINS>(g, b).add(8 * h) };
                            // SAFETY: as above.
                            let d = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.cast()) });
                            let wide = _mm256_cvtepu16_epi32(entries);
                            if split {
                                let low = _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(wide));
                                let high = _mm256_srai_epi32::<24>(_mm256_slli_epi32::<16>(wide));
                                dw[0][h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(low));
                                dw[1][h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(high));
                            } else {
                                // SAFETY: as above; `dmin` follows `d`.
                                let dmin = _mm256_cvtph_ps(unsafe {
                                    _mm_loadu_si128(s.add(GROUP_ROWS).cast())
                                });
                                let scale = _mm256_and_si256(wide, _mm256_set1_epi32(0xFF));
                                let min = _mm256_srli_epi32::<8>(wide);
                                dw[0][h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(scale));
                                mins[h] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(min));
                            }
                        } else {
                            dw[0][h] = _mm256_cvtph_ps(entries);
                        }
                    }
                    for t in 0..T {
                        // SAFETY: row `t` has `k / 32` scales and sums.
                        let (da, sum) = unsafe { (p.act_scale(t, b), p.sum(t, b)) };
                        let da = _mm256_set1_ps(da);
                        for h in 0..2 {
                            for half in 0..if split { 2 } else { 1 } {
                                let scale = _mm256_mul_ps(dw[half][h], da);
                                let dot = _mm256_cvtepi32_ps(dots[half][g][t][h]);
                                acc[g][t][h] = _mm256_fmadd_ps(dot, scale, acc[g][t][h]);
                            }
                            if MINS {
                                let min_scale = _mm256_mul_ps(da, _mm256_set1_ps(sum as f32));
                                acc[g][t][h] = _mm256_fnmadd_ps(mins[h], min_scale, acc[g][t][h]);
                            }
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

tile_256!(
    tile_avxvnni,
    "avx2,fma,f16c,avxvnni",
    dot_avxvnni,
    vnni_seeded
);
tile_256!(tile_avx2, "avx2,fma,f16c", dot_avx2, avx2_seeded);

/// The largest tile (row groups, activation rows) each tier uses: VEX tiers have 16
/// vector registers, AVX-512 has 32. A single activation row (decode) is bound by
/// memory, and reads it fastest from two groups (two streams of weights and two of
/// scales): four were 6 % slower in Q4_K_M decoding. Q6_K (`split`) needs twice the
/// sums and its top bits, so fewer.
fn max_tile(tier: Tier, tokens: usize, split: bool) -> (usize, usize) {
    match (tier, tokens, split) {
        (Tier::Avx512Vnni, 1, _) => (2, 1),
        (Tier::Avx512Vnni, _, false) => (2, 6),
        (Tier::Avx512Vnni, _, true) => (1, 6),
        (_, 1, false) => (2, 1),
        (_, 1, true) => (1, 1),
        (Tier::AvxVnni, _, false) => (1, 3),
        _ => (1, 2),
    }
}

/// Runs the `G x T` tile of `tier` and hands its rows to `emit`.
///
/// # Safety
/// As for the tile functions; `tier` must be a SIMD tier this CPU runs.
unsafe fn run<const BITS: usize, const MINS: bool, const G: usize, const T: usize>(
    tier: Tier,
    p: TilePtrs,
    t0: usize,
    g0: usize,
    emit: &mut dyn FnMut(usize, usize, &[f32]),
) {
    // SAFETY: forwarded from the caller.
    let out: TileOut<G, T> = unsafe {
        match tier {
            Tier::Avx512Vnni => tile_avx512vnni::<BITS, MINS, G, T>(p),
            Tier::AvxVnni => tile_avxvnni::<BITS, MINS, G, T>(p),
            Tier::Avx2 => tile_avx2::<BITS, MINS, G, T>(p),
            Tier::Scalar => unreachable!("the scalar tier has no SIMD tile"),
        }
    };
    for (g, rows) in out.iter().enumerate() {
        for (t, values) in rows.iter().enumerate() {
            emit(t0 + t, g0 + g, values);
        }
    }
}

type RunFn = unsafe fn(Tier, TilePtrs, usize, usize, &mut dyn FnMut(usize, usize, &[f32]));

/// The tile for `g` (up to 2) groups × `t` (up to 6) activation rows.
fn run_fn<const BITS: usize, const MINS: bool>(g: usize, t: usize) -> RunFn {
    match (g, t) {
        (1, 1) => run::<BITS, MINS, 1, 1>,
        (_, 1) => run::<BITS, MINS, 2, 1>,
        (1, 2) => run::<BITS, MINS, 1, 2>,
        (1, 3) => run::<BITS, MINS, 1, 3>,
        (1, 4) => run::<BITS, MINS, 1, 4>,
        (1, 5) => run::<BITS, MINS, 1, 5>,
        (1, _) => run::<BITS, MINS, 1, 6>,
        (_, 2) => run::<BITS, MINS, 2, 2>,
        (_, 3) => run::<BITS, MINS, 2, 3>,
        (_, 4) => run::<BITS, MINS, 2, 4>,
        (_, 5) => run::<BITS, MINS, 2, 5>,
        _ => run::<BITS, MINS, 2, 6>,
    }
}

/// Every tile over the row groups in `chunks` / `scales` and activation rows `tokens`:
/// `emit(t, g, values)` gets the 16 outputs of group `g` (counted from the first one
/// given) for activation row `t`. Panics if the slices disagree with `acts` or `tier` is
/// not a SIMD tier this CPU runs (callers check [`Tier::is_available`] once per matmul).
pub(crate) fn tiles<const BITS: usize, const MINS: bool>(
    tier: Tier,
    chunks: &[Chunk],
    scales: &[u16],
    acts: &Q8Activations,
    tokens: Range<usize>,
    emit: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let k = acts.k;
    let blocks = k / BLOCK_VALUES;
    let group_chunks = blocks * Interleaved::<BITS, MINS>::BLOCK_CHUNKS;
    assert!(k.is_multiple_of(BLOCK_VALUES) && group_chunks > 0);
    assert!(chunks.len().is_multiple_of(group_chunks));
    let groups = chunks.len() / group_chunks;
    let group_scales = Interleaved::<BITS, MINS>::group_scales(blocks);
    assert!(!(MINS || BITS == 6) || blocks.is_multiple_of(SUPER_BLOCKS));
    assert!(scales.len() == groups * group_scales);
    assert!(tokens.end * k <= acts.qs.len());
    assert!(acts.scales.len() * BLOCK_VALUES == acts.qs.len());
    assert!(acts.sums.len() == acts.scales.len() && acts.low_sums.len() == acts.sums.len());
    assert!(tier.is_available(), "{tier:?} is not available on this CPU");
    let (max_g, max_t) = max_tile(tier, tokens.len(), Interleaved::<BITS, MINS>::SPLIT);
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
                scales: scales[g0 * group_scales..].as_ptr(),
                group_scales,
                qs: acts.qs[t0 * k..].as_ptr(),
                sums: acts.sums[t0 * blocks..].as_ptr(),
                low_sums: acts.low_sums[t0 * blocks..].as_ptr(),
                act_scales: acts.scales[t0 * blocks..].as_ptr(),
                k,
            };
            // SAFETY: the asserts bound every pointer (`ng` groups from `g0`, `nt`
            // activation rows from `t0`, each tile size at most `max_tile`); the tier's
            // CPU features were detected.
            unsafe { run_fn::<BITS, MINS>(ng, nt)(tier, p, t0, g0, emit) };
        }
    }
}
