//! `impchat models ...`: the catalog, downloads, imports and the models directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use impchat_convert::LmQuant;
use impchat_models::{
    self as models, Catalog, CatalogEntry, CheckpointError, ImportError, ModelId, StoreError,
};
use serde::Serialize;

use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::output;
use crate::progress_line::human_bytes;

mod pull;

#[derive(Args)]
pub struct ModelsArgs {
    /// Folder holding installed models (default: the ImpChat app's models folder).
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the catalog and installed models: state, size on disk, whether it fits in memory.
    List {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download a catalog model from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN honoured).
    Pull {
        /// Catalog id (see `impchat models list`) or Hugging Face repo.
        id: String,
        /// Also convert it to GGUF at this language-model quantization (q4_k_m, q4_0, q5_k,
        /// q6_k, q8_0, f16) before installing; the checkpoint files are kept.
        #[arg(long, value_parser = crate::convert_cmd::parse_lm)]
        quant: Option<LmQuant>,
    },
    /// Install a copy of a checkpoint folder you already have.
    Import {
        path: PathBuf,
        /// Id to install it under (default: the folder's name).
        #[arg(long)]
        id: Option<String>,
    },
    /// Delete an installed model.
    Remove { id: String },
    /// Re-hash an installed model's files against its manifest.
    Verify { id: String },
}

pub fn run(args: ModelsArgs) -> Outcome {
    let dir = match args.models_dir {
        Some(dir) => dir,
        None => models::default_models_dir().ok_or_else(|| {
            Failure::usage("this system reports no data folder; pass --models-dir DIR")
        })?,
    };
    match args.command {
        ModelsCommand::List { json } => list(&dir, json),
        ModelsCommand::Pull { id, quant } => pull::pull(&dir, &id, quant),
        ModelsCommand::Import { path, id } => import(&dir, &path, id),
        ModelsCommand::Remove { id } => {
            let id = model_id(&id)?;
            let freed = models::remove(&dir, &id).map_err(store_failure)?;
            output::print_line(&format!("removed {id} ({} freed)", human_bytes(freed)))?;
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Verify { id } => verify(&dir, &id),
    }
}

fn model_id(text: &str) -> Result<ModelId, Failure> {
    ModelId::new(text).map_err(Failure::usage)
}

fn store_failure(err: StoreError) -> Failure {
    match err {
        StoreError::NotInstalled { .. } | StoreError::AlreadyInstalled { .. } => {
            Failure::bad_input(err)
        }
        other => Failure::new(ExitKind::Failure, other),
    }
}

fn catalog() -> Result<Catalog, Failure> {
    Catalog::builtin().or_exit(ExitKind::Failure)
}

#[derive(Serialize)]
struct ListedModel {
    id: String,
    name: String,
    repo: Option<String>,
    in_catalog: bool,
    installed: bool,
    path: Option<PathBuf>,
    size_on_disk: Option<u64>,
    download_bytes: Option<u64>,
    /// "yes", "tight", "no", or null when unknown (not in the catalog, or no memory figure).
    fits_in_memory: Option<models::Fit>,
    required_ram_bytes: Option<u64>,
    /// The hub commit the files were downloaded from (None for imports and not-installed models).
    commit: Option<String>,
}

fn list(dir: &Path, json: bool) -> Outcome {
    let catalog = catalog()?;
    let listing = if dir.exists() {
        models::list_installed(dir).map_err(store_failure)?
    } else {
        models::Listing::default()
    };
    let installed_for = |entry: &CatalogEntry| {
        listing
            .models
            .iter()
            .find(|m| m.id == entry.id || m.manifest.catalog_id.as_ref() == Some(&entry.id))
    };
    let mut rows: Vec<ListedModel> = catalog
        .models
        .iter()
        .map(|entry| {
            let installed = installed_for(entry);
            let required = entry
                .recommended_quant()
                .map(|q| entry.estimate_ram(q.quant, q.context_tokens).total);
            ListedModel {
                id: entry.id.to_string(),
                name: entry.name.clone(),
                repo: Some(entry.repo.clone()),
                in_catalog: true,
                installed: installed.is_some(),
                path: installed.map(|m| m.path.clone()),
                size_on_disk: installed.map(|m| m.size_on_disk),
                download_bytes: Some(entry.download_bytes()),
                fits_in_memory: entry.fit_now().map(|report| report.fit),
                required_ram_bytes: required,
                commit: installed.and_then(|m| m.hub_commit()).map(str::to_string),
            }
        })
        .collect();
    for model in &listing.models {
        if rows
            .iter()
            .any(|row| row.path.as_ref() == Some(&model.path))
        {
            continue;
        }
        rows.push(ListedModel {
            id: model.id.to_string(),
            name: model.id.to_string(),
            repo: None,
            in_catalog: false,
            installed: true,
            path: Some(model.path.clone()),
            size_on_disk: Some(model.size_on_disk),
            download_bytes: None,
            fits_in_memory: None,
            required_ram_bytes: None,
            commit: model.hub_commit().map(str::to_string),
        });
    }
    if json {
        let unreadable: Vec<_> = listing
            .unreadable
            .iter()
            .map(|u| serde_json::json!({"path": u.path, "reason": u.reason}))
            .collect();
        let out = serde_json::json!({"models_dir": dir, "models": rows, "unreadable": unreadable});
        output::print_line(&out.to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    output::print_line(&format!("models folder: {}", dir.display()))?;
    output::print_line(&format!(
        "{:<28} {:<10} {:>10} {:>10}  {:<5}  COMMIT",
        "ID", "STATE", "ON DISK", "DOWNLOAD", "FITS"
    ))?;
    for row in &rows {
        let state = if row.installed { "installed" } else { "-" };
        let size = row.size_on_disk.map_or("-".into(), human_bytes);
        let download = row.download_bytes.map_or("-".into(), human_bytes);
        let fits = match row.fits_in_memory {
            Some(models::Fit::Yes) => "yes",
            Some(models::Fit::Tight) => "tight",
            Some(models::Fit::No) => "no",
            None => "?",
        };
        let commit: String = row
            .commit
            .as_deref()
            .map_or("-".into(), |c| c.chars().take(12).collect());
        output::print_line(&format!(
            "{:<28} {state:<10} {size:>10} {download:>10}  {fits:<5}  {commit}",
            row.id
        ))?;
    }
    for bad in &listing.unreadable {
        eprintln!("impchat: skipped {}: {}", bad.path.display(), bad.reason);
    }
    Ok(ExitCode::SUCCESS)
}

fn import(dir: &Path, path: &Path, id: Option<String>) -> Outcome {
    let id = match id {
        Some(id) => model_id(&id)?,
        None => {
            let name = path
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .ok_or_else(|| {
                    Failure::bad_input(format!(
                        "cannot read the folder {}; check the path",
                        path.display()
                    ))
                })?;
            match ModelId::new(name) {
                Ok(id) => id,
                Err(err) => {
                    // A folder that is not a checkpoint at all deserves that message first.
                    models::validate_checkpoint(path).map_err(|e| checkpoint_failure(path, e))?;
                    return Err(Failure::bad_input(format!("{err}; choose one with --id")));
                }
            }
        }
    };
    let cancel = models::CancelToken::new();
    let handler_cancel = cancel.clone();
    ctrlc::set_handler(move || handler_cancel.cancel()).or_exit(ExitKind::Failure)?;
    match models::import_checkpoint(dir, path, &id, &cancel) {
        Ok((installed, _report)) => {
            output::print_line(&format!(
                "imported {} at {} ({})",
                installed.id,
                installed.path.display(),
                human_bytes(installed.size_on_disk)
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Checkpoint(err)) => Err(checkpoint_failure(path, err)),
        Err(ImportError::Store(err)) => Err(store_failure(err)),
        Err(err @ ImportError::Cancelled) => Err(Failure::new(ExitKind::Interrupted, err)),
        Err(err @ ImportError::Copy { .. }) => Err(Failure::new(ExitKind::Failure, err)),
    }
}

fn checkpoint_failure(path: &Path, err: CheckpointError) -> Failure {
    Failure::bad_input(format!("cannot import {}: {err}", path.display()))
}

fn verify(dir: &Path, id: &str) -> Outcome {
    let id = model_id(id)?;
    let report = models::verify(dir, &id).map_err(store_failure)?;
    if report.is_ok() {
        output::print_line(&format!(
            "{id}: {} files, {} verified",
            report.files_checked,
            human_bytes(report.bytes_checked)
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    Err(Failure::bad_input(format!(
        "{id} is damaged: {}; remove it and pull or import it again",
        problems.join("; ")
    )))
}
