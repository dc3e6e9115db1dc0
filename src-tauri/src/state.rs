//! Everything the commands share, managed by Tauri.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use impchat_engine::CancelToken;
use impchat_store::Store;

use crate::downloads::{DownloadSource, Downloads};
use crate::error::{AppError, AppResult};
use crate::settings::{AppSettings, SettingsFile};
use crate::staging::Staging;
use crate::worker::ModelWorker;

pub struct AppState {
    pub data_dir: PathBuf,
    settings_file: SettingsFile,
    settings: Mutex<AppSettings>,
    store: Mutex<Store>,
    pub staging: Staging,
    pub model: ModelWorker,
    pub downloads: Downloads,
    /// The answer being written, if any: at most one at a time.
    pub generating: Mutex<Option<CancelToken>>,
    /// Start-up notices (damaged database or settings moved aside) the user has not seen.
    notices: Mutex<Vec<String>>,
}

impl AppState {
    /// Opens (creating) the data folder and everything in it; returns notices for the user.
    /// Downloads come from `source` and go to `<data_dir>/models`, the folder the `impchat`
    /// command uses too.
    pub fn open_with(data_dir: &Path, source: DownloadSource) -> AppResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|err| {
            AppError::io(
                format!("could not create the data folder {}", data_dir.display()),
                &err,
            )
        })?;
        let mut notices = Vec::new();
        let (store, store_notice) = Store::open(data_dir)?;
        notices.extend(store_notice.map(|notice| notice.message));
        let settings_file = SettingsFile::new(data_dir);
        let loaded = settings_file.load();
        notices.extend(loaded.notice);
        let model = ModelWorker::start()?;
        model.set_idle_unload(loaded.settings.idle_unload());
        let state = Self {
            data_dir: data_dir.to_path_buf(),
            settings_file,
            settings: Mutex::new(loaded.settings),
            store: Mutex::new(store),
            staging: Staging::default(),
            model,
            downloads: Downloads::new(source, data_dir.join("models")),
            generating: Mutex::new(None),
            notices: Mutex::new(notices),
        };
        Ok(state)
    }

    pub fn pending_notices(&self) -> Vec<String> {
        lock(&self.notices).clone()
    }

    /// The start-up notices, once: the page shows them and they are gone.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.notices))
    }

    /// Stops the answer being written, if any.
    pub fn stop_generation(&self) {
        if let Some(cancel) = lock(&self.generating).as_ref() {
            cancel.cancel();
        }
    }

    /// The store, for one short operation; never hold it while generating.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn settings(&self) -> AppSettings {
        lock(&self.settings).clone()
    }

    /// Validates, persists, then replaces the settings.
    pub fn set_settings(&self, settings: AppSettings) -> AppResult<()> {
        let current = self.data_dir.display().to_string();
        if settings.data_dir != current {
            return Err(AppError::invalid(format!(
                "the data folder cannot be changed here; it is {current}"
            )));
        }
        settings.validate()?;
        let mut guard = lock(&self.settings);
        self.settings_file.save(&settings)?;
        if guard.idle_unload_minutes != settings.idle_unload_minutes {
            self.model.set_idle_unload(settings.idle_unload());
        }
        *guard = settings;
        Ok(())
    }

    /// Changes settings in place and persists them (e.g. remembering the last model).
    pub fn update_settings(&self, change: impl FnOnce(&mut AppSettings)) -> AppResult<()> {
        let mut guard = lock(&self.settings);
        let mut next = guard.clone();
        change(&mut next);
        self.settings_file.save(&next)?;
        *guard = next;
        Ok(())
    }
}

/// A poisoned lock only means another command panicked mid-way; the data is still usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_database_is_set_aside_and_the_user_told_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("impchat.db"), vec![b'x'; 8192]).expect("write");
        let source = DownloadSource::from_env().expect("catalog");
        let state = AppState::open_with(dir.path(), source).expect("opens despite the damage");
        let notices = state.take_notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].contains("damaged"), "{}", notices[0]);
        assert!(state.take_notices().is_empty());
        assert!(state
            .store()
            .list_conversations(false)
            .expect("fresh store works")
            .is_empty());
    }
}
