//! A Q6_K weight matrix times one f32 activation row: the decode step's matvec.
//!
//! Q4_K_M files keep `output`, `attn_qkv`/`attn_v` and some `ffn_down` in Q6_K; candle
//! runs those at one row with an AVX2 `vec_dot` per row. This kernel reads the same GGML
//! blocks (borrowed, not copied) with the int8 activations of [`Q8KRow`].

use super::k_quant::{KQuant, KQuantMatrix, Kernels, K_QUANT_BLOCK_VALUES};
use super::q6_k_scalar;
use super::q8_k_row::Q8KRow;
use super::tier::Tier;

/// Weights per Q6_K super-block.
pub const Q6_K_BLOCK_VALUES: usize = K_QUANT_BLOCK_VALUES;
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

/// The Q6_K block format.
#[derive(Debug, Clone, Copy)]
pub struct Q6K;

/// A Q6_K matrix: [`KQuantMatrix`] over [`Q6K`] blocks.
pub type Q6KMatrix = KQuantMatrix<Q6K>;

impl KQuant for Q6K {
    const NAME: &'static str = "Q6_K";
    const BLOCK_BYTES: usize = Q6_K_BLOCK_BYTES;
}

impl Kernels for Q6K {
    fn quantize(_tier: Tier, x: &[f32]) -> Q8KRow {
        Q8KRow::quantize(x, GROUP)
    }

    fn rows_dot(tier: Tier, w: &[u8], row_bytes: usize, acts: &Q8KRow, out: &mut [f32]) {
        rows_dot(tier, w, row_bytes, acts, out);
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
