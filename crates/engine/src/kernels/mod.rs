//! Our own CPU matmul kernels for quantized weights where candle's are the bottleneck.
//!
//! Candle 0.11.1 has no batched Q4_0 GEMM on x86 (prefill runs one row at a time), so
//! [`Q4_0Matrix`] and [`Q8_0Matrix`] ([`Interleaved`]) multiply f32 activations by GGML
//! blocks directly: activations are quantized once per call to int8 blocks of 32, then
//! int8 dot products run with AVX512-VNNI, AVX-VNNI or AVX2 (picked at run time), or a
//! portable scalar loop. At load the blocks are repacked 16 rows side by side, in about
//! as many bytes as the file holds, so one `vpdpbusd` advances 16 rows; Q4_K and Q6_K
//! are repacked the same way ([`Q4KInterleaved`], [`Q6KInterleaved`]). [`attention`] is
//! flash-style attention on f32 rows (candle builds the whole score matrix and mask).

mod activations;
mod attention;
mod block_bytes;
mod gelu;
mod interleaved;
mod interleaved_tensor;
#[cfg(target_arch = "x86_64")]
mod interleaved_x86;
mod k_quant;
mod q4_0;
mod q4_k;
mod q4_k_interleaved;
mod q6_k;
mod q6_k_interleaved;
mod q8_0;
mod tier;

pub use attention::{attention, AttentionError, AttentionInput, KvValue, Visibility};
pub use block_bytes::{BlockBytes, QTensorBytes};
pub use gelu::gelu_tanh;
pub use interleaved::{Interleaved, Q4_0Matrix, Q8_0Matrix};
pub use k_quant::K_QUANT_BLOCK_VALUES;
pub use q4_0::{Q4_0_BLOCK_BYTES, Q4_0_BLOCK_VALUES};
pub use q4_k::{Q4_K_BLOCK_BYTES, Q4_K_BLOCK_VALUES};
pub use q4_k_interleaved::Q4KInterleaved;
pub use q6_k::{Q6_K_BLOCK_BYTES, Q6_K_BLOCK_VALUES};
pub use q6_k_interleaved::Q6KInterleaved;
pub use q8_0::{Q8_0_BLOCK_BYTES, Q8_0_BLOCK_VALUES};
pub use tier::Tier;

/// Whether [`Q4_0Matrix`] beats candle's `QMatMul` for Q4_0 on this target: everywhere
/// but aarch64, where candle repacks Q4_0 into NEON dot-product tiles and our kernel
/// would run its scalar path. Loaders pick [`crate::linear::Linear::q4_0`] only when true.
pub const OWN_Q4_0_IS_FASTER: bool = cfg!(not(target_arch = "aarch64"));

/// Why a quantized matrix could not be built from the bytes it was given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error(
        "a Q4_0 matrix needs a column count that is a positive multiple of 32, got {cols}; \
         the tensor is not Q4_0 or its shape is wrong"
    )]
    BadColumns { cols: usize },

    #[error(
        "a {rows}x{cols} Q4_0 matrix needs {expected} bytes of blocks, got {found}; \
         the file is truncated or the tensor's type or shape is wrong"
    )]
    WrongByteCount {
        rows: usize,
        cols: usize,
        expected: usize,
        found: usize,
    },

    #[error(
        "byte range {start}..{end} lies outside the {len}-byte mapping; the file is truncated"
    )]
    RangeOutOfBounds {
        start: usize,
        end: usize,
        len: usize,
    },

    #[error(
        "a {quant} matrix needs a column count that is a positive multiple of 256, got \
         {cols}; the tensor is not {quant} or its shape is wrong"
    )]
    KQuantBadColumns { quant: &'static str, cols: usize },

    #[error(
        "a {rows}x{cols} {quant} matrix needs {expected} bytes of blocks, got {found}; \
         the file is truncated or the tensor's type or shape is wrong"
    )]
    KQuantWrongByteCount {
        quant: &'static str,
        rows: usize,
        cols: usize,
        expected: usize,
        found: usize,
    },

    #[error(
        "a Q8_0 matrix stored as GGML blocks needs a column count that is a positive \
         multiple of 32, got {cols}; the tensor is not Q8_0 or its shape is wrong"
    )]
    BadQ8_0Columns { cols: usize },

    #[error(
        "a {rows}x{cols} Q8_0 matrix needs {expected} bytes of blocks, got {found}; \
         the file is truncated or the tensor's type or shape is wrong"
    )]
    WrongQ8_0ByteCount {
        rows: usize,
        cols: usize,
        expected: usize,
        found: usize,
    },

    #[error("a bias of {len} values does not fit a layer with {rows} outputs")]
    BadBias { len: usize, rows: usize },

    #[error("a {rows}x{cols} weight matrix is empty; the tensor's shape is wrong")]
    EmptyMatrix { rows: usize, cols: usize },

    #[error("{len} input values do not split into rows of {cols}; the activation width is wrong")]
    BadInput { len: usize, cols: usize },

    #[error("the {tier:?} kernels need CPU features this machine lacks")]
    TierUnavailable { tier: Tier },
}
