//! Reads an Imp checkpoint's `config.json` (and `generation_config.json`) and works out
//! which model it is from its `model_type`/`architectures` and keys, never its folder name.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use impchat_input::files::{caps, read_capped_string, regular_file_len};

use crate::error::EngineError;
use crate::lm::{phi2, phi3, qwen2};

/// The language-model family inside an Imp checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Phi2,
    Qwen2,
    Phi3,
}

impl Family {
    /// Recognises Imp's `model_type` values, falling back to the `architectures` class names.
    pub fn detect(model_type: Option<&str>, architectures: &[String]) -> Result<Self, EngineError> {
        let by_type = match model_type {
            Some("imp") => Some(Family::Phi2),
            Some("imp_qwen2") => Some(Family::Qwen2),
            Some("imp_phi3") => Some(Family::Phi3),
            _ => None,
        };
        let by_arch = architectures.iter().find_map(|a| match a.as_str() {
            "ImpForCausalLM" => Some(Family::Phi2),
            "ImpQwen2ForCausalLM" => Some(Family::Qwen2),
            "ImpPhi3ForCausalLM" => Some(Family::Phi3),
            _ => None,
        });
        by_type
            .or(by_arch)
            .ok_or_else(|| EngineError::UnsupportedModelType {
                found: model_type
                    .map(str::to_string)
                    .or_else(|| architectures.first().cloned())
                    .unwrap_or_else(|| "(none given)".to_string()),
            })
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Family::Phi2 => "Phi-2",
            Family::Qwen2 => "Qwen1.5",
            Family::Phi3 => "Phi-3",
        }
    }
}

/// Typed access to a JSON object with the file named in every error.
pub struct Json<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path,
}

impl<'a> Json<'a> {
    pub fn new(map: &'a Map<String, Value>, path: &'a Path) -> Self {
        Self { map, path }
    }

    fn first(&self, keys: &[&str]) -> Option<&'a Value> {
        keys.iter()
            .filter_map(|k| self.map.get(*k))
            .find(|v| !v.is_null())
    }

    fn invalid(&self, reason: String) -> EngineError {
        EngineError::InvalidConfig {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// The first of `keys` that is present, as an unsigned integer.
    pub fn usize(&self, keys: &[&str]) -> Result<usize, EngineError> {
        self.opt_usize(keys)?
            .ok_or_else(|| self.invalid(format!("missing key {}", keys.join(" / "))))
    }

    pub fn opt_usize(&self, keys: &[&str]) -> Result<Option<usize>, EngineError> {
        match self.first(keys) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.invalid(format!("{} must be a whole number", keys[0]))),
        }
    }

    pub fn f64_or(&self, keys: &[&str], default: f64) -> Result<f64, EngineError> {
        match self.first(keys) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.invalid(format!("{} must be a number", keys[0]))),
        }
    }

    pub fn opt_f64(&self, keys: &[&str]) -> Result<Option<f64>, EngineError> {
        match self.first(keys) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.invalid(format!("{} must be a number", keys[0]))),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.map
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    pub fn str(&self, keys: &[&str]) -> Option<&'a str> {
        self.first(keys).and_then(Value::as_str)
    }

    pub fn value(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A token id or a list of them (`eos_token_id` comes in both shapes).
    pub fn token_ids(&self, key: &str) -> Vec<u32> {
        match self.map.get(key) {
            Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_u64)
                .map(|n| n as u32)
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn unsupported(&self, reason: String) -> EngineError {
        self.invalid(reason)
    }
}

/// The language-model hyper-parameters, per family.
#[derive(Debug, Clone, Serialize)]
pub enum LmConfig {
    Phi2(phi2::Config),
    Qwen2(qwen2::Config),
    Phi3(phi3::Config),
}

impl LmConfig {
    pub fn hidden_size(&self) -> usize {
        match self {
            LmConfig::Phi2(c) => c.hidden_size,
            LmConfig::Qwen2(c) => c.hidden_size,
            LmConfig::Phi3(c) => c.hidden_size,
        }
    }

    pub fn max_position_embeddings(&self) -> usize {
        match self {
            LmConfig::Phi2(c) => c.max_position_embeddings,
            LmConfig::Qwen2(c) => c.max_position_embeddings,
            LmConfig::Phi3(c) => c.max_position_embeddings,
        }
    }
}

/// Everything `config.json` says that the engine needs.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    pub path: PathBuf,
    pub family: Family,
    pub lm: LmConfig,
    /// `_name_or_path`, when the checkpoint records it.
    pub name_or_path: Option<String>,
    /// `"square"` (squash) or `"pad"` (pad to square first).
    pub image_aspect_ratio: String,
    /// Width of the vision features fed to the projector.
    pub mm_hidden_size: usize,
    /// The vision tower's own config block (`vision_tower_config`/`vision_config`), if any.
    pub vision: Option<Value>,
    /// End-of-turn ids from `config.json` and `generation_config.json`.
    pub eos_token_ids: Vec<u32>,
    /// The whole file, for the parts other modules interpret.
    pub raw: Value,
}

impl CheckpointConfig {
    /// Reads `config.json` (and `generation_config.json` when present) from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join("config.json");
        let raw = read_json(&path, caps::CONFIG)?;
        let mut config = Self::from_value(raw, &path)?;
        let generation = dir.join("generation_config.json");
        if regular_file_len(&generation)?.is_some() {
            let value = read_json(&generation, caps::CONFIG)?;
            if let Some(map) = value.as_object() {
                for id in Json::new(map, &generation).token_ids("eos_token_id") {
                    if !config.eos_token_ids.contains(&id) {
                        config.eos_token_ids.push(id);
                    }
                }
            }
        }
        Ok(config)
    }

    pub fn from_value(raw: Value, path: &Path) -> Result<Self, EngineError> {
        let Some(map) = raw.as_object() else {
            return Err(EngineError::InvalidConfig {
                path: path.to_path_buf(),
                reason: "expected a JSON object".to_string(),
            });
        };
        let json = Json::new(map, path);
        let architectures: Vec<String> = json
            .value("architectures")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let family = Family::detect(json.str(&["model_type"]), &architectures)?;
        let lm = match family {
            Family::Phi2 => LmConfig::Phi2(phi2::Config::from_json(&json)?),
            Family::Qwen2 => LmConfig::Qwen2(qwen2::Config::from_json(&json)?),
            Family::Phi3 => LmConfig::Phi3(phi3::Config::from_json(&json)?),
        };
        let vision = ["vision_tower_config", "vision_config"]
            .iter()
            .find_map(|k| json.value(k))
            .cloned()
            .map(parse_nested_json);
        Ok(Self {
            path: path.to_path_buf(),
            family,
            name_or_path: json.str(&["_name_or_path"]).map(str::to_string),
            image_aspect_ratio: json
                .str(&["image_aspect_ratio"])
                .unwrap_or("square")
                .to_string(),
            mm_hidden_size: json.opt_usize(&["mm_hidden_size"])?.unwrap_or(1152),
            vision,
            eos_token_ids: json.token_ids("eos_token_id"),
            lm,
            raw,
        })
    }

    /// The longest sequence (prompt, images and answer) the model can attend over.
    pub fn context_length(&self) -> usize {
        self.lm.max_position_embeddings()
    }
}

/// Some Imp configs store the vision config as a JSON string; accept both shapes.
fn parse_nested_json(value: Value) -> Value {
    match &value {
        Value::String(s) => serde_json::from_str(s).unwrap_or(value),
        _ => value,
    }
}

/// Reads a small JSON file of at most `cap` bytes (a regular file, never a pipe or device).
pub(crate) fn read_json(path: &Path, cap: u64) -> Result<Value, EngineError> {
    let text = read_capped_string(path, cap).map_err(EngineError::from_file)?;
    serde_json::from_str(&text).map_err(|e| EngineError::InvalidConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<CheckpointConfig, EngineError> {
        CheckpointConfig::from_value(value, Path::new("config.json"))
    }

    #[test]
    fn old_phi_msft_keys_are_understood() {
        let config = parse(json!({
            "model_type": "imp", "n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8,
            "layer_norm_epsilon": 1e-5, "n_positions": 3072, "vocab_size": 100,
            "activation_function": "gelu_new", "eos_token_id": 50295,
            "image_aspect_ratio": "square", "mm_hidden_size": 32
        }))
        .expect("config");
        assert_eq!(config.family, Family::Phi2);
        assert_eq!(config.context_length(), 3072);
        assert_eq!(config.eos_token_ids, vec![50295]);
        let LmConfig::Phi2(lm) = &config.lm else {
            panic!("phi2 expected")
        };
        assert_eq!(
            (lm.hidden_size, lm.num_hidden_layers, lm.rotary_dim),
            (64, 2, 8)
        );
        assert_eq!(lm.intermediate_size, 256);
    }

    #[test]
    fn new_phi_keys_and_partial_rotary_factor() {
        let config = parse(json!({
            "architectures": ["ImpForCausalLM"], "hidden_size": 80, "num_hidden_layers": 1,
            "num_attention_heads": 4, "partial_rotary_factor": 0.4, "intermediate_size": 160,
            "max_position_embeddings": 2048, "vocab_size": 100, "layer_norm_eps": 1e-5
        }))
        .expect("config");
        let LmConfig::Phi2(lm) = &config.lm else {
            panic!("phi2 expected")
        };
        assert_eq!(lm.rotary_dim, 8);
    }

    #[test]
    fn unknown_model_type_names_the_supported_ones() {
        let err = parse(json!({"model_type": "llava", "hidden_size": 8})).expect_err("unsupported");
        let message = err.to_string();
        assert!(message.contains("\"llava\""), "{message}");
        assert!(message.contains("imp_qwen2"), "{message}");
    }

    #[test]
    fn missing_keys_are_named() {
        let err = parse(json!({"model_type": "imp_qwen2"})).expect_err("incomplete");
        assert!(err.to_string().contains("hidden_size"), "{err}");
    }
}
