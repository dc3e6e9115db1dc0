//! `impchat chat --save` opens the conversation store before it loads the model, so a
//! store problem is reported at once rather than after a load of several gigabytes.

use assert_cmd::cargo::cargo_bin_cmd;

#[test]
fn chat_save_reports_a_bad_store_before_loading_the_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let occupied = dir.path().join("occupied");
    std::fs::write(&occupied, b"a file where the data folder should be").expect("write");
    // The model path does not exist either: whichever is opened first is the one reported.
    let output = cargo_bin_cmd!("impchat")
        .arg("chat")
        .arg("--model")
        .arg(dir.path().join("no-such-model"))
        .arg("--save")
        .arg("--data-dir")
        .arg(&occupied)
        .write_stdin("")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot open the conversation store"),
        "the store error comes first: {stderr}"
    );
    assert!(
        stderr.contains("--data-dir DIR"),
        "says what to do: {stderr}"
    );
    assert!(!stderr.contains("Loading"), "no model load began: {stderr}");
    assert_eq!(
        std::fs::read(&occupied).expect("read"),
        b"a file where the data folder should be"
    );
}
