//! Q4_K weights for the interleaved int8 kernels ([`Q4KInterleaved`]), repacked at load:
//! each 32-value sub-block becomes a Q4_0-style block of nibbles (byte `j`: value `j` low,
//! value `j + 16` high) with its 6-bit scale and min side by side, and each 256-value
//! super-block keeps its f16 `d` and `dmin`, so `w = d * scale * q - dmin * min` exactly
//! as GGML defines it. That is 18.5 bytes per 32 weights against 18 in the file (candle's
//! own prefill tiles take 24), and one copy serves prefill and decode.

use super::interleaved::{Interleaved, BLOCK_VALUES, GROUP_ROWS, LANE_VALUES, SUPER_BLOCKS};
use super::k_quant::row_bytes;
use super::q4_k::{unpack_scales_mins, NIBBLES_AT, Q4_K_BLOCK_BYTES, SCALES_AT, SUB_BLOCKS};
use super::KernelError;

/// GGML Q4_K weights, repacked for the interleaved kernels.
pub type Q4KInterleaved = Interleaved<4, true>;

impl Q4KInterleaved {
    /// Repacks GGML Q4_K super-blocks as stored in a GGUF tensor of shape `[cols, rows]`
    /// (`rows` rows of `cols / 256` super-blocks, row after row). Fails if `cols` is not a
    /// positive multiple of 256 or the byte count does not match.
    pub fn from_q4_k(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        let row_bytes = row_bytes(Self::NAME, Q4_K_BLOCK_BYTES, bytes.len(), rows, cols)?;
        let mut matrix = Self::zeroed(rows, cols)?;
        let blocks = cols / BLOCK_VALUES;
        debug_assert_eq!(blocks % SUPER_BLOCKS, 0);
        matrix.fill_groups(|g, chunks, slots| {
            let first = (g * GROUP_ROWS * row_bytes).min(bytes.len());
            let end = (first + GROUP_ROWS * row_bytes).min(bytes.len());
            for (lane, row) in bytes[first..end].chunks_exact(row_bytes).enumerate() {
                for (s, block) in row.chunks_exact(Q4_K_BLOCK_BYTES).enumerate() {
                    let shared = blocks * GROUP_ROWS + s * 2 * GROUP_ROWS;
                    slots[shared + lane] = u16::from_le_bytes([block[0], block[1]]);
                    slots[shared + GROUP_ROWS + lane] = u16::from_le_bytes([block[2], block[3]]);
                    let mut packed = [0u8; 12];
                    packed.copy_from_slice(&block[SCALES_AT..NIBBLES_AT]);
                    let (scales, mins) = unpack_scales_mins(packed);
                    for j in 0..SUB_BLOCKS {
                        let b = s * SUB_BLOCKS + j;
                        let (scale, min) = ((scales >> (8 * j)) as u8, (mins >> (8 * j)) as u8);
                        slots[b * GROUP_ROWS + lane] = u16::from(scale) | (u16::from(min) << 8);
                        // Sub-blocks 2i and 2i + 1 are the low and high nibbles of the
                        // same 32 bytes.
                        let source = &block[NIBBLES_AT + BLOCK_VALUES * (j / 2)..][..BLOCK_VALUES];
                        let value = |i: usize| (source[i] >> (4 * (j % 2))) & 0x0F;
                        let chunks = &mut chunks[b * Self::BLOCK_CHUNKS..][..Self::BLOCK_CHUNKS];
                        for i in 0..BLOCK_VALUES / 2 {
                            chunks[i / LANE_VALUES].0[lane * LANE_VALUES + i % LANE_VALUES] =
                                value(i) | (value(i + BLOCK_VALUES / 2) << 4);
                        }
                    }
                }
            }
        });
        Ok(matrix)
    }
}
