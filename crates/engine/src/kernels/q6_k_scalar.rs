//! Portable Q6_K × int8 dot product, for CPUs without a SIMD tier here.

use half::f16;

use super::q6_k::{D_AT, GROUP, GROUPS, Q6_K_BLOCK_BYTES, Q6_K_BLOCK_VALUES, QH_AT, SCALES_AT};
use super::q8_k_row::Q8KRow;

/// `Σ_i w[i] * x[i]` for one weight row and an activation row in natural order.
pub(crate) fn dot_row(row: &[u8], acts: &Q8KRow) -> f32 {
    assert!(acts.sum_width == GROUP);
    row.chunks_exact(Q6_K_BLOCK_BYTES)
        .zip(acts.qs.chunks_exact(Q6_K_BLOCK_VALUES))
        .zip(acts.sums.chunks_exact(GROUPS))
        .zip(&acts.scales)
        .map(|(((block, a), sums), &da)| {
            let d = f16::from_le_bytes([block[D_AT], block[D_AT + 1]]).to_f32();
            let scales = &block[SCALES_AT..D_AT];
            let mut dots = [0i32; GROUPS];
            for (v, &a) in a.iter().enumerate() {
                let (half, i) = (v / 128, v % 128);
                let low = block[64 * half + i % 64] >> (4 * (i / 64));
                let high = block[QH_AT + 32 * half + i % 32] >> (2 * (i / 32));
                let q = (low & 0x0F) | ((high & 3) << 4);
                dots[v / GROUP] += i32::from(q) * i32::from(a);
            }
            // `Σ (q - 32) a = Σ q a - 32 Σ a` per group of 16.
            let scaled: i32 = dots
                .iter()
                .zip(sums)
                .zip(scales)
                .map(|((&dot, &sum), &s)| (dot - 32 * i32::from(sum)) * i32::from(s as i8))
                .sum();
            d * da * scaled as f32
        })
        .sum()
}
