//! Downloads against a real HTTP server on 127.0.0.1 that behaves like the Hugging Face Hub
//! (resolve redirect, LFS ETag headers, Range/206/416) and injects faults.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use impchat_models::test_support::checkpoint::{tiny_checkpoint, SHARD_1, SHARD_2};
use impchat_models::test_support::hub_server::{Fault, HubServer, COMMIT, REPO, REVISION};
use impchat_models::{
    list_installed, pull, staging_dir, validate_checkpoint, verify, CancelToken, HubConfig,
    ModelId, Phase, Progress, PullError, PullOutcome, PullRequest, Source, WantedFile,
};
use sha2::{Digest, Sha256};

fn config(server: &HubServer) -> HubConfig {
    HubConfig {
        endpoint: server.endpoint.clone(),
        parallel_files: 4,
        max_retries: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(400),
        ..HubConfig::default()
    }
}

fn model_id() -> ModelId {
    ModelId::new("tiny-imp").unwrap_or_else(|e| panic!("{e}"))
}

fn request(files: &BTreeMap<String, Vec<u8>>) -> PullRequest {
    PullRequest {
        id: model_id(),
        catalog_id: None,
        repo: REPO.to_string(),
        revision: REVISION.to_string(),
        files: files
            .keys()
            .map(|path| WantedFile {
                path: path.clone(),
                optional: false,
            })
            .collect(),
    }
}

struct Run {
    result: Result<PullOutcome, PullError>,
    updates: Vec<Progress>,
    elapsed: Duration,
}

fn run(models: &Path, config: &HubConfig, request: &PullRequest, cancel: &CancelToken) -> Run {
    run_with(models, config, request, cancel, |_| {})
}

fn run_with(
    models: &Path,
    config: &HubConfig,
    request: &PullRequest,
    cancel: &CancelToken,
    mut watch: impl FnMut(&Progress),
) -> Run {
    let mut updates = Vec::new();
    let start = Instant::now();
    let result = pull(
        models,
        config,
        request,
        &mut |p: &Progress| {
            watch(p);
            updates.push(p.clone());
        },
        cancel,
    );
    Run {
        result,
        updates,
        elapsed: start.elapsed(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn assert_nothing_installed(models: &Path) {
    let listing = list_installed(models).unwrap_or_else(|e| panic!("{e}"));
    assert!(listing.models.is_empty(), "{:?}", listing.models);
    assert!(
        !models.join("tiny-imp").exists(),
        "model folder exists after a failed pull"
    );
}

fn part_of(models: &Path, file: &str) -> std::path::PathBuf {
    staging_dir(models, &model_id()).join(format!("{file}.part"))
}

#[test]
fn clean_download_installs_a_verified_model() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let outcome = run.result.unwrap_or_else(|e| panic!("{e}"));

    let installed = &outcome.installed;
    assert_eq!(installed.path, models.path().join("tiny-imp"));
    for (name, bytes) in &files {
        let on_disk = fs::read(installed.path.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(on_disk, *bytes, "{name} differs");
        let entry = installed.manifest.files.iter().find(|f| &f.path == name);
        assert_eq!(entry.map(|f| f.sha256.clone()), Some(sha256(bytes)));
    }
    match &installed.manifest.source {
        Source::Hub {
            repo,
            revision,
            commit,
            ..
        } => {
            assert_eq!((repo.as_str(), revision.as_str()), (REPO, REVISION));
            assert_eq!(commit.as_deref(), Some(COMMIT));
        }
        other => panic!("unexpected source {other:?}"),
    }
    assert_eq!(installed.hub_commit(), Some(COMMIT));
    let listed = list_installed(models.path()).expect("list");
    assert_eq!(
        listed.models[0].hub_commit(),
        Some(COMMIT),
        "the commit survives a re-read"
    );
    assert!(
        !staging_dir(models.path(), &model_id()).exists(),
        "staging left behind"
    );
    assert!(verify(models.path(), &model_id())
        .map(|r| r.is_ok())
        .unwrap_or(false));
    validate_checkpoint(&installed.path).unwrap_or_else(|e| panic!("{e}"));

    // LFS shards were fetched from the CDN path the resolve URL redirected to.
    let shard_gets = server.downloads_of(SHARD_1);
    assert_eq!(shard_gets.len(), 1);
    assert!(
        shard_gets[0].path.starts_with("/cdn/"),
        "{:?}",
        shard_gets[0]
    );

    let total: u64 = files.values().map(|b| b.len() as u64).sum();
    let last = run
        .updates
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("no progress"));
    assert_eq!(last.phase, Phase::Installing);
    assert_eq!((last.bytes_done, last.bytes_total), (total, total));
    assert_eq!(
        (last.files_done, last.files_total),
        (files.len(), files.len())
    );
    assert!(run.updates.iter().any(|p| p.phase == Phase::Resolving));
    assert_eq!(outcome.transferred_bytes, total);
    assert_eq!(outcome.resumed_bytes, 0);
}

#[test]
fn dropped_connection_resumes_with_a_range_request() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault(
        SHARD_2,
        Fault::DropAfter {
            bytes: 100_000,
            times: 1,
        },
    );
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let outcome = run.result.unwrap_or_else(|e| panic!("{e}"));

    let gets = server.downloads_of(SHARD_2);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(gets[1].status, 206);
    let on_disk = fs::read(outcome.installed.path.join(SHARD_2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256(&on_disk), sha256(&files[SHARD_2]));
}

#[test]
fn cancelled_download_keeps_its_part_and_a_later_pull_resumes_it() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    for name in files.keys() {
        server.set_fault(name, Fault::Slow { delay_ms: 30 });
    }
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let first = run_with(
        models.path(),
        &config(&server),
        &request(&files),
        &cancel,
        |p| {
            if p.phase == Phase::Downloading && p.bytes_done >= 100_000 {
                trigger.cancel();
            }
        },
    );
    assert!(
        matches!(first.result, Err(PullError::Cancelled)),
        "{:?}",
        first.result.as_ref().err()
    );
    assert!(first
        .result
        .as_ref()
        .err()
        .is_some_and(PullError::can_resume));
    assert!(
        first.elapsed < Duration::from_secs(10),
        "cancel took {:?}",
        first.elapsed
    );
    assert_nothing_installed(models.path());
    let part = part_of(models.path(), SHARD_2);
    let kept = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(
        kept > 0 && kept < files[SHARD_2].len() as u64,
        "part has {kept} bytes"
    );

    let kept_total = impchat_models::partial_download_bytes(models.path(), &model_id());
    assert!(kept_total >= kept, "staging reports {kept_total} bytes");

    server.clear_faults();
    let second = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let outcome = second.result.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.resumed_bytes >= kept);
    let resumed = server.downloads_of(SHARD_2);
    let expected = format!("bytes={kept}-");
    assert_eq!(resumed.last().and_then(|l| l.range.clone()), Some(expected));
    let on_disk = fs::read(outcome.installed.path.join(SHARD_2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(on_disk, files[SHARD_2]);
}

#[test]
fn corrupted_byte_is_caught_and_nothing_is_installed() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault(SHARD_1, Fault::FlipByte { offset: 123_456 });
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let error = run.result.map(|_| ()).unwrap_err();
    assert!(
        matches!(&error, PullError::ChecksumMismatch { file, algorithm: "sha256", .. } if file == SHARD_1),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(SHARD_1) && message.contains("corrupt"),
        "{message}"
    );
    assert!(
        !part_of(models.path(), SHARD_1).exists(),
        "corrupt part kept"
    );
    assert_nothing_installed(models.path());
}

#[test]
fn corrupted_small_file_fails_its_git_checksum() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault("config.json", Fault::FlipByte { offset: 3 });
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let error = run.result.map(|_| ()).unwrap_err();
    assert!(
        matches!(&error, PullError::ChecksumMismatch { file, algorithm: "git-sha1", .. } if file == "config.json"),
        "{error}"
    );
    assert_nothing_installed(models.path());
}

#[test]
fn missing_file_is_a_clear_404_and_optional_files_are_skipped() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut wanted = request(&files);
    wanted.files.push(WantedFile {
        path: "tokenizer.model".into(),
        optional: false,
    });
    let run = run(
        models.path(),
        &config(&server),
        &wanted,
        &CancelToken::new(),
    );
    let error = run.result.map(|_| ()).unwrap_err();
    assert!(
        matches!(&error, PullError::NotFound { file, .. } if file == "tokenizer.model"),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("404") && message.contains(REPO) && message.contains("revision main"),
        "{message}"
    );
    assert_nothing_installed(models.path());

    if let Some(file) = wanted.files.last_mut() {
        file.optional = true;
    }
    let run = run_with(
        models.path(),
        &config(&server),
        &wanted,
        &CancelToken::new(),
        |_| {},
    );
    let outcome = run.result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.skipped_optional, ["tokenizer.model"]);
}

#[test]
fn gated_repo_says_so() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault("config.json", Fault::ResolveStatus { code: 403 });
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let message = run.result.map(|_| ()).unwrap_err().to_string();
    assert!(
        message.contains("gated") && message.contains("HF_TOKEN"),
        "{message}"
    );
    assert_nothing_installed(models.path());
}

#[test]
fn server_errors_are_retried_until_they_pass() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault(
        SHARD_1,
        Fault::Status {
            code: 500,
            times: 2,
        },
    );
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    run.result.unwrap_or_else(|e| panic!("{e}"));
    let statuses: Vec<u16> = server
        .downloads_of(SHARD_1)
        .iter()
        .map(|l| l.status)
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
}

#[test]
fn persistent_server_errors_give_up_after_bounded_retries() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault(
        SHARD_1,
        Fault::Status {
            code: 503,
            times: 1_000,
        },
    );
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let error = run.result.map(|_| ()).unwrap_err();
    assert!(
        matches!(&error, PullError::Connection { file, attempts: 4, .. } if file == SHARD_1),
        "{error}"
    );
    assert!(error.to_string().contains("HTTP 503"), "{error}");
    assert_eq!(server.downloads_of(SHARD_1).len(), 4);
    assert_nothing_installed(models.path());
}

#[test]
fn range_not_satisfiable_restarts_the_file_from_zero() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault(SHARD_1, Fault::RangeNotSatisfiable { times: 1 });
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // A part left by an earlier attempt (here: garbage, as if from another upload).
    let part = part_of(models.path(), SHARD_1);
    fs::create_dir_all(part.parent().unwrap_or(models.path())).unwrap_or_else(|e| panic!("{e}"));
    fs::write(&part, vec![0xAB; 5_000]).unwrap_or_else(|e| panic!("{e}"));

    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let outcome = run.result.unwrap_or_else(|e| panic!("{e}"));
    let gets = server.downloads_of(SHARD_1);
    let seen: Vec<(Option<&str>, u16)> = gets
        .iter()
        .map(|l| (l.range.as_deref(), l.status))
        .collect();
    assert_eq!(seen, [(Some("bytes=5000-"), 416), (None, 200)]);
    let on_disk = fs::read(outcome.installed.path.join(SHARD_1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(on_disk, files[SHARD_1]);
}

#[test]
fn slow_server_finishes_and_reports_speed() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    // 16 KiB chunks every 50 ms: about 320 KiB/s for the ~300 KiB shard.
    server.set_fault(SHARD_2, Fault::Slow { delay_ms: 50 });
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    run.result.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run.elapsed < Duration::from_secs(20),
        "took {:?}",
        run.elapsed
    );
    let moving: Vec<&Progress> = run
        .updates
        .iter()
        .filter(|p| p.phase == Phase::Downloading && p.bytes_per_second > 0.0)
        .collect();
    assert!(!moving.is_empty(), "no speed was ever reported");
    assert!(moving.iter().any(|p| p.eta.is_some()));
    let done: Vec<u64> = run
        .updates
        .iter()
        .filter(|p| p.phase == Phase::Downloading)
        .map(|p| p.bytes_done)
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {done:?}"
    );
}

#[test]
fn stalled_connection_times_out_and_resumes() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault(
        SHARD_2,
        Fault::Stall {
            after: 50_000,
            ms: 1_500,
            times: 1,
        },
    );
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    run.result.unwrap_or_else(|e| panic!("{e}"));
    let gets = server.downloads_of(SHARD_2);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=50000-"));
}

#[test]
fn installed_model_is_not_downloaded_again() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    )
    .result
    .unwrap_or_else(|e| panic!("{e}"));
    let requests_before = server.log().len();
    let again = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    let message = again.result.map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("already installed"), "{message}");
    assert_eq!(
        server.log().len(),
        requests_before,
        "a refused pull still hit the network"
    );
}

#[test]
fn bad_requests_are_refused_before_any_network_use() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut escaping = request(&files);
    escaping.files.push(WantedFile {
        path: "../outside.json".into(),
        optional: false,
    });
    let mut bad_repo = request(&files);
    bad_repo.repo = "not a repo".into();
    for bad in [escaping, bad_repo] {
        let result = run(models.path(), &config(&server), &bad, &CancelToken::new()).result;
        assert!(
            matches!(result, Err(PullError::InvalidRequest(_))),
            "{:?}",
            result.err()
        );
    }
    assert!(server.log().is_empty());
}

#[test]
fn discarding_a_partial_download_frees_its_space() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    server.set_fault(
        SHARD_2,
        Fault::Status {
            code: 500,
            times: 1_000,
        },
    );
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = config(&server);
    config.max_retries = 0;
    let failed = run(
        models.path(),
        &config,
        &request(&files),
        &CancelToken::new(),
    );
    assert!(failed.result.is_err());
    let kept = impchat_models::partial_download_bytes(models.path(), &model_id());
    assert!(
        kept > 0,
        "the files that did arrive should be kept for a resume"
    );
    let freed = impchat_models::discard_partial_download(models.path(), &model_id())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(freed, kept);
    assert!(!staging_dir(models.path(), &model_id()).exists());
    assert_eq!(
        impchat_models::partial_download_bytes(models.path(), &model_id()),
        0
    );
}

#[test]
fn catalog_entries_become_pull_requests() {
    let catalog = impchat_models::Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    let entry = catalog
        .get("imp-v1.5-4b-phi3")
        .unwrap_or_else(|| panic!("4B missing"));
    let request = PullRequest::from_catalog(entry);
    assert_eq!(request.repo, "MILVLG/Imp-v1.5-4B-Phi3");
    assert_eq!(request.revision, entry.revision);
    assert_eq!(request.catalog_id.as_ref(), Some(&entry.id));
    assert_eq!(request.files.len(), entry.files.len());
    let optional: Vec<&str> = request
        .files
        .iter()
        .filter(|f| f.optional)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(optional, ["tokenizer_config.json"]);
}

#[test]
fn expired_cdn_link_is_resolved_again() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    // The CDN refuses the signed link once, as when it expired mid-download.
    server.set_fault(
        SHARD_1,
        Fault::Status {
            code: 403,
            times: 1,
        },
    );
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        models.path(),
        &config(&server),
        &request(&files),
        &CancelToken::new(),
    );
    run.result.unwrap_or_else(|e| panic!("{e}"));
    let resolves = server
        .log()
        .into_iter()
        .filter(|l| l.method == "HEAD" && l.file == SHARD_1)
        .count();
    assert_eq!(resolves, 2, "the hub was not asked for a fresh link");
    let statuses: Vec<u16> = server
        .downloads_of(SHARD_1)
        .iter()
        .map(|l| l.status)
        .collect();
    assert_eq!(statuses, [403, 200]);
}

#[test]
fn request_where_every_file_is_missing_installs_nothing() {
    let files = tiny_checkpoint();
    let server = HubServer::start(&files);
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut wanted = request(&files);
    wanted.files = vec![WantedFile {
        path: "not-there.json".into(),
        optional: true,
    }];
    let result = run(
        models.path(),
        &config(&server),
        &wanted,
        &CancelToken::new(),
    )
    .result;
    let message = result.map(|_| ()).unwrap_err().to_string();
    assert!(
        message.contains("none of the requested files exist"),
        "{message}"
    );
    assert_nothing_installed(models.path());
    assert!(!staging_dir(models.path(), &model_id()).exists());
}
