//! Qwen1.5 / Qwen2 (Imp-v1.5-2B): pre-norm blocks with RMSNorm, q/k/v with bias,
//! full rotary with `rope_theta` from the config, SwiGLU MLP.

use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{RmsNorm, VarBuilder};
use serde::Serialize;

use super::attention::Causal;
use super::layers::{fused_linear, lm_head};
use super::rotary::Rotary;
use super::swiglu_block::{run_blocks, BlockShape, Projection, SwiGluBlock};
use super::{check_position, KvCache, LanguageModel};
use crate::config::Json;
use crate::error::EngineError;
use crate::gguf::GgufFile;
use crate::linear::Linear;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl Config {
    pub fn from_json(json: &Json) -> std::result::Result<Self, EngineError> {
        let hidden_size = json.usize(&["hidden_size"])?;
        let num_attention_heads = json.usize(&["num_attention_heads"])?;
        let num_key_value_heads = json
            .opt_usize(&["num_key_value_heads"])?
            .unwrap_or(num_attention_heads);
        check_heads(json, hidden_size, num_attention_heads, num_key_value_heads)?;
        if let Some(act) = json.str(&["hidden_act"]).filter(|a| *a != "silu") {
            return Err(json.unsupported(format!("activation {act:?} is not supported")));
        }
        Ok(Self {
            vocab_size: json.usize(&["vocab_size"])?,
            hidden_size,
            intermediate_size: json.usize(&["intermediate_size"])?,
            num_hidden_layers: json.usize(&["num_hidden_layers"])?,
            num_attention_heads,
            num_key_value_heads,
            rope_theta: json.f64_or(&["rope_theta"], 10_000.0)?,
            rms_norm_eps: json.f64_or(&["rms_norm_eps"], 1e-6)?,
            max_position_embeddings: json
                .opt_usize(&["max_position_embeddings"])?
                .unwrap_or(32768),
            tie_word_embeddings: json.bool_or("tie_word_embeddings", false),
        })
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// Heads must split the hidden size evenly and kv heads must divide the query heads.
pub(crate) fn check_heads(
    json: &Json,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
) -> std::result::Result<(), EngineError> {
    if heads == 0
        || kv_heads == 0
        || !hidden.is_multiple_of(heads)
        || !heads.is_multiple_of(kv_heads)
    {
        return Err(json.unsupported(format!(
            "hidden size {hidden}, {heads} heads and {kv_heads} key/value heads do not fit together"
        )));
    }
    Ok(())
}

/// The hyper-parameters a llama.cpp `qwen2` or `phi3` GGUF stores under `{arch}.*`.
#[derive(Debug, Clone)]
pub(crate) struct GgufHparams {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub context_length: usize,
}

impl GgufHparams {
    pub fn read(gguf: &GgufFile, arch: &str) -> std::result::Result<Self, EngineError> {
        gguf.expect_architecture(arch)?;
        let key = |k: &str| format!("{arch}.{k}");
        let hidden_size = gguf.usize(&key("embedding_length"))?;
        let heads = gguf.usize(&key("attention.head_count"))?;
        let kv_heads = gguf.usize(&key("attention.head_count_kv")).unwrap_or(heads);
        let invalid = |reason: String| EngineError::InvalidConfig {
            path: gguf.path().to_path_buf(),
            reason,
        };
        if heads == 0
            || kv_heads == 0
            || !hidden_size.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(invalid(format!(
                "hidden size {hidden_size}, {heads} heads and {kv_heads} key/value heads do not fit together"
            )));
        }
        let head_dim = hidden_size / heads;
        if let Ok(rotary) = gguf.usize(&key("rope.dimension_count")) {
            if rotary != head_dim {
                return Err(invalid(format!(
                    "rotary dimension {rotary} differs from the head size {head_dim}; only full rotary is supported"
                )));
            }
        }
        Ok(Self {
            vocab_size: gguf.shape("token_embd.weight")?[0],
            hidden_size,
            intermediate_size: gguf.usize(&key("feed_forward_length"))?,
            num_hidden_layers: gguf.usize(&key("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            rope_theta: gguf.f64_or(&key("rope.freq_base"), 10_000.0)?,
            rms_norm_eps: gguf.f64_or(&key("attention.layer_norm_rms_epsilon"), 1e-6)?,
            context_length: gguf.usize(&key("context_length"))?,
        })
    }
}

/// The token embedding kept in its stored type (rows are gathered, never widened), and the
/// output head: its own matrix, or the embedding when the file ties them.
pub(crate) fn gguf_embedding_and_head(
    gguf: &GgufFile,
    hidden: usize,
    vocab: usize,
) -> std::result::Result<(QMatMul, Linear), EngineError> {
    let embedding = gguf.embedding("token_embd.weight", (vocab, hidden))?;
    let head = if gguf.contains("output.weight") {
        gguf.linear("output", hidden, vocab, false)?
    } else {
        Linear::from_qmatmul(gguf.qmatmul("token_embd.weight", (vocab, hidden))?, None)
    };
    Ok((embedding, head))
}

/// `names` stacked into one matrix when their stored types allow, else kept apart.
pub(crate) fn gguf_projection(
    gguf: &GgufFile,
    names: &[String],
    in_dim: usize,
    out_dims: &[usize],
    with_bias: bool,
) -> std::result::Result<Projection, EngineError> {
    for (name, out_dim) in names.iter().zip(out_dims) {
        gguf.expect_matrix(&format!("{name}.weight"), (*out_dim, in_dim))?;
    }
    let weights: Vec<String> = names.iter().map(|n| format!("{n}.weight")).collect();
    if let Some(stacked) = gguf.qtensor_stacked(&weights)? {
        let bias = if with_bias {
            let biases = names
                .iter()
                .zip(out_dims)
                .map(|(name, out_dim)| gguf.bias(&format!("{name}.bias"), *out_dim))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        return Ok(Projection::Fused(Linear::from_qmatmul(
            QMatMul::from_arc(stacked)?,
            bias,
        )));
    }
    let parts = names
        .iter()
        .zip(out_dims)
        .map(|(name, out_dim)| gguf.linear(name, in_dim, *out_dim, with_bias))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Projection::Split(parts))
}

#[derive(Debug, Clone)]
pub struct Qwen2 {
    config: Config,
    /// Dense (safetensors) or quantized (GGUF); rows are gathered without widening the table.
    embed: QMatMul,
    blocks: Vec<SwiGluBlock>,
    norm: RmsNorm,
    head: Linear,
    rotary: Rotary,
}

impl Qwen2 {
    /// `vb` is the checkpoint root (`model.embed_tokens`, `model.layers.N`, `model.norm`, `lm_head`).
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let c = config;
        let kv_dim = c.num_key_value_heads * c.head_dim();
        let embedding = vb
            .pp("model.embed_tokens")
            .get((c.vocab_size, c.hidden_size), "weight")?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let b = vb.pp("model.layers").pp(i);
            let attn = b.pp("self_attn");
            let mlp = b.pp("mlp");
            let qkv_parts = [
                (attn.pp("q_proj"), c.hidden_size),
                (attn.pp("k_proj"), kv_dim),
                (attn.pp("v_proj"), kv_dim),
            ];
            let gate_up_parts = [
                (mlp.pp("gate_proj"), c.intermediate_size),
                (mlp.pp("up_proj"), c.intermediate_size),
            ];
            blocks.push(SwiGluBlock {
                attn_norm: candle_nn::rms_norm(
                    c.hidden_size,
                    c.rms_norm_eps,
                    b.pp("input_layernorm"),
                )?,
                qkv: Projection::Fused(fused_linear(&qkv_parts, c.hidden_size, true)?),
                o_proj: Linear::load(c.hidden_size, c.hidden_size, false, attn.pp("o_proj"))?,
                mlp_norm: candle_nn::rms_norm(
                    c.hidden_size,
                    c.rms_norm_eps,
                    b.pp("post_attention_layernorm"),
                )?,
                gate_up: Projection::Fused(fused_linear(&gate_up_parts, c.hidden_size, false)?),
                down: Linear::load(
                    c.intermediate_size,
                    c.hidden_size,
                    false,
                    mlp.pp("down_proj"),
                )?,
            });
        }
        let head = lm_head(
            vb.pp("lm_head"),
            &embedding,
            c.hidden_size,
            c.vocab_size,
            c.tie_word_embeddings,
            false,
        )?;
        Ok(Self {
            config: c.clone(),
            embed: QMatMul::Tensor(embedding),
            blocks,
            norm: candle_nn::rms_norm(c.hidden_size, c.rms_norm_eps, vb.pp("model.norm"))?,
            head,
            rotary: Rotary::new(
                c.head_dim(),
                c.rope_theta,
                c.max_position_embeddings,
                vb.device(),
            )?,
        })
    }
}

impl Qwen2 {
    /// Loads a llama.cpp `qwen2` GGUF (separate `attn_q/k/v` with biases, `ffn_gate`/`ffn_up`).
    pub fn from_gguf(gguf: &GgufFile) -> std::result::Result<Self, EngineError> {
        let hp = GgufHparams::read(gguf, "qwen2")?;
        let c = Config {
            vocab_size: hp.vocab_size,
            hidden_size: hp.hidden_size,
            intermediate_size: hp.intermediate_size,
            num_hidden_layers: hp.num_hidden_layers,
            num_attention_heads: hp.num_attention_heads,
            num_key_value_heads: hp.num_key_value_heads,
            rope_theta: hp.rope_theta,
            rms_norm_eps: hp.rms_norm_eps,
            max_position_embeddings: hp.context_length,
            tie_word_embeddings: !gguf.contains("output.weight"),
        };
        let (h, ff, eps) = (c.hidden_size, c.intermediate_size, c.rms_norm_eps);
        let kv_dim = c.num_key_value_heads * c.head_dim();
        let (embed, head) = gguf_embedding_and_head(gguf, h, c.vocab_size)?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let name = |part: &str| format!("blk.{i}.{part}");
            blocks.push(SwiGluBlock {
                attn_norm: gguf.rms_norm(&name("attn_norm"), h, eps)?,
                qkv: gguf_projection(
                    gguf,
                    &[name("attn_q"), name("attn_k"), name("attn_v")],
                    h,
                    &[h, kv_dim, kv_dim],
                    true,
                )?,
                o_proj: gguf.linear(&name("attn_output"), h, h, false)?,
                mlp_norm: gguf.rms_norm(&name("ffn_norm"), h, eps)?,
                gate_up: gguf_projection(
                    gguf,
                    &[name("ffn_gate"), name("ffn_up")],
                    h,
                    &[ff, ff],
                    false,
                )?,
                down: gguf.linear(&name("ffn_down"), ff, h, false)?,
            });
        }
        let norm = gguf.rms_norm("output_norm", h, eps)?;
        let rotary = Rotary::new(
            c.head_dim(),
            c.rope_theta,
            c.max_position_embeddings,
            &Device::Cpu,
        )?;
        Ok(Self {
            config: c,
            embed,
            blocks,
            norm,
            head,
            rotary,
        })
    }
}

impl LanguageModel for Qwen2 {
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed.embedding(ids)
    }

    fn hidden_states(&self, embeds: &Tensor, cache: &mut KvCache, pos: usize) -> Result<Tensor> {
        check_position(cache, pos)?;
        let c = &self.config;
        let causal = Causal {
            past: pos,
            window: None,
        };
        let shape = BlockShape {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim(),
            intermediate: c.intermediate_size,
        };
        let xs = run_blocks(
            &self.blocks,
            shape,
            &self.rotary,
            causal,
            embeds,
            cache,
            pos,
        )?;
        self.norm.forward(&xs)
    }

    fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head.forward(hidden)
    }

    fn num_layers(&self) -> usize {
        self.config.num_hidden_layers
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }
}
