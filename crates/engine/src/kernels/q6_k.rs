//! GGML's Q6_K block format: what [`super::Q6KInterleaved`] reads at load.

use super::k_quant::K_QUANT_BLOCK_VALUES;

/// Weights per Q6_K super-block.
pub const Q6_K_BLOCK_VALUES: usize = K_QUANT_BLOCK_VALUES;
/// Bytes per Q6_K super-block: 128 bytes `ql` of low 4 bits, 64 bytes `qh` of high 2
/// bits, 16 signed 8-bit scales (one per 16 values), then an f16 `d`. In each half of
/// 128 values, `ql[i]` holds values `i` (low nibble) and `64 + i` (high nibble) for
/// `i < 64`, and bit pair `k` of `qh[i]` tops value `32k + i` (`i < 32`);
/// `w = d * scale[v / 16] * (q - 32)`.
pub const Q6_K_BLOCK_BYTES: usize = 210;
/// Offsets inside a super-block.
pub(crate) const QH_AT: usize = 128;
pub(crate) const SCALES_AT: usize = 192;
pub(crate) const D_AT: usize = 208;

/// Value `v` (`0..256`) of a Q6_K super-block as stored: `q + 32`, in `0..64`.
#[inline(always)]
pub(crate) fn stored_value(block: &[u8], v: usize) -> u8 {
    let (half, i) = (v / 128, v % 128);
    let low = block[64 * half + i % 64] >> (4 * (i / 64));
    let high = block[QH_AT + 32 * half + i % 32] >> (2 * (i / 32));
    (low & 0x0F) | ((high & 0b11) << 4)
}
