//! A Q4_0 weight matrix and its matmul: f32 activations in, f32 outputs out.

use rayon::prelude::*;

use super::activations::{Layout, QuantizedRows};
use super::block_bytes::BlockBytes;
use super::q4_0_scalar;
use super::tier::Tier;
use super::KernelError;

/// Weights per Q4_0 block.
pub const Q4_0_BLOCK_VALUES: usize = 32;
/// Bytes per Q4_0 block: an f16 scale `d`, then 16 bytes of nibbles `q`, where byte `j`
/// holds value `j` (low nibble) and value `j + 16` (high nibble); `w = d * (q - 8)`.
pub const Q4_0_BLOCK_BYTES: usize = 18;

/// Output rows per parallel task: enough tasks to balance two threads, and few enough
/// that a task's weights stay in L2 while every token tile passes over them.
const TASK_ROWS_DECODE: usize = 32;
const TASK_ROWS_PREFILL: usize = 64;

/// An `rows x cols` weight matrix (`out x in`, as stored in a GGUF) of Q4_0 blocks.
#[derive(Debug)]
pub struct Q4_0Matrix {
    bytes: BlockBytes,
    rows: usize,
    cols: usize,
}

impl Q4_0Matrix {
    /// A matrix over GGML Q4_0 block bytes: `rows` rows of `cols / 32` blocks each, row
    /// after row, exactly as a GGUF tensor of shape `[cols, rows]` (GGUF order) stores them.
    /// The bytes are not copied: pass `BlockBytes::Mapped` for a memory-mapped file.
    /// Fails if `cols` is not a positive multiple of 32, the byte count does not match,
    /// or a mapped range lies outside its mapping.
    pub fn new(bytes: BlockBytes, rows: usize, cols: usize) -> Result<Self, KernelError> {
        if cols == 0 || !cols.is_multiple_of(Q4_0_BLOCK_VALUES) {
            return Err(KernelError::BadColumns { cols });
        }
        bytes.validate()?;
        let expected = rows * (cols / Q4_0_BLOCK_VALUES) * Q4_0_BLOCK_BYTES;
        let found = bytes.as_slice().len();
        if found != expected {
            return Err(KernelError::WrongByteCount {
                rows,
                cols,
                expected,
                found,
            });
        }
        Ok(Self { bytes, rows, cols })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn bytes(&self) -> &BlockBytes {
        &self.bytes
    }

    fn row_bytes(&self) -> usize {
        self.cols / Q4_0_BLOCK_VALUES * Q4_0_BLOCK_BYTES
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
        let layout = if tier == Tier::Avx512Vnni {
            Layout::Paired
        } else {
            Layout::Natural
        };
        let acts = QuantizedRows::quantize(x, self.cols, layout);
        Ok(self.matmul_quantized(tier, &acts))
    }

    fn matmul_quantized(&self, tier: Tier, acts: &QuantizedRows) -> Vec<f32> {
        let (m, n) = (acts.rows(), self.rows);
        if m == 0 || n == 0 {
            return Vec::new();
        }
        let task_rows = if m == 1 {
            TASK_ROWS_DECODE
        } else {
            TASK_ROWS_PREFILL
        };
        let row_bytes = self.row_bytes();
        let weights = self.bytes.as_slice();
        // Output transposed (`rows x m`) so each task owns one contiguous slice.
        let mut out_t = vec![0f32; n * m];
        out_t
            .par_chunks_mut(task_rows * m)
            .zip(weights.par_chunks(task_rows * row_bytes))
            .for_each(|(out, w)| rows_times_acts(tier, w, row_bytes, acts, out));
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

/// `out[r * m + t] = w_r · x_t` for every weight row in `w` and every activation row.
fn rows_times_acts(tier: Tier, w: &[u8], row_bytes: usize, acts: &QuantizedRows, out: &mut [f32]) {
    let m = acts.rows();
    if tier == Tier::Scalar {
        for (row, out) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(m)) {
            for (t, o) in out.iter_mut().enumerate() {
                *o = q4_0_scalar::dot_row(row, acts, t);
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let rows = w.len() / row_bytes;
        let (max_r, max_t) = super::q4_0_x86::max_tile(tier);
        for t0 in (0..m).step_by(max_t) {
            let nt = max_t.min(m - t0);
            for r0 in (0..rows).step_by(max_r) {
                let nr = max_r.min(rows - r0);
                let w = &w[r0 * row_bytes..];
                let out = &mut out[r0 * m..];
                simd_tile(tier, nr, nt, w, row_bytes, acts, t0, out);
            }
        }
    }
}

/// Runs the `nr x nt` tile (each at most 4) at weight row 0 of `w` and activation row `t0`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn simd_tile(
    tier: Tier,
    nr: usize,
    nt: usize,
    w: &[u8],
    row_bytes: usize,
    acts: &QuantizedRows,
    t0: usize,
    out: &mut [f32],
) {
    fn store<const R: usize, const T: usize>(
        tier: Tier,
        w: &[u8],
        row_bytes: usize,
        acts: &QuantizedRows,
        t0: usize,
        out: &mut [f32],
    ) {
        let m = acts.rows();
        let tile = super::q4_0_x86::tile::<R, T>(tier, w, row_bytes, acts, t0);
        for (r, row) in tile.iter().enumerate() {
            out[r * m + t0..r * m + t0 + T].copy_from_slice(row);
        }
    }
    let f = match (nr, nt) {
        (1, 1) => store::<1, 1>,
        (1, 2) => store::<1, 2>,
        (1, 3) => store::<1, 3>,
        (1, 4) => store::<1, 4>,
        (2, 1) => store::<2, 1>,
        (2, 2) => store::<2, 2>,
        (2, 3) => store::<2, 3>,
        (2, 4) => store::<2, 4>,
        (3, 1) => store::<3, 1>,
        (3, 2) => store::<3, 2>,
        (3, 3) => store::<3, 3>,
        (3, 4) => store::<3, 4>,
        (4, 1) => store::<4, 1>,
        (4, 2) => store::<4, 2>,
        (4, 3) => store::<4, 3>,
        _ => store::<4, 4>,
    };
    f(tier, w, row_bytes, acts, t0, out);
}
