//! Portable Q4_0 × int8 dot products over repacked row groups, for CPUs without a SIMD
//! tier here.

use half::f16;

use super::activations::QuantizedRows;
use super::q4_0::{Groups, GROUP_ROWS, NIBBLE_BYTES, Q4_0_BLOCK_VALUES};

/// `out[r * m + t] = w_r · x_t` for every row `r` of `groups` and activation row `t`.
pub(crate) fn groups_times_acts(groups: Groups, acts: &QuantizedRows, out: &mut [f32]) {
    let m = acts.rows();
    let k = acts.k;
    let blocks = groups.blocks;
    for (r, out) in out.chunks_exact_mut(m).enumerate() {
        let (g, in_group) = (r / GROUP_ROWS, r % GROUP_ROWS);
        for (t, o) in out.iter_mut().enumerate() {
            let qs = &acts.qs[t * k..(t + 1) * k];
            let scales = &acts.scales[t * blocks..(t + 1) * blocks];
            *o = (0..blocks)
                .map(|b| {
                    let slot = (g * blocks + b) * GROUP_ROWS + in_group;
                    let dw = f16::from_bits(groups.scales[slot]).to_f32();
                    let nibbles = &groups.nibbles[slot * NIBBLE_BYTES..][..NIBBLE_BYTES];
                    let a = &qs[b * Q4_0_BLOCK_VALUES..][..Q4_0_BLOCK_VALUES];
                    let (lo, hi) = a.split_at(NIBBLE_BYTES);
                    let dot: i32 = nibbles
                        .iter()
                        .zip(lo.iter().zip(hi))
                        .map(|(&q, (&a_lo, &a_hi))| {
                            (i32::from(q & 0x0F) - 8) * i32::from(a_lo)
                                + (i32::from(q >> 4) - 8) * i32::from(a_hi)
                        })
                        .sum();
                    dw * scales[b] * dot as f32
                })
                .sum();
        }
    }
}
