//! Writes a Hugging Face Imp checkpoint folder with random weights and the exact shapes
//! of the chosen model: config.json, tokenizer files and one bf16 `model.safetensors`.
//! Each tensor is generated while it is written, so memory stays at one tensor.

use std::borrow::Cow;
use std::io;
use std::path::Path;

use safetensors::tensor::{Dtype, View};
use serde_json::json;

use super::shapes::{LmFamily, LmShape, VisionShape};
use super::vocab;

/// Standard deviation of the random weights (Phi-2's and SigLIP's initializer range).
const WEIGHT_STD: f32 = 0.02;
/// Output bias of the answer token: random logits spread about ±1, so this always wins
/// greedy decoding (see [`vocab::answer_token`]). Only Phi-2 has an output bias.
const ANSWER_BIAS: f32 = 20.0;

/// How a tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fill {
    Random {
        seed: u64,
    },
    Constant(f32),
    /// Zero except one value.
    Spike {
        index: usize,
        value: f32,
    },
}

#[derive(Debug, Clone)]
struct RandomTensor {
    shape: Vec<usize>,
    fill: Fill,
}

impl View for RandomTensor {
    fn dtype(&self) -> Dtype {
        Dtype::BF16
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let count: usize = self.shape.iter().product();
        let mut bytes = Vec::with_capacity(count * 2);
        match self.fill {
            Fill::Constant(value) => {
                let bits = bf16_bits(value).to_le_bytes();
                for _ in 0..count {
                    bytes.extend_from_slice(&bits);
                }
            }
            Fill::Spike { index, value } => {
                for i in 0..count {
                    let v = if i == index { value } else { 0.0 };
                    bytes.extend_from_slice(&bf16_bits(v).to_le_bytes());
                }
            }
            Fill::Random { seed } => {
                // Uniform on [-a, a] has standard deviation a / sqrt(3).
                let half_width = WEIGHT_STD * 3f32.sqrt();
                let mut rng = SplitMix64(seed);
                while bytes.len() < count * 2 {
                    let word = rng.next();
                    for lane in 0..4 {
                        if bytes.len() == count * 2 {
                            break;
                        }
                        let unit = ((word >> (16 * lane)) & 0xffff) as f32 / 65535.0;
                        let value = (unit * 2.0 - 1.0) * half_width;
                        bytes.extend_from_slice(&bf16_bits(value).to_le_bytes());
                    }
                }
            }
        }
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 2
    }
}

fn bf16_bits(value: f32) -> u16 {
    (value.to_bits() >> 16) as u16
}

/// SplitMix64 (Steele, Lea, Flood 2014). Hand-written on purpose: its output never changes
/// between crate versions, so cached benchmark models stay reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A per-tensor seed, so each tensor's values depend only on the seed and its name.
fn tensor_seed(seed: u64, name: &str) -> u64 {
    // FNV-1a over the name, mixed with the run's seed.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    SplitMix64(seed ^ hash).next()
}

struct TensorList {
    seed: u64,
    tensors: Vec<(String, RandomTensor)>,
}

impl TensorList {
    fn random(&mut self, name: String, shape: &[usize]) {
        let fill = Fill::Random {
            seed: tensor_seed(self.seed, &name),
        };
        self.push(name, shape, fill);
    }

    fn constant(&mut self, name: String, shape: &[usize], value: f32) {
        self.push(name, shape, Fill::Constant(value));
    }

    fn push(&mut self, name: String, shape: &[usize], fill: Fill) {
        let tensor = RandomTensor {
            shape: shape.to_vec(),
            fill,
        };
        self.tensors.push((name, tensor));
    }

    /// A linear layer: random weight `(out, inp)`, zero bias when it has one.
    fn linear(&mut self, prefix: &str, out: usize, inp: usize, bias: bool) {
        self.random(format!("{prefix}.weight"), &[out, inp]);
        if bias {
            self.constant(format!("{prefix}.bias"), &[out], 0.0);
        }
    }

    fn layer_norm(&mut self, prefix: &str, dim: usize) {
        self.constant(format!("{prefix}.weight"), &[dim], 1.0);
        self.constant(format!("{prefix}.bias"), &[dim], 0.0);
    }

    fn rms_norm(&mut self, prefix: &str, dim: usize) {
        self.constant(format!("{prefix}.weight"), &[dim], 1.0);
    }
}

fn language_model(list: &mut TensorList, lm: &LmShape) {
    let (h, v, i) = (lm.hidden, lm.vocab, lm.intermediate);
    let kv = lm.kv_heads * lm.head_dim();
    list.random("model.embed_tokens.weight".into(), &[v, h]);
    for layer in 0..lm.layers {
        let p = format!("model.layers.{layer}");
        match lm.family {
            LmFamily::Phi2 => {
                list.layer_norm(&format!("{p}.input_layernorm"), h);
                list.linear(&format!("{p}.self_attn.q_proj"), h, h, true);
                list.linear(&format!("{p}.self_attn.k_proj"), kv, h, true);
                list.linear(&format!("{p}.self_attn.v_proj"), kv, h, true);
                list.linear(&format!("{p}.self_attn.dense"), h, h, true);
                list.linear(&format!("{p}.mlp.fc1"), i, h, true);
                list.linear(&format!("{p}.mlp.fc2"), h, i, true);
            }
            LmFamily::Qwen2 => {
                list.rms_norm(&format!("{p}.input_layernorm"), h);
                list.rms_norm(&format!("{p}.post_attention_layernorm"), h);
                list.linear(&format!("{p}.self_attn.q_proj"), h, h, true);
                list.linear(&format!("{p}.self_attn.k_proj"), kv, h, true);
                list.linear(&format!("{p}.self_attn.v_proj"), kv, h, true);
                list.linear(&format!("{p}.self_attn.o_proj"), h, h, false);
                list.linear(&format!("{p}.mlp.gate_proj"), i, h, false);
                list.linear(&format!("{p}.mlp.up_proj"), i, h, false);
                list.linear(&format!("{p}.mlp.down_proj"), h, i, false);
            }
            LmFamily::Phi3 => {
                list.rms_norm(&format!("{p}.input_layernorm"), h);
                list.rms_norm(&format!("{p}.post_attention_layernorm"), h);
                list.linear(&format!("{p}.self_attn.qkv_proj"), h + 2 * kv, h, false);
                list.linear(&format!("{p}.self_attn.o_proj"), h, h, false);
                list.linear(&format!("{p}.mlp.gate_up_proj"), 2 * i, h, false);
                list.linear(&format!("{p}.mlp.down_proj"), h, i, false);
            }
        }
    }
    match lm.family {
        LmFamily::Phi2 => {
            list.layer_norm("model.final_layernorm", h);
            list.random("lm_head.weight".into(), &[v, h]);
            let bias = match vocab::answer_token(v) {
                Some(index) => Fill::Spike {
                    index,
                    value: ANSWER_BIAS,
                },
                None => Fill::Constant(0.0),
            };
            list.push("lm_head.bias".into(), &[v], bias);
        }
        LmFamily::Qwen2 | LmFamily::Phi3 => {
            list.rms_norm("model.norm", h);
            list.linear("lm_head", v, h, false);
        }
    }
}

fn vision_tower(list: &mut TensorList, vision: &VisionShape, image_size: usize, lm_hidden: usize) {
    let (d, ff) = (vision.hidden, vision.intermediate);
    let p = "model.vision_tower.vision_tower.vision_model";
    list.random(
        format!("{p}.embeddings.patch_embedding.weight"),
        &[d, 3, vision.patch, vision.patch],
    );
    list.constant(format!("{p}.embeddings.patch_embedding.bias"), &[d], 0.0);
    list.random(
        format!("{p}.embeddings.position_embedding.weight"),
        &[vision.visual_tokens(image_size), d],
    );
    for layer in 0..vision.layers {
        let l = format!("{p}.encoder.layers.{layer}");
        list.layer_norm(&format!("{l}.layer_norm1"), d);
        list.layer_norm(&format!("{l}.layer_norm2"), d);
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            list.linear(&format!("{l}.self_attn.{proj}"), d, d, true);
        }
        list.linear(&format!("{l}.mlp.fc1"), ff, d, true);
        list.linear(&format!("{l}.mlp.fc2"), d, ff, true);
    }
    list.linear("model.mm_projector.0", lm_hidden, d, true);
    list.linear("model.mm_projector.2", lm_hidden, lm_hidden, true);
}

fn config_json(lm: &LmShape, vision: &VisionShape, image_size: usize) -> serde_json::Value {
    let tower = json!({
        "model_type": "siglip_vision_model",
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": vision.hidden,
        "intermediate_size": vision.intermediate,
        "num_attention_heads": vision.heads,
        // The base tower; mm_vision_select_layer -2 keeps all but its last layer.
        "num_hidden_layers": vision.layers + 1,
        "image_size": image_size,
        "patch_size": vision.patch,
        "num_channels": 3,
        "layer_norm_eps": 1e-6,
    });
    let mut config = json!({
        "_name_or_path": "impchat-bench/random-weights",
        "hidden_size": lm.hidden,
        "num_hidden_layers": lm.layers,
        "num_attention_heads": lm.heads,
        "num_key_value_heads": lm.kv_heads,
        "intermediate_size": lm.intermediate,
        "max_position_embeddings": lm.context,
        "vocab_size": lm.vocab,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "image_token": "<image>",
        "mm_hidden_size": vision.hidden,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_vision_tower": format!("google/siglip-so400m-patch14-{image_size}"),
        "vision_tower_config": tower,
    });
    let family = match lm.family {
        LmFamily::Phi2 => json!({
            "model_type": "imp",
            "hidden_act": "gelu_new",
            "layer_norm_eps": 1e-5,
            "partial_rotary_factor": 0.4,
            "rope_theta": 10000.0,
            "image_aspect_ratio": "square",
        }),
        LmFamily::Qwen2 => json!({
            "model_type": "imp_qwen2",
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "image_aspect_ratio": "square",
        }),
        LmFamily::Phi3 => json!({
            "model_type": "imp_phi3",
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "image_aspect_ratio": "pad",
        }),
    };
    if let (Some(config), serde_json::Value::Object(extra)) = (config.as_object_mut(), family) {
        config.extend(extra);
    }
    config
}

/// Bytes `model.safetensors` will take for these shapes.
pub fn weight_bytes(lm: &LmShape, vision: &VisionShape, image_size: usize) -> u64 {
    tensor_list(lm, vision, image_size, 0)
        .tensors
        .iter()
        .map(|(_, t)| t.data_len() as u64)
        .sum()
}

fn tensor_list(lm: &LmShape, vision: &VisionShape, image_size: usize, seed: u64) -> TensorList {
    let mut list = TensorList {
        seed,
        tensors: Vec::new(),
    };
    language_model(&mut list, lm);
    vision_tower(&mut list, vision, image_size, lm.hidden);
    list
}

/// Writes the whole checkpoint folder `dir` (which must exist).
pub fn write(
    dir: &Path,
    lm: &LmShape,
    vision: &VisionShape,
    image_size: usize,
    seed: u64,
) -> io::Result<()> {
    let config = config_json(lm, vision, image_size);
    std::fs::write(dir.join("config.json"), config.to_string())?;
    vocab::write_tokenizer(dir, lm.vocab, lm.family)?;
    let list = tensor_list(lm, vision, image_size, seed);
    safetensors::serialize_to_file(list.tensors, None, &dir.join("model.safetensors"))
        .map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tensors_are_deterministic_and_spread_around_zero() {
        let tensor = RandomTensor {
            shape: vec![64, 64],
            fill: Fill::Random {
                seed: tensor_seed(7, "a"),
            },
        };
        let data = tensor.data();
        assert_eq!(data.len(), tensor.data_len());
        assert_eq!(data, tensor.data(), "same seed, same values");
        let values: Vec<f32> = data
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.002, "mean {mean}");
        assert!(
            (var.sqrt() - WEIGHT_STD).abs() < 0.002,
            "std {}",
            var.sqrt()
        );
        let other = RandomTensor {
            shape: vec![64, 64],
            fill: Fill::Random {
                seed: tensor_seed(7, "b"),
            },
        };
        assert_ne!(data, other.data(), "each tensor gets its own values");
    }

    #[test]
    fn imp_3b_checkpoint_has_the_real_parameter_count() {
        let shapes = super::super::shapes::BenchSize::Imp3B.shapes();
        let bytes = weight_bytes(&shapes.lm, &shapes.vision, 384);
        // Phi-2 2.78 B + SigLIP (26 layers) 0.40 B + projector 0.01 B, two bytes each.
        let params = bytes / 2;
        assert!((3_180_000_000..3_230_000_000).contains(&params), "{params}");
    }
}

#[cfg(test)]
mod convert_tests {
    use super::super::shapes::BenchSize;
    use super::*;
    use impchat_convert::{ConvertOptions, LmQuant};

    /// Every family's random checkpoint is one `impchat-convert` accepts, as 2b/4b need.
    #[test]
    fn checkpoints_of_every_family_convert() {
        let tiny = BenchSize::Tiny.shapes();
        for family in [LmFamily::Phi2, LmFamily::Qwen2, LmFamily::Phi3] {
            let dir = tempfile::tempdir().expect("temp dir");
            let src = dir.path().join("src");
            std::fs::create_dir_all(&src).expect("src dir");
            let lm = LmShape {
                family,
                ..tiny.lm.clone()
            };
            write(&src, &lm, &tiny.vision, 56, 1).expect("checkpoint written");
            let opts = ConvertOptions {
                lm: LmQuant::Q8_0,
                name: Some("t".into()),
                ..ConvertOptions::default()
            };
            let out = impchat_convert::convert(&src, &dir.path().join("out"), &opts, &mut |_| {})
                .unwrap_or_else(|e| panic!("{family:?} does not convert: {e}"));
            assert!(out.language_model.bytes > 0 && out.projector.bytes > 0);
        }
    }
}
