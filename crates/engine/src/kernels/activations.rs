//! f32 activations quantized to int8 blocks of 32 values (GGML's Q8_0 scheme), once per
//! matmul, in a layout the dot-product kernels read directly.

use rayon::prelude::*;

use super::q4_0::Q4_0_BLOCK_VALUES;

/// Values per i32 lane of a `vpdpbusd` / `vpmaddwd` result.
const GROUP: usize = 4;
/// i32 lanes of [`QuantizedRows::block_offsets`] per block.
pub(crate) const BLOCK_LANES: usize = 4;

/// `m` rows of `k` activations: `x ≈ scale[block] * qs[i]`.
pub(crate) struct QuantizedRows {
    pub k: usize,
    pub qs: Vec<i8>,
    /// Per block, 4 lanes: `-8 * (Σ qs[4j..4j + 4] + Σ qs[16 + 4j..16 + 4j + 4])`. It
    /// seeds the i32 lane `j` that sums a block's low- and high-nibble products, so the
    /// kernels can multiply the raw unsigned Q4_0 nibbles `q` and still get `Σ (q - 8) a`.
    /// Read only by the x86 SIMD tiles.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub block_offsets: Vec<i32>,
    pub scales: Vec<f32>,
}

impl QuantizedRows {
    /// Quantizes the row-major `m x k` matrix `x` (`k` a multiple of 32).
    pub fn quantize(x: &[f32], k: usize) -> Self {
        debug_assert!(k.is_multiple_of(Q4_0_BLOCK_VALUES) && x.len().is_multiple_of(k));
        let m = x.len() / k;
        let blocks = k / Q4_0_BLOCK_VALUES;
        let mut qs = vec![0i8; m * k];
        let mut block_offsets = vec![0i32; m * blocks * BLOCK_LANES];
        let mut scales = vec![0f32; m * blocks];
        let rows = x
            .par_chunks(k)
            .zip(qs.par_chunks_mut(k))
            .zip(block_offsets.par_chunks_mut(blocks * BLOCK_LANES))
            .zip(scales.par_chunks_mut(blocks))
            .with_min_len(8);
        rows.for_each(|(((x, qs), block_offsets), scales)| {
            quantize_row(x, qs, scales);
            for (lanes, block) in block_offsets
                .chunks_exact_mut(BLOCK_LANES)
                .zip(qs.chunks_exact(Q4_0_BLOCK_VALUES))
            {
                let (lo, hi) = block.split_at(Q4_0_BLOCK_VALUES / 2);
                for ((lane, lo), hi) in lanes
                    .iter_mut()
                    .zip(lo.chunks_exact(GROUP))
                    .zip(hi.chunks_exact(GROUP))
                {
                    *lane = -8 * lo.iter().chain(hi).map(|&q| i32::from(q)).sum::<i32>();
                }
            }
        });
        Self {
            k,
            qs,
            block_offsets,
            scales,
        }
    }

    pub fn rows(&self) -> usize {
        self.qs.len() / self.k
    }
}

fn quantize_row(x: &[f32], qs: &mut [i8], scales: &mut [f32]) {
    for ((x, qs), scale) in x
        .chunks_exact(Q4_0_BLOCK_VALUES)
        .zip(qs.chunks_exact_mut(Q4_0_BLOCK_VALUES))
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
}

/// Rounds half to even for `|y| < 2^22` (here `|y| ≤ 127`): adding and subtracting
/// 1.5·2^23 drops the fraction in the FPU's rounding mode. Unlike `f32::round`, which is
/// a libm call on baseline x86_64, this vectorises.
#[inline(always)]
fn round_small(y: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (y + MAGIC) - MAGIC
}
