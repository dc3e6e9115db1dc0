//! A Q4_0 weight matrix and its matmul: f32 activations in, f32 outputs out.
//!
//! GGML stores Q4_0 row after row, each 32-value block an f16 scale followed by 16 bytes
//! of nibbles. At load the matrix is repacked into groups of [`GROUP_ROWS`] rows, block by
//! block: the four rows' 16 nibble bytes side by side (64 bytes, one AVX-512 load) and
//! their four scales apart. The kernels then unpack and scale four rows per instruction
//! instead of one, which is what lets a decode step run at memory speed. The repacked
//! copy takes exactly the bytes of the original.

use rayon::prelude::*;

use super::activations::QuantizedRows;
use super::block_bytes::BlockBytes;
use super::q4_0_scalar;
use super::tier::Tier;
use super::KernelError;

/// Weights per Q4_0 block.
pub const Q4_0_BLOCK_VALUES: usize = 32;
/// Bytes per Q4_0 block: an f16 scale `d`, then 16 bytes of nibbles `q`, where byte `j`
/// holds value `j` (low nibble) and value `j + 16` (high nibble); `w = d * (q - 8)`.
pub const Q4_0_BLOCK_BYTES: usize = 18;
/// Rows repacked side by side.
pub(crate) const GROUP_ROWS: usize = 4;
/// Nibble bytes of one block of one row.
pub(crate) const NIBBLE_BYTES: usize = Q4_0_BLOCK_VALUES / 2;

/// Row groups per parallel task: enough tasks to balance two threads, and few enough
/// that a task's weights stay in L2 while every token tile passes over them.
const TASK_GROUPS_DECODE: usize = 8;
const TASK_GROUPS_PREFILL: usize = 16;

/// An `rows x cols` weight matrix (`out x in`, as stored in a GGUF) of Q4_0 blocks,
/// repacked in groups of [`GROUP_ROWS`] rows.
#[derive(Debug)]
pub struct Q4_0Matrix {
    rows: usize,
    cols: usize,
    /// `[group][block][row in group][16]`; rows past `rows` in the last group are zero.
    nibbles: Vec<u8>,
    /// `[group][block][row in group]`, f16 bits.
    scales: Vec<u16>,
}

/// One group's view for the kernels: `blocks` blocks of 4 rows.
#[derive(Clone, Copy)]
pub(crate) struct Groups<'a> {
    pub nibbles: &'a [u8],
    pub scales: &'a [u16],
    pub blocks: usize,
}

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
        let blocks = cols / Q4_0_BLOCK_VALUES;
        let expected = rows * blocks * Q4_0_BLOCK_BYTES;
        if src.len() != expected {
            return Err(KernelError::WrongByteCount {
                rows,
                cols,
                expected,
                found: src.len(),
            });
        }
        let groups = rows.div_ceil(GROUP_ROWS);
        let mut nibbles = vec![0u8; groups * blocks * GROUP_ROWS * NIBBLE_BYTES];
        let mut scales = vec![0u16; groups * blocks * GROUP_ROWS];
        let row_bytes = blocks * Q4_0_BLOCK_BYTES;
        nibbles
            .par_chunks_mut(blocks * GROUP_ROWS * NIBBLE_BYTES)
            .zip(scales.par_chunks_mut(blocks * GROUP_ROWS))
            .enumerate()
            .for_each(|(g, (nibbles, scales))| {
                for r in 0..GROUP_ROWS.min(rows - g * GROUP_ROWS) {
                    let row = &src[(g * GROUP_ROWS + r) * row_bytes..][..row_bytes];
                    for (b, block) in row.chunks_exact(Q4_0_BLOCK_BYTES).enumerate() {
                        scales[b * GROUP_ROWS + r] = u16::from_le_bytes([block[0], block[1]]);
                        nibbles[(b * GROUP_ROWS + r) * NIBBLE_BYTES..][..NIBBLE_BYTES]
                            .copy_from_slice(&block[2..]);
                    }
                }
            });
        Ok(Self {
            rows,
            cols,
            nibbles,
            scales,
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes the repacked weights occupy (the same as the GGML blocks plus the zero rows
    /// that round the last group up to four).
    pub fn resident_bytes(&self) -> usize {
        self.nibbles.len() + 2 * self.scales.len()
    }

    /// `x · Wᵀ` for the row-major `m x cols` activations `x`: an `m x rows` result, with
    /// the best instruction set this CPU has, on the current rayon pool.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        self.matmul_with(Tier::best(), x)
    }

    /// [`Q4_0Matrix::matmul`] on a chosen tier (for tests and benchmarks).
    pub fn matmul_with(&self, tier: Tier, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        if !x.len().is_multiple_of(self.cols) {
            return Err(KernelError::BadInput {
                len: x.len(),
                cols: self.cols,
            });
        }
        if !tier.is_available() {
            return Err(KernelError::TierUnavailable { tier });
        }
        let acts = QuantizedRows::quantize(x, self.cols);
        Ok(self.matmul_quantized(tier, &acts))
    }

    fn matmul_quantized(&self, tier: Tier, acts: &QuantizedRows) -> Vec<f32> {
        let (m, n) = (acts.rows(), self.rows);
        if m == 0 || n == 0 {
            return Vec::new();
        }
        let task_groups = if m == 1 {
            TASK_GROUPS_DECODE
        } else {
            TASK_GROUPS_PREFILL
        };
        let blocks = self.cols / Q4_0_BLOCK_VALUES;
        let group_nibbles = blocks * GROUP_ROWS * NIBBLE_BYTES;
        let group_scales = blocks * GROUP_ROWS;
        let padded_rows = self.nibbles.len() / group_nibbles * GROUP_ROWS;
        // Output transposed (`rows x m`) so each task owns one contiguous slice.
        let mut out_t = vec![0f32; padded_rows * m];
        out_t
            .par_chunks_mut(task_groups * GROUP_ROWS * m)
            .zip(self.nibbles.par_chunks(task_groups * group_nibbles))
            .zip(self.scales.par_chunks(task_groups * group_scales))
            .for_each(|((out, nibbles), scales)| {
                let groups = Groups {
                    nibbles,
                    scales,
                    blocks,
                };
                groups_times_acts(tier, groups, acts, out);
            });
        out_t.truncate(n * m);
        if m == 1 {
            return out_t;
        }
        let mut out = vec![0f32; m * n];
        out.par_chunks_mut(n).enumerate().for_each(|(t, row)| {
            for (r, v) in row.iter_mut().enumerate() {
                *v = out_t[r * m + t];
            }
        });
        out
    }
}

/// `out[r * m + t] = w_r · x_t` for every row of the groups and every activation row.
fn groups_times_acts(tier: Tier, groups: Groups, acts: &QuantizedRows, out: &mut [f32]) {
    if tier == Tier::Scalar {
        q4_0_scalar::groups_times_acts(groups, acts, out);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    super::q4_0_x86::groups_times_acts(tier, groups, acts, out);
}
