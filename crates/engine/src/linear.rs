//! A linear layer whose weight is either dense or quantized, so every model file
//! works unchanged on safetensors (f32/f16/bf16) and on GGUF (Q4/Q8...).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::{
    BlockBytes, Q4KInterleaved, Q4_0Matrix, Q6KInterleaved, Q8_0Matrix, Tier, OWN_Q4_0_IS_FASTER,
};

/// How the weight is multiplied: candle's `QMatMul`, or one of our own kernels.
#[derive(Debug, Clone)]
pub enum Weight {
    Candle(QMatMul),
    /// Q4_0 blocks through [`crate::kernels`] (candle has no batched Q4_0 GEMM on x86).
    Q4_0(Arc<Q4_0Matrix>),
    /// Q8_0 blocks repacked for our int8 kernel (the GGUF vision tower).
    Q8_0(Arc<Q8_0Matrix>),
    /// Q4_K blocks repacked for our interleaved kernels (one copy for prefill and decode;
    /// candle's prefill tiles would take a third more memory than the blocks).
    Q4K(Arc<Q4KInterleaved>),
    /// Q6_K blocks repacked the same way, in the file's bytes (candle would keep its
    /// blocks and prefill tiles besides).
    Q6K(Arc<Q6KInterleaved>),
}

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    /// A dense layer from an `(out, in)` weight.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Candle(QMatMul::Tensor(weight)),
            bias,
        }
    }

    /// A layer over any `QMatMul` (quantized or dense). On x86_64 with AVX2, Q4_K and
    /// Q6_K weights are repacked for our interleaved kernels, and on x86_64 Q4_0 weights
    /// move to our own kernel (one copy of the blocks; the `QMatMul` is dropped);
    /// elsewhere candle keeps them (its aarch64 path has repacked NEON tiles), and so does
    /// any tensor whose blocks cannot be read back.
    pub fn from_qmatmul(weight: QMatMul, bias: Option<Tensor>) -> Self {
        if let Some(matrix) = own_q4_k(&weight) {
            return Self::q4_k(matrix, bias);
        }
        if let Some(matrix) = own_q6_k(&weight) {
            return Self::q6_k(matrix, bias);
        }
        if let Some(matrix) = own_q8_0(&weight) {
            return Self::q8_0(matrix, bias);
        }
        match own_q4_0(&weight) {
            Some(matrix) => Self::q4_0(matrix, bias),
            None => Self {
                weight: Weight::Candle(weight),
                bias,
            },
        }
    }

    pub fn q4_0(weight: Q4_0Matrix, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Q4_0(Arc::new(weight)),
            bias,
        }
    }

    /// A layer over a repacked Q4_K matrix (use it where [`own_interleaved_kernels_are_faster`]).
    pub fn q4_k(weight: Q4KInterleaved, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Q4K(Arc::new(weight)),
            bias,
        }
    }

    /// A layer over a repacked Q6_K matrix (use it where [`own_interleaved_kernels_are_faster`]).
    pub fn q6_k(weight: Q6KInterleaved, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Q6K(Arc::new(weight)),
            bias,
        }
    }

    /// A layer over a repacked Q8_0 matrix.
    pub fn q8_0(weight: Q8_0Matrix, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Q8_0(Arc::new(weight)),
            bias,
        }
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

    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// The Q4_0 blocks of `weight` as our own matrix, where our kernel is the faster one.
fn own_q4_0(weight: &QMatMul) -> Option<Q4_0Matrix> {
    let QMatMul::QTensor(q) = weight else {
        return None;
    };
    if !OWN_Q4_0_IS_FASTER || q.dtype() != GgmlDType::Q4_0 {
        return None;
    }
    let (rows, cols) = q.shape().dims2().ok()?;
    let bytes = BlockBytes::Owned(q.data().ok()?.into_owned());
    Q4_0Matrix::new(bytes, rows, cols).ok()
}

/// `weight`'s CPU tensor of type `dtype`, with its shape, where our Q4_K, Q6_K and Q8_0
/// kernels are the faster ones.
fn own_blocks(weight: &QMatMul, dtype: GgmlDType) -> Option<(BlockBytes, usize, usize)> {
    let QMatMul::QTensor(q) = weight else {
        return None;
    };
    if !own_interleaved_kernels_are_faster() || q.dtype() != dtype {
        return None;
    }
    let (rows, cols) = q.shape().dims2().ok()?;
    Some((BlockBytes::from_qtensor(q.clone())?, rows, cols))
}

/// Whether our Q4_K, Q6_K and Q8_0 kernels beat candle's here: x86_64 with AVX2 or
/// better (elsewhere candle has NEON tiles, or ours would run their scalar loops).
pub fn own_interleaved_kernels_are_faster() -> bool {
    cfg!(target_arch = "x86_64") && Tier::best() != Tier::Scalar
}

/// Q4_K blocks repacked for our kernels, where they are the faster ones.
fn own_q4_k(weight: &QMatMul) -> Option<Q4KInterleaved> {
    let (bytes, rows, cols) = own_blocks(weight, GgmlDType::Q4K)?;
    Q4KInterleaved::from_q4_k(bytes.as_slice(), rows, cols).ok()
}

/// Q6_K blocks repacked for our kernels, where they are the faster ones.
fn own_q6_k(weight: &QMatMul) -> Option<Q6KInterleaved> {
    let (bytes, rows, cols) = own_blocks(weight, GgmlDType::Q6K)?;
    Q6KInterleaved::from_q6_k(bytes.as_slice(), rows, cols).ok()
}

/// Q8_0 blocks repacked for our kernels, where they are the faster ones.
fn own_q8_0(weight: &QMatMul) -> Option<Q8_0Matrix> {
    let (bytes, rows, cols) = own_blocks(weight, GgmlDType::Q8_0)?;
    Q8_0Matrix::from_blocks(bytes.as_slice(), rows, cols).ok()
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = match &self.weight {
            Weight::Candle(w) => w.forward(xs)?,
            Weight::Q4_0(w) => return w.forward(xs, self.bias.as_ref()),
            Weight::Q8_0(w) => return w.forward(xs, self.bias.as_ref()),
            Weight::Q4K(w) => return w.forward(xs, self.bias.as_ref()),
            Weight::Q6K(w) => return w.forward(xs, self.bias.as_ref()),
        };
        match &self.bias {
            Some(b) => ys.broadcast_add(b),
            None => Ok(ys),
        }
    }
}
