//! Generation behaviour users rely on: stop strings, the token limit, cancelling from
//! another thread, streamed text, event order, and follow-up turns reusing the cache.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use impchat_engine::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, ImageBytes,
    LoadOptions, Model, Session, StopReason,
};
use impchat_input::detokenize::TextStream;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model() -> Model {
    Model::load(
        fixtures().join("models/imp-v1.5-2b-qwen1.5"),
        &LoadOptions {
            threads: Some(1),
            ..LoadOptions::default()
        },
    )
    .expect("load fixture")
}

fn shapes() -> ImageBytes {
    ImageBytes::new(std::fs::read(fixtures().join("images/shapes.png")).expect("image"))
}

fn question() -> ChatMessage {
    ChatMessage::user("What is in this picture?").with_image(shapes())
}

struct Run {
    text: String,
    events: Vec<GenerationEvent>,
    stats: GenerationStats,
}

fn run(session: &mut Session, req: &GenerateRequest) -> Run {
    let mut events = Vec::new();
    let stats = session
        .generate(req, &CancelToken::new(), &mut |e| events.push(e))
        .expect("generate");
    let text = events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Token { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    Run {
        text,
        events,
        stats,
    }
}

fn request(messages: Vec<ChatMessage>, max_new_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        max_new_tokens,
        ..GenerateRequest::new(messages)
    }
}

#[test]
fn events_arrive_in_order_and_deltas_are_never_empty() {
    let model = model();
    let r = run(&mut model.new_session(), &request(vec![question()], 12));
    assert!(matches!(
        r.events[0],
        GenerationEvent::ImageEncoded {
            index: 0,
            cached: false,
            ..
        }
    ));
    assert!(matches!(
        r.events[1],
        GenerationEvent::PromptProcessed { .. }
    ));
    assert!(matches!(
        r.events.last(),
        Some(GenerationEvent::Done { .. })
    ));
    for e in &r.events[2..r.events.len() - 1] {
        match e {
            GenerationEvent::Token { text } => assert!(!text.is_empty()),
            other => panic!("unexpected event between tokens: {other:?}"),
        }
    }
    let Some(GenerationEvent::Done { stats }) = r.events.last() else {
        unreachable!()
    };
    assert_eq!(stats, &r.stats);
    assert_eq!(r.stats.images, 1);
    assert_eq!(r.stats.prompt_tokens, r.stats.prompt_tokens_computed);
    assert_eq!(
        r.stats.prompt_tokens,
        model
            .prompt_ids(&request(vec![question()], 1))
            .expect("ids")
            .len()
            - 1
            + 16
    );
}

#[test]
fn stops_at_max_new_tokens() {
    let model = model();
    let r = run(&mut model.new_session(), &request(vec![question()], 5));
    assert_eq!(r.stats.generated_tokens, 5);
    assert_eq!(r.stats.stop_reason, Some(StopReason::MaxTokens));
    let longer = run(&mut model.new_session(), &request(vec![question()], 20));
    assert!(
        longer.text.starts_with(&r.text),
        "{:?} vs {:?}",
        longer.text,
        r.text
    );
}

#[test]
fn stop_string_cuts_the_answer_before_it() {
    let model = model();
    let free = run(&mut model.new_session(), &request(vec![question()], 32));
    // A plain three-character piece from the middle of the free-running answer.
    let chars: Vec<char> = free.text.chars().collect();
    let stop: String = (8..chars.len() - 3)
        .map(|i| chars[i..i + 3].iter().collect::<String>())
        .find(|s: &String| s.chars().all(|c| c.is_ascii_alphanumeric()))
        .expect("a plain stop candidate in the answer");
    let cut = free.text.find(&stop).expect("stop occurs");

    let mut req = request(vec![question()], 32);
    req.stop = vec![stop.clone()];
    let stopped = run(&mut model.new_session(), &req);
    assert_eq!(stopped.stats.stop_reason, Some(StopReason::StopString));
    assert_eq!(stopped.text, free.text[..cut], "stop {stop:?}");
    assert!(stopped.stats.generated_tokens < free.stats.generated_tokens);
}

#[test]
fn cancelling_from_another_thread_stops_generation() {
    let model = model();
    let cancel = CancelToken::new();
    let (first_token, wait) = mpsc::channel();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            wait.recv_timeout(Duration::from_secs(60))
                .expect("a first token");
            cancel.cancel();
        })
    };
    let mut session = model.new_session();
    let mut sent = false;
    let req = request(vec![question()], 5000);
    let stats = session
        .generate(&req, &cancel, &mut |e| {
            if matches!(e, GenerationEvent::Token { .. }) && !sent {
                sent = true;
                let _ = first_token.send(());
            }
        })
        .expect("cancelled generation is not an error");
    canceller.join().expect("canceller");
    assert_eq!(stats.stop_reason, Some(StopReason::Cancelled));
    assert!(stats.generated_tokens < 5000);

    // Already cancelled: returns before generating anything, still with a Done event.
    let mut done = false;
    let stats = model
        .new_session()
        .generate(&req, &cancel, &mut |e| {
            done |= matches!(e, GenerationEvent::Done { .. })
        })
        .expect("generate");
    assert_eq!(stats.generated_tokens, 0);
    assert_eq!(stats.stop_reason, Some(StopReason::Cancelled));
    assert!(done);
}

#[test]
fn follow_up_turn_reuses_the_cache_and_matches_a_fresh_session() {
    let model = model();
    let mut session = model.new_session();
    let first = run(&mut session, &request(vec![question()], 8));

    let follow_up = request(
        vec![
            question(),
            ChatMessage::assistant(first.text.clone()),
            ChatMessage::user("Tell me more."),
        ],
        8,
    );
    let reused = run(&mut session, &follow_up);
    assert!(reused.stats.prompt_tokens_computed < reused.stats.prompt_tokens);
    assert!(reused.stats.prompt_tokens_computed > 0);
    assert!(matches!(
        reused.events[0],
        GenerationEvent::ImageEncoded { cached: true, .. }
    ));

    let fresh = run(&mut model.new_session(), &follow_up);
    assert_eq!(
        fresh.stats.prompt_tokens_computed,
        fresh.stats.prompt_tokens
    );
    assert_eq!(fresh.stats.prompt_tokens, reused.stats.prompt_tokens);
    assert_eq!(reused.text, fresh.text);
    assert_eq!(reused.stats.generated_tokens, fresh.stats.generated_tokens);

    // An edited conversation keeps only the shared prefix (the system prompt) and still
    // answers exactly like a fresh session.
    let edited = request(vec![ChatMessage::user("Describe nothing.")], 8);
    let after_edit = run(&mut session, &edited);
    let fresh = run(&mut model.new_session(), &edited);
    assert!(after_edit.stats.prompt_tokens_computed < after_edit.stats.prompt_tokens);
    assert_eq!(after_edit.text, fresh.text);

    // After reset everything is computed again.
    session.reset();
    let again = run(&mut session, &edited);
    assert_eq!(
        again.stats.prompt_tokens_computed,
        again.stats.prompt_tokens
    );
    assert_eq!(again.text, fresh.text);
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let model = model();
    let mut req = request(vec![question()], 12);
    req.sampling.temperature = 0.9;
    req.sampling.top_p = Some(0.95);
    req.sampling.seed = 42;
    let a = run(&mut model.new_session(), &req);
    let b = run(&mut model.new_session(), &req);
    assert_eq!(a.text, b.text);
    assert_eq!(a.stats.generated_tokens, b.stats.generated_tokens);
}

#[test]
fn long_prompts_are_prefilled_in_chunks_with_the_same_result() {
    let model = model();
    let long = "Describe every shape, colour and line you can see. ".repeat(60);
    let req = request(vec![ChatMessage::user(long).with_image(shapes())], 1);
    let logits = model.prompt_logits(&req).expect("logits");
    let rows = logits.dim(0).expect("rows");
    assert!(
        rows > 600,
        "the prompt must span several prefill chunks ({rows} positions)"
    );
    let argmax = logits
        .get(rows - 1)
        .and_then(|row| row.argmax(0))
        .and_then(|id| id.to_scalar::<u32>())
        .expect("argmax");

    let r = run(&mut model.new_session(), &req);
    assert_eq!(r.stats.prompt_tokens, rows);
    assert_eq!(r.stats.prompt_tokens_computed, rows);
    let mut stream = TextStream::new(model.tokenizer(), true);
    let mut expected: String = stream.push(argmax).expect("push").unwrap_or_default();
    expected.extend(stream.finish().expect("finish"));
    assert_eq!(r.text, expected);
}

#[test]
fn the_same_image_twice_is_encoded_once() {
    let model = model();
    let msg = ChatMessage::user("Are these the same?")
        .with_image(shapes())
        .with_image(shapes());
    let r = run(&mut model.new_session(), &request(vec![msg], 2));
    let encoded: Vec<(usize, bool)> = r
        .events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::ImageEncoded { index, cached, .. } => Some((*index, *cached)),
            _ => None,
        })
        .collect();
    assert_eq!(encoded, vec![(0, false), (1, true)]);
    assert_eq!(r.stats.images, 2);
}
