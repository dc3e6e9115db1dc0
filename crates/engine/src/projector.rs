//! Imp's `mlp2x_gelu` projector: vision features → LM embedding space.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::linear::Linear;

/// The only `mm_projector_type` Imp checkpoints use.
pub const MLP2X_GELU: &str = "mlp2x_gelu";

/// `config.json` asks for a projector this engine does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "config.json's `mm_projector_type` {0:?} is not supported; Imp checkpoints use \
     \"mlp2x_gelu\""
)]
pub struct UnsupportedProjector(pub String);

/// Checks `mm_projector_type` (absent means the LLaVA default, `mlp2x_gelu` for Imp).
pub fn ensure_supported(
    projector_type: Option<&str>,
) -> std::result::Result<(), UnsupportedProjector> {
    match projector_type {
        None | Some(MLP2X_GELU) => Ok(()),
        Some(other) => Err(UnsupportedProjector(other.to_string())),
    }
}

/// `Linear(in → out)`, exact (erf) GELU, `Linear(out → out)`: tensors `0` and `2`.
#[derive(Debug, Clone)]
pub struct Projector {
    fc1: Linear,
    fc2: Linear,
}

impl Projector {
    /// `vb` points at `model.mm_projector` (or the old `transformer.mm_projector`).
    pub fn load(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: Linear::load(in_dim, out_dim, true, vb.pp("0"))?,
            fc2: Linear::load(out_dim, out_dim, true, vb.pp("2"))?,
        })
    }

    pub fn from_linears(fc1: Linear, fc2: Linear) -> Self {
        Self { fc1, fc2 }
    }

    /// (…, in_dim) → (…, out_dim).
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        // nn.GELU() defaults to the exact erf form, unlike the tower's tanh GELU.
        self.fc2.forward(&self.fc1.forward(features)?.gelu_erf()?)
    }
}

impl Module for Projector {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Projector::forward(self, xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mlp2x_gelu_is_accepted() {
        assert!(ensure_supported(None).is_ok());
        assert!(ensure_supported(Some("mlp2x_gelu")).is_ok());
        let err = ensure_supported(Some("linear")).unwrap_err();
        assert!(err.to_string().contains("\"linear\""));
    }
}
