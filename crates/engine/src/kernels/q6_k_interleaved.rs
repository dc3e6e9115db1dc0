//! Q6_K weights for the interleaved int8 kernels ([`Q6KInterleaved`]), repacked at load:
//! each 16-value half block fills 3 chunks, 12 values in the bytes' low 6 bits and the
//! other 4 spread over their top 2 bits (see [`super::interleaved`]), keeps its signed
//! 8-bit scale, and each super-block keeps its f16 `d`, so `w = d * scale * (q - 32)`
//! exactly as GGML defines it, in the file's 210 bytes per 256 weights. One copy serves
//! prefill and decode.

use super::interleaved::{
    Interleaved, BLOCK_VALUES, GROUP_ROWS, LANE_VALUES, Q6K_HALF, Q6K_HALF_CHUNKS, SUPER_BLOCKS,
};
use super::k_quant::row_bytes;
use super::q6_k::{stored_value, D_AT, Q6_K_BLOCK_BYTES, SCALES_AT};
use super::KernelError;

/// GGML Q6_K weights, repacked for the interleaved kernels.
pub type Q6KInterleaved = Interleaved<6>;

impl Q6KInterleaved {
    /// Repacks GGML Q6_K super-blocks as stored in a GGUF tensor of shape `[cols, rows]`
    /// (`rows` rows of `cols / 256` super-blocks, row after row). Fails if `cols` is not a
    /// positive multiple of 256 or the byte count does not match.
    pub fn from_q6_k(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        let row_bytes = row_bytes(Self::NAME, Q6_K_BLOCK_BYTES, bytes.len(), rows, cols)?;
        let mut matrix = Self::zeroed(rows, cols)?;
        let blocks = cols / BLOCK_VALUES;
        matrix.fill_groups(|g, chunks, slots| {
            let first = (g * GROUP_ROWS * row_bytes).min(bytes.len());
            let end = (first + GROUP_ROWS * row_bytes).min(bytes.len());
            for (lane, row) in bytes[first..end].chunks_exact(row_bytes).enumerate() {
                for (s, block) in row.chunks_exact(Q6_K_BLOCK_BYTES).enumerate() {
                    let shared = blocks * GROUP_ROWS + Self::shared_at(s * SUPER_BLOCKS);
                    slots[shared + lane] = u16::from_le_bytes([block[D_AT], block[D_AT + 1]]);
                    let scales = &block[SCALES_AT..D_AT];
                    for j in 0..SUPER_BLOCKS {
                        let b = s * SUPER_BLOCKS + j;
                        slots[b * GROUP_ROWS + lane] =
                            u16::from(scales[2 * j]) | (u16::from(scales[2 * j + 1]) << 8);
                        let value = |i: usize| stored_value(block, BLOCK_VALUES * j + i);
                        let chunks = &mut chunks[b * Self::BLOCK_CHUNKS..][..Self::BLOCK_CHUNKS];
                        let at = lane * LANE_VALUES;
                        for (half, chunks) in chunks.chunks_exact_mut(Q6K_HALF_CHUNKS).enumerate() {
                            for j in 0..LANE_VALUES {
                                let first = half * Q6K_HALF + j;
                                let spread = value(first + Q6K_HALF_CHUNKS * LANE_VALUES);
                                for (i, chunk) in chunks.iter_mut().enumerate() {
                                    let top = (spread >> (2 * i)) & 0b11;
                                    chunk.0[at + j] = value(first + i * LANE_VALUES) | (top << 6);
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(matrix)
    }
}
