//! The signalling server: HTTP and WebSocket on one port (loopback by default).
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page (`web/index.html`) |
//! | `GET /agent.js`, `GET /recorder.js` | its script and its recording AudioWorklet |
//! | `GET /ws` | the signalling WebSocket ([`Signal`] JSON frames); one peer at a time |
//! | `POST /received` | a WAV the page recorded (with `?record=`); stored only with `--save-received` |
//!
//! One peer at a time: a second page that connects while one is in a session gets an `error`
//! frame saying so, and the socket is closed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::agent::Agent;
use crate::peer::{Peer, PeerOptions};
use crate::signal::Signal;

const INDEX_HTML: &str = include_str!("../web/index.html");
const AGENT_JS: &str = include_str!("../web/agent.js");
const RECORDER_JS: &str = include_str!("../web/recorder.js");
/// Largest upload accepted on `/received` (a minute of 48 kHz stereo 16-bit is 11 MB).
const UPLOAD_LIMIT: usize = 64 << 20;

/// What the routes share.
pub struct AppState {
    pub agent: Arc<Agent>,
    pub peer_options: PeerOptions,
    /// Where `POST /received` stores the upload; `None` refuses uploads.
    pub save_received: Option<PathBuf>,
    /// Turns true at shut-down: open sessions close.
    pub shutdown: watch::Receiver<bool>,
    /// A session is open.
    busy: AtomicBool,
}

impl AppState {
    pub fn new(
        agent: Arc<Agent>,
        peer_options: PeerOptions,
        save_received: Option<PathBuf>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        AppState {
            agent,
            peer_options,
            save_received,
            shutdown,
            busy: AtomicBool::new(false),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/agent.js",
            get(|| async { page(AGENT_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/recorder.js",
            get(|| async { page(RECORDER_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/ws", get(websocket))
        .route("/received", post(received))
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
        .with_state(state)
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn websocket(upgrade: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> Response {
    upgrade.on_upgrade(move |socket| session(socket, state))
}

/// Clears the busy flag when the session ends, however it ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

async fn session(socket: WebSocket, state: Arc<AppState>) {
    let (mut sender, mut receiver) = socket.split();
    if state.busy.swap(true, Ordering::SeqCst) {
        eprintln!("webrtc-agent: refused a second peer (one peer at a time)");
        let busy = Signal::Error {
            message: "another page is connected: this server talks to one peer at a time".into(),
        };
        let _ = sender.send(Message::Text(busy.to_json().into())).await;
        let _ = sender.close().await;
        return;
    }
    let _busy = Busy(&state.busy);
    eprintln!("webrtc-agent: peer connected");

    let (signals, mut outgoing) = mpsc::unbounded_channel::<Signal>();
    let peer = match Peer::start(state.agent.clone(), &state.peer_options, signals) {
        Ok(peer) => peer,
        Err(error) => {
            eprintln!("webrtc-agent: cannot start the peer: {error}");
            let error = Signal::Error {
                message: format!("the server cannot start a WebRTC session: {error}"),
            };
            let _ = sender.send(Message::Text(error.to_json().into())).await;
            let _ = sender.close().await;
            return;
        }
    };
    let mut bus = match peer.bus() {
        Some(bus) => bus.stream(),
        None => return,
    };
    let mut shutdown = state.shutdown.clone();
    let reason = loop {
        tokio::select! {
            frame = receiver.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let handled = Signal::parse(&text).and_then(|signal| peer.handle(signal));
                    if let Err(message) = handled {
                        eprintln!("webrtc-agent: {message}");
                        let _ = sender.send(Message::Text(Signal::Error { message }.to_json().into())).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "the page closed the connection".to_owned(),
                Some(Ok(_)) => {}
                Some(Err(error)) => break format!("WebSocket error: {error}"),
            },
            signal = outgoing.recv() => {
                let Some(signal) = signal else { break "the peer stopped".to_owned() };
                if sender.send(Message::Text(signal.to_json().into())).await.is_err() {
                    break "the page went away".to_owned();
                }
            }
            message = bus.next() => {
                let Some(message) = message else { break "the peer pipeline stopped".to_owned() };
                if let gst::MessageView::Error(e) = message.view() {
                    let message = format!("WebRTC pipeline error: {} ({:?})", e.error(), e.debug());
                    let _ = sender.send(Message::Text(Signal::Error { message: message.clone() }.to_json().into())).await;
                    break message;
                }
            }
            _ = shutdown.changed() => {
                let _ = sender.send(Message::Text(Signal::Error { message: "the server is shutting down".into() }.to_json().into())).await;
                break "shut-down".to_owned();
            }
        }
    };
    let _ = sender.close().await;
    drop(peer);
    eprintln!("webrtc-agent: peer disconnected ({reason})");
}

async fn received(State(state): State<Arc<AppState>>, body: Bytes) -> (StatusCode, String) {
    let Some(path) = state.save_received.clone() else {
        return (
            StatusCode::FORBIDDEN,
            "uploads are off: start webrtc-agent with --save-received FILE\n".into(),
        );
    };
    if !body.starts_with(b"RIFF") {
        return (StatusCode::BAD_REQUEST, "not a WAV file\n".into());
    }
    // Write beside, then rename: a reader never sees half a file.
    let partial = path.with_extension("partial");
    let length = body.len();
    let written = tokio::task::spawn_blocking(move || {
        std::fs::write(&partial, &body)?;
        std::fs::rename(&partial, &path)?;
        Ok::<_, std::io::Error>(path)
    })
    .await;
    match written {
        Ok(Ok(path)) => {
            println!("received: {length} bytes saved to {}", path.display());
            (StatusCode::OK, format!("saved {length} bytes\n"))
        }
        Ok(Err(error)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot save the upload: {error}\n"),
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot save the upload: {error}\n"),
        ),
    }
}
