//! `impchat models pull` against the models crate's hub look-alike on 127.0.0.1 (HF_ENDPOINT):
//! resolve redirects, X-Linked-Etag/Size, Range, and the commit in X-Repo-Commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin_cmd;
use impchat_models::test_support::hub_server::{Fault, HubServer, COMMIT};
use impchat_models::Catalog;
use serde_json::Value;

const MODEL: &str = "imp-v1.5-3b-phi2";

fn file_bytes(path: &str) -> Vec<u8> {
    format!("{path}: bytes served by the test hub\n")
        .repeat(2000)
        .into_bytes()
}

/// The tiny fixture checkpoint under the catalog's file names (its two shards renamed to the
/// first two of the catalog's seven; the other five are empty safetensors files).
fn checkpoint_bytes(path: &str) -> Vec<u8> {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/imp-v1.5-3b-phi2");
    let renamed = |name: &str| name.replace("-of-00007", "-of-00002");
    match path {
        "model.safetensors.index.json" => std::fs::read_to_string(fixture.join(path))
            .expect("fixture index")
            .replace("-of-00002", "-of-00007")
            .into_bytes(),
        "model-00001-of-00007.safetensors" | "model-00002-of-00007.safetensors" => {
            std::fs::read(fixture.join(renamed(path))).expect("fixture shard")
        }
        shard if shard.ends_with(".safetensors") => {
            let mut empty = 8u64.to_le_bytes().to_vec();
            empty.extend_from_slice(b"{}      ");
            empty
        }
        other => std::fs::read(fixture.join(other)).expect("fixture file"),
    }
}

/// Serves every file the catalog lists for `MODEL`, with bytes from `content`.
fn start_hub(content: fn(&str) -> Vec<u8>) -> HubServer {
    let catalog = Catalog::builtin().expect("built-in catalog");
    let entry = catalog.get(MODEL).expect("catalog entry");
    let files: BTreeMap<String, Vec<u8>> = entry
        .files
        .iter()
        .map(|file| (file.path.clone(), content(&file.path)))
        .collect();
    HubServer::start_repo(&entry.repo, &files)
}

fn impchat(dir: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    cargo_bin_cmd!("impchat")
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .arg("models")
        .args(args)
        .arg("--models-dir")
        .arg(dir)
        .output()
        .expect("impchat runs")
}

#[test]
fn pull_downloads_verifies_and_installs_with_progress() {
    let hub = start_hub(file_bytes);
    let endpoint = hub.endpoint.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let output = impchat(dir.path(), &endpoint, &["pull", "imp-v1.5-3b-phi2"]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("imp-v1.5-3b-phi2:"), "{stderr}");

    let config = dir.path().join("imp-v1.5-3b-phi2/config.json");
    assert_eq!(
        std::fs::read(&config).expect("config.json installed"),
        file_bytes("config.json")
    );

    let list = impchat(dir.path(), &endpoint, &["list", "--json"]);
    let json: Value = serde_json::from_slice(&list.stdout).expect("JSON");
    let row = json["models"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == "imp-v1.5-3b-phi2"))
        .expect("listed");
    assert_eq!(row["installed"], true);
    assert_eq!(
        row["commit"], COMMIT,
        "the resolved commit is recorded and listed"
    );

    let verify = impchat(dir.path(), &endpoint, &["verify", "imp-v1.5-3b-phi2"]);
    assert!(verify.status.success(), "{verify:?}");

    let again = impchat(dir.path(), &endpoint, &["pull", "imp-v1.5-3b-phi2"]);
    assert_eq!(again.status.code(), Some(4), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already installed"));
}

#[test]
fn a_failed_conversion_installs_nothing_and_says_why() {
    let hub = start_hub(file_bytes);
    let endpoint = hub.endpoint.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    // The test hub's bytes are not real safetensors, so the GGUF conversion must refuse them.
    let output = impchat(
        dir.path(),
        &endpoint,
        &["pull", "imp-v1.5-3b-phi2", "--quant", "q8_0"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("impchat: converting the downloaded model failed"),
        "{stderr}"
    );
    assert!(!dir.path().join("imp-v1.5-3b-phi2").exists());

    let plain = impchat(dir.path(), &endpoint, &["pull", "imp-v1.5-3b-phi2"]);
    assert!(plain.status.success(), "{plain:?}");
}

#[test]
fn pull_with_quant_installs_a_gguf_that_answers() {
    let hub = start_hub(checkpoint_bytes);
    let endpoint = hub.endpoint.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let output = impchat(
        dir.path(),
        &endpoint,
        &["pull", "imp-v1.5-3b-phi2", "--quant", "q8_0"],
    );
    assert!(output.status.success(), "{output:?}");
    let installed = dir.path().join("imp-v1.5-3b-phi2");
    let gguf = installed.join("imp-v1.5-3b-phi2-Q8_0.gguf");
    assert!(gguf.is_file());
    assert!(installed.join("mmproj-imp-v1.5-3b-phi2-F16.gguf").is_file());

    let verify = impchat(dir.path(), &endpoint, &["verify", "imp-v1.5-3b-phi2"]);
    assert!(verify.status.success(), "{verify:?}");

    let answer = cargo_bin_cmd!("impchat")
        .arg("ask")
        .arg("--model")
        .arg(&gguf)
        .args(["--max-tokens", "3", "--json", "Hello?"])
        .output()
        .expect("impchat runs");
    assert!(answer.status.success(), "{answer:?}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_keeps_the_parts_and_the_next_pull_resumes_them() {
    use std::process::{Command, Stdio};

    let hub = start_hub(file_bytes);
    let endpoint = hub.endpoint.clone();
    let catalog = Catalog::builtin().expect("built-in catalog");
    for file in &catalog.get(MODEL).expect("catalog entry").files {
        hub.set_fault(&file.path, Fault::Slow { delay_ms: 300 });
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let staging = dir.path().join(".staging/imp-v1.5-3b-phi2");
    let child = Command::new(env!("CARGO_BIN_EXE_impchat"))
        .env("HF_ENDPOINT", &endpoint)
        .env_remove("HF_TOKEN")
        .args(["models", "pull", "imp-v1.5-3b-phi2", "--models-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let started = Instant::now();
    let downloading = || {
        std::fs::read_dir(&staging).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_string_lossy().ends_with(".part")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    };
    while !downloading() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the download never started"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let output = child.wait_with_output().expect("exits");
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.contains("cancelled")),
        "{stderr}"
    );
    assert!(!dir.path().join("imp-v1.5-3b-phi2").exists());
    assert!(downloading(), "the partial files are kept");

    hub.clear_faults();
    let resumed = impchat(dir.path(), &endpoint, &["pull", "imp-v1.5-3b-phi2"]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(
        String::from_utf8_lossy(&resumed.stdout).contains("resumed"),
        "{resumed:?}"
    );
    let verify = impchat(dir.path(), &endpoint, &["verify", "imp-v1.5-3b-phi2"]);
    assert!(verify.status.success(), "{verify:?}");
}
