//! App-wide settings, persisted as `settings.json` in the data folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};

pub const SETTINGS_FILE: &str = "settings.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    Light,
    Dark,
    #[default]
    System,
}

/// Sampling settings, app-wide defaults or per conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSettings {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub max_tokens: usize,
    pub repetition_penalty: f32,
    /// `None` picks a fresh seed per answer (recorded in the answer's provenance).
    pub seed: Option<u64>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            max_tokens: 512,
            repetition_penalty: 1.0,
            seed: None,
        }
    }
}

/// Seeds travel through JavaScript numbers, which are exact only up to 2^53.
pub const MAX_SEED: u64 = (1 << 53) - 1;
const MAX_TOKENS_LIMIT: usize = 32_768;

impl ChatSettings {
    /// The opaque JSON the store keeps per conversation.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Reads per-conversation settings back; `None` when absent or not readable.
    pub fn from_json(value: Option<&serde_json::Value>) -> Option<Self> {
        value.and_then(|value| serde_json::from_value(value.clone()).ok())
    }

    pub fn validate(&self) -> AppResult<()> {
        if !(0.0..=5.0).contains(&self.temperature) {
            return Err(AppError::invalid(format!(
                "temperature {} is out of range; use 0 (greedy) to 5",
                self.temperature
            )));
        }
        if let Some(top_p) = self.top_p {
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(AppError::invalid(format!(
                    "top-p {top_p} is out of range; use a value above 0 and at most 1, or leave it empty"
                )));
            }
        }
        if self.top_k == Some(0) {
            return Err(AppError::invalid("top-k must be at least 1, or left empty"));
        }
        if self.max_tokens == 0 || self.max_tokens > MAX_TOKENS_LIMIT {
            return Err(AppError::invalid(format!(
                "maximum answer length {} is out of range; use 1 to {MAX_TOKENS_LIMIT} tokens",
                self.max_tokens
            )));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty <= 10.0) {
            return Err(AppError::invalid(format!(
                "repetition penalty {} is out of range; use 1 for off, or a value up to 10",
                self.repetition_penalty
            )));
        }
        if self.seed.is_some_and(|seed| seed > MAX_SEED) {
            return Err(AppError::invalid(format!(
                "seed must be at most {MAX_SEED}"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSettings {
    #[serde(default)]
    pub theme: Theme,
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub defaults: ChatSettings,
    /// Where conversations, images and settings live; informational, set by the app.
    #[serde(default)]
    pub data_dir: String,
    #[serde(default)]
    pub last_model_path: Option<String>,
    /// Unload the model after this many minutes without use (5, 15 or 60); `None` keeps it.
    #[serde(default)]
    pub idle_unload_minutes: Option<u32>,
}

/// The idle times the settings offer.
pub const IDLE_UNLOAD_CHOICES: [u32; 3] = [5, 15, 60];

const MAX_THREADS: usize = 1024;

impl AppSettings {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            theme: Theme::System,
            threads: None,
            system_prompt: None,
            defaults: ChatSettings::default(),
            data_dir: data_dir.display().to_string(),
            last_model_path: None,
            idle_unload_minutes: None,
        }
    }

    pub fn idle_unload(&self) -> Option<Duration> {
        self.idle_unload_minutes
            .map(|minutes| Duration::from_secs(u64::from(minutes) * 60))
    }

    pub fn validate(&self) -> AppResult<()> {
        if let Some(threads) = self.threads {
            if threads == 0 || threads > MAX_THREADS {
                return Err(AppError::invalid(format!(
                    "{threads} threads is out of range; use 1 to {MAX_THREADS}, or leave it empty for all cores"
                )));
            }
        }
        if let Some(minutes) = self.idle_unload_minutes {
            if !IDLE_UNLOAD_CHOICES.contains(&minutes) {
                return Err(AppError::invalid(format!(
                    "unloading after {minutes} minutes idle is not offered; choose 5, 15 or 60 minutes, or off"
                )));
            }
        }
        self.defaults.validate()
    }
}

/// Reads and writes `settings.json`; writes are atomic (temp file + rename).
#[derive(Debug, Clone)]
pub struct SettingsFile {
    path: PathBuf,
    data_dir: PathBuf,
}

/// What `SettingsFile::load` found.
pub struct Loaded {
    pub settings: AppSettings,
    /// Set when the file was unreadable and was moved aside.
    pub notice: Option<String>,
}

impl SettingsFile {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(SETTINGS_FILE),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Missing file: defaults. Damaged file: moved aside as `settings.json.damaged`, defaults used.
    pub fn load(&self) -> Loaded {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Loaded {
                    settings: AppSettings::new(&self.data_dir),
                    notice: None,
                }
            }
            Err(err) => {
                return Loaded {
                    settings: AppSettings::new(&self.data_dir),
                    notice: Some(format!(
                        "could not read {}: {err}; using default settings for now",
                        self.path.display()
                    )),
                }
            }
        };
        let parsed = serde_json::from_slice::<AppSettings>(&bytes)
            .map_err(|err| err.to_string())
            .and_then(|settings| {
                settings
                    .validate()
                    .map(|()| settings)
                    .map_err(|e| e.message)
            });
        match parsed {
            Ok(mut settings) => {
                settings.data_dir = self.data_dir.display().to_string();
                Loaded {
                    settings,
                    notice: None,
                }
            }
            Err(reason) => {
                let aside = self.path.with_extension("json.damaged");
                let moved = std::fs::rename(&self.path, &aside);
                let where_ = match moved {
                    Ok(()) => format!("it was moved aside to {}", aside.display()),
                    Err(err) => format!("it could not be moved aside ({err})"),
                };
                Loaded {
                    settings: AppSettings::new(&self.data_dir),
                    notice: Some(format!(
                        "settings file {} was damaged ({reason}); {where_} and default settings are in use",
                        self.path.display()
                    )),
                }
            }
        }
    }

    pub fn save(&self, settings: &AppSettings) -> AppResult<()> {
        let json = serde_json::to_vec_pretty(settings)
            .map_err(|err| AppError::internal(format!("could not encode settings: {err}")))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json)
            .map_err(|err| AppError::io(format!("could not write {}", tmp.display()), &err))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|err| AppError::io(format!("could not replace {}", self.path.display()), &err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_settings_load_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SettingsFile::new(dir.path());
        let mut settings = AppSettings::new(dir.path());
        settings.theme = Theme::Dark;
        settings.threads = Some(2);
        settings.last_model_path = Some("/models/imp".into());
        settings.defaults.temperature = 0.7;
        settings.defaults.seed = Some(42);
        file.save(&settings).expect("save");
        let loaded = file.load();
        assert!(loaded.notice.is_none());
        assert_eq!(loaded.settings, settings);
    }

    #[test]
    fn settings_saved_with_the_retired_image_size_still_load() {
        // Each Imp checkpoint has one fixed input resolution, so the setting was dropped;
        // a settings file from before keeps everything else.
        let dir = tempfile::tempdir().expect("tempdir");
        let json = r#"{ "theme": "dark", "threads": 2, "imageSize": 196,
                        "lastModelPath": "/models/imp" }"#;
        std::fs::write(dir.path().join(SETTINGS_FILE), json).expect("write");
        let loaded = SettingsFile::new(dir.path()).load();
        assert!(loaded.notice.is_none(), "{:?}", loaded.notice);
        assert_eq!(loaded.settings.theme, Theme::Dark);
        assert_eq!(loaded.settings.threads, Some(2));
        assert_eq!(
            loaded.settings.last_model_path.as_deref(),
            Some("/models/imp")
        );
    }

    #[test]
    fn damaged_file_is_moved_aside_and_defaults_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(SETTINGS_FILE), b"{ not json").expect("write");
        let loaded = SettingsFile::new(dir.path()).load();
        assert_eq!(loaded.settings, AppSettings::new(dir.path()));
        let notice = loaded.notice.expect("a notice");
        assert!(notice.contains("damaged"), "{notice}");
        assert!(dir.path().join("settings.json.damaged").exists());
        assert!(!dir.path().join(SETTINGS_FILE).exists());
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_allowed_range() {
        let mut settings = AppSettings::new(Path::new("/tmp"));
        settings.defaults.top_p = Some(1.5);
        let err = settings.validate().expect_err("top-p 1.5");
        assert!(err.message.contains("top-p"), "{}", err.message);
        settings.defaults.top_p = None;
        settings.threads = Some(0);
        assert!(settings.validate().is_err());
        settings.threads = None;
        settings.idle_unload_minutes = Some(7);
        let err = settings.validate().expect_err("7 minutes");
        assert!(err.message.contains("5, 15 or 60"), "{}", err.message);
        settings.idle_unload_minutes = Some(15);
        assert_eq!(settings.idle_unload(), Some(Duration::from_secs(900)));
    }
}
