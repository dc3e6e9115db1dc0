//! Small loading helpers shared by the model files.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::linear::Linear;

/// Loads several `(out_i, in_dim)` projections that read the same input and stacks them
/// into one layer, so q/k/v (or gate/up) cost one matmul instead of several.
pub fn fused_linear(
    parts: &[(VarBuilder, usize)],
    in_dim: usize,
    with_bias: bool,
) -> Result<Linear> {
    let mut weights = Vec::with_capacity(parts.len());
    let mut biases = Vec::with_capacity(parts.len());
    for (vb, out_dim) in parts {
        weights.push(vb.get((*out_dim, in_dim), "weight")?);
        if with_bias {
            biases.push(vb.get(*out_dim, "bias")?);
        }
    }
    let weight = Tensor::cat(&weights, 0)?;
    let bias = if with_bias {
        Some(Tensor::cat(&biases, 0)?)
    } else {
        None
    };
    Ok(Linear::dense(weight, bias))
}

/// The output head: its own weight, or the input embedding when the config ties them.
pub fn lm_head(
    vb: VarBuilder,
    embedding: &Tensor,
    hidden: usize,
    vocab: usize,
    tied: bool,
    with_bias: bool,
) -> Result<Linear> {
    if tied && !vb.contains_tensor("weight") {
        return Ok(Linear::dense(embedding.clone(), None));
    }
    Linear::load(hidden, vocab, with_bias, vb)
}

/// Splits a fused `(1, L, (heads + 2 * kv_heads) * d)` projection into q, k, v shaped
/// `(1, heads, L, d)` / `(1, kv_heads, L, d)`.
pub fn split_qkv(
    qkv: &Tensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, len, _) = qkv.dims3()?;
    let part = |offset: usize, n: usize| -> Result<Tensor> {
        qkv.narrow(2, offset * head_dim, n * head_dim)?
            .reshape((1, len, n, head_dim))?
            .transpose(1, 2)
    };
    Ok((
        part(0, heads)?,
        part(heads, kv_heads)?,
        part(heads + kv_heads, kv_heads)?,
    ))
}
