//! Phi-3-mini (Imp-v1.5-4B): pre-norm blocks with RMSNorm, fused `qkv_proj` and
//! `gate_up_proj` (no biases), full rotary, SwiGLU MLP, optional sliding window.

use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{RmsNorm, VarBuilder};
use serde::Serialize;

use super::attention::Causal;
use super::layers::lm_head;
use super::qwen2::{check_heads, gguf_embedding_and_head, GgufHparams};
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
    /// Each token sees at most this many earlier tokens (plus itself).
    pub sliding_window: Option<usize>,
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
        if json.value("rope_scaling").is_some() {
            return Err(json.unsupported(
                "rope_scaling (long-context Phi-3) is not supported; use the 4k Phi-3 model".into(),
            ));
        }
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
            rms_norm_eps: json.f64_or(&["rms_norm_eps"], 1e-5)?,
            max_position_embeddings: json
                .opt_usize(&["max_position_embeddings"])?
                .unwrap_or(4096),
            sliding_window: json.opt_usize(&["sliding_window"])?,
            tie_word_embeddings: json.bool_or("tie_word_embeddings", false),
        })
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[derive(Debug, Clone)]
pub struct Phi3 {
    config: Config,
    /// Dense (safetensors) or quantized (GGUF); rows are gathered without widening the table.
    embed: QMatMul,
    blocks: Vec<SwiGluBlock>,
    norm: RmsNorm,
    head: Linear,
    rotary: Rotary,
}

impl Phi3 {
    /// `vb` is the checkpoint root (`model.embed_tokens`, `model.layers.N`, `model.norm`, `lm_head`).
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let c = config;
        let qkv_dim = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim();
        let embedding = vb
            .pp("model.embed_tokens")
            .get((c.vocab_size, c.hidden_size), "weight")?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let b = vb.pp("model.layers").pp(i);
            let attn = b.pp("self_attn");
            let mlp = b.pp("mlp");
            blocks.push(SwiGluBlock {
                attn_norm: candle_nn::rms_norm(
                    c.hidden_size,
                    c.rms_norm_eps,
                    b.pp("input_layernorm"),
                )?,
                qkv: Projection::Fused(Linear::load(
                    c.hidden_size,
                    qkv_dim,
                    false,
                    attn.pp("qkv_proj"),
                )?),
                o_proj: Linear::load(c.hidden_size, c.hidden_size, false, attn.pp("o_proj"))?,
                mlp_norm: candle_nn::rms_norm(
                    c.hidden_size,
                    c.rms_norm_eps,
                    b.pp("post_attention_layernorm"),
                )?,
                gate_up: Projection::Fused(Linear::load(
                    c.hidden_size,
                    2 * c.intermediate_size,
                    false,
                    mlp.pp("gate_up_proj"),
                )?),
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

impl Phi3 {
    /// Loads a llama.cpp `phi3` GGUF (fused `attn_qkv`, fused `[gate | up]` in `ffn_up`).
    pub fn from_gguf(gguf: &GgufFile) -> std::result::Result<Self, EngineError> {
        let hp = GgufHparams::read(gguf, "phi3")?;
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
            sliding_window: gguf.usize("phi3.attention.sliding_window").ok(),
            tie_word_embeddings: !gguf.contains("output.weight"),
        };
        let (h, ff, eps) = (c.hidden_size, c.intermediate_size, c.rms_norm_eps);
        let qkv_dim = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim();
        let (embed, head) = gguf_embedding_and_head(gguf, h, c.vocab_size)?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let name = |part: &str| format!("blk.{i}.{part}");
            blocks.push(SwiGluBlock {
                attn_norm: gguf.rms_norm(&name("attn_norm"), h, eps)?,
                qkv: Projection::Fused(gguf.linear(&name("attn_qkv"), h, qkv_dim, false)?),
                o_proj: gguf.linear(&name("attn_output"), h, h, false)?,
                mlp_norm: gguf.rms_norm(&name("ffn_norm"), h, eps)?,
                gate_up: Projection::Fused(gguf.linear(&name("ffn_up"), h, 2 * ff, false)?),
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

impl LanguageModel for Phi3 {
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed.embedding(ids)
    }

    fn hidden_states(&self, embeds: &Tensor, cache: &mut KvCache, pos: usize) -> Result<Tensor> {
        check_position(cache, pos)?;
        let c = &self.config;
        let causal = Causal {
            past: pos,
            window: c.sliding_window,
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
