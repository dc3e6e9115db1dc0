//! Flags shared by the subcommands: which model to load and how to sample its answers.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use impchat_engine::{LoadOptions, Model, SamplingParams};

use crate::exit::{ExitKind, Failure};

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Imp checkpoint folder (config.json, tokenizer files, *.safetensors), or a converted
    /// .gguf file with its mmproj-*.gguf beside it.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// The vision GGUF (mmproj-*.gguf) to use with a .gguf --model [default: the one
    /// beside it].
    #[arg(long, value_name = "PATH")]
    pub mmproj: Option<PathBuf>,

    /// CPU threads for the model math [default: all cores].
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Model, Failure> {
        let cannot_load = |reason: String| {
            Failure::new(
                ExitKind::ModelLoad,
                anyhow!(
                    "cannot load the model at '{}': {reason}",
                    self.model.display()
                ),
            )
        };
        if !self.model.exists() {
            return Err(cannot_load(
                "no such file or folder; pass the folder of an Imp checkpoint (config.json, \
                 tokenizer files, *.safetensors) or a .gguf file"
                    .into(),
            ));
        }
        if self.model.is_dir() && !self.model.join("config.json").exists() {
            if let Some(advice) = gguf_folder_advice(&self.model) {
                return Err(cannot_load(advice));
            }
        }
        if let Some(mmproj) = &self.mmproj {
            self.check_mmproj(mmproj)?;
        }
        let options = LoadOptions {
            threads: self.threads.map(usize::from),
            mmproj: self.mmproj.clone(),
        };
        Model::load(&self.model, &options).map_err(|err| Failure::model_load(&self.model, err))
    }

    fn check_mmproj(&self, mmproj: &Path) -> Result<(), Failure> {
        if !is_gguf_file(&self.model) {
            return Err(Failure::usage(format!(
                "--mmproj goes with a .gguf --model; '{}' is not a .gguf file (a checkpoint \
                 folder holds its own vision tower)",
                self.model.display()
            )));
        }
        if !mmproj.is_file() {
            return Err(Failure::new(
                ExitKind::ModelLoad,
                anyhow!(
                    "cannot load the vision GGUF '{}' named by --mmproj: no such file; pass the \
                     mmproj-*.gguf that `impchat convert` wrote beside the language model",
                    mmproj.display()
                ),
            ));
        }
        Ok(())
    }
}

fn is_gguf_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
}

/// A folder without config.json that holds GGUF files: the user meant one of the files.
fn gguf_folder_advice(dir: &Path) -> Option<String> {
    let mut language_models = Vec::new();
    let mut vision = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if !is_gguf_file(&path) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("mmproj-") {
            vision.push(name);
        } else {
            language_models.push(name);
        }
    }
    language_models.sort();
    vision.sort();
    let in_dir = |name: &str| dir.join(name).display().to_string();
    match (language_models.as_slice(), vision.as_slice()) {
        ([], []) => None,
        ([], [first, ..]) => Some(format!(
            "this folder holds only the vision GGUF {}; pass the language-model .gguf \
             (--model PATH.gguf --mmproj {})",
            vision.join(", "),
            in_dir(first)
        )),
        ([one], _) => Some(format!(
            "this folder has no config.json but holds {one}: pass --model {}",
            in_dir(one)
        )),
        (many, _) => Some(format!(
            "this folder has no config.json but holds {}: pass one of them, e.g. --model {}",
            many.join(", "),
            in_dir(&many[0])
        )),
    }
}

#[derive(clap::Args, Debug)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 always picks the most likely token (greedy, reproducible).
    #[arg(long = "temp", visible_alias = "temperature", value_name = "T", allow_negative_numbers = true, default_value_t = 0.0, value_parser = parse_temperature)]
    pub temperature: f64,

    /// Nucleus sampling: sample only from the most likely tokens covering probability P.
    #[arg(long, value_name = "P", allow_negative_numbers = true, value_parser = parse_top_p)]
    pub top_p: Option<f64>,

    /// Sample only from the K most likely tokens.
    #[arg(long, value_name = "K", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub top_k: Option<u32>,

    /// Random seed for sampling; the same seed and settings give the same answer.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub seed: Option<u64>,

    /// Stop after this many generated tokens.
    #[arg(long, value_name = "N", default_value_t = 512, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,

    /// End the answer where this text appears (may be given several times).
    #[arg(long = "stop", value_name = "S")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn sampling(&self) -> SamplingParams {
        let defaults = SamplingParams::default();
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k.map(|k| k as usize),
            seed: self.seed.unwrap_or(defaults.seed),
            ..defaults
        }
    }
}

fn parse_temperature(text: &str) -> Result<f64, String> {
    parse_in_range(text, 0.0, 2.0, "a temperature between 0 and 2")
}

fn parse_top_p(text: &str) -> Result<f64, String> {
    let value = parse_in_range(text, 0.0, 1.0, "a probability in (0, 1]")?;
    if value == 0.0 {
        return Err("expected a probability in (0, 1]".into());
    }
    Ok(value)
}

fn parse_in_range(text: &str, min: f64, max: f64, expected: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!("expected {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_flags_reject_values_the_sampler_cannot_use() {
        assert!(parse_temperature("0.7").is_ok());
        assert!(parse_temperature("-1").is_err());
        assert!(parse_temperature("hot").is_err());
        assert!(parse_top_p("0").is_err());
        assert!(parse_top_p("1").is_ok());
        assert!(parse_top_p("1.5").is_err());
    }
}
