//! Hostile and careless input to the real `impchat` binary: endless and special files,
//! stdout that fails, flags with negative numbers, model paths that are nearly right, and
//! answers the context cuts off. Every case must end in bounded time with a clear message.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

/// Far above what any case here needs; a regression hangs no longer than this.
const HANG_LIMIT: Duration = Duration::from_secs(120);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model() -> PathBuf {
    fixtures().join("models/imp-v1.5-3b-phi2")
}

fn shapes_png() -> PathBuf {
    fixtures().join("images/shapes.png")
}

fn impchat() -> assert_cmd::Command {
    let mut command = cargo_bin_cmd!("impchat");
    command.timeout(HANG_LIMIT);
    command
}

fn ask(args: &[&str]) -> assert_cmd::Command {
    let mut command = impchat();
    command
        .arg("ask")
        .arg("--model")
        .arg(model())
        .args(["--max-tokens", "4"])
        .args(args);
    command
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Failed with `code` and said why on one stderr line, which it returns.
fn fails_with(output: &Output, code: i32) -> String {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("impchat: "), "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    stderr
}

fn succeeds(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", stderr_of(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mkfifo(dir: &Path) -> PathBuf {
    let path = dir.join("image.fifo");
    let status = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(status.success());
    path
}

/// Runs the real binary with stdout on `/dev/full` (every write fails with ENOSPC).
fn with_full_stdout(args: &[&str], stdin: &str) -> Output {
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut child = Command::new(env!("CARGO_BIN_EXE_impchat"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .expect("impchat starts");
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        input.write_all(stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("impchat ends")
}

fn model_str() -> String {
    model().display().to_string()
}

// ---- 1. Endless or special files as input ----

#[test]
fn endless_devices_as_image_are_refused_at_once() {
    for device in ["/dev/zero", "/dev/urandom"] {
        let output = ask(&["--image", device, "What is this?"])
            .output()
            .expect("runs");
        let message = fails_with(&output, 4);
        assert!(
            message.contains(&format!("cannot read image '{device}'"))
                && message.contains("a character device")
                && message.contains("save the image to a file"),
            "{message}"
        );
    }
}

#[test]
fn a_fifo_with_no_writer_times_out_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = mkfifo(dir.path());
    let output = ask(&["--read-timeout", "0.5", "--image"])
        .arg(&fifo)
        .arg("What is this?")
        .output()
        .expect("runs");
    let message = fails_with(&output, 4);
    assert!(
        message.contains("did not finish arriving within 0.5 s")
            && message.contains("--read-timeout SECONDS"),
        "{message}"
    );
}

#[test]
fn an_endless_pipe_on_stdin_stops_at_the_size_cap() {
    let script = format!(
        "cat /dev/zero | '{}' ask --model '{}' --image - 'What is this?'",
        env!("CARGO_BIN_EXE_impchat"),
        model_str()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    let message = fails_with(&output, 4);
    assert!(
        message.contains("cannot read image '-'") && message.contains("64 MiB"),
        "{message}"
    );
}

#[test]
fn an_image_from_stdin_is_read() {
    let png = std::fs::read(shapes_png()).expect("fixture");
    let output = ask(&["--json", "--image", "-", "What is this?"])
        .write_stdin(png)
        .output()
        .expect("runs");
    let json: Value = serde_json::from_str(&succeeds(&output)).expect("JSON");
    assert_eq!(json["stats"]["images"], 1, "{json}");
}

#[test]
fn an_image_from_process_substitution_is_read() {
    let script = format!(
        "'{}' ask --model '{}' --max-tokens 4 --json --image <(cat '{}') 'What is this?'",
        env!("CARGO_BIN_EXE_impchat"),
        model_str(),
        shapes_png().display()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    let json: Value = serde_json::from_str(&succeeds(&output)).expect("JSON");
    assert_eq!(json["stats"]["images"], 1, "{json}");
}

#[test]
fn stdin_feeds_one_thing_only() {
    let output = ask(&["--image", "-", "--image", "-", "What?"])
        .output()
        .expect("runs");
    assert!(fails_with(&output, 2).contains("more than once"));
    let output = ask(&["--image", "-", "-"]).output().expect("runs");
    assert!(fails_with(&output, 2).contains("both read stdin"));
}

#[test]
fn chat_refuses_a_device_and_keeps_going() {
    let output = impchat()
        .args(["chat", "--model"])
        .arg(model())
        .args(["--max-tokens", "2"])
        .write_stdin("/image /dev/zero\n/image -\nHello\n/quit\n")
        .output()
        .expect("runs");
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot read image '/dev/zero': this is a character device"),
        "{stderr}"
    );
    assert!(stderr.contains("/image takes a file's path"), "{stderr}");
    assert_eq!(stderr.matches(" tokens/s").count(), 1, "{stderr}");
}

// ---- Solid cases that must stay solid ----

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

/// A 60 KB-ish PNG header claiming 100000 x 100000 pixels (30 GB decoded).
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn broken_images_exit_4_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, png_bomb()).expect("write");
    let truncated = dir.path().join("truncated.png");
    let whole = std::fs::read(shapes_png()).expect("fixture");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).expect("write");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").expect("write");
    let folder = dir.path().join("photos");
    std::fs::create_dir(&folder).expect("mkdir");

    for (path, reason) in [
        (&bomb, "100000"),
        (&truncated, ""),
        (&empty, "empty"),
        (&folder, "this is a folder"),
    ] {
        let output = ask(&["--image"])
            .arg(path)
            .arg("What is this?")
            .output()
            .expect("runs");
        let message = fails_with(&output, 4);
        assert!(
            message.contains(&format!("cannot read image '{}'", path.display()))
                && message.contains(reason),
            "{message}"
        );
        assert!(output.stdout.is_empty());
    }
}

// ---- 5. Output errors ----

#[test]
fn ask_into_a_full_disk_exits_1_naming_stdout() {
    let model = model_str();
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["ask", "--model", &model, "--max-tokens", "4"];
        args.extend_from_slice(extra);
        args.push("What is this?");
        let output = with_full_stdout(&args, "");
        let message = fails_with(&output, 1);
        assert!(message.contains("cannot write to stdout"), "{message}");
        assert!(message.contains("No space left on device"), "{message}");
    }
}

#[test]
fn ask_into_a_closed_pipe_stops_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_impchat"))
        .args(["ask", "--model", &model_str(), "--max-tokens", "8", "Hi"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("impchat starts");
    // The reader is gone before the first token: every write fails with EPIPE.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("impchat ends");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(output.stderr.is_empty(), "{}", stderr_of(&output));
}

#[test]
fn chat_into_a_full_disk_exits_1_naming_stdout() {
    let model = model_str();
    let output = with_full_stdout(
        &["chat", "--model", &model, "--max-tokens", "4"],
        "Hello\nAgain\n",
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("impchat: cannot write to stdout: No space left on device"),
        "{stderr}"
    );
    // It stopped at the first answer that could not be shown.
    assert_eq!(stderr.matches(" tokens/s").count(), 1, "{stderr}");
}

#[test]
fn models_and_convert_into_a_full_disk_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let models_dir = dir.path().join("models").display().to_string();
    for args in [
        vec!["models", "list", "--models-dir", &models_dir],
        vec!["models", "list", "--json", "--models-dir", &models_dir],
    ] {
        let message = fails_with(&with_full_stdout(&args, ""), 1);
        assert!(message.contains("cannot write to stdout"), "{message}");
    }
    let out = dir.path().join("gguf").display().to_string();
    let model = model_str();
    let output = with_full_stdout(&["convert", &model, &out, "--quant", "q8_0"], "");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("impchat: cannot write to stdout"),
        "{stderr}"
    );
}

#[test]
fn bench_into_a_full_disk_exits_1() {
    let cache = tempfile::tempdir().expect("temp dir");
    let cache = cache.path().display().to_string();
    let args = [
        "bench",
        "--size",
        "tiny",
        "--runs",
        "1",
        "--long-tokens",
        "0",
        "--cache",
        &cache,
    ];
    let output = with_full_stdout(&args, "");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("impchat: cannot write to stdout"),
        "{stderr}"
    );
}

// ---- 7. Advice that can be followed ----

#[test]
fn negative_numbers_get_a_message_about_the_value() {
    for (flag, value) in [
        ("--max-tokens", "-1"),
        ("--temp", "-1"),
        ("--temperature", "-1"),
        ("--threads", "-2"),
        ("--top-k", "-3"),
        ("--top-p", "-0.5"),
        ("--seed", "-1"),
        ("--read-timeout", "-1"),
    ] {
        let output = impchat()
            .args(["ask", "--model"])
            .arg(model())
            .args([flag, value, "What?"])
            .output()
            .expect("runs");
        let message = fails_with(&output, 2);
        assert!(
            !message.contains("unexpected argument"),
            "{flag}: {message}"
        );
        assert!(
            message.contains(&format!("invalid value '{value}'")),
            "{flag}: {message}"
        );
    }
    let output = impchat()
        .args(["bench", "--size", "tiny", "--runs", "-1"])
        .output()
        .expect("runs");
    assert!(!fails_with(&output, 2).contains("unexpected argument"));
}

/// Converts the fixture into `dir` and returns the language-model GGUF and its mmproj.
fn convert_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let output = impchat()
        .arg("convert")
        .arg(model())
        .arg(dir)
        .args(["--quant", "q8_0"])
        .output()
        .expect("runs");
    succeeds(&output);
    let mut lm = None;
    let mut mmproj = None;
    for entry in std::fs::read_dir(dir).expect("listing").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("mmproj-") {
            mmproj = Some(entry.path());
        } else if name.ends_with(".gguf") {
            lm = Some(entry.path());
        }
    }
    (lm.expect("an LM gguf"), mmproj.expect("an mmproj gguf"))
}

#[test]
fn gguf_models_get_advice_naming_real_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (lm, mmproj) = convert_fixture(dir.path());
    let lm_name = lm.file_name().expect("name").to_string_lossy().into_owned();

    // A folder of GGUF files: the message names the file to pass.
    let output = impchat()
        .arg("ask")
        .arg("--model")
        .arg(dir.path())
        .arg("Hi")
        .output()
        .expect("runs");
    let message = fails_with(&output, 3);
    assert!(
        message.contains(&format!("holds {lm_name}: pass --model {}", lm.display())),
        "{message}"
    );

    // Two vision files beside it: the advice is the flag, not the engine's API.
    let mmproj_name = mmproj
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let twin_name = mmproj_name.replace(".gguf", "-copy.gguf");
    let twin = dir.path().join(twin_name);
    std::fs::copy(&mmproj, &twin).expect("copy");
    let output = impchat()
        .arg("ask")
        .arg("--model")
        .arg(&lm)
        .arg("Hi")
        .output()
        .expect("runs");
    let message = fails_with(&output, 3);
    assert!(message.contains("--mmproj PATH"), "{message}");
    assert!(!message.contains("LoadOptions"), "{message}");

    // --mmproj picks one and the question is answered, with an image.
    let output = impchat()
        .arg("ask")
        .arg("--model")
        .arg(&lm)
        .arg("--mmproj")
        .arg(&twin)
        .args(["--max-tokens", "4", "--json", "--image"])
        .arg(shapes_png())
        .arg("What is this?")
        .output()
        .expect("runs");
    let json: Value = serde_json::from_str(&succeeds(&output)).expect("JSON");
    assert_eq!(json["stats"]["images"], 1, "{json}");

    // --mmproj with a checkpoint folder, or naming nothing, says what is wrong.
    let output = ask(&["--mmproj"])
        .arg(&twin)
        .arg("Hi")
        .output()
        .expect("runs");
    assert!(fails_with(&output, 2).contains("--mmproj goes with a .gguf --model"));
    let output = impchat()
        .arg("ask")
        .arg("--model")
        .arg(&lm)
        .args(["--mmproj", "/nonexistent/mmproj.gguf", "Hi"])
        .output()
        .expect("runs");
    assert!(fails_with(&output, 3).contains("named by --mmproj: no such file"));
}

#[test]
fn convert_into_a_file_path_says_so_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = model_str();

    let wanted = dir.path().join("model.gguf");
    let output = impchat()
        .args(["convert", &model])
        .arg(&wanted)
        .output()
        .expect("runs");
    assert!(fails_with(&output, 2).contains("is a file path"));
    assert!(!wanted.exists(), "no folder named model.gguf is created");

    let existing = dir.path().join("notes.txt");
    std::fs::write(&existing, b"keep me").expect("write");
    let output = impchat()
        .args(["convert", &model])
        .arg(&existing)
        .output()
        .expect("runs");
    assert!(fails_with(&output, 2).contains("is a file path"));
    assert_eq!(std::fs::read(&existing).expect("kept"), b"keep me");

    // Under a file, the folder cannot be made: the cause is told once, not twice.
    let output = impchat()
        .args(["convert", &model])
        .arg(existing.join("out"))
        .output()
        .expect("runs");
    let message = fails_with(&output, 1);
    assert_eq!(message.matches("Not a directory").count(), 1, "{message}");
}

#[test]
fn convert_over_existing_outputs_names_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    convert_fixture(dir.path());
    let output = impchat()
        .args(["convert", &model_str()])
        .arg(dir.path())
        .args(["--quant", "q8_0"])
        .output()
        .expect("runs");
    let message = fails_with(&output, 4);
    assert!(
        message.contains("already exists; remove it, or pass --overwrite"),
        "{message}"
    );
}

// ---- 6. Answers the context cut off ----

/// The fixture checkpoint with a context window of `positions` tokens.
fn small_context_model(dir: &Path, positions: u64) -> PathBuf {
    let copy = dir.join("small-context");
    std::fs::create_dir(&copy).expect("mkdir");
    for entry in std::fs::read_dir(model()).expect("fixture").flatten() {
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
    }
    let config_path = copy.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).expect("config"))
            .expect("JSON");
    config["max_position_embeddings"] = positions.into();
    std::fs::write(&config_path, config.to_string()).expect("write config");
    copy
}

#[test]
fn an_answer_the_context_cut_off_is_shown_as_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let small = small_context_model(dir.path(), 64);
    let run = |json: bool| {
        let mut command = impchat();
        command
            .arg("ask")
            .arg("--model")
            .arg(&small)
            .args(["--max-tokens", "500"]);
        if json {
            command.arg("--json");
        }
        command.arg("Tell me a long story.").output().expect("runs")
    };
    let output = run(true);
    let json: Value = serde_json::from_str(&succeeds(&output)).expect("JSON");
    assert_eq!(json["stats"]["stop_reason"], "context_full", "{json}");

    let output = run(false);
    succeeds(&output);
    let stderr = stderr_of(&output);
    assert!(
        stderr
            .contains("impchat: the answer was cut off: the model's context of 64 tokens is full"),
        "{stderr}"
    );

    let output = impchat()
        .arg("chat")
        .arg("--model")
        .arg(&small)
        .args(["--max-tokens", "500"])
        .write_stdin("Tell me a long story.\n")
        .output()
        .expect("runs");
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("[cut off, the context is full; "),
        "{stderr}"
    );
    assert!(
        stderr.contains("type /reset to start a new conversation"),
        "{stderr}"
    );
}
