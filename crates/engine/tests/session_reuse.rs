//! A follow-up question in the same session computes only what is new: the image and the
//! earlier turns stay in the session's KV cache.

use std::path::{Path, PathBuf};

use impchat_engine::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, ImageBytes,
    LoadOptions, Model, Session,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Turn {
    text: String,
    stats: GenerationStats,
    prompt_processed: usize,
    image_events: Vec<(bool, bool)>,
}

fn turn(session: &mut Session, req: &GenerateRequest) -> Turn {
    let mut text = String::new();
    let mut prompt_processed = 0;
    let mut image_events = Vec::new();
    let stats = session
        .generate(req, &CancelToken::new(), &mut |event| match event {
            GenerationEvent::Token { text: t } => text.push_str(&t),
            GenerationEvent::PromptProcessed { tokens, .. } => prompt_processed = tokens,
            GenerationEvent::ImageEncoded {
                cached,
                from_model_cache,
                ..
            } => image_events.push((cached, from_model_cache)),
            _ => {}
        })
        .expect("generate");
    Turn {
        text,
        stats,
        prompt_processed,
        image_events,
    }
}

#[test]
fn a_follow_up_computes_only_the_new_tokens() {
    for checkpoint in [
        "imp-v1.5-3b-phi2",
        "imp-v1.5-2b-qwen1.5",
        "imp-v1.5-4b-phi3",
    ] {
        let model = Model::load(
            fixtures().join("models").join(checkpoint),
            &LoadOptions::default(),
        )
        .expect("load");
        let picture =
            ImageBytes::new(std::fs::read(fixtures().join("images/shapes.png")).expect("image"));
        let question = ChatMessage::user("What is in this picture?").with_image(picture);
        let mut first_request = GenerateRequest::new(vec![question.clone()]);
        first_request.max_new_tokens = 8;

        let mut session = model.new_session();
        let first = turn(&mut session, &first_request);
        assert_eq!(
            first.stats.prompt_tokens_computed,
            first.stats.prompt_tokens
        );

        let mut follow_up = GenerateRequest::new(vec![
            question,
            ChatMessage::assistant(first.text.trim_start()),
            ChatMessage::user("And what colour is it?"),
        ]);
        follow_up.max_new_tokens = 4;
        let second = turn(&mut session, &follow_up);

        // Everything of the first prompt (image rows included) is reused; of the answer,
        // whatever re-tokenises to the same ids is too. Only the rest is computed.
        let new_part = second.stats.prompt_tokens - first.stats.prompt_tokens;
        let computed = second.stats.prompt_tokens_computed;
        assert!(
            computed <= new_part,
            "{checkpoint}: computed {computed} positions, only {new_part} are new"
        );
        assert!(
            computed + first.stats.generated_tokens >= new_part,
            "{checkpoint}: reused more than the session ever held"
        );
        assert!(computed > 0);
        eprintln!(
            "{checkpoint}: follow-up prompt {} positions, {new_part} new, {computed} computed",
            second.stats.prompt_tokens
        );
        assert_eq!(second.prompt_processed, computed);
        assert_eq!(second.image_events, vec![(true, false)], "{checkpoint}");
        assert_eq!(model.vision_tower_runs(), 1, "{checkpoint}");

        // A session that never saw the conversation computes all of it.
        let fresh = turn(&mut model.new_session(), &follow_up);
        assert_eq!(
            fresh.stats.prompt_tokens_computed,
            fresh.stats.prompt_tokens
        );
        assert_eq!(
            fresh.text, second.text,
            "{checkpoint}: reuse changed the answer"
        );
    }
}
