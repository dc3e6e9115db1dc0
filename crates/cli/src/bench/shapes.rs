//! The exact shapes of each Imp checkpoint (shared/reference/imp-model.md), and a tiny
//! fixture-sized one for tests.

use std::fmt;

/// Which Imp model's shapes to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchSize {
    /// Imp-v1.5-2B-Qwen1.5: Qwen1.5-1.8B + SigLIP-so400m.
    #[value(name = "2b")]
    Imp2B,
    /// Imp-v1.5-3B-Phi2: Phi-2 2.7B + SigLIP-so400m.
    #[value(name = "3b")]
    Imp3B,
    /// Imp-v1.5-4B-Phi3: Phi-3-mini 3.8B + SigLIP-so400m.
    #[value(name = "4b")]
    Imp4B,
    /// Fixture-sized Phi-2 + SigLIP (for tests; seconds to build and run).
    #[value(name = "tiny")]
    Tiny,
}

impl fmt::Display for BenchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Imp2B => "2b",
            Self::Imp3B => "3b",
            Self::Imp4B => "4b",
            Self::Tiny => "tiny",
        })
    }
}

/// The language-model family, as the checkpoint's `model_type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmFamily {
    Phi2,
    Qwen2,
    Phi3,
}

impl LmFamily {
    /// llama.cpp's architecture name, as written to `general.architecture`.
    pub fn arch(self) -> &'static str {
        match self {
            Self::Phi2 => "phi2",
            Self::Qwen2 => "qwen2",
            Self::Phi3 => "phi3",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LmShape {
    pub family: LmFamily,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub context: usize,
}

impl LmShape {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// SigLIP as Imp runs it: `layers` kept encoder layers (the base tower has one more).
#[derive(Debug, Clone, PartialEq)]
pub struct VisionShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub layers: usize,
    pub patch: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    pub lm: LmShape,
    pub vision: VisionShape,
    /// The two image sides benchmarked, small first (196 and 384 px for real models).
    pub image_sizes: [usize; 2],
}

const SIGLIP: VisionShape = VisionShape {
    hidden: 1152,
    intermediate: 4304,
    heads: 16,
    layers: 26,
    patch: 14,
};

impl BenchSize {
    pub fn shapes(self) -> Shapes {
        let (lm, vision, image_sizes) = match self {
            Self::Imp2B => (
                LmShape {
                    family: LmFamily::Qwen2,
                    hidden: 2048,
                    layers: 24,
                    heads: 16,
                    kv_heads: 16,
                    intermediate: 5504,
                    vocab: 151_936,
                    context: 32_768,
                },
                SIGLIP,
                [196, 384],
            ),
            Self::Imp3B => (
                LmShape {
                    family: LmFamily::Phi2,
                    hidden: 2560,
                    layers: 32,
                    heads: 32,
                    kv_heads: 32,
                    intermediate: 10_240,
                    vocab: 51_200,
                    context: 3072,
                },
                SIGLIP,
                [196, 384],
            ),
            Self::Imp4B => (
                LmShape {
                    family: LmFamily::Phi3,
                    hidden: 3072,
                    layers: 32,
                    heads: 32,
                    kv_heads: 32,
                    intermediate: 8192,
                    vocab: 32_064,
                    context: 4096,
                },
                SIGLIP,
                [196, 384],
            ),
            Self::Tiny => (
                LmShape {
                    family: LmFamily::Phi2,
                    hidden: 64,
                    layers: 2,
                    heads: 4,
                    kv_heads: 4,
                    intermediate: 256,
                    // Large enough to hold the answer token (" a").
                    vocab: 8960,
                    context: 2048,
                },
                VisionShape {
                    hidden: 32,
                    intermediate: 64,
                    heads: 4,
                    layers: 2,
                    patch: 14,
                },
                [28, 56],
            ),
        };
        Shapes {
            lm,
            vision,
            image_sizes,
        }
    }
}

impl VisionShape {
    pub fn visual_tokens(&self, image_size: usize) -> usize {
        let side = image_size / self.patch;
        side * side
    }
}
