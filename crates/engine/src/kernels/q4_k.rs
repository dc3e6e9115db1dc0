//! GGML's Q4_K block format: what [`super::Q4KInterleaved`] reads at load.

use super::k_quant::K_QUANT_BLOCK_VALUES;

/// Weights per Q4_K super-block.
pub const Q4_K_BLOCK_VALUES: usize = K_QUANT_BLOCK_VALUES;
/// Bytes per Q4_K super-block: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and mins
/// for 8 sub-blocks of 32, then 128 bytes of nibbles. Byte `i` of nibble chunk `j`
/// (32 bytes each) holds value `64j + i` (low nibble) and `64j + 32 + i` (high nibble);
/// value `v` of sub-block `s` is `d * scale[s] * q - dmin * min[s]`.
pub const Q4_K_BLOCK_BYTES: usize = 144;
/// Values per sub-block, each with its own 6-bit scale and min.
pub(crate) const SUB_BLOCK: usize = 32;
pub(crate) const SUB_BLOCKS: usize = Q4_K_BLOCK_VALUES / SUB_BLOCK;
/// Offsets inside a super-block.
pub(crate) const SCALES_AT: usize = 4;
pub(crate) const NIBBLES_AT: usize = 16;

/// The 8 six-bit scales and 8 six-bit mins packed in 12 bytes, one per byte, as two
/// little-endian u64s. GGML's rule: sub-blocks 0..4 keep scale and min in the low 6
/// bits of bytes 0..4 and 4..8; sub-blocks 4..8 take their low 4 bits from the nibbles
/// of bytes 8..12 and their top 2 bits from the top bits of bytes 0..8.
#[inline(always)]
pub(crate) fn unpack_scales_mins(packed: [u8; 12]) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let scales_lo = w0 & LOW6;
    let scales_hi = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let mins_lo = w1 & LOW6;
    let mins_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    (
        u64::from(scales_lo) | (u64::from(scales_hi) << 32),
        u64::from(mins_lo) | (u64::from(mins_hi) << 32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GGML's `get_scale_min_k4`, written out per sub-block.
    fn scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
        if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            (
                (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
                (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
            )
        }
    }

    #[test]
    fn unpacked_scales_and_mins_follow_ggml_rule() {
        for seed in 0u32..200 {
            let mut state = u64::from(seed) + 1;
            let packed: [u8; 12] = std::array::from_fn(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            });
            let (scales, mins) = unpack_scales_mins(packed);
            for j in 0..8 {
                let (s, m) = scale_min(j, &packed);
                assert_eq!((scales >> (8 * j)) as u8, s, "scale {j} of {packed:?}");
                assert_eq!((mins >> (8 * j)) as u8, m, "min {j} of {packed:?}");
            }
        }
    }
}
