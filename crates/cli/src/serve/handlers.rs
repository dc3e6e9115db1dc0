//! The HTTP endpoints: `GET /v1/models` and `POST /v1/chat/completions`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use impchat_engine::CancelToken;
use tokio::sync::mpsc;

use super::api::{
    finish_reason, AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, ModelList,
    ModelObject,
};
use super::body::{read_body, BodyLimits};
use super::convert::{generate_request, Limits};
use super::error::ApiError;
use super::queue::{Job, JobEvent, ModelQueue};
use super::stream::ChunkStream;

pub struct AppState {
    pub model_id: String,
    pub model_name: String,
    pub started: u64,
    pub queue: ModelQueue,
    pub body_limits: BodyLimits,
    pub limits: Limits,
}

pub type SharedState = Arc<AppState>;

pub async fn list_models(State(app): State<SharedState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![model_object(&app)],
    })
}

pub async fn get_model(
    State(app): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    if !app.serves(&id) {
        return Err(ApiError::model_not_found(&id, &app.model_id));
    }
    Ok(Json(model_object(&app)))
}

fn model_object(app: &AppState) -> ModelObject {
    ModelObject {
        id: app.model_id.clone(),
        object: "model",
        created: app.started,
        owned_by: "impchat",
    }
}

impl AppState {
    fn serves(&self, model: &str) -> bool {
        model == self.model_id || model == self.model_name
    }
}

pub async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::route_not_found(method.as_str(), uri.path())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

pub async fn chat_completions(
    State(app): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&headers, body, &app.body_limits).await?;
    let request: ChatCompletionRequest = serde_json::from_slice(&body).map_err(|err| {
        ApiError::invalid(format!(
            "the request body is not a valid chat completion request: {err}"
        ))
    })?;
    if !app.serves(&request.model) {
        return Err(ApiError::model_not_found(&request.model, &app.model_id));
    }
    let generate = generate_request(&request, &app.limits)?;

    let id = completion_id();
    let cancel = CancelToken::new();
    let (events, mut received) = mpsc::unbounded_channel();
    app.queue.submit(Job {
        id: id.clone(),
        request: generate,
        cancel: cancel.clone(),
        events,
    })?;
    // Dropped with this future (client gone before the answer) or with the SSE stream.
    let client = CancelOnDrop(cancel);

    // Wait for the first event so that a request the engine refuses gets a proper status.
    let first = next_event(&mut received).await;
    if let JobEvent::Failed(err) = first {
        return Err(err);
    }
    let created = unix_seconds();
    if request.stream.unwrap_or(false) {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let chunks = ChunkStream::new(id, created, app.model_id.clone(), include_usage);
        let events = sse_events(chunks, first, received, client);
        return Ok(Sse::new(events).into_response());
    }

    let mut answer = String::new();
    let mut event = first;
    loop {
        match event {
            JobEvent::Delta(text) => answer.push_str(&text),
            JobEvent::Done(stats) => {
                let completion = ChatCompletion {
                    id,
                    object: "chat.completion",
                    created,
                    model: app.model_id.clone(),
                    choices: [Choice {
                        index: 0,
                        message: AssistantMessage {
                            role: "assistant",
                            content: answer,
                        },
                        finish_reason: finish_reason(&stats),
                        logprobs: None,
                    }],
                    usage: (&stats).into(),
                };
                return Ok(Json(completion).into_response());
            }
            JobEvent::Failed(err) => return Err(err),
        }
        event = next_event(&mut received).await;
    }
}

async fn next_event(received: &mut mpsc::UnboundedReceiver<JobEvent>) -> JobEvent {
    received.recv().await.unwrap_or_else(|| {
        JobEvent::Failed(ApiError::internal(
            "the model thread stopped before answering",
        ))
    })
}

/// The SSE events of one streamed answer. Ends with `[DONE]`, or with an error object if the
/// engine fails midway; when the client disconnects, hyper drops this stream and with it the
/// `CancelOnDrop`, which stops the generation.
fn sse_events(
    chunks: ChunkStream,
    first: JobEvent,
    received: mpsc::UnboundedReceiver<JobEvent>,
    client: CancelOnDrop,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Progress {
        chunks: ChunkStream,
        pending: Option<JobEvent>,
        received: mpsc::UnboundedReceiver<JobEvent>,
        outbox: std::collections::VecDeque<String>,
        finished: bool,
        _client: CancelOnDrop,
    }
    let mut outbox = std::collections::VecDeque::new();
    outbox.push_back(chunks.role());
    let progress = Progress {
        chunks,
        pending: Some(first),
        received,
        outbox,
        finished: false,
        _client: client,
    };
    stream::unfold(progress, |mut progress| async move {
        loop {
            if let Some(data) = progress.outbox.pop_front() {
                return Some((Ok(Event::default().data(data)), progress));
            }
            if progress.finished {
                return None;
            }
            let event = match progress.pending.take() {
                Some(event) => event,
                None => next_event(&mut progress.received).await,
            };
            match event {
                JobEvent::Delta(text) => progress.outbox.push_back(progress.chunks.content(text)),
                JobEvent::Done(stats) => {
                    progress.outbox.extend(progress.chunks.finish(&stats));
                    progress.finished = true;
                }
                JobEvent::Failed(err) => {
                    progress.outbox.push_back(err.to_json().to_string());
                    progress.finished = true;
                }
            }
        }
    })
}

/// Cancels the generation when dropped (harmless once it has finished).
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn completion_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-{:x}{n:04x}", unix_seconds())
}

pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
