//! The vision tower loaded from a GGUF mmproj runs its linears on the Q8_0 kernel and
//! stays close to the f32 tower of the same checkpoint on the fixture images.

use std::path::{Path, PathBuf};

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
