//! Speed of the engine's own model code at Imp-3B shapes (Phi-2 2.7B + SigLIP-so400m at
//! 196 px), with random weights, to compare with llama.cpp on the same machine
//! (docs: shared/reference/perf-anchor.md).
//!
//! The language model is quantized in memory (a Q4_K_M-like mix, then Q4_0), written to a
//! temporary GGUF and read back through the engine's GGUF loader, exactly as a converted
//! model is. Values do not change speed, so one random matrix per shape is quantized and
//! written under every layer's name (each layer still gets its own copy in memory).
//!
//! `cargo run --release -p impchat-engine --example bench_shapes -- [threads] [runs]
//!  [--prompts 237,770] [--mix q4k|q4_0|all|none] [--no-vision] [--matmul] [--sweep]`
//!
//! `--matmul` also times single matmuls at Phi-2 shapes, candle's `QMatMul` against the
//! engine's `Linear` (which runs Q4_0 on our own kernel), in the same process; `--sweep`
//! (implied by `--matmul`) times only decode's matvecs over 32 layers of each format.
//! Every figure is printed with the load average, since the machine is shared.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::quantized::QMatMul;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Module;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use impchat_engine::gguf::{load_vision_tower, GgufFile};
use impchat_engine::linear::Linear;
use impchat_engine::lm::phi2::Phi2;
use impchat_engine::lm::{KvCache, LanguageModel};
use impchat_engine::projector::Projector;
use impchat_engine::vision::{VisionConfig, VisionTower};

const HIDDEN: usize = 2560;
const LAYERS: usize = 32;
const HEADS: usize = 32;
const MLP: usize = 10240;
const VOCAB: usize = 51200;
const DECODE_TOKENS: usize = 64;
/// Read-only memory bandwidth with 2 threads on a quiet host (perf-anchor.md).
const BANDWIDTH: f64 = 34e9;

struct Mix {
    name: &'static str,
    matrix: GgmlDType,
    output: GgmlDType,
}

struct Args {
    threads: usize,
    runs: usize,
    prompts: Vec<usize>,
    mix: String,
    vision: bool,
    matmul: bool,
    sweep: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        threads: 2,
        runs: 3,
        prompts: vec![237],
        mix: "all".into(),
        vision: true,
        matmul: false,
        sweep: false,
    };
    let mut positional = 0;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--prompts" => {
                let list = it.next().context("--prompts needs a list like 237,770")?;
                args.prompts = list
                    .split(',')
                    .map(|n| n.parse().context("--prompts takes token counts"))
                    .collect::<Result<_>>()?;
            }
            "--mix" => args.mix = it.next().context("--mix needs q4k, q4_0 or all")?,
            "--no-vision" => args.vision = false,
            "--matmul" => args.matmul = true,
            "--sweep" => args.sweep = true,
            n if positional == 0 => {
                args.threads = n.parse().context("threads must be a number")?;
                positional += 1;
            }
            n if positional == 1 => {
                args.runs = n.parse().context("runs must be a number")?;
                positional += 1;
            }
            other => anyhow::bail!("unexpected argument {other:?}"),
        }
    }
    Ok(args)
}

/// CPU seconds this process has used (user + system), from /proc/self/stat: on a shared
/// machine, wall time measures the neighbours too, CPU time mostly our own work.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted from the state field (3).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    println!(
        "threads {}, runs {}, prompts {:?}, decode {DECODE_TOKENS}",
        args.threads, args.runs, args.prompts
    );
    if args.vision {
        pool.install(|| bench_vision(args.runs))?;
    }
    if args.matmul {
        pool.install(|| bench_matmuls(args.runs, &args.prompts))?;
    }
    if args.matmul || args.sweep {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            pool.install(|| bench_decode_sweep(dtype, args.runs))?;
        }
    }
    let mixes = [
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
    ];
    for mix in mixes {
        let wanted = match args.mix.as_str() {
            "all" => true,
            "q4k" => mix.matrix == GgmlDType::Q4K,
            "q4_0" => mix.matrix == GgmlDType::Q4_0,
            "none" => false,
            other => anyhow::bail!("unknown --mix {other:?}; use q4k, q4_0, all or none"),
        };
        if !wanted {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("phi2-random.gguf");
        let started = Instant::now();
        let weight_bytes = write_phi2(&path, &mix)?;
        println!(
            "{}: wrote {} in {:.1} s",
            mix.name,
            path.display(),
            started.elapsed().as_secs_f64()
        );
        pool.install(|| bench_lm(&path, &mix, weight_bytes, &args))?;
    }
    Ok(())
}

/// One matmul per Phi-2 shape, candle's `QMatMul` against the engine's `Linear`.
fn bench_matmuls(runs: usize, prompts: &[usize]) -> Result<()> {
    let shapes = [
        ("qkv", HIDDEN, 3 * HIDDEN),
        ("fc1", HIDDEN, MLP),
        ("fc2", MLP, HIDDEN),
    ];
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::Q6K] {
        // Q4_K_M keeps the output head in Q6_K.
        let head = (dtype == GgmlDType::Q6K).then_some(("head", HIDDEN, VOCAB));
        for (name, k, n) in shapes.into_iter().chain(head) {
            let q = std::sync::Arc::new(random(n, k, dtype)?);
            let candle = QMatMul::from_arc(q.clone())?;
            let ours = Linear::from_qmatmul(QMatMul::from_arc(q)?, None);
            for &m in std::iter::once(&1).chain(prompts) {
                let x = Tensor::randn(0f32, 1.0, (1, m, k), &Device::Cpu)?;
                let time = |f: &dyn Fn() -> candle_core::Result<Tensor>| -> Result<f64> {
                    f()?;
                    let mut times = Vec::new();
                    for _ in 0..runs.max(3) {
                        let started = Instant::now();
                        f()?;
                        times.push(started.elapsed().as_secs_f64());
                    }
                    Ok(median(times))
                };
                let theirs = time(&|| candle.forward(&x))?;
                let mine = time(&|| ours.forward(&x))?;
                println!(
                    "matmul {dtype:?} {name} {k}->{n} m={m}: candle {:.2} ms, engine {:.2} ms ({:.2}x) [load {}]",
                    theirs * 1e3,
                    mine * 1e3,
                    theirs / mine,
                    loadavg()
                );
            }
        }
    }
    Ok(())
}

/// Layers in the decode sweep: 32 Phi-2 layers of Q4_K are 1.4 GB, far beyond any cache.
const SWEEP_LAYERS: usize = 32;

/// One decode step's matmuls (m = 1) over 32 different Phi-2-sized layers of `dtype`, so
/// the weights come from memory as in real decoding (one repeated matrix would sit in
/// L3): candle's `QMatMul` against the engine's `Linear` on the same `QTensor`s.
fn bench_decode_sweep(dtype: GgmlDType, runs: usize) -> Result<()> {
    use candle_core::quantized::ggml_file::qtensor_from_ggml;
    let shapes = [
        ("qkv", HIDDEN, 3 * HIDDEN),
        ("out", HIDDEN, HIDDEN),
        ("fc1", HIDDEN, MLP),
        ("fc2", MLP, HIDDEN),
    ];
    let mut layers: Vec<(Tensor, QMatMul, Linear)> = Vec::new();
    let mut bytes = 0;
    for (_, k, n) in shapes {
        let blocks = random(n, k, dtype)?.data()?.into_owned();
        let x = Tensor::randn(0f32, 1.0, (1, 1, k), &Device::Cpu)?;
        for _ in 0..SWEEP_LAYERS {
            // A copy per layer: values do not change speed, addresses do.
            let q =
                std::sync::Arc::new(qtensor_from_ggml(dtype, &blocks, vec![n, k], &Device::Cpu)?);
            bytes += blocks.len();
            let candle = QMatMul::from_arc(q.clone())?;
            let ours = Linear::from_qmatmul(QMatMul::from_arc(q)?, None);
            layers.push((x.clone(), candle, ours));
        }
    }
    let sweep = |ours: bool| -> Result<f64> {
        let started = Instant::now();
        for (x, candle, linear) in &layers {
            if ours {
                linear.forward(x)?;
            } else {
                candle.forward(x)?;
            }
        }
        Ok(started.elapsed().as_secs_f64())
    };
    sweep(false)?;
    sweep(true)?;
    let (mut theirs, mut mine) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(5) {
        theirs.push(sweep(false)?);
        mine.push(sweep(true)?);
    }
    let (theirs, mine) = (median(theirs), median(mine));
    println!(
        "matmul {dtype:?} decode sweep m=1 over {SWEEP_LAYERS} layers ({:.0} MB): candle {:.1} ms = {:.1} GB/s, \
         engine {:.1} ms = {:.1} GB/s ({:.2}x) [load {}]",
        bytes as f64 / 1e6,
        theirs * 1e3,
        bytes as f64 / theirs / 1e9,
        mine * 1e3,
        bytes as f64 / mine / 1e9,
        theirs / mine,
        loadavg()
    );
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The tower as the safetensors path builds it (dense f32, the reference), then as a GGUF
/// mmproj loads it (F16 file → linears on the Q8_0 kernel), both with the f32 projector.
fn bench_vision(runs: usize) -> Result<()> {
    let config = VisionConfig::siglip_so400m(196);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let dense = VisionTower::load(&config, vb.pp("tower"))?;
    let projector = Projector::load(config.hidden_size, HIDDEN, vb.pp("mm"))?;
    time_vision("f32 (safetensors path)", &dense, &projector, runs)?;
    drop(dense);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mmproj-random-f16.gguf");
    write_mmproj(&path, &config)?;
    let started = Instant::now();
    let q8 = load_vision_tower(&GgufFile::open(&path)?)?;
    println!(
        "vision Q8_0 tower loaded from an F16 mmproj in {:.1} s [load {}]",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    time_vision("Q8_0 (GGUF path)", &q8, &projector, runs)
}

fn time_vision(name: &str, tower: &VisionTower, projector: &Projector, runs: usize) -> Result<()> {
    let size = tower.config().image_size;
    let pixels = Tensor::randn(0f32, 0.5, (1, 3, size, size), &Device::Cpu)?;
    projector.forward(&tower.forward(&pixels)?)?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let features = projector.forward(&tower.forward(&pixels)?)?;
        features.dims3()?;
        times.push(started.elapsed().as_secs_f64());
    }
    println!(
        "vision {name}, {size} px ({} layers + projector): encode median {:.3} s, fastest {:.3} s \
         (llama.cpp F16: 0.65 s), tower weights {:.0} MB [load {}]",
        tower.config().num_layers,
        median(times.clone()),
        times.iter().copied().fold(f64::INFINITY, f64::min),
        tower.weight_bytes() as f64 / 1e6,
        loadavg()
    );
    Ok(())
}

/// An mmproj with llama.cpp's clip names and F16 matrices, as `impchat convert` writes it
/// (the projector is 2-layer at Phi-2's width); one random tensor per shape is written
/// under every layer's name.
fn write_mmproj(path: &std::path::Path, cfg: &VisionConfig) -> Result<()> {
    let (h, m, p) = (cfg.hidden_size, cfg.intermediate_size, cfg.patch_size);
    let f16 = |shape: &[usize]| -> Result<QTensor> {
        let t = Tensor::randn(0f32, 0.02, shape, &Device::Cpu)?;
        Ok(QTensor::quantize(&t, GgmlDType::F16)?)
    };
    let (patch, position) = (f16(&[h, 3, p, p])?, f16(&[cfg.num_patches(), h])?);
    let (square, up, down) = (f16(&[h, h])?, f16(&[m, h])?, f16(&[h, m])?);
    let (mm0, mm2) = (f16(&[HIDDEN, h])?, f16(&[HIDDEN, HIDDEN])?);
    let (ones, zeros) = (vector(h, 1.0)?, vector(h, 0.0)?);
    let (up_b, mm_b) = (vector(m, 0.0)?, vector(HIDDEN, 0.0)?);
    let mut names: Vec<(String, &QTensor)> = vec![
        ("v.patch_embd.weight".into(), &patch),
        ("v.patch_embd.bias".into(), &zeros),
        ("v.position_embd.weight".into(), &position),
        ("mm.0.weight".into(), &mm0),
        ("mm.0.bias".into(), &mm_b),
        ("mm.2.weight".into(), &mm2),
        ("mm.2.bias".into(), &mm_b),
    ];
    for i in 0..cfg.num_layers {
        let n = |part: &str| format!("v.blk.{i}.{part}");
        names.extend([
            (n("ln1.weight"), &ones),
            (n("ln1.bias"), &zeros),
            (n("ln2.weight"), &ones),
            (n("ln2.bias"), &zeros),
            (n("ffn_up.weight"), &up),
            (n("ffn_up.bias"), &up_b),
            (n("ffn_down.weight"), &down),
            (n("ffn_down.bias"), &zeros),
        ]);
        for proj in ["attn_q", "attn_k", "attn_v", "attn_out"] {
            names.push((n(&format!("{proj}.weight")), &square));
            names.push((n(&format!("{proj}.bias")), &zeros));
        }
    }
    let u = |v: usize| gguf_file::Value::U32(v as u32);
    let meta: Vec<(&str, gguf_file::Value)> = vec![
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
        (
            "clip.vision.attention.layer_norm_epsilon",
            gguf_file::Value::F32(cfg.layer_norm_eps as f32),
        ),
    ];
    let meta_refs: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    gguf_file::write(&mut file, &meta_refs, &tensors).context("writing the mmproj GGUF")?;
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

/// Writes the model and returns the weight bytes one decoded token reads (every matrix
/// but the embedding table, plus biases and norms).
fn write_phi2(path: &std::path::Path, mix: &Mix) -> Result<usize> {
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
    let bytes = |t: &QTensor| t.storage_size_in_bytes();
    let per_layer = bytes(&qkv)
        + bytes(&out)
        + bytes(&up)
        + bytes(&down)
        + bytes(&qkv_b)
        + bytes(&mlp_b)
        + 4 * bytes(&zeros);
    Ok(LAYERS * per_layer + bytes(&head) + bytes(&vocab_b) + 2 * bytes(&ones))
}

fn bench_lm(path: &std::path::Path, mix: &Mix, weight_bytes: usize, args: &Args) -> Result<()> {
    let started = Instant::now();
    let lm = Phi2::from_gguf(&mut GgufFile::open(path)?)?;
    let load = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let ids = Tensor::new(&[[1u32, 2]], &Device::Cpu)?;
    lm.forward_embeds_last(&lm.embed(&ids)?, &mut KvCache::new(LAYERS), 0)?;
    let warm = started.elapsed().as_secs_f64();
    println!("{}: load {load:.1} s, warm-up {warm:.1} s", mix.name);

    for &prompt_len in &args.prompts {
        let prompt = Tensor::randn(0f32, 0.02, (1, prompt_len, HIDDEN), &Device::Cpu)?;
        let (mut prefill, mut decode) = (Vec::new(), Vec::new());
        let (mut prefill_cpu, mut decode_cpu) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let mut cache = KvCache::new(LAYERS);
            let cpu = cpu_seconds();
            let started = Instant::now();
            let mut logits = lm.forward_embeds_last(&prompt, &mut cache, 0)?;
            prefill.push(started.elapsed().as_secs_f64());
            let cpu_mid = cpu_seconds();
            prefill_cpu.extend(cpu.zip(cpu_mid).map(|(a, b)| b - a));
            let started = Instant::now();
            for _ in 0..DECODE_TOKENS {
                let next = logits.argmax(0)?.to_scalar::<u32>()?;
                let embed = lm.embed(&Tensor::new(&[[next]], &Device::Cpu)?)?;
                let pos = cache.len();
                logits = lm.forward_embeds_last(&embed, &mut cache, pos)?;
            }
            decode.push(started.elapsed().as_secs_f64());
            decode_cpu.extend(cpu_mid.zip(cpu_seconds()).map(|(a, b)| b - a));
        }
        // Throughput if our threads had the cores to themselves: tokens per CPU second
        // times the thread count (optimistic where threads wait on each other).
        let uncontended = |tokens: f64, cpu: Vec<f64>| -> String {
            if cpu.is_empty() {
                return "n/a".into();
            }
            format!("{:.1}", tokens * args.threads as f64 / median(cpu))
        };
        let prefill_free = uncontended(prompt_len as f64, prefill_cpu);
        let decode_free = uncontended(DECODE_TOKENS as f64, decode_cpu);
        let prefill = median(prefill);
        let per_token = median(decode) / DECODE_TOKENS as f64;
        let bandwidth = weight_bytes as f64 / per_token;
        println!(
            "{}: threads {}, prefill {prompt_len} tok median {prefill:.2} s = {:.1} tok/s \
             (CPU-time estimate uncontended {prefill_free} tok/s) [load {}]",
            mix.name,
            args.threads,
            prompt_len as f64 / prefill,
            loadavg()
        );
        println!(
            "{}: threads {}, decode {DECODE_TOKENS} tok after {prompt_len} median {:.2} tok/s \
             (uncontended {decode_free}), {:.0} MB weights/token = {:.1} GB/s = {:.0}% of {:.0} GB/s [load {}]",
            mix.name,
            args.threads,
            1.0 / per_token,
            weight_bytes as f64 / 1e6,
            bandwidth / 1e9,
            100.0 * bandwidth / BANDWIDTH,
            BANDWIDTH / 1e9,
            loadavg()
        );
    }
    Ok(())
}
