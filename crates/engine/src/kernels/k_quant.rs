//! A K-quant weight matrix times one f32 activation row: the decode step's matvec, over
//! GGML's own blocks of 256 values (borrowed, not copied). The block format's dot
//! products come from a [`KQuant`] type ([`super::Q6K`]).

use std::fmt;
use std::marker::PhantomData;

use rayon::prelude::*;

use super::block_bytes::BlockBytes;
use super::q8_k_row::Q8KRow;
use super::tier::Tier;
use super::KernelError;

/// Weights per K-quant super-block.
pub const K_QUANT_BLOCK_VALUES: usize = 256;

/// Output rows per parallel task: a task reads 32 rows (67 KB of Q6_K for a 2560-wide
/// Phi-2 row), enough tasks to balance two threads and few enough to keep rayon's cost low.
const TASK_ROWS: usize = 32;

/// One K-quant block format; its kernels stay inside the engine ([`Kernels`]).
pub trait KQuant: Kernels {
    /// GGML's name of the type, for errors.
    const NAME: &'static str;
    /// Bytes per super-block of [`K_QUANT_BLOCK_VALUES`] values.
    const BLOCK_BYTES: usize;
}

pub(crate) use sealed::Kernels;

mod sealed {
    use super::{Q8KRow, Tier};

    /// A format's kernels (sealed: only the engine's formats implement it).
    pub trait Kernels {
        /// `x` in the int8 layout this format's kernel on `tier` reads.
        fn quantize(tier: Tier, x: &[f32]) -> Q8KRow;

        /// `out[r] = w_r · x` for every weight row in `w` (`row_bytes` each), on a tier
        /// that runs here.
        fn rows_dot(tier: Tier, w: &[u8], row_bytes: usize, acts: &Q8KRow, out: &mut [f32]);
    }
}

/// An `rows x cols` weight matrix (`out x in`, as stored in a GGUF) of `Q` blocks.
pub struct KQuantMatrix<Q> {
    bytes: BlockBytes,
    rows: usize,
    cols: usize,
    quant: PhantomData<Q>,
}

impl<Q: KQuant> KQuantMatrix<Q> {
    /// A matrix over GGML block bytes: `rows` rows of `cols / 256` super-blocks, row after
    /// row, as a GGUF tensor of shape `[cols, rows]` (or a candle `QTensor` of shape
    /// `(rows, cols)`) stores them. The bytes are not copied. Fails if `cols` is not a
    /// positive multiple of 256, the byte count does not match, or a mapped range lies
    /// outside its mapping.
    pub fn new(bytes: BlockBytes, rows: usize, cols: usize) -> Result<Self, KernelError> {
        if cols == 0 || !cols.is_multiple_of(K_QUANT_BLOCK_VALUES) {
            return Err(KernelError::KQuantBadColumns {
                quant: Q::NAME,
                cols,
            });
        }
        bytes.validate()?;
        let expected = rows * (cols / K_QUANT_BLOCK_VALUES) * Q::BLOCK_BYTES;
        let found = bytes.as_slice().len();
        if found != expected {
            return Err(KernelError::KQuantWrongByteCount {
                quant: Q::NAME,
                rows,
                cols,
                expected,
                found,
            });
        }
        Ok(Self {
            bytes,
            rows,
            cols,
            quant: PhantomData,
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

    pub fn bytes(&self) -> &BlockBytes {
        &self.bytes
    }

    /// `W · x` for one activation row `x` of `cols` values: `rows` outputs, with the best
    /// instruction set this CPU has, on the current rayon pool.
    pub fn matvec(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        self.matvec_with(Tier::best(), x)
    }

    /// [`KQuantMatrix::matvec`] on a chosen tier (for tests and benchmarks).
    pub fn matvec_with(&self, tier: Tier, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        if x.len() != self.cols {
            return Err(KernelError::BadInput {
                len: x.len(),
                cols: self.cols,
            });
        }
        if !tier_runs_k_quants(tier) {
            return Err(KernelError::TierUnavailable { tier });
        }
        let acts = Q::quantize(tier, x);
        let row_bytes = self.cols / K_QUANT_BLOCK_VALUES * Q::BLOCK_BYTES;
        let mut out = vec![0f32; self.rows];
        out.par_chunks_mut(TASK_ROWS)
            .zip(self.bytes.as_slice().par_chunks(TASK_ROWS * row_bytes))
            .for_each(|(out, w)| Q::rows_dot(tier, w, row_bytes, &acts, out));
        Ok(out)
    }
}

impl<Q: KQuant> fmt::Debug for KQuantMatrix<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(&format!("{}Matrix", Q::NAME))
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// Whether `tier` can run here; the AVX-512 kernels also need AVX512-BW, which every
/// AVX512-VNNI CPU has, but it is checked rather than assumed.
pub(crate) fn tier_runs_k_quants(tier: Tier) -> bool {
    #[cfg(target_arch = "x86_64")]
    if tier == Tier::Avx512Vnni && !std::is_x86_feature_detected!("avx512bw") {
        return false;
    }
    tier.is_available()
}
