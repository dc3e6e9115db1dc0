//! What GGML's K-quant formats (Q4_K, Q6_K) share: super-blocks of 256 values, each
//! row a whole number of them.

use super::KernelError;

/// Weights per K-quant super-block.
pub const K_QUANT_BLOCK_VALUES: usize = 256;

/// The bytes of one row of `cols` values in super-blocks of `block_bytes`, after checking
/// that `found` bytes hold exactly `rows` such rows of the `quant` format.
pub(crate) fn row_bytes(
    quant: &'static str,
    block_bytes: usize,
    found: usize,
    rows: usize,
    cols: usize,
) -> Result<usize, KernelError> {
    if cols == 0 || !cols.is_multiple_of(K_QUANT_BLOCK_VALUES) {
        return Err(KernelError::KQuantBadColumns { quant, cols });
    }
    let row_bytes = cols / K_QUANT_BLOCK_VALUES * block_bytes;
    if found != rows * row_bytes {
        return Err(KernelError::KQuantWrongByteCount {
            quant,
            rows,
            cols,
            expected: rows * row_bytes,
            found,
        });
    }
    Ok(row_bytes)
}
