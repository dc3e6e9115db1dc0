//! Phi-2 (Imp-v1-3B, Imp-v1.5-3B, Imp-v1.5-3B-196).
//!
//! Parallel blocks `x + attn(ln(x)) + mlp(ln(x))`, LayerNorm, partial NeoX rotary on the
//! first `rotary_dim` channels of each head, tanh GELU, an output head with bias.
//! Reads both tensor layouts Imp shipped: the old "phi-msft" one (`transformer.h.N.mixer.Wqkv`,
//! `lm_head.{ln,linear}`) and the Hugging Face Phi one (`model.layers.N.self_attn.q_proj`, ...).

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use serde::Serialize;

use super::attention::{attend, Causal};
use super::layers::{fused_linear, lm_head, split_qkv};
use super::rotary::Rotary;
use super::{check_position, KvCache, LanguageModel};
use crate::config::Json;
use crate::error::EngineError;
use crate::gguf::GgufFile;
use crate::linear::Linear;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    /// `gelu` (exact, erf).
    GeluErf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rotary_dim: usize,
    pub rope_theta: f64,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub activation: Activation,
    pub tie_word_embeddings: bool,
}

impl Config {
    /// Accepts both the old phi-msft keys (`n_embd`, `n_layer`, ...) and the HF Phi ones.
    pub fn from_json(json: &Json) -> std::result::Result<Self, EngineError> {
        let hidden_size = json.usize(&["hidden_size", "n_embd"])?;
        let num_attention_heads = json.usize(&["num_attention_heads", "n_head"])?;
        if num_attention_heads == 0 || !hidden_size.is_multiple_of(num_attention_heads) {
            return Err(json.unsupported(format!(
                "hidden size {hidden_size} is not a multiple of {num_attention_heads} heads"
            )));
        }
        let head_dim = hidden_size / num_attention_heads;
        let rotary_dim = match json.opt_usize(&["rotary_dim"])? {
            Some(dim) => dim,
            None => {
                let factor = json.f64_or(&["partial_rotary_factor"], 0.4)?;
                (factor * head_dim as f64) as usize
            }
        };
        if json.bool_or("qk_layernorm", false) {
            return Err(json.unsupported("qk_layernorm Phi models are not supported".into()));
        }
        let activation = match json.str(&["hidden_act", "activation_function"]) {
            None | Some("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") => Activation::GeluTanh,
            Some("gelu") => Activation::GeluErf,
            Some(other) => {
                return Err(json.unsupported(format!("activation {other:?} is not supported")))
            }
        };
        Ok(Self {
            vocab_size: json.usize(&["vocab_size"])?,
            hidden_size,
            intermediate_size: json
                .opt_usize(&["intermediate_size", "n_inner"])?
                .unwrap_or(4 * hidden_size),
            num_hidden_layers: json.usize(&["num_hidden_layers", "n_layer"])?,
            num_attention_heads,
            num_key_value_heads: json
                .opt_usize(&["num_key_value_heads", "n_head_kv"])?
                .unwrap_or(num_attention_heads),
            rotary_dim,
            rope_theta: json.f64_or(&["rope_theta"], 10_000.0)?,
            layer_norm_eps: json.f64_or(&["layer_norm_eps", "layer_norm_epsilon"], 1e-5)?,
            max_position_embeddings: json
                .opt_usize(&["max_position_embeddings", "n_positions"])?
                .unwrap_or(2048),
            activation,
            tie_word_embeddings: json.bool_or("tie_word_embeddings", false),
        })
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// Which tensor names the checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Layout {
    /// `transformer.embd.wte`, `transformer.h.N.{ln,mixer.Wqkv,mixer.out_proj,mlp}`, `lm_head.{ln,linear}`.
    Msft,
    /// `model.embed_tokens`, `model.layers.N.{input_layernorm,self_attn.{q,k,v}_proj,self_attn.dense,mlp}`,
    /// `model.final_layernorm`, `lm_head`.
    HuggingFace,
}

impl Layout {
    /// Tells the layouts apart by their first block's attention weights.
    pub fn detect(has_tensor: impl Fn(&str) -> bool) -> Option<Self> {
        if has_tensor("transformer.h.0.mixer.Wqkv.weight") {
            Some(Layout::Msft)
        } else if has_tensor("model.layers.0.self_attn.q_proj.weight") {
            Some(Layout::HuggingFace)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm: LayerNorm,
    qkv: Linear,
    out: Linear,
    fc1: Linear,
    fc2: Linear,
}

#[derive(Debug, Clone)]
pub struct Phi2 {
    config: Config,
    /// Dense (safetensors) or quantized (GGUF); rows are gathered without widening the table.
    embed: QMatMul,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    head: Linear,
    rotary: Rotary,
}

impl Phi2 {
    /// `vb` is the checkpoint root (the names above are looked up under it).
    pub fn load(config: &Config, layout: Layout, vb: VarBuilder) -> Result<Self> {
        let c = config;
        let head_dim = c.head_dim();
        let kv_dim = c.num_key_value_heads * head_dim;
        let (embed_vb, block_prefix, final_norm_vb, head_vb) = match layout {
            Layout::Msft => (
                vb.pp("transformer.embd.wte"),
                "transformer.h",
                vb.pp("lm_head.ln"),
                vb.pp("lm_head.linear"),
            ),
            Layout::HuggingFace => (
                vb.pp("model.embed_tokens"),
                "model.layers",
                vb.pp("model.final_layernorm"),
                vb.pp("lm_head"),
            ),
        };
        let embedding = embed_vb.get((c.vocab_size, c.hidden_size), "weight")?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let b = vb.pp(block_prefix).pp(i);
            let (norm_vb, qkv, out_vb) = match layout {
                Layout::Msft => (
                    b.pp("ln"),
                    Linear::load(
                        c.hidden_size,
                        c.hidden_size + 2 * kv_dim,
                        true,
                        b.pp("mixer.Wqkv"),
                    )?,
                    b.pp("mixer.out_proj"),
                ),
                Layout::HuggingFace => {
                    let attn = b.pp("self_attn");
                    let parts = [
                        (attn.pp("q_proj"), c.hidden_size),
                        (attn.pp("k_proj"), kv_dim),
                        (attn.pp("v_proj"), kv_dim),
                    ];
                    (
                        b.pp("input_layernorm"),
                        fused_linear(&parts, c.hidden_size, true)?,
                        attn.pp("dense"),
                    )
                }
            };
            blocks.push(Block {
                norm: candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, norm_vb)?,
                qkv,
                out: Linear::load(c.hidden_size, c.hidden_size, true, out_vb)?,
                fc1: Linear::load(c.hidden_size, c.intermediate_size, true, b.pp("mlp.fc1"))?,
                fc2: Linear::load(c.intermediate_size, c.hidden_size, true, b.pp("mlp.fc2"))?,
            });
        }
        let head = lm_head(
            head_vb,
            &embedding,
            c.hidden_size,
            c.vocab_size,
            c.tie_word_embeddings,
            true,
        )?;
        Ok(Self {
            config: c.clone(),
            embed: QMatMul::Tensor(embedding),
            blocks,
            final_norm: candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, final_norm_vb)?,
            head,
            rotary: Rotary::new(
                c.rotary_dim,
                c.rope_theta,
                c.max_position_embeddings,
                vb.device(),
            )?,
        })
    }

    /// Loads a llama.cpp `phi2` GGUF (fused `attn_qkv`, one `attn_norm` per block).
    pub fn from_gguf(gguf: &mut GgufFile) -> std::result::Result<Self, EngineError> {
        gguf.expect_architecture("phi2")?;
        let hidden_size = gguf.usize("phi2.embedding_length")?;
        let num_attention_heads = gguf.usize("phi2.attention.head_count")?;
        if num_attention_heads == 0 || !hidden_size.is_multiple_of(num_attention_heads) {
            return Err(EngineError::InvalidConfig {
                path: gguf.path().to_path_buf(),
                reason: format!(
                    "hidden size {hidden_size} is not a multiple of {num_attention_heads} heads"
                ),
            });
        }
        let vocab_size = gguf.shape("token_embd.weight")?[0];
        let c = Config {
            vocab_size,
            hidden_size,
            intermediate_size: gguf.usize("phi2.feed_forward_length")?,
            num_hidden_layers: gguf.usize("phi2.block_count")?,
            num_attention_heads,
            num_key_value_heads: gguf
                .usize("phi2.attention.head_count_kv")
                .unwrap_or(num_attention_heads),
            rotary_dim: gguf.usize("phi2.rope.dimension_count")?,
            rope_theta: gguf.f64_or("phi2.rope.freq_base", 10_000.0)?,
            layer_norm_eps: gguf.f64_or("phi2.attention.layer_norm_epsilon", 1e-5)?,
            max_position_embeddings: gguf.usize("phi2.context_length")?,
            activation: Activation::GeluTanh,
            tie_word_embeddings: !gguf.contains("output.weight"),
        };
        let h = c.hidden_size;
        let kv_dim = c.num_key_value_heads * c.head_dim();
        let embed = gguf.qmatmul("token_embd.weight", (c.vocab_size, h))?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let name = |part: &str| format!("blk.{i}.{part}");
            blocks.push(Block {
                norm: gguf.layer_norm(&name("attn_norm"), h, c.layer_norm_eps)?,
                qkv: gguf.linear(&name("attn_qkv"), h, h + 2 * kv_dim, true)?,
                out: gguf.linear(&name("attn_output"), h, h, true)?,
                fc1: gguf.linear(&name("ffn_up"), h, c.intermediate_size, true)?,
                fc2: gguf.linear(&name("ffn_down"), c.intermediate_size, h, true)?,
            });
        }
        let head = if c.tie_word_embeddings {
            Linear::from_qmatmul(embed.clone(), None)
        } else {
            gguf.linear("output", h, c.vocab_size, true)?
        };
        let final_norm = gguf.layer_norm("output_norm", h, c.layer_norm_eps)?;
        let rotary = Rotary::new(
            c.rotary_dim,
            c.rope_theta,
            c.max_position_embeddings,
            &candle_core::Device::Cpu,
        )?;
        Ok(Self {
            config: c,
            embed,
            blocks,
            final_norm,
            head,
            rotary,
        })
    }

    fn activate(&self, xs: &Tensor) -> Result<Tensor> {
        match self.config.activation {
            // candle's tanh GELU is scalar and single-threaded: seconds per prefill.
            Activation::GeluTanh => crate::kernels::gelu_tanh(xs),
            Activation::GeluErf => xs.gelu_erf(),
        }
    }
}

impl LanguageModel for Phi2 {
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
        let mut xs = embeds.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let normed = block.norm.forward(&xs)?;

            let qkv = block.qkv.forward(&normed)?;
            let (q, k, v) = split_qkv(
                &qkv,
                c.num_attention_heads,
                c.num_key_value_heads,
                c.head_dim(),
            )?;
            let q = self.rotary.apply(&q, pos)?;
            let k = self.rotary.apply(&k, pos)?;
            let (k, v) = cache.append(i, &k, &v)?;
            let attn = block.out.forward(&attend(&q, &k, &v, causal)?)?;

            let mlp = block
                .fc2
                .forward(&self.activate(&block.fc1.forward(&normed)?)?)?;
            xs = ((xs + attn)? + mlp)?;
        }
        self.final_norm.forward(&xs)
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
