//! The decoder block Qwen2 and Phi-3 share once their q/k/v and gate/up projections are
//! fused at load: RMSNorm → attention → residual, then RMSNorm → SwiGLU MLP → residual.

use candle_core::{Module, Result, Tensor};
use candle_nn::RmsNorm;

use super::attention::attend;
use super::layers::split_qkv;
use super::rotary::Rotary;
use super::KvCache;
use crate::linear::Linear;

#[derive(Debug, Clone)]
pub struct SwiGluBlock {
    pub attn_norm: RmsNorm,
    /// `[q | k | v]`.
    pub qkv: Linear,
    pub o_proj: Linear,
    pub mlp_norm: RmsNorm,
    /// `[gate | up]`.
    pub gate_up: Linear,
    pub down: Linear,
}

/// The sizes a block needs at run time.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
}

/// Runs `xs` at positions `pos..` through every block, extending `cache`.
pub fn run_blocks(
    blocks: &[SwiGluBlock],
    shape: BlockShape,
    rotary: &Rotary,
    mask: Option<&Tensor>,
    xs: &Tensor,
    cache: &mut KvCache,
    pos: usize,
) -> Result<Tensor> {
    let mut xs = xs.clone();
    for (i, block) in blocks.iter().enumerate() {
        let qkv = block.qkv.forward(&block.attn_norm.forward(&xs)?)?;
        let (q, k, v) = split_qkv(&qkv, shape.heads, shape.kv_heads, shape.head_dim)?;
        let q = rotary.apply(&q, pos)?;
        let k = rotary.apply(&k, pos)?;
        let (k, v) = cache.append(i, &k, &v)?;
        xs = (xs + block.o_proj.forward(&attend(&q, &k, &v, mask)?)?)?;

        let gate_up = block.gate_up.forward(&block.mlp_norm.forward(&xs)?)?;
        xs = (xs + block.down.forward(&swiglu(&gate_up, shape.intermediate)?)?)?;
    }
    Ok(xs)
}

/// `silu(gate) * up` from the fused `[gate | up]` projection.
fn swiglu(gate_up: &Tensor, intermediate: usize) -> Result<Tensor> {
    let gate = gate_up.narrow(2, 0, intermediate)?;
    let up = gate_up.narrow(2, intermediate, intermediate)?;
    candle_nn::ops::silu(&gate)? * up
}
