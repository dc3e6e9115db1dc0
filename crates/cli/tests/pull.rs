//! `impchat models pull` against a hub look-alike on 127.0.0.1 (HF_ENDPOINT): every file
//! answers HEAD with its SHA-256 as ETag and GET with its bytes, one request per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;
use sha2::{Digest, Sha256};

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

fn answer(mut stream: TcpStream, content: fn(&str) -> Vec<u8>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let Some((_, rest)) = target.split_once("/resolve/") else {
        return write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    let file = rest.split_once('/').map_or(rest, |(_, file)| file);
    let body = content(file);
    let digest = hex(&Sha256::digest(&body));
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nETag: \"{digest}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method == "GET" {
        stream.write_all(&body)?;
    }
    stream.flush()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn start_hub(content: fn(&str) -> Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer(stream, content));
        }
    });
    format!("http://{address}")
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
    let endpoint = start_hub(file_bytes);
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

    let verify = impchat(dir.path(), &endpoint, &["verify", "imp-v1.5-3b-phi2"]);
    assert!(verify.status.success(), "{verify:?}");

    let again = impchat(dir.path(), &endpoint, &["pull", "imp-v1.5-3b-phi2"]);
    assert_eq!(again.status.code(), Some(4), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already installed"));
}

#[test]
fn a_failed_conversion_installs_nothing_and_says_why() {
    let endpoint = start_hub(file_bytes);
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
    let endpoint = start_hub(checkpoint_bytes);
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
