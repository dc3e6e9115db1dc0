//! Rotary position embeddings, NeoX style (rotate-half), optionally on the first
//! `rotary_dim` channels of each head only (Phi-2 rotates 32 of 80).

use candle_core::{DType, Device, Result, Tensor, D};

#[derive(Debug, Clone)]
pub struct Rotary {
    rotary_dim: usize,
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    /// Tables for positions `0..max_positions`.
    pub fn new(
        rotary_dim: usize,
        theta: f64,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) {
            candle_core::bail!("rotary dimension must be even and positive, got {rotary_dim}");
        }
        let inv_freq: Vec<f32> = (0..rotary_dim)
            .step_by(2)
            .map(|i| (1.0 / theta.powf(i as f64 / rotary_dim as f64)) as f32)
            .collect();
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Self {
            rotary_dim,
            cos: freqs.cos()?,
            sin: freqs.sin()?,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `xs` `(1, heads, L, head_dim)` whose first row sits at position `pos`.
    pub fn apply(&self, xs: &Tensor, pos: usize) -> Result<Tensor> {
        let (_, _, len, head_dim) = xs.dims4()?;
        if pos + len > self.max_positions() {
            candle_core::bail!(
                "position {} is past the model's limit of {}",
                pos + len,
                self.max_positions()
            );
        }
        let cos = self.cos.narrow(0, pos, len)?;
        let sin = self.sin.narrow(0, pos, len)?;
        if self.rotary_dim == head_dim {
            return candle_nn::rotary_emb::rope(&xs.contiguous()?, &cos, &sin);
        }
        let rotated = xs.narrow(D::Minus1, 0, self.rotary_dim)?.contiguous()?;
        let rotated = candle_nn::rotary_emb::rope(&rotated, &cos, &sin)?;
        let kept = xs.narrow(D::Minus1, self.rotary_dim, head_dim - self.rotary_dim)?;
        Tensor::cat(&[&rotated, &kept], D::Minus1)
    }
}
