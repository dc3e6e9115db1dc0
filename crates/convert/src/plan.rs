//! Maps checkpoint tensors to GGUF tensors: llama.cpp's names for the language model
//! (`token_embd`, `blk.N.attn_qkv`, …) and its clip names for the vision tower
//! (`v.blk.N.attn_q`, `mm.0`, …), checking every shape against config.json.

use candle_core::Tensor;

use crate::checkpoint::Checkpoint;
use crate::config::{Family, ModelConfig};
use crate::error::ConvertError;
use crate::gguf::TensorSpec;
use crate::options::{LmQuant, VisionQuant};
use crate::quant::{self, LmRole};

/// One output tensor and the checkpoint tensors it is made of (rows concatenated in order).
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: TensorSpec,
    pub sources: Vec<String>,
}

impl Planned {
    /// Reads the sources and returns the tensor's bytes in its planned type.
    pub fn produce(&self, checkpoint: &Checkpoint) -> Result<Vec<u8>, ConvertError> {
        let parts = self
            .sources
            .iter()
            .map(|s| checkpoint.load_f32(s))
            .collect::<Result<Vec<_>, _>>()?;
        let tensor = if parts.len() == 1 {
            parts
                .into_iter()
                .next()
                .ok_or_else(|| self.internal("no source"))?
        } else {
            Tensor::cat(&parts, 0).map_err(|e| self.internal(&e.to_string()))?
        };
        quant::encode(&self.spec.name, &tensor, self.spec.dtype)
    }

    fn internal(&self, detail: &str) -> ConvertError {
        ConvertError::Quantize {
            name: self.spec.name.clone(),
            dtype: format!("{:?}", self.spec.dtype),
            detail: detail.into(),
        }
    }
}

/// Builds the plan entry by entry, checking each source's shape as it goes.
struct Builder<'a> {
    checkpoint: &'a Checkpoint,
    out: Vec<Planned>,
}

impl Builder<'_> {
    /// `sources`: (checkpoint name, expected shape); several are stacked along rows.
    fn add(
        &mut self,
        name: String,
        sources: Vec<(String, Vec<usize>)>,
        dtype_of: impl FnOnce(&[usize]) -> candle_core::quantized::GgmlDType,
    ) -> Result<(), ConvertError> {
        let mut shape: Vec<usize> = Vec::new();
        for (source, expected) in &sources {
            self.checkpoint.expect_shape(source, expected)?;
            match shape.first_mut() {
                Some(rows) => *rows += expected[0],
                None => shape = expected.clone(),
            }
        }
        let dtype = dtype_of(&shape);
        self.out.push(Planned {
            spec: TensorSpec { name, shape, dtype },
            sources: sources.into_iter().map(|(s, _)| s).collect(),
        });
        Ok(())
    }
}

/// Source names of one checkpoint layout.
struct LmNames {
    embed: &'static str,
    layer: &'static str,
    final_norm: &'static str,
    head: &'static str,
}

fn lm_names(family: Family, checkpoint: &Checkpoint) -> LmNames {
    let old_phi = family == Family::Phi2 && checkpoint.contains("transformer.embd.wte.weight");
    if old_phi {
        LmNames {
            embed: "transformer.embd.wte",
            layer: "transformer.h.",
            final_norm: "lm_head.ln",
            head: "lm_head.linear",
        }
    } else {
        let final_norm = if family == Family::Phi2 {
            "model.final_layernorm"
        } else {
            "model.norm"
        };
        LmNames {
            embed: "model.embed_tokens",
            layer: "model.layers.",
            final_norm,
            head: "lm_head",
        }
    }
}

pub fn lm_plan(
    config: &ModelConfig,
    checkpoint: &Checkpoint,
    quant: LmQuant,
) -> Result<Vec<Planned>, ConvertError> {
    let c = &config.lm;
    let family = config.family;
    let names = lm_names(family, checkpoint);
    let old_phi = names.layer == "transformer.h.";
    let (h, v, ff, n) = (c.hidden, c.vocab_size, c.intermediate, c.layers);
    let kv = c.kv_heads * c.head_dim();
    let mut b = Builder {
        checkpoint,
        out: Vec::new(),
    };
    let vector = |_: &[usize]| candle_core::quantized::GgmlDType::F32;
    let dtype = |role: LmRole| move |shape: &[usize]| quant::lm_dtype(quant, role, shape, n);
    let w = |name: &str| format!("{name}.weight");
    let bias = |name: &str| format!("{name}.bias");
    let has_bias = family == Family::Phi2;

    b.add(
        "token_embd.weight".into(),
        vec![(w(names.embed), vec![v, h])],
        dtype(LmRole::TokenEmbedding),
    )?;
    for i in 0..n {
        let src = |part: &str| format!("{}{i}.{part}", names.layer);
        let dst = |part: &str| format!("blk.{i}.{part}");
        let (norm, out_proj) = match (family, old_phi) {
            (Family::Phi2, true) => ("ln", "mixer.out_proj"),
            (Family::Phi2, false) => ("input_layernorm", "self_attn.dense"),
            _ => ("input_layernorm", "self_attn.o_proj"),
        };
        b.add(
            dst("attn_norm.weight"),
            vec![(w(&src(norm)), vec![h])],
            vector,
        )?;
        if has_bias {
            b.add(
                dst("attn_norm.bias"),
                vec![(bias(&src(norm)), vec![h])],
                vector,
            )?;
        }
        match (family, old_phi) {
            (Family::Phi2, true) => {
                let qkv = src("mixer.Wqkv");
                b.add(
                    dst("attn_qkv.weight"),
                    vec![(w(&qkv), vec![h + 2 * kv, h])],
                    dtype(LmRole::AttnValue(i)),
                )?;
                b.add(
                    dst("attn_qkv.bias"),
                    vec![(bias(&qkv), vec![h + 2 * kv])],
                    vector,
                )?;
            }
            (Family::Phi2, false) => {
                let parts = [("q_proj", h), ("k_proj", kv), ("v_proj", kv)];
                let weights = parts
                    .iter()
                    .map(|(p, rows)| (w(&src(&format!("self_attn.{p}"))), vec![*rows, h]))
                    .collect();
                let biases = parts
                    .iter()
                    .map(|(p, rows)| (bias(&src(&format!("self_attn.{p}"))), vec![*rows]))
                    .collect();
                b.add(dst("attn_qkv.weight"), weights, dtype(LmRole::AttnValue(i)))?;
                b.add(dst("attn_qkv.bias"), biases, vector)?;
            }
            (Family::Qwen2, _) => {
                for (p, gguf, rows) in [
                    ("q_proj", "attn_q", h),
                    ("k_proj", "attn_k", kv),
                    ("v_proj", "attn_v", kv),
                ] {
                    let role = if gguf == "attn_v" {
                        LmRole::AttnValue(i)
                    } else {
                        LmRole::OtherMatrix
                    };
                    let s = src(&format!("self_attn.{p}"));
                    b.add(
                        dst(&format!("{gguf}.weight")),
                        vec![(w(&s), vec![rows, h])],
                        dtype(role),
                    )?;
                    b.add(
                        dst(&format!("{gguf}.bias")),
                        vec![(bias(&s), vec![rows])],
                        vector,
                    )?;
                }
            }
            (Family::Phi3, _) => {
                b.add(
                    dst("attn_qkv.weight"),
                    vec![(w(&src("self_attn.qkv_proj")), vec![h + 2 * kv, h])],
                    dtype(LmRole::AttnValue(i)),
                )?;
            }
        }
        b.add(
            dst("attn_output.weight"),
            vec![(w(&src(out_proj)), vec![h, h])],
            dtype(LmRole::OtherMatrix),
        )?;
        if has_bias {
            b.add(
                dst("attn_output.bias"),
                vec![(bias(&src(out_proj)), vec![h])],
                vector,
            )?;
        }
        match family {
            Family::Phi2 => {
                b.add(
                    dst("ffn_up.weight"),
                    vec![(w(&src("mlp.fc1")), vec![ff, h])],
                    dtype(LmRole::OtherMatrix),
                )?;
                b.add(
                    dst("ffn_up.bias"),
                    vec![(bias(&src("mlp.fc1")), vec![ff])],
                    vector,
                )?;
                b.add(
                    dst("ffn_down.weight"),
                    vec![(w(&src("mlp.fc2")), vec![h, ff])],
                    dtype(LmRole::FfnDown(i)),
                )?;
                b.add(
                    dst("ffn_down.bias"),
                    vec![(bias(&src("mlp.fc2")), vec![h])],
                    vector,
                )?;
            }
            Family::Qwen2 => {
                b.add(
                    dst("ffn_norm.weight"),
                    vec![(w(&src("post_attention_layernorm")), vec![h])],
                    vector,
                )?;
                b.add(
                    dst("ffn_gate.weight"),
                    vec![(w(&src("mlp.gate_proj")), vec![ff, h])],
                    dtype(LmRole::OtherMatrix),
                )?;
                b.add(
                    dst("ffn_up.weight"),
                    vec![(w(&src("mlp.up_proj")), vec![ff, h])],
                    dtype(LmRole::OtherMatrix),
                )?;
                b.add(
                    dst("ffn_down.weight"),
                    vec![(w(&src("mlp.down_proj")), vec![h, ff])],
                    dtype(LmRole::FfnDown(i)),
                )?;
            }
            Family::Phi3 => {
                b.add(
                    dst("ffn_norm.weight"),
                    vec![(w(&src("post_attention_layernorm")), vec![h])],
                    vector,
                )?;
                b.add(
                    dst("ffn_up.weight"),
                    vec![(w(&src("mlp.gate_up_proj")), vec![2 * ff, h])],
                    dtype(LmRole::OtherMatrix),
                )?;
                b.add(
                    dst("ffn_down.weight"),
                    vec![(w(&src("mlp.down_proj")), vec![h, ff])],
                    dtype(LmRole::FfnDown(i)),
                )?;
            }
        }
    }
    b.add(
        "output_norm.weight".into(),
        vec![(w(names.final_norm), vec![h])],
        vector,
    )?;
    if has_bias {
        b.add(
            "output_norm.bias".into(),
            vec![(bias(names.final_norm), vec![h])],
            vector,
        )?;
    }
    let head_present = checkpoint.contains(&w(names.head));
    if head_present || !c.tie_embeddings {
        b.add(
            "output.weight".into(),
            vec![(w(names.head), vec![v, h])],
            dtype(LmRole::Output),
        )?;
    }
    if has_bias {
        b.add(
            "output.bias".into(),
            vec![(bias(names.head), vec![v])],
            vector,
        )?;
    }
    Ok(b.out)
}

/// The prefixes of the vision tower and projector in this checkpoint's layout.
fn vision_prefixes(checkpoint: &Checkpoint) -> (&'static str, &'static str) {
    if checkpoint.contains(
        "transformer.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
    ) {
        (
            "transformer.vision_tower.vision_tower.vision_model.",
            "transformer.mm_projector.",
        )
    } else {
        (
            "model.vision_tower.vision_tower.vision_model.",
            "model.mm_projector.",
        )
    }
}

pub fn vision_plan(
    config: &ModelConfig,
    checkpoint: &Checkpoint,
    quant: VisionQuant,
) -> Result<Vec<Planned>, ConvertError> {
    let c = &config.vision;
    let (tower, projector) = vision_prefixes(checkpoint);
    let (d, ff, p, lm) = (c.hidden, c.intermediate, c.patch_size, config.lm.hidden);
    let mut b = Builder {
        checkpoint,
        out: Vec::new(),
    };
    let mut add = |name: String, source: String, shape: Vec<usize>| {
        let dtype = quant::vision_dtype(quant, &name, &shape);
        b.add(name, vec![(source, shape)], |_| dtype)
    };
    let emb = format!("{tower}embeddings.");
    add(
        "v.patch_embd.weight".into(),
        format!("{emb}patch_embedding.weight"),
        vec![d, 3, p, p],
    )?;
    add(
        "v.patch_embd.bias".into(),
        format!("{emb}patch_embedding.bias"),
        vec![d],
    )?;
    add(
        "v.position_embd.weight".into(),
        format!("{emb}position_embedding.weight"),
        vec![c.visual_tokens(), d],
    )?;
    for i in 0..c.layers {
        let src = format!("{tower}encoder.layers.{i}.");
        let dst = format!("v.blk.{i}.");
        let parts: [(&str, &str, Vec<usize>); 8] = [
            ("layer_norm1", "ln1", vec![d]),
            ("self_attn.q_proj", "attn_q", vec![d, d]),
            ("self_attn.k_proj", "attn_k", vec![d, d]),
            ("self_attn.v_proj", "attn_v", vec![d, d]),
            ("self_attn.out_proj", "attn_out", vec![d, d]),
            ("layer_norm2", "ln2", vec![d]),
            ("mlp.fc1", "ffn_up", vec![ff, d]),
            ("mlp.fc2", "ffn_down", vec![d, ff]),
        ];
        for (hf, gguf, shape) in parts {
            let rows = shape[0];
            add(
                format!("{dst}{gguf}.weight"),
                format!("{src}{hf}.weight"),
                shape,
            )?;
            add(
                format!("{dst}{gguf}.bias"),
                format!("{src}{hf}.bias"),
                vec![rows],
            )?;
        }
    }
    for (index, input) in [(0, d), (2, lm)] {
        add(
            format!("mm.{index}.weight"),
            format!("{projector}{index}.weight"),
            vec![lm, input],
        )?;
        add(
            format!("mm.{index}.bias"),
            format!("{projector}{index}.bias"),
            vec![lm],
        )?;
    }
    Ok(b.out)
}
