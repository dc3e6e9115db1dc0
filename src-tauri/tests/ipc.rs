//! The commands through Tauri's real IPC layer (mock runtime, no window or display).

use std::path::{Path, PathBuf};

use impchat_app_lib::{app_builder, init};
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{
    get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY,
};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};

struct TestApp {
    _app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
}

fn start(data_dir: &Path) -> TestApp {
    let app = app_builder(mock_builder())
        .build(mock_context(noop_assets()))
        .expect("app builds");
    init(app.handle(), data_dir).expect("state opens");
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("window builds");
    TestApp { _app: app, window }
}

fn invoke_on(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    call(window, cmd, InvokeBody::Json(args), Default::default())
        .map(|body| body.deserialize::<Value>().expect("JSON reply"))
}

fn call(
    window: &WebviewWindow<MockRuntime>,
    cmd: &str,
    body: InvokeBody,
    headers: tauri::http::HeaderMap,
) -> Result<InvokeResponseBody, Value> {
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body,
            headers,
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
}

impl TestApp {
    fn invoke_body(
        &self,
        cmd: &str,
        body: InvokeBody,
        headers: tauri::http::HeaderMap,
    ) -> Result<InvokeResponseBody, Value> {
        call(&self.window, cmd, body, headers)
    }

    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        invoke_on(&self.window, cmd, args)
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        self.invoke(cmd, args)
            .unwrap_or_else(|err| panic!("{cmd} failed: {err}"))
    }

    fn err(&self, cmd: &str, args: Value) -> Value {
        match self.invoke(cmd, args) {
            Ok(value) => panic!("{cmd} should fail but returned {value}"),
            Err(err) => err,
        }
    }

    fn stage_bytes(&self, bytes: Vec<u8>, name: &str) -> Result<Value, Value> {
        let mut headers = tauri::http::HeaderMap::new();
        headers.insert("x-file-name", name.parse().expect("header"));
        self.invoke_body("stage_image_bytes", InvokeBody::Raw(bytes), headers)
            .map(|body| body.deserialize::<Value>().expect("JSON reply"))
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn conversations_round_trip_through_ipc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());

    let first = app.ok("create_conversation", json!({ "title": "Receipts" }));
    let second = app.ok("create_conversation", json!({}));
    let (first_id, second_id) = (first["id"].clone(), second["id"].clone());
    assert_eq!(first["title"], "Receipts");
    assert_eq!(first["deleted"], false);
    assert!(first["createdAt"].as_i64().expect("createdAt") > 0);

    app.ok(
        "rename_conversation",
        json!({ "id": second_id, "title": "Shapes" }),
    );
    app.ok(
        "pin_conversation",
        json!({ "id": first_id, "pinned": true }),
    );
    let list = app.ok("list_conversations", json!({}));
    assert_eq!(
        ids(&list),
        vec![first_id.as_str().unwrap(), second_id.as_str().unwrap()]
    );
    assert_eq!(list[0]["pinned"], true);
    assert_eq!(list[1]["title"], "Shapes");

    let conversation = app.ok("get_conversation", json!({ "id": second_id }));
    assert_eq!(conversation["title"], "Shapes");
    assert_eq!(conversation["messages"], json!([]));
    assert_eq!(conversation["systemPrompt"], Value::Null);

    let hits = app.ok("search", json!({ "query": "shap" }));
    assert_eq!(hits[0]["conversationId"], second_id);

    app.ok("delete_conversation", json!({ "id": second_id }));
    assert_eq!(ids(&app.ok("list_conversations", json!({}))).len(), 1);
    let with_trash = app.ok("list_conversations", json!({ "includeDeleted": true }));
    assert_eq!(ids(&with_trash).len(), 2);
    app.ok("restore_conversation", json!({ "id": second_id }));
    assert_eq!(ids(&app.ok("list_conversations", json!({}))).len(), 2);

    app.ok("purge_conversation", json!({ "id": second_id }));
    let err = app.err("get_conversation", json!({ "id": second_id }));
    assert_eq!(err["kind"], "not_found");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("does not exist"),
        "{err}"
    );

    let err = app.err(
        "rename_conversation",
        json!({ "id": first_id, "title": "  " }),
    );
    assert_eq!(err["kind"], "invalid_input");
}

#[test]
fn chat_settings_are_validated_and_kept_per_conversation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    let id = app.ok("create_conversation", json!({}))["id"].clone();
    let settings = json!({ "temperature": 0.5, "topP": 0.9, "topK": null, "maxTokens": 64,
                           "repetitionPenalty": 1.1, "seed": 7 });
    app.ok(
        "set_chat_settings",
        json!({ "id": id, "systemPrompt": "Be brief.", "settings": settings }),
    );
    let conversation = app.ok("get_conversation", json!({ "id": id }));
    assert_eq!(conversation["systemPrompt"], "Be brief.");
    assert_eq!(conversation["settings"]["maxTokens"], 64);
    assert_eq!(conversation["settings"]["seed"], 7);

    let bad = json!({ "temperature": -1.0, "topP": null, "topK": null, "maxTokens": 64,
                      "repetitionPenalty": 1.0, "seed": null });
    let err = app.err(
        "set_chat_settings",
        json!({ "id": id, "systemPrompt": null, "settings": bad }),
    );
    assert_eq!(err["kind"], "invalid_input");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("temperature"),
        "{err}"
    );
}

#[test]
fn a_png_is_staged_and_read_back_and_a_pdf_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    let png = std::fs::read(repo_root().join("tests/fixtures/images/shapes.png")).expect("fixture");

    let staged = app
        .stage_bytes(png.clone(), "shapes.png")
        .expect("PNG is staged");
    assert_eq!(staged["mime"], "image/png");
    assert_eq!(staged["bytes"], png.len());
    assert!(staged["width"].as_u64().expect("width") > 0);
    let thumbnail = staged["thumbnailDataUrl"].as_str().expect("thumbnail");
    assert!(
        thumbnail.starts_with("data:image/jpeg;base64,"),
        "{}",
        &thumbnail[..40]
    );
    assert!(!staged["token"].as_str().expect("token").is_empty());

    let sha = staged["sha256"].clone();
    let original = app
        .invoke_body(
            "get_image",
            InvokeBody::Json(json!({ "sha256": sha })),
            Default::default(),
        )
        .expect("image is readable");
    match original {
        InvokeResponseBody::Raw(bytes) => assert_eq!(bytes, png),
        InvokeResponseBody::Json(json) => panic!("expected raw bytes, got JSON {json}"),
    }

    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
        .to_vec();
    let err = app
        .stage_bytes(pdf, "report%20final.pdf")
        .expect_err("a PDF is not an image");
    assert_eq!(err["kind"], "invalid_input");
    let message = err["message"].as_str().expect("message");
    assert!(message.contains("report final.pdf"), "{message}");
    assert!(message.contains("PDF"), "{message}");

    let err = app.err(
        "stage_image_path",
        json!({ "path": dir.path().join("missing.png") }),
    );
    assert_eq!(err["kind"], "io");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("missing.png"),
        "{err}"
    );
}

#[test]
fn settings_persist_across_restarts_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let app = start(dir.path());
        let mut settings = app.ok("get_settings", json!({}));
        assert_eq!(settings["dataDir"], dir.path().display().to_string());
        assert_eq!(settings["lastModelPath"], Value::Null);
        settings["theme"] = json!("dark");
        settings["threads"] = json!(2);
        settings["systemPrompt"] = json!("Answer in French.");
        settings["defaults"]["temperature"] = json!(0.7);
        settings["defaults"]["maxTokens"] = json!(128);
        app.ok("set_settings", json!({ "settings": settings }));

        let mut bad = settings.clone();
        bad["defaults"]["maxTokens"] = json!(0);
        let err = app.err("set_settings", json!({ "settings": bad }));
        assert_eq!(err["kind"], "invalid_input");
        assert!(
            err["message"]
                .as_str()
                .expect("message")
                .contains("answer length"),
            "{err}"
        );
    }
    let app = start(dir.path());
    let settings = app.ok("get_settings", json!({}));
    assert_eq!(settings["theme"], "dark");
    assert_eq!(settings["threads"], 2);
    assert_eq!(settings["systemPrompt"], "Answer in French.");
    assert_eq!(settings["defaults"]["temperature"], 0.7);
    assert_eq!(settings["defaults"]["maxTokens"], 128);
}

#[test]
fn asking_without_a_model_says_so_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    assert_eq!(app.ok("model_status", json!({}))["state"], "none");
    let id = app.ok("create_conversation", json!({}))["id"].clone();
    let err = app.err(
        "send_message",
        json!({ "conversationId": id, "text": "hello?", "imageTokens": [], "onEvent": "__CHANNEL__:7" }),
    );
    assert_eq!(err["kind"], "no_model");
    assert_eq!(
        app.ok("get_conversation", json!({ "id": id }))["messages"],
        json!([])
    );

    let err = app.err(
        "load_model",
        json!({ "path": dir.path().join("no-such-model") }),
    );
    assert_eq!(err["kind"], "not_found");
    assert_eq!(app.ok("model_status", json!({}))["state"], "none");
}

#[test]
fn the_catalog_lists_models_with_a_memory_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    let catalog = app.ok("model_catalog", json!({}));
    let entries = catalog.as_array().expect("a list");
    assert!(!entries.is_empty());
    for entry in entries {
        assert!(entry["ramBytes"].as_u64().expect("ramBytes") > 0, "{entry}");
        assert!(
            ["yes", "tight", "no"].contains(&entry["fits"].as_str().expect("fits")),
            "{entry}"
        );
    }
}

#[test]
fn a_conversation_exported_as_zip_comes_back_on_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    let id = app.ok("create_conversation", json!({ "title": "Trip photos" }))["id"].clone();
    let archive = dir.path().join("trip.zip");
    let written = app.ok(
        "export_conversation",
        json!({ "id": id, "format": "zip", "path": archive }),
    );
    assert_eq!(written, archive.display().to_string());
    app.ok("purge_conversation", json!({ "id": id }));
    assert_eq!(app.ok("list_conversations", json!({})), json!([]));

    let report = app.ok("import_archive", json!({ "path": archive }));
    assert_eq!(report, json!({ "imported": 1, "skipped": 0 }));
    let list = app.ok("list_conversations", json!({}));
    assert_eq!(list[0]["title"], "Trip photos");

    let markdown = dir.path().join("trip.md");
    app.ok(
        "export_conversation",
        json!({ "id": null, "format": "markdown", "path": markdown }),
    );
    let text = std::fs::read_to_string(&markdown).expect("markdown written");
    assert!(text.contains("Trip photos"), "{text}");

    let err = app.err(
        "import_archive",
        json!({ "path": dir.path().join("settings.json") }),
    );
    assert!(
        ["io", "invalid_input"].contains(&err["kind"].as_str().expect("kind")),
        "{err}"
    );
}

const TINY_MODEL: &str = "tests/fixtures/models/imp-v1.5-3b-phi2";

fn ask(
    app: &TestApp,
    conversation: &Value,
    text: &str,
    images: Vec<Value>,
) -> Result<Value, Value> {
    // The channel's messages go to a webview that the mock runtime does not have; what the
    // answer was is read back from the store, which is what the UI shows after a restart.
    app.invoke(
        "send_message",
        json!({ "conversationId": conversation, "text": text, "imageTokens": images,
                "onEvent": "__CHANNEL__:1" }),
    )
}

fn wait_ready(app: &TestApp) -> Value {
    for _ in 0..600 {
        let status = app.ok("model_status", json!({}));
        if status["state"] != "loading" {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the model never finished loading");
}

#[test]
fn an_image_question_is_answered_stored_and_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = repo_root().join(TINY_MODEL);
    let png = std::fs::read(repo_root().join("tests/fixtures/images/shapes.png")).expect("fixture");
    let conversation;
    {
        let app = start(dir.path());
        let info = app.ok("load_model", json!({ "path": model_dir }));
        assert_eq!(info["family"], "phi2");
        assert_eq!(info["imageSize"], 56);
        assert_eq!(app.ok("model_status", json!({}))["state"], "ready");

        let staged = app.stage_bytes(png, "shapes.png").expect("staged");
        let preview = app.ok("image_preview", json!({ "token": staged["token"] }));
        assert_eq!(preview["size"], 56);
        assert_eq!(preview["visualTokens"], 16);
        assert!(preview["pngDataUrl"]
            .as_str()
            .expect("url")
            .starts_with("data:image/png;base64,"));

        conversation = app.ok("create_conversation", json!({}))["id"].clone();
        let status = ask(
            &app,
            &conversation,
            "What is in this picture?",
            vec![staged["token"].clone()],
        );
        assert_eq!(status, Ok(json!("complete")));

        let chat = app.ok("get_conversation", json!({ "id": conversation }));
        assert_eq!(chat["title"], "What is in this picture?");
        assert_eq!(chat["modelId"], info["id"]);
        let messages = chat["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["images"][0]["sha256"], staged["sha256"]);
        let answer = &messages[1];
        assert_eq!(answer["role"], "assistant");
        assert_eq!(answer["status"], "complete");
        assert!(!answer["content"].as_str().expect("content").is_empty());
        assert_eq!(answer["stats"]["images"], 1);
        assert!(answer["stats"]["generatedTokens"].as_u64().expect("tokens") > 0);
        assert_eq!(answer["provenance"]["modelId"], info["id"]);
        assert_eq!(answer["provenance"]["imageSize"], 56);

        // The staged token was used up by the message.
        let err = app.err("image_preview", json!({ "token": staged["token"] }));
        assert_eq!(err["kind"], "not_found");

        let again = app.ok(
            "regenerate",
            json!({ "conversationId": conversation,
            "messageId": answer["id"], "onEvent": "__CHANNEL__:2" }),
        );
        assert_eq!(again, "complete");
        let chat = app.ok("get_conversation", json!({ "id": conversation }));
        assert_eq!(
            chat["messages"][1]["siblingIds"]
                .as_array()
                .expect("siblings")
                .len(),
            2
        );
    }
    // A restart loads the last model by itself and finds the conversation.
    let app = start(dir.path());
    let status = wait_ready(&app);
    assert_eq!(status["state"], "ready", "{status}");
    let settings = app.ok("get_settings", json!({}));
    assert_eq!(settings["lastModelPath"], model_dir.display().to_string());
    let chat = app.ok("get_conversation", json!({ "id": conversation }));
    assert_eq!(chat["messages"].as_array().expect("messages").len(), 2);
    assert_eq!(
        ask(&app, &conversation, "And the colours?", vec![]),
        Ok(json!("complete"))
    );
}

#[test]
fn a_model_that_cannot_load_is_reported_and_the_app_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    let err = app.err("load_model", json!({ "path": dir.path() }));
    assert_eq!(err["kind"], "engine");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("config.json"),
        "{err}"
    );
    let status = app.ok("model_status", json!({}));
    assert_eq!(status["state"], "error");
    assert!(status["error"]
        .as_str()
        .expect("error")
        .contains("config.json"));
    assert!(app.ok("list_conversations", json!({})).as_array().is_some());
}

#[test]
fn stop_ends_the_answer_as_stopped_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    app.ok(
        "load_model",
        json!({ "path": repo_root().join(TINY_MODEL) }),
    );
    let conversation = app.ok("create_conversation", json!({}))["id"].clone();
    let window = app.window.clone();
    let question = conversation.clone();
    let asking = std::thread::spawn(move || {
        invoke_on(
            &window,
            "send_message",
            json!({ "conversationId": question, "text": "Tell me a story.", "imageTokens": [],
                    "onEvent": "__CHANNEL__:3" }),
        )
    });
    // Press stop until the answer has ended: the first press that lands while the answer
    // is being written must end it.
    while !asking.is_finished() {
        app.ok("stop_generation", json!({}));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let status = asking.join().expect("send_message thread");
    assert_eq!(status, Ok(json!("stopped")));
    let chat = app.ok("get_conversation", json!({ "id": conversation }));
    let answer = &chat["messages"][1];
    assert_eq!(answer["status"], "stopped");
    assert_eq!(answer["stats"]["stopReason"], "cancelled");
    assert_eq!(answer["error"], Value::Null);

    // The app is free again: the next question is answered.
    let next = app.invoke(
        "send_message",
        json!({ "conversationId": conversation, "text": "Go on.", "imageTokens": [],
                "onEvent": "__CHANNEL__:4" }),
    );
    assert_eq!(next, Ok(json!("complete")));
}

fn set_max_tokens(app: &TestApp, conversation: &Value, max_tokens: u64) {
    let settings = json!({ "temperature": 0.0, "topP": null, "topK": null,
                           "maxTokens": max_tokens, "repetitionPenalty": 1.0, "seed": 1 });
    app.ok(
        "set_chat_settings",
        json!({ "id": conversation, "systemPrompt": null, "settings": settings }),
    );
}

#[test]
fn a_cut_answer_is_continued_in_the_same_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    app.ok(
        "load_model",
        json!({ "path": repo_root().join(TINY_MODEL) }),
    );
    let question = "Describe the picture in detail.";

    // One uninterrupted greedy answer of four tokens ...
    let whole = app.ok("create_conversation", json!({}))["id"].clone();
    set_max_tokens(&app, &whole, 4);
    assert_eq!(ask(&app, &whole, question, vec![]), Ok(json!("complete")));
    let expected =
        app.ok("get_conversation", json!({ "id": whole }))["messages"][1]["content"].clone();

    // ... equals one cut at two tokens and continued by two more (this fixture's first
    // tokens re-tokenise exactly; see crates/engine/tests/continuation.rs).
    let conversation = app.ok("create_conversation", json!({}))["id"].clone();
    set_max_tokens(&app, &conversation, 2);
    assert_eq!(
        ask(&app, &conversation, question, vec![]),
        Ok(json!("complete"))
    );
    let chat = app.ok("get_conversation", json!({ "id": conversation }));
    let cut = chat["messages"][1].clone();
    assert_eq!(cut["stats"]["stopReason"], "max_tokens");
    let status = app.ok(
        "continue_message",
        json!({ "conversationId": conversation, "messageId": cut["id"],
                "onEvent": "__CHANNEL__:5" }),
    );
    assert_eq!(status, "complete");
    let chat = app.ok("get_conversation", json!({ "id": conversation }));
    let messages = chat["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "continued in place, no new message");
    let continued = &messages[1];
    assert_eq!(continued["id"], cut["id"]);
    assert_eq!(continued["status"], "complete");
    assert_eq!(continued["content"], expected);
    assert_eq!(continued["stats"]["generatedTokens"], 2);
    assert_eq!(continued["siblingIds"], json!([cut["id"]]));

    // A question, or an answer with a question after it, cannot be continued.
    let err = app.err(
        "continue_message",
        json!({ "conversationId": conversation, "messageId": messages[0]["id"],
                "onEvent": "__CHANNEL__:6" }),
    );
    assert_eq!(err["kind"], "invalid_input");
    assert_eq!(
        ask(&app, &conversation, "And then?", vec![]),
        Ok(json!("complete"))
    );
    let err = app.err(
        "continue_message",
        json!({ "conversationId": conversation, "messageId": cut["id"],
                "onEvent": "__CHANNEL__:7" }),
    );
    assert_eq!(err["kind"], "invalid_input");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("latest answer"),
        "{err}"
    );
    let chat = app.ok("get_conversation", json!({ "id": conversation }));
    assert_eq!(chat["messages"][1]["content"], expected, "nothing changed");
}

#[test]
fn exporting_a_missing_conversation_is_refused_before_any_dialog_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = start(dir.path());
    let err = app.err(
        "save_export",
        json!({ "id": "no-such-conversation", "format": "markdown" }),
    );
    assert_eq!(err["kind"], "not_found");
    let err = app.err("save_export", json!({ "id": null, "format": "pdf" }));
    assert!(err.as_str().is_some_and(|e| e.contains("`pdf`")), "{err}");
}

/// What `sha256sum` would print for the fixture's weight files, hashed (see model_hash.rs).
fn expected_model_hash(model_dir: &Path) -> String {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(model_dir)
        .expect("fixture folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    shards.sort();
    assert_eq!(shards.len(), 2, "the fixture has two shards");
    let listing: String = shards
        .iter()
        .map(|path| {
            let digest = impchat_models::hashing::sha256_file(path).expect("readable");
            let name = path.file_name().expect("name").to_string_lossy();
            format!("{digest}  {name}\n")
        })
        .collect();
    let mut hasher = impchat_models::hashing::StreamHasher::new(listing.len() as u64);
    hasher.update(listing.as_bytes());
    hasher.finish().sha256
}

#[test]
fn answers_record_the_hash_of_the_model_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = repo_root().join(TINY_MODEL);
    let expected = expected_model_hash(&model_dir);
    {
        let app = start(dir.path());
        app.ok("load_model", json!({ "path": model_dir }));
        let conversation = app.ok("create_conversation", json!({}))["id"].clone();
        // The weights are hashed in the background after loading; answers written before
        // that finishes say null rather than wait.
        let mut recorded = Value::Null;
        for _ in 0..200 {
            assert_eq!(
                ask(&app, &conversation, "Hi", vec![]),
                Ok(json!("complete"))
            );
            let chat = app.ok("get_conversation", json!({ "id": conversation }));
            let messages = chat["messages"].as_array().expect("messages");
            recorded = messages[messages.len() - 1]["provenance"]["modelFileHash"].clone();
            if !recorded.is_null() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(recorded, json!(expected));
    }
    // After a restart the cached digests answer at once: the first answer has the hash.
    let app = start(dir.path());
    assert_eq!(wait_ready(&app)["state"], "ready");
    let conversation = app.ok("create_conversation", json!({}))["id"].clone();
    assert_eq!(
        ask(&app, &conversation, "Hi", vec![]),
        Ok(json!("complete"))
    );
    let chat = app.ok("get_conversation", json!({ "id": conversation }));
    assert_eq!(
        chat["messages"][1]["provenance"]["modelFileHash"],
        json!(expected)
    );
}
