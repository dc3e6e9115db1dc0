//! The vision tower and projector reproduce Hugging Face's SigLIP + `mlp2x_gelu` on the
//! tiny fixture checkpoints (tests/fixtures, made by tools/make_fixtures.py), fed the
//! exact pixel values the reference run used.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use impchat_engine::projector::Projector;
use impchat_engine::vision::{VisionConfig, VisionTower};

const TOLERANCE: f32 = 1e-4;
const IMAGES: [&str; 2] = ["shapes", "receipt"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Checkpoint {
    config: serde_json::Value,
    vb: VarBuilder<'static>,
}

fn open(name: &str) -> Checkpoint {
    let dir = fixtures().join("models").join(name);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    assert!(!shards.is_empty(), "no safetensors in {}", dir.display());
    // SAFETY: the fixture files are committed and not modified while the test runs.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&shards, DType::F32, &Device::Cpu) }.unwrap();
    Checkpoint { config, vb }
}

fn reference(name: &str) -> std::collections::HashMap<String, Tensor> {
    let path = fixtures()
        .join("reference")
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn lm_hidden(config: &serde_json::Value) -> usize {
    let hidden = config.get("hidden_size").or_else(|| config.get("n_embd"));
    hidden.and_then(|v| v.as_u64()).unwrap() as usize
}

/// Runs tower + projector of `checkpoint` (weights under `prefix`) on the reference
/// pixels and compares both outputs with `reference`.
fn assert_parity(checkpoint: &str, prefix: &str, reference_name: &str, expected_patches: usize) {
    let ckpt = open(checkpoint);
    let cfg = VisionConfig::from_imp_config(&ckpt.config).unwrap();
    assert_eq!(cfg.num_patches(), expected_patches);
    let tower = VisionTower::load(
        &cfg,
        ckpt.vb
            .pp(format!("{prefix}.vision_tower.vision_tower.vision_model")),
    )
    .unwrap();
    let mm_hidden = ckpt.config["mm_hidden_size"].as_u64().unwrap() as usize;
    let projector = Projector::load(
        mm_hidden,
        lm_hidden(&ckpt.config),
        ckpt.vb.pp(format!("{prefix}.mm_projector")),
    )
    .unwrap();
    let want = reference(reference_name);
    for image in IMAGES {
        let pixels = &want[&format!("{image}.pixel_values")];
        let features = tower.forward(pixels).unwrap();
        let err = max_abs_diff(&features, &want[&format!("{image}.vision_features")]);
        assert!(
            err <= TOLERANCE,
            "{checkpoint}/{image}: vision features differ by {err}"
        );
        let projected = projector.forward(&features).unwrap();
        let err = max_abs_diff(&projected, &want[&format!("{image}.projector_output")]);
        assert!(
            err <= TOLERANCE,
            "{checkpoint}/{image}: projector output differs by {err}"
        );
    }
}

#[test]
fn old_phi_msft_layout_matches_reference() {
    assert_parity("imp-v1-3b-old", "transformer", "imp-v1-3b", 16);
}

#[test]
fn new_phi2_layout_matches_reference() {
    assert_parity("imp-v1.5-3b-phi2", "model", "imp-v1-3b", 16);
}

#[test]
fn smaller_image_size_from_config_matches_reference() {
    assert_parity("imp-v1.5-3b-196", "model", "imp-v1.5-3b-196", 9);
}

#[test]
fn qwen_checkpoint_matches_reference() {
    assert_parity("imp-v1.5-2b-qwen1.5", "model", "imp-v1.5-2b-qwen1.5", 16);
}

#[test]
fn phi3_checkpoint_matches_reference() {
    assert_parity("imp-v1.5-4b-phi3", "model", "imp-v1.5-4b-phi3", 16);
}

#[test]
fn batched_images_give_the_same_features_as_single_images() {
    let ckpt = open("imp-v1.5-4b-phi3");
    let cfg = VisionConfig::from_imp_config(&ckpt.config).unwrap();
    let tower = VisionTower::load(
        &cfg,
        ckpt.vb.pp("model.vision_tower.vision_tower.vision_model"),
    )
    .unwrap();
    let want = reference("imp-v1.5-4b-phi3");
    let batch = Tensor::cat(
        &[&want["shapes.pixel_values"], &want["receipt.pixel_values"]],
        0,
    )
    .unwrap();
    let features = tower.forward(&batch).unwrap();
    for (i, image) in IMAGES.iter().enumerate() {
        let err = max_abs_diff(
            &features.narrow(0, i, 1).unwrap(),
            &want[&format!("{image}.vision_features")],
        );
        assert!(err <= TOLERANCE, "batched {image}: differs by {err}");
    }
}

#[test]
fn a_checkpoint_without_the_tower_weights_fails_to_load_with_the_tensor_named() {
    let ckpt = open("imp-v1.5-3b-phi2");
    let cfg = VisionConfig::from_imp_config(&ckpt.config).unwrap();
    // The old-layout prefix does not exist in a new-layout checkpoint.
    let err = VisionTower::load(
        &cfg,
        ckpt.vb
            .pp("transformer.vision_tower.vision_tower.vision_model"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("transformer.vision_tower"), "{err}");
}
