//! Portable Q4_0 × int8 dot product, for CPUs without a SIMD tier here.

use half::f16;

use super::activations::QuantizedRows;
use super::q4_0::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_VALUES};

/// `Σ_i w[i] * x[i]` for one weight row (`cols / 32` blocks) and activation row `t`.
pub(crate) fn dot_row(row: &[u8], acts: &QuantizedRows, t: usize) -> f32 {
    let k = acts.k;
    let blocks = k / Q4_0_BLOCK_VALUES;
    let qs = &acts.qs[t * k..(t + 1) * k];
    let scales = &acts.scales[t * blocks..(t + 1) * blocks];
    row.chunks_exact(Q4_0_BLOCK_BYTES)
        .zip(qs.chunks_exact(Q4_0_BLOCK_VALUES))
        .zip(scales)
        .map(|((block, a), &da)| {
            let dw = f16::from_le_bytes([block[0], block[1]]).to_f32();
            let (lo, hi) = a.split_at(Q4_0_BLOCK_VALUES / 2);
            let dot: i32 = block[2..]
                .iter()
                .zip(lo.iter().zip(hi))
                .map(|(&q, (&a_lo, &a_hi))| {
                    (i32::from(q & 0x0F) - 8) * i32::from(a_lo)
                        + (i32::from(q >> 4) - 8) * i32::from(a_hi)
                })
                .sum();
            dw * da * dot as f32
        })
        .sum()
}
