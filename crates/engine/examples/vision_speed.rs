//! Times the real-size Imp vision tower (SigLIP-so400m, 26 kept layers) on random
//! weights, at 384 px (729 patches) and 196 px (196 patches).
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p impchat-engine --example vision_speed
//! ```
//! Optional arguments: image sizes to time (default `196 384`) and `--runs N` (default 3).

use std::collections::HashMap;
use std::error::Error;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use impchat_engine::projector::Projector;
use impchat_engine::vision::{VisionConfig, VisionTower};

/// Phi-2's hidden size: the projector Imp-3B feeds into.
const LM_HIDDEN: usize = 2560;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn random_weights(cfg: &VisionConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
    let (h, m, p) = (cfg.hidden_size, cfg.intermediate_size, cfg.patch_size);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.patch_embedding.weight".into(), vec![h, 3, p, p]),
        ("embeddings.patch_embedding.bias".into(), vec![h]),
        (
            "embeddings.position_embedding.weight".into(),
            vec![cfg.num_patches(), h],
        ),
        ("mm_projector.0.weight".into(), vec![LM_HIDDEN, h]),
        ("mm_projector.0.bias".into(), vec![LM_HIDDEN]),
        ("mm_projector.2.weight".into(), vec![LM_HIDDEN, LM_HIDDEN]),
        ("mm_projector.2.bias".into(), vec![LM_HIDDEN]),
    ];
    for i in 0..cfg.num_layers {
        let l = format!("encoder.layers.{i}");
        for norm in ["layer_norm1", "layer_norm2"] {
            shapes.push((format!("{l}.{norm}.weight"), vec![h]));
            shapes.push((format!("{l}.{norm}.bias"), vec![h]));
        }
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            shapes.push((format!("{l}.self_attn.{proj}.weight"), vec![h, h]));
            shapes.push((format!("{l}.self_attn.{proj}.bias"), vec![h]));
        }
        shapes.push((format!("{l}.mlp.fc1.weight"), vec![m, h]));
        shapes.push((format!("{l}.mlp.fc1.bias"), vec![m]));
        shapes.push((format!("{l}.mlp.fc2.weight"), vec![h, m]));
        shapes.push((format!("{l}.mlp.fc2.bias"), vec![h]));
    }
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let scale = 1.0 / (*shape.last().unwrap_or(&1) as f64).sqrt();
            Ok((name, (Tensor::randn(0f32, 1f32, shape, device)? * scale)?))
        })
        .collect()
}

fn main() -> Result<()> {
    let mut sizes = Vec::new();
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            runs = args.next().ok_or("--runs needs a number")?.parse()?;
        } else {
            sizes.push(
                arg.parse::<usize>()
                    .map_err(|e| format!("not an image size: {arg} ({e})"))?,
            );
        }
    }
    if sizes.is_empty() {
        sizes = vec![196, 384];
    }
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let device = Device::Cpu;
    println!("threads: {}", candle_core::utils::get_num_threads());
    for size in sizes {
        let cfg = VisionConfig::siglip_so400m(size);
        let weights = random_weights(&cfg, &device)?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let tower = VisionTower::load(&cfg, vb.clone())?;
        let projector = Projector::load(cfg.hidden_size, LM_HIDDEN, vb.pp("mm_projector"))?;
        let pixels = Tensor::rand(-1f32, 1f32, (1, 3, size, size), &device)?;
        let mut best = f64::INFINITY;
        let mut total = 0.0;
        for _ in 0..runs {
            let start = Instant::now();
            let features = tower.forward(&pixels)?;
            let tokens = projector.forward(&features)?;
            let elapsed = start.elapsed().as_secs_f64();
            if tokens.dims() != [1, cfg.num_patches(), LM_HIDDEN] {
                return Err(format!("unexpected output shape {:?}", tokens.dims()).into());
            }
            best = best.min(elapsed);
            total += elapsed;
        }
        println!(
            "{size} px ({} patches): best {best:.3} s, mean {:.3} s over {runs} runs (tower + projector, f32)",
            cfg.num_patches(),
            total / runs as f64
        );
    }
    Ok(())
}
