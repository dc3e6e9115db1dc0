//! What `impchat bench` reports: medians over the runs (raw samples kept in the JSON),
//! as one JSON object or a table.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// Every figure of one benchmark run set, medians unless named otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub size: String,
    pub family: String,
    pub quant: String,
    pub vision_quant: String,
    pub threads: usize,
    pub runs: usize,
    pub parameters: u64,
    pub lm_file: PathBuf,
    pub lm_bytes: u64,
    /// The image every run asks about (a synthetic photo-sized PNG).
    pub image_file: PathBuf,
    pub image_width: u32,
    pub image_height: u32,
    /// Text tokens of the paper's prompt (Imp paper, Table 4: 41), or the fewest the
    /// model's chat template allows where that is more (Qwen1.5's: 49).
    pub text_tokens: usize,
    /// Tokens generated per answer (Imp paper, Table 4: 64).
    pub generated_tokens: usize,
    /// One entry per image side, small first.
    pub images: Vec<ImageFigures>,
    /// `null` when `--long-tokens 0`.
    pub long_decode: Option<LongDecode>,
    /// The process's peak resident memory (VmHWM); `null` where the OS does not say.
    pub peak_rss_bytes: Option<u64>,
}

/// The paper's protocol at one image side: load, then one image + 41 text tokens,
/// 64 generated tokens, then a follow-up question in the same conversation.
#[derive(Debug, Clone, Serialize)]
pub struct ImageFigures {
    pub image_size: usize,
    pub mmproj_file: PathBuf,
    pub visual_tokens: usize,
    /// Image rows + text tokens of the first question.
    pub prompt_tokens: usize,
    pub load_ms: f64,
    /// Decode, resize, vision tower and projector for one image.
    pub encode_ms: f64,
    /// All `prompt_tokens` through the language model.
    pub prefill_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub time_to_first_token_ms: f64,
    pub decode_tokens_per_s: f64,
    /// Question asked to last token generated (the paper's T_total).
    pub total_ms: f64,
    /// Prompt tokens the follow-up had to compute (the rest came from the session cache).
    pub follow_up_prompt_tokens_computed: usize,
    pub follow_up_time_to_first_token_ms: f64,
    pub samples: Samples,
}

/// The per-run values behind the medians.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    pub load_ms: Vec<f64>,
    pub encode_ms: Vec<f64>,
    pub prefill_ms: Vec<f64>,
    pub time_to_first_token_ms: Vec<f64>,
    pub decode_tokens_per_s: Vec<f64>,
    pub total_ms: Vec<f64>,
    pub follow_up_time_to_first_token_ms: Vec<f64>,
}

/// Decode speed over a long answer after the small-image prompt.
#[derive(Debug, Clone, Serialize)]
pub struct LongDecode {
    pub tokens: usize,
    pub prompt_tokens: usize,
    pub tokens_per_s: f64,
    pub samples: Vec<f64>,
}

/// The middle value (the mean of the two middle ones for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Starts the peak resident set size afresh, so building the model files does not count
/// (Linux: writing 5 to `/proc/self/clear_refs`). Elsewhere the peak is not reported.
pub fn reset_peak_rss() {
    // Best effort: without it the peak also covers the conversion, which is smaller.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size of this process, from `/proc/self/status` (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn seconds(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

impl BenchReport {
    /// A human-readable table of the medians.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let row = |out: &mut String, label: &str, cells: Vec<String>| {
            let _ = write!(out, "{label:<34}");
            for cell in cells {
                let _ = write!(out, "{cell:>14}");
            }
            out.push('\n');
        };
        let _ = writeln!(
            out,
            "impchat bench: Imp-{} shapes ({}, {:.2} B parameters), {} + {} vision, {} threads, median of {} runs",
            self.size.to_uppercase(),
            self.family,
            self.parameters as f64 / 1e9,
            self.quant,
            self.vision_quant,
            self.threads,
            self.runs
        );
        let each = |f: &dyn Fn(&ImageFigures) -> String| self.images.iter().map(f).collect();
        row(&mut out, "", each(&|i| format!("{} px", i.image_size)));
        row(
            &mut out,
            "visual + text tokens",
            each(&|i| format!("{} + {}", i.visual_tokens, self.text_tokens)),
        );
        row(&mut out, "load", each(&|i| seconds(i.load_ms)));
        row(&mut out, "vision encode", each(&|i| seconds(i.encode_ms)));
        row(
            &mut out,
            "prefill (image + text)",
            each(&|i| seconds(i.prefill_ms)),
        );
        row(
            &mut out,
            "prefill speed",
            each(&|i| format!("{:.1} tok/s", i.prefill_tokens_per_s)),
        );
        row(
            &mut out,
            "time to first token",
            each(&|i| seconds(i.time_to_first_token_ms)),
        );
        row(
            &mut out,
            &format!("decode speed ({} tokens)", self.generated_tokens),
            each(&|i| format!("{:.2} tok/s", i.decode_tokens_per_s)),
        );
        row(&mut out, "total, T_total", each(&|i| seconds(i.total_ms)));
        row(
            &mut out,
            "follow-up time to first token",
            each(&|i| seconds(i.follow_up_time_to_first_token_ms)),
        );
        row(
            &mut out,
            "  (new prompt tokens computed)",
            each(&|i| i.follow_up_prompt_tokens_computed.to_string()),
        );
        if let Some(long) = &self.long_decode {
            let _ = writeln!(
                out,
                "decode speed over {} tokens (after a {}-token prompt): {:.2} tok/s",
                long.tokens, long.prompt_tokens, long.tokens_per_s
            );
        }
        let rss = self.peak_rss_bytes.map_or_else(
            || "n/a".to_string(),
            |b| format!("{:.2} GB", b as f64 / 1e9),
        );
        let _ = writeln!(out, "peak RSS: {rss}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_is_read_on_linux() {
        let rss = peak_rss_bytes().expect("VmHWM on Linux");
        assert!(rss > 1 << 20, "{rss}");
    }
}
