//! A loaded Imp model: vision tower, projector, language model, tokenizer and chat
//! template, shared (read-only) by any number of [`Session`]s.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use impchat_input::image::{self as input_image, DecodeLimits, ImageAspect};
use impchat_input::template::ChatTemplate;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::config::{CheckpointConfig, Family, LmConfig};
use crate::error::EngineError;
use crate::lm::phi2::{self, Phi2};
use crate::lm::phi3::Phi3;
use crate::lm::qwen2::Qwen2;
use crate::lm::{KvCache, LanguageModel};
use crate::memory::ReleaseFreedMemory;
use crate::projector::{self, Projector};
use crate::request::GenerateRequest;
use crate::session::{build_prompt, embed_slots, ImageDigest, Session, Slot};
use crate::validate;
use crate::vision::{VisionConfig, VisionTower};
use crate::weights::WeightFiles;

mod feature_cache;

pub use feature_cache::DEFAULT_FEATURE_CACHE_BYTES;
pub(crate) use feature_cache::{FeatureCache, FeatureKey};

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// CPU threads for the model's math; `None` lets candle pick (physical cores).
    pub threads: Option<usize>,
    /// The vision file (`mmproj-*.gguf`) of a `.gguf` model; `None` looks for one beside
    /// it, and without one the model answers text-only questions.
    pub mmproj: Option<PathBuf>,
}

/// What a loaded model is, for display and for the API's `/v1/models`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// `_name_or_path` from config.json, or the folder name.
    pub id: String,
    pub name: String,
    pub family: Family,
    pub path: PathBuf,
    /// Whether the model can look at images (a `.gguf` loaded without its mmproj cannot).
    pub vision: bool,
    /// Side of the square image the vision tower sees, in pixels (0 without vision).
    pub image_size: u32,
    /// Sequence positions one image takes (0 without vision).
    pub visual_tokens: usize,
    /// Longest conversation (prompt, images and answer) in tokens.
    pub context_length: usize,
    /// How the weights are stored: "f32", "f16", "bf16".
    pub quantization: String,
    pub image_aspect: ImageAspect,
    pub parameters: u64,
}

/// The exact square image the model sees, as PNG.
#[derive(Debug, Clone)]
pub struct ImagePreview {
    pub png: Vec<u8>,
    pub size: u32,
    pub visual_tokens: usize,
    pub aspect: ImageAspect,
}

/// A loaded model; cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub info: ModelInfo,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub lm: Box<dyn LanguageModel>,
    /// `None` for a language model loaded without its vision file.
    pub vision: Option<Vision>,
    /// Token ids that end the assistant's turn.
    pub eos_token_ids: Vec<u32>,
    /// Dropped from the start of every prompt chunk after the first (Phi-3's `<s>`).
    pub bos_token_id: Option<u32>,
    pub runtime: Runtime,
    pub decode_limits: DecodeLimits,
    /// Image features for every session of this model.
    pub features: FeatureCache,
    /// How many images the vision tower has encoded since load.
    pub vision_runs: AtomicU64,
    /// Last, so the weights are freed before it runs.
    pub _release: ReleaseFreedMemory,
}

/// The vision tower and the projector into the language model's embedding space.
pub(crate) struct Vision {
    pub tower: VisionTower,
    pub projector: Projector,
}

/// Where the math runs: candle's own CPU pool, or a pool of the requested size.
#[derive(Default)]
pub(crate) struct Runtime {
    pool: Option<rayon::ThreadPool>,
}

impl Runtime {
    fn new(threads: Option<usize>) -> Result<Self, EngineError> {
        let pool = match threads {
            None => None,
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .thread_name(|i| format!("impchat-cpu-{i}"))
                    .build()
                    .map_err(|e| {
                        EngineError::InvalidRequest(format!("cannot start {n} threads: {e}"))
                    })?,
            ),
        };
        Ok(Self { pool })
    }

    /// Runs `f` with the thread pool installed once, not per operation.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => Device::Cpu.with_context(f),
        }
    }
}

impl Model {
    /// Loads a Hugging Face Imp checkpoint folder (config.json, tokenizer files, safetensors)
    /// or a language-model `.gguf` written by `impchat-convert` (with its `mmproj-*.gguf`).
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model, EngineError> {
        let dir = path.as_ref();
        let metadata = std::fs::metadata(dir).map_err(|e| EngineError::io(dir, e))?;
        if metadata.is_file() {
            let is_gguf = dir
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
            if is_gguf {
                return Self::load_gguf(dir, opts.mmproj.as_deref(), opts);
            }
            // A device or /proc file is named for what it is, not called "not a folder".
            impchat_input::files::require_regular_file(dir).map_err(EngineError::from_file)?;
            return Err(EngineError::NotAFolder {
                path: dir.to_path_buf(),
            });
        }
        if !metadata.is_dir() {
            // A FIFO, socket or device: refused without opening it.
            impchat_input::files::require_regular_file(dir).map_err(EngineError::from_file)?;
        }
        let runtime = Runtime::new(opts.threads)?;
        let inner = runtime.run(|| load_parts(dir))?;
        Ok(Model {
            inner: Arc::new(Inner { runtime, ..inner }),
        })
    }

    /// Loads a language-model GGUF and the vision GGUF `mmproj`, or, when `None`, the
    /// `mmproj-*.gguf` [`crate::gguf::find_mmproj`] finds next to it.
    pub fn load_gguf(
        lm: &Path,
        mmproj: Option<&Path>,
        opts: &LoadOptions,
    ) -> Result<Model, EngineError> {
        let runtime = Runtime::new(opts.threads)?;
        let inner = runtime.run(|| crate::gguf::load::load_parts(lm, mmproj))?;
        Ok(Model {
            inner: Arc::new(Inner { runtime, ..inner }),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    pub fn new_session(&self) -> Session {
        Session::new(self.clone())
    }

    /// Decodes and preprocesses `bytes` exactly as for the model and returns the result
    /// as PNG, so the user can see what the model will see.
    pub fn preview_image(&self, bytes: &[u8]) -> Result<ImagePreview, EngineError> {
        let info = &self.inner.info;
        let square = self.inner.preprocess(bytes, 0)?;
        let mut png = Vec::new();
        square
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| EngineError::Image {
                index: 0,
                reason: e.to_string(),
            })?;
        Ok(ImagePreview {
            png,
            size: info.image_size,
            visual_tokens: info.visual_tokens,
            aspect: info.image_aspect,
        })
    }

    /// The prompt `req` becomes, as Imp's `tokenizer_image_token` writes it: token ids
    /// with [`IMAGE_TOKEN_INDEX`] where each image goes.
    pub fn prompt_ids(&self, req: &GenerateRequest) -> Result<Vec<i64>, EngineError> {
        let prompt = build_prompt(&self.inner, req)?;
        let mut ids = Vec::new();
        for slot in prompt.slots {
            match slot {
                Slot::Token(id) => ids.push(i64::from(id)),
                Slot::ImageRow { row: 0, .. } => ids.push(IMAGE_TOKEN_INDEX),
                Slot::ImageRow { .. } => {}
            }
        }
        Ok(ids)
    }

    /// Logits `(L, vocab)` for every position of `req`'s prompt (images spliced in),
    /// computed from scratch: for checking the model against a reference, or scoring.
    pub fn prompt_logits(&self, req: &GenerateRequest) -> Result<Tensor, EngineError> {
        let inner = &*self.inner;
        inner.runtime.run(|| {
            let prompt = build_prompt(inner, req)?;
            let mut features = HashMap::new();
            for (index, (digest, bytes)) in prompt.images.iter().enumerate() {
                if !features.contains_key(digest) {
                    features.insert(*digest, inner.image_features(digest, bytes, index)?.0);
                }
            }
            let embeds = embed_slots(inner, &features, &prompt.slots)?;
            let mut cache = KvCache::new(inner.lm.num_layers());
            Ok(inner
                .lm
                .forward_embeds(&embeds, &mut cache, 0)?
                .squeeze(0)?)
        })
    }

    /// Projected image features `(1, visual_tokens, hidden)`, as spliced into the prompt.
    pub fn encode_image(&self, bytes: &[u8]) -> Result<Tensor, EngineError> {
        let inner = &*self.inner;
        let digest: ImageDigest = Sha256::digest(bytes).into();
        inner
            .runtime
            .run(|| Ok(inner.image_features(&digest, bytes, 0)?.0))
    }

    /// The language model on its own (embeddings in, logits out).
    pub fn language_model(&self) -> &dyn LanguageModel {
        self.inner.lm.as_ref()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// How many images the vision tower has encoded since the model was loaded (images
    /// answered from the feature cache do not count).
    pub fn vision_tower_runs(&self) -> u64 {
        self.inner.vision_runs.load(Ordering::Relaxed)
    }

    /// Bounds the image-feature cache shared by this model's sessions
    /// ([`DEFAULT_FEATURE_CACHE_BYTES`] after load; 0 turns it off), evicting what no
    /// longer fits.
    pub fn set_feature_cache_bytes(&self, bytes: usize) {
        self.inner.features.set_capacity(bytes);
    }

    /// Bytes of image features the cache holds now.
    pub fn feature_cache_bytes_used(&self) -> usize {
        self.inner.features.used_bytes()
    }
}

/// Marks an image's place in [`Model::prompt_ids`] (Imp's `IMAGE_TOKEN_INDEX`).
pub const IMAGE_TOKEN_INDEX: i64 = -200;

impl Inner {
    /// Decoded, padded (if the checkpoint says so) and resized to the tower's square.
    pub fn preprocess(&self, bytes: &[u8], index: usize) -> Result<image::RgbImage, EngineError> {
        self.vision()?;
        let decoded =
            input_image::decode(bytes, &self.decode_limits).map_err(|e| EngineError::Image {
                index,
                reason: e.to_string(),
            })?;
        Ok(input_image::preprocess(
            &decoded.rgb,
            self.info.image_size,
            self.info.image_aspect,
        ))
    }

    /// Projected features of the image whose bytes hash to `digest`: from the feature
    /// cache (`true`) or encoded now (`false`, and cached), with the milliseconds it took.
    pub fn image_features(
        &self,
        digest: &ImageDigest,
        bytes: &[u8],
        index: usize,
    ) -> Result<(Tensor, f64, bool), EngineError> {
        let key = self.feature_key(digest);
        if let Some(features) = self.features.get(&key) {
            return Ok((features, 0.0, true));
        }
        let (features, ms) = self.encode_image(bytes, index)?;
        self.features.insert(key, features.clone());
        Ok((features, ms, false))
    }

    fn feature_key(&self, digest: &ImageDigest) -> FeatureKey {
        let info = &self.info;
        FeatureKey {
            image: *digest,
            model: Arc::from(format!(
                "{}|{}|{}",
                info.id,
                info.path.display(),
                info.quantization
            )),
            image_size: info.image_size,
            aspect: info.image_aspect,
        }
    }

    /// Image bytes → projected features `(1, visual_tokens, hidden)` and the time it took,
    /// always running the vision tower.
    pub fn encode_image(&self, bytes: &[u8], index: usize) -> Result<(Tensor, f64), EngineError> {
        self.vision_runs.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let square = self.preprocess(bytes, index)?;
        let size = self.info.image_size as usize;
        let pixels = Tensor::from_vec(
            input_image::to_pixel_values(&square),
            (1, 3, size, size),
            &Device::Cpu,
        )?;
        let vision = self.vision()?;
        let features = vision.projector.forward(&vision.tower.forward(&pixels)?)?;
        Ok((features, started.elapsed().as_secs_f64() * 1000.0))
    }

    /// The vision parts, or the error that says how to get them.
    pub fn vision(&self) -> Result<&Vision, EngineError> {
        self.vision.as_ref().ok_or(EngineError::NoVisionTower)
    }
}

/// A checkpoint folder whose config, tokenizer and weight headers agree, read without
/// mapping or converting any weight data.
struct Inspected {
    config: CheckpointConfig,
    weights: WeightFiles,
    tokenizer: Tokenizer,
    vision_config: VisionConfig,
    image_aspect: ImageAspect,
    /// Where the projector and vision tower live (`model.` or `transformer.`).
    prefix: String,
}

/// Checks a checkpoint folder as [`Model::load`] would, without loading it: every file it
/// needs, every config number against the weights present, the tokenizer. What this
/// accepts loads (barring weight bytes that are damaged); what it refuses, `load` refuses
/// with the same error.
pub fn check_checkpoint(dir: &Path) -> Result<(), EngineError> {
    inspect(dir).map(|_| ())
}

fn inspect(dir: &Path) -> Result<Inspected, EngineError> {
    let config = CheckpointConfig::load(dir)?;
    let weights = WeightFiles::open(dir)?;
    let tokenizer = impchat_input::tokenizer::load_tokenizer(dir)
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;

    let invalid = |reason: String| EngineError::InvalidConfig {
        path: config.path.clone(),
        reason,
    };
    let vision_config =
        VisionConfig::from_imp_config(&config.raw).map_err(|e| invalid(e.to_string()))?;
    projector::ensure_supported(config.raw.get("mm_projector_type").and_then(|v| v.as_str()))
        .map_err(|e| invalid(e.to_string()))?;
    let image_aspect = match config.image_aspect_ratio.as_str() {
        "pad" => ImageAspect::Pad,
        "square" | "squash" | "resize" => ImageAspect::Square,
        other => {
            return Err(invalid(format!(
                "image_aspect_ratio {other:?} is not supported (expected \"square\" or \"pad\")"
            )))
        }
    };
    validate::check_language_model(&config, &weights)?;
    let prefix = multimodal_prefix(&weights)?;
    let tower = format!("{prefix}vision_tower.vision_tower.vision_model.encoder.layers.");
    let present = validate::count_layers(weights.tensors.keys().map(String::as_str), &tower);
    validate::expect_kept_layers(vision_config.num_layers, present, &config.path)?;
    validate::check_projector(
        &weights,
        &prefix,
        vision_config.hidden_size,
        config.lm.hidden_size(),
        &config.path,
    )?;
    Ok(Inspected {
        config,
        weights,
        tokenizer,
        vision_config,
        image_aspect,
        prefix,
    })
}

fn load_parts(dir: &Path) -> Result<Inner, EngineError> {
    let Inspected {
        config,
        weights,
        tokenizer,
        vision_config,
        image_aspect,
        prefix,
    } = inspect(dir)?;
    let vb = weights.var_builder(DType::F32, &Device::Cpu)?;
    let vision = VisionTower::load(
        &vision_config,
        vb.pp(format!("{prefix}vision_tower.vision_tower.vision_model")),
    )?;
    let hidden = config.lm.hidden_size();
    let projector = Projector::load(
        vision_config.hidden_size,
        hidden,
        vb.pp(format!("{prefix}mm_projector")),
    )?;
    let lm = load_language_model(&config.lm, &weights, vb)?;

    let template = match config.family {
        Family::Phi2 => ChatTemplate::Phi2,
        Family::Qwen2 => ChatTemplate::ChatMl,
        Family::Phi3 => ChatTemplate::Phi3,
    };
    let mut eos_token_ids = config.eos_token_ids.clone();
    for stop in template.stop_strings() {
        if let Some(id) = tokenizer.token_to_id(stop) {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    let bos_token_id = match config.family {
        Family::Phi3 => tokenizer.token_to_id("<s>"),
        Family::Phi2 | Family::Qwen2 => None,
    };

    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = config
        .name_or_path
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| folder.clone());
    let name = id.rsplit('/').next().unwrap_or(&id).to_string();
    let info = ModelInfo {
        id,
        name,
        family: config.family,
        path: dir.to_path_buf(),
        vision: true,
        image_size: vision_config.image_size as u32,
        visual_tokens: vision_config.num_patches(),
        context_length: config.context_length(),
        quantization: weights.storage_dtype(),
        image_aspect,
        parameters: weights.parameter_count(),
    };
    Ok(Inner {
        info,
        tokenizer,
        template,
        lm,
        vision: Some(Vision {
            tower: vision,
            projector,
        }),
        eos_token_ids,
        bos_token_id,
        runtime: Runtime::default(),
        decode_limits: DecodeLimits::default(),
        features: FeatureCache::new(DEFAULT_FEATURE_CACHE_BYTES),
        vision_runs: AtomicU64::new(0),
        _release: ReleaseFreedMemory,
    })
}

/// `"model."` (current layout) or `"transformer."` (old phi-msft layout): where the
/// projector and vision tower live.
fn multimodal_prefix(weights: &WeightFiles) -> Result<String, EngineError> {
    const PROJECTOR: &str = "mm_projector.0.weight";
    weights
        .tensors
        .keys()
        .find_map(|name| name.strip_suffix(PROJECTOR).map(str::to_string))
        .ok_or_else(|| EngineError::TensorMissing {
            name: format!("model.{PROJECTOR}"),
        })
}

fn load_language_model(
    config: &LmConfig,
    weights: &WeightFiles,
    vb: VarBuilder,
) -> Result<Box<dyn LanguageModel>, EngineError> {
    Ok(match config {
        LmConfig::Phi2(c) => {
            let layout = phi2::Layout::detect(|name| weights.contains(name)).ok_or_else(|| {
                EngineError::TensorMissing {
                    name: "model.layers.0.self_attn.q_proj.weight".into(),
                }
            })?;
            Box::new(Phi2::load(c, layout, vb)?)
        }
        LmConfig::Qwen2(c) => Box::new(Qwen2::load(c, vb)?),
        LmConfig::Phi3(c) => Box::new(Phi3::load(c, vb)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn models_are_shared_and_sessions_move_across_threads() {
        assert_send_sync::<Model>();
        assert_send::<Session>();
    }
}
