//! The mmproj's SigLIP tower as [`TowerWeights`]: every linear runs on the engine's Q8_0
//! kernel. F16/F32/BF16 weights are quantized to Q8_0 one tensor at a time (never the
//! whole tower in f32), Q8_0 weights are repacked as stored, and the mapped pages of each
//! tensor are handed back once read, so loading holds about the Q8_0 tower and no more.

use candle_core::quantized::GgmlDType;
use candle_core::Tensor;
use candle_nn::LayerNorm;
use half::{bf16, f16};

use super::{GgufFile, TensorBytes};
use crate::error::EngineError;
use crate::kernels::Q8_0Matrix;
use crate::linear::Linear;
use crate::vision::{TowerWeights, VisionAct, VisionConfig, VisionTower};

/// The SigLIP tower of an mmproj (`clip` architecture), its linears on the Q8_0 kernel.
pub fn load_vision_tower(file: &GgufFile) -> Result<VisionTower, EngineError> {
    file.expect_architecture("clip")?;
    VisionTower::load_from(&vision_config(file)?, &GgufTower::new(file))
}

fn vision_config(file: &GgufFile) -> Result<VisionConfig, EngineError> {
    let config = VisionConfig {
        hidden_size: file.usize("clip.vision.embedding_length")?,
        intermediate_size: file.usize("clip.vision.feed_forward_length")?,
        num_attention_heads: file.usize("clip.vision.attention.head_count")?,
        num_layers: file.usize("clip.vision.block_count")?,
        image_size: file.usize("clip.vision.image_size")?,
        patch_size: file.usize("clip.vision.patch_size")?,
        layer_norm_eps: file.f64_or("clip.vision.attention.layer_norm_epsilon", 1e-6)?,
        hidden_act: VisionAct::GeluTanh,
    };
    config.validate().map_err(|e| EngineError::InvalidConfig {
        path: file.path().to_path_buf(),
        reason: e.to_string(),
    })?;
    let present = crate::validate::count_layers(file.tensor_names(), "v.blk.");
    crate::validate::expect_kept_layers(config.num_layers, present, file.path())?;
    Ok(config)
}

/// The tower's tensors in an mmproj written with llama.cpp's clip names.
pub(crate) struct GgufTower<'a> {
    file: &'a GgufFile,
}

impl<'a> GgufTower<'a> {
    pub fn new(file: &'a GgufFile) -> Self {
        Self { file }
    }

    /// `encoder.layers.3.mlp.fc1` → `v.blk.3.ffn_up`.
    fn gguf_name(&self, hf: &str) -> Result<String, EngineError> {
        clip_name(hf).ok_or_else(|| EngineError::TensorMissing {
            name: format!("{hf} (no clip name for this Hugging Face tensor)"),
        })
    }

    fn corrupt(&self, reason: String) -> EngineError {
        EngineError::CorruptWeights {
            path: self.file.path().to_path_buf(),
            reason,
        }
    }

    /// One matrix from the layers `parts` (each `out_dim x in_dim`), stacked by rows.
    fn q8_0(
        &self,
        parts: &[(String, TensorBytes<'_>)],
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Q8_0Matrix, EngineError> {
        let rows = out_dim * parts.len();
        let names = || {
            parts
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let matrix = if parts.iter().all(|(_, t)| t.dtype == GgmlDType::Q8_0) {
            let blocks: Vec<u8> = parts
                .iter()
                .flat_map(|(_, t)| t.bytes.iter().copied())
                .collect();
            Q8_0Matrix::from_blocks(&blocks, rows, in_dim)
        } else {
            let sources = parts
                .iter()
                .map(|(name, t)| RowSource::new(self.file, name, t))
                .collect::<Result<Vec<_>, _>>()?;
            Q8_0Matrix::quantize(rows, in_dim, |r, row| {
                sources[r / out_dim].fill(r % out_dim, row)
            })
        };
        matrix.map_err(|e| self.corrupt(format!("tensor {}: {e}", names())))
    }

    /// Hands back the mapped pages of a tensor already converted, so the file's bytes
    /// and their Q8_0 copy are never both resident.
    fn release(&self, tensor: &TensorBytes<'_>) {
        #[cfg(unix)]
        {
            // SAFETY: the map is private and never written, so dropped pages read back the
            // same file bytes if anything touches them again. Purely advisory: a failure
            // only means the pages stay resident until the map is dropped.
            let _ = unsafe {
                self.file.mapping().unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    tensor.offset,
                    tensor.bytes.len(),
                )
            };
        }
        #[cfg(not(unix))]
        let _ = tensor;
    }
}

impl TowerWeights for GgufTower<'_> {
    type Error = EngineError;

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, EngineError> {
        let gguf = self.gguf_name(name)?;
        let found = self.file.shape(&gguf)?;
        if found != shape {
            return Err(EngineError::ShapeMismatch {
                name: gguf,
                expected: shape.to_vec(),
                found: found.to_vec(),
            });
        }
        self.file.f32(&gguf)
    }

    fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm, EngineError> {
        self.file.layer_norm(&self.gguf_name(name)?, dim, eps)
    }

    fn linear(
        &self,
        names: &[String],
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Linear, EngineError> {
        let mut parts = Vec::with_capacity(names.len());
        let mut biases = Vec::with_capacity(names.len());
        for hf in names {
            let name = self.gguf_name(hf)?;
            let weight = format!("{name}.weight");
            self.file.expect_matrix(&weight, (out_dim, in_dim))?;
            biases.push(self.file.bias(&format!("{name}.bias"), out_dim)?);
            let bytes = self.file.tensor_bytes(&weight)?;
            parts.push((weight, bytes));
        }
        let matrix = self.q8_0(&parts, in_dim, out_dim)?;
        for (_, tensor) in &parts {
            self.release(tensor);
        }
        Ok(Linear::q8_0(matrix, Some(Tensor::cat(&biases, 0)?)))
    }

    fn fuses_qkv(&self) -> bool {
        true
    }
}

/// One stored matrix read row by row as f32.
enum RowSource<'a> {
    F32(&'a [u8]),
    F16(&'a [u8]),
    BF16(&'a [u8]),
    /// Any other storage type, widened by candle (one tensor's worth of f32).
    Widened(Vec<f32>),
}

impl<'a> RowSource<'a> {
    fn new(file: &GgufFile, name: &str, tensor: &TensorBytes<'a>) -> Result<Self, EngineError> {
        Ok(match tensor.dtype {
            GgmlDType::F32 => Self::F32(tensor.bytes),
            GgmlDType::F16 => Self::F16(tensor.bytes),
            GgmlDType::BF16 => Self::BF16(tensor.bytes),
            _ => Self::Widened(file.f32(name)?.flatten_all()?.to_vec1()?),
        })
    }

    /// Writes row `r` (`row.len()` values) into `row`.
    fn fill(&self, r: usize, row: &mut [f32]) {
        let cols = row.len();
        match self {
            Self::F32(bytes) => {
                for (v, b) in row.iter_mut().zip(bytes[r * cols * 4..].chunks_exact(4)) {
                    *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Self::F16(bytes) => {
                for (v, b) in row.iter_mut().zip(bytes[r * cols * 2..].chunks_exact(2)) {
                    *v = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            Self::BF16(bytes) => {
                for (v, b) in row.iter_mut().zip(bytes[r * cols * 2..].chunks_exact(2)) {
                    *v = bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            Self::Widened(values) => row.copy_from_slice(&values[r * cols..(r + 1) * cols]),
        }
    }
}

/// Hugging Face tensor names under the tower and their clip names in an mmproj.
const LAYER_PARTS: [(&str, &str); 8] = [
    ("layer_norm1", "ln1"),
    ("layer_norm2", "ln2"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.out_proj", "attn_out"),
    ("mlp.fc1", "ffn_up"),
    ("mlp.fc2", "ffn_down"),
];

/// `encoder.layers.3.mlp.fc1` → `v.blk.3.ffn_up`; a trailing `.weight` / `.bias` is kept.
fn clip_name(hf: &str) -> Option<String> {
    let (stem, kind) = match hf.rsplit_once('.') {
        Some((stem, kind @ ("weight" | "bias"))) => (stem, Some(kind)),
        _ => (hf, None),
    };
    let clip = match stem {
        "embeddings.patch_embedding" => "v.patch_embd".to_string(),
        "embeddings.position_embedding" => "v.position_embd".to_string(),
        _ => {
            let rest = stem.strip_prefix("encoder.layers.")?;
            let (layer, part) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let (_, clip) = LAYER_PARTS.iter().find(|(hf, _)| *hf == part)?;
            format!("v.blk.{layer}.{clip}")
        }
    };
    Some(match kind {
        Some(kind) => format!("{clip}.{kind}"),
        None => clip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siglip_names_map_onto_clip_names() {
        assert_eq!(
            clip_name("encoder.layers.3.self_attn.out_proj.bias").as_deref(),
            Some("v.blk.3.attn_out.bias")
        );
        assert_eq!(
            clip_name("encoder.layers.25.mlp.fc2").as_deref(),
            Some("v.blk.25.ffn_down")
        );
        assert_eq!(
            clip_name("embeddings.patch_embedding.weight").as_deref(),
            Some("v.patch_embd.weight")
        );
        assert_eq!(clip_name("encoder.layers.0.unknown"), None);
        assert_eq!(clip_name("encoder.layers.x.mlp.fc1"), None);
    }
}
