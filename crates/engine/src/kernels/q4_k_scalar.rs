//! Portable Q4_K × int8 dot product, for CPUs without a SIMD tier here.

use super::q4_k::{
    block_d_dmin, unpack_scales_mins, Q8KRow, SubBlockOrder, NIBBLES_AT, Q4_K_BLOCK_BYTES,
    Q4_K_BLOCK_VALUES, SCALES_AT, SUB_BLOCK, SUB_BLOCKS,
};

/// `Σ_i w[i] * x[i]` for one weight row and an activation row in natural sub-block order.
pub(crate) fn dot_row(row: &[u8], acts: &Q8KRow) -> f32 {
    assert!(acts.order == SubBlockOrder::Natural && acts.sum_width == SUB_BLOCK);
    row.chunks_exact(Q4_K_BLOCK_BYTES)
        .zip(acts.qs.chunks_exact(Q4_K_BLOCK_VALUES))
        .zip(acts.sums.chunks_exact(SUB_BLOCKS))
        .zip(&acts.scales)
        .map(|(((block, a), sums), &da)| {
            let (d, dmin) = block_d_dmin(block);
            let mut packed = [0u8; 12];
            packed.copy_from_slice(&block[SCALES_AT..NIBBLES_AT]);
            let (scales, mins) = unpack_scales_mins(packed);
            let nibbles = &block[NIBBLES_AT..];
            let mut scaled = 0i32;
            for (j, (q, a)) in nibbles
                .chunks_exact(SUB_BLOCK)
                .zip(a.chunks_exact(2 * SUB_BLOCK))
                .enumerate()
            {
                let (a_lo, a_hi) = a.split_at(SUB_BLOCK);
                let (mut lo, mut hi) = (0i32, 0i32);
                for ((&q, &a_lo), &a_hi) in q.iter().zip(a_lo).zip(a_hi) {
                    lo += i32::from(q & 0x0F) * i32::from(a_lo);
                    hi += i32::from(q >> 4) * i32::from(a_hi);
                }
                scaled += lo * i32::from((scales >> (16 * j)) as u8)
                    + hi * i32::from((scales >> (16 * j + 8)) as u8);
            }
            let min_sum: i32 = sums
                .iter()
                .enumerate()
                .map(|(s, &sum)| i32::from(sum) * i32::from((mins >> (8 * s)) as u8))
                .sum();
            da * (d * scaled as f32 - dmin * min_sum as f32)
        })
        .sum()
}
