//! Every fixture checkpoint against the reference outputs of the Hugging Face modules
//! (tests/fixtures/README.md): prompt ids, full-sequence logits of the multimodal and the
//! text-only prompt, and the 32-token greedy continuation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use impchat_engine::lm::KvCache;
use impchat_engine::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, ImageBytes, LoadOptions, Model,
    StopReason,
};
use impchat_input::detokenize::TextStream;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;
const QUESTION: &str = "What is in this picture?";
const IMAGES: [&str; 2] = ["shapes", "receipt"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Reference {
    json: Value,
    tensors: HashMap<String, Tensor>,
}

impl Reference {
    fn load(name: &str) -> Self {
        let dir = fixtures().join("reference");
        let text =
            std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("reference json");
        let tensors =
            candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu)
                .expect("reference tensors");
        Self {
            json: serde_json::from_str(&text).expect("json"),
            tensors,
        }
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference tensor {name}"))
    }

    fn ids(&self, name: &str) -> Vec<i64> {
        self.tensor(name).to_vec1::<i64>().expect("ids")
    }

    fn image_json(&self, image: &str) -> &Value {
        &self.json["images"][image]
    }
}

fn load(checkpoint: &str) -> Model {
    Model::load(
        fixtures().join("models").join(checkpoint),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("loading {checkpoint}: {e}"))
}

fn image_bytes(reference: &Reference, image: &str) -> ImageBytes {
    let file = reference.image_json(image)["file"].as_str().expect("file");
    ImageBytes::new(std::fs::read(fixtures().join(file)).expect("image file"))
}

fn image_request(reference: &Reference, image: &str) -> GenerateRequest {
    GenerateRequest::new(vec![
        ChatMessage::user(QUESTION).with_image(image_bytes(reference, image))
    ])
}

fn text_request() -> GenerateRequest {
    GenerateRequest::new(vec![
        ChatMessage::user("Who are you?"),
        ChatMessage::assistant("I am a small assistant."),
        ChatMessage::user("Tell me a story."),
    ])
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let diff = (a.flatten_all().expect("flat") - b.flatten_all().expect("flat")).expect("sub");
    diff.abs()
        .expect("abs")
        .max(0)
        .expect("max")
        .to_scalar()
        .expect("scalar")
}

fn max_abs(a: &Tensor) -> f32 {
    a.flatten_all()
        .expect("flat")
        .abs()
        .expect("abs")
        .max(0)
        .expect("max")
        .to_scalar()
        .expect("scalar")
}

/// The spliced input embeddings built from the reference's own projector output, so the
/// language model is checked independently of image preprocessing.
fn reference_embeds(model: &Model, reference: &Reference, image: &str) -> Tensor {
    let lm = model.language_model();
    let ids = reference.ids(&format!("{image}.prompt_ids"));
    let features = reference.tensor(&format!("{image}.projector_output"));
    let mut parts = Vec::new();
    for chunk in ids.split(|&id| id == -200) {
        if !parts.is_empty() {
            parts.push(features.clone());
        }
        if !chunk.is_empty() {
            let chunk: Vec<u32> = chunk.iter().map(|&id| id as u32).collect();
            let chunk = Tensor::new(chunk.as_slice(), &Device::Cpu)
                .expect("ids")
                .unsqueeze(0)
                .expect("b");
            parts.push(lm.embed(&chunk).expect("embed"));
        }
    }
    Tensor::cat(&parts, 1).expect("cat")
}

/// Greedy decoding straight on the language model, one cached step per token.
fn greedy(model: &Model, embeds: &Tensor, steps: usize) -> Vec<i64> {
    let lm = model.language_model();
    let mut cache = KvCache::new(lm.num_layers());
    let mut logits = lm
        .forward_embeds_last(embeds, &mut cache, 0)
        .expect("prefill");
    let mut out = Vec::new();
    for _ in 0..steps {
        let next = logits
            .argmax(0)
            .expect("argmax")
            .to_scalar::<u32>()
            .expect("id");
        out.push(i64::from(next));
        let embed = lm.embed(
            &Tensor::new(&[next], &Device::Cpu)
                .expect("id")
                .unsqueeze(0)
                .expect("b"),
        );
        let pos = cache.len();
        logits = lm
            .forward_embeds_last(&embed.expect("embed"), &mut cache, pos)
            .expect("step");
    }
    out
}

/// Checks the language model of one checkpoint against its reference for every image
/// (fed the reference image features), and the whole pipeline from the image file for
/// `pipeline_images`.
fn check_checkpoint(checkpoint: &str, reference_name: &str, pipeline_images: &[&str]) {
    let model = load(checkpoint);
    let reference = Reference::load(reference_name);
    assert_eq!(
        model.info().visual_tokens as u64,
        reference.image_json(IMAGES[0])["image_tokens"]
            .as_u64()
            .expect("image_tokens")
    );

    for image in IMAGES {
        let request = image_request(&reference, image);
        let expected_ids = reference.ids(&format!("{image}.prompt_ids"));
        assert_eq!(
            model.prompt_ids(&request).expect("prompt ids"),
            expected_ids,
            "{checkpoint} {image} ids"
        );

        let expected_logits = reference.tensor(&format!("{image}.logits"));
        // The language model alone, fed the reference image features.
        let embeds = reference_embeds(&model, &reference, image);
        let lm = model.language_model();
        let mut cache = KvCache::new(lm.num_layers());
        let logits = lm
            .forward_embeds(&embeds, &mut cache, 0)
            .expect("forward")
            .squeeze(0)
            .expect("sq");
        let err = max_abs_diff(&logits, expected_logits);
        assert!(
            err <= TOLERANCE,
            "{checkpoint} {image}: LM logits off by {err}"
        );

        let expected_tokens = reference.ids(&format!("{image}.generated_ids"));
        assert_eq!(
            greedy(&model, &embeds, expected_tokens.len()),
            expected_tokens,
            "{checkpoint} {image} greedy"
        );
        if pipeline_images.contains(&image) {
            check_pipeline(&model, &reference, checkpoint, image);
        }
    }

    let request = text_request();
    assert_eq!(
        model.prompt_ids(&request).expect("ids"),
        reference.ids("text.prompt_ids"),
        "{checkpoint} text ids"
    );
    let err = max_abs_diff(
        &model.prompt_logits(&request).expect("logits"),
        reference.tensor("text.logits"),
    );
    assert!(err <= TOLERANCE, "{checkpoint} text logits off by {err}");
}

/// From the image file: features, full-sequence logits and a streamed session answer.
fn check_pipeline(model: &Model, reference: &Reference, checkpoint: &str, image: &str) {
    let request = image_request(reference, image);
    let expected_logits = reference.tensor(&format!("{image}.logits"));
    // The whole pipeline from the image file. Features are compared relative to their
    // scale (they reach ~100 with random weights, so f32 rounding alone is ~1e-5 of it).
    let features = model
        .encode_image(&image_bytes(reference, image).0)
        .expect("encode");
    let expected_features = reference.tensor(&format!("{image}.projector_output"));
    let err = max_abs_diff(&features, expected_features) / max_abs(expected_features);
    assert!(
        err <= TOLERANCE,
        "{checkpoint} {image}: image features off by {err} (relative)"
    );
    let logits = model.prompt_logits(&request).expect("prompt logits");
    let err = max_abs_diff(&logits, expected_logits);
    assert!(
        err <= TOLERANCE,
        "{checkpoint} {image}: pipeline logits off by {err}"
    );

    let expected_tokens = reference.ids(&format!("{image}.generated_ids"));
    check_session_continuation(model, reference, image, &request, &expected_tokens);
}

/// A real session (image file in, streamed text out) says what the reference tokens say,
/// up to the model's end-of-turn token.
fn check_session_continuation(
    model: &Model,
    reference: &Reference,
    image: &str,
    request: &GenerateRequest,
    expected: &[i64],
) {
    let eos = reference.json["eos_token_id"].as_i64().expect("eos id");
    let until_eos: Vec<u32> = expected
        .iter()
        .take_while(|&&id| id != eos)
        .map(|&id| id as u32)
        .collect();
    let mut request = request.clone();
    request.max_new_tokens = expected.len();
    let mut text = String::new();
    let stats = model
        .new_session()
        .generate(&request, &CancelToken::new(), &mut |event| {
            if let GenerationEvent::Token { text: delta } = event {
                text.push_str(&delta);
            }
        })
        .expect("generate");
    assert_eq!(
        stats.generated_tokens,
        until_eos.len(),
        "{image}: generated tokens"
    );
    let expected_reason = if until_eos.len() < expected.len() {
        StopReason::EndOfTurn
    } else {
        StopReason::MaxTokens
    };
    assert_eq!(stats.stop_reason, Some(expected_reason));
    // The reference tokens streamed through the same detokeniser, in one piece.
    let mut stream = TextStream::new(model.tokenizer(), true);
    let mut expected_text = String::new();
    for &id in &until_eos {
        expected_text.extend(stream.push(id).expect("push"));
    }
    expected_text.extend(stream.finish().expect("finish"));
    assert_eq!(text, expected_text, "{image}: streamed text");
}

#[test]
fn imp_v1_3b_old_phi_msft_layout() {
    check_checkpoint("imp-v1-3b-old", "imp-v1-3b", &["shapes"]);
}

#[test]
fn imp_v1_5_3b_phi2_hf_layout() {
    check_checkpoint("imp-v1.5-3b-phi2", "imp-v1-3b", &["shapes"]);
}

#[test]
fn imp_v1_5_3b_196_takes_image_size_from_config() {
    check_checkpoint("imp-v1.5-3b-196", "imp-v1.5-3b-196", &["shapes"]);
}

#[test]
fn imp_v1_5_2b_qwen() {
    check_checkpoint("imp-v1.5-2b-qwen1.5", "imp-v1.5-2b-qwen1.5", &["shapes"]);
}

#[test]
fn imp_v1_5_4b_phi3_pads_images() {
    check_checkpoint("imp-v1.5-4b-phi3", "imp-v1.5-4b-phi3", &IMAGES);
}

/// The portrait receipt squashed to a square: the references come from Pillow 12 (what Imp
/// was trained with), which runs the horizontal pass first, as impchat-input does.
#[test]
fn portrait_squash_pipeline_matches_pillow() {
    for (checkpoint, reference) in [
        ("imp-v1-3b-old", "imp-v1-3b"),
        ("imp-v1.5-3b-196", "imp-v1.5-3b-196"),
        ("imp-v1.5-2b-qwen1.5", "imp-v1.5-2b-qwen1.5"),
    ] {
        check_pipeline(
            &load(checkpoint),
            &Reference::load(reference),
            checkpoint,
            "receipt",
        );
    }
}

#[test]
fn old_and_new_phi2_layouts_compute_the_same() {
    let old = load("imp-v1-3b-old");
    let new = load("imp-v1.5-3b-phi2");
    let reference = Reference::load("imp-v1-3b");
    let request = image_request(&reference, "shapes");
    let a = old.prompt_logits(&request).expect("old");
    let b = new.prompt_logits(&request).expect("new");
    assert!(max_abs_diff(&a, &b) <= 1e-5);
    assert_eq!(a.dims(), b.dims());
    assert_eq!(old.info().parameters, new.info().parameters);
}
