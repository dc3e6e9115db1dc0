//! `impchat convert`: a Hugging Face Imp checkpoint into a language-model GGUF and its mmproj.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use impchat_convert::{
    ConvertError, ConvertOptions, ConvertProgress, LmQuant, OutputPart, VisionQuant,
};

use crate::exit::{ExitKind, Failure, Outcome};
use crate::output;
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
    check_out_dir(&args.out_dir)?;
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
        output::print_line(&format!(
            "wrote {} ({}, {} tensors)",
            file.path.display(),
            human_bytes(file.bytes),
            file.tensors
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The converter writes two files into a folder; a file path there is a mistake to name
/// before any work is done.
fn check_out_dir(out_dir: &Path) -> Result<(), Failure> {
    let looks_like_file = out_dir
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"));
    if out_dir.is_file() || (looks_like_file && !out_dir.is_dir()) {
        return Err(Failure::usage(format!(
            "OUT_DIR '{}' is a file path, but convert writes two files (the language model and \
             its mmproj-*.gguf) into a folder; pass a folder, e.g. '{}'",
            out_dir.display(),
            out_dir
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .display()
        )));
    }
    Ok(())
}

fn convert_failure(err: ConvertError) -> Failure {
    match err {
        ConvertError::Write { .. } | ConvertError::Quantize { .. } => {
            Failure::new(ExitKind::Failure, err)
        }
        ConvertError::UnsupportedQuant { .. } | ConvertError::InvalidName { .. } => {
            Failure::usage(err)
        }
        ConvertError::OutputExists { path } => Failure::bad_input(format!(
            "{} already exists; remove it, or pass --overwrite to replace it",
            path.display()
        )),
        other => Failure::bad_input(other),
    }
}
