//! A Q6_K weight matrix times one f32 activation row: the decode step's matvec.
//!
//! Q4_K_M files keep `output`, `attn_qkv`/`attn_v` and some `ffn_down` in Q6_K; candle
//! runs those at one row with an AVX2 `vec_dot` per row. This kernel reads the same GGML
//! blocks (borrowed, not copied) with the int8 activations of [`Q8KRow`].

use rayon::prelude::*;

use super::block_bytes::BlockBytes;
use super::q4_k::{Q8KRow, SubBlockOrder, Q4_K_BLOCK_VALUES};
use super::q6_k_scalar;
use super::tier::Tier;
use super::KernelError;

/// Weights per Q6_K super-block.
pub const Q6_K_BLOCK_VALUES: usize = Q4_K_BLOCK_VALUES;
/// Bytes per Q6_K super-block: 128 bytes `ql` of low 4 bits, 64 bytes `qh` of high 2
/// bits, 16 signed 8-bit scales (one per 16 values), then an f16 `d`. In each half of
/// 128 values, `ql[i]` holds values `i` (low nibble) and `64 + i` (high nibble) for
/// `i < 64`, and bit pair `k` of `qh[i]` tops value `32k + i` (`i < 32`);
/// `w = d * scale[v / 16] * (q - 32)`.
pub const Q6_K_BLOCK_BYTES: usize = 210;
/// Values per scale.
pub(crate) const GROUP: usize = 16;
pub(crate) const GROUPS: usize = Q6_K_BLOCK_VALUES / GROUP;
/// Offsets inside a super-block.
pub(crate) const QH_AT: usize = 128;
pub(crate) const SCALES_AT: usize = 192;
pub(crate) const D_AT: usize = 208;

/// Output rows per parallel task (a 2560-wide row is 2.1 KB).
const TASK_ROWS: usize = 32;

/// An `rows x cols` weight matrix (`out x in`, as stored in a GGUF) of Q6_K blocks.
#[derive(Debug)]
pub struct Q6KMatrix {
    bytes: BlockBytes,
    rows: usize,
    cols: usize,
}

impl Q6KMatrix {
    /// A matrix over GGML Q6_K block bytes: `rows` rows of `cols / 256` super-blocks, row
    /// after row. The bytes are not copied. Fails if `cols` is not a positive multiple of
    /// 256, the byte count does not match, or a mapped range lies outside its mapping.
    pub fn new(bytes: BlockBytes, rows: usize, cols: usize) -> Result<Self, KernelError> {
        if cols == 0 || !cols.is_multiple_of(Q6_K_BLOCK_VALUES) {
            return Err(KernelError::Q6KBadColumns { cols });
        }
        bytes.validate()?;
        let expected = rows * (cols / Q6_K_BLOCK_VALUES) * Q6_K_BLOCK_BYTES;
        let found = bytes.as_slice().len();
        if found != expected {
            return Err(KernelError::Q6KWrongByteCount {
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
        self.cols / Q6_K_BLOCK_VALUES * Q6_K_BLOCK_BYTES
    }

    /// `W · x` for one activation row `x` of `cols` values: `rows` outputs, with the best
    /// instruction set this CPU has, on the current rayon pool.
    pub fn matvec(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        self.matvec_with(Tier::best(), x)
    }

    /// [`Q6KMatrix::matvec`] on a chosen tier (for tests and benchmarks).
    pub fn matvec_with(&self, tier: Tier, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        if x.len() != self.cols {
            return Err(KernelError::BadInput {
                len: x.len(),
                cols: self.cols,
            });
        }
        if !super::q4_k::tier_runs_k_quants(tier) {
            return Err(KernelError::TierUnavailable { tier });
        }
        let acts = Q8KRow::quantize(x, SubBlockOrder::Natural, GROUP);
        let row_bytes = self.row_bytes();
        let mut out = vec![0f32; self.rows];
        out.par_chunks_mut(TASK_ROWS)
            .zip(self.bytes.as_slice().par_chunks(TASK_ROWS * row_bytes))
            .for_each(|(out, w)| rows_dot(tier, w, row_bytes, &acts, out));
        Ok(out)
    }
}

/// `out[r] = w_r · x` for every weight row in `w`.
fn rows_dot(tier: Tier, w: &[u8], row_bytes: usize, acts: &Q8KRow, out: &mut [f32]) {
    if tier == Tier::Scalar {
        for (row, o) in w.chunks_exact(row_bytes).zip(out.iter_mut()) {
            *o = q6_k_scalar::dot_row(row, acts);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        const R: usize = super::q6_k_x86::ROWS;
        let done = out.len() / R * R;
        for (r, o) in out[..done].chunks_exact_mut(R).enumerate() {
            let rows = &w[r * R * row_bytes..(r + 1) * R * row_bytes];
            o.copy_from_slice(&super::q6_k_x86::dot_rows::<R>(tier, rows, row_bytes, acts));
        }
        for (r, o) in out.iter_mut().enumerate().skip(done) {
            let row = &w[r * row_bytes..(r + 1) * row_bytes];
            *o = super::q6_k_x86::dot_rows::<1>(tier, row, row_bytes, acts)[0];
        }
    }
}
