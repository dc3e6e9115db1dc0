//! Peak memory of loading a language-model GGUF and running one prefill, against the
//! file's size: what the memory-mapped loader costs at real model shapes.
//!
//! The file is written by one run and measured by another, so the peak (`VmHWM`) of the
//! measuring process holds only the load and the prefill:
//!
//! `cargo run --release -p impchat-engine --example load_rss -- write FILE [phi2|qwen2] [q4_0|q4k|q8_0]`
//! `cargo run --release -p impchat-engine --example load_rss -- measure FILE [prompt_tokens]`
//!
//! `write` makes a file with Imp's real shapes (Phi-2 2.7B or Qwen1.5-1.8B) and random
//! values; values do not change memory, so one quantized matrix per shape is written
//! under every layer's name.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use impchat_engine::gguf::GgufFile;
use impchat_engine::lm::phi2::Phi2;
use impchat_engine::lm::qwen2::Qwen2;
use impchat_engine::lm::{KvCache, LanguageModel};

struct Shapes {
    arch: &'static str,
    hidden: usize,
    layers: usize,
    heads: usize,
    mlp: usize,
    vocab: usize,
}

const PHI2: Shapes = Shapes {
    arch: "phi2",
    hidden: 2560,
    layers: 32,
    heads: 32,
    mlp: 10240,
    vocab: 51200,
};

const QWEN2: Shapes = Shapes {
    arch: "qwen2",
    hidden: 2048,
    layers: 24,
    heads: 16,
    mlp: 5504,
    vocab: 151_936,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["write", path, rest @ ..] => {
            let shapes = match rest.first().copied().unwrap_or("phi2") {
                "phi2" => PHI2,
                "qwen2" => QWEN2,
                other => bail!("unknown architecture {other:?} (phi2 or qwen2)"),
            };
            let dtype = match rest.get(1).copied().unwrap_or("q4_0") {
                "q4_0" => GgmlDType::Q4_0,
                "q4k" => GgmlDType::Q4K,
                "q8_0" => GgmlDType::Q8_0,
                other => bail!("unknown type {other:?} (q4_0, q4k or q8_0)"),
            };
            write(Path::new(path), &shapes, dtype)
        }
        ["measure", path, rest @ ..] => {
            let tokens = match rest.first() {
                Some(n) => n.parse().context("prompt_tokens must be a number")?,
                None => 237,
            };
            measure(Path::new(path), tokens)
        }
        _ => bail!("usage: load_rss write FILE [phi2|qwen2] [q4_0|q4k|q8_0] | load_rss measure FILE [prompt_tokens]"),
    }
}

/// Random values in `dtype`, or in Q8_0 where the row width is not a whole number of
/// `dtype`'s blocks (as the converter does: Qwen's 5504-wide `ffn_down` under Q4_K).
fn random(shape: (usize, usize), dtype: GgmlDType) -> Result<QTensor> {
    let dtype = if shape.1.is_multiple_of(dtype.block_size()) {
        dtype
    } else {
        GgmlDType::Q8_0
    };
    let t = Tensor::randn(0f32, 0.02, shape, &Device::Cpu)?;
    Ok(QTensor::quantize(&t, dtype)?)
}

fn vector(len: usize, value: f32) -> Result<QTensor> {
    let t = Tensor::full(value, len, &Device::Cpu)?;
    Ok(QTensor::quantize(&t, GgmlDType::F32)?)
}

fn write(path: &Path, s: &Shapes, dtype: GgmlDType) -> Result<()> {
    let (h, ff) = (s.hidden, s.mlp);
    let mut shared: HashMap<&str, QTensor> = HashMap::new();
    shared.insert("embd", random((s.vocab, h), dtype)?);
    shared.insert("output", random((s.vocab, h), GgmlDType::Q6K)?);
    shared.insert("norm", vector(h, 1.0)?);
    shared.insert("bias_h", vector(h, 0.0)?);
    shared.insert("hh", random((h, h), dtype)?);
    shared.insert("up", random((ff, h), dtype)?);
    shared.insert("down", random((h, ff), dtype)?);
    match s.arch {
        "phi2" => {
            shared.insert("qkv", random((3 * h, h), dtype)?);
            shared.insert("bias_qkv", vector(3 * h, 0.0)?);
            shared.insert("bias_ff", vector(ff, 0.0)?);
            shared.insert("bias_vocab", vector(s.vocab, 0.0)?);
        }
        _ => {
            shared.insert("gate", random((ff, h), dtype)?);
        }
    }
    let mut names: Vec<(String, &str)> = vec![
        ("token_embd.weight".into(), "embd"),
        ("output.weight".into(), "output"),
        ("output_norm.weight".into(), "norm"),
    ];
    for i in 0..s.layers {
        let n = |part: &str| format!("blk.{i}.{part}");
        names.push((n("attn_norm.weight"), "norm"));
        names.push((n("attn_output.weight"), "hh"));
        names.push((n("ffn_up.weight"), "up"));
        names.push((n("ffn_down.weight"), "down"));
        if s.arch == "phi2" {
            names.push((n("attn_norm.bias"), "bias_h"));
            names.push((n("attn_qkv.weight"), "qkv"));
            names.push((n("attn_qkv.bias"), "bias_qkv"));
            names.push((n("attn_output.bias"), "bias_h"));
            names.push((n("ffn_up.bias"), "bias_ff"));
            names.push((n("ffn_down.bias"), "bias_h"));
        } else {
            for part in ["attn_q", "attn_k", "attn_v"] {
                names.push((n(&format!("{part}.weight")), "hh"));
                names.push((n(&format!("{part}.bias")), "bias_h"));
            }
            names.push((n("ffn_norm.weight"), "norm"));
            names.push((n("ffn_gate.weight"), "gate"));
        }
    }
    if s.arch == "phi2" {
        names.push(("output_norm.bias".into(), "bias_h"));
        names.push(("output.bias".into(), "bias_vocab"));
    }
    let arch = s.arch;
    let key = |k: &str| format!("{arch}.{k}");
    let u = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (key("context_length"), u(2048)),
        (key("embedding_length"), u(h)),
        (key("feed_forward_length"), u(ff)),
        (key("block_count"), u(s.layers)),
        (key("attention.head_count"), u(s.heads)),
        (key("attention.head_count_kv"), u(s.heads)),
        (key("rope.freq_base"), Value::F32(10_000.0)),
    ];
    if arch == "phi2" {
        meta.push((key("rope.dimension_count"), u(32)));
        meta.push((key("attention.layer_norm_epsilon"), Value::F32(1e-5)));
    } else {
        meta.push((key("rope.dimension_count"), u(h / s.heads)));
        meta.push((key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = names
        .iter()
        .map(|(name, which)| Ok((name.as_str(), shared.get(which).context("shape")?)))
        .collect::<Result<_>>()?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    gguf_file::write(&mut file, &meta_refs, &tensors)?;
    println!("wrote {} ({:.2} GB)", path.display(), file_gb(path)?);
    Ok(())
}

fn file_gb(path: &Path) -> Result<f64> {
    Ok(std::fs::metadata(path)?.len() as f64 / 1e9)
}

/// `VmHWM`, `VmRSS`, `RssAnon` and `RssFile` of this process, in GB.
fn memory() -> Result<String> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb * 1024.0 / 1e9)
    };
    Ok(format!(
        "peak {:.2} GB, now {:.2} GB (anonymous {:.2}, file-backed {:.2})",
        field("VmHWM:"),
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:")
    ))
}

fn measure(path: &Path, tokens: usize) -> Result<()> {
    let started = Instant::now();
    let mut file = GgufFile::open(path)?;
    let lm: Box<dyn LanguageModel> = match file.architecture()? {
        "phi2" => Box::new(Phi2::from_gguf(&mut file)?),
        "qwen2" => Box::new(Qwen2::from_gguf(&file)?),
        other => bail!("this example reads phi2 or qwen2 files, not {other}"),
    };
    drop(file);
    let load_s = started.elapsed().as_secs_f64();
    println!("file {:.2} GB, loaded in {load_s:.1} s", file_gb(path)?);
    println!("after load:    {}", memory()?);

    let started = Instant::now();
    let ids: Vec<u32> = (0..tokens as u32).map(|i| i % 1000).collect();
    let ids = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let mut cache = KvCache::new(lm.num_layers());
    lm.forward_embeds_last(&lm.embed(&ids)?, &mut cache, 0)?;
    println!(
        "after prefill: {} ({tokens} tokens in {:.1} s)",
        memory()?,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
