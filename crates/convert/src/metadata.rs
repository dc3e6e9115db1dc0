//! GGUF metadata: llama.cpp's keys for the language model (`{arch}.*`) and for clip
//! (`clip.*`), plus Imp's own settings under `imp.*` in both files.

use candle_core::quantized::gguf_file::Value;
use impchat_input::ChatTemplate;

use crate::config::{Family, ModelConfig};
use crate::options::{LmQuant, VisionQuant};

type Meta = Vec<(String, Value)>;

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn u(v: usize) -> Value {
    Value::U32(v as u32)
}

fn template_for(family: Family) -> ChatTemplate {
    match family {
        Family::Phi2 => ChatTemplate::Phi2,
        Family::Qwen2 => ChatTemplate::ChatMl,
        Family::Phi3 => ChatTemplate::Phi3,
    }
}

/// `general.*` and `{arch}.*` for the language model, in llama.cpp's key names.
pub fn lm_metadata(config: &ModelConfig, name: &str, quant: LmQuant) -> Meta {
    let arch = config.family.arch();
    let c = &config.lm;
    let mut meta: Meta = vec![
        ("general.architecture".into(), s(arch)),
        ("general.name".into(), s(name)),
        ("general.file_type".into(), Value::U32(quant.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        (format!("{arch}.context_length"), u(c.context)),
        (format!("{arch}.embedding_length"), u(c.hidden)),
        (format!("{arch}.feed_forward_length"), u(c.intermediate)),
        (format!("{arch}.block_count"), u(c.layers)),
        (format!("{arch}.attention.head_count"), u(c.heads)),
        (format!("{arch}.attention.head_count_kv"), u(c.kv_heads)),
        (format!("{arch}.rope.dimension_count"), u(c.rotary_dims)),
        (format!("{arch}.rope.freq_base"), Value::F32(c.rope_theta)),
    ];
    let eps_key = match config.family {
        Family::Phi2 => "attention.layer_norm_epsilon",
        Family::Qwen2 | Family::Phi3 => "attention.layer_norm_rms_epsilon",
    };
    meta.push((format!("{arch}.{eps_key}"), Value::F32(c.norm_eps)));
    if config.family == Family::Phi3 {
        meta.push((
            format!("{arch}.rope.scaling.original_context_length"),
            u(c.context),
        ));
    }
    if let Some(window) = c.sliding_window {
        meta.push((format!("{arch}.attention.sliding_window"), u(window)));
    }
    meta
}

/// A Jinja chat template rendering exactly Imp's prompt format (`imp_llava/conversation.py`),
/// with Imp's system prompt when the conversation has none.
pub fn chat_template(family: Family) -> String {
    let template = template_for(family);
    let system = template
        .default_system()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let head = format!(
        "{{%- if messages and messages[0]['role'] == 'system' -%}}{{%- set system = messages[0]['content'] -%}}\
{{%- set loop_messages = messages[1:] -%}}{{%- else -%}}{{%- set system = \"{system}\" -%}}\
{{%- set loop_messages = messages -%}}{{%- endif -%}}"
    );
    let body = match family {
        Family::Phi2 => "{{ system + ' ' }}{%- for message in loop_messages -%}{%- if message['role'] == 'user' -%}\
{{ 'USER: ' + message['content'] + ' ' }}{%- else -%}{{ 'ASSISTANT: ' + message['content'] + '</s>' }}{%- endif -%}\
{%- endfor -%}{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}",
        Family::Qwen2 => "{{ '<|im_start|>system\\n' + system + '<|im_end|>\\n' }}{%- for message in loop_messages -%}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}",
        Family::Phi3 => "{{ '<|system|>\\n' + system + '<|end|>\\n' }}{%- for message in loop_messages -%}\
{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}",
    };
    format!("{head}{body}")
}

/// Imp's own settings, the same in both files: what a runtime needs beyond llama.cpp's keys.
pub fn imp_metadata(config: &ModelConfig) -> Meta {
    let template = template_for(config.family);
    let template_name = match template {
        ChatTemplate::Phi2 => "phi2",
        ChatTemplate::ChatMl => "chatml",
        ChatTemplate::Phi3 => "phi3",
    };
    let v = &config.vision;
    let stops = template.stop_strings().iter().map(|t| s(t)).collect();
    vec![
        ("imp.model_type".into(), s(config.family.model_type())),
        ("imp.prompt_template".into(), s(template_name)),
        (
            "imp.default_system_prompt".into(),
            s(template.default_system()),
        ),
        ("imp.stop_strings".into(), Value::Array(stops)),
        ("imp.image_token".into(), s(&v.image_token)),
        ("imp.image_size".into(), u(v.image_size)),
        ("imp.image_aspect_ratio".into(), s(&v.aspect_ratio)),
        ("imp.visual_tokens".into(), u(v.visual_tokens())),
        ("imp.vision_layers".into(), u(v.layers)),
        ("imp.projector_type".into(), s(&v.projector_type)),
        // llama.cpp's llava graph applies tanh-GELU between mm.0 and mm.2; Imp was trained with erf-GELU.
        ("imp.projector_gelu".into(), s("erf")),
    ]
}

/// `general.*` and `clip.*` for the vision tower + projector, in llama.cpp's clip key names.
pub fn mmproj_metadata(config: &ModelConfig, name: &str, quant: VisionQuant) -> Meta {
    let v = &config.vision;
    let half = Value::Array(vec![Value::F32(0.5); 3]);
    vec![
        ("general.architecture".into(), s("clip")),
        (
            "general.name".into(),
            s(&format!("{name} vision tower and projector")),
        ),
        (
            "general.description".into(),
            s("SigLIP vision encoder (Imp-truncated, no post-layernorm) and mlp2x_gelu projector"),
        ),
        ("general.file_type".into(), Value::U32(quant.file_type())),
        ("clip.has_vision_encoder".into(), Value::Bool(true)),
        ("clip.has_text_encoder".into(), Value::Bool(false)),
        ("clip.has_llava_projector".into(), Value::Bool(true)),
        ("clip.projector_type".into(), s("mlp")),
        ("clip.use_gelu".into(), Value::Bool(true)),
        ("clip.vision.image_size".into(), u(v.image_size)),
        ("clip.vision.patch_size".into(), u(v.patch_size)),
        ("clip.vision.embedding_length".into(), u(v.hidden)),
        ("clip.vision.feed_forward_length".into(), u(v.intermediate)),
        ("clip.vision.block_count".into(), u(v.layers)),
        ("clip.vision.attention.head_count".into(), u(v.heads)),
        (
            "clip.vision.attention.layer_norm_epsilon".into(),
            Value::F32(v.norm_eps),
        ),
        ("clip.vision.projection_dim".into(), u(config.lm.hidden)),
        // llama.cpp's llava graph stops one layer short of block_count unless told which
        // layer to take; Imp's checkpoints already hold only the layers it runs.
        (
            "clip.vision.feature_layer".into(),
            Value::Array(vec![Value::I32(v.layers as i32)]),
        ),
        ("clip.vision.image_mean".into(), half.clone()),
        ("clip.vision.image_std".into(), half),
    ]
}
