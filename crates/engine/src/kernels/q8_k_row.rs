//! One f32 activation row quantized for the K-quant matvecs (GGML's Q8_K scheme).

use super::activations::round_small;
use super::k_quant::K_QUANT_BLOCK_VALUES;

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
        debug_assert!(sum_width > 0 && 32usize.is_multiple_of(sum_width));
        let mut qs = vec![0i8; x.len()];
        let mut scales = vec![0f32; x.len() / K_QUANT_BLOCK_VALUES];
        for ((x, qs), scale) in x
            .chunks_exact(K_QUANT_BLOCK_VALUES)
            .zip(qs.chunks_exact_mut(K_QUANT_BLOCK_VALUES))
            .zip(scales.iter_mut())
        {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (q, v) in qs.iter_mut().zip(x) {
                // `as` saturates (and maps NaN to 0), so the result always fits an i8.
                *q = round_small(v * inv) as i8;
            }
            *scale = d;
        }
        let sums = qs
            .chunks_exact(sum_width)
            .map(|q| q.iter().map(|&q| i16::from(q)).sum())
            .collect();
        Self {
            qs,
            sum_width,
            sums,
            scales,
        }
    }
}
