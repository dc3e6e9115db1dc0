//! Q8_0 weights for the interleaved int8 kernels ([`Q8_0Matrix`]): quantized from f32
//! rows as GGML does, or repacked from GGML blocks as a GGUF stores them. Values are
//! stored offset by +128 (`q ^ 0x80`, unsigned), the operand type `vpdpbusd` multiplies
//! by signed activations.

use half::f16;

use super::interleaved::{Chunk, Q8_0Matrix, GROUP_ROWS, LANE_VALUES};
use super::KernelError;

/// Weights per Q8_0 block.
pub const Q8_0_BLOCK_VALUES: usize = 32;
/// Bytes per GGML Q8_0 block: an f16 scale `d`, then 32 `i8` values `q`; `w = d * q`.
pub const Q8_0_BLOCK_BYTES: usize = 34;

impl Q8_0Matrix {
    /// Quantizes an `rows x cols` matrix row by row, as GGML's Q8_0 does
    /// (`d = max|w| / 127`, `q = round(w / d)`): `fill_row(r, row)` writes row `r` (of
    /// `cols` values). Runs on the current rayon pool and holds only 16 rows in f32 per
    /// thread, so a large f16 tensor never needs a full f32 copy.
    pub fn quantize<F>(rows: usize, cols: usize, fill_row: F) -> Result<Self, KernelError>
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        let mut matrix = Self::zeroed(rows, cols)?;
        let blocks = matrix.blocks();
        matrix.fill_groups(|g, chunks, scales| {
            let mut row = vec![0f32; blocks * Q8_0_BLOCK_VALUES];
            let mut qs = [0u8; Q8_0_BLOCK_VALUES];
            for lane in 0..GROUP_ROWS.min(rows - g * GROUP_ROWS) {
                fill_row(g * GROUP_ROWS + lane, &mut row[..cols]);
                for (b, block) in row.chunks_exact(Q8_0_BLOCK_VALUES).enumerate() {
                    let d = quantize_block(block, &mut qs);
                    scales[b * GROUP_ROWS + lane] = d.to_bits();
                    place(&qs, lane, &mut chunks[b * Self::BLOCK_CHUNKS..]);
                }
            }
        });
        Ok(matrix)
    }

    /// Repacks GGML Q8_0 blocks as stored in a GGUF tensor of shape `[cols, rows]`
    /// (`rows` rows of `cols / 32` blocks, row after row), without requantizing them.
    pub fn from_blocks(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        if cols == 0 || !cols.is_multiple_of(Q8_0_BLOCK_VALUES) {
            return Err(KernelError::BadQ8_0Columns { cols });
        }
        let expected = rows * cols / Q8_0_BLOCK_VALUES * Q8_0_BLOCK_BYTES;
        if bytes.len() != expected {
            return Err(KernelError::WrongQ8_0ByteCount {
                rows,
                cols,
                expected,
                found: bytes.len(),
            });
        }
        Self::repack(rows, cols, bytes, Q8_0_BLOCK_BYTES, place)
    }
}

/// Writes one row's 32 block values (`i8` bits) into lane `lane` of the block's chunks.
fn place(qs: &[u8], lane: usize, chunks: &mut [Chunk]) {
    for (chunk, values) in chunks.iter_mut().zip(qs.chunks_exact(LANE_VALUES)) {
        for (stored, &q) in chunk.0[lane * LANE_VALUES..].iter_mut().zip(values) {
            *stored = q ^ 0x80;
        }
    }
}

/// GGML's `quantize_row_q8_0`: `d = max|w| / 127` (stored as f16), `q = round(w / d)`,
/// rounding half away from zero, as `i8` bits. Returns `d` as stored.
fn quantize_block(w: &[f32], qs: &mut [u8; Q8_0_BLOCK_VALUES]) -> f16 {
    let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, v) in qs.iter_mut().zip(w) {
        let y = v * inv;
        // Truncating `y ± 0.5` rounds half away from zero like `roundf`, and vectorises;
        // `as` saturates and maps NaN to 0.
        *q = (y + 0.5f32.copysign(y)) as i8 as u8;
    }
    f16::from_f32(d)
}
