//! Each model file against candle-transformers' own implementation of the same
//! architecture on random weights: a whole prompt, chunked prefill on a filled cache, and
//! token-by-token decoding must all give the reference logits.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::{mixformer, phi, phi3 as ref_phi3, qwen2 as ref_qwen2};
use serde_json::{json, Value};

use super::{phi2, phi3, qwen2, KvCache, LanguageModel};
use crate::config::Json;

const PROMPT: [u32; 7] = [3, 17, 42, 9, 77, 5, 61];
const DECODE: [u32; 3] = [11, 99, 23];
const TOLERANCE: f32 = 1e-4;

/// Builds the reference once on a `VarMap` so every weight exists, then randomises all of
/// them (norm weights included) and returns them by name.
fn random_weights(build: impl FnOnce(VarBuilder)) -> HashMap<String, Tensor> {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu));
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .map(|(name, var)| {
            let noise = var.randn_like(0.0, 0.2).expect("randn");
            (name.clone(), (var.as_tensor() + noise).expect("add"))
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().expect("flat");
    let b = b.flatten_all().expect("flat");
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .max(0)
        .expect("max")
        .to_scalar()
        .expect("scalar")
}

fn ids(tokens: &[u32]) -> Tensor {
    Tensor::new(tokens, &Device::Cpu)
        .expect("ids")
        .unsqueeze(0)
        .expect("batch")
}

/// Runs `ours` on the prompt in one go, in two chunks, and then token by token, checking
/// every step against `reference(ids, offset)` (last-position logits).
fn check_against_reference(
    ours: &dyn LanguageModel,
    mut reference: impl FnMut(&Tensor, usize) -> Tensor,
) {
    let whole = {
        let mut cache = KvCache::new(ours.num_layers());
        let embeds = ours.embed(&ids(&PROMPT)).expect("embed");
        ours.forward_embeds(&embeds, &mut cache, 0)
            .expect("forward")
    };
    let expected = reference(&ids(&PROMPT), 0);
    let last = whole.i((0, PROMPT.len() - 1)).expect("last row");
    assert!(
        max_abs_diff(&last, &expected) <= TOLERANCE,
        "prompt logits differ"
    );

    // Chunked prefill: the second chunk attends over a filled cache (rectangular mask).
    let mut cache = KvCache::new(ours.num_layers());
    let (first, second) = PROMPT.split_at(4);
    let head = ours.forward_embeds(&ours.embed(&ids(first)).expect("embed"), &mut cache, 0);
    let head = head.expect("forward");
    let tail = ours.forward_embeds(&ours.embed(&ids(second)).expect("embed"), &mut cache, 4);
    let chunked = Tensor::cat(&[head, tail.expect("forward")], 1).expect("cat");
    assert!(
        max_abs_diff(&chunked, &whole) <= TOLERANCE,
        "chunked prefill differs"
    );

    let mut pos = PROMPT.len();
    for token in DECODE {
        let embeds = ours.embed(&ids(&[token])).expect("embed");
        let logits = ours
            .forward_embeds_last(&embeds, &mut cache, pos)
            .expect("step");
        let expected = reference(&ids(&[token]), pos);
        assert!(
            max_abs_diff(&logits, &expected) <= TOLERANCE,
            "decode step at {pos} differs"
        );
        pos += 1;
    }
    assert_eq!(cache.len(), pos);
}

fn json_config(value: &Value) -> &serde_json::Map<String, Value> {
    value.as_object().expect("object")
}

#[test]
fn phi2_hf_layout_matches_candle_phi() {
    let cfg = json!({
        "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": null, "hidden_act": "gelu_new",
        "max_position_embeddings": 64, "layer_norm_eps": 1e-5, "tie_word_embeddings": false,
        "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "qk_layernorm": false
    });
    let ref_cfg: phi::Config = serde_json::from_value(cfg.clone()).expect("ref config");
    let weights = random_weights(|vb| {
        phi::Model::new(&ref_cfg, vb).expect("reference model");
    });
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let mut reference = phi::Model::new(&ref_cfg, vb.clone()).expect("reference");
    let ours_cfg =
        phi2::Config::from_json(&Json::new(json_config(&cfg), Path::new("c"))).expect("cfg");
    let layout = phi2::Layout::detect(|n| vb.contains_tensor(n)).expect("layout");
    assert_eq!(layout, phi2::Layout::HuggingFace);
    let ours = phi2::Phi2::load(&ours_cfg, layout, vb).expect("ours");
    check_against_reference(&ours, |ids, _| {
        reference.forward(ids).expect("ref").squeeze(0).expect("sq")
    });
}

#[test]
fn phi2_msft_layout_matches_candle_mixformer() {
    let cfg = json!({
        "vocab_size": 128, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_inner": null,
        "n_head": 4, "rotary_dim": 8, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5, "tie_word_embeddings": false, "pad_vocab_size_multiple": 64
    });
    let ref_cfg: mixformer::Config = serde_json::from_value(cfg.clone()).expect("ref config");
    let weights = random_weights(|vb| {
        mixformer::MixFormerSequentialForCausalLM::new_v2(&ref_cfg, vb).expect("reference model");
    });
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let mut reference =
        mixformer::MixFormerSequentialForCausalLM::new_v2(&ref_cfg, vb.clone()).expect("reference");
    let ours_cfg =
        phi2::Config::from_json(&Json::new(json_config(&cfg), Path::new("c"))).expect("cfg");
    let layout = phi2::Layout::detect(|n| vb.contains_tensor(n)).expect("layout");
    assert_eq!(layout, phi2::Layout::Msft);
    let ours = phi2::Phi2::load(&ours_cfg, layout, vb).expect("ours");
    check_against_reference(&ours, |ids, _| {
        reference.forward(ids).expect("ref").squeeze(0).expect("sq")
    });
}

#[test]
fn qwen2_matches_candle_qwen2_with_grouped_kv_heads() {
    let cfg = json!({
        "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
        "sliding_window": 64, "max_window_layers": 2, "tie_word_embeddings": true,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "use_sliding_window": false,
        "hidden_act": "silu"
    });
    let ref_cfg: ref_qwen2::Config = serde_json::from_value(cfg.clone()).expect("ref config");
    let weights = random_weights(|vb| {
        ref_qwen2::ModelForCausalLM::new(&ref_cfg, vb).expect("reference model");
    });
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let mut reference = ref_qwen2::ModelForCausalLM::new(&ref_cfg, vb.clone()).expect("reference");
    let ours_cfg =
        qwen2::Config::from_json(&Json::new(json_config(&cfg), Path::new("c"))).expect("cfg");
    let ours = qwen2::Qwen2::load(&ours_cfg, vb).expect("ours");
    check_against_reference(&ours, |ids, pos| {
        reference
            .forward(ids, pos)
            .expect("ref")
            .flatten_all()
            .expect("flat")
    });
}

#[test]
fn phi3_matches_candle_phi3() {
    let cfg = json!({
        "vocab_size": 128, "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 32007,
        "rope_scaling": null, "max_position_embeddings": 64,
        "original_max_position_embeddings": null, "partial_rotary_factor": null,
        "tie_word_embeddings": false
    });
    let ref_cfg: ref_phi3::Config = serde_json::from_value(cfg.clone()).expect("ref config");
    let weights = random_weights(|vb| {
        ref_phi3::Model::new(&ref_cfg, vb).expect("reference model");
    });
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let mut reference = ref_phi3::Model::new(&ref_cfg, vb.clone()).expect("reference");
    let ours_cfg =
        phi3::Config::from_json(&Json::new(json_config(&cfg), Path::new("c"))).expect("cfg");
    let ours = phi3::Phi3::load(&ours_cfg, vb).expect("ours");
    check_against_reference(&ours, |ids, pos| {
        reference
            .forward(ids, pos)
            .expect("ref")
            .flatten_all()
            .expect("flat")
    });
}
