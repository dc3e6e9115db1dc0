//! The vision tower loaded from a GGUF mmproj runs its linears on the Q8_0 kernel and
//! stays close to the f32 tower of the same checkpoint on the fixture images.

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use impchat_convert::{convert, ConvertOptions, LmQuant, VisionQuant};
use impchat_engine::gguf::{load_vision_tower, GgufFile};
use impchat_engine::vision::{VisionConfig, VisionTower};

/// Relative L2 error of the Q8_0 tower's features against the f32 tower's. Measured
/// 0.0024–0.0030 on these fixtures (int8 weights and activations in every linear of
/// every layer); 1% leaves room for a different summation order, not for a wrong kernel
/// (a misplaced block or lost scale gives errors near 100%).
const MAX_RELATIVE_L2: f32 = 0.01;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn f32_tower(checkpoint: &Path) -> VisionTower {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint.join("config.json")).unwrap())
            .unwrap();
    let mut shards: Vec<PathBuf> = std::fs::read_dir(checkpoint)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    // SAFETY: the fixture files are committed and not modified while the test runs.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&shards, DType::F32, &Device::Cpu) }.unwrap();
    let cfg = VisionConfig::from_imp_config(&config).unwrap();
    VisionTower::load(&cfg, vb.pp("model.vision_tower.vision_tower.vision_model")).unwrap()
}

fn relative_l2(got: &Tensor, want: &Tensor) -> f32 {
    let diff = (got - want).unwrap().sqr().unwrap().sum_all().unwrap();
    let norm = want.sqr().unwrap().sum_all().unwrap();
    (diff.to_scalar::<f32>().unwrap() / norm.to_scalar::<f32>().unwrap()).sqrt()
}

#[test]
fn q8_0_tower_features_stay_within_one_percent_of_the_f32_tower() {
    for (checkpoint, reference) in [
        ("imp-v1.5-3b-phi2", "imp-v1-3b"),
        ("imp-v1.5-3b-196", "imp-v1.5-3b-196"),
    ] {
        let folder = fixtures().join("models").join(checkpoint);
        let dir = tempfile::tempdir().unwrap();
        let opts = ConvertOptions {
            lm: LmQuant::F16,
            vision: VisionQuant::F16,
            name: None,
            overwrite: false,
        };
        let out = convert(&folder, dir.path(), &opts, &mut |_| {}).unwrap();
        let mmproj = GgufFile::open(&out.projector.path).unwrap();
        let q8 = load_vision_tower(&mmproj).unwrap();
        let f32 = f32_tower(&folder);
        // (The file stores layer_norm_eps as f32, so the configs differ in its last bits.)
        assert_eq!(
            (q8.config().num_layers, q8.config().num_patches()),
            (f32.config().num_layers, f32.config().num_patches())
        );
        // At these tiny widths (24, 56) padding to 16-row groups and 32-value blocks eats
        // most of the 4x saving, but the linears still are not f32.
        assert!(
            q8.weight_bytes() < f32.weight_bytes(),
            "{checkpoint}: the Q8_0 tower holds {} bytes, the f32 one {}",
            q8.weight_bytes(),
            f32.weight_bytes()
        );

        let want = candle_core::safetensors::load(
            fixtures()
                .join("reference")
                .join(format!("{reference}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        for image in ["shapes", "receipt"] {
            let pixels = &want[&format!("{image}.pixel_values")];
            let got = q8.forward(pixels).unwrap();
            let expected = f32.forward(pixels).unwrap();
            let error = relative_l2(&got, &expected);
            eprintln!("{checkpoint}/{image}: relative L2 {error:.5}");
            assert!(
                error <= MAX_RELATIVE_L2,
                "{checkpoint}/{image}: Q8_0 features are off by {error} (relative L2)"
            );
        }
    }
}

#[test]
fn a_language_model_file_is_not_taken_for_a_vision_tower() {
    let folder = fixtures().join("models").join("imp-v1.5-3b-phi2");
    let dir = tempfile::tempdir().unwrap();
    let opts = ConvertOptions {
        lm: LmQuant::F16,
        vision: VisionQuant::F16,
        name: None,
        overwrite: false,
    };
    let out = convert(&folder, dir.path(), &opts, &mut |_| {}).unwrap();
    let lm = GgufFile::open(&out.language_model.path).unwrap();
    let err = load_vision_tower(&lm).unwrap_err().to_string();
    assert!(err.contains("phi2"), "{err}");
}

/// An mmproj whose linears are stored as Q8_0 (widths that are whole blocks) is read as
/// stored and computes what the f32 tower computes on the same dequantized weights.
#[test]
fn q8_0_weights_in_the_file_run_as_stored() {
    let cfg = VisionConfig {
        hidden_size: 64,
        intermediate_size: 96,
        num_attention_heads: 4,
        num_layers: 2,
        image_size: 56,
        patch_size: 14,
        layer_norm_eps: 1e-6,
        hidden_act: impchat_engine::vision::VisionAct::GeluTanh,
    };
    let (h, m, p) = (cfg.hidden_size, cfg.intermediate_size, cfg.patch_size);
    let device = Device::Cpu;
    let random = |shape: &[usize], dtype: GgmlDType| {
        let t = (Tensor::randn(0f32, 1f32, shape, &device).unwrap()
            / (*shape.last().unwrap() as f64).sqrt())
        .unwrap();
        QTensor::quantize(&t, dtype).unwrap()
    };
    // (clip name, Hugging Face name, tensor)
    let mut tensors: Vec<(String, String, QTensor)> = vec![
        (
            "v.patch_embd.weight".into(),
            "embeddings.patch_embedding.weight".into(),
            random(&[h, 3, p, p], GgmlDType::F32),
        ),
        (
            "v.patch_embd.bias".into(),
            "embeddings.patch_embedding.bias".into(),
            random(&[h], GgmlDType::F32),
        ),
        (
            "v.position_embd.weight".into(),
            "embeddings.position_embedding.weight".into(),
            random(&[cfg.num_patches(), h], GgmlDType::F32),
        ),
    ];
    for i in 0..cfg.num_layers {
        let parts = [
            ("ln1", "layer_norm1", None),
            ("ln2", "layer_norm2", None),
            ("attn_q", "self_attn.q_proj", Some((h, h))),
            ("attn_k", "self_attn.k_proj", Some((h, h))),
            ("attn_v", "self_attn.v_proj", Some((h, h))),
            ("attn_out", "self_attn.out_proj", Some((h, h))),
            ("ffn_up", "mlp.fc1", Some((m, h))),
            ("ffn_down", "mlp.fc2", Some((h, m))),
        ];
        for (clip, hf, matrix) in parts {
            let (clip, hf) = (
                format!("v.blk.{i}.{clip}"),
                format!("encoder.layers.{i}.{hf}"),
            );
            let (weight, bias_len) = match matrix {
                Some((out, inp)) => (random(&[out, inp], GgmlDType::Q8_0), out),
                None => (random(&[h], GgmlDType::F32), h),
            };
            tensors.push((format!("{clip}.weight"), format!("{hf}.weight"), weight));
            let bias = random(&[bias_len], GgmlDType::F32);
            tensors.push((format!("{clip}.bias"), format!("{hf}.bias"), bias));
        }
    }
    let u = |v: usize| gguf_file::Value::U32(v as u32);
    let meta = [
        (
            "general.architecture",
            gguf_file::Value::String("clip".into()),
        ),
        ("clip.vision.embedding_length", u(h)),
        ("clip.vision.feed_forward_length", u(m)),
        (
            "clip.vision.attention.head_count",
            u(cfg.num_attention_heads),
        ),
        ("clip.vision.block_count", u(cfg.num_layers)),
        ("clip.vision.image_size", u(cfg.image_size)),
        ("clip.vision.patch_size", u(p)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mmproj-q8.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut file,
        &meta.iter().map(|(k, v)| (*k, v)).collect::<Vec<_>>(),
        &tensors
            .iter()
            .map(|(clip, _, t)| (clip.as_str(), t))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    drop(file);

    let q8 = load_vision_tower(&GgufFile::open(&path).unwrap()).unwrap();
    let dense: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(_, hf, t)| (hf.clone(), t.dequantize(&device).unwrap()))
        .collect();
    let f32 =
        VisionTower::load(&cfg, VarBuilder::from_tensors(dense, DType::F32, &device)).unwrap();

    let pixels = Tensor::rand(-1f32, 1f32, (2, 3, 56, 56), &device).unwrap();
    let error = relative_l2(
        &q8.forward(&pixels).unwrap(),
        &f32.forward(&pixels).unwrap(),
    );
    eprintln!("Q8_0 file: relative L2 {error:.5}");
    assert!(error <= MAX_RELATIVE_L2, "off by {error} (relative L2)");
}
