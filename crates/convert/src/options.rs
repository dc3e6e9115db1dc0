//! What the caller chooses and what a conversion reports back.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::config::Family;
use crate::error::ConvertError;

/// Weight format of the language-model GGUF, named as llama.cpp's `llama-quantize` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LmQuant {
    /// Q4_0 everywhere, `output` Q6_K (as llama-quantize does).
    Q4_0,
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for `output`, for `attn_v`/`attn_qkv` and
    /// `ffn_down` in the layers llama.cpp's `use_more_bits` picks.
    Q4KM,
    /// Q5_K everywhere, `output` Q6_K (llama.cpp's Q5_K_S).
    Q5K,
    /// Q6_K everywhere.
    Q6K,
    /// Q8_0 everywhere.
    Q8_0,
    /// F16 everywhere (no quantization).
    F16,
}

const LM_QUANTS: &str = "Q4_0, Q4_K_M, Q5_K, Q6_K, Q8_0, F16";

impl LmQuant {
    pub const ALL: [LmQuant; 6] = [
        Self::Q4_0,
        Self::Q4KM,
        Self::Q5K,
        Self::Q6K,
        Self::Q8_0,
        Self::F16,
    ];

    /// The name used in file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q4KM => "Q4_K_M",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8_0 => "Q8_0",
            Self::F16 => "F16",
        }
    }

    /// llama.cpp's `llama_ftype` value, written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
            Self::Q4KM => 15,
            Self::Q5K => 16,
            Self::Q6K => 18,
        }
    }
}

impl fmt::Display for LmQuant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LmQuant {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        let wanted = match wanted.as_str() {
            "Q4_K" => "Q4_K_M",
            "Q5_K_S" => "Q5_K",
            other => other,
        };
        Self::ALL
            .into_iter()
            .find(|q| q.name() == wanted)
            .ok_or_else(|| ConvertError::UnsupportedQuant {
                part: "language model",
                found: s.to_owned(),
                allowed: LM_QUANTS,
            })
    }
}

/// Weight format of the vision tower + projector GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VisionQuant {
    F16,
    /// Q8_0 for the linear weights whose input width is a multiple of 32, F16 for the rest.
    Q8_0,
}

const VISION_QUANTS: &str = "F16, Q8_0";

impl VisionQuant {
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "F16",
            Self::Q8_0 => "Q8_0",
        }
    }

    pub fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }
}

impl fmt::Display for VisionQuant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VisionQuant {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "F16" => Ok(Self::F16),
            "Q8_0" => Ok(Self::Q8_0),
            _ => Err(ConvertError::UnsupportedQuant {
                part: "vision tower",
                found: s.to_owned(),
                allowed: VISION_QUANTS,
            }),
        }
    }
}

/// How to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    pub lm: LmQuant,
    pub vision: VisionQuant,
    /// Base of the output file names and `general.name`; the source folder's name when `None`.
    pub name: Option<String>,
    /// Replace output files that already exist instead of refusing.
    pub overwrite: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            lm: LmQuant::Q4KM,
            vision: VisionQuant::F16,
            name: None,
            overwrite: false,
        }
    }
}

/// Which of the two output files a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputPart {
    LanguageModel,
    Projector,
}

/// Reported after each tensor is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertProgress {
    pub part: OutputPart,
    /// GGUF name of the tensor just written.
    pub tensor: String,
    /// Tensors of this part written so far (1-based).
    pub done: usize,
    pub total: usize,
}

/// One written GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub tensors: usize,
}

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOutput {
    pub family: Family,
    /// The llama.cpp-compatible language model (`phi2` / `qwen2` / `phi3` architecture).
    pub language_model: WrittenFile,
    /// The vision tower and projector in llama.cpp's `clip` conventions.
    pub projector: WrittenFile,
}
