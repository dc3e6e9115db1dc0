//! Downloading a catalog model through Tauri's IPC layer (mock runtime) from a Hugging Face
//! Hub look-alike on 127.0.0.1 that serves the tiny fixture checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use impchat_app_lib::{app_builder, init_with, DownloadSource};
use impchat_models::test_support::hub_server::{Fault, HubServer, COMMIT};
use impchat_models::{Catalog, CatalogFile, HubConfig};
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY,
};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};

const MODEL: &str = "imp-v1.5-3b-196";
const SHARD: &str = "model-00001-of-00002.safetensors";

fn fixture_files() -> BTreeMap<String, Vec<u8>> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/imp-v1.5-3b-196");
    std::fs::read_dir(&dir)
        .expect("fixture folder")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("fixture file"))
        })
        .collect()
}

/// The built-in catalog, with the 196 px entry listing the fixture's files.
fn catalog(files: &BTreeMap<String, Vec<u8>>) -> Catalog {
    let mut catalog = Catalog::builtin().expect("catalog");
    let entry = catalog
        .models
        .iter_mut()
        .find(|m| m.id.as_str() == MODEL)
        .expect("entry");
    entry.files = files
        .iter()
        .map(|(path, bytes)| CatalogFile {
            path: path.clone(),
            size_bytes: bytes.len() as u64,
            size_is_estimate: false,
            optional: false,
        })
        .collect();
    catalog
}

fn source(endpoint: &str, files: &BTreeMap<String, Vec<u8>>) -> DownloadSource {
    DownloadSource {
        hub: HubConfig {
            endpoint: endpoint.to_string(),
            max_retries: 1,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_millis(500),
            ..HubConfig::default()
        },
        catalog: catalog(files),
    }
}

fn repo(files: &BTreeMap<String, Vec<u8>>) -> String {
    catalog(files).get(MODEL).expect("entry").repo.clone()
}

struct TestApp {
    _app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
}

impl TestApp {
    fn start(data_dir: &Path, source: DownloadSource) -> Self {
        let app = app_builder(mock_builder())
            .build(mock_context(noop_assets()))
            .expect("app builds");
        init_with(app.handle(), data_dir, source).expect("state opens");
        let window = WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .expect("window builds");
        Self { _app: app, window }
    }

    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        invoke_on(&self.window, cmd, args)
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        self.invoke(cmd, args)
            .unwrap_or_else(|err| panic!("{cmd} failed: {err}"))
    }

    fn download(&self) -> Result<Value, Value> {
        download_on(&self.window)
    }

    fn catalog_entry(&self) -> Value {
        let list = self.ok("model_catalog", json!({}));
        list.as_array()
            .expect("list")
            .iter()
            .find(|e| e["id"] == MODEL)
            .cloned()
            .expect("entry listed")
    }
}

fn invoke_on(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
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
    .map(|body| body.deserialize::<Value>().expect("JSON reply"))
}

/// Progress goes to a channel the mock webview does not read; the outcome is the reply.
fn download_on(window: &WebviewWindow<MockRuntime>) -> Result<Value, Value> {
    invoke_on(
        window,
        "download_model",
        json!({ "id": MODEL, "quant": null, "onEvent": "__CHANNEL__:1" }),
    )
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn a_catalog_model_downloads_records_its_commit_and_loads() {
    let files = fixture_files();
    let server = HubServer::start_repo(&repo(&files), &files);
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::start(dir.path(), source(&server.endpoint, &files));

    let before = app.catalog_entry();
    assert_eq!(before["installed"], Value::Null);
    assert_eq!(before["revision"], "main");

    let installed = app.download().expect("download succeeds");
    assert_eq!(installed["id"], MODEL);
    assert_eq!(installed["commit"], COMMIT);
    let path = PathBuf::from(installed["path"].as_str().expect("path"));
    assert_eq!(path, dir.path().join("models").join(MODEL));
    for (name, bytes) in &files {
        assert_eq!(
            &std::fs::read(path.join(name)).expect(name),
            bytes,
            "{name}"
        );
    }

    let listed = app.catalog_entry();
    assert_eq!(listed["installed"]["commit"], COMMIT);
    assert_eq!(listed["partialBytes"], 0);
    assert_eq!(listed["downloading"], false);
    let all = app.ok("installed_models", json!({}));
    assert_eq!(all[0]["id"], MODEL);

    let info = app.ok("load_model", json!({ "path": installed["loadPath"] }));
    assert_eq!(info["imageSize"], 42);
    assert_eq!(app.ok("model_status", json!({}))["state"], "ready");

    let again = app.download().expect_err("already installed");
    assert_eq!(again["kind"], "invalid_input", "{again}");
}

#[test]
fn a_cancelled_download_keeps_its_parts_and_resumes_after_a_restart() {
    let files = fixture_files();
    let server = HubServer::start_repo(&repo(&files), &files);
    server.set_fault(SHARD, Fault::Slow { delay_ms: 40 });
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let app = TestApp::start(dir.path(), source(&server.endpoint, &files));
        let cancelled = std::thread::scope(|scope| {
            let window = app.window.clone();
            let running = scope.spawn(move || download_on(&window));
            wait_until("part of the shard is on disk", || {
                let entry = app.catalog_entry();
                entry["downloading"] == true && entry["partialBytes"].as_u64() > Some(50_000)
            });
            assert_eq!(
                app.ok("cancel_download", json!({ "id": MODEL })),
                json!(true)
            );
            running.join().expect("download thread")
        });
        let err = cancelled.expect_err("cancelled");
        assert_eq!(err["kind"], "cancelled", "{err}");
        assert!(
            err["message"].as_str().expect("message").contains("kept"),
            "{err}"
        );
        assert_eq!(
            app.ok("cancel_download", json!({ "id": MODEL })),
            json!(false)
        );
    }

    // A restart sees the kept bytes and the next download asks only for the rest.
    server.clear_faults();
    let app = TestApp::start(dir.path(), source(&server.endpoint, &files));
    let entry = app.catalog_entry();
    assert!(entry["partialBytes"].as_u64() > Some(50_000), "{entry}");
    assert_eq!(entry["installed"], Value::Null);
    let installed = app.download().expect("resumed download");
    assert_eq!(installed["commit"], COMMIT);
    let ranged = server
        .downloads_of(SHARD)
        .into_iter()
        .filter(|request| request.range.is_some())
        .count();
    assert!(ranged >= 1, "the shard was fetched again from the start");
}

#[test]
fn download_errors_say_what_happened_and_retry_recovers() {
    let files = fixture_files();
    let server = HubServer::start_repo(&repo(&files), &files);
    let dir = tempfile::tempdir().expect("tempdir");

    // Nothing listens on the endpoint: offline.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let offline_endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let offline = TestApp::start(dir.path(), source(&offline_endpoint, &files));
    let err = offline.download().expect_err("offline");
    assert_eq!(err["kind"], "download", "{err}");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("internet connection"),
        "{err}"
    );
    drop(offline);

    let app = TestApp::start(dir.path(), source(&server.endpoint, &files));
    server.set_fault(SHARD, Fault::FlipByte { offset: 1000 });
    let err = app.download().expect_err("damaged shard");
    assert_eq!(err["kind"], "download", "{err}");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("damaged"),
        "{err}"
    );

    server.set_fault("config.json", Fault::ResolveStatus { code: 404 });
    let err = app.download().expect_err("missing file");
    assert_eq!(err["kind"], "not_found", "{err}");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("config.json"),
        "{err}"
    );

    // Retry once the server behaves.
    server.clear_faults();
    let installed = app.download().expect("retry succeeds");
    assert_eq!(installed["id"], MODEL);
}

#[test]
fn an_unknown_model_or_format_is_refused_before_anything_is_fetched() {
    let files = fixture_files();
    let server = HubServer::start_repo(&repo(&files), &files);
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::start(dir.path(), source(&server.endpoint, &files));
    let err = app
        .invoke(
            "download_model",
            json!({ "id": "imp-v9", "quant": null, "onEvent": "__CHANNEL__:1" }),
        )
        .expect_err("unknown id");
    assert_eq!(err["kind"], "not_found", "{err}");
    let err = app
        .invoke(
            "download_model",
            json!({ "id": MODEL, "quant": "q2_k", "onEvent": "__CHANNEL__:1" }),
        )
        .expect_err("unknown format");
    assert_eq!(err["kind"], "invalid_input", "{err}");
    assert!(server.log().is_empty(), "{:?}", server.log());
}
