//! The image-feature cache a loaded model shares between its sessions: the same picture
//! is run through the vision tower once, whichever session asks; another picture, another
//! resolution or a cache too small to hold it runs the tower again. Observed through the
//! `ImageEncoded` event and the model's vision-tower counter, never through timing.

use std::path::{Path, PathBuf};

use impchat_engine::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, ImageBytes, LoadOptions, Model,
    Session,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn load(checkpoint: &str) -> Model {
    Model::load(
        fixtures().join("models").join(checkpoint),
        &LoadOptions::default(),
    )
    .expect("load fixture")
}

fn image(name: &str) -> ImageBytes {
    ImageBytes::new(std::fs::read(fixtures().join("images").join(name)).expect("image"))
}

fn ask(name: &str) -> GenerateRequest {
    let mut req = GenerateRequest::new(vec![
        ChatMessage::user("What is in this picture?").with_image(image(name))
    ]);
    req.max_new_tokens = 6;
    req
}

/// `(cached, from_model_cache)` of each image, and the answer.
fn answer(session: &mut Session, req: &GenerateRequest) -> (Vec<(bool, bool)>, String) {
    let mut images = Vec::new();
    let mut text = String::new();
    session
        .generate(req, &CancelToken::new(), &mut |event| match event {
            GenerationEvent::ImageEncoded {
                cached,
                from_model_cache,
                ..
            } => images.push((cached, from_model_cache)),
            GenerationEvent::Token { text: t } => text.push_str(&t),
            _ => {}
        })
        .expect("generate");
    (images, text)
}

#[test]
fn a_second_session_reuses_the_first_sessions_image_features() {
    let model = load("imp-v1.5-3b-phi2");
    let (first, first_answer) = answer(&mut model.new_session(), &ask("shapes.png"));
    assert_eq!(first, vec![(false, false)]);
    assert_eq!(model.vision_tower_runs(), 1);

    let (second, second_answer) = answer(&mut model.new_session(), &ask("shapes.png"));
    assert_eq!(second, vec![(true, true)]);
    assert_eq!(model.vision_tower_runs(), 1, "the tower ran again");
    assert_eq!(second_answer, first_answer);
}

#[test]
fn a_reset_session_regenerating_finds_the_features_in_the_model() {
    let model = load("imp-v1.5-3b-phi2");
    let mut session = model.new_session();
    answer(&mut session, &ask("shapes.png"));
    session.reset();
    let (again, _) = answer(&mut session, &ask("shapes.png"));
    assert_eq!(again, vec![(true, true)]);
    assert_eq!(model.vision_tower_runs(), 1);
}

#[test]
fn another_image_misses() {
    let model = load("imp-v1.5-3b-phi2");
    answer(&mut model.new_session(), &ask("shapes.png"));
    let (other, _) = answer(&mut model.new_session(), &ask("receipt.png"));
    assert_eq!(other, vec![(false, false)]);
    assert_eq!(model.vision_tower_runs(), 2);
}

#[test]
fn another_resolution_misses() {
    let at_56 = load("imp-v1.5-3b-phi2");
    let at_42 = load("imp-v1.5-3b-196");
    assert_ne!(at_56.info().image_size, at_42.info().image_size);
    answer(&mut at_56.new_session(), &ask("shapes.png"));
    let (other, _) = answer(&mut at_42.new_session(), &ask("shapes.png"));
    assert_eq!(other, vec![(false, false)]);
    assert_eq!(at_42.vision_tower_runs(), 1);
}

#[test]
fn the_cache_is_bounded_by_bytes_least_recently_used_first() {
    let model = load("imp-v1.5-3b-phi2");
    answer(&mut model.new_session(), &ask("shapes.png"));
    let one_image = model.feature_cache_bytes_used();
    assert!(one_image > 0);

    // Room for one image: the receipt pushes the shapes out.
    model.set_feature_cache_bytes(one_image);
    answer(&mut model.new_session(), &ask("receipt.png"));
    assert_eq!(model.feature_cache_bytes_used(), one_image);
    let (shapes_again, _) = answer(&mut model.new_session(), &ask("shapes.png"));
    assert_eq!(shapes_again, vec![(false, false)]);
    assert_eq!(model.vision_tower_runs(), 3);

    model.set_feature_cache_bytes(0);
    assert_eq!(model.feature_cache_bytes_used(), 0);
    let (uncached, _) = answer(&mut model.new_session(), &ask("shapes.png"));
    assert_eq!(uncached, vec![(false, false)]);
    assert_eq!(model.vision_tower_runs(), 4);
}

#[test]
fn loaded_gguf_models_share_features_too() {
    use impchat_convert::{convert, ConvertOptions, LmQuant, VisionQuant};
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ConvertOptions {
        lm: LmQuant::Q8_0,
        vision: VisionQuant::F16,
        name: None,
        overwrite: false,
    };
    let out = convert(
        &fixtures().join("models/imp-v1.5-2b-qwen1.5"),
        dir.path(),
        &opts,
        &mut |_| {},
    )
    .expect("convert");
    let model = Model::load(&out.language_model.path, &LoadOptions::default()).expect("load");
    answer(&mut model.new_session(), &ask("shapes.png"));
    let (second, _) = answer(&mut model.new_session(), &ask("shapes.png"));
    assert_eq!(second, vec![(true, true)]);
    assert_eq!(model.vision_tower_runs(), 1);
}
