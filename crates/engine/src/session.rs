//! One conversation: its KV cache and exactly which tokens and image rows the cache
//! holds, so a follow-up turn only computes what is new.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use impchat_input::detokenize::{StopMatcher, StopOutcome, TextStream};
use impchat_input::splice::{self, PromptError, PromptPiece};
use impchat_input::template::{self, Turn};
use sha2::{Digest, Sha256};

use crate::error::EngineError;
use crate::lm::{KvCache, KvPrecision};
use crate::model::{Inner, Model};
use crate::request::{
    CancelToken, GenerateRequest, GenerationEvent, GenerationStats, Role, StopReason,
};
use crate::sampler::Sampler;

/// Positions the KV cache keeps room for beyond a turn, so a follow-up question does not
/// copy it into a larger buffer; untouched room costs no memory (see `lm::cache`).
const FOLLOW_UP_ROOM: usize = 256;

/// At most this much of a turn's `max_new_tokens` is allocated up front: a request for a
/// whole 32k context must not map gigabytes of cache at once on a small machine; longer
/// answers grow the cache as they arrive.
const PLANNED_ANSWER_MAX: usize = 2048;

/// Prompts longer than this are prefilled in chunks, bounding the attention scratch memory.
const PREFILL_CHUNK: usize = 512;

/// How many of the answer's last tokens the detokeniser sees before continuing it, so the
/// first new piece keeps the space or joins the character it starts with.
const CONTINUE_CONTEXT_TOKENS: usize = 16;

/// What the model writes for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A new answer to the conversation's last (user) message.
    Answer,
    /// More of the conversation's last (assistant) message.
    Continue,
}

pub(crate) type ImageDigest = [u8; 32];

/// One sequence position: a text token, or one row of an image's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Token(u32),
    ImageRow { image: ImageDigest, row: u32 },
}

/// A conversation with a model; owns its KV cache. `Send`, not shared.
pub struct Session {
    model: Model,
    cache: KvCache,
    /// Exactly the positions held by `cache`, in order.
    cached: Vec<Slot>,
    /// Projected features of the images of the last request, by content.
    features: HashMap<ImageDigest, Tensor>,
}

/// The request turned into sequence positions, with the images it needs.
pub(crate) struct Prompt {
    pub slots: Vec<Slot>,
    /// Image bytes and digest, in the order they appear.
    pub images: Vec<(ImageDigest, std::sync::Arc<[u8]>)>,
}

impl Session {
    pub(crate) fn new(model: Model) -> Self {
        let layers = model.inner().lm.num_layers();
        Self {
            model,
            cache: KvCache::with_precision(layers, KvPrecision::F16),
            cached: Vec::new(),
            features: HashMap::new(),
        }
    }

    /// Forgets the conversation (the next request is computed from scratch).
    pub fn reset(&mut self) {
        self.cache.clear();
        self.cached.clear();
        self.features.clear();
    }

    /// Answers the last user message of `req`, streaming events to `on_event`.
    ///
    /// If the conversation so far is already in this session's cache (a follow-up turn),
    /// only the new part of the prompt is computed. Cancellation is checked before every
    /// token and ends generation with [`StopReason::Cancelled`], not an error.
    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(GenerationEvent),
    ) -> Result<GenerationStats, EngineError> {
        self.reply(req, Reply::Answer, cancel, on_event)
    }

    /// Carries on writing the last message of `req`, which must be the assistant's (e.g. an
    /// answer stopped early or cut at the token limit): the prompt ends with that text and
    /// no end-of-turn marker, and only the new text is streamed. Otherwise like
    /// [`Session::generate`]; right after the answer was written here, its tokens are
    /// still cached and only the last one is computed again.
    pub fn continue_answer(
        &mut self,
        req: &GenerateRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(GenerationEvent),
    ) -> Result<GenerationStats, EngineError> {
        self.reply(req, Reply::Continue, cancel, on_event)
    }

    fn reply(
        &mut self,
        req: &GenerateRequest,
        reply: Reply,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(GenerationEvent),
    ) -> Result<GenerationStats, EngineError> {
        let model = self.model.clone();
        let inner = model.inner();
        // The math runs on the model's CPU pool; events come back over a channel so that
        // `on_event` is called on the caller's thread and need not be `Send`.
        let (events, received) = mpsc::channel();
        let result = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                let mut send = |event| {
                    // The receiver lives until this thread is joined.
                    let _ = events.send(event);
                };
                let result = inner
                    .runtime
                    .run(|| self.generate_inner(inner, req, reply, cancel, &mut send));
                drop(events);
                result
            });
            for event in received {
                on_event(event);
            }
            match worker.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        if result.is_err() {
            // The cache may hold a half-computed prompt; never reuse it.
            self.reset();
        }
        result
    }

    fn generate_inner(
        &mut self,
        inner: &Inner,
        req: &GenerateRequest,
        reply: Reply,
        cancel: &CancelToken,
        on_event: &mut (dyn FnMut(GenerationEvent) + Send),
    ) -> Result<GenerationStats, EngineError> {
        let started = Instant::now();
        let prompt = match reply {
            Reply::Answer => build_prompt_for(inner, req, reply)?,
            Reply::Continue => self.continuation_prompt(inner, req)?,
        };
        if prompt.slots.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let limit = inner.info.context_length;
        if prompt.slots.len() >= limit {
            return Err(EngineError::ContextOverflow {
                needed: prompt.slots.len() + 1,
                per_image: inner.info.visual_tokens,
                limit,
                images: prompt.images.len(),
                earlier_turns: req.messages.len().saturating_sub(1),
            });
        }

        // Keep the cached prefix this prompt shares; at least the last position must be
        // computed to get the logits for the first new token.
        let shared = common_prefix(&self.cached, &prompt.slots).min(prompt.slots.len() - 1);
        self.cache.truncate(shared);
        self.cached.truncate(shared);
        let answer = req.max_new_tokens.min(PLANNED_ANSWER_MAX);
        let planned = prompt.slots.len() + answer + FOLLOW_UP_ROOM;
        self.cache.plan(planned.min(limit));

        let mut stats = GenerationStats {
            images: prompt.images.len(),
            ..Default::default()
        };
        let mut features = HashMap::new();
        for (index, (digest, bytes)) in prompt.images.iter().enumerate() {
            if features.contains_key(digest) {
                // The same picture twice: encoded once.
                on_event(GenerationEvent::ImageEncoded {
                    index,
                    ms: 0.0,
                    cached: true,
                    from_model_cache: false,
                });
                continue;
            }
            let needed = prompt.slots[shared..]
                .iter()
                .any(|s| matches!(s, Slot::ImageRow { image, .. } if image == digest));
            let (tensor, ms, cached, from_model_cache) = match self.features.get(digest) {
                Some(tensor) => (Some(tensor.clone()), 0.0, true, false),
                None if !needed => (None, 0.0, true, false),
                None => {
                    let (tensor, ms, hit) = inner.image_features(digest, bytes, index)?;
                    (Some(tensor), ms, hit, hit)
                }
            };
            stats.image_encode_ms += ms;
            on_event(GenerationEvent::ImageEncoded {
                index,
                ms,
                cached,
                from_model_cache,
            });
            if let Some(tensor) = tensor {
                features.insert(*digest, tensor);
            }
        }
        self.features = features;

        let prefill_started = Instant::now();
        let suffix = &prompt.slots[shared..];
        let mut logits = None;
        let mut computed = 0;
        for chunk in suffix.chunks(PREFILL_CHUNK) {
            if cancel.is_cancelled() {
                break;
            }
            computed += chunk.len();
            let embeds = embed_slots(inner, &self.features, chunk)?;
            let pos = self.cache.len();
            logits = Some(
                inner
                    .lm
                    .forward_embeds_last(&embeds, &mut self.cache, pos)?,
            );
            self.cached.extend_from_slice(chunk);
        }
        if let Some(first) = &logits {
            // Damaged weights give NaN or Inf logits, which would sample as token 0 and
            // end in an empty or garbled answer; one pass over the first row is enough.
            check_logits(first)?;
        }
        stats.prompt_tokens = prompt.slots.len();
        stats.prompt_tokens_computed = computed;
        stats.prompt_ms = ms_since(prefill_started);
        on_event(GenerationEvent::PromptProcessed {
            tokens: computed,
            ms: stats.prompt_ms,
        });

        let decode_started = Instant::now();
        let mut history: Vec<u32> = prompt
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Token(t) => Some(*t),
                Slot::ImageRow { .. } => None,
            })
            .collect();
        let mut sampler = Sampler::new(&req.sampling);
        let mut stream = TextStream::new(&inner.tokenizer, true);
        if reply == Reply::Continue {
            // Decoded only as context for the first new token; that text is already written.
            let context = history.len().saturating_sub(CONTINUE_CONTEXT_TOKENS);
            for &token in &history[context..] {
                stream
                    .push(token)
                    .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
            }
        }
        let stops: Vec<String> = req
            .stop
            .iter()
            .cloned()
            .chain(inner.template.stop_strings().iter().map(|s| s.to_string()))
            .collect();
        let mut matcher = StopMatcher::new(stops);

        let stop_reason = loop {
            let Some(current) = logits.take() else {
                break StopReason::Cancelled;
            };
            if cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            if stats.generated_tokens >= req.max_new_tokens {
                break StopReason::MaxTokens;
            }
            if self.cache.len() >= limit {
                break StopReason::ContextFull;
            }
            let token = sampler.sample(&current, &history)?;
            if stats.generated_tokens == 0 {
                stats.time_to_first_token_ms = ms_since(started);
            }
            if inner.eos_token_ids.contains(&token) {
                break StopReason::EndOfTurn;
            }
            stats.generated_tokens += 1;
            history.push(token);
            let delta = stream
                .push(token)
                .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
            if let Some(delta) = delta {
                match matcher.push(&delta) {
                    StopOutcome::Emit(text) => emit(on_event, text),
                    StopOutcome::Stopped { before } => {
                        emit(on_event, before);
                        break StopReason::StopString;
                    }
                }
            }
            let embeds = inner
                .lm
                .embed(&Tensor::new(&[token], &Device::Cpu)?.unsqueeze(0)?)?;
            let pos = self.cache.len();
            logits = Some(
                inner
                    .lm
                    .forward_embeds_last(&embeds, &mut self.cache, pos)?,
            );
            self.cached.push(Slot::Token(token));
        };

        if stop_reason != StopReason::StopString {
            let tail = stream
                .finish()
                .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
            let held = match tail.map(|t| matcher.push(&t)) {
                Some(StopOutcome::Stopped { before }) => before,
                Some(StopOutcome::Emit(text)) => text + &matcher.flush(),
                None => matcher.flush(),
            };
            emit(on_event, held);
        }

        stats.decode_ms = ms_since(decode_started);
        if stats.decode_ms > 0.0 {
            stats.decode_tokens_per_s = stats.generated_tokens as f64 / (stats.decode_ms / 1000.0);
        }
        stats.stop_reason = Some(stop_reason);
        on_event(GenerationEvent::Done {
            stats: stats.clone(),
        });
        Ok(stats)
    }
}

impl Session {
    /// The prompt for continuing `req`'s last (assistant) message. When this session wrote
    /// that answer (the cache holds the answer's prompt followed by tokens that decode to
    /// its text), those exact tokens are kept, so the continuation is what the model would
    /// have written had it not stopped. Otherwise the text is tokenised afresh, which can
    /// split it differently from how it was generated.
    fn continuation_prompt(
        &self,
        inner: &Inner,
        req: &GenerateRequest,
    ) -> Result<Prompt, EngineError> {
        let retokenised = build_prompt_for(inner, req, Reply::Continue)?;
        let Some((answer, earlier)) = req.messages.split_last() else {
            return Ok(retokenised);
        };
        let question = GenerateRequest {
            messages: earlier.to_vec(),
            ..req.clone()
        };
        let head = build_prompt_for(inner, &question, Reply::Answer)?;
        let Some(written) = self.cached.strip_prefix(head.slots.as_slice()) else {
            return Ok(retokenised);
        };
        let ids: Option<Vec<u32>> = written
            .iter()
            .map(|slot| match slot {
                Slot::Token(id) => Some(*id),
                Slot::ImageRow { .. } => None,
            })
            .collect();
        let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
            return Ok(retokenised);
        };
        // Decoded as generation streamed them: byte-fallback pieces can read differently
        // when decoded all at once.
        let tokenizer_error =
            |e: impchat_input::tokenizer::TokenizerError| EngineError::Tokenizer(e.to_string());
        let mut stream = TextStream::new(&inner.tokenizer, true);
        let mut text = String::new();
        for &id in &ids {
            text.extend(stream.push(id).map_err(tokenizer_error)?);
        }
        text.extend(stream.finish().map_err(tokenizer_error)?);
        if text != answer.text {
            return Ok(retokenised);
        }
        let mut slots = head.slots;
        slots.extend_from_slice(written);
        Ok(Prompt {
            slots,
            images: head.images,
        })
    }
}

/// Input embeddings `(1, L, hidden)` for consecutive slots: text runs through the
/// embedding table, image rows straight from the projected features.
pub(crate) fn embed_slots(
    inner: &Inner,
    features: &HashMap<ImageDigest, Tensor>,
    slots: &[Slot],
) -> Result<Tensor, EngineError> {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < slots.len() {
        match slots[i] {
            Slot::Token(_) => {
                let ids: Vec<u32> = slots[i..]
                    .iter()
                    .map_while(|s| match s {
                        Slot::Token(t) => Some(*t),
                        Slot::ImageRow { .. } => None,
                    })
                    .collect();
                i += ids.len();
                let ids = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
                parts.push(inner.lm.embed(&ids)?);
            }
            Slot::ImageRow { image, row } => {
                let rows = slots[i..]
                    .iter()
                    .take_while(
                        |s| matches!(s, Slot::ImageRow { image: other, .. } if *other == image),
                    )
                    .count();
                i += rows;
                let Some(features) = features.get(&image) else {
                    return Err(EngineError::InvalidRequest("image features missing".into()));
                };
                parts.push(features.narrow(1, row as usize, rows)?);
            }
        }
    }
    Ok(Tensor::cat(&parts, 1)?)
}

/// Renders the conversation with the family's template, splits it at `<image>` and
/// lays it out as sequence positions.
pub(crate) fn build_prompt(inner: &Inner, req: &GenerateRequest) -> Result<Prompt, EngineError> {
    build_prompt_for(inner, req, Reply::Answer)
}

fn build_prompt_for(
    inner: &Inner,
    req: &GenerateRequest,
    reply: Reply,
) -> Result<Prompt, EngineError> {
    let (messages, partial) = match reply {
        Reply::Answer => (req.messages.as_slice(), None),
        Reply::Continue => match req.messages.split_last() {
            Some((answer, earlier)) if answer.role == Role::Assistant => {
                (earlier, Some(answer.text.as_str()))
            }
            _ => {
                return Err(EngineError::InvalidRequest(
                    "only an answer can be continued: the conversation must end with the assistant's message".to_string(),
                ))
            }
        },
    };
    let Some(last) = messages.last() else {
        return Err(EngineError::EmptyPrompt);
    };
    if last.role != Role::User {
        return Err(EngineError::InvalidRequest(
            "the conversation must end with a user message".to_string(),
        ));
    }
    if last.text.trim().is_empty() && last.images.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }

    let with_images = messages.iter().any(|m| !m.images.is_empty());
    if with_images {
        inner.vision()?;
    }
    // Image slots come from the attached images only; any `<image>` the user typed is text.
    let texts = req
        .system
        .iter()
        .map(String::as_str)
        .chain(messages.iter().map(|m| m.text.as_str()))
        .chain(partial);
    let marker = template::unique_image_marker(texts);
    let mut system = req.system.clone();
    let mut turns = Vec::new();
    let mut images = Vec::new();
    for message in messages {
        match message.role {
            Role::System => system = Some(message.text.clone()),
            Role::User => {
                turns.push(Turn::user(template::with_image_slots(
                    &message.text,
                    message.images.len(),
                    &marker,
                )));
                for image in &message.images {
                    let digest: ImageDigest = Sha256::digest(&image.0).into();
                    images.push((digest, image.0.clone()));
                }
            }
            Role::Assistant => turns.push(Turn::assistant(message.text.clone())),
        }
    }
    let system = system.unwrap_or_else(|| inner.template.default_system().to_string());
    let text = match partial {
        Some(partial) => inner.template.render_continuing(&system, &turns, partial),
        None => inner.template.render(&system, &turns),
    };

    let pieces = splice::tokenize_prompt_at(
        &inner.tokenizer,
        &text,
        &marker,
        images.len(),
        inner.bos_token_id,
    )
    .map_err(|e| match e {
        PromptError::Empty => EngineError::EmptyPrompt,
        PromptError::Tokenize(reason) => EngineError::Tokenizer(reason),
        other => EngineError::InvalidRequest(other.to_string()),
    })?;
    let mut slots = Vec::new();
    for piece in pieces {
        match piece {
            PromptPiece::Text(ids) => slots.extend(ids.into_iter().map(Slot::Token)),
            PromptPiece::Image(index) => {
                let image = images[index].0;
                let rows = inner.info.visual_tokens as u32;
                slots.extend((0..rows).map(|row| Slot::ImageRow { image, row }));
            }
        }
    }
    Ok(Prompt { slots, images })
}

/// Fails with [`EngineError::DamagedWeights`] when `logits` hold a NaN or an infinity.
fn check_logits(logits: &Tensor) -> Result<(), EngineError> {
    let values = logits.flatten_all()?.to_dtype(candle_core::DType::F32)?;
    let values = values.to_vec1::<f32>()?;
    if values.iter().any(|v| v.is_nan()) {
        return Err(EngineError::DamagedWeights { found: "NaN" });
    }
    if values.iter().any(|v| v.is_infinite()) {
        return Err(EngineError::DamagedWeights { found: "Inf" });
    }
    Ok(())
}

fn emit(on_event: &mut (dyn FnMut(GenerationEvent) + Send), text: String) {
    if !text.is_empty() {
        on_event(GenerationEvent::Token { text });
    }
}

fn common_prefix(a: &[Slot], b: &[Slot]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::request::ChatMessage;
    use crate::LoadOptions;

    /// A request for a whole 32k context's answer allocates only its prompt, 2048 answer
    /// positions and a follow-up's room, in f16: a small machine is not asked for
    /// gigabytes at once, and the cache holds half what f32 would.
    #[test]
    fn a_huge_answer_limit_does_not_allocate_the_whole_context() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/models/imp-v1.5-2b-qwen1.5");
        let model = Model::load(&fixture, &LoadOptions::default()).expect("load");
        let limit = model.info().context_length;
        assert!(limit >= 32_768, "the fixture keeps Qwen1.5's 32k context");
        let mut session = model.new_session();
        let mut req = GenerateRequest::new(vec![ChatMessage::user("Hello there")]);
        req.max_new_tokens = limit;
        let cancel = CancelToken::new();
        let stats = session
            .generate(&req, &cancel, &mut |event| {
                if matches!(event, GenerationEvent::Token { .. }) {
                    cancel.cancel();
                }
            })
            .expect("generate");
        let planned = stats.prompt_tokens + PLANNED_ANSWER_MAX + FOLLOW_UP_ROOM;
        let capacity = session.cache.capacity();
        assert!(
            (planned..planned + 64).contains(&capacity),
            "capacity {capacity} for a plan of {planned}"
        );
        // Qwen1.5 has as many key/value heads as query heads: `hidden_size` values each.
        let lm = &model.inner().lm;
        let per_position = 2 * lm.num_layers() * lm.hidden_size();
        assert_eq!(session.cache.bytes(), capacity * per_position * 2, "f16");
    }
}
