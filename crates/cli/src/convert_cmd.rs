//! `impchat convert`: a Hugging Face Imp checkpoint into a language-model GGUF and its mmproj.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use impchat_convert::{
    ConvertError, ConvertOptions, ConvertProgress, LmQuant, OutputPart, VisionQuant,
};

use crate::exit::{ExitKind, Failure, Outcome};
use crate::progress_line::{human_bytes, ProgressLine};

#[derive(Args)]
pub struct ConvertArgs {
    /// Checkpoint folder (config.json, tokenizer files, *.safetensors).
    src: PathBuf,
    /// Folder the two .gguf files are written into (created if missing).
    out_dir: PathBuf,
    /// Language-model weights: q4_k_m, q4_0, q5_k, q6_k, q8_0 or f16.
    #[arg(long, default_value = "q4_k_m", value_parser = parse_lm)]
    quant: LmQuant,
    /// Vision tower + projector weights: f16 or q8_0.
    #[arg(long, default_value = "f16", value_parser = parse_vision)]
    vision: VisionQuant,
    /// Replace output files that already exist.
    #[arg(long)]
    overwrite: bool,
}

pub fn parse_lm(text: &str) -> Result<LmQuant, String> {
    text.parse().map_err(|err: ConvertError| err.to_string())
}

fn parse_vision(text: &str) -> Result<VisionQuant, String> {
    text.parse().map_err(|err: ConvertError| err.to_string())
}

pub fn run(args: ConvertArgs) -> Outcome {
    let opts = ConvertOptions {
        lm: args.quant,
        vision: args.vision,
        name: None,
        overwrite: args.overwrite,
    };
    let mut line = ProgressLine::new();
    let mut on_progress = |p: ConvertProgress| {
        let part = match p.part {
            OutputPart::LanguageModel => "language model",
            OutputPart::Projector => "vision projector",
        };
        let text = format!(
            "converting {part}: tensor {}/{} {}",
            p.done, p.total, p.tensor
        );
        line.update(&text, p.done == p.total);
    };
    let result = impchat_convert::convert(&args.src, &args.out_dir, &opts, &mut on_progress);
    line.finish();
    let output = result.map_err(convert_failure)?;
    for file in [&output.language_model, &output.projector] {
        println!(
            "wrote {} ({}, {} tensors)",
            file.path.display(),
            human_bytes(file.bytes),
            file.tensors
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn convert_failure(err: ConvertError) -> Failure {
    match err {
        ConvertError::Write { .. } | ConvertError::Quantize { .. } => {
            Failure::new(ExitKind::Failure, err)
        }
        ConvertError::UnsupportedQuant { .. } | ConvertError::InvalidName { .. } => {
            Failure::usage(err)
        }
        other => Failure::bad_input(other),
    }
}
