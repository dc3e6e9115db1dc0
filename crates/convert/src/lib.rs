//! Converts an Imp checkpoint (Hugging Face folder: config.json, safetensors, tokenizer
//! files) into two GGUF files:
//!
//! - the language model, llama.cpp-compatible (`phi2` / `qwen2` / `phi3` architecture,
//!   llama.cpp's metadata keys and tensor names, the tokenizer and a chat template in the
//!   metadata, Imp's prompt and image settings under `imp.*`);
//! - the vision tower + projector ("mmproj") in llama.cpp's clip conventions
//!   (`clip.projector_type = "mlp"`, `v.blk.N.*`, `mm.0` / `mm.2`).
//!
//! Tensors are read, converted and written one at a time (a few in parallel), so memory
//! stays bounded by the largest tensors, not the model.
//!
//! Type mix ([`LmQuant`]), as llama.cpp's `llama-quantize` chooses (vendored llama.cpp 0c1e570):
//! norms and biases stay F32; `Q4_K_M` is Q4_K with Q6_K for `output` and for `attn_v` /
//! `attn_qkv` and `ffn_down` in the layers llama.cpp's `use_more_bits` picks (the first and
//! last eighth and every third in between); `Q4_0` and `Q5_K` (= llama.cpp Q5_K_S) write
//! `output` as Q6_K; `Q6_K`, `Q8_0`, `F16` are uniform. A matrix whose input width is not a
//! whole number of blocks falls back to Q8_0 (block 32), or F16 when even that does not fit
//! (llama.cpp would pick Q5_0/Q5_1, which candle runs only with scalar kernels on x86).
//! The mmproj ([`VisionQuant`]) keeps the patch and position embeddings F16.

mod checkpoint;
mod config;
mod error;
mod gguf;
mod metadata;
mod options;
mod plan;
mod quant;
mod vocab;

use std::path::Path;

pub use config::Family;
pub use error::ConvertError;
pub use options::{
    ConvertOptions, ConvertOutput, ConvertProgress, LmQuant, OutputPart, VisionQuant, WrittenFile,
};

use checkpoint::Checkpoint;
use plan::Planned;

/// Converts the checkpoint in `src` into `out_dir/{name}-{lm quant}.gguf` and
/// `out_dir/mmproj-{name}-{vision quant}.gguf`. `progress` is called after each tensor.
/// Nothing is left in `out_dir` when it fails.
pub fn convert(
    src: &Path,
    out_dir: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(ConvertProgress),
) -> Result<ConvertOutput, ConvertError> {
    let config = config::read_config(src)?;
    let checkpoint = Checkpoint::open(src)?;
    let lm_plan = plan::lm_plan(&config, &checkpoint, opts.lm)?;
    let vision_plan = plan::vision_plan(&config, &checkpoint, opts.vision)?;

    let name = opts.name.clone().unwrap_or_else(|| {
        src.file_name()
            .map_or_else(|| "imp".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    let valid = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(valid) {
        return Err(ConvertError::InvalidName { name });
    }
    let mut lm_meta = metadata::lm_metadata(&config, &name, opts.lm);
    lm_meta.extend(vocab::tokenizer_metadata(src, &config)?);
    lm_meta.push((
        "tokenizer.chat_template".into(),
        candle_core::quantized::gguf_file::Value::String(metadata::chat_template(config.family)),
    ));
    lm_meta.extend(metadata::imp_metadata(&config));
    let mut mmproj_meta = metadata::mmproj_metadata(&config, &name, opts.vision);
    mmproj_meta.extend(metadata::imp_metadata(&config));

    std::fs::create_dir_all(out_dir).map_err(|source| ConvertError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let lm_path = out_dir.join(format!("{name}-{}.gguf", opts.lm));
    let mmproj_path = out_dir.join(format!("mmproj-{name}-{}.gguf", opts.vision));
    for path in [&lm_path, &mmproj_path] {
        if path.exists() && !opts.overwrite {
            return Err(ConvertError::OutputExists { path: path.clone() });
        }
    }

    let language_model = write_part(
        &lm_path,
        &lm_meta,
        &lm_plan,
        &checkpoint,
        OutputPart::LanguageModel,
        progress,
    )?;
    let projector = match write_part(
        &mmproj_path,
        &mmproj_meta,
        &vision_plan,
        &checkpoint,
        OutputPart::Projector,
        progress,
    ) {
        Ok(written) => written,
        Err(e) => {
            // The pair is only useful together; don't leave half of it behind.
            let _ = std::fs::remove_file(&lm_path);
            return Err(e);
        }
    };
    Ok(ConvertOutput {
        family: config.family,
        language_model,
        projector,
    })
}

fn write_part(
    path: &Path,
    meta: &[(String, candle_core::quantized::gguf_file::Value)],
    planned: &[Planned],
    checkpoint: &Checkpoint,
    part: OutputPart,
    progress: &mut dyn FnMut(ConvertProgress),
) -> Result<WrittenFile, ConvertError> {
    let specs: Vec<gguf::TensorSpec> = planned.iter().map(|p| p.spec.clone()).collect();
    let total = specs.len();
    let produce = |i: usize| planned[i].produce(checkpoint);
    let bytes = gguf::write(path, meta, &specs, produce, |spec, done| {
        progress(ConvertProgress {
            part,
            tensor: spec.name.clone(),
            done,
            total,
        })
    })?;
    Ok(WrittenFile {
        path: path.to_path_buf(),
        bytes,
        tensors: total,
    })
}
