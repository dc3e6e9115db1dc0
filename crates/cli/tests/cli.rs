//! `impchat ask` and `impchat chat` against the tiny random-weight fixture checkpoint: the
//! answers are gibberish, but greedy decoding makes them deterministic.

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

const QUESTION: &str = "What is in this picture?";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model() -> PathBuf {
    fixtures().join("models/imp-v1.5-3b-phi2")
}

fn image(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

fn ask(args: &[&str]) -> assert_cmd::Command {
    let mut command = cargo_bin_cmd!("impchat");
    command.arg("ask").arg("--model").arg(model()).args(args);
    command
}

fn ask_json(args: &[&str]) -> Value {
    let output = ask(args).arg("--json").output().expect("impchat runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "impchat ask --json failed: {stderr}"
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

/// The process failed with `code` and said why on exactly one stderr line.
fn assert_fails_with(output: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("impchat: "), "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing should reach stdout");
    stderr
}

#[test]
fn ask_streams_the_same_greedy_answer_every_time() {
    let first = ask(&["--max-tokens", "16", QUESTION])
        .output()
        .expect("runs");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let answer = String::from_utf8(first.stdout).expect("UTF-8 answer");
    assert!(answer.ends_with('\n'));
    assert!(!answer.trim().is_empty(), "empty answer");

    let second = ask(&["--max-tokens", "16", QUESTION])
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&second.stdout), answer);

    let json = ask_json(&["--max-tokens", "16", QUESTION]);
    assert_eq!(
        json["answer"].as_str().map(|a| format!("{a}\n")),
        Some(answer)
    );
}

#[test]
fn ask_json_reports_answer_stats_and_provenance() {
    let json = ask_json(&[
        "--max-tokens",
        "6",
        "--temp",
        "0.8",
        "--top-k",
        "40",
        "--seed",
        "7",
        QUESTION,
    ]);
    assert!(json["answer"].is_string());
    let stats = &json["stats"];
    let generated = stats["generated_tokens"]
        .as_u64()
        .expect("generated_tokens");
    assert!((1..=6).contains(&generated), "{stats}");
    assert!(
        stats["prompt_tokens"].as_u64().is_some_and(|n| n > 0),
        "{stats}"
    );
    assert!(stats["stop_reason"].is_string(), "{stats}");

    let provenance = &json["provenance"];
    assert!(
        provenance["model_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{provenance}"
    );
    let path = provenance["model_path"].as_str().expect("model_path");
    assert!(path.ends_with("imp-v1.5-3b-phi2"), "{path}");
    assert!(provenance["quantization"].is_string(), "{provenance}");
    assert_eq!(
        provenance["image_size"], 56,
        "the fixture's vision tower takes 56 px"
    );
    assert_eq!(provenance["seed"], 7);
    assert_eq!(provenance["sampling"]["temperature"], 0.8);
    assert_eq!(provenance["sampling"]["top_k"], 40);
    assert_eq!(provenance["max_tokens"], 6);

    // The same seed reproduces a sampled answer.
    let again = ask_json(&[
        "--max-tokens",
        "6",
        "--temp",
        "0.8",
        "--top-k",
        "40",
        "--seed",
        "7",
        QUESTION,
    ]);
    assert_eq!(again["answer"], json["answer"]);
}

#[test]
fn images_reach_the_model() {
    let shapes = image("shapes.png");
    let receipt = image("receipt.png");
    let text_only = ask_json(&["--max-tokens", "4", QUESTION]);
    let one = ask_json(&[
        "--max-tokens",
        "4",
        "--image",
        shapes.to_str().expect("path"),
        QUESTION,
    ]);
    let two = ask_json(&[
        "--max-tokens",
        "4",
        "--image",
        shapes.to_str().expect("path"),
        "--image",
        receipt.to_str().expect("path"),
        QUESTION,
    ]);
    let prompt = |json: &Value| {
        json["stats"]["prompt_tokens"]
            .as_u64()
            .expect("prompt_tokens")
    };
    assert_eq!(one["stats"]["images"], 1);
    assert_eq!(two["stats"]["images"], 2);
    // Each image costs the fixture's 16 visual tokens.
    assert!(
        prompt(&one) >= prompt(&text_only) + 16,
        "{} vs {}",
        prompt(&one),
        prompt(&text_only)
    );
    assert!(prompt(&two) >= prompt(&one) + 16);
}

#[test]
fn stop_strings_cut_the_answer() {
    let full = ask_json(&["--max-tokens", "24", QUESTION]);
    let answer: Vec<char> = full["answer"].as_str().expect("answer").chars().collect();
    assert!(
        answer.len() >= 6,
        "answer too short to pick a stop string: {answer:?}"
    );
    let stop: String = answer[3..6].iter().collect();
    let text: String = answer.iter().collect();
    let expected = &text[..text.find(&stop).expect("stop is in the answer")];

    let stopped = ask_json(&["--max-tokens", "24", "--stop", &stop, QUESTION]);
    assert_eq!(stopped["answer"], expected);
    assert_eq!(stopped["stats"]["stop_reason"], "stop_string");
}

#[test]
fn the_question_can_come_from_stdin() {
    let from_arg = ask_json(&["--max-tokens", "5", QUESTION]);
    let output = ask(&["--max-tokens", "5", "--json", "-"])
        .write_stdin(format!("{QUESTION}\n"))
        .output()
        .expect("runs");
    assert!(output.status.success());
    let from_stdin: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(from_stdin["answer"], from_arg["answer"]);
}

#[test]
fn a_missing_model_exits_3_naming_the_path() {
    let output = cargo_bin_cmd!("impchat")
        .args(["ask", "--model", "/nonexistent/imp-model", QUESTION])
        .output()
        .expect("runs");
    let stderr = assert_fails_with(&output, 3);
    assert!(
        stderr.contains("cannot load the model at '/nonexistent/imp-model'"),
        "{stderr}"
    );
}

#[test]
fn an_incomplete_model_folder_exits_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(model().join("config.json"), dir.path().join("config.json")).expect("copy");
    let output = cargo_bin_cmd!("impchat")
        .arg("ask")
        .arg("--model")
        .arg(dir.path())
        .arg(QUESTION)
        .output()
        .expect("runs");
    let stderr = assert_fails_with(&output, 3);
    assert!(stderr.contains("cannot load the model at"), "{stderr}");
}

#[test]
fn a_pdf_given_as_image_exits_4_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pdf = dir.path().join("scan.pdf");
    std::fs::write(
        &pdf,
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
    )
    .expect("write");
    let output = ask(&["--image", pdf.to_str().expect("path"), QUESTION])
        .output()
        .expect("runs");
    let stderr = assert_fails_with(&output, 4);
    assert!(
        stderr.contains(&format!("cannot read image '{}'", pdf.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("This is a PDF document, not an image"),
        "{stderr}"
    );
}

#[test]
fn a_missing_image_exits_4() {
    let output = ask(&["--image", "/nonexistent/cat.png", QUESTION])
        .output()
        .expect("runs");
    let stderr = assert_fails_with(&output, 4);
    assert!(
        stderr.contains("cannot read image '/nonexistent/cat.png': no such file"),
        "{stderr}"
    );
}

#[test]
fn an_empty_question_is_a_usage_error() {
    let output = ask(&["   "]).output().expect("runs");
    let stderr = assert_fails_with(&output, 2);
    assert!(stderr.contains("the question is empty"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors_on_one_line() {
    let output = ask(&["--frobnicate", QUESTION]).output().expect("runs");
    let stderr = assert_fails_with(&output, 2);
    assert!(stderr.contains("--frobnicate"), "{stderr}");

    let output = ask(&["--temp", "9", QUESTION]).output().expect("runs");
    let stderr = assert_fails_with(&output, 2);
    assert!(stderr.contains("--temp"), "{stderr}");
}

#[test]
fn chat_keeps_the_conversation_and_obeys_commands() {
    let shapes = image("shapes.png");
    let script = format!(
        "What is this?\n/image {}\nAnd this picture?\nTell me more.\n/image /nonexistent.png\n\
         /reset\n/help\n/bogus\nHello again\n/quit\nnever asked\n",
        shapes.display()
    );
    let output = cargo_bin_cmd!("impchat")
        .arg("chat")
        .arg("--model")
        .arg(model())
        .args(["--max-tokens", "6"])
        .write_stdin(script)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("attached {}", shapes.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot read image '/nonexistent.png': no such file"),
        "{stderr}"
    );
    assert!(stderr.contains("new conversation"), "{stderr}");
    assert!(stderr.contains("/image PATH"), "help is shown: {stderr}");
    assert!(stderr.contains("unknown command /bogus"), "{stderr}");
    // Four questions were answered (the one after /quit was not).
    let answers: Vec<&str> = stderr.lines().filter(|l| l.contains(" tokens/s")).collect();
    assert_eq!(answers.len(), 4, "{stderr}");
    // Follow-ups reuse the session's cache; the first question after /reset does not.
    assert!(!answers[0].contains("from cache"), "{}", answers[0]);
    assert!(answers[1].contains("from cache"), "{}", answers[1]);
    assert!(answers[2].contains("from cache"), "{}", answers[2]);
    assert!(!answers[3].contains("from cache"), "{}", answers[3]);
}

#[test]
fn chat_save_writes_the_conversation_into_the_app_store() {
    let data = tempfile::tempdir().expect("temp dir");
    let shapes = image("shapes.png");
    let script = format!(
        "/image {}\nWhat shapes are here?\nAnd their colours?\n/reset\nA second chat\n",
        shapes.display()
    );
    let output = cargo_bin_cmd!("impchat")
        .arg("chat")
        .arg("--model")
        .arg(model())
        .args([
            "--max-tokens",
            "5",
            "--system",
            "Be brief.",
            "--save",
            "--data-dir",
        ])
        .arg(data.path())
        .write_stdin(script)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("could not save"), "{stderr}");

    let (store, notice) = impchat_store::Store::open(data.path()).expect("the store opens");
    assert!(notice.is_none());
    let chats = store.list_conversations(false).expect("list");
    assert_eq!(chats.len(), 2, "{chats:?}");
    let first = chats
        .iter()
        .find(|chat| chat.title.starts_with("What shapes are here?"))
        .expect("the first chat is titled by its first question");
    assert!(first.model_id.as_deref().is_some_and(|id| !id.is_empty()));
    let chat = store.get_conversation(&first.id).expect("conversation");
    assert_eq!(chat.system_prompt.as_deref(), Some("Be brief."));
    let settings = chat.settings.as_ref().expect("chat settings are stored");
    assert_eq!(settings["maxTokens"], 5);
    assert!(
        settings["seed"].is_null(),
        "no --seed: the app may pick one: {settings}"
    );
    let roles: Vec<_> = chat.messages.iter().map(|m| m.role).collect();
    use impchat_store::{MessageStatus, Role};
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::User, Role::Assistant]
    );
    assert_eq!(chat.messages[0].images.len(), 1);
    assert_eq!(chat.messages[0].images[0].width, 160);
    for answer in [&chat.messages[1], &chat.messages[3]] {
        assert_eq!(answer.status, MessageStatus::Complete);
        assert!(!answer.content.is_empty());
        let stats = answer.stats.as_ref().expect("stats are stored");
        assert!(
            stats["generatedTokens"]
                .as_u64()
                .is_some_and(|n| (1..=5).contains(&n)),
            "{stats}"
        );
        let provenance = answer.provenance.as_ref().expect("provenance is stored");
        assert_eq!(provenance["imageSize"], 56);
        assert_eq!(provenance["sampling"]["maxTokens"], 5);
        assert!(
            provenance["seed"].is_u64(),
            "the seed used is recorded: {provenance}"
        );
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_answer_and_exits_130() {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_impchat"))
        .arg("ask")
        .arg("--model")
        .arg(model())
        // Greedy decoding of this prompt runs to the token limit (seconds), so the signal
        // arrives mid-answer.
        .args(["--max-tokens", "2500", "Tell me a long story."])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    stdout
        .read_exact(&mut first)
        .expect("the answer starts streaming");
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read the rest");
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(130));
}
