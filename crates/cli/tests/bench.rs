//! `impchat bench` on the tiny shapes: builds the random-weight model once into a cache
//! folder, reuses or rebuilds it, and reports every figure of the paper's protocol.

use std::path::Path;
use std::process::Output;

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

fn bench(cache: &Path, extra: &[&str]) -> Output {
    cargo_bin_cmd!("impchat")
        .args(["bench", "--size", "tiny", "--threads", "1"])
        .arg("--cache")
        .arg(cache)
        .args(extra)
        .output()
        .expect("impchat runs")
}

fn bench_json(cache: &Path, runs: &str) -> (Value, String) {
    let output = bench(cache, &["--runs", runs, "--long-tokens", "16", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "impchat bench failed: {stderr}");
    let json = serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    (json, stderr)
}

fn number(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

fn positive(value: &Value, key: &str) -> f64 {
    let n = number(value, key);
    assert!(n > 0.0 && n.is_finite(), "{key} = {n}");
    n
}

#[test]
fn bench_reports_every_figure_of_the_paper_protocol_at_both_image_sizes() {
    let cache = tempfile::tempdir().expect("temp dir");
    let (report, stderr) = bench_json(cache.path(), "2");
    assert!(
        stderr.contains("writing a random-weight checkpoint"),
        "{stderr}"
    );

    assert_eq!(report["size"], "tiny");
    assert_eq!(report["family"], "phi2");
    assert_eq!(report["quant"], "Q4_K_M");
    assert_eq!(report["threads"], 1);
    assert_eq!(report["runs"], 2);
    assert_eq!(report["text_tokens"], 41);
    assert_eq!(report["generated_tokens"], 64);
    assert!(positive(&report, "parameters") > 1e6);
    let lm = Path::new(report["lm_file"].as_str().expect("lm_file"));
    assert!(
        lm.starts_with(cache.path()) && lm.is_file(),
        "{}",
        lm.display()
    );
    assert_eq!(
        std::fs::metadata(lm).expect("lm file").len() as f64,
        number(&report, "lm_bytes")
    );
    assert!(Path::new(report["image_file"].as_str().expect("image_file")).is_file());

    let images = report["images"].as_array().expect("images");
    let sides: Vec<(u64, u64, u64)> = images
        .iter()
        .map(|i| {
            (
                i["image_size"].as_u64().expect("image_size"),
                i["visual_tokens"].as_u64().expect("visual_tokens"),
                i["prompt_tokens"].as_u64().expect("prompt_tokens"),
            )
        })
        .collect();
    // 28 px and 56 px with 14 px patches: 2x2 and 4x4 image rows, plus 41 text tokens.
    assert_eq!(sides, vec![(28, 4, 45), (56, 16, 57)]);
    for image in images {
        assert!(Path::new(image["mmproj_file"].as_str().expect("mmproj")).is_file());
        for key in [
            "load_ms",
            "encode_ms",
            "prefill_ms",
            "prefill_tokens_per_s",
            "time_to_first_token_ms",
            "decode_tokens_per_s",
            "total_ms",
            "follow_up_time_to_first_token_ms",
        ] {
            positive(image, key);
        }
        let prompt = number(image, "prompt_tokens");
        let prefill_rate = prompt / (number(image, "prefill_ms") / 1000.0);
        assert!(
            (prefill_rate / number(image, "prefill_tokens_per_s") - 1.0).abs() < 0.5,
            "prefill speed should be prompt tokens / prefill time: {image}"
        );
        assert!(number(image, "time_to_first_token_ms") < number(image, "total_ms"));
        assert!(number(image, "encode_ms") < number(image, "time_to_first_token_ms"));
        // The follow-up reuses the cached question and answer: it computes only the
        // end of the answer's turn and the new question, far fewer than were cached.
        let computed = number(image, "follow_up_prompt_tokens_computed");
        assert!(computed > 0.0 && computed < prompt + 64.0 - 40.0, "{image}");
        for (key, samples) in image["samples"].as_object().expect("samples") {
            assert_eq!(samples.as_array().map(Vec::len), Some(2), "{key}");
        }
    }
    let long = &report["long_decode"];
    assert_eq!(long["tokens"], 16);
    assert_eq!(long["prompt_tokens"], 45);
    positive(long, "tokens_per_s");
    if cfg!(target_os = "linux") {
        assert!(positive(&report, "peak_rss_bytes") > 1e6);
    }
}

#[test]
fn bench_reuses_its_model_and_rebuilds_a_damaged_one() {
    let cache = tempfile::tempdir().expect("temp dir");
    let (first, _) = bench_json(cache.path(), "1");
    let lm = first["lm_file"].as_str().expect("lm_file").to_string();
    let built = std::fs::metadata(&lm)
        .and_then(|m| m.modified())
        .expect("mtime");

    let (_, stderr) = bench_json(cache.path(), "1");
    assert!(
        !stderr.contains("random-weight checkpoint"),
        "rebuilt: {stderr}"
    );
    let reused = std::fs::metadata(&lm)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(built, reused, "the cached model was rewritten");

    // A truncated file (an interrupted copy, a full disk) is noticed and rebuilt.
    let bytes = std::fs::read(&lm).expect("read lm");
    std::fs::write(&lm, &bytes[..bytes.len() / 2]).expect("truncate");
    let (again, stderr) = bench_json(cache.path(), "1");
    assert!(
        stderr.contains("rebuilding the benchmark model"),
        "{stderr}"
    );
    assert_eq!(again["lm_bytes"].as_u64(), Some(bytes.len() as u64));
}

#[test]
fn bench_prints_a_table_by_default() {
    let cache = tempfile::tempdir().expect("temp dir");
    let output = bench(cache.path(), &["--runs", "1", "--long-tokens", "0"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "28 px",
        "56 px",
        "load",
        "vision encode",
        "prefill speed",
        "time to first token",
        "decode speed (64 tokens)",
        "total, T_total",
        "follow-up time to first token",
        "peak RSS",
    ] {
        assert!(stdout.contains(row), "no {row:?} in:\n{stdout}");
    }
}

#[test]
fn bench_refuses_zero_runs_and_unknown_sizes() {
    let cache = tempfile::tempdir().expect("temp dir");
    for args in [
        &["--runs", "0"][..],
        &["--size", "7b"][..],
        &["--quant", "q3"][..],
    ] {
        let output = bench(cache.path(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("impchat: "), "{stderr}");
    }
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("cache dir").count(),
        0,
        "nothing is built for a refused command"
    );
}
