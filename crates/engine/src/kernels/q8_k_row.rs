//! One f32 activation row quantized for the K-quant matvecs (GGML's Q8_K scheme).

use super::k_quant::K_QUANT_BLOCK_VALUES;

/// Values quantized together under one running sum limit: the 32-value sub-block.
const SUB_BLOCK: usize = 32;
const SUB_BLOCKS: usize = K_QUANT_BLOCK_VALUES / SUB_BLOCK;

/// One activation row in int8, GGML's Q8_K scheme with sums over groups of
/// `sum_width` values: `x ≈ scales[b] * qs[i]` over super-block `b`. Public only as
/// an opaque type in the sealed [`super::k_quant::Kernels`] signatures.
pub struct Q8KRow {
    /// `cols` values.
    pub(crate) qs: Vec<i8>,
    pub(crate) sum_width: usize,
    /// `Σ qs` of each group of `sum_width` values (16 for Q6_K's scale groups;
    /// `|Σ| ≤ 32 · 127` fits an i16).
    pub(crate) sums: Vec<i16>,
    /// One scale per super-block.
    pub(crate) scales: Vec<f32>,
}

impl Q8KRow {
    /// Quantizes `x` (a multiple of 256 values), with sums over `sum_width` (a divisor
    /// of 32) values.
    pub(crate) fn quantize(x: &[f32], sum_width: usize) -> Self {
        debug_assert!(x.len().is_multiple_of(K_QUANT_BLOCK_VALUES));
        debug_assert!(SUB_BLOCK.is_multiple_of(sum_width));
        let per_sub_block = SUB_BLOCK / sum_width;
        let mut qs = vec![0i8; x.len()];
        let mut sums = vec![0i16; x.len() / sum_width];
        let mut scales = vec![0f32; x.len() / K_QUANT_BLOCK_VALUES];
        for (((x, qs), sums), scale) in x
            .chunks_exact(K_QUANT_BLOCK_VALUES)
            .zip(qs.chunks_exact_mut(K_QUANT_BLOCK_VALUES))
            .zip(sums.chunks_exact_mut(SUB_BLOCKS * per_sub_block))
            .zip(scales.iter_mut())
        {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let sub_block_sums = sums.chunks_exact_mut(per_sub_block);
            for (s, (x, sums)) in x.chunks_exact(SUB_BLOCK).zip(sub_block_sums).enumerate() {
                let at = s * SUB_BLOCK;
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
