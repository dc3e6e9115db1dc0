//! Export for a phone's share sheet: the bytes come back over IPC, nothing is left on disk.

use std::path::Path;

use impchat_app_lib::{app_builder, init};
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{
    get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY,
};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};

fn start(data_dir: &Path) -> (App<MockRuntime>, WebviewWindow<MockRuntime>) {
    let app = app_builder(mock_builder())
        .build(mock_context(noop_assets()))
        .expect("app builds");
    init(app.handle(), data_dir).expect("state opens");
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("window builds");
    (app, window)
}

fn invoke(
    window: &WebviewWindow<MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<InvokeResponseBody, Value> {
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("data dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_export_for_sharing_arrives_as_bytes_with_its_file_name_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_app, window) = start(dir.path());
    let created = invoke(
        &window,
        "create_conversation",
        json!({ "title": "Receipts: March" }),
    )
    .expect("created")
    .deserialize::<Value>()
    .expect("json");
    let before = files_in(dir.path());

    let markdown = invoke(
        &window,
        "export_bytes",
        json!({ "id": created["id"], "format": "markdown" }),
    )
    .expect("exported");
    let InvokeResponseBody::Raw(bytes) = markdown else {
        panic!("expected raw bytes, got JSON");
    };
    let text = String::from_utf8(bytes).expect("utf-8 markdown");
    assert!(text.contains("Receipts: March"), "{text}");

    let zip = invoke(
        &window,
        "export_bytes",
        json!({ "id": null, "format": "zip" }),
    )
    .expect("exported");
    let InvokeResponseBody::Raw(bytes) = zip else {
        panic!("expected raw bytes, got JSON");
    };
    assert_eq!(&bytes[..2], b"PK", "a zip archive");
    assert_eq!(files_in(dir.path()), before, "no temporary file is left");

    let name = invoke(
        &window,
        "export_file_name",
        json!({ "id": created["id"], "format": "zip" }),
    )
    .expect("name")
    .deserialize::<Value>()
    .expect("json");
    assert_eq!(name, "Receipts- March.zip");

    let missing = invoke(
        &window,
        "export_bytes",
        json!({ "id": "nope", "format": "zip" }),
    )
    .expect_err("unknown conversation");
    assert_eq!(missing["kind"], "not_found", "{missing}");
}
