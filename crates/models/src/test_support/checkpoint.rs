//! A tiny but structurally real Imp checkpoint: config, tokenizer, safetensors index and two
//! shards with the tensor names of the vision tower, projector and language model.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub const SHARD_1: &str = "model-00001-of-00002.safetensors";
pub const SHARD_2: &str = "model-00002-of-00002.safetensors";

fn shard(tensors: &[(&str, usize)], seed: u64) -> Vec<u8> {
    let data: Vec<(String, Vec<u8>, usize)> = tensors
        .iter()
        .enumerate()
        .map(|(i, (name, elements))| {
            (
                name.to_string(),
                random_bytes(elements * 2, seed + i as u64),
                *elements,
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(name, bytes, elements)| {
            let view = TensorView::new(Dtype::F16, vec![*elements], bytes)
                .unwrap_or_else(|e| panic!("test tensor {name}: {e}"));
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).unwrap_or_else(|e| panic!("serialize: {e}"))
}

const VISION: &str =
    "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight";
const VISION_LAYER: &str =
    "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight";
const PROJECTOR: &str = "model.mm_projector.0.weight";
const EMBED: &str = "model.embed_tokens.weight";
const LAYER: &str = "model.layers.0.mlp.fc1.weight";
const HEAD: &str = "lm_head.weight";

/// Files of the tiny checkpoint, name -> bytes. Shards are a few hundred KiB so transfers
/// span many reads.
pub fn tiny_checkpoint() -> BTreeMap<String, Vec<u8>> {
    let shard1 = [(VISION, 40_000), (VISION_LAYER, 60_000), (PROJECTOR, 2_000)];
    let shard2 = [(EMBED, 50_000), (LAYER, 80_000), (HEAD, 20_000)];
    let mut weight_map = serde_json::Map::new();
    for (name, _) in shard1 {
        weight_map.insert(name.into(), SHARD_1.into());
    }
    for (name, _) in shard2 {
        weight_map.insert(name.into(), SHARD_2.into());
    }
    let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    let config = serde_json::json!({
        "model_type": "imp",
        "architectures": ["ImpForCausalLM"],
        "hidden_size": 2560,
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "image_aspect_ratio": "square"
    });
    let tokenizer = serde_json::json!({ "version": "1.0", "model": { "type": "BPE", "vocab": {}, "merges": [] } });
    let mut files = BTreeMap::new();
    files.insert("config.json".into(), pretty(&config));
    files.insert("tokenizer.json".into(), pretty(&tokenizer));
    files.insert("model.safetensors.index.json".into(), pretty(&index));
    files.insert(SHARD_1.into(), shard(&shard1, 11));
    files.insert(SHARD_2.into(), shard(&shard2, 29));
    files
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_else(|e| panic!("json: {e}"))
}

pub fn write_checkpoint(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
}

/// A shard without any vision-tower tensors (an LLaVA-less text model, say).
pub fn text_only_shard() -> Vec<u8> {
    shard(&[(EMBED, 1_000), (HEAD, 1_000)], 5)
}
