//! Broken checkpoints and bad requests give typed errors whose messages say what is
//! wrong and what to do, never a panic or a candle internal.

use std::path::Path;

use impchat_engine::{
    CancelToken, ChatMessage, EngineError, GenerateRequest, ImageBytes, LoadOptions, Model,
};

mod common;

use common::checkpoint::{copy_of, edit_config, fixture};

fn load_err(dir: &Path) -> EngineError {
    match Model::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

fn generate_err(model: &Model, req: &GenerateRequest) -> EngineError {
    model
        .new_session()
        .generate(req, &CancelToken::new(), &mut |_| {})
        .expect_err("request must be refused")
}

#[test]
fn missing_shard_is_named_with_its_index() {
    let dir = copy_of("imp-v1.5-2b-qwen1.5");
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("rm");
    let err = load_err(dir.path());
    assert!(
        matches!(err, EngineError::MissingShard { ref shard, .. }
        if shard.ends_with("model-00002-of-00002.safetensors")),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("model-00002-of-00002.safetensors"),
        "{message}"
    );
    assert!(
        message.contains("model.safetensors.index.json"),
        "{message}"
    );
}

#[test]
fn missing_config_asks_for_a_complete_checkpoint() {
    let dir = copy_of("imp-v1-3b-old");
    std::fs::remove_file(dir.path().join("config.json")).expect("rm");
    let err = load_err(dir.path());
    assert!(matches!(err, EngineError::MissingFile { ref path } if path.ends_with("config.json")));
    assert!(
        err.to_string().contains("complete Hugging Face checkpoint"),
        "{err}"
    );
}

#[test]
fn config_that_does_not_match_the_weights_names_the_tensor() {
    let dir = copy_of("imp-v1.5-2b-qwen1.5");
    edit_config(dir.path(), |c| {
        c.insert("intermediate_size".into(), 96.into());
    });
    match load_err(dir.path()) {
        EngineError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert!(name.starts_with("model.layers.0.mlp."), "{name}");
            assert!(expected.contains(&96), "{expected:?}");
            assert!(found.contains(&128), "{found:?}");
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn unknown_model_type_lists_the_supported_ones() {
    let dir = copy_of("imp-v1-3b-old");
    edit_config(dir.path(), |c| {
        c.insert("model_type".into(), "llava_llama".into());
        c.insert(
            "architectures".into(),
            serde_json::json!(["LlavaLlamaForCausalLM"]),
        );
    });
    let err = load_err(dir.path());
    assert!(
        matches!(err, EngineError::UnsupportedModelType { ref found } if found == "llava_llama")
    );
    let message = err.to_string();
    assert!(
        message.contains("imp_qwen2") && message.contains("imp_phi3"),
        "{message}"
    );
}

#[test]
fn truncated_weights_name_the_file() {
    let dir = copy_of("imp-v1-3b-old");
    let path = dir.path().join("model.safetensors");
    let len = std::fs::metadata(&path).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(len / 2)
        .expect("cut");
    let err = load_err(dir.path());
    assert!(
        matches!(err, EngineError::CorruptWeights { path: ref p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("download it again"), "{err}");
}

#[test]
fn non_image_bytes_are_a_clear_image_error() {
    let model = Model::load(fixture("imp-v1-3b-old"), &LoadOptions::default()).expect("load");
    let not_an_image = ImageBytes::new(b"%PDF-1.7 this is a document".to_vec());
    let req = GenerateRequest::new(vec![
        ChatMessage::user("What is this?").with_image(not_an_image)
    ]);
    let err = generate_err(&model, &req);
    assert!(
        matches!(err, EngineError::Image { index: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("PDF"), "{err}");

    let err = model
        .preview_image(b"definitely not pixels")
        .expect_err("not an image");
    assert!(matches!(err, EngineError::Image { .. }), "{err:?}");
}

#[test]
fn empty_prompt_is_refused() {
    let model = Model::load(fixture("imp-v1-3b-old"), &LoadOptions::default()).expect("load");
    for req in [
        GenerateRequest::new(vec![ChatMessage::user("   ")]),
        GenerateRequest::new(Vec::new()),
    ] {
        let err = generate_err(&model, &req);
        assert!(matches!(err, EngineError::EmptyPrompt), "{err:?}");
    }
}

#[test]
fn context_overflow_is_reported_before_computing() {
    let dir = copy_of("imp-v1.5-2b-qwen1.5");
    edit_config(dir.path(), |c| {
        c.insert("max_position_embeddings".into(), 64.into());
    });
    let model = Model::load(dir.path(), &LoadOptions::default()).expect("load");
    let image = ImageBytes::new(std::fs::read(fixture("../images/shapes.png")).expect("image"));
    let req = GenerateRequest::new(vec![ChatMessage::user("What is this?").with_image(image)]);
    let mut events = 0;
    let err = model
        .new_session()
        .generate(&req, &CancelToken::new(), &mut |_| events += 1)
        .expect_err("too long");
    match &err {
        EngineError::ContextOverflow {
            needed,
            per_image,
            limit,
            images,
            ..
        } => {
            assert_eq!(*images, 1);
            assert!(*needed > 64);
            assert_eq!(*per_image, 16);
            assert_eq!(*limit, 64);
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    assert_eq!(
        events, 0,
        "nothing may be computed for a prompt that cannot fit"
    );
    let message = err.to_string();
    assert!(
        message.contains("start a new chat") && message.contains("16 per image"),
        "{message}"
    );
}

#[test]
fn preview_shows_the_exact_model_input() {
    let model = Model::load(fixture("imp-v1.5-4b-phi3"), &LoadOptions::default()).expect("load");
    let bytes = std::fs::read(fixture("../images/receipt.png")).expect("image");
    let preview = model.preview_image(&bytes).expect("preview");
    assert_eq!(preview.size, 56);
    assert_eq!(preview.visual_tokens, 16);
    let png = image::load_from_memory(&preview.png)
        .expect("png")
        .to_rgb8();
    assert_eq!(png.dimensions(), (56, 56));
    // A portrait image padded to a square has grey bars left and right.
    assert_eq!(png.get_pixel(0, 28).0, [127, 127, 127]);
}

#[test]
fn a_file_instead_of_a_folder_is_refused() {
    let file = fixture("imp-v1-3b-old").join("model.safetensors");
    let err = load_err(&file);
    assert!(matches!(err, EngineError::NotAFolder { .. }), "{err:?}");
    assert!(err.to_string().contains("config.json"), "{err}");
    let err = load_err(&fixture("no-such-model"));
    assert!(matches!(err, EngineError::MissingFile { .. }), "{err:?}");
}

#[test]
fn half_precision_checkpoints_are_widened_at_load() {
    let reference = Model::load(fixture("imp-v1.5-4b-phi3"), &LoadOptions::default()).expect("f32");
    let req = GenerateRequest::new(vec![ChatMessage::user("Hello there.")]);
    let expected = reference.prompt_logits(&req).expect("logits");
    for (dtype, name) in [
        (candle_core::DType::F16, "f16"),
        (candle_core::DType::BF16, "bf16"),
    ] {
        let dir = copy_of("imp-v1.5-4b-phi3");
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "safetensors") {
                let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
                    .expect("load shard");
                let narrowed: std::collections::HashMap<String, candle_core::Tensor> = tensors
                    .into_iter()
                    .map(|(k, t)| (k, t.to_dtype(dtype).expect("convert")))
                    .collect();
                candle_core::safetensors::save(&narrowed, &path).expect("save shard");
            }
        }
        let model = Model::load(dir.path(), &LoadOptions::default()).expect("half model");
        assert_eq!(model.info().quantization, name);
        let logits = model.prompt_logits(&req).expect("logits");
        assert_eq!(logits.dtype(), candle_core::DType::F32);
        let scale = expected
            .abs()
            .and_then(|t| t.max_all())
            .and_then(|t| t.to_scalar::<f32>());
        let diff = (&logits - &expected)
            .and_then(|t| t.abs())
            .and_then(|t| t.max_all())
            .and_then(|t| t.to_scalar::<f32>());
        let (diff, scale) = (diff.expect("diff"), scale.expect("scale"));
        assert!(
            diff <= 0.05 * scale,
            "{name}: logits off by {diff} of {scale}"
        );
    }
}
