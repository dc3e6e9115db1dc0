//! One model thread answers one request at a time; the others wait in a bounded FIFO queue.
//!
//! The server is stateless, but when a request's messages extend the previous request's
//! conversation (the usual chat follow-up), the previous session is reused so its cache
//! saves recomputing the shared prefix.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use impchat_engine::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, Model, Session,
    StopReason,
};
use tokio::sync::mpsc;

use super::error::ApiError;

/// What a job reports back to the HTTP handler, in order: `Delta`* then `Done` or `Failed`.
#[derive(Debug)]
pub enum JobEvent {
    Delta(String),
    Done(GenerationStats),
    Failed(ApiError),
}

pub struct Job {
    /// The completion id, used in the log.
    pub id: String,
    pub request: GenerateRequest,
    /// Flipped when the client goes away.
    pub cancel: CancelToken,
    pub events: mpsc::UnboundedSender<JobEvent>,
}

#[derive(Clone)]
pub struct ModelQueue {
    jobs: mpsc::Sender<Job>,
    capacity: usize,
    running: Arc<Mutex<Option<CancelToken>>>,
    closing: Arc<AtomicBool>,
}

impl ModelQueue {
    /// Starts the model thread; at most `capacity` requests wait while one is answered.
    pub fn start(model: Model, capacity: usize) -> std::io::Result<Self> {
        let (jobs, queued) = mpsc::channel(capacity);
        let queue = Self {
            jobs,
            capacity,
            running: Arc::new(Mutex::new(None)),
            closing: Arc::new(AtomicBool::new(false)),
        };
        let worker = Worker {
            model,
            running: Arc::clone(&queue.running),
            closing: Arc::clone(&queue.closing),
            previous: None,
        };
        std::thread::Builder::new()
            .name("impchat-model".into())
            .spawn(move || worker.run(queued))?;
        Ok(queue)
    }

    /// Queues a job, or refuses at once (429) when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(ApiError::shutting_down());
        }
        self.jobs.try_send(job).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => ApiError::queue_full(self.capacity),
            mpsc::error::TrySendError::Closed(_) => {
                ApiError::internal("the model thread has stopped")
            }
        })
    }

    /// Stops the answer in progress and refuses everything still queued (server shutdown).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(cancel) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            cancel.cancel();
        }
    }
}

/// The session of the last answered request and the conversation it has seen.
struct Previous {
    session: Session,
    transcript: Transcript,
}

/// A conversation as a session has seen it, its own answer included.
struct Transcript {
    system: Option<String>,
    messages: Vec<ChatMessage>,
}

impl Transcript {
    fn after(request: &GenerateRequest, answer: String) -> Self {
        let mut messages = request.messages.clone();
        messages.push(ChatMessage::assistant(answer));
        Self {
            system: request.system.clone(),
            messages,
        }
    }

    /// Whether `request` continues this conversation: same system prompt, and its messages
    /// start with all of these.
    fn is_continued_by(&self, request: &GenerateRequest) -> bool {
        request.system == self.system
            && request.messages.len() > self.messages.len()
            && self
                .messages
                .iter()
                .zip(&request.messages)
                .all(|(a, b)| same_message(a, b))
    }
}

fn same_message(a: &ChatMessage, b: &ChatMessage) -> bool {
    a.role == b.role
        && a.text == b.text
        && a.images.len() == b.images.len()
        && a.images.iter().zip(&b.images).all(|(x, y)| x.0 == y.0)
}

struct Worker {
    model: Model,
    running: Arc<Mutex<Option<CancelToken>>>,
    closing: Arc<AtomicBool>,
    previous: Option<Previous>,
}

impl Worker {
    fn run(mut self, mut queued: mpsc::Receiver<Job>) {
        while let Some(job) = queued.blocking_recv() {
            if job.cancel.is_cancelled() {
                eprintln!(
                    "{}: the client went away while waiting in the queue",
                    job.id
                );
                continue;
            }
            // Published before `closing` is read: a `close` in between either sees this job
            // and cancels it, or has already set `closing`.
            *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(job.cancel.clone());
            if self.closing.load(Ordering::SeqCst) {
                let _ = job.events.send(JobEvent::Failed(ApiError::shutting_down()));
            } else {
                eprintln!("{}: answering", job.id);
                self.answer(job);
            }
            *self.running.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    fn answer(&mut self, job: Job) {
        let started = Instant::now();
        let (mut session, reused) = match self.previous.take() {
            Some(previous) if previous.transcript.is_continued_by(&job.request) => {
                (previous.session, true)
            }
            _ => (self.model.new_session(), false),
        };
        let mut answer = String::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            session.generate(&job.request, &job.cancel, &mut |event| {
                if let GenerationEvent::Token { text } = event {
                    answer.push_str(&text);
                    // A closed channel means the client left; the cancel token stops us.
                    let _ = job.events.send(JobEvent::Delta(text));
                }
            })
        }));
        let elapsed_ms = started.elapsed().as_millis();
        match outcome {
            Ok(Ok(stats)) => {
                let closing = self.closing.load(Ordering::SeqCst);
                log_answer(&job.id, &stats, reused, elapsed_ms, closing);
                let event = if stats.stop_reason == Some(StopReason::Cancelled) {
                    // Cut off by a shutdown (or a client that left, which reads nothing):
                    // a client still listening must not take the text for a whole answer.
                    JobEvent::Failed(ApiError::interrupted(stats.generated_tokens))
                } else {
                    let transcript = Transcript::after(&job.request, answer);
                    self.previous = Some(Previous {
                        session,
                        transcript,
                    });
                    JobEvent::Done(stats)
                };
                let _ = job.events.send(event);
            }
            Ok(Err(err)) => {
                let err = ApiError::from_engine(err);
                eprintln!(
                    "{}: failed after {elapsed_ms} ms: {}",
                    job.id,
                    err.message()
                );
                let _ = job.events.send(JobEvent::Failed(err));
            }
            Err(_) => {
                eprintln!("{}: the engine panicked; its session was dropped", job.id);
                let err = ApiError::internal("the model failed while answering (engine panic)");
                let _ = job.events.send(JobEvent::Failed(err));
            }
        }
    }
}

fn log_answer(id: &str, stats: &GenerationStats, reused: bool, elapsed_ms: u128, closing: bool) {
    let outcome = match stats.stop_reason {
        Some(StopReason::Cancelled) if closing => "cancelled (server shutting down)",
        Some(StopReason::Cancelled) => "cancelled (client went away)",
        Some(StopReason::MaxTokens) => "finished (max tokens)",
        Some(StopReason::ContextFull) => "finished (context full)",
        Some(StopReason::EndOfTurn | StopReason::StopString) | None => "finished",
    };
    let cache = if reused { ", session reused" } else { "" };
    eprintln!(
        "{id}: {outcome}: {} prompt tokens ({} computed{cache}), {} generated, {elapsed_ms} ms",
        stats.prompt_tokens, stats.prompt_tokens_computed, stats.generated_tokens
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use impchat_engine::ImageBytes;

    #[test]
    fn follow_ups_continue_the_conversation_and_edits_do_not() {
        let image = ImageBytes::new(vec![1u8, 2, 3]);
        let first = GenerateRequest::new(vec![
            ChatMessage::user("what is this?").with_image(image.clone())
        ]);
        let prev = Transcript::after(&first, "a cat".into());
        let follow_up = GenerateRequest::new(vec![
            ChatMessage::user("what is this?").with_image(ImageBytes::new(vec![1u8, 2, 3])),
            ChatMessage::assistant("a cat"),
            ChatMessage::user("what colour?"),
        ]);
        assert!(prev.is_continued_by(&follow_up));

        let other_image = GenerateRequest::new(vec![
            ChatMessage::user("what is this?").with_image(ImageBytes::new(vec![9u8])),
            ChatMessage::assistant("a cat"),
            ChatMessage::user("what colour?"),
        ]);
        assert!(!prev.is_continued_by(&other_image));

        let regenerated = GenerateRequest::new(vec![
            ChatMessage::user("what is this?").with_image(image.clone())
        ]);
        assert!(!prev.is_continued_by(&regenerated));

        let mut new_system = follow_up.clone();
        new_system.system = Some("Answer in French.".into());
        assert!(!prev.is_continued_by(&new_system));
    }
}
