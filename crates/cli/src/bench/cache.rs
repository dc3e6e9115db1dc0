//! The benchmark's model files: a language-model GGUF and two mmproj GGUFs (small and
//! large image side), converted by `impchat-convert` from random-weight checkpoints and
//! kept in a cache folder. Files whose metadata no longer match the asked shapes and
//! quantization are rebuilt.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use impchat_convert::{ConvertOptions, ConvertProgress, LmQuant, OutputPart, VisionQuant};
use impchat_engine::gguf::GgufFile;

use super::checkpoint;
use super::shapes::{BenchSize, LmShape, Shapes};
use crate::progress_line::{human_bytes, ProgressLine};

/// Fixed, so every machine benchmarks the same weights.
const SEED: u64 = 0x1e3b_e7c4;
pub const VISION_QUANT: VisionQuant = VisionQuant::F16;
/// The language model written beside the small-image mmproj is thrown away; keep it small.
const THROWAWAY_VOCAB: usize = 1024;

/// The benchmark model, ready to load.
#[derive(Debug, Clone)]
pub struct BenchFiles {
    pub lm: PathBuf,
    /// One mmproj per image side, in the order of [`Shapes::image_sizes`].
    pub mmproj: [PathBuf; 2],
}

/// Bumped whenever the generated weights or tokenizer change, so older cached files
/// (whose shapes still match) are rebuilt.
const REVISION: u32 = 1;

fn base_name(size: BenchSize) -> String {
    format!("imp-bench-{size}-r{REVISION}")
}

pub fn files_in(root: &Path, size: BenchSize, quant: LmQuant, shapes: &Shapes) -> BenchFiles {
    let name = base_name(size);
    let dir = root.join(format!("{name}-{quant}"));
    let mmproj = |side: usize| dir.join(format!("mmproj-{name}-{side}px-{VISION_QUANT}.gguf"));
    BenchFiles {
        lm: dir.join(format!("{name}-{quant}.gguf")),
        mmproj: [mmproj(shapes.image_sizes[0]), mmproj(shapes.image_sizes[1])],
    }
}

/// Returns the cached files, building them first when missing or stale.
pub fn ensure(root: &Path, size: BenchSize, quant: LmQuant) -> Result<BenchFiles> {
    let shapes = size.shapes();
    let files = files_in(root, size, quant, &shapes);
    match check(&files, &shapes, quant, &base_name(size)) {
        Ok(()) => return Ok(files),
        Err(reason) if files.lm.exists() => {
            eprintln!("rebuilding the benchmark model: {reason:#}");
        }
        Err(_) => {}
    }
    build(&files, size, quant, &shapes)?;
    check(&files, &shapes, quant, &base_name(size))
        .context("the freshly built benchmark model does not have the expected shapes")?;
    Ok(files)
}

fn expect(file: &GgufFile, key: &str, want: usize) -> Result<()> {
    let found = file.usize(key)?;
    if found != want {
        bail!(
            "{}: {key} is {found}, expected {want}",
            file.path().display()
        );
    }
    Ok(())
}

fn check(files: &BenchFiles, shapes: &Shapes, quant: LmQuant, name: &str) -> Result<()> {
    let lm = GgufFile::open(&files.lm)?;
    let lm_shape = &shapes.lm;
    let arch = lm_shape.family.arch();
    if lm.architecture()? != arch || lm.string("general.name")? != name {
        bail!("{} is not the {name} model", files.lm.display());
    }
    expect(&lm, "general.file_type", quant.file_type() as usize)?;
    expect(&lm, &format!("{arch}.embedding_length"), lm_shape.hidden)?;
    expect(&lm, &format!("{arch}.block_count"), lm_shape.layers)?;
    expect(
        &lm,
        &format!("{arch}.feed_forward_length"),
        lm_shape.intermediate,
    )?;
    let tokens = lm
        .content()
        .metadata
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .map_or(0, Vec::len);
    if tokens != lm_shape.vocab {
        bail!(
            "{} has {tokens} tokens, expected {}",
            files.lm.display(),
            lm_shape.vocab
        );
    }
    for (path, &side) in files.mmproj.iter().zip(&shapes.image_sizes) {
        let mmproj = GgufFile::open(path)?;
        mmproj.expect_architecture("clip")?;
        expect(
            &mmproj,
            "general.file_type",
            VISION_QUANT.file_type() as usize,
        )?;
        expect(&mmproj, "clip.vision.image_size", side)?;
        expect(
            &mmproj,
            "clip.vision.embedding_length",
            shapes.vision.hidden,
        )?;
        expect(&mmproj, "clip.vision.block_count", shapes.vision.layers)?;
        expect(&mmproj, "clip.vision.projection_dim", lm_shape.hidden)?;
    }
    Ok(())
}

fn build(files: &BenchFiles, size: BenchSize, quant: LmQuant, shapes: &Shapes) -> Result<()> {
    let dir = files
        .lm
        .parent()
        .context("the benchmark model path has no folder")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
    let name = base_name(size);
    let [small, large] = shapes.image_sizes;

    // The real language model with the large-image tower.
    let converted = convert_random(dir, &name, &shapes.lm, shapes, large, quant)?;
    replace(&converted.1, &files.mmproj[1])?;

    // The small-image tower, beside a one-layer language model of the same width (the
    // projector's output size), which is then deleted.
    let throwaway = LmShape {
        layers: 1,
        vocab: THROWAWAY_VOCAB,
        ..shapes.lm.clone()
    };
    let work = dir.join(".small-image");
    let (lm, mmproj) = convert_random(
        &work,
        &format!("{name}-small"),
        &throwaway,
        shapes,
        small,
        LmQuant::Q8_0,
    )?;
    replace(&mmproj, &files.mmproj[0])?;
    std::fs::remove_file(&lm).with_context(|| format!("cannot remove {}", lm.display()))?;
    remove_dir(&work)?;
    Ok(())
}

fn replace(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

fn remove_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

/// Writes a random checkpoint under `out_dir`, converts it into `out_dir` and deletes it.
/// Returns the language-model and mmproj paths.
fn convert_random(
    out_dir: &Path,
    name: &str,
    lm: &LmShape,
    shapes: &Shapes,
    image_size: usize,
    quant: LmQuant,
) -> Result<(PathBuf, PathBuf)> {
    let src = out_dir.join(format!(".checkpoint-{name}"));
    remove_dir(&src)?;
    std::fs::create_dir_all(&src).with_context(|| format!("cannot create {}", src.display()))?;
    let bytes = checkpoint::weight_bytes(lm, &shapes.vision, image_size);
    eprintln!(
        "writing a random-weight checkpoint ({}, {image_size} px images) to {}",
        human_bytes(bytes),
        src.display()
    );
    let written = checkpoint::write(&src, lm, &shapes.vision, image_size, SEED)
        .with_context(|| format!("cannot write the random checkpoint in {}", src.display()));
    if let Err(err) = written {
        let _ = std::fs::remove_dir_all(&src);
        return Err(err);
    }

    let opts = ConvertOptions {
        lm: quant,
        vision: VISION_QUANT,
        name: Some(name.to_string()),
        overwrite: true,
    };
    let mut line = ProgressLine::new();
    let mut progress = |p: ConvertProgress| {
        let part = match p.part {
            OutputPart::LanguageModel => "language model",
            OutputPart::Projector => "vision projector",
        };
        line.update(
            &format!(
                "converting {part} to {quant}: tensor {}/{}",
                p.done, p.total
            ),
            p.done == p.total,
        );
    };
    let result = impchat_convert::convert(&src, out_dir, &opts, &mut progress);
    line.finish();
    remove_dir(&src)?;
    let output = result.context("converting the random checkpoint failed")?;
    Ok((output.language_model.path, output.projector.path))
}
