//! `impchat bench`: speed of the engine on a random-weight model with the exact shapes of
//! an Imp checkpoint, measured with the Imp paper's protocol (one image + 41 prompt tokens,
//! 64 generated tokens), at both image sides. Prints a table, or JSON with `--json`.

mod cache;
mod checkpoint;
mod measure;
mod report;
mod shapes;
mod vocab;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use impchat_convert::LmQuant;
use impchat_engine::gguf::GgufFile;
use impchat_engine::ImageBytes;

use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::output;
use measure::Protocol;
use report::BenchReport;
use shapes::BenchSize;

#[derive(Args)]
pub struct BenchArgs {
    /// Which Imp model's shapes: 2b (Qwen1.5), 3b (Phi-2), 4b (Phi-3), or tiny (for tests).
    #[arg(long, value_enum, default_value_t = BenchSize::Imp3B)]
    size: BenchSize,
    /// Language-model weights: q4_k_m, q4_0, q5_k, q6_k, q8_0 or f16.
    #[arg(long, default_value = "q4_k_m", value_parser = crate::convert_cmd::parse_lm)]
    quant: LmQuant,
    /// CPU threads for the model math [default: all cores].
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
    /// Runs per figure (each from a fresh load); the medians are reported.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Length of the long answer whose decode speed is also measured (0 skips it).
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "TOKENS",
        default_value_t = 512
    )]
    long_tokens: usize,
    /// Runs of the long answer (it takes 8x as long as the 64-token one).
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 1
    )]
    long_runs: usize,
    /// Folder the random-weight model files are built in once and reused from
    /// [default: impchat-bench in the system temporary folder].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Text tokens and generated tokens of the Imp paper's deployment benchmark (Table 4).
const PAPER_TEXT_TOKENS: usize = 41;
const PAPER_GENERATED_TOKENS: usize = 64;

pub fn run(args: BenchArgs) -> Outcome {
    let threads = match args.threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let root = args
        .cache
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("impchat-bench"));
    let protocol = Protocol {
        threads,
        runs: usize::from(args.runs),
        text_tokens: PAPER_TEXT_TOKENS,
        generated_tokens: PAPER_GENERATED_TOKENS,
        long_tokens: args.long_tokens,
        long_runs: if args.long_tokens == 0 {
            0
        } else {
            args.long_runs
        },
    };

    let files = cache::ensure(&root, args.size, args.quant).or_exit(ExitKind::Failure)?;
    let png = measure::test_image_png().or_exit(ExitKind::Failure)?;
    let image_file = root.join(format!(
        "bench-image-{}x{}.png",
        measure::IMAGE_WIDTH,
        measure::IMAGE_HEIGHT
    ));
    std::fs::write(&image_file, &png)
        .with_context(|| format!("cannot write {}", image_file.display()))
        .or_exit(ExitKind::Failure)?;
    let image = ImageBytes::new(png);
    report::reset_peak_rss();

    let mut progress = |line: &str| eprintln!("{line}");
    let mut images = Vec::new();
    let mut long_samples = Vec::new();
    for (index, mmproj) in files.mmproj.iter().enumerate() {
        let long_runs = if index == 0 { protocol.long_runs } else { 0 };
        let (figures, long) = measure::image_side(
            &protocol,
            &files.lm,
            mmproj,
            &image,
            long_runs,
            &mut progress,
        )
        .map_err(|err| Failure::new(ExitKind::Failure, err))?;
        if index == 0 {
            long_samples = long;
        }
        images.push(figures);
    }
    let long_prompt = images.first().map_or(0, |i| i.prompt_tokens);
    let long_decode = measure::long_decode(&protocol, long_prompt, long_samples);

    let lm = GgufFile::open(&files.lm).or_exit(ExitKind::Failure)?;
    let vision = GgufFile::open(&files.mmproj[1]).or_exit(ExitKind::Failure)?;
    let lm_bytes = std::fs::metadata(&files.lm).map_or(0, |m| m.len());
    let report = BenchReport {
        size: args.size.to_string(),
        family: args.size.shapes().lm.family.arch().to_string(),
        quant: args.quant.to_string(),
        vision_quant: cache::VISION_QUANT.to_string(),
        threads,
        runs: protocol.runs,
        parameters: lm.parameter_count() + vision.parameter_count(),
        lm_file: files.lm.clone(),
        lm_bytes,
        image_file,
        image_width: measure::IMAGE_WIDTH,
        image_height: measure::IMAGE_HEIGHT,
        text_tokens: images
            .first()
            .map_or(protocol.text_tokens, |i| i.prompt_tokens - i.visual_tokens),
        generated_tokens: protocol.generated_tokens,
        images,
        long_decode,
        peak_rss_bytes: report::peak_rss_bytes(),
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report).or_exit(ExitKind::Failure)?;
        output::print_line(&json)?;
    } else {
        output::print(&report.table())?;
    }
    Ok(ExitCode::SUCCESS)
}
