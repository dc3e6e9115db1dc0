//! Qwen1.5 / Qwen2 (Imp-v1.5-2B): pre-norm blocks with RMSNorm, q/k/v with bias,
//! full rotary with `rope_theta` from the config, SwiGLU MLP.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, RmsNorm, VarBuilder};
use serde::Serialize;

use super::attention::causal_mask;
use super::layers::{fused_linear, lm_head};
use super::rotary::Rotary;
use super::swiglu_block::{run_blocks, BlockShape, SwiGluBlock};
use super::{check_position, KvCache, LanguageModel};
use crate::config::Json;
use crate::error::EngineError;
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

#[derive(Debug, Clone)]
pub struct Qwen2 {
    config: Config,
    embed: Embedding,
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
                qkv: fused_linear(&qkv_parts, c.hidden_size, true)?,
                o_proj: Linear::load(c.hidden_size, c.hidden_size, false, attn.pp("o_proj"))?,
                mlp_norm: candle_nn::rms_norm(
                    c.hidden_size,
                    c.rms_norm_eps,
                    b.pp("post_attention_layernorm"),
                )?,
                gate_up: fused_linear(&gate_up_parts, c.hidden_size, false)?,
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
            embed: Embedding::new(embedding, c.hidden_size),
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

impl LanguageModel for Qwen2 {
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed.forward(ids)
    }

    fn hidden_states(&self, embeds: &Tensor, cache: &mut KvCache, pos: usize) -> Result<Tensor> {
        check_position(cache, pos)?;
        let c = &self.config;
        let mask = causal_mask(embeds.dim(1)?, pos, None, embeds.device())?;
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
            mask.as_ref(),
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
