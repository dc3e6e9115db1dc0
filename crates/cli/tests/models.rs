//! `impchat models` and `impchat convert` against the tiny random-weight fixture checkpoint.

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/imp-v1.5-3b-phi2")
}

fn models(dir: &Path, args: &[&str]) -> std::process::Output {
    cargo_bin_cmd!("impchat")
        .arg("models")
        .args(args)
        .arg("--models-dir")
        .arg(dir)
        .output()
        .expect("impchat runs")
}

fn listed(dir: &Path) -> Vec<Value> {
    let output = models(dir, &["list", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let json: Value = serde_json::from_slice(&output.stdout).expect("list --json prints JSON");
    json["models"].as_array().expect("models array").clone()
}

fn one_line_error(output: &std::process::Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("impchat: "), "{stderr}");
    stderr
}

#[test]
fn list_shows_the_catalog_with_fit_verdicts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = listed(dir.path());
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        [
            "imp-v1-3b",
            "imp-v1.5-3b-phi2",
            "imp-v1.5-3b-196",
            "imp-v1.5-2b-qwen1.5",
            "imp-v1.5-4b-phi3"
        ]
    );
    for row in &rows {
        assert_eq!(row["installed"], false);
        assert!(row["required_ram_bytes"].as_u64().is_some_and(|b| b > 0));
        assert!(row["download_bytes"].as_u64().is_some_and(|b| b > 0));
    }
}

#[test]
fn import_list_verify_remove_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fixture_model();
    let output = models(dir.path(), &["import", model.to_str().expect("utf-8 path")]);
    assert!(output.status.success(), "{output:?}");

    let rows = listed(dir.path());
    let row = rows
        .iter()
        .find(|r| r["id"] == "imp-v1.5-3b-phi2")
        .expect("imported model listed");
    assert_eq!(row["installed"], true);
    assert!(row["size_on_disk"].as_u64().is_some_and(|b| b > 0));
    let installed_path = PathBuf::from(row["path"].as_str().expect("path"));
    assert!(installed_path.join("config.json").is_file());

    let verified = models(dir.path(), &["verify", "imp-v1.5-3b-phi2"]);
    assert!(verified.status.success(), "{verified:?}");

    let again = models(dir.path(), &["import", model.to_str().expect("utf-8 path")]);
    one_line_error(&again, 4);

    let removed = models(dir.path(), &["remove", "imp-v1.5-3b-phi2"]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(!installed_path.exists());
    assert!(listed(dir.path()).iter().all(|r| r["installed"] == false));
    one_line_error(&models(dir.path(), &["verify", "imp-v1.5-3b-phi2"]), 4);
}

#[test]
fn verify_reports_a_damaged_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fixture_model();
    let output = models(dir.path(), &["import", model.to_str().expect("utf-8 path")]);
    assert!(output.status.success(), "{output:?}");
    let config = dir.path().join("imp-v1.5-3b-phi2/config.json");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push(' ');
    std::fs::write(&config, text).expect("damage config");
    let stderr = one_line_error(&models(dir.path(), &["verify", "imp-v1.5-3b-phi2"]), 4);
    assert!(stderr.contains("config.json"), "{stderr}");
}

#[test]
fn importing_a_folder_that_is_not_a_model_is_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_model = tempfile::tempdir().expect("temp dir");
    std::fs::write(not_a_model.path().join("notes.txt"), "hello").expect("write");
    let output = models(
        dir.path(),
        &["import", not_a_model.path().to_str().expect("utf-8 path")],
    );
    let stderr = one_line_error(&output, 4);
    assert!(stderr.contains("config.json"), "{stderr}");
    assert!(listed(dir.path()).iter().all(|r| r["installed"] == false));
}

#[test]
fn pulling_an_unknown_id_names_the_way_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = one_line_error(&models(dir.path(), &["pull", "no-such-model"]), 4);
    assert!(stderr.contains("impchat models list"), "{stderr}");
}

#[test]
fn converted_gguf_answers_questions() {
    let out = tempfile::tempdir().expect("temp dir");
    let output = cargo_bin_cmd!("impchat")
        .arg("convert")
        .arg(fixture_model())
        .arg(out.path())
        .args(["--quant", "q8_0"])
        .output()
        .expect("impchat runs");
    assert!(output.status.success(), "{output:?}");
    let gguf = out.path().join("imp-v1.5-3b-phi2-Q8_0.gguf");
    assert!(gguf.is_file());
    assert!(out
        .path()
        .join("mmproj-imp-v1.5-3b-phi2-F16.gguf")
        .is_file());

    let answer = cargo_bin_cmd!("impchat")
        .arg("ask")
        .arg("--model")
        .arg(&gguf)
        .args(["--max-tokens", "4", "--json", "What is this?"])
        .output()
        .expect("impchat runs");
    assert!(answer.status.success(), "{answer:?}");
    let json: Value = serde_json::from_slice(&answer.stdout).expect("ask --json prints JSON");
    assert!(json["stats"]["generated_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));

    let again = cargo_bin_cmd!("impchat")
        .arg("convert")
        .arg(fixture_model())
        .arg(out.path())
        .args(["--quant", "q8_0"])
        .output()
        .expect("impchat runs");
    one_line_error(&again, 4);
}
