//! Flags shared by the subcommands: which model to load and how to sample its answers.

use std::path::PathBuf;

use impchat_engine::{LoadOptions, Model, SamplingParams};

use crate::exit::Failure;

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Imp checkpoint folder (config.json, tokenizer files, *.safetensors), or a converted
    /// .gguf file with its mmproj-*.gguf beside it.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// CPU threads for the model math [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Model, Failure> {
        if !self.model.exists() {
            return Err(Failure::new(
                crate::exit::ExitKind::ModelLoad,
                anyhow::anyhow!(
                    "cannot load the model at '{}': no such file or folder; pass the folder of an \
                     Imp checkpoint (config.json, tokenizer files, *.safetensors) or a .gguf file",
                    self.model.display()
                ),
            ));
        }
        let options = LoadOptions {
            threads: self.threads.map(usize::from),
            ..LoadOptions::default()
        };
        Model::load(&self.model, &options).map_err(|err| Failure::model_load(&self.model, err))
    }
}

#[derive(clap::Args, Debug)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 always picks the most likely token (greedy, reproducible).
    #[arg(long = "temp", value_name = "T", default_value_t = 0.0, value_parser = parse_temperature)]
    pub temperature: f64,

    /// Nucleus sampling: sample only from the most likely tokens covering probability P.
    #[arg(long, value_name = "P", value_parser = parse_top_p)]
    pub top_p: Option<f64>,

    /// Sample only from the K most likely tokens.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub top_k: Option<u32>,

    /// Random seed for sampling; the same seed and settings give the same answer.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Stop after this many generated tokens.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
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
