//! A Q4_K weight matrix times one f32 activation row: the decode step's matvec.
//!
//! Candle runs Q4_K at one row through repacked tiles that store f32 scales and mins
//! (6 bits per weight); this kernel reads GGML's own 4.5-bit blocks, so a decode step
//! moves about a quarter fewer bytes. Prefill (many rows) stays on candle's tiles.

use half::f16;

use super::k_quant::{KQuant, KQuantMatrix, Kernels, K_QUANT_BLOCK_VALUES};
use super::q4_k_scalar;
use super::tier::Tier;

/// Weights per Q4_K super-block.
pub const Q4_K_BLOCK_VALUES: usize = K_QUANT_BLOCK_VALUES;
/// Bytes per Q4_K super-block: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and mins
/// for 8 sub-blocks of 32, then 128 bytes of nibbles. Byte `i` of nibble chunk `j`
/// (32 bytes each) holds value `64j + i` (low nibble) and `64j + 32 + i` (high nibble);
/// value `v` of sub-block `s` is `d * scale[s] * q - dmin * min[s]`.
pub const Q4_K_BLOCK_BYTES: usize = 144;
/// Values per sub-block, each with its own 6-bit scale and min.
pub(crate) const SUB_BLOCK: usize = 32;
pub(crate) const SUB_BLOCKS: usize = Q4_K_BLOCK_VALUES / SUB_BLOCK;
/// Offsets inside a super-block.
pub(crate) const SCALES_AT: usize = 4;
pub(crate) const NIBBLES_AT: usize = 16;

/// The Q4_K block format.
#[derive(Debug, Clone, Copy)]
pub struct Q4K;

/// A Q4_K matrix: [`KQuantMatrix`] over [`Q4K`] blocks.
pub type Q4KMatrix = KQuantMatrix<Q4K>;

impl KQuant for Q4K {
    const NAME: &'static str = "Q4_K";
    const BLOCK_BYTES: usize = Q4_K_BLOCK_BYTES;
}

impl Kernels for Q4K {
    fn quantize(tier: Tier, x: &[f32]) -> Q8KRow {
        let order = if tier == Tier::Avx512Vnni {
            SubBlockOrder::Paired
        } else {
            SubBlockOrder::Natural
        };
        Q8KRow::quantize(x, order, SUB_BLOCK)
    }

    fn rows_dot(tier: Tier, w: &[u8], row_bytes: usize, acts: &Q8KRow, out: &mut [f32]) {
        rows_dot(tier, w, row_bytes, acts, out);
    }
}

/// `out[r] = w_r · x` for every weight row in `w`.
fn rows_dot(tier: Tier, w: &[u8], row_bytes: usize, acts: &Q8KRow, out: &mut [f32]) {
    if tier == Tier::Scalar {
        for (row, o) in w.chunks_exact(row_bytes).zip(out.iter_mut()) {
            *o = q4_k_scalar::dot_row(row, acts);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        const R: usize = super::q4_k_x86::ROWS;
        let done = out.len() / R * R;
        for (r, o) in out[..done].chunks_exact_mut(R).enumerate() {
            let rows = &w[r * R * row_bytes..(r + 1) * R * row_bytes];
            o.copy_from_slice(&super::q4_k_x86::dot_rows::<R>(tier, rows, row_bytes, acts));
        }
        for (r, o) in out.iter_mut().enumerate().skip(done) {
            let row = &w[r * row_bytes..(r + 1) * row_bytes];
            *o = super::q4_k_x86::dot_rows::<1>(tier, row, row_bytes, acts)[0];
        }
    }
}

/// The order of the 32-value sub-blocks inside each quantized super-block of [`Q8KRow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubBlockOrder {
    /// 0, 1, .. 7, as in `x`.
    Natural,
    /// 0, 2, 1, 3, 4, 6, 5, 7: the order in which two 512-bit registers hold the unpacked
    /// low and high nibbles of 64 weight bytes (chunks `j` and `j + 1`).
    Paired,
}

/// Where natural sub-block `s` sits in [`SubBlockOrder::Paired`] (an involution).
const PAIRED: [usize; SUB_BLOCKS] = [0, 2, 1, 3, 4, 6, 5, 7];

/// One activation row in int8, GGML's Q8_K scheme with sums over groups of
/// `sum_width` values: `x ≈ scales[b] * qs[i]` over super-block `b`. Public only as
/// an opaque type in the sealed [`super::k_quant::Kernels`] signatures.
pub struct Q8KRow {
    pub(crate) order: SubBlockOrder,
    /// `cols` values, sub-blocks in `order`.
    pub(crate) qs: Vec<i8>,
    pub(crate) sum_width: usize,
    /// `Σ qs` of each group of `sum_width` values (32 for Q4_K's sub-blocks, 16 for
    /// Q6_K's), in natural order (`|Σ| ≤ 32 · 127` fits an i16).
    pub(crate) sums: Vec<i16>,
    /// One scale per super-block.
    pub(crate) scales: Vec<f32>,
}

impl Q8KRow {
    /// Quantizes `x` (a multiple of 256 values), with sums over `sum_width` (a divisor
    /// of 32) values.
    pub(crate) fn quantize(x: &[f32], order: SubBlockOrder, sum_width: usize) -> Self {
        debug_assert!(x.len().is_multiple_of(Q4_K_BLOCK_VALUES));
        debug_assert!(SUB_BLOCK.is_multiple_of(sum_width));
        let per_sub_block = SUB_BLOCK / sum_width;
        let mut qs = vec![0i8; x.len()];
        let mut sums = vec![0i16; x.len() / sum_width];
        let mut scales = vec![0f32; x.len() / Q4_K_BLOCK_VALUES];
        for (((x, qs), sums), scale) in x
            .chunks_exact(Q4_K_BLOCK_VALUES)
            .zip(qs.chunks_exact_mut(Q4_K_BLOCK_VALUES))
            .zip(sums.chunks_exact_mut(SUB_BLOCKS * per_sub_block))
            .zip(scales.iter_mut())
        {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let sub_block_sums = sums.chunks_exact_mut(per_sub_block);
            for (s, (x, sums)) in x.chunks_exact(SUB_BLOCK).zip(sub_block_sums).enumerate() {
                let at = match order {
                    SubBlockOrder::Natural => s,
                    SubBlockOrder::Paired => PAIRED[s],
                } * SUB_BLOCK;
                let q = &mut qs[at..at + SUB_BLOCK];
                for (q, v) in q.iter_mut().zip(x) {
                    // `as` saturates (and maps NaN to 0), so the result always fits an i8.
                    *q = round_small(v * inv) as i8;
                }
                for (sum, q) in sums.iter_mut().zip(q.chunks_exact(sum_width)) {
                    *sum = q.iter().map(|&q| i16::from(q)).sum();
                }
            }
            *scale = d;
        }
        Self {
            order,
            qs,
            sum_width,
            sums,
            scales,
        }
    }
}

/// Rounds half to even for `|y| < 2^22` (here `|y| ≤ 127`) without a libm call, which
/// `f32::round` is on baseline x86_64: adding and subtracting 1.5·2^23 drops the fraction.
#[inline(always)]
fn round_small(y: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (y + MAGIC) - MAGIC
}

/// A super-block's `d` and `dmin`.
#[inline(always)]
pub(crate) fn block_d_dmin(block: &[u8]) -> (f32, f32) {
    (
        f16::from_le_bytes([block[0], block[1]]).to_f32(),
        f16::from_le_bytes([block[2], block[3]]).to_f32(),
    )
}

/// The 8 six-bit scales and 8 six-bit mins packed in 12 bytes, one per byte, as two
/// little-endian u64s. GGML's rule: sub-blocks 0..4 keep scale and min in the low 6
/// bits of bytes 0..4 and 4..8; sub-blocks 4..8 take their low 4 bits from the nibbles
/// of bytes 8..12 and their top 2 bits from the top bits of bytes 0..8.
#[inline(always)]
pub(crate) fn unpack_scales_mins(packed: [u8; 12]) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let scales_lo = w0 & LOW6;
    let scales_hi = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let mins_lo = w1 & LOW6;
    let mins_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    (
        u64::from(scales_lo) | (u64::from(scales_hi) << 32),
        u64::from(mins_lo) | (u64::from(mins_hi) << 32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GGML's `get_scale_min_k4`, written out per sub-block.
    fn scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
        if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            (
                (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
                (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
            )
        }
    }

    #[test]
    fn unpacked_scales_and_mins_follow_ggml_rule() {
        for seed in 0u32..200 {
            let mut state = u64::from(seed) + 1;
            let packed: [u8; 12] = std::array::from_fn(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            });
            let (scales, mins) = unpack_scales_mins(packed);
            for j in 0..8 {
                let (s, m) = scale_min(j, &packed);
                assert_eq!((scales >> (8 * j)) as u8, s, "scale {j} of {packed:?}");
                assert_eq!((mins >> (8 * j)) as u8, m, "min {j} of {packed:?}");
            }
        }
    }

    #[test]
    fn paired_order_moves_sub_blocks_and_keeps_sums_natural() {
        let x: Vec<f32> = (0..256).map(|i| (i / 32) as f32 + 1.0).collect();
        let natural = Q8KRow::quantize(&x, SubBlockOrder::Natural, SUB_BLOCK);
        let paired = Q8KRow::quantize(&x, SubBlockOrder::Paired, SUB_BLOCK);
        assert_eq!(natural.sums, paired.sums);
        for (s, &paired_at) in PAIRED.iter().enumerate() {
            let at = paired_at * SUB_BLOCK;
            assert_eq!(
                paired.qs[at..at + SUB_BLOCK],
                natural.qs[s * SUB_BLOCK..(s + 1) * SUB_BLOCK]
            );
        }
    }
}
