//! Hostile model files and configs: devices, pipes and kernel files where model files
//! belong, shards outside the folder, absurd config numbers, crafted GGUF headers,
//! damaged weights. Each is refused with a message naming what is wrong (or, for what
//! can run, runs), never a hang, an abort or a huge allocation.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use candle_core::{Device, Tensor};
use impchat_convert::{convert, ConvertOptions, LmQuant, VisionQuant};
use impchat_engine::gguf::GgufFile;
use impchat_engine::{
    check_checkpoint, CancelToken, ChatMessage, EngineError, GenerateRequest, GenerationStats,
    ImageBytes, LoadOptions, Model, StopReason,
};
use serde_json::Value;
use tempfile::TempDir;

mod common;

use common::checkpoint::{copy_of, edit_config, fixture};

const QWEN: &str = "imp-v1.5-2b-qwen1.5";
const PHI2: &str = "imp-v1.5-3b-phi2";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn edit_vision(dir: &Path, key: &str, value: Value) {
    edit_config(dir, |c| {
        let block = c.get_mut("vision_tower_config").expect("vision block");
        if let Value::String(text) = block {
            let mut parsed: Value = serde_json::from_str(text).expect("nested json");
            parsed[key] = value;
            *block = parsed;
        } else {
            block[key] = value;
        }
    });
}

/// Loads `path` on another thread: a load that blocks (opening a FIFO) fails the test
/// instead of hanging it.
fn load_err_in_time(path: &Path) -> EngineError {
    let (done, result) = mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = done.send(Model::load(&path, &LoadOptions::default()).err());
    });
    match result.recv_timeout(Duration::from_secs(120)) {
        Ok(Some(err)) => err,
        Ok(None) => panic!("the hostile model loaded"),
        Err(_) => panic!("loading blocked (it opened something it should not have)"),
    }
}

fn load_err(dir: &Path) -> EngineError {
    match Model::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

fn generate(model: &Model, req: &GenerateRequest) -> Result<GenerationStats, EngineError> {
    model
        .new_session()
        .generate(req, &CancelToken::new(), &mut |_| {})
}

fn shapes() -> ImageBytes {
    ImageBytes::new(std::fs::read(fixtures().join("images/shapes.png")).expect("image"))
}

fn replace_with_link(path: &Path, target: &str) {
    std::fs::remove_file(path).expect("rm");
    std::os::unix::fs::symlink(target, path).expect("symlink");
}

// ---- 1. Model paths must be regular files inside the folder ----

#[test]
fn a_fifo_config_is_refused_without_blocking() {
    let dir = copy_of(QWEN);
    let config = dir.path().join("config.json");
    std::fs::remove_file(&config).expect("rm");
    let status = std::process::Command::new("mkfifo")
        .arg(&config)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let message = load_err_in_time(dir.path()).to_string();
    assert!(message.contains("config.json"), "{message}");
    assert!(message.contains("named pipe (FIFO)"), "{message}");
}

#[test]
fn device_and_kernel_files_are_named_for_what_they_are() {
    for (file, target, kind) in [
        ("config.json", "/dev/zero", "character device"),
        ("vocab.json", "/dev/urandom", "character device"),
        (
            "model-00002-of-00002.safetensors",
            "/proc/self/status",
            "/proc",
        ),
        (
            "model.safetensors.index.json",
            "/proc/self/environ",
            "/proc",
        ),
    ] {
        let dir = copy_of(QWEN);
        replace_with_link(&dir.path().join(file), target);
        let message = load_err_in_time(dir.path()).to_string();
        assert!(message.contains(file), "{file}: {message}");
        assert!(message.contains(kind), "{file}: {message}");
    }
}

#[test]
fn a_fifo_gguf_is_refused_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model-Q8_0.gguf");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let message = load_err_in_time(&path).to_string();
    assert!(message.contains("model-Q8_0.gguf"), "{message}");
    assert!(message.contains("FIFO"), "{message}");
}

#[test]
fn shards_outside_the_model_folder_are_refused() {
    for outside in ["../model-00002-of-00002.safetensors", "/etc/passwd"] {
        let dir = copy_of(QWEN);
        let index = dir.path().join("model.safetensors.index.json");
        let mut value: Value =
            serde_json::from_str(&std::fs::read_to_string(&index).expect("read")).expect("json");
        let map = value["weight_map"].as_object_mut().expect("weight_map");
        for shard in map.values_mut() {
            if shard == "model-00002-of-00002.safetensors" {
                *shard = outside.into();
            }
        }
        std::fs::write(&index, value.to_string()).expect("write");
        let err = load_err(dir.path());
        assert!(
            matches!(err, EngineError::ShardOutsideFolder { ref shard, .. } if shard == outside),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("the index names a shard outside the model folder"),
            "{message}"
        );
        assert!(message.contains(outside), "{message}");
    }
}

#[test]
fn an_oversized_config_is_refused_with_the_cap() {
    let dir = copy_of(QWEN);
    let config = dir.path().join("config.json");
    let mut text = std::fs::read_to_string(&config).expect("read");
    text.push_str(&" ".repeat(5 << 20));
    std::fs::write(&config, text).expect("write");
    let message = load_err(dir.path()).to_string();
    assert!(message.contains("config.json"), "{message}");
    assert!(message.contains("4194304-byte limit"), "{message}");
}

// ---- 2. Absurd configs are checked against the weights before allocating ----

#[test]
fn a_trillion_positions_cost_nothing_until_used() {
    let dir = copy_of(QWEN);
    edit_config(dir.path(), |c| {
        c.insert(
            "max_position_embeddings".into(),
            1_000_000_000_000u64.into(),
        );
    });
    let model = Model::load(dir.path(), &LoadOptions::default()).expect("load");
    assert_eq!(model.info().context_length, 1_000_000_000_000);
    let mut req = GenerateRequest::new(vec![ChatMessage::user("Hello there")]);
    req.max_new_tokens = 3;
    let stats = generate(&model, &req).expect("generate");
    assert!(stats.generated_tokens <= 3);
}

#[test]
fn a_billion_layers_are_refused_naming_both_counts() {
    for (name, key) in [(QWEN, "num_hidden_layers"), ("imp-v1-3b-old", "n_layer")] {
        let dir = copy_of(name);
        edit_config(dir.path(), |c| {
            c.insert(key.into(), 1_000_000_000u64.into());
        });
        let err = load_err(dir.path());
        assert!(matches!(err, EngineError::InvalidConfig { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("1000000000") && message.contains("hold 2"),
            "{name}: {message}"
        );
        let same = check_checkpoint(dir.path()).expect_err("check refuses it too");
        assert_eq!(same.to_string(), message);
    }
}

#[test]
fn a_hidden_size_or_vocabulary_the_embedding_lacks_is_named() {
    for (key, value) in [("hidden_size", 64u64), ("vocab_size", 100_000)] {
        let dir = copy_of(QWEN);
        edit_config(dir.path(), |c| {
            c.insert(key.into(), value.into());
        });
        let message = load_err(dir.path()).to_string();
        assert!(message.contains(&format!("{key} {value}")), "{message}");
        assert!(message.contains("embedding table"), "{message}");
    }
}

#[test]
fn patch_size_zero_says_what_is_wrong() {
    let dir = copy_of(QWEN);
    edit_vision(dir.path(), "patch_size", 0.into());
    let message = load_err(dir.path()).to_string();
    assert!(message.contains("patch_size is 0"), "{message}");
    assert!(!message.contains("smaller than"), "{message}");
}

#[test]
fn absurd_vision_numbers_are_refused() {
    let dir = copy_of(QWEN);
    edit_vision(dir.path(), "image_size", 1_000_000_000u64.into());
    let message = load_err(dir.path()).to_string();
    assert!(message.contains("image_size 1000000000"), "{message}");

    let dir = copy_of(QWEN);
    edit_vision(dir.path(), "num_hidden_layers", 1_000_000_000u64.into());
    edit_config(dir.path(), |c| {
        c.insert("mm_vision_select_layer".into(), (-1).into());
    });
    let message = load_err(dir.path()).to_string();
    assert!(
        message.contains("1000000000 vision-tower layers") && message.contains("hold 2"),
        "{message}"
    );
}

#[test]
fn a_projector_that_does_not_fit_the_language_model_names_both_sizes() {
    let dir = copy_of(QWEN);
    let name = "model.mm_projector.2.weight";
    rewrite_tensor(dir.path(), name, |_| {
        Tensor::zeros((40, 48), candle_core::DType::F32, &Device::Cpu).expect("zeros")
    });
    let err = load_err(dir.path());
    assert_names_both_sizes(&err);
}

// ---- crafted GGUF headers ----

/// GGUF v3 header bytes: `tensors` and `kvs` as declared counts, then `body`.
fn gguf_bytes(tensors: u64, kvs: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&tensors.to_le_bytes());
    bytes.extend_from_slice(&kvs.to_le_bytes());
    bytes.extend_from_slice(body);
    bytes.resize(bytes.len() + 256, 0);
    bytes
}

fn gguf_string(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

fn open_crafted(bytes: &[u8]) -> EngineError {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crafted.gguf");
    std::fs::write(&path, bytes).expect("write");
    match GgufFile::open(&path) {
        Ok(_) => panic!("a crafted header opened"),
        Err(e) => e,
    }
}

#[test]
fn crafted_gguf_counts_are_refused_before_allocating() {
    const HUGE: u64 = 1_000_000_000_000_000_000;
    let key = gguf_string("general.name");
    let string_value = [
        key.clone(),
        8u32.to_le_bytes().to_vec(),
        HUGE.to_le_bytes().to_vec(),
    ];
    let array_value = [
        key.clone(),
        9u32.to_le_bytes().to_vec(),
        0u32.to_le_bytes().to_vec(),
        HUGE.to_le_bytes().to_vec(),
    ];
    let long_key = HUGE.to_le_bytes().to_vec();
    let mut huge_tensor = gguf_string("t");
    huge_tensor.extend_from_slice(&2u32.to_le_bytes());
    huge_tensor.extend_from_slice(&(1u64 << 40).to_le_bytes());
    huge_tensor.extend_from_slice(&(1u64 << 40).to_le_bytes());
    huge_tensor.extend_from_slice(&0u32.to_le_bytes());
    huge_tensor.extend_from_slice(&0u64.to_le_bytes());
    let cases = [
        ("tensor count", gguf_bytes(HUGE, 0, &[])),
        ("kv count", gguf_bytes(0, HUGE, &[])),
        ("string length", gguf_bytes(0, 1, &string_value.concat())),
        ("array length", gguf_bytes(0, 1, &array_value.concat())),
        ("key length", gguf_bytes(0, 1, &long_key)),
        ("tensor size", gguf_bytes(1, 0, &huge_tensor)),
    ];
    for (what, bytes) in cases {
        let err = open_crafted(&bytes);
        assert!(
            matches!(err, EngineError::CorruptWeights { .. }),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn a_zero_alignment_is_a_corrupt_header_not_a_panic() {
    let mut body = gguf_string("general.alignment");
    body.extend_from_slice(&4u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    let err = open_crafted(&gguf_bytes(0, 1, &body));
    assert!(matches!(err, EngineError::CorruptWeights { .. }), "{err:?}");
    // Found before candle's reader runs: under a fuzzer's aborting panic hook, a panic
    // caught later would still end the process.
    assert!(err.to_string().contains("general.alignment is 0"), "{err}");
}

// ---- 6. Answers cut short by the context say so ----

#[test]
fn an_answer_cut_by_a_full_context_says_so() {
    let req = |max_new_tokens| GenerateRequest {
        max_new_tokens,
        ..GenerateRequest::new(vec![ChatMessage::user("Tell me a long story.")])
    };
    let model = Model::load(fixture(QWEN), &LoadOptions::default()).expect("load");
    let prompt = model.prompt_ids(&req(1)).expect("ids").len();
    let unlimited = generate(&model, &req(8)).expect("generate");
    assert_eq!(
        unlimited.stop_reason,
        Some(StopReason::MaxTokens),
        "the fixture writes 8 tokens without ending its turn"
    );

    let dir = copy_of(QWEN);
    edit_config(dir.path(), |c| {
        c.insert("max_position_embeddings".into(), (prompt + 4).into());
    });
    let model = Model::load(dir.path(), &LoadOptions::default()).expect("load");
    let stats = generate(&model, &req(100)).expect("generate");
    assert_eq!(stats.stop_reason, Some(StopReason::ContextFull));
    assert!(stats.generated_tokens < 100);
}

// ---- 7. Advice that can be followed ----

#[test]
fn overflow_advice_fits_what_overflowed() {
    let dir = copy_of(QWEN);
    edit_config(dir.path(), |c| {
        c.insert("max_position_embeddings".into(), 40.into());
    });
    let model = Model::load(dir.path(), &LoadOptions::default()).expect("load");
    let long = "word ".repeat(60);

    let err = generate(
        &model,
        &GenerateRequest::new(vec![ChatMessage::user(&long)]),
    )
    .expect_err("too long");
    let message = err.to_string();
    assert!(message.contains("shorten the question"), "{message}");
    assert!(!message.contains("image"), "{message}");

    let history = GenerateRequest::new(vec![
        ChatMessage::user(&long),
        ChatMessage::assistant("Yes."),
        ChatMessage::user("And?"),
    ]);
    let message = generate(&model, &history)
        .expect_err("too long")
        .to_string();
    assert!(message.contains("start a new chat"), "{message}");
    assert!(!message.contains("image"), "{message}");

    let pictures = GenerateRequest::new(vec![ChatMessage::user("Compare")
        .with_image(shapes())
        .with_image(shapes())]);
    let message = generate(&model, &pictures)
        .expect_err("too long")
        .to_string();
    assert!(message.contains("fewer images"), "{message}");
}

#[test]
fn a_literal_image_tag_in_the_question_is_text() {
    let model = Model::load(fixture(QWEN), &LoadOptions::default()).expect("load");
    let question = "What does the <image> tag do in HTML?";
    let text_only = GenerateRequest {
        max_new_tokens: 2,
        ..GenerateRequest::new(vec![ChatMessage::user(question)])
    };
    let ids = model.prompt_ids(&text_only).expect("ids");
    assert!(!ids.contains(&impchat_engine::model::IMAGE_TOKEN_INDEX));
    generate(&model, &text_only).expect("answers");

    let with_two = GenerateRequest {
        max_new_tokens: 2,
        ..GenerateRequest::new(vec![ChatMessage::user(question)
            .with_image(shapes())
            .with_image(shapes())])
    };
    let ids = model.prompt_ids(&with_two).expect("ids");
    let slots = ids
        .iter()
        .filter(|&&id| id == impchat_engine::model::IMAGE_TOKEN_INDEX)
        .count();
    assert_eq!(slots, 2);
    generate(&model, &with_two).expect("answers");
}

#[test]
fn damaged_weights_are_reported_not_answered() {
    for poison in [f32::NAN, f32::INFINITY] {
        let dir = copy_of(QWEN);
        rewrite_tensor(dir.path(), "model.norm.weight", |t| {
            (t.ones_like().expect("ones") * f64::from(poison)).expect("poison")
        });
        let model = Model::load(dir.path(), &LoadOptions::default()).expect("load");
        let req = GenerateRequest::new(vec![ChatMessage::user("Hello there")]);
        let err = generate(&model, &req).expect_err("damaged");
        assert!(matches!(err, EngineError::DamagedWeights { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("weights are damaged") && message.contains("re-download"),
            "{message}"
        );
    }
}

/// Replaces tensor `name` (wherever its shard is) with `edit` of it.
fn rewrite_tensor(dir: &Path, name: &str, edit: impl Fn(&Tensor) -> Tensor) {
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "safetensors") {
            continue;
        }
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).expect("shard");
        if let Some(tensor) = tensors.get(name) {
            let edited = edit(tensor);
            tensors.insert(name.to_string(), edited);
            candle_core::safetensors::save(&tensors, &path).expect("save shard");
            return;
        }
    }
    panic!("no tensor {name}");
}

struct Converted {
    _dir: TempDir,
    lm: PathBuf,
    mmproj: PathBuf,
}

fn convert_fixture(name: &str) -> Converted {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ConvertOptions {
        lm: LmQuant::Q8_0,
        vision: VisionQuant::F16,
        name: None,
        overwrite: false,
    };
    let out = convert(&fixture(name), dir.path(), &opts, &mut |_| {}).expect("convert");
    Converted {
        lm: out.language_model.path,
        mmproj: out.projector.path,
        _dir: dir,
    }
}

#[test]
fn a_gguf_without_its_mmproj_answers_text_and_explains_images() {
    let converted = convert_fixture(QWEN);
    std::fs::remove_file(&converted.mmproj).expect("remove");
    let model = Model::load(&converted.lm, &LoadOptions::default()).expect("text-only load");
    assert!(!model.info().vision);
    let text = GenerateRequest {
        max_new_tokens: 2,
        ..GenerateRequest::new(vec![ChatMessage::user("Hello there")])
    };
    generate(&model, &text).expect("text answers");

    let picture = GenerateRequest::new(vec![ChatMessage::user("What is it?").with_image(shapes())]);
    let err = generate(&model, &picture).expect_err("no vision");
    assert!(matches!(err, EngineError::NoVisionTower), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("no vision projector") && message.contains("mmproj-*.gguf"),
        "{message}"
    );
    assert!(!message.contains("LoadOptions"), "{message}");
    let err = model.preview_image(b"any bytes").expect_err("no vision");
    assert!(matches!(err, EngineError::NoVisionTower), "{err:?}");
}

#[test]
fn an_mmproj_of_another_model_names_both_sizes() {
    let qwen = convert_fixture(QWEN);
    let phi2 = convert_fixture(PHI2);
    let options = LoadOptions {
        mmproj: Some(phi2.mmproj.clone()),
        ..LoadOptions::default()
    };
    let err = match Model::load(&qwen.lm, &options) {
        Ok(_) => panic!("a Phi-2 projector fed a Qwen model"),
        Err(e) => e,
    };
    assert_names_both_sizes(&err);
}

/// A 40-wide projector on a 48-wide language model is refused naming both sizes.
fn assert_names_both_sizes(err: &EngineError) {
    assert!(
        matches!(
            err,
            EngineError::ProjectorMismatch {
                projector: 40,
                language_model: 48,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("40") && message.contains("48"),
        "{message}"
    );
}
