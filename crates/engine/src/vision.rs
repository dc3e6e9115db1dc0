//! Imp's vision tower: SigLIP truncated as `imp_llava`'s `SiglipVisionTower` does it.
//!
//! Imp drops every encoder layer after `mm_vision_select_layer` (−2: the last one), the
//! post-layernorm and the attention-pooling head, and feeds the projector the hidden
//! state of the last kept layer for every patch (SigLIP has no CLS token).

use candle_core::{bail, DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use candle_core::quantized::QMatMul;

use crate::kernels::Visibility;
use crate::linear::{Linear, Weight};
use crate::lm::attention::attend_on_cpu;

/// The activation inside the tower's MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VisionAct {
    /// Tanh-approximated GELU, what SigLIP uses.
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new", alias = "gelu_fast")]
    GeluTanh,
    /// Exact (erf) GELU.
    #[serde(rename = "gelu")]
    GeluErf,
}

impl VisionAct {
    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            // Vectorised and on every core; candle's runs scalar on one thread, which cost
            // as much as a matmul in each of the tower's 26 MLPs.
            VisionAct::GeluTanh if xs.device().is_cpu() => crate::kernels::gelu_tanh(xs),
            VisionAct::GeluTanh => xs.gelu(),
            VisionAct::GeluErf => xs.gelu_erf(),
        }
    }
}

/// Largest image side a vision config may ask for (Imp uses 196 and 384): a crafted config
/// must not make every image a gigapixel one.
const MAX_IMAGE_SIZE: usize = 4096;

/// What the vision tower needs to know; `num_layers` counts the layers Imp **keeps**.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_layers: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: VisionAct,
}

/// The SigLIP block of an Imp `config.json` (`vision_tower_config`), as Hugging Face's
/// `SiglipVisionConfig` writes it; absent keys take that class's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SiglipVisionBlock {
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Layers of the base tower, before Imp drops the ones after the selected layer.
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "defaults::image_size")]
    pub image_size: usize,
    #[serde(default = "defaults::patch_size")]
    pub patch_size: usize,
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: VisionAct,
    #[serde(default = "defaults::num_channels")]
    pub num_channels: usize,
}

mod defaults {
    use super::VisionAct;
    pub fn hidden_size() -> usize {
        768
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        16
    }
    pub fn layer_norm_eps() -> f64 {
        1e-6
    }
    pub fn hidden_act() -> VisionAct {
        VisionAct::GeluTanh
    }
    pub fn num_channels() -> usize {
        3
    }
}

/// Why `config.json` does not describe a vision tower this engine can run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VisionConfigError {
    #[error(
        "config.json has no vision tower settings (`vision_tower_config`) and its \
         `mm_vision_tower` ({tower:?}) is not a SigLIP-so400m name; the checkpoint's \
         config.json is incomplete or this is not an Imp model"
    )]
    Missing { tower: Option<String> },
    #[error("config.json's `vision_tower_config` is malformed: {0}")]
    Malformed(String),
    #[error("config.json's vision tower settings are inconsistent: {0}")]
    Inconsistent(String),
    #[error(
        "config.json's `mm_vision_select_layer` {select} does not select a layer of a \
         {layers}-layer vision tower; Imp checkpoints use -2"
    )]
    SelectLayer { select: i64, layers: usize },
    #[error(
        "config.json's `mm_vision_select_feature` {0:?} is not supported; Imp checkpoints \
         use \"patch\""
    )]
    SelectFeature(String),
}

impl VisionConfig {
    /// SigLIP-so400m/14 truncated as Imp ships it (26 of 27 layers) at `image_size` px.
    pub fn siglip_so400m(image_size: usize) -> Self {
        Self {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_attention_heads: 16,
            num_layers: 26,
            image_size,
            patch_size: 14,
            layer_norm_eps: 1e-6,
            hidden_act: VisionAct::GeluTanh,
        }
    }

    /// Applies `mm_vision_select_layer` to the base tower: negative values count from the
    /// end like Python's `hidden_states[select]` (−2 keeps all but the last layer).
    pub fn from_block(
        block: &SiglipVisionBlock,
        select_layer: i64,
    ) -> std::result::Result<Self, VisionConfigError> {
        let base = block.num_hidden_layers;
        let kept = if select_layer < 0 {
            i64::try_from(base).unwrap_or(i64::MAX) + 1 + select_layer
        } else {
            select_layer
        };
        if kept < 1 || kept > i64::try_from(base).unwrap_or(i64::MAX) {
            return Err(VisionConfigError::SelectLayer {
                select: select_layer,
                layers: base,
            });
        }
        let config = Self {
            hidden_size: block.hidden_size,
            intermediate_size: block.intermediate_size,
            num_attention_heads: block.num_attention_heads,
            num_layers: kept as usize,
            image_size: block.image_size,
            patch_size: block.patch_size,
            layer_norm_eps: block.layer_norm_eps,
            hidden_act: block.hidden_act,
        };
        if block.num_channels != 3 {
            return Err(VisionConfigError::Inconsistent(format!(
                "num_channels is {}, expected 3 (RGB)",
                block.num_channels
            )));
        }
        config.validate()?;
        Ok(config)
    }

    /// Reads the vision settings of a whole Imp `config.json`: the SigLIP block
    /// (`vision_tower_config`, also accepted as `vision_config` or as a JSON string),
    /// `mm_vision_select_layer` (default −2) and `mm_vision_select_feature` (must be
    /// "patch"). Without a block, an `mm_vision_tower` such as
    /// `google/siglip-so400m-patch14-384` selects the so400m preset.
    pub fn from_imp_config(config: &Value) -> std::result::Result<Self, VisionConfigError> {
        let select_layer = match config.get("mm_vision_select_layer") {
            None | Some(Value::Null) => -2,
            Some(v) => v.as_i64().ok_or_else(|| {
                VisionConfigError::Malformed(format!(
                    "mm_vision_select_layer is {v}, not an integer"
                ))
            })?,
        };
        match config
            .get("mm_vision_select_feature")
            .and_then(Value::as_str)
        {
            None | Some("patch") => {}
            Some(other) => return Err(VisionConfigError::SelectFeature(other.to_string())),
        }
        let block = ["vision_tower_config", "vision_config"]
            .iter()
            .find_map(|key| config.get(*key).filter(|v| !v.is_null()));
        match block {
            Some(block) => {
                let parsed: SiglipVisionBlock = match block {
                    Value::String(text) => serde_json::from_str(text),
                    other => serde_json::from_value(other.clone()),
                }
                .map_err(|e| VisionConfigError::Malformed(e.to_string()))?;
                Self::from_block(&parsed, select_layer)
            }
            None => {
                let tower = config.get("mm_vision_tower").and_then(Value::as_str);
                let image_size = tower.and_then(so400m_image_size).ok_or_else(|| {
                    VisionConfigError::Missing {
                        tower: tower.map(str::to_string),
                    }
                })?;
                let base = SiglipVisionBlock {
                    num_hidden_layers: 27,
                    ..SiglipVisionBlock::so400m(image_size)
                };
                Self::from_block(&base, select_layer)
            }
        }
    }

    /// Patches per image side (a "valid" convolution drops the remainder: 384 px → 27).
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Visual tokens per image.
    pub fn num_patches(&self) -> usize {
        self.patches_per_side() * self.patches_per_side()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), VisionConfigError> {
        let bad = |what: String| Err(VisionConfigError::Inconsistent(what));
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.patch_size == 0 {
            return bad("patch_size is 0; SigLIP's patches are 14 or 16 pixels wide".to_string());
        }
        if self.image_size < self.patch_size {
            return bad(format!(
                "image_size {} is smaller than patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.image_size > MAX_IMAGE_SIZE {
            return bad(format!(
                "image_size {} is over {MAX_IMAGE_SIZE} pixels; Imp's towers see 196 or 384",
                self.image_size
            ));
        }
        if self.intermediate_size == 0 {
            return bad("intermediate_size is 0".to_string());
        }
        Ok(())
    }
}

impl SiglipVisionBlock {
    fn so400m(image_size: usize) -> Self {
        Self {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_attention_heads: 16,
            num_hidden_layers: 27,
            image_size,
            patch_size: 14,
            layer_norm_eps: 1e-6,
            hidden_act: VisionAct::GeluTanh,
            num_channels: 3,
        }
    }
}

/// `…siglip-so400m-patch14-384` → 384.
fn so400m_image_size(tower: &str) -> Option<usize> {
    let name = tower.trim_end_matches('/');
    let tail = name.split("so400m-patch14-").nth(1)?;
    tail.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Where the tower's weights come from. Names are Hugging Face's, relative to the tower's
/// `vision_model` (`encoder.layers.0.mlp.fc1`); linears are `{name}.weight` `(out, in)`
/// with `{name}.bias`.
pub trait TowerWeights {
    type Error: From<candle_core::Error>;

    /// A dense f32 tensor of `shape` (embeddings).
    fn tensor(&self, name: &str, shape: &[usize]) -> std::result::Result<Tensor, Self::Error>;

    fn layer_norm(
        &self,
        name: &str,
        dim: usize,
        eps: f64,
    ) -> std::result::Result<LayerNorm, Self::Error>;

    /// The layers `names` as one, their outputs concatenated in order (each `out_dim` wide):
    /// one matmul for q, k and v.
    fn linear(
        &self,
        names: &[String],
        in_dim: usize,
        out_dim: usize,
    ) -> std::result::Result<Linear, Self::Error>;

    /// Whether [`TowerWeights::linear`] should get q, k and v together.
    fn fuses_qkv(&self) -> bool;
}

/// A safetensors checkpoint: dense weights in the checkpoint's precision, each layer on
/// its own, exactly as Hugging Face computes them.
impl TowerWeights for VarBuilder<'_> {
    type Error = candle_core::Error;

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get(shape, name)
    }

    fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        candle_nn::layer_norm(dim, eps, self.pp(name))
    }

    fn linear(&self, names: &[String], in_dim: usize, out_dim: usize) -> Result<Linear> {
        let [name] = names else {
            bail!("a dense checkpoint loads one layer at a time, got {names:?}");
        };
        Linear::load(in_dim, out_dim, true, self.pp(name))
    }

    fn fuses_qkv(&self) -> bool {
        false
    }
}

/// Patchify + linear: the stride-`patch` "valid" convolution as one matmul.
#[derive(Debug, Clone)]
struct PatchEmbedding {
    proj: Linear,
    position: Tensor,
    patch_size: usize,
    image_size: usize,
    per_side: usize,
}

impl PatchEmbedding {
    fn load<W: TowerWeights>(cfg: &VisionConfig, w: &W) -> std::result::Result<Self, W::Error> {
        let (h, p) = (cfg.hidden_size, cfg.patch_size);
        // Flattened in (channel, row, column) order, matching the patches below.
        let weight = w
            .tensor("embeddings.patch_embedding.weight", &[h, 3, p, p])?
            .reshape((h, 3 * p * p))?;
        let bias = w.tensor("embeddings.patch_embedding.bias", &[h])?;
        let position = w
            .tensor(
                "embeddings.position_embedding.weight",
                &[cfg.num_patches(), h],
            )?
            .unsqueeze(0)?;
        Ok(Self {
            proj: Linear::dense(weight, Some(bias)),
            position,
            patch_size: p,
            image_size: cfg.image_size,
            per_side: cfg.patches_per_side(),
        })
    }

    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (b, c, height, width) = pixel_values.dims4()?;
        if c != 3 || height != self.image_size || width != self.image_size {
            bail!(
                "the vision tower expects pixel values of shape (batch, 3, {s}, {s}), got {:?}",
                pixel_values.dims(),
                s = self.image_size
            );
        }
        let (n, p) = (self.per_side, self.patch_size);
        let used = n * p;
        let xs = pixel_values.narrow(2, 0, used)?.narrow(3, 0, used)?;
        let patches = xs
            .reshape((b, 3, n, p, n, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, n * n, 3 * p * p))?;
        self.proj.forward(&patches)?.broadcast_add(&self.position)
    }
}

/// The query, key and value projections: three layers, or one `(3·hidden, hidden)` layer.
#[derive(Debug, Clone)]
enum QkvProjection {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

impl QkvProjection {
    /// (B, N, hidden) → q, k, v, each (B, N, hidden).
    fn forward(&self, xs: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        match self {
            Self::Separate { q, k, v } => Ok((q.forward(xs)?, k.forward(xs)?, v.forward(xs)?)),
            Self::Fused(qkv) => {
                let all = qkv.forward(xs)?;
                let hidden = all.dim(2)? / 3;
                Ok((
                    all.narrow(2, 0, hidden)?,
                    all.narrow(2, hidden, hidden)?,
                    all.narrow(2, 2 * hidden, hidden)?,
                ))
            }
        }
    }
}

/// `softmax(q kᵀ · scale) v` for one image's `(1, heads, N, head_dim)` tensors →
/// `(1, N, heads * head_dim)`: the engine's flash-style kernel for f32 on the CPU (no
/// `N × N` score matrix), candle ops otherwise.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    if let Some(out) = attend_on_cpu(q, k, v, scale, Visibility::All)? {
        return Ok(out);
    }
    let (_, heads, n, head_dim) = q.dims4()?;
    let scores = (q.contiguous()?.matmul(&k.t()?)? * scale)?;
    candle_nn::ops::softmax_last_dim(&scores)?
        .matmul(v)?
        .transpose(1, 2)?
        .reshape((1, n, heads * head_dim))
}

#[derive(Debug, Clone)]
struct Attention {
    qkv: QkvProjection,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
    scale: f64,
}

impl Attention {
    fn load<W: TowerWeights>(
        cfg: &VisionConfig,
        w: &W,
        prefix: &str,
    ) -> std::result::Result<Self, W::Error> {
        let h = cfg.hidden_size;
        let name = |part: &str| format!("{prefix}.{part}");
        let qkv = if w.fuses_qkv() {
            QkvProjection::Fused(w.linear(
                &[name("q_proj"), name("k_proj"), name("v_proj")],
                h,
                h,
            )?)
        } else {
            QkvProjection::Separate {
                q: w.linear(&[name("q_proj")], h, h)?,
                k: w.linear(&[name("k_proj")], h, h)?,
                v: w.linear(&[name("v_proj")], h, h)?,
            }
        };
        Ok(Self {
            qkv,
            out_proj: w.linear(&[name("out_proj")], h, h)?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            scale: (cfg.head_dim() as f64).powf(-0.5),
        })
    }

    /// (B, N, hidden) → (B, heads, N, head_dim), contiguous.
    fn split_heads(&self, xs: &Tensor, b: usize, n: usize) -> Result<Tensor> {
        xs.reshape((b, n, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, n, _) = xs.dims3()?;
        let (q, k, v) = self.qkv.forward(xs)?;
        let q = self.split_heads(&q, b, n)?;
        let k = self.split_heads(&k, b, n)?;
        let v = self.split_heads(&v, b, n)?;
        let images = (0..b)
            .map(|i| {
                let one = |t: &Tensor| t.narrow(0, i, 1);
                attend(&one(&q)?, &one(&k)?, &one(&v)?, self.scale)
            })
            .collect::<Result<Vec<_>>>()?;
        self.out_proj.forward(&Tensor::cat(&images, 0)?)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: VisionAct,
}

impl Mlp {
    fn load<W: TowerWeights>(
        cfg: &VisionConfig,
        w: &W,
        prefix: &str,
    ) -> std::result::Result<Self, W::Error> {
        let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            fc1: w.linear(&[format!("{prefix}.fc1")], h, m)?,
            fc2: w.linear(&[format!("{prefix}.fc2")], m, h)?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.act.apply(&self.fc1.forward(xs)?)?)
    }
}

/// Pre-LN encoder layer: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn load<W: TowerWeights>(
        cfg: &VisionConfig,
        w: &W,
        layer: usize,
    ) -> std::result::Result<Self, W::Error> {
        let prefix = format!("encoder.layers.{layer}");
        let ln = |name: &str| {
            w.layer_norm(
                &format!("{prefix}.{name}"),
                cfg.hidden_size,
                cfg.layer_norm_eps,
            )
        };
        Ok(Self {
            layer_norm1: ln("layer_norm1")?,
            self_attn: Attention::load(cfg, w, &format!("{prefix}.self_attn"))?,
            layer_norm2: ln("layer_norm2")?,
            mlp: Mlp::load(cfg, w, &format!("{prefix}.mlp"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let attn = self.self_attn.forward(&self.layer_norm1.forward(xs)?)?;
        let xs = (xs + attn)?;
        let mlp = self.mlp.forward(&self.layer_norm2.forward(&xs)?)?;
        xs + mlp
    }
}

/// The truncated SigLIP tower: image → one feature row per patch.
#[derive(Debug, Clone)]
pub struct VisionTower {
    embeddings: PatchEmbedding,
    layers: Vec<EncoderLayer>,
    config: VisionConfig,
}

impl VisionTower {
    /// Loads the kept layers; `vb` points at the tower's `…vision_model` prefix
    /// (`model.vision_tower.vision_tower.vision_model` or the old `transformer.…`).
    pub fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        Self::load_from(cfg, &vb)
    }

    /// Loads the kept layers from any weight source (a GGUF mmproj builds its linears on
    /// the Q8_0 kernel), one layer after another.
    pub fn load_from<W: TowerWeights>(
        cfg: &VisionConfig,
        weights: &W,
    ) -> std::result::Result<Self, W::Error> {
        let embeddings = PatchEmbedding::load(cfg, weights)?;
        let layers = (0..cfg.num_layers)
            .map(|i| EncoderLayer::load(cfg, weights, i))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            embeddings,
            layers,
            config: cfg.clone(),
        })
    }

    /// `pixel_values`: (B, 3, S, S), normalised to [−1, 1]. Returns (B, patches, hidden):
    /// the hidden state after the last kept layer, without post-layernorm.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let dtype = self.embeddings.position.dtype();
        let pixel_values = if pixel_values.dtype() == dtype {
            pixel_values.clone()
        } else {
            pixel_values.to_dtype(dtype)?
        };
        let mut xs = self.embeddings.forward(&pixel_values)?;
        for layer in &self.layers {
            xs = layer.forward(&xs)?;
        }
        Ok(xs)
    }

    pub fn config(&self) -> &VisionConfig {
        &self.config
    }

    /// Bytes of weights the tower holds in memory, quantized matrices at their packed size.
    pub fn weight_bytes(&self) -> usize {
        let norm = |ln: &LayerNorm| tensor_bytes(ln.weight()) + ln.bias().map_or(0, tensor_bytes);
        let attention = |a: &Attention| {
            let qkv = match &a.qkv {
                QkvProjection::Separate { q, k, v } => {
                    [q, k, v].into_iter().map(linear_bytes).sum()
                }
                QkvProjection::Fused(qkv) => linear_bytes(qkv),
            };
            qkv + linear_bytes(&a.out_proj)
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                norm(&l.layer_norm1)
                    + norm(&l.layer_norm2)
                    + attention(&l.self_attn)
                    + linear_bytes(&l.mlp.fc1)
                    + linear_bytes(&l.mlp.fc2)
            })
            .sum();
        layers + linear_bytes(&self.embeddings.proj) + tensor_bytes(&self.embeddings.position)
    }

    /// The dtype the tower computes in (that of its weights).
    pub fn dtype(&self) -> DType {
        self.embeddings.position.dtype()
    }
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

fn linear_bytes(linear: &Linear) -> usize {
    let weight = match linear.weight() {
        Weight::Q8_0(matrix) => matrix.resident_bytes(),
        Weight::Candle(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
        Weight::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => tensor_bytes(t),
        // The tower's loaders build only dense and Q8_0 layers.
        _ => 0,
    };
    weight + linear.bias().map_or(0, tensor_bytes)
}

impl Module for VisionTower {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        VisionTower::forward(self, xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn select_layer_minus_two_keeps_all_but_the_last_layer() {
        let config = VisionConfig::from_imp_config(&json!({
            "mm_vision_select_layer": -2,
            "mm_vision_select_feature": "patch",
            "vision_tower_config": {
                "hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                "num_hidden_layers": 27, "image_size": 384, "patch_size": 14,
                "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"
            }
        }))
        .unwrap();
        assert_eq!(config, VisionConfig::siglip_so400m(384));
        assert_eq!(config.num_patches(), 729);
    }

    #[test]
    fn a_config_without_a_block_falls_back_to_the_named_so400m_tower() {
        let config = VisionConfig::from_imp_config(&json!({
            "mm_vision_tower": "MILVLG/Imp-v1.5-3B-196/siglip-so400m-patch14-196",
        }))
        .unwrap();
        assert_eq!(config, VisionConfig::siglip_so400m(196));
        assert_eq!(config.num_patches(), 196);
    }

    #[test]
    fn a_block_given_as_a_json_string_is_read() {
        let config = VisionConfig::from_imp_config(&json!({
            "vision_tower_config": "{\"image_size\": 28, \"patch_size\": 14, \"hidden_size\": 8, \"num_attention_heads\": 2, \"num_hidden_layers\": 3}",
        }))
        .unwrap();
        assert_eq!(
            (config.image_size, config.num_layers, config.num_patches()),
            (28, 2, 4)
        );
    }

    #[test]
    fn unusable_settings_are_refused_with_the_key_named() {
        let no_tower = VisionConfig::from_imp_config(&json!({"model_type": "imp"})).unwrap_err();
        assert!(matches!(
            no_tower,
            VisionConfigError::Missing { tower: None }
        ));
        let feature = VisionConfig::from_imp_config(&json!({
            "mm_vision_select_feature": "cls_patch",
            "mm_vision_tower": "google/siglip-so400m-patch14-384",
        }))
        .unwrap_err();
        assert!(feature.to_string().contains("mm_vision_select_feature"));
        let layer = VisionConfig::from_imp_config(&json!({
            "mm_vision_select_layer": -30,
            "mm_vision_tower": "google/siglip-so400m-patch14-384",
        }))
        .unwrap_err();
        assert_eq!(
            layer,
            VisionConfigError::SelectLayer {
                select: -30,
                layers: 27
            }
        );
        let act = VisionConfig::from_imp_config(&json!({
            "vision_tower_config": {"hidden_act": "relu6"},
        }))
        .unwrap_err();
        assert!(matches!(act, VisionConfigError::Malformed(m) if m.contains("relu6")));
        let heads = VisionConfig::from_imp_config(&json!({
            "vision_tower_config": {"hidden_size": 10, "num_attention_heads": 3},
        }))
        .unwrap_err();
        assert!(heads.to_string().contains("num_attention_heads"));
    }

    #[test]
    fn parallel_gelu_matches_candles_tanh_gelu() {
        let device = candle_core::Device::Cpu;
        let xs = (Tensor::randn(0f32, 1f32, (3, 50_000), &device).unwrap() * 4.0).unwrap();
        let xs = Tensor::cat(
            &[
                &xs,
                &Tensor::new(&[[-1e4f32, -30.0, 0.0, 30.0, 1e4]; 3], &device).unwrap(),
            ],
            1,
        )
        .unwrap();
        let fast = VisionAct::GeluTanh.apply(&xs).unwrap();
        let reference = xs.gelu().unwrap();
        let diff = (fast - reference)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap();
        let max: f32 = diff.max(0).unwrap().to_scalar().unwrap();
        assert!(max < 1e-5, "max difference {max}");
    }

    /// The tower's attention on the engine's kernel (f32) against candle's matmul and
    /// softmax on the same values in f64.
    #[test]
    fn kernel_attention_matches_candle_ops() {
        let device = candle_core::Device::Cpu;
        let qkv: Vec<Tensor> = (0..3)
            .map(|_| Tensor::randn(0f32, 1f32, (1, 5, 40, 72), &device).unwrap())
            .collect();
        let scale = 72f64.powf(-0.5);
        let fast = attend(&qkv[0], &qkv[1], &qkv[2], scale).unwrap();
        let wide: Vec<Tensor> = qkv
            .iter()
            .map(|t| t.to_dtype(DType::F64).unwrap())
            .collect();
        let reference = attend(&wide[0], &wide[1], &wide[2], scale)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert_eq!(fast.dims(), &[1, 40, 5 * 72]);
        let diff: f32 = (&fast - &reference)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5, "max difference {diff}");
    }

    #[test]
    fn wrong_image_size_is_an_error_not_a_panic() {
        let cfg = VisionConfig {
            hidden_size: 8,
            intermediate_size: 16,
            num_attention_heads: 2,
            num_layers: 1,
            image_size: 28,
            patch_size: 14,
            layer_norm_eps: 1e-6,
            hidden_act: VisionAct::GeluTanh,
        };
        let vb = VarBuilder::zeros(DType::F32, &candle_core::Device::Cpu);
        let tower = VisionTower::load(&cfg, vb).unwrap();
        let ok = Tensor::zeros((2, 3, 28, 28), DType::F32, &candle_core::Device::Cpu).unwrap();
        assert_eq!(tower.forward(&ok).unwrap().dims(), &[2, 4, 8]);
        let wrong = Tensor::zeros((1, 3, 42, 42), DType::F32, &candle_core::Device::Cpu).unwrap();
        let err = tower.forward(&wrong).unwrap_err().to_string();
        assert!(err.contains("(batch, 3, 28, 28)"), "{err}");
    }
}
