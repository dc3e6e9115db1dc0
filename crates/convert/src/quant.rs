//! Which storage type each tensor gets, following llama.cpp's `llama-quantize` choices
//! (`llama_tensor_get_type`, vendored llama.cpp 0c1e570), with one deliberate change:
//! a tensor whose input width does not fit the chosen block falls back to Q8_0 (block 32),
//! or F16 when even that does not fit, instead of llama.cpp's Q5_0/Q5_1 (which candle only
//! runs with scalar kernels on x86).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use crate::error::ConvertError;
use crate::options::{LmQuant, VisionQuant};

/// What a language-model tensor is, as far as the type choice cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmRole {
    TokenEmbedding,
    Output,
    /// `attn_v` or a fused `attn_qkv` of layer `.0`.
    AttnValue(usize),
    FfnDown(usize),
    OtherMatrix,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third
/// one in between, get more bits in the Q4_K_M mix.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    let (i, n) = (layer as i64, layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

pub fn lm_dtype(quant: LmQuant, role: LmRole, shape: &[usize], layers: usize) -> GgmlDType {
    let base = match quant {
        LmQuant::Q4_0 => GgmlDType::Q4_0,
        LmQuant::Q4KM => GgmlDType::Q4K,
        LmQuant::Q5K => GgmlDType::Q5K,
        LmQuant::Q6K => GgmlDType::Q6K,
        LmQuant::Q8_0 => GgmlDType::Q8_0,
        LmQuant::F16 => GgmlDType::F16,
    };
    let wanted = match role {
        // Norm weights and biases.
        _ if shape.len() < 2 => return GgmlDType::F32,
        LmRole::Output if !matches!(quant, LmQuant::Q8_0 | LmQuant::F16) => GgmlDType::Q6K,
        LmRole::AttnValue(layer) | LmRole::FfnDown(layer)
            if quant == LmQuant::Q4KM && use_more_bits(layer, layers) =>
        {
            GgmlDType::Q6K
        }
        _ => base,
    };
    fit(wanted, shape)
}

pub fn vision_dtype(quant: VisionQuant, name: &str, shape: &[usize]) -> GgmlDType {
    if shape.len() < 2 || !name.ends_with(".weight") || name.contains(".ln") {
        return GgmlDType::F32;
    }
    if name.starts_with("v.patch_embd") || name.starts_with("v.position_embd") {
        return GgmlDType::F16;
    }
    match quant {
        VisionQuant::F16 => GgmlDType::F16,
        VisionQuant::Q8_0 => fit(GgmlDType::Q8_0, shape),
    }
}

/// The block types need the innermost dimension to be a whole number of blocks.
fn fit(wanted: GgmlDType, shape: &[usize]) -> GgmlDType {
    let cols = shape.last().copied().unwrap_or(0);
    [wanted, GgmlDType::Q8_0, GgmlDType::F16]
        .into_iter()
        .find(|d| cols % d.block_size() == 0)
        .unwrap_or(GgmlDType::F32)
}

/// The bytes of `tensor` stored as `dtype`.
pub fn encode(name: &str, tensor: &Tensor, dtype: GgmlDType) -> Result<Vec<u8>, ConvertError> {
    let fail = |e: candle_core::Error| ConvertError::Quantize {
        name: name.to_owned(),
        dtype: format!("{dtype:?}"),
        detail: e.to_string(),
    };
    let q = QTensor::quantize(tensor, dtype).map_err(fail)?;
    Ok(q.data().map_err(fail)?.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_mix_matches_llama_cpp_for_32_layers() {
        // llama-quantize on Phi-2 (32 layers) puts Q6_K on attn_qkv/ffn_down of these layers.
        let more: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            more,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        let shape = [7680, 2560];
        assert_eq!(
            lm_dtype(LmQuant::Q4KM, LmRole::AttnValue(0), &shape, 32),
            GgmlDType::Q6K
        );
        assert_eq!(
            lm_dtype(LmQuant::Q4KM, LmRole::AttnValue(4), &shape, 32),
            GgmlDType::Q4K
        );
        assert_eq!(
            lm_dtype(LmQuant::Q4KM, LmRole::Output, &[51200, 2560], 32),
            GgmlDType::Q6K
        );
        assert_eq!(
            lm_dtype(LmQuant::Q4_0, LmRole::Output, &[51200, 2560], 32),
            GgmlDType::Q6K
        );
        assert_eq!(
            lm_dtype(LmQuant::Q8_0, LmRole::Output, &[51200, 2560], 32),
            GgmlDType::Q8_0
        );
        assert_eq!(
            lm_dtype(LmQuant::Q4KM, LmRole::OtherMatrix, &[2560], 32),
            GgmlDType::F32
        );
    }

    #[test]
    fn widths_that_do_not_fit_fall_back_to_q8_0_then_f16() {
        // Qwen1.5-1.8B down_proj: 5504 = 21.5 × 256.
        assert_eq!(
            lm_dtype(LmQuant::Q4KM, LmRole::OtherMatrix, &[2048, 5504], 24),
            GgmlDType::Q8_0
        );
        assert_eq!(
            lm_dtype(LmQuant::Q4_0, LmRole::OtherMatrix, &[64, 40], 2),
            GgmlDType::F16
        );
        assert_eq!(
            vision_dtype(VisionQuant::Q8_0, "v.blk.0.ffn_down.weight", &[1152, 4304]),
            GgmlDType::F16
        );
        assert_eq!(
            vision_dtype(VisionQuant::Q8_0, "v.blk.0.ffn_up.weight", &[4304, 1152]),
            GgmlDType::Q8_0
        );
        assert_eq!(
            vision_dtype(VisionQuant::Q8_0, "v.blk.0.ln1.weight", &[1152]),
            GgmlDType::F32
        );
    }
}
