//! f32 activations quantized to int8 blocks of 32 for [`super::Q8_0Matrix`], with each
//! row zero-padded to the matrix's padded width and the per-block sums the VNNI kernels
//! need to undo their `+128` weight offset.

use rayon::prelude::*;

use super::q8_0::Q8_0_BLOCK_VALUES;

/// `m` rows of `k` (a multiple of 32) activations: `x ≈ scales[block] * qs[i]`.
pub(crate) struct Q8Activations {
    pub k: usize,
    pub qs: Vec<i8>,
    pub scales: Vec<f32>,
    /// `-128 * Σ qs` per block: the seed of a `vpdpbusd` over weights stored `+128`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub seeds: Vec<i32>,
}

impl Q8Activations {
    /// Quantizes the row-major `m x cols` matrix `x` into rows of `k >= cols` values,
    /// the columns past `cols` being zero.
    pub fn quantize(x: &[f32], cols: usize, k: usize) -> Self {
        debug_assert!(k >= cols && k.is_multiple_of(Q8_0_BLOCK_VALUES));
        let m = x.len().checked_div(cols).unwrap_or(0);
        let blocks = k / Q8_0_BLOCK_VALUES;
        let mut qs = vec![0i8; m * k];
        let mut scales = vec![0f32; m * blocks];
        let mut seeds = vec![0i32; m * blocks];
        x.par_chunks(cols.max(1))
            .zip(qs.par_chunks_mut(k))
            .zip(scales.par_chunks_mut(blocks))
            .zip(seeds.par_chunks_mut(blocks))
            .with_min_len(8)
            .for_each(|(((x, qs), scales), seeds)| {
                let mut padded = [0f32; Q8_0_BLOCK_VALUES];
                for (b, ((qs, scale), seed)) in qs
                    .chunks_exact_mut(Q8_0_BLOCK_VALUES)
                    .zip(scales.iter_mut())
                    .zip(seeds.iter_mut())
                    .enumerate()
                {
                    let start = (b * Q8_0_BLOCK_VALUES).min(x.len());
                    let end = (start + Q8_0_BLOCK_VALUES).min(x.len());
                    let block = if end - start == Q8_0_BLOCK_VALUES {
                        &x[start..end]
                    } else {
                        padded.fill(0.0);
                        padded[..end - start].copy_from_slice(&x[start..end]);
                        &padded
                    };
                    *scale = quantize_block(block, qs);
                    *seed = -128 * qs.iter().map(|&q| i32::from(q)).sum::<i32>();
                }
            });
        Self {
            k,
            qs,
            scales,
            seeds,
        }
    }

    pub fn rows(&self) -> usize {
        self.qs.len().checked_div(self.k).unwrap_or(0)
    }
}

/// `d = max|x| / 127`, `q = round(x / d)` (half to even), as the Q4_0 path's activations.
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
fn round_small(y: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (y + MAGIC) - MAGIC
}
