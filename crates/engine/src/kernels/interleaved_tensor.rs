//! An [`Interleaved`] matrix (Q4_0, Q4_K or Q8_0) as a linear layer over candle tensors: the activations are read in
//! place (no copy when they are contiguous f32) and the bias is added by the kernel.

use candle_core::{bail, DType, Result, Storage, Tensor};

use super::interleaved::Interleaved;
use super::tier::Tier;

impl<const BITS: usize, const MINS: bool> Interleaved<BITS, MINS> {
    /// `(…, cols)` → `(…, rows)`: `xs · Wᵀ + bias`, in `xs`'s dtype.
    pub fn forward(&self, xs: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let dims = xs.dims();
        let Some((&k, batch)) = dims.split_last() else {
            bail!("a linear layer needs at least 1-D input, got a scalar");
        };
        if k != self.cols() {
            bail!(
                "linear layer expects {} input features, got shape {dims:?}",
                self.cols()
            );
        }
        let bias = bias
            .map(|b| b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        let x = xs.to_dtype(DType::F32)?.contiguous()?;
        let ys = {
            let (storage, layout) = x.storage_and_layout();
            let Storage::Cpu(cpu) = &*storage else {
                bail!(
                    "the {} kernel runs on the CPU; move the input there first",
                    Self::NAME
                );
            };
            let start = layout.start_offset();
            let values = &cpu.as_slice::<f32>()?[start..start + x.elem_count()];
            self.matmul_bias(Tier::best(), values, bias.as_deref())
                .map_err(candle_core::Error::wrap)?
        };
        let mut out_dims = batch.to_vec();
        out_dims.push(self.rows());
        Tensor::from_vec(ys, out_dims, xs.device())?.to_dtype(xs.dtype())
    }
}
