//! Q4_0 weights for the interleaved int8 kernels ([`Q4_0Matrix`]), repacked at load from
//! GGML blocks. Each row's 16 nibble bytes per block keep GGML's order (byte `j`: value
//! `j` low, value `j + 16` high, each `q + 8`), four bytes to a chunk, so the repacked
//! copy takes exactly the file's bytes and the kernels split nibbles with one mask.

use super::block_bytes::BlockBytes;
use super::interleaved::{Chunk, Q4_0Matrix, LANE_VALUES};
use super::KernelError;

/// Weights per Q4_0 block.
pub const Q4_0_BLOCK_VALUES: usize = 32;
/// Bytes per Q4_0 block: an f16 scale `d`, then 16 bytes of nibbles `q`, where byte `j`
/// holds value `j` (low nibble) and value `j + 16` (high nibble); `w = d * (q - 8)`.
pub const Q4_0_BLOCK_BYTES: usize = 18;

impl Q4_0Matrix {
    /// A matrix from GGML Q4_0 block bytes: `rows` rows of `cols / 32` blocks each, row
    /// after row, exactly as a GGUF tensor of shape `[cols, rows]` (GGUF order) stores
    /// them. The blocks are repacked into memory the matrix owns; `bytes` may be dropped
    /// afterwards (for a memory-mapped file, its pages can be handed back).
    /// Fails if `cols` is not a positive multiple of 32, the byte count does not match,
    /// or a mapped range lies outside its mapping.
    pub fn new(bytes: BlockBytes, rows: usize, cols: usize) -> Result<Self, KernelError> {
        if cols == 0 || !cols.is_multiple_of(Q4_0_BLOCK_VALUES) {
            return Err(KernelError::BadColumns { cols });
        }
        bytes.validate()?;
        let src = bytes.as_slice();
        let expected = rows * cols / Q4_0_BLOCK_VALUES * Q4_0_BLOCK_BYTES;
        if src.len() != expected {
            return Err(KernelError::WrongByteCount {
                rows,
                cols,
                expected,
                found: src.len(),
            });
        }
        Self::repack(rows, cols, src, Q4_0_BLOCK_BYTES, place)
    }
}

/// Copies one row's 16 nibble bytes of a block into lane `lane` of the block's chunks.
fn place(nibbles: &[u8], lane: usize, chunks: &mut [Chunk]) {
    for (chunk, bytes) in chunks.iter_mut().zip(nibbles.chunks_exact(LANE_VALUES)) {
        chunk.0[lane * LANE_VALUES..][..LANE_VALUES].copy_from_slice(bytes);
    }
}
