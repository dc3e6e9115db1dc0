//! The model thread: one `std::thread` owns the loaded model and the per-conversation
//! sessions (their KV caches); commands hand it jobs through a channel and await the reply.
//! Nothing CPU-heavy ever runs on the IPC or UI threads.
//!
//! At most one model is resident. After the idle time the settings give (or when a phone app
//! goes to the background) the thread drops the model but remembers where it came from, and
//! the next job that needs it loads it again first, so a send after a pause just works.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use impchat_engine::{LoadOptions, Model, Session};

use crate::dto::{ModelInfoDto, ModelState, ModelStatus};
use crate::error::{AppError, AppResult, ErrorKind};
use crate::state::lock;

/// KV caches are big; keep sessions for this many recent conversations.
const MAX_SESSIONS: usize = 4;

/// What the model thread owns.
#[derive(Default)]
pub struct Slot {
    pub model: Option<Model>,
    sessions: HashMap<String, (Session, u64)>,
    clock: u64,
    /// Where the current model was loaded from, to load it again after an idle unload.
    source: Option<ModelSource>,
    /// The model was dropped to free memory and is loaded again when next needed.
    unloaded_while_idle: Option<ModelInfoDto>,
}

#[derive(Clone)]
struct ModelSource {
    path: PathBuf,
    threads: Option<usize>,
}

impl Slot {
    /// The loaded model and this conversation's session (created on first use).
    pub fn model_and_session(&mut self, conversation_id: &str) -> Option<(&Model, &mut Session)> {
        let model = self.model.as_ref()?;
        self.clock += 1;
        let now = self.clock;
        if !self.sessions.contains_key(conversation_id) && self.sessions.len() >= MAX_SESSIONS {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        let entry = self
            .sessions
            .entry(conversation_id.to_string())
            .or_insert_with(|| (model.new_session(), now));
        entry.1 = now;
        Some((model, &mut entry.0))
    }

    fn clear(&mut self) {
        self.sessions.clear();
        self.model = None;
        self.source = None;
        self.unloaded_while_idle = None;
    }

    /// Drops the model (and its sessions) but remembers how to load it again.
    fn unload_while_idle(&mut self, status: &StatusCell) {
        if self.model.is_none() {
            return;
        }
        let info = status.get().model;
        self.sessions.clear();
        self.model = None;
        self.unloaded_while_idle = info.clone();
        if let Some(info) = info {
            status.set(ModelStatus::unloaded_while_idle(info));
        }
    }

    /// Loads the model again after an idle unload; a no-op when it is resident.
    fn reload_if_unloaded(&mut self, status: &StatusCell) {
        let (Some(info), Some(source)) = (self.unloaded_while_idle.take(), self.source.clone())
        else {
            return;
        };
        status.set(ModelStatus::reloading(info));
        let options = LoadOptions {
            threads: source.threads,
            ..LoadOptions::default()
        };
        match Model::load(&source.path, &options) {
            Ok(model) => {
                status.set(ModelStatus::ready(ModelInfoDto::from(model.info())));
                self.model = Some(model);
            }
            Err(err) => {
                self.source = None;
                status.set(ModelStatus::error(format!(
                    "could not load the model from {} again after it was unloaded while idle: {err}",
                    source.path.display()
                )));
            }
        }
    }
}

/// A job and whether it needs the model resident (loading and unloading do not).
struct Job {
    needs_model: bool,
    run: Box<dyn FnOnce(&mut Slot) + Send>,
}

type StatusListener = Box<dyn Fn(&ModelStatus) + Send + Sync>;

/// The model status, shared with the commands, and who to tell when it changes.
#[derive(Default)]
struct StatusCell {
    status: Mutex<ModelStatus>,
    listener: Mutex<Option<StatusListener>>,
}

impl StatusCell {
    fn get(&self) -> ModelStatus {
        lock(&self.status).clone()
    }

    fn set(&self, status: ModelStatus) {
        *lock(&self.status) = status.clone();
        if let Some(listener) = lock(&self.listener).as_ref() {
            listener(&status);
        }
    }
}

pub struct ModelWorker {
    jobs: Mutex<mpsc::Sender<Job>>,
    status: Arc<StatusCell>,
    idle_unload: Arc<Mutex<Option<Duration>>>,
}

impl ModelWorker {
    pub fn start() -> AppResult<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let status = Arc::new(StatusCell::default());
        status.set(ModelStatus::none());
        let idle_unload = Arc::new(Mutex::new(None));
        let thread_status = Arc::clone(&status);
        let thread_idle = Arc::clone(&idle_unload);
        std::thread::Builder::new()
            .name("impchat-model".into())
            .spawn(move || serve(&inbox, &thread_status, &thread_idle))
            .map_err(|err| {
                AppError::internal(format!("could not start the model thread: {err}"))
            })?;
        Ok(Self {
            jobs: Mutex::new(jobs),
            status,
            idle_unload,
        })
    }

    pub fn status(&self) -> ModelStatus {
        self.status.get()
    }

    /// Calls `listener` with every new status (the app turns it into a `model-status` event).
    pub fn on_status_change(&self, listener: impl Fn(&ModelStatus) + Send + Sync + 'static) {
        *lock(&self.status.listener) = Some(Box::new(listener));
    }

    /// Unload the model after `idle` without jobs; `None` keeps it loaded.
    pub fn set_idle_unload(&self, idle: Option<Duration>) {
        *lock(&self.idle_unload) = idle;
        // Wakes the thread so it starts counting with the new time.
        let _ = self.submit(Job {
            needs_model: false,
            run: Box::new(|_| {}),
        });
    }

    /// Drops the model now (the app went to the background); the next job loads it again.
    #[cfg_attr(not(mobile), allow(dead_code))] // called from the phone builds' Suspended event
    pub fn unload_until_needed(&self) {
        let status = Arc::clone(&self.status);
        let _ = self.submit(Job {
            needs_model: false,
            run: Box::new(move |slot| slot.unload_while_idle(&status)),
        });
    }

    /// Info of the model that is loaded and ready (or unloaded while idle, which the next job
    /// loads again), if any.
    pub fn ready_model(&self) -> Option<ModelInfoDto> {
        let status = self.status.get();
        match status.state {
            ModelState::Ready => status.model.clone(),
            _ => None,
        }
    }

    /// Runs `f` on the model thread and waits (asynchronously) for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Slot) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job {
            needs_model: true,
            run: Box::new(move |slot| {
                let _ = reply.send(f(slot));
            }),
        })?;
        answer.await.map_err(|_| {
            AppError::new(
                ErrorKind::Engine,
                "the model stopped while working on this request; try again",
            )
        })?
    }

    fn submit(&self, job: Job) -> AppResult<()> {
        lock(&self.jobs)
            .send(job)
            .map_err(|_| AppError::internal("the model thread has stopped; restart ImpChat"))
    }

    /// Says `loading` until a load that is about to be started has finished.
    pub fn mark_loading(&self) {
        self.status.set(ModelStatus::loading());
    }

    /// Runs `f` on the model thread without loading an idle-unloaded model first.
    async fn run_unloaded<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Slot) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job {
            needs_model: false,
            run: Box::new(move |slot| {
                let _ = reply.send(f(slot));
            }),
        })?;
        answer.await.map_err(|_| {
            AppError::new(
                ErrorKind::Engine,
                "the model stopped while working on this request; try again",
            )
        })?
    }

    /// Loads a model (replacing the current one); status is `loading` until it is done.
    pub async fn load(&self, path: PathBuf, threads: Option<usize>) -> AppResult<ModelInfoDto> {
        self.mark_loading();
        let status = Arc::clone(&self.status);
        self.run_unloaded(move |slot| {
            // Never two models in memory: the old one goes before the new one loads.
            slot.clear();
            let options = LoadOptions {
                threads,
                ..LoadOptions::default()
            };
            match Model::load(&path, &options) {
                Ok(model) => {
                    let info = ModelInfoDto::from(model.info());
                    slot.model = Some(model);
                    slot.source = Some(ModelSource { path, threads });
                    status.set(ModelStatus::ready(info.clone()));
                    Ok(info)
                }
                Err(err) => {
                    let message =
                        format!("could not load the model from {}: {err}", path.display());
                    status.set(ModelStatus::error(&message));
                    Err(AppError::new(ErrorKind::Engine, message))
                }
            }
        })
        .await
    }

    pub async fn unload(&self) -> AppResult<()> {
        let status = Arc::clone(&self.status);
        self.run_unloaded(move |slot| {
            slot.clear();
            status.set(ModelStatus::none());
            Ok(())
        })
        .await
    }
}

/// The model thread's loop: runs jobs in order, unloads the model after the idle time.
fn serve(inbox: &mpsc::Receiver<Job>, status: &StatusCell, idle_unload: &Mutex<Option<Duration>>) {
    let mut slot = Slot::default();
    loop {
        let idle = if slot.model.is_some() {
            *lock(idle_unload)
        } else {
            None
        };
        let job = match idle {
            Some(idle) => match inbox.recv_timeout(idle) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    slot.unload_while_idle(status);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match inbox.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if job.needs_model {
                slot.reload_if_unloaded(status);
            }
            (job.run)(&mut slot)
        }));
        if outcome.is_err() {
            // The model's state is unknown after a panic; start clean.
            slot.clear();
            status.set(ModelStatus::error(
                "the model stopped working unexpectedly and was unloaded; load it again",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::*;

    fn tiny_model() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/imp-v1.5-3b-phi2")
    }

    fn wait_for(worker: &ModelWorker, what: &str, done: impl Fn(&ModelStatus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&worker.status()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                worker.status()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn resident(worker: &ModelWorker) -> bool {
        tauri::async_runtime::block_on(worker.run_unloaded(|slot| Ok(slot.model.is_some())))
            .expect("asked the model thread")
    }

    #[test]
    fn an_idle_model_is_unloaded_said_so_and_loaded_again_by_the_next_job() {
        let worker = ModelWorker::start().expect("worker");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener_seen = Arc::clone(&seen);
        worker.on_status_change(move |status| lock(&listener_seen).push(status.clone()));
        let info =
            tauri::async_runtime::block_on(worker.load(tiny_model(), Some(1))).expect("load");

        worker.set_idle_unload(Some(Duration::from_millis(30)));
        wait_for(&worker, "the idle unload", |status| status.idle);
        let status = worker.status();
        assert_eq!(status.state, ModelState::Ready, "still usable");
        assert_eq!(status.model.as_ref(), Some(&info));
        assert!(worker.ready_model().is_some());
        assert!(!resident(&worker), "the weights are gone");
        assert!(lock(&seen).iter().any(|s| s.idle), "the UI was told");

        // The next job that needs the model gets it back without anyone loading it.
        worker.set_idle_unload(None);
        let answer = tauri::async_runtime::block_on(
            worker.run(|slot| Ok(slot.model_and_session("c1").is_some())),
        )
        .expect("job");
        assert!(answer, "the job found the model loaded again");
        let status = worker.status();
        assert_eq!((status.state, status.idle), (ModelState::Ready, false));
        assert!(lock(&seen)
            .iter()
            .any(|s| s.state == ModelState::Loading && s.model.is_some()));
    }

    #[test]
    fn with_idle_unload_off_the_model_stays_and_background_unloads_it() {
        let worker = ModelWorker::start().expect("worker");
        tauri::async_runtime::block_on(worker.load(tiny_model(), Some(1))).expect("load");
        std::thread::sleep(Duration::from_millis(50));
        assert!(resident(&worker));
        assert!(!worker.status().idle);

        worker.unload_until_needed();
        wait_for(&worker, "the background unload", |status| status.idle);
        assert!(!resident(&worker));
        tauri::async_runtime::block_on(worker.unload()).expect("unload");
        assert_eq!(worker.status().state, ModelState::None);
        assert!(
            worker.ready_model().is_none(),
            "an unload forgets the idle model"
        );
    }
}
