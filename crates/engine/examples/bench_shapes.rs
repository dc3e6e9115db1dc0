//! Speed of the engine's own model code at Imp-3B shapes (Phi-2 2.7B + SigLIP-so400m at
//! 196 px), with random weights, to compare with llama.cpp on the same machine
//! (docs: shared/reference/perf-anchor.md).
//!
//! The language model is quantized in memory (a Q4_K_M-like mix, then Q4_0), written to a
//! temporary GGUF and read back through the engine's GGUF loader, exactly as a converted
//! model is. Values do not change speed, so one random matrix per shape is quantized and
//! written under every layer's name (each layer still gets its own copy in memory).
//!
//! `cargo run --release -p impchat-engine --example bench_shapes -- [threads] [runs]`

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use impchat_engine::gguf::GgufFile;
use impchat_engine::lm::phi2::Phi2;
use impchat_engine::lm::{KvCache, LanguageModel};
use impchat_engine::projector::Projector;
use impchat_engine::vision::{VisionConfig, VisionTower};

const HIDDEN: usize = 2560;
const LAYERS: usize = 32;
const HEADS: usize = 32;
const MLP: usize = 10240;
const VOCAB: usize = 51200;
const IMAGE_TOKENS: usize = 196;
const TEXT_TOKENS: usize = 41;
const DECODE_TOKENS: usize = 64;

struct Mix {
    name: &'static str,
    matrix: GgmlDType,
    output: GgmlDType,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    println!("threads {threads}, runs {runs}, prompt {IMAGE_TOKENS} image + {TEXT_TOKENS} text tokens, decode {DECODE_TOKENS}");
    pool.install(|| bench_vision(runs))?;
    for mix in [
        Mix {
            name: "Q4_K (Q6_K output)",
            matrix: GgmlDType::Q4K,
            output: GgmlDType::Q6K,
        },
        Mix {
            name: "Q4_0 (Q6_K output)",
            matrix: GgmlDType::Q4_0,
            output: GgmlDType::Q6K,
        },
    ] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("phi2-random.gguf");
        let started = Instant::now();
        write_phi2(&path, &mix)?;
        println!(
            "{}: wrote {} in {:.1} s",
            mix.name,
            path.display(),
            started.elapsed().as_secs_f64()
        );
        pool.install(|| bench_lm(&path, &mix, runs))?;
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn bench_vision(runs: usize) -> Result<()> {
    let config = VisionConfig::siglip_so400m(196);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let tower = VisionTower::load(&config, vb.pp("tower"))?;
    let projector = Projector::load(config.hidden_size, HIDDEN, vb.pp("mm"))?;
    let pixels = Tensor::randn(0f32, 0.5, (1, 3, 196, 196), &Device::Cpu)?;
    projector.forward(&tower.forward(&pixels)?)?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let features = projector.forward(&tower.forward(&pixels)?)?;
        features.dims3()?;
        times.push(started.elapsed().as_secs_f64());
    }
    println!(
        "vision f32, 196 px ({} layers + projector): encode median {:.2} s (llama.cpp F16: 0.95 s)",
        config.num_layers,
        median(times)
    );
    Ok(())
}

fn random(rows: usize, cols: usize, dtype: GgmlDType) -> Result<QTensor> {
    let t = Tensor::randn(0f32, 0.02, (rows, cols), &Device::Cpu)?;
    Ok(QTensor::quantize(&t, dtype)?)
}

fn vector(len: usize, value: f32) -> Result<QTensor> {
    let t = Tensor::full(value, len, &Device::Cpu)?;
    Ok(QTensor::quantize(&t, GgmlDType::F32)?)
}

fn write_phi2(path: &std::path::Path, mix: &Mix) -> Result<()> {
    let qkv = random(3 * HIDDEN, HIDDEN, mix.matrix)?;
    let out = random(HIDDEN, HIDDEN, mix.matrix)?;
    let up = random(MLP, HIDDEN, mix.matrix)?;
    let down = random(HIDDEN, MLP, mix.matrix)?;
    let embd = random(VOCAB, HIDDEN, mix.matrix)?;
    let head = random(VOCAB, HIDDEN, mix.output)?;
    let (ones, zeros) = (vector(HIDDEN, 1.0)?, vector(HIDDEN, 0.0)?);
    let (qkv_b, mlp_b, vocab_b) = (
        vector(3 * HIDDEN, 0.0)?,
        vector(MLP, 0.0)?,
        vector(VOCAB, 0.0)?,
    );

    let mut names: Vec<(String, &QTensor)> = vec![
        ("token_embd.weight".into(), &embd),
        ("output_norm.weight".into(), &ones),
        ("output_norm.bias".into(), &zeros),
        ("output.weight".into(), &head),
        ("output.bias".into(), &vocab_b),
    ];
    for i in 0..LAYERS {
        let n = |p: &str| format!("blk.{i}.{p}");
        names.extend([
            (n("attn_norm.weight"), &ones),
            (n("attn_norm.bias"), &zeros),
            (n("attn_qkv.weight"), &qkv),
            (n("attn_qkv.bias"), &qkv_b),
            (n("attn_output.weight"), &out),
            (n("attn_output.bias"), &zeros),
            (n("ffn_up.weight"), &up),
            (n("ffn_up.bias"), &mlp_b),
            (n("ffn_down.weight"), &down),
            (n("ffn_down.bias"), &zeros),
        ]);
    }
    let u = gguf_file::Value::U32;
    let meta: Vec<(&str, gguf_file::Value)> = vec![
        (
            "general.architecture",
            gguf_file::Value::String("phi2".into()),
        ),
        ("phi2.context_length", u(2048)),
        ("phi2.embedding_length", u(HIDDEN as u32)),
        ("phi2.feed_forward_length", u(MLP as u32)),
        ("phi2.block_count", u(LAYERS as u32)),
        ("phi2.attention.head_count", u(HEADS as u32)),
        ("phi2.attention.head_count_kv", u(HEADS as u32)),
        ("phi2.rope.dimension_count", u(32)),
        (
            "phi2.attention.layer_norm_epsilon",
            gguf_file::Value::F32(1e-5),
        ),
    ];
    let meta_refs: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    gguf_file::write(&mut file, &meta_refs, &tensors).context("writing the GGUF")?;
    Ok(())
}

fn bench_lm(path: &std::path::Path, mix: &Mix, runs: usize) -> Result<()> {
    let started = Instant::now();
    let lm = Phi2::from_gguf(&mut GgufFile::open(path)?)?;
    let load = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let ids = Tensor::new(&[[1u32, 2]], &Device::Cpu)?;
    lm.forward_embeds_last(&lm.embed(&ids)?, &mut KvCache::new(LAYERS), 0)?;
    let warm = started.elapsed().as_secs_f64();

    let prompt = Tensor::randn(
        0f32,
        0.02,
        (1, IMAGE_TOKENS + TEXT_TOKENS, HIDDEN),
        &Device::Cpu,
    )?;
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut cache = KvCache::new(LAYERS);
        let started = Instant::now();
        let mut logits = lm.forward_embeds_last(&prompt, &mut cache, 0)?;
        prefill.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for _ in 0..DECODE_TOKENS {
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            let embed = lm.embed(&Tensor::new(&[[next]], &Device::Cpu)?)?;
            let pos = cache.len();
            logits = lm.forward_embeds_last(&embed, &mut cache, pos)?;
        }
        decode.push(started.elapsed().as_secs_f64());
    }
    let prompt_len = (IMAGE_TOKENS + TEXT_TOKENS) as f64;
    println!(
        "{}: load {load:.1} s, warm-up {warm:.1} s, prefill {} tok median {:.2} s = {:.1} tok/s, decode {DECODE_TOKENS} tok median {:.2} tok/s",
        mix.name,
        IMAGE_TOKENS + TEXT_TOKENS,
        median(prefill.clone()),
        prompt_len / median(prefill),
        DECODE_TOKENS as f64 / median(decode),
    );
    Ok(())
}
