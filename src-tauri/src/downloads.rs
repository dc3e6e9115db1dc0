//! Model downloads started from the app: one at a time, progress for the UI, cancel, and the
//! kept `.part` files that let the next attempt (even after a restart) resume.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use impchat_convert::{ConvertOptions, LmQuant, VisionQuant};
use impchat_models::{
    self as models, CancelToken, Catalog, CatalogEntry, ConvertHook, HubConfig, InstalledModel,
    Manifest, Phase, Progress, PullError, PullRequest, Quant, Source,
};
use serde::Serialize;

use crate::error::{AppError, AppResult, ErrorKind};
use crate::state::lock;

/// Where downloads come from and what can be downloaded. Tests point these at a loopback hub.
#[derive(Debug, Clone)]
pub struct DownloadSource {
    pub hub: HubConfig,
    pub catalog: Catalog,
}

impl DownloadSource {
    /// huggingface.co (or `HF_ENDPOINT`, with `HF_TOKEN`) and the catalog built into the app.
    pub fn from_env() -> AppResult<Self> {
        let catalog = Catalog::builtin().map_err(|err| AppError::internal(err.to_string()))?;
        Ok(Self {
            hub: HubConfig::from_env(),
            catalog,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadPhase {
    Resolving,
    Downloading,
    /// Every byte is on disk; the last files are being checked against the hub's SHA-256.
    Verifying,
    Converting,
    Installing,
    Done,
}

/// One progress report over the `onEvent` channel of `download_model`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadProgress {
    pub phase: DownloadPhase,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub bytes_per_second: f64,
    pub eta_seconds: Option<f64>,
    /// Files while downloading, tensors while converting.
    pub parts_done: usize,
    pub parts_total: usize,
}

impl DownloadProgress {
    pub fn from_pull(progress: &Progress) -> Self {
        let phase = match progress.phase {
            Phase::Resolving => DownloadPhase::Resolving,
            Phase::Downloading
                if progress.bytes_total > 0
                    && progress.bytes_done >= progress.bytes_total
                    && progress.files_done < progress.files_total =>
            {
                DownloadPhase::Verifying
            }
            Phase::Downloading => DownloadPhase::Downloading,
            Phase::Installing => DownloadPhase::Installing,
        };
        Self {
            phase,
            bytes_done: progress.bytes_done,
            bytes_total: progress.bytes_total,
            bytes_per_second: progress.bytes_per_second,
            eta_seconds: progress.eta.map(|eta| eta.as_secs_f64()),
            parts_done: progress.files_done,
            parts_total: progress.files_total,
        }
    }

    fn converting(bytes_total: u64, done: usize, total: usize) -> Self {
        Self {
            phase: DownloadPhase::Converting,
            bytes_done: bytes_total,
            bytes_total,
            bytes_per_second: 0.0,
            eta_seconds: None,
            parts_done: done,
            parts_total: total,
        }
    }

    fn done(bytes_total: u64, parts_total: usize) -> Self {
        Self {
            phase: DownloadPhase::Done,
            bytes_done: bytes_total,
            bytes_total,
            bytes_per_second: 0.0,
            eta_seconds: None,
            parts_done: parts_total,
            parts_total,
        }
    }
}

/// An installed model as the UI lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstalledModelDto {
    pub id: String,
    pub catalog_id: Option<String>,
    pub path: String,
    /// What `load_model` should be given: the language-model GGUF when the download was
    /// converted, otherwise the folder.
    pub load_path: String,
    pub size_on_disk: u64,
    pub repo: Option<String>,
    pub revision: Option<String>,
    /// The commit the hub resolved `revision` to when the model was downloaded.
    pub commit: Option<String>,
    pub installed_at: u64,
}

impl From<&InstalledModel> for InstalledModelDto {
    fn from(model: &InstalledModel) -> Self {
        let (repo, revision) = match &model.manifest.source {
            Source::Hub { repo, revision, .. } => (Some(repo.clone()), Some(revision.clone())),
            Source::Import { .. } => (None, None),
        };
        let gguf = model
            .manifest
            .files
            .iter()
            .find(|f| f.path.ends_with(".gguf") && !f.path.starts_with("mmproj-"));
        let load_path = gguf.map_or(model.path.clone(), |f| model.path.join(&f.path));
        Self {
            id: model.id.to_string(),
            catalog_id: model.manifest.catalog_id.as_ref().map(|id| id.to_string()),
            path: model.path.display().to_string(),
            load_path: load_path.display().to_string(),
            size_on_disk: model.size_on_disk,
            repo,
            revision,
            commit: model.hub_commit().map(str::to_string),
            installed_at: model.manifest.installed_at_ms,
        }
    }
}

/// The one download that may run at a time.
pub struct Downloads {
    source: DownloadSource,
    models_dir: PathBuf,
    active: Mutex<Option<(String, CancelToken)>>,
}

/// Frees the download slot however the download ends.
struct ActiveGuard<'a>(&'a Downloads);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.active) = None;
    }
}

impl Downloads {
    pub fn new(source: DownloadSource, models_dir: PathBuf) -> Self {
        Self {
            source,
            models_dir,
            active: Mutex::new(None),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.source.catalog
    }

    /// The id being downloaded, if any.
    pub fn active_id(&self) -> Option<String> {
        lock(&self.active).as_ref().map(|(id, _)| id.clone())
    }

    /// Asks the running download of `id` to stop; its parts are kept. False when none runs.
    pub fn cancel(&self, id: &str) -> bool {
        match lock(&self.active).as_ref() {
            Some((active, cancel)) if active == id => {
                cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Stops whatever is downloading (the window is closing).
    pub fn cancel_all(&self) {
        if let Some((_, cancel)) = lock(&self.active).as_ref() {
            cancel.cancel();
        }
    }

    pub fn installed(&self) -> AppResult<Vec<InstalledModel>> {
        models::list_installed(&self.models_dir)
            .map(|listing| listing.models)
            .map_err(|err| AppError::new(ErrorKind::Io, err.to_string()))
    }

    /// Bytes kept from an unfinished download of catalog entry `id`.
    pub fn partial_bytes(&self, entry: &CatalogEntry) -> u64 {
        models::partial_download_bytes(&self.models_dir, &entry.id)
    }

    /// Downloads catalog entry `id` (converted to `quant` when it is a quantized format) and
    /// installs it. Blocking: run it off the IPC threads.
    pub fn download(
        &self,
        id: &str,
        quant: Option<Quant>,
        report: &(dyn Fn(DownloadProgress) + Sync),
    ) -> AppResult<InstalledModelDto> {
        let entry = self.source.catalog.find(id).ok_or_else(|| {
            AppError::not_found(format!(
                "{id:?} is not in the model catalog; choose one of the listed models"
            ))
        })?;
        let lm_quant = match quant {
            None | Some(Quant::F16) => None,
            Some(quant) => Some(quant.as_str().parse::<LmQuant>().map_err(|err| {
                AppError::invalid(format!("{quant} cannot be produced here: {err}"))
            })?),
        };
        let cancel = CancelToken::new();
        {
            let mut active = lock(&self.active);
            if let Some((running, _)) = active.as_ref() {
                return Err(AppError::invalid(format!(
                    "{running} is downloading; wait for it to finish or cancel it first"
                )));
            }
            *active = Some((entry.id.to_string(), cancel.clone()));
        }
        let _guard = ActiveGuard(self);

        let request = PullRequest::from_catalog(entry);
        let mut on_progress = |progress: &Progress| report(DownloadProgress::from_pull(progress));
        let result = match lm_quant {
            Some(lm) => {
                let hook = GgufHook {
                    name: entry.id.to_string(),
                    lm,
                    report,
                };
                models::pull_with_hook(
                    &self.models_dir,
                    &self.source.hub,
                    &request,
                    &mut on_progress,
                    &cancel,
                    &hook,
                )
            }
            None => models::pull(
                &self.models_dir,
                &self.source.hub,
                &request,
                &mut on_progress,
                &cancel,
            ),
        };
        let outcome = result.map_err(|err| download_error(entry, err))?;
        let installed = outcome.installed;
        report(DownloadProgress::done(
            installed.manifest.total_bytes(),
            installed.manifest.files.len(),
        ));
        Ok(InstalledModelDto::from(&installed))
    }
}

/// Converts the verified download to GGUF in staging, so the install holds both.
struct GgufHook<'a> {
    name: String,
    lm: LmQuant,
    report: &'a (dyn Fn(DownloadProgress) + Sync),
}

impl ConvertHook for GgufHook<'_> {
    fn convert_staged(&self, staged_dir: &Path, manifest: &mut Manifest) -> Result<(), String> {
        let bytes_total = manifest.total_bytes();
        (self.report)(DownloadProgress::converting(bytes_total, 0, 0));
        let opts = ConvertOptions {
            lm: self.lm,
            vision: VisionQuant::F16,
            name: Some(self.name.clone()),
            overwrite: true,
        };
        let output = impchat_convert::convert(staged_dir, staged_dir, &opts, &mut |step| {
            (self.report)(DownloadProgress::converting(
                bytes_total,
                step.done,
                step.total,
            ))
        })
        .map_err(|err| err.to_string())?;
        for written in [output.language_model, output.projector] {
            manifest.record_file(&written.path)?;
        }
        Ok(())
    }
}

/// The pull's error in the app's terms: the kind decides what the UI offers (Retry, Resume),
/// the message says what happened and what to do.
fn download_error(entry: &CatalogEntry, err: PullError) -> AppError {
    let kept = "the part downloaded so far is kept and Retry continues from there";
    match err {
        PullError::Cancelled => AppError::new(
            ErrorKind::Cancelled,
            format!("the download of {} was cancelled; {kept}", entry.name),
        ),
        PullError::Connection { reason, .. } => AppError::new(
            ErrorKind::Download,
            format!(
                "the model server could not be reached ({reason}); check the internet connection and press Retry ({kept})"
            ),
        ),
        PullError::NotFound { file, repo, .. } => AppError::new(
            ErrorKind::NotFound,
            format!(
                "the model server has no {file} in {repo} (HTTP 404); the model may have been moved or renamed, so this version of ImpChat cannot download it"
            ),
        ),
        PullError::ChecksumMismatch { file, .. } => AppError::new(
            ErrorKind::Download,
            format!(
                "{file} arrived damaged (its SHA-256 does not match the server's) and was deleted; press Retry to download it again"
            ),
        ),
        PullError::Io { path, source } if is_disk_full(&source) => AppError::new(
            ErrorKind::Io,
            format!(
                "the disk is full: {} could not be written; free {} or more and press Retry ({kept})",
                path.display(),
                human_bytes(entry.download_bytes())
            ),
        ),
        PullError::Io { path, source } => AppError::io(
            format!("{} could not be written", path.display()),
            &source,
        ),
        PullError::Store(models::StoreError::AlreadyInstalled { .. }) => AppError::invalid(
            format!("{} is already installed; load it from the list", entry.name),
        ),
        err @ PullError::InvalidRequest(_) => AppError::invalid(err.to_string()),
        other => AppError::new(ErrorKind::Download, other.to_string()),
    }
}

fn is_disk_full(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::StorageFull
}

/// `1.6 GB`-style sizes for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use impchat_models::test_support::hub_server::HubServer;
    use impchat_models::CatalogFile;

    use super::*;

    const FIXTURE: &str = "imp-v1.5-3b-phi2";

    /// A hub serving the tiny fixture checkpoint as catalog entry `FIXTURE`.
    fn hub_with_fixture() -> (HubServer, DownloadSource) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(FIXTURE);
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).expect("fixture") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            files.insert(name, std::fs::read(&path).expect("file"));
        }
        let mut catalog = Catalog::builtin().expect("catalog");
        let entry = catalog
            .models
            .iter_mut()
            .find(|m| m.id.as_str() == FIXTURE)
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
        let server = HubServer::start_repo(&entry.repo, &files);
        let hub = HubConfig {
            endpoint: server.endpoint.clone(),
            ..HubConfig::default()
        };
        (server, DownloadSource { hub, catalog })
    }

    #[test]
    fn a_quantized_download_reports_each_phase_and_installs_a_loadable_gguf() {
        let (_server, source) = hub_with_fixture();
        let models = tempfile::tempdir().expect("tempdir");
        let downloads = Downloads::new(source, models.path().to_path_buf());
        let seen = Mutex::new(Vec::new());
        let installed = downloads
            .download(FIXTURE, Some(Quant::Q8_0), &|p| lock(&seen).push(p))
            .expect("download");
        let seen = seen.into_inner().expect("events");
        let phases: Vec<DownloadPhase> = seen.iter().map(|p| p.phase).collect();
        for phase in [
            DownloadPhase::Resolving,
            DownloadPhase::Downloading,
            DownloadPhase::Installing,
            DownloadPhase::Converting,
            DownloadPhase::Done,
        ] {
            assert!(phases.contains(&phase), "{phase:?} missing from {phases:?}");
        }
        assert_eq!(phases.last(), Some(&DownloadPhase::Done));
        let downloading: Vec<u64> = seen
            .iter()
            .filter(|p| p.phase == DownloadPhase::Downloading)
            .map(|p| p.bytes_done)
            .collect();
        assert!(
            downloading.windows(2).all(|w| w[0] <= w[1]),
            "{downloading:?}"
        );
        assert!(
            installed.load_path.ends_with("-Q8_0.gguf"),
            "{}",
            installed.load_path
        );
        let options = impchat_engine::LoadOptions {
            threads: Some(1),
            ..Default::default()
        };
        let model = impchat_engine::Model::load(&installed.load_path, &options).expect("loads");
        // The fixture's tensors are too narrow for Q8_0 blocks, so the converter kept them in
        // 16-bit; what matters here is that the installed GGUF pair loads.
        assert_eq!(model.info().image_size, 56);
        assert_eq!(downloads.active_id(), None, "the slot is free again");
    }

    fn progress(phase: Phase, done: u64, total: u64, files: (usize, usize)) -> Progress {
        Progress {
            phase,
            bytes_done: done,
            bytes_total: total,
            files_done: files.0,
            files_total: files.1,
            bytes_per_second: 2_000.0,
            eta: Some(Duration::from_millis(1500)),
        }
    }

    #[test]
    fn progress_says_verifying_once_every_byte_is_on_disk() {
        let downloading = DownloadProgress::from_pull(&progress(Phase::Downloading, 5, 10, (0, 2)));
        assert_eq!(downloading.phase, DownloadPhase::Downloading);
        assert_eq!(downloading.eta_seconds, Some(1.5));
        let verifying = DownloadProgress::from_pull(&progress(Phase::Downloading, 10, 10, (1, 2)));
        assert_eq!(verifying.phase, DownloadPhase::Verifying);
        let finished = DownloadProgress::from_pull(&progress(Phase::Downloading, 10, 10, (2, 2)));
        assert_eq!(finished.phase, DownloadPhase::Downloading);
        let resolving = DownloadProgress::from_pull(&progress(Phase::Resolving, 0, 0, (0, 2)));
        assert_eq!(resolving.phase, DownloadPhase::Resolving);
    }

    #[test]
    fn progress_serialises_as_the_ipc_contract_says() {
        let json = serde_json::to_value(DownloadProgress::from_pull(&progress(
            Phase::Downloading,
            5,
            10,
            (0, 2),
        )))
        .expect("json");
        assert_eq!(json["phase"], "downloading");
        assert_eq!(json["bytesDone"], 5);
        assert_eq!(json["bytesTotal"], 10);
        assert_eq!(json["bytesPerSecond"], 2000.0);
        assert_eq!(json["etaSeconds"], 1.5);
        assert_eq!(json["partsTotal"], 2);
    }

    #[test]
    fn sizes_read_like_a_person_wrote_them() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1_600_000_000), "1.6 GB");
    }
}
