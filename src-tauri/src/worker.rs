//! The model thread: one `std::thread` owns the loaded model and the per-conversation
//! sessions (their KV caches); commands hand it jobs through a channel and await the reply.
//! Nothing CPU-heavy ever runs on the IPC or UI threads.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

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
    }
}

type Job = Box<dyn FnOnce(&mut Slot) + Send>;

pub struct ModelWorker {
    jobs: Mutex<mpsc::Sender<Job>>,
    status: Arc<Mutex<ModelStatus>>,
}

impl ModelWorker {
    pub fn start() -> AppResult<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let status = Arc::new(Mutex::new(ModelStatus::none()));
        let thread_status = Arc::clone(&status);
        std::thread::Builder::new()
            .name("impchat-model".into())
            .spawn(move || {
                let mut slot = Slot::default();
                while let Ok(job) = inbox.recv() {
                    if catch_unwind(AssertUnwindSafe(|| job(&mut slot))).is_err() {
                        // The model's state is unknown after a panic; start clean.
                        slot.clear();
                        *lock(&thread_status) = ModelStatus::error(
                            "the model stopped working unexpectedly and was unloaded; load it again",
                        );
                    }
                }
            })
            .map_err(|err| AppError::internal(format!("could not start the model thread: {err}")))?;
        Ok(Self {
            jobs: Mutex::new(jobs),
            status,
        })
    }

    pub fn status(&self) -> ModelStatus {
        lock(&self.status).clone()
    }

    /// Info of the model that is loaded and ready, if any.
    pub fn ready_model(&self) -> Option<ModelInfoDto> {
        let status = lock(&self.status);
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
        self.submit(Box::new(move |slot| {
            let _ = reply.send(f(slot));
        }))?;
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
        *lock(&self.status) = ModelStatus::loading();
    }

    /// Loads a model (replacing the current one); status is `loading` until it is done.
    pub async fn load(&self, path: PathBuf, threads: Option<usize>) -> AppResult<ModelInfoDto> {
        self.mark_loading();
        let status = Arc::clone(&self.status);
        self.run(move |slot| {
            slot.clear();
            let options = LoadOptions { threads };
            match Model::load(&path, &options) {
                Ok(model) => {
                    let info = ModelInfoDto::from(model.info());
                    slot.model = Some(model);
                    *lock(&status) = ModelStatus::ready(info.clone());
                    Ok(info)
                }
                Err(err) => {
                    let message =
                        format!("could not load the model from {}: {err}", path.display());
                    *lock(&status) = ModelStatus::error(&message);
                    Err(AppError::new(ErrorKind::Engine, message))
                }
            }
        })
        .await
    }

    pub async fn unload(&self) -> AppResult<()> {
        let status = Arc::clone(&self.status);
        self.run(move |slot| {
            slot.clear();
            *lock(&status) = ModelStatus::none();
            Ok(())
        })
        .await
    }
}
