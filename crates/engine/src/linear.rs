//! A linear layer whose weight is either dense or quantized, so every model file
//! works unchanged on safetensors (f32/f16/bf16) and on GGUF (Q4/Q8...).

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
}

impl Linear {
    /// A dense layer from an `(out, in)` weight.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight: QMatMul::Tensor(weight),
            bias,
        }
    }

    /// A layer over any `QMatMul` (quantized or dense).
    pub fn from_qmatmul(weight: QMatMul, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// Loads `weight` (and `bias` when `with_bias`) of shape `(out_dim, in_dim)` from `vb`.
    pub fn load(in_dim: usize, out_dim: usize, with_bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if with_bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self::dense(weight, bias))
    }

    pub fn weight(&self) -> &QMatMul {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.weight.forward(xs)?;
        match &self.bias {
            Some(b) => ys.broadcast_add(b),
            None => Ok(ys),
        }
    }
}
