//! Converts the tiny real-layout Imp fixtures and reads the GGUFs back with candle.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use impchat_convert::{
    convert, ConvertError, ConvertOptions, ConvertOutput, LmQuant, OutputPart, VisionQuant,
};

const FIXTURES: [&str; 5] = [
    "imp-v1-3b-old",
    "imp-v1.5-3b-phi2",
    "imp-v1.5-3b-196",
    "imp-v1.5-2b-qwen1.5",
    "imp-v1.5-4b-phi3",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
}

fn run(
    src: &Path,
    out: &Path,
    lm: LmQuant,
    vision: VisionQuant,
    name: Option<&str>,
) -> Result<ConvertOutput, ConvertError> {
    let opts = ConvertOptions {
        lm,
        vision,
        name: name.map(str::to_owned),
        overwrite: false,
    };
    convert(src, out, &opts, &mut |_| {})
}

fn read_gguf(path: &Path) -> (Content, File) {
    let mut file = File::open(path).unwrap();
    let content = Content::read(&mut file).unwrap();
    (content, file)
}

fn meta_u32(c: &Content, key: &str) -> u32 {
    c.metadata
        .get(key)
        .unwrap_or_else(|| panic!("missing {key}"))
        .to_u32()
        .unwrap()
}

fn meta_str<'a>(c: &'a Content, key: &str) -> &'a str {
    c.metadata
        .get(key)
        .unwrap_or_else(|| panic!("missing {key}"))
        .to_string()
        .unwrap()
}

fn config(src: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap()
}

fn cfg_usize(cfg: &serde_json::Value, keys: &[&str]) -> usize {
    keys.iter()
        .find_map(|k| cfg.get(*k).and_then(|v| v.as_u64()))
        .unwrap() as usize
}

/// Every tensor of the checkpoint, f32.
fn checkpoint_tensors(src: &Path) -> HashMap<String, Tensor> {
    let mut all = HashMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            all.extend(candle_core::safetensors::load(&path, &Device::Cpu).unwrap());
        }
    }
    all
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The LM tensor names llama.cpp's loader asks for, per architecture.
fn expected_lm_names(arch: &str, layers: usize) -> Vec<String> {
    let mut names = vec![
        "token_embd.weight".to_owned(),
        "output_norm.weight".into(),
        "output.weight".into(),
    ];
    let per_layer: &[&str] = match arch {
        "phi2" => &[
            "attn_norm.weight",
            "attn_norm.bias",
            "attn_qkv.weight",
            "attn_qkv.bias",
            "attn_output.weight",
            "attn_output.bias",
            "ffn_up.weight",
            "ffn_up.bias",
            "ffn_down.weight",
            "ffn_down.bias",
        ],
        "qwen2" => &[
            "attn_norm.weight",
            "attn_q.weight",
            "attn_q.bias",
            "attn_k.weight",
            "attn_k.bias",
            "attn_v.weight",
            "attn_v.bias",
            "attn_output.weight",
            "ffn_norm.weight",
            "ffn_gate.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ],
        "phi3" => &[
            "attn_norm.weight",
            "attn_qkv.weight",
            "attn_output.weight",
            "ffn_norm.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ],
        other => panic!("unexpected arch {other}"),
    };
    if arch == "phi2" {
        names.extend(["output_norm.bias".to_owned(), "output.bias".into()]);
    }
    for i in 0..layers {
        names.extend(per_layer.iter().map(|p| format!("blk.{i}.{p}")));
    }
    names.sort();
    names
}

fn sorted_names(c: &Content) -> Vec<String> {
    let mut names: Vec<String> = c.tensor_infos.keys().cloned().collect();
    names.sort();
    names
}

fn expected_dtype(lm: LmQuant, name: &str, cols: usize, rank: usize) -> GgmlDType {
    if rank == 1 {
        return GgmlDType::F32;
    }
    let wanted = match lm {
        LmQuant::F16 => GgmlDType::F16,
        LmQuant::Q8_0 => GgmlDType::Q8_0,
        LmQuant::Q4_0 if name == "output.weight" => GgmlDType::Q6K,
        LmQuant::Q4_0 => GgmlDType::Q4_0,
        other => panic!("not covered here: {other}"),
    };
    [wanted, GgmlDType::Q8_0, GgmlDType::F16]
        .into_iter()
        .find(|d| cols.is_multiple_of(d.block_size()))
        .unwrap()
}

#[test]
fn every_fixture_converts_to_llama_cpp_layout_at_f16_q8_0_and_q4_0() {
    for fixture_name in FIXTURES {
        let src = fixture(fixture_name);
        let cfg = config(&src);
        let hidden = cfg_usize(&cfg, &["hidden_size", "n_embd"]);
        let layers = cfg_usize(&cfg, &["num_hidden_layers", "n_layer"]);
        let vocab = cfg_usize(&cfg, &["vocab_size"]);
        let arch = match cfg["model_type"].as_str().unwrap() {
            "imp" => "phi2",
            "imp_qwen2" => "qwen2",
            _ => "phi3",
        };
        for (lm, vision) in [
            (LmQuant::F16, VisionQuant::F16),
            (LmQuant::Q8_0, VisionQuant::Q8_0),
            (LmQuant::Q4_0, VisionQuant::F16),
        ] {
            let out = tempfile::tempdir().unwrap();
            let written = run(&src, out.path(), lm, vision, None).unwrap();
            assert_eq!(
                written.language_model.path,
                out.path().join(format!("{fixture_name}-{lm}.gguf"))
            );
            assert_eq!(
                written.language_model.bytes,
                std::fs::metadata(&written.language_model.path)
                    .unwrap()
                    .len()
            );

            let (c, _) = read_gguf(&written.language_model.path);
            assert_eq!(meta_str(&c, "general.architecture"), arch, "{fixture_name}");
            assert_eq!(
                meta_u32(&c, &format!("{arch}.block_count")) as usize,
                layers
            );
            assert_eq!(
                meta_u32(&c, &format!("{arch}.embedding_length")) as usize,
                hidden
            );
            assert_eq!(meta_u32(&c, &format!("{arch}.attention.head_count")), 4);
            assert_eq!(meta_u32(&c, &format!("{arch}.attention.head_count_kv")), 4);
            assert_eq!(meta_u32(&c, "general.file_type"), lm.file_type());
            let rope = meta_u32(&c, &format!("{arch}.rope.dimension_count"));
            assert_eq!(
                rope,
                if arch == "phi2" { 4 } else { 12 },
                "{fixture_name}: rotary dims"
            );
            let eps_key = if arch == "phi2" {
                "attention.layer_norm_epsilon"
            } else {
                "attention.layer_norm_rms_epsilon"
            };
            assert!(c.metadata.contains_key(&format!("{arch}.{eps_key}")));
            // Phi-3 attends within a window (2047 in the fixture, as in the real checkpoint);
            // Qwen1.5 sets `use_sliding_window: false`, so its window must not be written.
            let window_key = format!("{arch}.attention.sliding_window");
            if arch == "phi3" {
                assert_eq!(
                    meta_u32(&c, &window_key) as usize,
                    cfg_usize(&cfg, &["sliding_window"])
                );
            } else {
                assert!(!c.metadata.contains_key(&window_key), "{fixture_name}");
            }
            assert_eq!(
                sorted_names(&c),
                expected_lm_names(arch, layers),
                "{fixture_name}"
            );
            assert_eq!(written.language_model.tensors, c.tensor_infos.len());

            for (name, info) in &c.tensor_infos {
                let dims = info.shape.dims();
                let want = expected_dtype(lm, name, *dims.last().unwrap(), dims.len());
                assert_eq!(
                    info.ggml_dtype, want,
                    "{fixture_name} {lm}: {name} {dims:?}"
                );
            }
            let embd = &c.tensor_infos["token_embd.weight"];
            assert_eq!(embd.shape.dims(), &[vocab, hidden]);
            assert_eq!(
                c.tensor_infos["output.weight"].shape.dims(),
                &[vocab, hidden]
            );

            let (m, _) = read_gguf(&written.projector.path);
            assert_eq!(meta_str(&m, "general.architecture"), "clip");
            assert_eq!(meta_str(&m, "clip.projector_type"), "mlp");
            assert_eq!(
                meta_u32(&m, "clip.vision.block_count"),
                2,
                "Imp keeps 2 of the 3 base layers"
            );
            assert_eq!(meta_u32(&m, "clip.vision.projection_dim") as usize, hidden);
            let image = cfg["vision_tower_config"]["image_size"].as_u64().unwrap() as u32;
            assert_eq!(meta_u32(&m, "clip.vision.image_size"), image);
            assert_eq!(
                meta_u32(&m, "imp.visual_tokens"),
                (image / 14) * (image / 14)
            );
            let feature = m.metadata["clip.vision.feature_layer"].to_vec().unwrap();
            assert_eq!(
                feature[0].to_i32().unwrap(),
                2,
                "llama.cpp must run both kept layers"
            );
            assert_eq!(m.tensor_infos.len(), 3 + 2 * 16 + 4);
            assert_eq!(
                m.tensor_infos["v.patch_embd.weight"].shape.dims(),
                &[24, 3, 14, 14]
            );
            assert_eq!(
                m.tensor_infos["mm.2.weight"].shape.dims(),
                &[hidden, hidden]
            );
            for (name, info) in &m.tensor_infos {
                let dims = info.shape.dims();
                let want = if dims.len() == 1 {
                    GgmlDType::F32
                } else if vision == VisionQuant::Q8_0
                    && !name.starts_with("v.p")
                    && dims.last().unwrap() % 32 == 0
                {
                    GgmlDType::Q8_0
                } else {
                    GgmlDType::F16
                };
                assert_eq!(
                    info.ggml_dtype, want,
                    "{fixture_name} mmproj {vision}: {name} {dims:?}"
                );
            }
        }
    }
}

#[test]
fn f16_tensors_hold_the_checkpoint_values() {
    let src = fixture("imp-v1.5-3b-phi2");
    let out = tempfile::tempdir().unwrap();
    let written = run(&src, out.path(), LmQuant::F16, VisionQuant::F16, None).unwrap();
    let original = checkpoint_tensors(&src);
    let (c, mut f) = read_gguf(&written.language_model.path);
    let pairs = [
        ("token_embd.weight", vec!["model.embed_tokens.weight"]),
        (
            "blk.1.attn_qkv.weight",
            vec![
                "model.layers.1.self_attn.q_proj.weight",
                "model.layers.1.self_attn.k_proj.weight",
                "model.layers.1.self_attn.v_proj.weight",
            ],
        ),
        (
            "blk.0.attn_qkv.bias",
            vec![
                "model.layers.0.self_attn.q_proj.bias",
                "model.layers.0.self_attn.k_proj.bias",
                "model.layers.0.self_attn.v_proj.bias",
            ],
        ),
        (
            "blk.0.ffn_down.weight",
            vec!["model.layers.0.mlp.fc2.weight"],
        ),
        ("output.weight", vec!["lm_head.weight"]),
        ("output_norm.bias", vec!["model.final_layernorm.bias"]),
    ];
    for (gguf_name, sources) in pairs {
        let got = c
            .tensor(&mut f, gguf_name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let parts: Vec<&Tensor> = sources.iter().map(|s| &original[*s]).collect();
        let want = Tensor::cat(&parts, 0).unwrap();
        let scale = want
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = max_abs_diff(&got, &want);
        let bound = if got.rank() == 1 {
            0.0
        } else {
            scale * 2f32.powi(-11)
        };
        assert!(diff <= bound, "{gguf_name}: max diff {diff} > {bound}");
    }

    let (m, mut f) = read_gguf(&written.projector.path);
    let tower = "model.vision_tower.vision_tower.vision_model.";
    for (gguf_name, source) in [
        (
            "v.patch_embd.weight",
            format!("{tower}embeddings.patch_embedding.weight"),
        ),
        (
            "v.position_embd.weight",
            format!("{tower}embeddings.position_embedding.weight"),
        ),
        (
            "v.blk.1.attn_out.weight",
            format!("{tower}encoder.layers.1.self_attn.out_proj.weight"),
        ),
        (
            "v.blk.0.ffn_down.weight",
            format!("{tower}encoder.layers.0.mlp.fc2.weight"),
        ),
        ("mm.0.weight", "model.mm_projector.0.weight".to_owned()),
    ] {
        let got = m
            .tensor(&mut f, gguf_name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let want = &original[&source];
        let scale = want
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            max_abs_diff(&got, want) <= scale * 2f32.powi(-11),
            "{gguf_name}"
        );
    }
}

#[test]
fn old_and_new_phi2_layouts_give_identical_language_models() {
    for lm in [LmQuant::F16, LmQuant::Q4_0] {
        let out_old = tempfile::tempdir().unwrap();
        let out_new = tempfile::tempdir().unwrap();
        let old = run(
            &fixture("imp-v1-3b-old"),
            out_old.path(),
            lm,
            VisionQuant::F16,
            Some("imp"),
        )
        .unwrap();
        let new = run(
            &fixture("imp-v1.5-3b-phi2"),
            out_new.path(),
            lm,
            VisionQuant::F16,
            Some("imp"),
        )
        .unwrap();
        let old_bytes = std::fs::read(&old.language_model.path).unwrap();
        let new_bytes = std::fs::read(&new.language_model.path).unwrap();
        assert!(
            old_bytes == new_bytes,
            "{lm}: old-layout and new-layout Phi-2 LM files differ"
        );
        let old_mm = std::fs::read(&old.projector.path).unwrap();
        let new_mm = std::fs::read(&new.projector.path).unwrap();
        assert!(old_mm == new_mm, "{lm}: the mmproj files differ");
    }
}

#[test]
fn tokenizer_metadata_round_trips() {
    for (fixture_name, model, pre) in [
        ("imp-v1.5-3b-phi2", "gpt2", Some("phi-2")),
        ("imp-v1.5-2b-qwen1.5", "gpt2", Some("qwen2")),
        ("imp-v1.5-4b-phi3", "llama", None),
    ] {
        let src = fixture(fixture_name);
        let cfg = config(&src);
        let out = tempfile::tempdir().unwrap();
        let written = run(&src, out.path(), LmQuant::Q8_0, VisionQuant::F16, None).unwrap();
        let (c, _) = read_gguf(&written.language_model.path);
        assert_eq!(meta_str(&c, "tokenizer.ggml.model"), model);
        assert_eq!(
            c.metadata
                .get("tokenizer.ggml.pre")
                .map(|v| v.to_string().unwrap().as_str()),
            pre
        );
        let tokens = c.metadata["tokenizer.ggml.tokens"].to_vec().unwrap();
        let types = c.metadata["tokenizer.ggml.token_type"].to_vec().unwrap();
        assert_eq!(
            tokens.len(),
            cfg["vocab_size"].as_u64().unwrap() as usize,
            "{fixture_name}: one token per embedding row"
        );
        assert_eq!(types.len(), tokens.len());

        let tokenizer = impchat_input::tokenizer::load_tokenizer(&src).unwrap();
        let real = tokenizer.get_vocab_size(true);
        for (id, token) in tokens.iter().enumerate() {
            let text = token.to_string().unwrap();
            match tokenizer.id_to_token(id as u32) {
                Some(expected) => assert_eq!(text, &expected, "{fixture_name}: token {id}"),
                None => {
                    assert_eq!(text, &format!("[PAD{id}]"));
                    assert_eq!(types[id].to_i32().unwrap(), 5, "padding rows are UNUSED");
                }
            }
        }
        assert!(real <= tokens.len());

        let eos = meta_u32(&c, "tokenizer.ggml.eos_token_id");
        assert_eq!(
            eos as u64,
            cfg["eos_token_id"].as_u64().unwrap(),
            "{fixture_name}: eos is the generation stop token"
        );
        assert_eq!(
            types[eos as usize].to_i32().unwrap(),
            3,
            "{fixture_name}: the stop token is a control token"
        );
        let stop = tokenizer.id_to_token(eos).unwrap();
        let stops = c.metadata["imp.stop_strings"].to_vec().unwrap();
        assert!(
            stops.iter().any(|s| s.to_string().unwrap() == &stop),
            "{fixture_name}: {stop} not in imp.stop_strings"
        );
        assert!(meta_str(&c, "tokenizer.chat_template").contains("{%"));
        assert!(meta_str(&c, "imp.default_system_prompt").starts_with("A chat between"));

        if model == "gpt2" {
            let merges = c.metadata["tokenizer.ggml.merges"].to_vec().unwrap();
            let merges_txt = std::fs::read_to_string(src.join("merges.txt")).unwrap();
            let expected: Vec<&str> = merges_txt
                .lines()
                .filter(|l| !l.starts_with("#version") && !l.is_empty())
                .collect();
            let got: Vec<&str> = merges
                .iter()
                .map(|m| m.to_string().unwrap().as_str())
                .collect();
            assert_eq!(got, expected, "{fixture_name}: merges in rank order");
        } else {
            assert_eq!(meta_u32(&c, "tokenizer.ggml.bos_token_id"), 1);
            assert_eq!(meta_u32(&c, "tokenizer.ggml.unknown_token_id"), 0);
            assert!(c.metadata["tokenizer.ggml.add_bos_token"]
                .to_bool()
                .unwrap());
            let scores = c.metadata["tokenizer.ggml.scores"].to_vec().unwrap();
            assert_eq!(scores.len(), tokens.len());
            let byte_a = tokenizer.token_to_id("<0x41>").unwrap() as usize;
            assert_eq!(
                types[byte_a].to_i32().unwrap(),
                6,
                "byte-fallback tokens are BYTE"
            );
        }
    }
}

#[test]
fn progress_reports_every_tensor_of_both_files() {
    let out = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let opts = ConvertOptions {
        lm: LmQuant::Q8_0,
        vision: VisionQuant::F16,
        name: None,
        overwrite: false,
    };
    let written = convert(&fixture("imp-v1.5-4b-phi3"), out.path(), &opts, &mut |p| {
        seen.push(p)
    })
    .unwrap();
    let lm: Vec<_> = seen
        .iter()
        .filter(|p| p.part == OutputPart::LanguageModel)
        .collect();
    let mm: Vec<_> = seen
        .iter()
        .filter(|p| p.part == OutputPart::Projector)
        .collect();
    assert_eq!(lm.len(), written.language_model.tensors);
    assert_eq!(mm.len(), written.projector.tensors);
    assert_eq!(
        lm.last().map(|p| (p.done, p.total)),
        Some((lm.len(), lm.len()))
    );
}

fn copy_fixture(name: &str, to: &Path) -> PathBuf {
    let dst = to.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
    }
    dst
}

fn assert_nothing_written(out: &Path) {
    let left: Vec<_> = std::fs::read_dir(out)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a failed conversion left {left:?}");
}

#[test]
fn missing_shard_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = copy_fixture("imp-v1.5-2b-qwen1.5", tmp.path());
    std::fs::remove_file(src.join("model-00002-of-00002.safetensors")).unwrap();
    let out = tmp.path().join("out");
    let err = run(&src, &out, LmQuant::Q8_0, VisionQuant::F16, None).unwrap_err();
    assert!(
        matches!(err, ConvertError::MissingShard { ref shard, .. } if shard == "model-00002-of-00002.safetensors"),
        "{err:?}"
    );
    assert!(err.to_string().contains("model-00002-of-00002.safetensors"));
    assert_nothing_written(&out);
}

#[test]
fn unknown_model_type_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let src = copy_fixture("imp-v1.5-4b-phi3", tmp.path());
    let mut cfg = config(&src);
    cfg["model_type"] = "llava_llama".into();
    std::fs::write(src.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = tmp.path().join("out");
    let err = run(&src, &out, LmQuant::Q8_0, VisionQuant::F16, None).unwrap_err();
    assert!(
        matches!(err, ConvertError::UnknownModelType { ref found, .. } if found == "llava_llama"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("llava_llama") && message.contains("imp_phi3"),
        "{message}"
    );
    assert_nothing_written(&out);
}

#[test]
fn missing_tensor_and_missing_config_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run(
        tmp.path(),
        &tmp.path().join("out"),
        LmQuant::F16,
        VisionQuant::F16,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::MissingConfig { .. }), "{err:?}");

    // A config claiming more layers than the weights hold.
    let src = copy_fixture("imp-v1.5-4b-phi3", tmp.path());
    let mut cfg = config(&src);
    cfg["num_hidden_layers"] = 3.into();
    std::fs::write(src.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = tmp.path().join("out");
    let err = run(&src, &out, LmQuant::F16, VisionQuant::F16, None).unwrap_err();
    assert!(err.to_string().contains("model.layers.2."), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn unsupported_quant_names_list_the_choices() {
    let err = "Q3_K".parse::<LmQuant>().unwrap_err();
    assert!(matches!(err, ConvertError::UnsupportedQuant { .. }));
    assert!(
        err.to_string().contains("Q4_K_M") && err.to_string().contains("\"Q3_K\""),
        "{err}"
    );
    assert!("q4_0".parse::<VisionQuant>().is_err());
    for q in LmQuant::ALL {
        assert_eq!(q.name().parse::<LmQuant>().unwrap(), q);
    }
    assert_eq!("q4_k_m".parse::<LmQuant>().unwrap(), LmQuant::Q4KM);
    assert_eq!("f16".parse::<VisionQuant>().unwrap(), VisionQuant::F16);
}

#[test]
fn output_names_cannot_leave_the_output_folder() {
    let out = tempfile::tempdir().unwrap();
    let src = fixture("imp-v1.5-3b-196");
    for bad in ["../escape", "a/b", "", ".hidden"] {
        let err = run(&src, out.path(), LmQuant::F16, VisionQuant::F16, Some(bad)).unwrap_err();
        assert!(
            matches!(err, ConvertError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    assert_nothing_written(out.path());
}

#[test]
fn existing_outputs_are_kept_unless_overwrite() {
    let out = tempfile::tempdir().unwrap();
    let src = fixture("imp-v1.5-3b-196");
    let first = run(&src, out.path(), LmQuant::Q8_0, VisionQuant::F16, None).unwrap();
    let before = std::fs::read(&first.language_model.path).unwrap();
    let err = run(&src, out.path(), LmQuant::Q8_0, VisionQuant::F16, None).unwrap_err();
    assert!(matches!(err, ConvertError::OutputExists { .. }), "{err:?}");
    assert_eq!(std::fs::read(&first.language_model.path).unwrap(), before);
    let opts = ConvertOptions {
        lm: LmQuant::Q8_0,
        vision: VisionQuant::F16,
        name: None,
        overwrite: true,
    };
    convert(&src, out.path(), &opts, &mut |_| {}).unwrap();
}

#[test]
fn q4_k_m_and_k_quants_convert_with_fallbacks_recorded_in_the_file() {
    for lm in [LmQuant::Q4KM, LmQuant::Q5K, LmQuant::Q6K] {
        let out = tempfile::tempdir().unwrap();
        let written = run(
            &fixture("imp-v1.5-2b-qwen1.5"),
            out.path(),
            lm,
            VisionQuant::F16,
            None,
        )
        .unwrap();
        let (c, _) = read_gguf(&written.language_model.path);
        // hidden 48 and intermediate 128 are not multiples of 256: K-quants fall back to Q8_0 (48 % 32 ≠ 0 → F16).
        assert_eq!(
            c.tensor_infos["blk.0.ffn_down.weight"].ggml_dtype,
            GgmlDType::Q8_0
        );
        assert_eq!(
            c.tensor_infos["blk.0.attn_q.weight"].ggml_dtype,
            GgmlDType::F16
        );
        assert_eq!(
            c.tensor_infos["blk.0.attn_norm.weight"].ggml_dtype,
            GgmlDType::F32
        );
        assert_eq!(meta_u32(&c, "general.file_type"), lm.file_type());
        assert!(matches!(c.metadata["qwen2.rope.freq_base"], Value::F32(f) if f == 1e6));
    }
}
