//! Running one request on a backend, as an async task on the plugin-wide runtime, and turning
//! what the backend produces into [`ReasoningResult`]s. No GStreamer here.
//!
//! - **local**: [`LocalModel::generate`] runs on a blocking thread of the runtime; dropping the
//!   request's future (an abort) raises the cancel flag, so generation stops within one token.
//!   The thread can outlive the future by that token: whatever must live until the backend
//!   has really stopped (the request's slot, the caller's `running` guard) moves into it.
//! - **openai**: a streaming `POST {base_url}/chat/completions`; dropping the future drops the
//!   response and closes the connection, which is how the server learns that we gave up.
//!
//! Either way exactly one final result ends a request that was not cancelled, and it carries an
//! error when the backend failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use interaction_protocol::context::{ErrorKind, RESULT_VERSION, ReasoningResult, ResultError};
use tokio::sync::{Semaphore, mpsc};

use crate::chat::ChatMessage;
use crate::local::{GenerateParams, LocalModel, StopReason};
use crate::sse::SseParser;

/// Where an OpenAI-compatible server is.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// For example `http://127.0.0.1:8080/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    /// Read from the environment when the request starts; never logged.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Which backend answers.
#[derive(Clone)]
pub enum Backend {
    Local(Arc<LocalModel>),
    OpenAi(OpenAiConfig),
}

/// One request, ready to run.
#[derive(Clone)]
pub struct Request {
    pub id: u64,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    pub temperature: f64,
    pub seed: u64,
    pub timeout: Duration,
    /// CPU threads of the local llama.cpp runtime (0: [`crate::local::auto_threads`]).
    pub threads: u32,
}

/// Builds the results of one request: sequence numbers and the cumulative text.
pub struct ResultBuilder {
    request_id: u64,
    seq: u32,
    text: String,
}

impl ResultBuilder {
    pub fn new(request_id: u64) -> Self {
        Self {
            request_id,
            seq: 0,
            text: String::new(),
        }
    }

    fn make(
        &mut self,
        delta: String,
        is_final: bool,
        error: Option<ResultError>,
    ) -> ReasoningResult {
        self.text.push_str(&delta);
        let result = ReasoningResult {
            version: RESULT_VERSION,
            request_id: self.request_id,
            seq: self.seq,
            is_final,
            text: self.text.clone(),
            delta,
            error,
        };
        self.seq += 1;
        result
    }

    pub fn partial(&mut self, delta: &str) -> ReasoningResult {
        self.make(delta.to_owned(), false, None)
    }

    pub fn finish(&mut self) -> ReasoningResult {
        self.make(String::new(), true, None)
    }

    pub fn fail(&mut self, kind: ErrorKind, message: impl Into<String>) -> ReasoningResult {
        self.make(
            String::new(),
            true,
            Some(ResultError {
                kind,
                message: message.into(),
            }),
        )
    }
}

/// A failure of a backend, before it becomes an error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    /// Technical detail for the log and the bus warning (never holds the API key).
    pub detail: String,
}

impl Failure {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The sentence the interaction model may say aloud.
    pub fn spoken(&self) -> &'static str {
        match self.kind {
            ErrorKind::Unreachable => "I cannot reach my reasoning service right now.",
            ErrorKind::Timeout => "My reasoning took too long, so I stopped it.",
            ErrorKind::HttpStatus => "My reasoning service reported an error.",
            ErrorKind::Protocol => "My reasoning service sent an answer I could not read.",
            ErrorKind::Disconnected => "I lost the connection to my reasoning service.",
            ErrorKind::Model => "My local reasoning model failed.",
            ErrorKind::BadRequest => "I could not read the request for reasoning.",
            ErrorKind::Other => "Something went wrong with my reasoning.",
        }
    }
}

/// Raises a cancel flag when dropped: an aborted task stops its blocking generation.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs one request to its end and gives every result to `emit`. On a failure, `on_failure`
/// is called first (the element posts its bus warning there), then the error result is
/// emitted, so whoever sees the error result can already see the warning. Waits for a slot of
/// `limit` first (the concurrency limit); the timeout counts from the call, so waiting for a
/// slot counts too. `running` is dropped when the request has ended: after the final result
/// was emitted, or, when this future is dropped, once the backend has stopped working on the
/// request (for local generation, when its thread returns).
pub async fn run(
    backend: Backend,
    request: Request,
    limit: Arc<Semaphore>,
    running: impl Send + Sync + 'static,
    emit: impl Fn(ReasoningResult) + Send + Sync + 'static,
    on_failure: impl FnOnce(&Failure),
) -> Option<Failure> {
    // One share here (dropped after the final result), one with the backend.
    let running = Arc::new(running);
    let deadline = Instant::now() + request.timeout;
    let mut results = ResultBuilder::new(request.id);
    let outcome = tokio::time::timeout_at(deadline.into(), async {
        let permit = limit
            .acquire_owned()
            .await
            .map_err(|_| Failure::new(ErrorKind::Other, "the element is shutting down"))?;
        match backend {
            Backend::Local(model) => {
                let held = (permit, running.clone());
                run_local(model, &request, deadline, held, &mut results, &emit).await
            }
            Backend::OpenAi(config) => {
                let outcome = run_openai(&config, &request, &mut results, &emit).await;
                drop(permit);
                outcome
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(Failure::new(
            ErrorKind::Timeout,
            format!(
                "no complete answer within {} ms",
                request.timeout.as_millis()
            ),
        ))
    });
    let failure = match outcome {
        Ok(()) => {
            emit(results.finish());
            None
        }
        Err(failure) => {
            on_failure(&failure);
            emit(results.fail(failure.kind, failure.spoken()));
            Some(failure)
        }
    };
    drop(running);
    failure
}

async fn run_local(
    model: Arc<LocalModel>,
    request: &Request,
    deadline: Instant,
    held: impl Send + 'static,
    results: &mut ResultBuilder,
    emit: &(impl Fn(ReasoningResult) + Send + Sync),
) -> Result<(), Failure> {
    let prompt = model
        .render_prompt(&request.messages)
        .map_err(|err| Failure::new(ErrorKind::Model, err.to_string()))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let (pieces_tx, mut pieces) = mpsc::unbounded_channel::<String>();
    let params = GenerateParams {
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        seed: request.seed,
        deadline: Some(deadline),
        threads: request.threads,
    };
    let generation = tokio::task::spawn_blocking(move || {
        // The slot and the caller's guard are held until the model really stops, even when the
        // task was aborted.
        let _held = held;
        model.generate(&prompt, &params, &cancel, |piece| {
            let _ = pieces_tx.send(piece.to_owned());
        })
    });
    while let Some(piece) = pieces.recv().await {
        emit(results.partial(&piece));
    }
    let stats = generation
        .await
        .map_err(|err| Failure::new(ErrorKind::Model, err.to_string()))?
        .map_err(|err| Failure::new(ErrorKind::Model, err.to_string()))?;
    match stats.stop {
        StopReason::Timeout => Err(Failure::new(
            ErrorKind::Timeout,
            format!(
                "no complete answer within {} ms",
                request.timeout.as_millis()
            ),
        )),
        _ => Ok(()),
    }
}

/// The process-wide HTTP client (connection pool, TLS roots loaded once).
fn http_client() -> Result<&'static reqwest::Client, Failure> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| {
            Failure::new(
                ErrorKind::Other,
                format!("cannot build the HTTP client: {err}"),
            )
        })
}

fn request_failure(err: &reqwest::Error) -> Failure {
    // `reqwest`'s messages name the URL and the cause, never the headers (so never the key).
    let detail = format!("{err}: {}", source_chain(err));
    if err.is_connect() {
        Failure::new(ErrorKind::Unreachable, detail)
    } else if err.is_timeout() {
        Failure::new(ErrorKind::Timeout, detail)
    } else if err.is_body() || err.is_decode() {
        Failure::new(ErrorKind::Disconnected, detail)
    } else {
        Failure::new(ErrorKind::Protocol, detail)
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push(cause.to_string());
        source = cause.source();
    }
    out.join(": ")
}

async fn run_openai(
    config: &OpenAiConfig,
    request: &Request,
    results: &mut ResultBuilder,
    emit: &(impl Fn(ReasoningResult) + Send + Sync),
) -> Result<(), Failure> {
    let client = http_client()?;
    let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
    let mut body = serde_json::json!({
        "model": config.model,
        "messages": request.messages,
        "stream": true,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
    });
    if request.temperature <= 0.0 {
        body["temperature"] = serde_json::json!(0.0);
    }
    let mut builder = client
        .post(&url)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(key) = &config.api_key {
        builder = builder.bearer_auth(key);
    }
    let mut response = builder.send().await.map_err(|err| request_failure(&err))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::new(
            ErrorKind::HttpStatus,
            format!("{url} answered HTTP {status}"),
        ));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !content_type.starts_with("text/event-stream") {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!("{url} answered with content type {content_type:?}, not an SSE stream"),
        ));
    }
    let mut parser = SseParser::default();
    let mut events = 0usize;
    let mut finished = false;
    loop {
        let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| request_failure(&err))?
        else {
            break;
        };
        let payloads = parser
            .feed(&chunk)
            .map_err(|err| Failure::new(ErrorKind::Protocol, err))?;
        for payload in payloads {
            events += 1;
            if payload.trim() == "[DONE]" {
                return Ok(());
            }
            let delta =
                parse_chunk(&payload).map_err(|err| Failure::new(ErrorKind::Protocol, err))?;
            if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                emit(results.partial(&text));
            }
            finished |= delta.finished;
        }
    }
    if finished {
        // Some servers end the stream after `finish_reason` without `[DONE]`.
        Ok(())
    } else if events == 0 {
        Err(Failure::new(
            ErrorKind::Protocol,
            format!("{url} closed the stream without sending any SSE event"),
        ))
    } else {
        Err(Failure::new(
            ErrorKind::Disconnected,
            format!("{url} closed the stream after {events} events, before [DONE]"),
        ))
    }
}

/// What one `chat.completion.chunk` carries.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkDelta {
    pub content: Option<String>,
    pub finished: bool,
}

/// Reads one SSE `data:` payload of a streamed chat completion.
pub fn parse_chunk(payload: &str) -> Result<ChunkDelta, String> {
    let value: serde_json::Value = serde_json::from_str(payload)
        .map_err(|err| format!("an SSE event is not JSON ({err}): {:.80}", payload))?;
    if let Some(error) = value.get("error") {
        return Err(format!("the server sent an error event: {error}"));
    }
    let choices = value
        .get("choices")
        .and_then(|choices| choices.as_array())
        .ok_or_else(|| format!("an SSE event has no choices: {:.80}", payload))?;
    let Some(choice) = choices.first() else {
        // Usage-only chunks have no choices.
        return Ok(ChunkDelta {
            content: None,
            finished: false,
        });
    };
    let content = choice
        .get("delta")
        .and_then(|delta| delta.get("content"))
        .and_then(|content| content.as_str())
        .map(str::to_owned);
    let finished = choice
        .get("finish_reason")
        .is_some_and(|reason| !reason.is_null());
    Ok(ChunkDelta { content, finished })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_cumulative_and_numbered() {
        let mut builder = ResultBuilder::new(9);
        let first = builder.partial("The capital");
        let second = builder.partial(" is Paris.");
        let last = builder.finish();
        assert_eq!((first.seq, second.seq, last.seq), (0, 1, 2));
        assert_eq!(second.text, "The capital is Paris.");
        assert_eq!(second.delta, " is Paris.");
        assert!(!first.is_final && !second.is_final && last.is_final);
        assert_eq!(last.text, "The capital is Paris.");
        assert_eq!(last.delta, "");
        let failed = ResultBuilder::new(3).fail(ErrorKind::Timeout, "too slow");
        assert!(failed.is_final);
        assert_eq!(
            failed.error.map(|error| error.kind),
            Some(ErrorKind::Timeout)
        );
    }

    #[test]
    fn chunks_are_read() {
        let chunk = r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,
            "delta":{"content":" Paris"},"finish_reason":null}]}"#;
        assert_eq!(
            parse_chunk(chunk),
            Ok(ChunkDelta {
                content: Some(" Paris".into()),
                finished: false
            })
        );
        let last = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(
            parse_chunk(last),
            Ok(ChunkDelta {
                content: None,
                finished: true
            })
        );
        assert!(parse_chunk("{not json").is_err());
        assert!(parse_chunk(r#"{"error":{"message":"overloaded"}}"#).is_err());
        assert!(parse_chunk(r#"{"object":"x"}"#).is_err());
    }

    #[test]
    fn api_key_is_not_in_debug_output() {
        let config = OpenAiConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            api_key: Some("sk-secret-value".into()),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret-value"));
        assert!(shown.contains("<set>"));
    }
}
