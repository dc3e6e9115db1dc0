//! The catalog of released Imp checkpoints (`models/catalog.toml`, compiled in).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::id::ModelId;
use crate::memory::{
    check_fit, estimate_file_bytes, estimate_ram, FitReport, ModelShape, Quant, RamEstimate,
};

const BUILTIN_CATALOG: &str = include_str!("../../../models/catalog.toml");

/// Language-model family; decides the chat template and the engine's model code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LmFamily {
    Phi2,
    Qwen2,
    Phi3,
}

impl LmFamily {
    /// `model_type` in the checkpoint's config.json.
    pub fn model_type(self) -> &'static str {
        match self {
            LmFamily::Phi2 => "imp",
            LmFamily::Qwen2 => "imp_qwen2",
            LmFamily::Phi3 => "imp_phi3",
        }
    }

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "imp" => Some(LmFamily::Phi2),
            "imp_qwen2" => Some(LmFamily::Qwen2),
            "imp_phi3" => Some(LmFamily::Phi3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LmFamily::Phi2 => "phi2",
            LmFamily::Qwen2 => "qwen2",
            LmFamily::Phi3 => "phi3",
        }
    }
}

/// How a non-square image becomes square before resizing (config `image_aspect_ratio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageAspect {
    Square,
    Pad,
    /// Not visible in the sources read; the engine must read config.json.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Path inside the repository.
    pub path: String,
    pub size_bytes: u64,
    /// True when the size is rounded from the hub's web page or inferred, not exact.
    #[serde(default)]
    pub size_is_estimate: bool,
    /// True when the file is not confirmed to exist; a 404 then skips it instead of failing.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantOption {
    pub quant: Quant,
    #[serde(default)]
    pub recommended: bool,
    /// Expected size of the converted file(s): LM in `quant`, vision in 16-bit.
    pub file_bytes: u64,
    /// Expected resident memory at `context_tokens` (see [`crate::memory::estimate_ram`]).
    pub ram_bytes: u64,
    pub context_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub id: ModelId,
    pub name: String,
    /// Hugging Face repository, `owner/name`.
    pub repo: String,
    /// Branch, tag or commit to download.
    pub revision: String,
    /// True when `revision` is a full commit hash (reproducible); false for a branch name.
    pub revision_pinned: bool,
    pub family: LmFamily,
    pub model_type: String,
    /// Total parameters in billions (LM + vision tower + projector), for display.
    pub params_billions: f64,
    pub image_size: u32,
    pub visual_tokens: u32,
    pub image_aspect: ImageAspect,
    /// Longest sequence (text + visual tokens) the model was trained with.
    pub context_length: u32,
    /// SPDX-style license of the Imp weights.
    pub license: String,
    /// License of the base language model the weights derive from.
    pub lm_license: String,
    /// False when the license could not be read from the model card.
    pub license_verified: bool,
    pub good_at: String,
    pub shape: ModelShape,
    pub files: Vec<CatalogFile>,
    pub quantizations: Vec<QuantOption>,
}

impl CatalogEntry {
    /// Bytes to download (sum of listed files, estimates included).
    pub fn download_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }

    pub fn recommended_quant(&self) -> Option<&QuantOption> {
        self.quantizations.iter().find(|q| q.recommended)
    }

    pub fn estimate_ram(&self, quant: Quant, context_tokens: u32) -> RamEstimate {
        estimate_ram(&self.shape, quant, context_tokens)
    }

    pub fn estimate_file_bytes(&self, quant: Quant) -> u64 {
        estimate_file_bytes(&self.shape, quant)
    }

    /// Fit verdict for the recommended quantization at its catalog context, against the
    /// memory available now; `None` when the OS does not report available memory.
    pub fn fit_now(&self) -> Option<FitReport> {
        let option = self.recommended_quant()?;
        check_fit(self.estimate_ram(option.quant, option.context_tokens).total)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub schema_version: u32,
    #[serde(rename = "model")]
    pub models: Vec<CatalogEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the model catalog is not valid TOML for this version of ImpChat: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("the model catalog is inconsistent: {0}")]
    Invalid(String),
}

/// Expected figures in the catalog may drift this far from the estimator before it is a bug.
const FIGURE_TOLERANCE: f64 = 0.10;
const SUPPORTED_SCHEMA: u32 = 1;
const VISION_PATCH: u32 = 14;

impl Catalog {
    /// The catalog shipped with this build.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Self::parse(BUILTIN_CATALOG)
    }

    /// Parses and validates a catalog document.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = toml::from_str(text)?;
        catalog.validate()?;
        Ok(catalog)
    }

    pub fn get(&self, id: &str) -> Option<&CatalogEntry> {
        self.models.iter().find(|m| m.id.as_str() == id)
    }

    /// Finds an entry by catalog id or by Hugging Face repo (case-insensitive).
    pub fn find(&self, id_or_repo: &str) -> Option<&CatalogEntry> {
        self.get(id_or_repo).or_else(|| {
            self.models
                .iter()
                .find(|m| m.repo.eq_ignore_ascii_case(id_or_repo))
        })
    }

    pub fn validate(&self) -> Result<(), CatalogError> {
        let invalid = |msg: String| Err(CatalogError::Invalid(msg));
        if self.schema_version != SUPPORTED_SCHEMA {
            return invalid(format!(
                "schema_version {} is not supported (expected {SUPPORTED_SCHEMA})",
                self.schema_version
            ));
        }
        if self.models.is_empty() {
            return invalid("it lists no models".into());
        }
        let mut ids = HashSet::new();
        let mut repos = HashSet::new();
        for entry in &self.models {
            if !ids.insert(entry.id.as_str()) {
                return invalid(format!("id {} appears twice", entry.id));
            }
            if !repos.insert(entry.repo.to_ascii_lowercase()) {
                return invalid(format!("repo {} appears twice", entry.repo));
            }
            validate_entry(entry)
                .map_err(|msg| CatalogError::Invalid(format!("{}: {msg}", entry.id)))?;
        }
        Ok(())
    }
}

fn validate_entry(entry: &CatalogEntry) -> Result<(), String> {
    let Some((owner, name)) = entry.repo.split_once('/') else {
        return Err(format!("repo {:?} is not owner/name", entry.repo));
    };
    if owner.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!("repo {:?} is not owner/name", entry.repo));
    }
    if entry.revision.trim().is_empty() {
        return Err("revision is empty".into());
    }
    let is_commit =
        entry.revision.len() == 40 && entry.revision.bytes().all(|b| b.is_ascii_hexdigit());
    if entry.revision_pinned != is_commit {
        return Err("revision_pinned must be true exactly when revision is a 40-hex commit".into());
    }
    if entry.model_type != entry.family.model_type() {
        return Err(format!(
            "model_type {} does not match family {}",
            entry.model_type,
            entry.family.as_str()
        ));
    }
    let side = entry.image_size / VISION_PATCH;
    if entry.image_size == 0
        || side * side != entry.visual_tokens
        || entry.shape.visual_tokens != entry.visual_tokens
    {
        return Err(format!(
            "image_size {} and visual_tokens {} disagree (patch 14)",
            entry.image_size, entry.visual_tokens
        ));
    }
    if entry.params_billions <= 0.0 || entry.shape.lm_params == 0 || entry.shape.vision_params == 0
    {
        return Err("parameter counts must be positive".into());
    }
    if entry.context_length <= entry.visual_tokens {
        return Err("context_length leaves no room for text after the image".into());
    }
    let mut paths = HashSet::new();
    for file in &entry.files {
        if file.size_bytes == 0 {
            return Err(format!("file {} has size 0", file.path));
        }
        if file.path.is_empty()
            || file.path.starts_with('/')
            || file
                .path
                .split('/')
                .any(|part| part == ".." || part.is_empty())
        {
            return Err(format!(
                "file path {:?} is not a plain relative path",
                file.path
            ));
        }
        if !paths.insert(file.path.as_str()) {
            return Err(format!("file {} is listed twice", file.path));
        }
    }
    let required = |path: &str| entry.files.iter().any(|f| f.path == path && !f.optional);
    if !required("config.json") {
        return Err("config.json is not a required file".into());
    }
    let has_tokenizer =
        required("tokenizer.json") || (required("vocab.json") && required("merges.txt"));
    if !has_tokenizer {
        return Err(
            "no required tokenizer files (tokenizer.json, or vocab.json + merges.txt)".into(),
        );
    }
    if !entry
        .files
        .iter()
        .any(|f| f.path.ends_with(".safetensors") && !f.optional)
    {
        return Err("no required .safetensors weights".into());
    }
    if entry.quantizations.iter().filter(|q| q.recommended).count() != 1 {
        return Err("exactly one quantization must be recommended".into());
    }
    for option in &entry.quantizations {
        let expected_file = entry.estimate_file_bytes(option.quant);
        let expected_ram = entry
            .estimate_ram(option.quant, option.context_tokens)
            .total;
        check_figure("file_bytes", option.quant, option.file_bytes, expected_file)?;
        check_figure("ram_bytes", option.quant, option.ram_bytes, expected_ram)?;
        if option.context_tokens > entry.context_length
            || option.context_tokens <= entry.visual_tokens
        {
            return Err(format!("{} context_tokens out of range", option.quant));
        }
    }
    Ok(())
}

fn check_figure(what: &str, quant: Quant, stated: u64, estimated: u64) -> Result<(), String> {
    let drift = (stated as f64 - estimated as f64).abs() / estimated as f64;
    if stated == 0 || drift > FIGURE_TOLERANCE {
        return Err(format!(
            "{quant} {what} = {stated} but the estimator gives {estimated}; update the catalog"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_validates() {
        let catalog = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
        let repos: Vec<&str> = catalog.models.iter().map(|m| m.repo.as_str()).collect();
        for repo in [
            "MILVLG/imp-v1-3b",
            "MILVLG/Imp-v1.5-3B-Phi2",
            "MILVLG/Imp-v1.5-3B-196",
            "MILVLG/Imp-v1.5-2B-Qwen1.5",
            "MILVLG/Imp-v1.5-4B-Phi3",
        ] {
            assert!(repos.contains(&repo), "{repo} missing from catalog");
        }
        assert_eq!(catalog.models.len(), 5);
    }

    #[test]
    fn builtin_figures_match_the_reference() {
        let catalog = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
        let fast = catalog
            .find("MILVLG/Imp-v1.5-3B-196")
            .map(|m| (m.image_size, m.visual_tokens));
        assert_eq!(fast, Some((196, 196)));
        let qwen = catalog
            .get("imp-v1.5-2b-qwen1.5")
            .map(|m| (m.family, m.shape.layers));
        assert_eq!(qwen, Some((LmFamily::Qwen2, 24)));
        // imp-v1-3b shards on the hub: 996 MB + 4 x 1.02 GB + 1.01 GB + 275 MB = 6.36 GB.
        let v1 = catalog
            .get("imp-v1-3b")
            .map(CatalogEntry::download_bytes)
            .unwrap_or(0);
        assert!((6_300_000_000..6_400_000_000).contains(&v1), "{v1}");
    }

    fn minimal(extra: &str) -> String {
        let builtin = BUILTIN_CATALOG;
        format!("{builtin}\n{extra}")
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let first_model = BUILTIN_CATALOG
            .split("\n[[model]]\n")
            .nth(1)
            .unwrap_or_default()
            .replace("MILVLG/imp-v1-3b", "someone/else");
        let text = minimal(&format!("[[model]]\n{first_model}"));
        let err = Catalog::parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("imp-v1-3b appears twice"), "{err}");
    }

    #[test]
    fn unknown_family_and_zero_size_are_rejected() {
        let bad_family = BUILTIN_CATALOG.replacen("family = \"phi2\"", "family = \"llama\"", 1);
        assert!(matches!(
            Catalog::parse(&bad_family),
            Err(CatalogError::Parse(_))
        ));
        let zero = BUILTIN_CATALOG.replacen("size_bytes = 1840", "size_bytes = 0", 1);
        let err = Catalog::parse(&zero).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("size 0"), "{err}");
    }

    #[test]
    fn stale_quantization_figures_are_rejected() {
        let stale = BUILTIN_CATALOG.replacen("ram_bytes = 5435999528", "ram_bytes = 2000000000", 1);
        let err = Catalog::parse(&stale).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("ram_bytes"), "{err}");
    }
}
