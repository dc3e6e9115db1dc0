//! f32 activations quantized to int8 blocks of 32 (GGML's Q8_0 scheme) for the
//! interleaved kernels, once per matmul: each row zero-padded to the matrix's padded
//! width, with the per-block sums the kernels need to undo their weight offset.

use rayon::prelude::*;

use super::interleaved::BLOCK_VALUES;

/// `m` rows of `k` (a multiple of 32) activations: `x ≈ scales[block] * qs[i]`.
pub(crate) struct Q8Activations {
    pub k: usize,
    pub qs: Vec<i8>,
    pub scales: Vec<f32>,
    /// `Σ qs` per block: times minus the weights' offset, it seeds a `vpdpbusd` over
    /// offset weights; times the block's scale, it multiplies Q4_K mins.
    pub sums: Vec<i32>,
    /// `Σ qs` of each block's first 16 values: Q6_K scales the halves of a block apart.
    pub low_sums: Vec<i32>,
}

impl Q8Activations {
    /// Quantizes the row-major `m x cols` matrix `x` into rows of `k >= cols` values,
    /// the columns past `cols` being zero.
    pub fn quantize(x: &[f32], cols: usize, k: usize) -> Self {
        debug_assert!(k >= cols && k.is_multiple_of(BLOCK_VALUES));
        let m = x.len().checked_div(cols).unwrap_or(0);
        let blocks = k / BLOCK_VALUES;
        let mut qs = vec![0i8; m * k];
        let mut scales = vec![0f32; m * blocks];
        let mut sums = vec![0i32; m * blocks];
        let mut low_sums = vec![0i32; m * blocks];
        x.par_chunks(cols.max(1))
            .zip(qs.par_chunks_mut(k))
            .zip(scales.par_chunks_mut(blocks))
            .zip(sums.par_chunks_mut(blocks))
            .zip(low_sums.par_chunks_mut(blocks))
            .with_min_len(8)
            .for_each(|((((x, qs), scales), sums), low_sums)| {
                let mut padded = [0f32; BLOCK_VALUES];
                for (b, (((qs, scale), sum), low_sum)) in qs
                    .chunks_exact_mut(BLOCK_VALUES)
                    .zip(scales.iter_mut())
                    .zip(sums.iter_mut())
                    .zip(low_sums.iter_mut())
                    .enumerate()
                {
                    let start = (b * BLOCK_VALUES).min(x.len());
                    let end = (start + BLOCK_VALUES).min(x.len());
                    let block = if end - start == BLOCK_VALUES {
                        &x[start..end]
                    } else {
                        padded.fill(0.0);
                        padded[..end - start].copy_from_slice(&x[start..end]);
                        &padded
                    };
                    *scale = quantize_block(block, qs);
                    let (low, high) = qs.split_at(BLOCK_VALUES / 2);
                    *low_sum = low.iter().map(|&q| i32::from(q)).sum::<i32>();
                    *sum = *low_sum + high.iter().map(|&q| i32::from(q)).sum::<i32>();
                }
            });
        Self {
            k,
            qs,
            scales,
            sums,
            low_sums,
        }
    }

    pub fn rows(&self) -> usize {
        self.qs.len().checked_div(self.k).unwrap_or(0)
    }
}

/// `d = max|x| / 127`, `q = round(x / d)` (half to even).
fn quantize_block(x: &[f32], qs: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, v) in qs.iter_mut().zip(x) {
        // `as` saturates (and maps NaN to 0), so the result always fits an i8.
        *q = round_small(v * inv) as i8;
    }
    d
}

/// Rounds half to even for `|y| < 2^22` by adding and subtracting 1.5·2^23 (vectorises,
/// unlike `f32::round`, a libm call on baseline x86_64).
#[inline(always)]
pub(crate) fn round_small(y: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (y + MAGIC) - MAGIC
}
