//! `openai-test-server`: a small OpenAI-compatible chat-completions server over real HTTP/1.1,
//! answering with the same local backend as the element (SmolLM2 GGUF through llama.cpp, or
//! candle with `--runtime candle`).
//!
//! It exists so that the `openai` backend is tested against a real server process on loopback,
//! including faults that a production server cannot be asked to make. It serves
//! `POST /v1/chat/completions` with `"stream": true` (SSE `chat.completion.chunk` events, then
//! `data: [DONE]`) and without (one `chat.completion` object).
//!
//! ```text
//! openai-test-server [--port N] [--model PATH] [--runtime llama-cpp|candle] [--token-delay-ms N]
//!                    [--fault MODE]
//! ```
//!
//! It prints `listening http://127.0.0.1:PORT/v1` once ready, then one line per event on
//! stdout: `request N: …`, `request N: done after K chunks`, `request N: client closed the
//! connection after K chunks`. Fault modes: `status-500` (HTTP 500), `garbage` (bytes that are
//! not HTTP), `malformed-sse` (one good event, then an event that is not JSON), `hang` (SSE
//! headers, then nothing).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gstreasoning::chat::ChatMessage;
use gstreasoning::local::{self, GenerateParams, LocalModel, LocalRuntime, StopReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Status500,
    Garbage,
    MalformedSse,
    Hang,
}

struct Config {
    port: u16,
    model: Option<PathBuf>,
    runtime: LocalRuntime,
    token_delay: Duration,
    fault: Fault,
}

fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        port: 0,
        model: None,
        runtime: LocalRuntime::default(),
        token_delay: Duration::ZERO,
        fault: Fault::None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => config.port = value()?.parse().map_err(|err| format!("--port: {err}"))?,
            "--model" => config.model = Some(PathBuf::from(value()?)),
            "--runtime" => {
                config.runtime = match value()?.as_str() {
                    "llama-cpp" => LocalRuntime::LlamaCpp,
                    "candle" => LocalRuntime::Candle,
                    other => return Err(format!("unknown runtime {other:?}")),
                }
            }
            "--token-delay-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|err| format!("--token-delay-ms: {err}"))?;
                config.token_delay = Duration::from_millis(ms);
            }
            "--fault" => {
                config.fault = match value()?.as_str() {
                    "none" => Fault::None,
                    "status-500" => Fault::Status500,
                    "garbage" => Fault::Garbage,
                    "malformed-sse" => Fault::MalformedSse,
                    "hang" => Fault::Hang,
                    other => return Err(format!("unknown fault {other:?}")),
                }
            }
            "--help" | "-h" => {
                return Err("usage: openai-test-server [--port N] [--model PATH] \
                            [--runtime llama-cpp|candle] [--token-delay-ms N] \
                            [--fault none|status-500|garbage|malformed-sse|hang]"
                    .into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

struct Server {
    model: Option<Arc<LocalModel>>,
    token_delay: Duration,
    fault: Fault,
    requests: AtomicU64,
}

fn main() {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let model = if config.fault == Fault::None || config.fault == Fault::MalformedSse {
        let path = match config.model.clone() {
            Some(path) => path,
            None => match interaction_runtime::model_file(local::DEFAULT_MODEL) {
                Ok(path) => path,
                Err(err) => {
                    eprintln!("{err}");
                    std::process::exit(1);
                }
            },
        };
        match LocalModel::load(&path, config.runtime) {
            Ok(model) => Some(Arc::new(model)),
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let server = Arc::new(Server {
        model,
        token_delay: config.token_delay,
        fault: config.fault,
        requests: AtomicU64::new(0),
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    let result: Result<(), String> = runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|err| format!("cannot listen on port {}: {err}", config.port))?;
        let port = listener.local_addr().map_err(|err| err.to_string())?.port();
        say(&format!("listening http://127.0.0.1:{port}/v1"));
        loop {
            let (stream, _) = listener.accept().await.map_err(|err| err.to_string())?;
            let server = server.clone();
            tokio::spawn(async move {
                let number = server.requests.fetch_add(1, Ordering::Relaxed) + 1;
                if let Err(err) = server.handle(number, stream).await {
                    say(&format!("request {number}: {err}"));
                }
            });
        }
    });
    if let Err(err) = result {
        eprintln!("{err}");
        std::process::exit(1);
    }
}

struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Result<HttpRequest, String> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
        if data.len() > 64 * 1024 {
            return Err("request headers too long".into());
        }
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|err| err.to_string())?;
        if read == 0 {
            return Err("connection closed before the request was complete".into());
        }
        data.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let content_length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = data[header_end + 4..].to_vec();
    while body.len() < content_length {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|err| err.to_string())?;
        if read == 0 {
            return Err("connection closed before the body was complete".into());
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(HttpRequest { method, path, body })
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

const SSE_HEADERS: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\nConnection: close\r\n\r\n";

fn chunk_event(model: &str, delta: serde_json::Value, finish: Option<&str>) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    });
    format!("data: {chunk}\n\n")
}

impl Server {
    async fn handle(&self, number: u64, mut stream: TcpStream) -> Result<(), String> {
        let request = read_request(&mut stream).await?;
        say(&format!(
            "request {number}: {} {}",
            request.method, request.path
        ));
        match self.fault {
            Fault::Status500 => {
                respond(
                    &mut stream,
                    "500 Internal Server Error",
                    "application/json",
                    r#"{"error":{"message":"injected failure","type":"server_error"}}"#,
                )
                .await;
                return Ok(());
            }
            Fault::Garbage => {
                let _ = stream
                    .write_all(b"\x00\x13\x37 this is not HTTP at all \xff\xfe\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
                return Ok(());
            }
            Fault::Hang => {
                let _ = stream.write_all(SSE_HEADERS.as_bytes()).await;
                // Never answers; the client has to give up. Reading tells us when it does.
                let mut byte = [0u8; 1];
                let _ = stream.read(&mut byte).await;
                say(&format!(
                    "request {number}: client closed the connection after 0 chunks"
                ));
                return Ok(());
            }
            Fault::None | Fault::MalformedSse => {}
        }
        if request.method != "POST" || !request.path.ends_with("/chat/completions") {
            respond(&mut stream, "404 Not Found", "text/plain", "not found\n").await;
            return Ok(());
        }
        let body: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(err) => {
                respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    &format!("{err}\n"),
                )
                .await;
                return Ok(());
            }
        };
        let messages: Vec<ChatMessage> = body
            .get("messages")
            .cloned()
            .and_then(|messages| serde_json::from_value(messages).ok())
            .unwrap_or_default();
        let model_name = body
            .get("model")
            .and_then(|model| model.as_str())
            .unwrap_or("smollm2")
            .to_owned();
        let stream_answer = body
            .get("stream")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let params = GenerateParams {
            max_tokens: body
                .get("max_tokens")
                .and_then(|v| v.as_u64())
                .unwrap_or(128)
                .clamp(1, 4000) as u32,
            temperature: body
                .get("temperature")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0),
            seed: body.get("seed").and_then(|v| v.as_u64()).unwrap_or(0),
            deadline: None,
            threads: 0,
        };
        say(&format!(
            "request {number}: {} messages, max_tokens {}, stream {stream_answer}",
            messages.len(),
            params.max_tokens
        ));
        let Some(model) = self.model.clone() else {
            respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                "no model\n",
            )
            .await;
            return Ok(());
        };
        let prompt = model
            .render_prompt(&messages)
            .map_err(|err| err.to_string())?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (pieces_tx, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
        let generation = {
            let cancel = cancel.clone();
            tokio::task::spawn_blocking(move || {
                model.generate(&prompt, &params, &cancel, |piece| {
                    let _ = pieces_tx.send(piece.to_owned());
                })
            })
        };
        if !stream_answer {
            let mut text = String::new();
            while let Some(piece) = pieces.recv().await {
                text.push_str(&piece);
            }
            let stats = generation
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let answer = serde_json::json!({
                "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                "model": model_name,
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": text },
                              "finish_reason": finish_reason(stats.stop) }],
            });
            respond(
                &mut stream,
                "200 OK",
                "application/json",
                &answer.to_string(),
            )
            .await;
            say(&format!("request {number}: done after 1 chunks"));
            return Ok(());
        }

        let (mut reader, mut writer) = stream.into_split();
        let mut sent = 0usize;
        let write = async |writer: &mut tokio::net::tcp::OwnedWriteHalf, text: &str| {
            writer.write_all(text.as_bytes()).await?;
            writer.flush().await
        };
        let mut closed = write(&mut writer, SSE_HEADERS).await.is_err();
        if !closed {
            let first = chunk_event(
                &model_name,
                serde_json::json!({ "role": "assistant" }),
                None,
            );
            closed = write(&mut writer, &first).await.is_err();
        }
        let mut probe = [0u8; 1];
        while !closed {
            tokio::select! {
                piece = pieces.recv() => {
                    let Some(piece) = piece else { break };
                    if !self.token_delay.is_zero() {
                        tokio::time::sleep(self.token_delay).await;
                    }
                    let event = if self.fault == Fault::MalformedSse && sent == 1 {
                        "data: {\"choices\": [ this is not json\n\n".to_owned()
                    } else {
                        chunk_event(&model_name, serde_json::json!({ "content": piece }), None)
                    };
                    closed = write(&mut writer, &event).await.is_err();
                    if !closed {
                        sent += 1;
                    }
                }
                read = reader.read(&mut probe) => {
                    // The client sends nothing more: a read that returns means it closed.
                    if matches!(read, Ok(0) | Err(_)) {
                        closed = true;
                    }
                }
            }
        }
        if closed {
            cancel.store(true, Ordering::Release);
            let _ = generation.await;
            say(&format!(
                "request {number}: client closed the connection after {sent} chunks"
            ));
            return Ok(());
        }
        let stats = generation
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let last = chunk_event(
            &model_name,
            serde_json::json!({}),
            Some(finish_reason(stats.stop)),
        );
        let _ = write(&mut writer, &last).await;
        let _ = write(&mut writer, "data: [DONE]\n\n").await;
        let _ = writer.shutdown().await;
        say(&format!("request {number}: done after {sent} chunks"));
        Ok(())
    }
}

fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}
