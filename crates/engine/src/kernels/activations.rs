//! f32 activations quantized to int8 blocks of 32 values (GGML's Q8_0 scheme), once per
//! matmul, in a layout the dot-product kernels read directly.

use rayon::prelude::*;

use super::q4_0::Q4_0_BLOCK_VALUES;

/// Values per i32 lane of a `vpdpbusd` / `vpmaddwd` result.
pub(crate) const GROUP: usize = 4;

/// `m` rows of `k` activations: `x ≈ scale[block] * qs[i]`.
///
/// `offsets[i / 4] = -8 * (qs[i] + .. + qs[i + 3])` lets the kernels multiply the raw
/// unsigned Q4_0 nibbles `q` and still get `Σ (q - 8) * a`: it seeds each i32 lane.
///
/// In [`Layout::Paired`], each pair of blocks `(A, B)` is stored as the halves
/// `A[0..16] B[0..16] A[16..32] B[16..32]`, the order in which a 512-bit register holds
/// the unpacked nibbles of two Q4_0 blocks; a last unpaired block stays in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Natural,
    Paired,
}

pub(crate) struct QuantizedRows {
    pub k: usize,
    pub qs: Vec<i8>,
    /// Read only by the x86 SIMD tiles.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub offsets: Vec<i32>,
    pub scales: Vec<f32>,
}

impl QuantizedRows {
    /// Quantizes the row-major `m x k` matrix `x` (`k` a multiple of 32).
    pub fn quantize(x: &[f32], k: usize, layout: Layout) -> Self {
        debug_assert!(k.is_multiple_of(Q4_0_BLOCK_VALUES) && x.len().is_multiple_of(k));
        let m = x.len() / k;
        let blocks = k / Q4_0_BLOCK_VALUES;
        let mut qs = vec![0i8; m * k];
        let mut offsets = vec![0i32; m * k / GROUP];
        let mut scales = vec![0f32; m * blocks];
        let rows = x
            .par_chunks(k)
            .zip(qs.par_chunks_mut(k))
            .zip(offsets.par_chunks_mut(k / GROUP))
            .zip(scales.par_chunks_mut(blocks))
            .with_min_len(8);
        rows.for_each(|(((x, qs), offsets), scales)| {
            quantize_row(x, qs, scales);
            if layout == Layout::Paired {
                pair_blocks(qs);
            }
            for (o, group) in offsets.iter_mut().zip(qs.chunks_exact(GROUP)) {
                *o = -8 * group.iter().map(|&q| i32::from(q)).sum::<i32>();
            }
        });
        Self {
            k,
            qs,
            offsets,
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

/// `A0 A1 B0 B1` → `A0 B0 A1 B1` (16-value halves) for every full pair of blocks.
fn pair_blocks(qs: &mut [i8]) {
    const HALF: usize = Q4_0_BLOCK_VALUES / 2;
    for pair in qs.chunks_exact_mut(2 * Q4_0_BLOCK_VALUES) {
        let (a1, b0) = pair[HALF..3 * HALF].split_at_mut(HALF);
        a1.swap_with_slice(b0);
    }
}
