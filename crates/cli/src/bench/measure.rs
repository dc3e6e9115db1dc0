//! The timed part: the Imp paper's deployment protocol (Table 4: one image, 41 prompt
//! tokens, 64 generated tokens) through the same public engine API the app uses.

use std::io::Cursor;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use image::{ImageFormat, Rgb, RgbImage};
use impchat_engine::model::IMAGE_TOKEN_INDEX;
use impchat_engine::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, ImageBytes,
    LoadOptions, Model, StopReason,
};

use super::report::{median, ImageFigures, LongDecode, Samples};

/// The test picture's size: a typical phone-photo aspect, larger than either tower input,
/// so every encode includes a real downscale.
pub const IMAGE_WIDTH: u32 = 640;
pub const IMAGE_HEIGHT: u32 = 480;

/// The first question is the longest prefix of this that gives the wanted prompt length.
const QUESTION_SOURCE: &str = "Describe this photo in detail: which objects are in it, what \
     colours and shapes do you see, where might it have been taken, what time of day is it, \
     what is happening in the scene right now, and what might happen next?";
const FOLLOW_UP: &str = "Which colour covers most of the picture?";

/// What one benchmark asks for.
#[derive(Debug, Clone)]
pub struct Protocol {
    pub threads: usize,
    pub runs: usize,
    pub text_tokens: usize,
    pub generated_tokens: usize,
    pub long_tokens: usize,
    pub long_runs: usize,
}

/// A deterministic photo-like test picture as PNG: smooth gradients, a few shapes and
/// pixel noise (so PNG cannot shrink it to nothing and decoding costs what a photo costs).
pub fn test_image_png() -> Result<Vec<u8>> {
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    let image = RgbImage::from_fn(IMAGE_WIDTH, IMAGE_HEIGHT, |x, y| {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        let jitter = (noise & 0x0f) as u32;
        let (cx, cy) = (x as i64 - 420, y as i64 - 200);
        let in_circle = cx * cx + cy * cy < 110 * 110;
        let in_box = (80..260).contains(&x) && (260..420).contains(&y);
        let base = if in_circle {
            [230, 180, 40]
        } else if in_box {
            [40, 90, 200]
        } else {
            [
                40 + x * 120 / IMAGE_WIDTH,
                120 + y * 100 / IMAGE_HEIGHT,
                200 - y * 120 / IMAGE_HEIGHT,
            ]
        };
        Rgb(base.map(|c| (c + jitter).min(255) as u8))
    });
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .context("cannot encode the test image")?;
    Ok(png)
}

fn load(lm: &Path, mmproj: &Path, threads: usize) -> Result<(Model, f64)> {
    let started = Instant::now();
    let options = LoadOptions {
        threads: Some(threads),
        ..LoadOptions::default()
    };
    let model = Model::load_gguf(lm, Some(mmproj), &options)
        .with_context(|| format!("cannot load {} with {}", lm.display(), mmproj.display()))?;
    Ok((model, ms_since(started)))
}

fn first_question(question: &str, image: &ImageBytes, max_new_tokens: usize) -> GenerateRequest {
    let mut request =
        GenerateRequest::new(vec![ChatMessage::user(question).with_image(image.clone())]);
    // No system prompt: the paper's 41 tokens are the whole text of the prompt.
    request.system = Some(String::new());
    request.max_new_tokens = max_new_tokens;
    request
}

/// The longest prefix of [`QUESTION_SOURCE`] whose prompt has exactly `text_tokens` text
/// tokens, and that count; where no prefix has (Qwen's ChatML template alone takes 49
/// with a one-letter question), the shortest prompt with more.
fn fit_question(model: &Model, image: &ImageBytes, text_tokens: usize) -> Result<(String, usize)> {
    let mut best = None;
    for (end, _) in QUESTION_SOURCE.char_indices().skip(1) {
        let question = &QUESTION_SOURCE[..end];
        let ids = model.prompt_ids(&first_question(question, image, 1))?;
        let count = ids.iter().filter(|&&id| id != IMAGE_TOKEN_INDEX).count();
        if count == text_tokens {
            best = Some((question.to_string(), count));
        } else if count > text_tokens {
            return Ok(best.unwrap_or_else(|| (question.to_string(), count)));
        }
    }
    best.with_context(|| {
        format!("the benchmark's question is too short for a prompt of {text_tokens} text tokens")
    })
}

struct Answer {
    stats: GenerationStats,
    text: String,
    wall_ms: f64,
}

fn answer(
    model: &Model,
    session: &mut impchat_engine::Session,
    request: &GenerateRequest,
) -> Result<Answer> {
    let mut text = String::new();
    let started = Instant::now();
    let stats = session
        .generate(request, &CancelToken::new(), &mut |event| {
            if let GenerationEvent::Token { text: piece } = event {
                text.push_str(&piece);
            }
        })
        .with_context(|| format!("{} failed while answering", model.info().name))?;
    Ok(Answer {
        stats,
        text,
        wall_ms: ms_since(started),
    })
}

fn expect_full_answer(stats: &GenerationStats, wanted: usize) -> Result<()> {
    if stats.generated_tokens != wanted || stats.stop_reason != Some(StopReason::MaxTokens) {
        bail!(
            "the random model stopped after {} of {wanted} tokens ({:?}); the benchmark needs \
             full-length answers",
            stats.generated_tokens,
            stats.stop_reason
        );
    }
    Ok(())
}

/// The protocol at one image side, `runs` times, each from a fresh load. With
/// `long_runs > 0`, also the long decode after the same prompt (returned as its samples).
pub fn image_side(
    protocol: &Protocol,
    lm: &Path,
    mmproj: &Path,
    image: &ImageBytes,
    long_runs: usize,
    on_progress: &mut dyn FnMut(&str),
) -> Result<(ImageFigures, Vec<f64>)> {
    let mut samples = Samples::default();
    let mut long = Vec::new();
    let mut shape = None;
    for run in 1..=protocol.runs {
        let (model, load_ms) = load(lm, mmproj, protocol.threads)?;
        let info = model.info().clone();
        on_progress(&format!(
            "run {run}/{}: {} px, loaded in {}",
            protocol.runs,
            info.image_size,
            seconds(load_ms)
        ));
        let (question, text_tokens) = fit_question(&model, image, protocol.text_tokens)?;
        let request = first_question(&question, image, protocol.generated_tokens);
        let mut session = model.new_session();
        let first = answer(&model, &mut session, &request)?;
        expect_full_answer(&first.stats, protocol.generated_tokens)?;
        let prompt_tokens = info.visual_tokens + text_tokens;
        if first.stats.prompt_tokens != prompt_tokens
            || first.stats.prompt_tokens_computed != prompt_tokens
        {
            bail!(
                "the prompt has {} tokens ({} computed), expected {prompt_tokens}",
                first.stats.prompt_tokens,
                first.stats.prompt_tokens_computed
            );
        }

        let mut follow_up = request.clone();
        // Without the space that starts it, as Imp's own chat code keeps answers (`outputs.strip()`):
        // the history then re-tokenizes into exactly the cached answer tokens.
        follow_up
            .messages
            .push(ChatMessage::assistant(first.text.trim_start()));
        follow_up.messages.push(ChatMessage::user(FOLLOW_UP));
        follow_up.max_new_tokens = 1;
        let second = answer(&model, &mut session, &follow_up)?;

        samples.load_ms.push(load_ms);
        samples.encode_ms.push(first.stats.image_encode_ms);
        samples.prefill_ms.push(first.stats.prompt_ms);
        samples
            .time_to_first_token_ms
            .push(first.stats.time_to_first_token_ms);
        samples
            .decode_tokens_per_s
            .push(first.stats.decode_tokens_per_s);
        samples.total_ms.push(first.wall_ms);
        samples
            .follow_up_time_to_first_token_ms
            .push(second.stats.time_to_first_token_ms);
        on_progress(&format!(
            "run {run}/{}: {} px: encode {}, prefill {:.1} tok/s, decode {:.2} tok/s, total {}",
            protocol.runs,
            info.image_size,
            seconds(first.stats.image_encode_ms),
            prompt_tokens as f64 / (first.stats.prompt_ms / 1000.0),
            first.stats.decode_tokens_per_s,
            seconds(first.wall_ms)
        ));

        if run <= long_runs {
            let long_request = first_question(&question, image, protocol.long_tokens);
            let mut session = model.new_session();
            let long_answer = answer(&model, &mut session, &long_request)?;
            expect_full_answer(&long_answer.stats, protocol.long_tokens)?;
            long.push(long_answer.stats.decode_tokens_per_s);
            on_progress(&format!(
                "run {run}/{}: decode over {} tokens: {:.2} tok/s",
                protocol.runs, protocol.long_tokens, long_answer.stats.decode_tokens_per_s
            ));
        }
        shape = Some((
            info.image_size as usize,
            info.visual_tokens,
            prompt_tokens,
            second.stats.prompt_tokens_computed,
        ));
    }
    let Some((image_size, visual_tokens, prompt_tokens, follow_up_computed)) = shape else {
        bail!("--runs must be at least 1");
    };
    let prefill_tps: Vec<f64> = samples
        .prefill_ms
        .iter()
        .map(|ms| prompt_tokens as f64 / (ms / 1000.0))
        .collect();
    let figures = ImageFigures {
        image_size,
        mmproj_file: mmproj.to_path_buf(),
        visual_tokens,
        prompt_tokens,
        load_ms: median(&samples.load_ms),
        encode_ms: median(&samples.encode_ms),
        prefill_ms: median(&samples.prefill_ms),
        prefill_tokens_per_s: median(&prefill_tps),
        time_to_first_token_ms: median(&samples.time_to_first_token_ms),
        decode_tokens_per_s: median(&samples.decode_tokens_per_s),
        total_ms: median(&samples.total_ms),
        follow_up_prompt_tokens_computed: follow_up_computed,
        follow_up_time_to_first_token_ms: median(&samples.follow_up_time_to_first_token_ms),
        samples,
    };
    Ok((figures, long))
}

pub fn long_decode(
    protocol: &Protocol,
    prompt_tokens: usize,
    samples: Vec<f64>,
) -> Option<LongDecode> {
    (!samples.is_empty()).then(|| LongDecode {
        tokens: protocol.long_tokens,
        prompt_tokens,
        tokens_per_s: median(&samples),
        samples,
    })
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

fn seconds(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}
