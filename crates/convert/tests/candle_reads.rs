//! The converted language models run in candle's llama.cpp-layout models
//! (`quantized_phi`, `quantized_qwen2`, `quantized_phi3`) and reproduce the Hugging Face
//! logits of the fixtures' text prompt.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_transformers::models::{quantized_phi, quantized_phi3, quantized_qwen2};
use impchat_convert::{convert, ConvertOptions, LmQuant, VisionQuant};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

/// Last-position logits of the reference text prompt, run through candle on our GGUF.
fn candle_last_logits(fixture: &str, lm: LmQuant, ids: &[u32]) -> Tensor {
    let out = tempfile::tempdir().unwrap();
    let opts = ConvertOptions {
        lm,
        vision: VisionQuant::F16,
        name: None,
        overwrite: false,
    };
    let written = convert(
        &fixtures().join("models").join(fixture),
        out.path(),
        &opts,
        &mut |_| {},
    )
    .unwrap();
    let mut file = File::open(&written.language_model.path).unwrap();
    let content = Content::read(&mut file).unwrap();
    let arch = content.metadata["general.architecture"]
        .to_string()
        .unwrap()
        .clone();
    let dev = Device::Cpu;
    let input = Tensor::new(ids, &dev).unwrap().unsqueeze(0).unwrap();
    let logits = match arch.as_str() {
        "phi2" => quantized_phi::ModelWeights::from_gguf(content, &mut file, &dev)
            .unwrap()
            .forward(&input, 0),
        "qwen2" => quantized_qwen2::ModelWeights::from_gguf(content, &mut file, &dev)
            .unwrap()
            .forward(&input, 0),
        "phi3" => quantized_phi3::ModelWeights::from_gguf(false, content, &mut file, &dev)
            .unwrap()
            .forward(&input, 0),
        other => panic!("unexpected architecture {other}"),
    };
    logits
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

#[test]
fn candle_runs_our_gguf_and_matches_the_hf_text_logits() {
    for (fixture, reference) in [
        ("imp-v1-3b-old", "imp-v1-3b"),
        ("imp-v1.5-3b-phi2", "imp-v1-3b"),
        ("imp-v1.5-2b-qwen1.5", "imp-v1.5-2b-qwen1.5"),
        ("imp-v1.5-4b-phi3", "imp-v1.5-4b-phi3"),
    ] {
        let reference_file = fixtures()
            .join("reference")
            .join(format!("{reference}.safetensors"));
        let tensors = candle_core::safetensors::load(reference_file, &Device::Cpu).unwrap();
        let ids: Vec<u32> = tensors["text.prompt_ids"]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let hf = &tensors["text.logits"];
        let want = hf.i(hf.dim(0).unwrap() - 1).unwrap();
        for (lm, bound) in [(LmQuant::F16, 0.05f32), (LmQuant::Q8_0, 0.5)] {
            let got = candle_last_logits(fixture, lm, &ids);
            let diff = (&got - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            eprintln!("{fixture} {lm}: candle vs HF last-position max |logit diff| {diff:.2e}");
            assert!(
                diff < bound,
                "{fixture} {lm}: max |logit diff| {diff} ≥ {bound}"
            );
            let argmax = |t: &Tensor| t.argmax(0).unwrap().to_scalar::<u32>().unwrap();
            if lm == LmQuant::F16 {
                assert_eq!(
                    argmax(&got),
                    argmax(&want),
                    "{fixture} {lm}: next token differs from HF"
                );
            }
        }
    }
}
