//! The decoder block Qwen2 and Phi-3 share once their q/k/v and gate/up projections are
//! fused at load: RMSNorm → attention → residual, then RMSNorm → SwiGLU MLP → residual.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::RmsNorm;

use super::attention::{attend, Causal};
use super::layers::split_qkv;
use super::rotary::Rotary;
use super::KvCache;
use crate::linear::Linear;

#[derive(Debug, Clone)]
pub struct SwiGluBlock {
    pub attn_norm: RmsNorm,
    /// `[q | k | v]`.
    pub qkv: Projection,
    pub o_proj: Linear,
    pub mlp_norm: RmsNorm,
    /// `[gate | up]`.
    pub gate_up: Projection,
    pub down: Linear,
}

/// Projections of one input whose outputs are used side by side: one stacked matrix, or,
/// when a quantized file stores the parts in different types (Q4_K_M gives some `attn_v`
/// more bits than `attn_q`), the parts run one after the other and their outputs join.
#[derive(Debug, Clone)]
pub enum Projection {
    Fused(Linear),
    Split(Vec<Linear>),
}

impl Module for Projection {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Projection::Fused(linear) => linear.forward(xs),
            Projection::Split(parts) => {
                let outs = parts
                    .iter()
                    .map(|p| p.forward(xs))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&outs, D::Minus1)
            }
        }
    }
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
    causal: Causal,
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
        xs = (xs + block.o_proj.forward(&attend(&q, &k, &v, causal)?)?)?;

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
