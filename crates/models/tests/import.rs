//! Importing local checkpoint folders, and the installed-model lifecycle (list, verify, remove).

use std::fs;
use std::path::Path;

use impchat_models::test_support::checkpoint::{
    text_only_shard, tiny_checkpoint, write_checkpoint, SHARD_1, SHARD_2,
};
use impchat_models::{
    import_checkpoint, list_installed, remove, validate_checkpoint, verify, CancelToken,
    CheckpointError, FileProblem, ImportError, LmFamily, ModelId, Source, TokenizerFiles,
};

fn id(text: &str) -> ModelId {
    ModelId::new(text).unwrap_or_else(|e| panic!("{e}"))
}

fn checkpoint_in(dir: &Path) {
    write_checkpoint(dir, &tiny_checkpoint());
}

/// The tiny random-weight Phi-2 fixture, which the engine loads: what an import installs
/// must be a model `ask` can run.
fn loadable_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/imp-v1.5-3b-phi2")
}

fn loadable_checkpoint_in(dir: &Path) {
    for entry in fs::read_dir(loadable_fixture()).unwrap_or_else(|e| panic!("{e}")) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn error_of(dir: &Path) -> CheckpointError {
    match validate_checkpoint(dir) {
        Ok(report) => panic!("expected a validation error, got {report:?}"),
        Err(e) => e,
    }
}

#[test]
fn valid_checkpoint_is_described() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    checkpoint_in(temp.path());
    let report = validate_checkpoint(temp.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.family, LmFamily::Phi2);
    assert_eq!(report.model_type, "imp");
    assert_eq!(report.tokenizer, TokenizerFiles::TokenizerJson);
    assert_eq!(report.tensor_count, 6);
    let shards: Vec<&str> = report.shards.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(shards, [SHARD_1, SHARD_2]);
    assert_eq!(report.files.len(), 5);
}

#[test]
fn vocab_and_merges_count_as_a_tokenizer() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    checkpoint_in(temp.path());
    fs::remove_file(temp.path().join("tokenizer.json")).unwrap_or_else(|e| panic!("{e}"));
    fs::write(temp.path().join("vocab.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
    fs::write(temp.path().join("merges.txt"), "#version: 0.2\n").unwrap_or_else(|e| panic!("{e}"));
    let report = validate_checkpoint(temp.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.tokenizer, TokenizerFiles::VocabAndMerges);
}

#[test]
fn foreign_config_is_not_an_imp_model() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    checkpoint_in(temp.path());
    fs::write(
        temp.path().join("config.json"),
        r#"{"model_type": "llama", "hidden_size": 4096}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let message = error_of(temp.path()).to_string();
    assert!(message.contains("\"llama\""), "{message}");
    assert!(message.contains("imp, imp_qwen2 or imp_phi3"), "{message}");
}

#[test]
fn garbage_config_is_reported_as_damaged() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    checkpoint_in(temp.path());
    fs::write(temp.path().join("config.json"), b"\x00\x01 not json")
        .unwrap_or_else(|e| panic!("{e}"));
    let error = error_of(temp.path());
    assert!(
        matches!(error, CheckpointError::BadConfig { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("config.json"), "{error}");
}

#[test]
fn folder_without_config_says_what_to_choose() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let message = error_of(temp.path()).to_string();
    assert!(message.contains("no config.json"), "{message}");
}

#[test]
fn missing_shard_is_named() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    checkpoint_in(temp.path());
    fs::remove_file(temp.path().join(SHARD_2)).unwrap_or_else(|e| panic!("{e}"));
    let error = error_of(temp.path());
    assert!(
        matches!(&error, CheckpointError::MissingShard { shard } if shard == SHARD_2),
        "{error}"
    );
    assert!(error.to_string().contains(SHARD_2), "{error}");
}

#[test]
fn truncated_shard_is_damaged() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    checkpoint_in(temp.path());
    let path = temp.path().join(SHARD_1);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    fs::write(&path, &bytes[..bytes.len() - 100]).unwrap_or_else(|e| panic!("{e}"));
    let message = error_of(temp.path()).to_string();
    assert!(
        message.contains(SHARD_1) && message.contains("truncated"),
        "{message}"
    );
}

#[test]
fn missing_tokenizer_is_reported() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    checkpoint_in(temp.path());
    fs::remove_file(temp.path().join("tokenizer.json")).unwrap_or_else(|e| panic!("{e}"));
    fs::write(temp.path().join("vocab.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
    let error = error_of(temp.path());
    assert!(
        matches!(error, CheckpointError::MissingTokenizer(_)),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("vocab.json together with merges.txt"),
        "{error}"
    );
}

#[test]
fn weights_without_vision_tower_are_not_imp() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut files = tiny_checkpoint();
    files.remove("model.safetensors.index.json");
    files.remove(SHARD_1);
    files.remove(SHARD_2);
    files.insert("model.safetensors".into(), text_only_shard());
    write_checkpoint(temp.path(), &files);
    let message = error_of(temp.path()).to_string();
    assert!(message.contains("SigLIP vision tower"), "{message}");
    assert!(message.contains("multimodal projector"), "{message}");
    assert!(!message.contains("output head"), "{message}");
}

#[test]
fn pytorch_bin_only_asks_for_safetensors() {
    let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut files = tiny_checkpoint();
    files.remove("model.safetensors.index.json");
    files.remove(SHARD_1);
    files.remove(SHARD_2);
    files.insert("pytorch_model-00001-of-00002.bin".into(), vec![0; 16]);
    write_checkpoint(temp.path(), &files);
    let message = error_of(temp.path()).to_string();
    assert!(
        message.contains(".bin") && message.contains(".safetensors"),
        "{message}"
    );
}

#[test]
fn import_list_verify_remove_round_trip() {
    let source = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    loadable_checkpoint_in(source.path());
    fs::write(source.path().join("modeling_imp.py"), "# remote code")
        .unwrap_or_else(|e| panic!("{e}"));

    let model = id("my-imp");
    let (installed, report) =
        import_checkpoint(models.path(), source.path(), &model, &CancelToken::new())
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.family, LmFamily::Phi2);
    assert!(matches!(installed.manifest.source, Source::Import { .. }));
    assert!(
        !installed.path.join("modeling_imp.py").exists(),
        "python remote code was copied"
    );
    assert!(
        source.path().join(SHARD_1).exists(),
        "the original must stay"
    );
    // The installed copy is itself a valid checkpoint.
    validate_checkpoint(&installed.path).unwrap_or_else(|e| panic!("{e}"));

    let listing = list_installed(models.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listing.models.len(), 1);
    let total: u64 = report
        .files
        .iter()
        .map(|name| fs::metadata(source.path().join(name)).map_or(0, |m| m.len()))
        .sum();
    assert!(
        listing.models[0].size_on_disk > total,
        "size includes files and manifest"
    );

    let clean = verify(models.path(), &model).unwrap_or_else(|e| panic!("{e}"));
    assert!(clean.is_ok(), "{:?}", clean.problems);
    assert_eq!(clean.files_checked, report.files.len());

    // Flip one byte in place: same size, different hash.
    let shard = installed.path.join(SHARD_2);
    let mut bytes = fs::read(&shard).unwrap_or_else(|e| panic!("{e}"));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&shard, &bytes).unwrap_or_else(|e| panic!("{e}"));
    fs::remove_file(installed.path.join("vocab.json")).unwrap_or_else(|e| panic!("{e}"));
    let damaged = verify(models.path(), &model).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(damaged.problems.len(), 2, "{:?}", damaged.problems);
    assert!(damaged
        .problems
        .iter()
        .any(|p| matches!(p, FileProblem::WrongHash { path, .. } if path == SHARD_2)));
    assert!(damaged
        .problems
        .iter()
        .any(|p| matches!(p, FileProblem::Missing { path } if path == "vocab.json")));

    let freed = remove(models.path(), &model).unwrap_or_else(|e| panic!("{e}"));
    assert!(freed > 0);
    assert!(!installed.path.exists());
    let listing = list_installed(models.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(listing.models.is_empty());
    let again = remove(models.path(), &model)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(again.contains("not installed"), "{again}");
}

#[test]
fn failed_import_installs_nothing() {
    let source = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    loadable_checkpoint_in(source.path());
    fs::remove_file(source.path().join(SHARD_1)).unwrap_or_else(|e| panic!("{e}"));
    let result = import_checkpoint(
        models.path(),
        source.path(),
        &id("broken"),
        &CancelToken::new(),
    );
    assert!(matches!(
        result,
        Err(ImportError::Checkpoint(
            CheckpointError::MissingShard { .. }
        ))
    ));
    assert!(
        list_installed(models.path())
            .map(|l| l.models.len())
            .unwrap_or(99)
            == 0
    );
    assert!(!models.path().join("broken").exists());
}

#[test]
fn cancelled_import_leaves_no_trace() {
    let source = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    loadable_checkpoint_in(source.path());
    let cancel = CancelToken::new();
    cancel.cancel();
    let result = import_checkpoint(models.path(), source.path(), &id("later"), &cancel);
    assert!(matches!(result, Err(ImportError::Cancelled)));
    assert!(!models.path().join("later").exists());
    assert!(!models.path().join(".staging").join("later").exists());
}

#[test]
fn damaged_manifest_is_listed_as_unreadable_without_hiding_others() {
    let source = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    loadable_checkpoint_in(source.path());
    for name in ["good", "bad"] {
        import_checkpoint(models.path(), source.path(), &id(name), &CancelToken::new())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    fs::write(
        models
            .path()
            .join("bad")
            .join(impchat_models::MANIFEST_FILE),
        "{ torn",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let listing = list_installed(models.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listing.models.len(), 1);
    assert_eq!(listing.models[0].id.as_str(), "good");
    assert_eq!(listing.unreadable.len(), 1);
    assert!(listing.unreadable[0]
        .reason
        .contains("not a valid ImpChat model manifest"));
}

#[test]
fn mark_used_moves_a_model_to_the_top_of_the_list() {
    let source = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    loadable_checkpoint_in(source.path());
    for name in ["alpha", "beta"] {
        import_checkpoint(models.path(), source.path(), &id(name), &CancelToken::new())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let before = list_installed(models.path()).unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<&str> = before.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(order, ["alpha", "beta"]);
    assert!(before.models.iter().all(|m| m.last_used_ms().is_none()));

    impchat_models::mark_used(models.path(), &id("beta")).unwrap_or_else(|e| panic!("{e}"));
    let after = list_installed(models.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.models[0].id.as_str(), "beta");
    let used = after.models[0].last_used_ms().unwrap_or(0);
    assert!(used >= after.models[0].manifest.installed_at_ms);
}

#[test]
fn import_refuses_what_the_engine_would_not_load() {
    let source = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    loadable_checkpoint_in(source.path());
    let config = source.path().join("config.json");
    let text = fs::read_to_string(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    value["num_hidden_layers"] = 1_000_000_000u64.into();
    fs::write(&config, value.to_string()).unwrap_or_else(|e| panic!("{e}"));

    let result = import_checkpoint(
        models.path(),
        source.path(),
        &id("huge"),
        &CancelToken::new(),
    );
    let message = match result {
        Err(ImportError::Checkpoint(err @ CheckpointError::WouldNotLoad(_))) => err.to_string(),
        other => panic!("expected the engine's refusal, got {:?}", other.map(|_| ())),
    };
    let engine = impchat_engine::check_checkpoint(source.path())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_eq!(message, engine, "import says what loading would say");
    assert!(message.contains("1000000000"), "{message}");
    assert!(!models.path().join("huge").exists());
}
