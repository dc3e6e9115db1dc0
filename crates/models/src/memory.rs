//! Will a model fit in memory? Estimates what a loaded model needs (weights, KV cache,
//! activations, fixed overhead) and compares it with what the OS says is available.

use serde::{Deserialize, Serialize};

/// Weight formats the LM can be stored in. The vision tower and projector are kept in
/// 16-bit on disk whatever the LM uses (they are small and sensitive to quantization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quant {
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_k_m")]
    Q4KM,
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl Quant {
    pub const ALL: [Quant; 4] = [Quant::F16, Quant::Q8_0, Quant::Q4KM, Quant::Q4_0];

    /// Effective bits per LM weight including block scales and the tensors the format keeps
    /// at higher precision. Q4_K_M, Q4_0 and Q8_0 are the measured file sizes of Phi-2 GGUFs
    /// (1.79 / 1.60 / 2.96 GB for 2.78 B weights, /work/shared/reference/perf-anchor.md).
    pub fn bits_per_weight(self) -> f64 {
        match self {
            Quant::F16 => 16.0,
            Quant::Q8_0 => 8.51,
            Quant::Q4KM => 5.15,
            Quant::Q4_0 => 4.61,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quant::F16 => "f16",
            Quant::Q8_0 => "q8_0",
            Quant::Q4KM => "q4_k_m",
            Quant::Q4_0 => "q4_0",
        }
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The numbers of a model that decide its memory use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Language-model weights, embeddings and LM head included.
    pub lm_params: u64,
    /// Vision tower plus projector weights.
    pub vision_params: u64,
    pub hidden_size: u32,
    pub layers: u32,
    pub attention_heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub intermediate_size: u32,
    /// Visual tokens one image becomes (729 at 384 px, 196 at 196 px).
    pub visual_tokens: u32,
}

/// SigLIP-so400m widths, identical in every Imp checkpoint.
const VISION_HEADS: u64 = 16;
const VISION_INTERMEDIATE: u64 = 4304;
const VISION_HIDDEN: u64 = 1152;
/// Prompt text assumed to arrive together with the first image when sizing prefill buffers.
const PREFILL_TEXT_TOKENS: u64 = 512;
const F32_BYTES: u64 = 4;

/// Assumptions about the runtime, separate from the model so they can be tuned when the
/// engine's real behaviour is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuntimeAssumptions {
    /// Bytes per KV-cache element; candle keeps the cache in f32 on CPU.
    pub kv_bytes_per_element: f64,
    /// Bytes per vision weight once loaded; CPU kernels run the tower in f32.
    pub vision_bytes_per_weight: f64,
    /// Bytes per LM weight when the 16-bit safetensors are loaded unquantized: the engine's
    /// CPU path upcasts them to f32 (`var_builder(DType::F32, ..)` in crates/engine).
    pub unquantized_lm_bytes_per_weight: f64,
    /// Runtime, tokenizer, decoded images and allocator slack.
    pub overhead_bytes: u64,
}

impl Default for RuntimeAssumptions {
    fn default() -> Self {
        Self {
            kv_bytes_per_element: 4.0,
            vision_bytes_per_weight: 4.0,
            unquantized_lm_bytes_per_weight: 4.0,
            overhead_bytes: 300 * 1024 * 1024,
        }
    }
}

/// Estimated memory of a loaded model, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RamEstimate {
    pub weights: u64,
    pub kv_cache: u64,
    pub activations: u64,
    pub overhead: u64,
    pub total: u64,
}

/// Bytes the model file(s) take on disk in this format (LM in `quant`, vision in f16).
pub fn estimate_file_bytes(shape: &ModelShape, quant: Quant) -> u64 {
    lm_weight_bytes(shape, quant) + shape.vision_params * 2
}

fn lm_weight_bytes(shape: &ModelShape, quant: Quant) -> u64 {
    (shape.lm_params as f64 * quant.bits_per_weight() / 8.0).round() as u64
}

/// Estimated resident memory with `context_tokens` of KV cache, using default assumptions.
pub fn estimate_ram(shape: &ModelShape, quant: Quant, context_tokens: u32) -> RamEstimate {
    estimate_ram_with(shape, quant, context_tokens, &RuntimeAssumptions::default())
}

pub fn estimate_ram_with(
    shape: &ModelShape,
    quant: Quant,
    context_tokens: u32,
    assumptions: &RuntimeAssumptions,
) -> RamEstimate {
    let context = u64::from(context_tokens);
    let lm_weights = match quant {
        Quant::F16 => {
            (shape.lm_params as f64 * assumptions.unquantized_lm_bytes_per_weight).round() as u64
        }
        _ => lm_weight_bytes(shape, quant),
    };
    let weights = lm_weights
        + (shape.vision_params as f64 * assumptions.vision_bytes_per_weight).round() as u64;

    let kv_elements = 2
        * u64::from(shape.layers)
        * u64::from(shape.kv_heads)
        * u64::from(shape.head_dim)
        * context;
    let kv_cache = (kv_elements as f64 * assumptions.kv_bytes_per_element).round() as u64;

    // Peak transient buffers: the larger of the vision pass and the LM prefill, since they
    // run one after the other. Both are dominated by attention scores and the MLP activation.
    let visual = u64::from(shape.visual_tokens);
    let vision_pass = F32_BYTES
        * (VISION_HEADS * visual * visual
            + 2 * visual * VISION_INTERMEDIATE
            + 4 * visual * VISION_HIDDEN);
    let prefill = (visual + PREFILL_TEXT_TOKENS).min(context.max(1));
    let lm_prefill = F32_BYTES
        * (u64::from(shape.attention_heads) * prefill * prefill
            + 2 * prefill * u64::from(shape.intermediate_size)
            + 4 * prefill * u64::from(shape.hidden_size));
    let activations = vision_pass.max(lm_prefill);

    let overhead = assumptions.overhead_bytes;
    RamEstimate {
        weights,
        kv_cache,
        activations,
        overhead,
        total: weights + kv_cache + activations + overhead,
    }
}

/// Whether a model fits in the memory that is free now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Needs at most 80% of available memory.
    Yes,
    /// Fits, but leaves under 20% headroom: other programs may start swapping.
    Tight,
    /// Needs more than is available.
    No,
}

/// Share of available memory a model may use and still count as a comfortable fit.
const COMFORTABLE_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitReport {
    pub fit: Fit,
    pub required_bytes: u64,
    pub available_bytes: u64,
}

pub fn fit(required_bytes: u64, available_bytes: u64) -> FitReport {
    let fit = if required_bytes as f64 <= available_bytes as f64 * COMFORTABLE_SHARE {
        Fit::Yes
    } else if required_bytes <= available_bytes {
        Fit::Tight
    } else {
        Fit::No
    };
    FitReport {
        fit,
        required_bytes,
        available_bytes,
    }
}

/// Compares with [`available_memory`]; `None` when this platform does not report it.
pub fn check_fit(required_bytes: u64) -> Option<FitReport> {
    available_memory().map(|available| fit(required_bytes, available))
}

/// Memory the OS could hand to a new process without swapping: `MemAvailable` on Linux and
/// Android, free plus reclaimable pages on macOS, `ullAvailPhys` on Windows (all read through
/// `sysinfo`). `None` where the platform reports nothing (callers then show no verdict).
#[cfg(not(target_os = "ios"))]
pub fn available_memory() -> Option<u64> {
    if !sysinfo::IS_SUPPORTED_SYSTEM {
        return None;
    }
    let mut system = sysinfo::System::new();
    system.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    let available = system.available_memory();
    // A platform that cannot tell reports 0; no machine that runs us has 0 bytes free.
    (available > 0).then_some(available)
}

/// iOS ends an app that outgrows its own limit long before the device runs out of memory, so
/// the figure that matters is what this process may still allocate, which the OS reports
/// (`os_proc_available_memory`, iOS 13+). sysinfo (0.38)
/// also does not build for iOS against current libc.
#[cfg(target_os = "ios")]
pub fn available_memory() -> Option<u64> {
    extern "C" {
        // <os/proc.h>
        fn os_proc_available_memory() -> usize;
    }
    // SAFETY: takes no arguments and only reads the process's memory accounting.
    let available = unsafe { os_proc_available_memory() } as u64;
    (available > 0).then_some(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phi2_imp() -> ModelShape {
        ModelShape {
            lm_params: 2_780_000_000,
            vision_params: 410_000_000,
            hidden_size: 2560,
            layers: 32,
            attention_heads: 32,
            kv_heads: 32,
            head_dim: 80,
            intermediate_size: 10240,
            visual_tokens: 729,
        }
    }

    #[test]
    fn kv_cache_matches_hand_computation() {
        // 2 (k,v) * 32 layers * 32 heads * 80 dims * 4 bytes = 655,360 bytes per token.
        let estimate = estimate_ram(&phi2_imp(), Quant::Q4KM, 1000);
        assert_eq!(estimate.kv_cache, 655_360_000);
    }

    #[test]
    fn total_is_the_sum_of_parts_and_grows_with_context() {
        let short = estimate_ram(&phi2_imp(), Quant::Q4KM, 1024);
        let long = estimate_ram(&phi2_imp(), Quant::Q4KM, 3072);
        assert_eq!(
            short.total,
            short.weights + short.kv_cache + short.activations + short.overhead
        );
        assert!(long.total > short.total);
        assert_eq!(long.weights, short.weights);
    }

    #[test]
    fn smaller_quant_needs_less_memory_and_disk() {
        let shape = phi2_imp();
        let sizes: Vec<u64> = Quant::ALL
            .iter()
            .map(|q| estimate_ram(&shape, *q, 2048).total)
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] > w[1]), "{sizes:?}");
        // Phi-2 Q4_K_M GGUF is 1.79 GB; plus a 16-bit vision tower of 0.41 B weights.
        let file = estimate_file_bytes(&shape, Quant::Q4KM);
        assert!((2_550_000_000..2_660_000_000).contains(&file), "{file}");
    }

    #[test]
    fn unquantized_checkpoint_is_held_in_f32() {
        let estimate = estimate_ram(&phi2_imp(), Quant::F16, 2048);
        assert_eq!(estimate.weights, (2_780_000_000 + 410_000_000) * 4);
        assert_eq!(
            estimate_file_bytes(&phi2_imp(), Quant::F16),
            (2_780_000_000 + 410_000_000) * 2
        );
    }

    #[test]
    fn fit_verdict_boundaries() {
        assert_eq!(fit(80, 100).fit, Fit::Yes);
        assert_eq!(fit(81, 100).fit, Fit::Tight);
        assert_eq!(fit(100, 100).fit, Fit::Tight);
        assert_eq!(fit(101, 100).fit, Fit::No);
    }

    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    #[test]
    fn available_memory_is_reported_and_below_total() {
        let available = available_memory().unwrap_or(0);
        assert!(available > 0);
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        assert!(available <= system.total_memory(), "{available}");
    }
}
