//! `impchat models pull`: a verified, resumable download from the Hub, optionally converted.

use std::path::Path;
use std::process::ExitCode;

use impchat_convert::{ConvertOptions, LmQuant, VisionQuant};
use impchat_models::{
    self as models, CatalogEntry, ConvertHook, HubConfig, Manifest, Progress, PullError,
    PullRequest,
};

use super::{catalog, store_failure};
use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::output;
use crate::progress_line::{human_bytes, human_duration, ProgressLine};

pub fn pull(dir: &Path, id: &str, quant: Option<LmQuant>) -> Outcome {
    let catalog = catalog()?;
    let entry = catalog.find(id).ok_or_else(|| {
        Failure::bad_input(format!(
            "{id:?} is not in the catalog; `impchat models list` shows the ids you can pull"
        ))
    })?;
    let request = PullRequest::from_catalog(entry);
    let config = HubConfig::from_env();
    let cancel = models::CancelToken::new();
    let handler_cancel = cancel.clone();
    ctrlc::set_handler(move || handler_cancel.cancel()).or_exit(ExitKind::Failure)?;
    let mut line = ProgressLine::new();
    let mut on_progress = |p: &Progress| line.update(&progress_text(entry, p), false);
    let result = match quant {
        Some(lm) => {
            let hook = GgufHook {
                name: entry.id.to_string(),
                lm,
            };
            models::pull_with_hook(dir, &config, &request, &mut on_progress, &cancel, &hook)
        }
        None => models::pull(dir, &config, &request, &mut on_progress, &cancel),
    };
    line.finish();
    match result {
        Ok(outcome) => {
            let installed = outcome.installed;
            let resumed = if outcome.resumed_bytes > 0 {
                format!(
                    ", {} resumed from an earlier download",
                    human_bytes(outcome.resumed_bytes)
                )
            } else {
                String::new()
            };
            output::print_line(&format!(
                "installed {} at {} ({}{resumed})",
                installed.id,
                installed.path.display(),
                human_bytes(installed.size_on_disk)
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(PullError::Cancelled) => Err(Failure::new(ExitKind::Interrupted, PullError::Cancelled)),
        Err(PullError::Store(err)) => Err(store_failure(err)),
        Err(err @ PullError::InvalidRequest(_)) => Err(Failure::bad_input(err)),
        Err(err) => Err(Failure::new(ExitKind::Failure, err)),
    }
}

/// Converts the verified download to GGUF in staging, so the install holds both.
struct GgufHook {
    name: String,
    lm: LmQuant,
}

impl ConvertHook for GgufHook {
    fn convert_staged(&self, staged_dir: &Path, manifest: &mut Manifest) -> Result<(), String> {
        eprintln!("{}: converting to {} GGUF...", self.name, self.lm);
        let opts = ConvertOptions {
            lm: self.lm,
            vision: VisionQuant::F16,
            name: Some(self.name.clone()),
            overwrite: true,
        };
        let output = impchat_convert::convert(staged_dir, staged_dir, &opts, &mut |_| {})
            .map_err(|err| err.to_string())?;
        for written in [output.language_model, output.projector] {
            manifest.record_file(&written.path)?;
        }
        Ok(())
    }
}

fn progress_text(entry: &CatalogEntry, p: &Progress) -> String {
    match p.phase {
        models::Phase::Resolving => format!("{}: asking the hub for file sizes...", entry.id),
        models::Phase::Installing => format!("{}: verified, installing...", entry.id),
        models::Phase::Downloading => {
            let percent = if p.bytes_total > 0 {
                p.bytes_done as f64 * 100.0 / p.bytes_total as f64
            } else {
                0.0
            };
            let eta = p.eta.map_or("?".into(), human_duration);
            format!(
                "{}: {} / {} ({percent:.1}%), {}/s, ETA {eta}, {}/{} files",
                entry.id,
                human_bytes(p.bytes_done),
                human_bytes(p.bytes_total),
                human_bytes(p.bytes_per_second as u64),
                p.files_done,
                p.files_total
            )
        }
    }
}
