//! The agent: the whole gst-interaction pipeline, built and started once (so the models load
//! once, before the server takes its first peer), then fed by whichever peer is connected.
//!
//! ```text
//! appsrc user (16 kHz F32, one 20 ms buffer every 20 ms) ! microturnmux ! interactionmodel
//!   im.speech ! speechsynth is-live=true ! 48 kHz S16 ! appsink speech ──▶ the peer's appsrc
//!   im.reasoning ! reasoningsidecar ! mux.text_0   (results looped back into the aligner)
//!   im.transcript ! appsink captions ──▶ stdout and the page
//! ```
//!
//! The user side is a live `appsrc` that a thread feeds at clock pace from a [`JitterRing`]:
//! silence while nobody is connected, the peer's decoded audio while somebody is. So the
//! aligner sees one steady live stream, and a peer coming or going is no discontinuity.
//! `speechsynth` is live too: it sends silence between utterances, so the peer always gets a
//! steady stream back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use gst::prelude::*;
use tokio::sync::mpsc::UnboundedSender;

use crate::ring::JitterRing;
use crate::signal::Signal;

/// Sample rate of the user side and the aligner.
pub const RATE: u32 = 16_000;
/// Sample rate of the agent's speech as it leaves for the peer (Opus's native rate).
pub const OUTPUT_RATE: u32 = 48_000;
/// Samples per pushed user buffer (20 ms).
const CHUNK: usize = 320;
/// How long one pushed user buffer lasts, in ns.
const CHUNK_NS: u64 = 20_000_000;
/// The aligner's `latency` property: slack for late user audio, in ns (the user buffers come
/// every 20 ms from the page's jitter buffer). Before `microturnmux` stopped waiting for its
/// idle loop-back pad, 60 ms lost most turns and 200 ms was needed; see the aligner's README.
const MUX_LATENCY_NS: u64 = 60_000_000;
/// Peer audio held back before it is handed to the agent (40 ms), and the most held (300 ms).
const RING_RESERVE: usize = 640;
const RING_CAPACITY: usize = 4800;
/// Longest wait for the models to load (READY -> PAUSED).
const LOAD_TIMEOUT_S: u64 = 180;

/// Decision bus messages forwarded to the page and the log (name without `interaction/`).
const DECISION_KINDS: &[&str] = &[
    "user-turn-ended",
    "agent-started-speaking",
    "agent-yielded",
    "barge-in",
    "backchannel",
    "filler",
    "reasoning-requested",
    "result-used",
];

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `max-tokens` of the reasoning sidecar (the local model is slow on a small CPU).
    pub max_tokens: u32,
    /// Extra `interactionmodel` properties in gst-launch syntax (`turn-detection=silence ...`).
    pub interaction_properties: String,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            max_tokens: 24,
            interaction_properties: String::new(),
        }
    }
}

/// The pipeline description (also printed by `--print-pipeline`).
///
/// The appsinks do not preroll (`async=false`): the captions sink gets nothing until somebody
/// speaks, so with prerolling the pipeline would not reach PLAYING until then, while its
/// running time already ran from the PLAYING request. The aligner would then see its first
/// user buffer long after its first deadline.
pub fn description(options: &AgentOptions) -> String {
    format!(
        "appsrc name=user is-live=true format=time do-timestamp=false min-latency={CHUNK_NS} \
           caps=audio/x-raw,format=F32LE,rate={RATE},channels=1,layout=interleaved \
         ! queue ! microturnmux name=mux start-time-selection=first latency={MUX_LATENCY_NS} \
         ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=5000000000 \
         ! interactionmodel name=im {props} \
         im.speech ! queue ! speechsynth name=synth is-live=true \
           ! audioconvert ! audioresample \
           ! audio/x-raw,format=S16LE,rate={OUTPUT_RATE},channels=1,layout=interleaved \
           ! appsink name=speech sync=false async=false \
         im.reasoning ! queue ! reasoningsidecar name=sidecar max-tokens={tokens} ! mux.text_0 \
         im.transcript ! queue ! appsink name=captions sync=false async=false",
        props = options.interaction_properties,
        tokens = options.max_tokens,
    )
}

/// Registers the four interaction plugins from their rlibs (no `GST_PLUGIN_PATH` needed).
pub fn register_plugins() -> Result<(), BoxError> {
    gstmicroturn::plugin_register_static()?;
    gstinteraction::plugin_register_static()?;
    gstspeech::plugin_register_static()?;
    gstreasoning::plugin_register_static()?;
    Ok(())
}

/// The connected peer, as the agent sees it.
struct Attachment {
    /// Where the agent's speech goes (the peer pipeline's `appsrc`).
    speech: gst_app::AppSrc,
    /// Captions and decisions for the page.
    signals: UnboundedSender<Signal>,
}

/// What the agent's threads and callbacks share.
struct Shared {
    input: Mutex<JitterRing>,
    peer: Mutex<Option<Attachment>>,
    stop: AtomicBool,
    /// Running time at which the user audio started (decision times are relative to it).
    origin_ns: Mutex<Option<u64>>,
}

/// A handle that feeds peer audio into the agent (cheap to clone; used from the peer's
/// streaming thread).
#[derive(Clone)]
pub struct Feeder(Arc<Shared>);

impl Feeder {
    /// Appends decoded peer audio (16 kHz mono F32).
    pub fn feed(&self, samples: &[f32]) {
        if let Ok(mut ring) = self.0.input.lock() {
            ring.push(samples);
        }
    }
}

/// The running agent. Dropping it stops the pipeline.
pub struct Agent {
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Builds the pipeline and loads the models (this takes a while: `progress` hears about
    /// it). `fatal` receives a pipeline error that happens later, while serving.
    pub fn start(
        options: &AgentOptions,
        progress: impl Fn(&str),
        fatal: UnboundedSender<String>,
    ) -> Result<Agent, BoxError> {
        let pipeline = gst::parse::launch(&description(options))
            .map_err(|e| format!("cannot build the agent pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the agent description is not a pipeline")?;
        let agent = Agent {
            pipeline,
            shared: Arc::new(Shared {
                input: Mutex::new(JitterRing::new(RING_RESERVE, RING_CAPACITY)),
                peer: Mutex::new(None),
                stop: AtomicBool::new(false),
                origin_ns: Mutex::new(None),
            }),
            threads: Vec::new(),
        };
        // From here on, an early return drops `agent`, which stops the pipeline.
        agent.run(progress, fatal)
    }

    fn run(
        mut self,
        progress: impl Fn(&str),
        fatal: UnboundedSender<String>,
    ) -> Result<Agent, BoxError> {
        let bin = self.pipeline.upcast_ref::<gst::Bin>();
        let mux = element::<gst::Element>(bin, "mux")?;
        let text_pad = mux
            .static_pad("text_0")
            .ok_or("microturnmux has no text_0 pad")?;
        text_pad.set_property("loopback", true);
        let source: gst_app::AppSrc = element(bin, "user")?;
        let speech_sink: gst_app::AppSink = element(bin, "speech")?;
        let caption_sink: gst_app::AppSink = element(bin, "captions")?;

        let shared = self.shared.clone();
        speech_sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer_owned() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let speech = shared
                        .peer
                        .lock()
                        .ok()
                        .and_then(|peer| peer.as_ref().map(|p| p.speech.clone()));
                    if let Some(speech) = speech {
                        // The peer pipeline stamps it with its own running time
                        // (`do-timestamp`), so the agent's timestamps are removed.
                        let mut buffer = buffer;
                        let writable = buffer.make_mut();
                        writable.set_pts(gst::ClockTime::NONE);
                        writable.set_dts(gst::ClockTime::NONE);
                        // A peer that is going away refuses buffers: not our error.
                        let _ = speech.push_buffer(buffer);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let shared = self.shared.clone();
        caption_sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer() {
                        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let text = String::from_utf8_lossy(map.as_slice()).trim().to_owned();
                        println!("caption: {text}");
                        shared.send(Signal::Caption { text });
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );

        let loading = Instant::now();
        progress(
            "loading the models (Silero VAD, Smart Turn, Whisper tiny.en, Piper voice, SmolLM2)...",
        );
        let bus = self.pipeline.bus().ok_or("the agent pipeline has no bus")?;
        self.pipeline
            .set_state(gst::State::Paused)
            .map_err(|_| bus_error(&bus).unwrap_or_else(|| "the agent did not start".into()))?;
        // Live: PAUSED returns NO_PREROLL; the models load in READY -> PAUSED.
        let (result, _, _) = self
            .pipeline
            .state(gst::ClockTime::from_seconds(LOAD_TIMEOUT_S));
        result.map_err(|_| {
            bus_error(&bus).unwrap_or_else(|| {
                format!("the models did not load within {LOAD_TIMEOUT_S} s").into()
            })
        })?;
        self.pipeline.set_state(gst::State::Playing).map_err(|_| {
            bus_error(&bus).unwrap_or_else(|| "the agent did not reach PLAYING".into())
        })?;
        let (result, _, _) = self.pipeline.state(gst::ClockTime::from_seconds(30));
        result.map_err(|_| {
            bus_error(&bus).unwrap_or_else(|| "the agent did not reach PLAYING".into())
        })?;
        progress(&format!(
            "models loaded in {:.1} s",
            loading.elapsed().as_secs_f64()
        ));

        let clock = self.pipeline.clock().ok_or("the agent has no clock")?;
        let base = self
            .pipeline
            .base_time()
            .ok_or("the agent has no base time")?;
        // The first user sample: 100 ms from now, on a 20 ms grid (the aligner's turn 0 starts
        // there: `start-time-selection=first`).
        let now = clock.time().saturating_sub(base).nseconds();
        let origin = (now / CHUNK_NS + 5) * CHUNK_NS;
        if let Ok(mut slot) = self.shared.origin_ns.lock() {
            *slot = Some(origin);
        }

        let shared = self.shared.clone();
        self.threads.push(
            std::thread::Builder::new()
                .name("agent-input".into())
                .spawn(move || feed_user_side(shared, source, clock, base, origin))?,
        );
        let shared = self.shared.clone();
        self.threads.push(
            std::thread::Builder::new()
                .name("agent-bus".into())
                .spawn(move || watch_bus(shared, bus, fatal))?,
        );
        Ok(self)
    }

    /// A handle for the peer's decoded audio.
    pub fn feeder(&self) -> Feeder {
        Feeder(self.shared.clone())
    }

    /// Sends the agent's speech, captions and decisions to this peer from now on.
    pub fn attach(&self, speech: gst_app::AppSrc, signals: UnboundedSender<Signal>) {
        if let Ok(mut ring) = self.shared.input.lock() {
            ring.clear();
        }
        if let Ok(mut peer) = self.shared.peer.lock() {
            *peer = Some(Attachment { speech, signals });
        }
    }

    /// The peer left: the agent hears silence again, and its speech goes nowhere.
    pub fn detach(&self) {
        if let Ok(mut peer) = self.shared.peer.lock() {
            *peer = None;
        }
        if let Ok(mut ring) = self.shared.input.lock() {
            let stats = ring.stats();
            eprintln!(
                "webrtc-agent: peer audio so far: {:.1} s delivered, {} underruns, {:.2} s dropped",
                stats.delivered as f64 / f64::from(RATE),
                stats.underruns,
                stats.dropped as f64 / f64::from(RATE)
            );
            ring.clear();
        }
        if let Some(mux) = self.pipeline.by_name("mux") {
            let stats = mux.property::<gst::Structure>("stats");
            eprintln!("webrtc-agent: aligner: {stats}");
        }
    }
}

impl Shared {
    fn send(&self, signal: Signal) {
        if let Ok(peer) = self.peer.lock()
            && let Some(peer) = peer.as_ref()
        {
            let _ = peer.signals.send(signal);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(mut peer) = self.shared.peer.lock() {
            *peer = None;
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn element<T: IsA<gst::Element>>(bin: &gst::Bin, name: &str) -> Result<T, BoxError> {
    bin.by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or_else(|| format!("the agent pipeline has no element `{name}`").into())
}

fn bus_error(bus: &gst::Bus) -> Option<BoxError> {
    while let Some(message) = bus.pop() {
        if let gst::MessageView::Error(e) = message.view() {
            return Some(format!("{} ({:?})", e.error(), e.debug()).into());
        }
    }
    None
}

/// The user side: one 20 ms buffer each 20 ms, pushed when its last sample is due on the
/// clock (as a capture card delivers), from the ring or silence.
fn feed_user_side(
    shared: Arc<Shared>,
    source: gst_app::AppSrc,
    clock: gst::Clock,
    base: gst::ClockTime,
    origin: u64,
) {
    let mut chunk = vec![0.0f32; CHUNK];
    for index in 0u64.. {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let pts = origin + index * CHUNK_NS;
        let due = base + gst::ClockTime::from_nseconds(pts + CHUNK_NS);
        let _ = clock.new_single_shot_id(due).wait();
        match shared.input.lock() {
            Ok(mut ring) => ring.pop_into(&mut chunk),
            Err(_) => break,
        }
        let mut bytes = Vec::with_capacity(CHUNK * 4);
        for sample in &chunk {
            bytes.extend_from_slice(&sample.to_le_bytes());
        }
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        if let Some(buffer) = buffer.get_mut() {
            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
            buffer.set_duration(gst::ClockTime::from_nseconds(CHUNK_NS));
        }
        if source.push_buffer(buffer).is_err() {
            // Flushing: the pipeline is stopping.
            break;
        }
    }
}

/// Logs the decisions, forwards them to the peer, and reports a pipeline error as fatal.
fn watch_bus(shared: Arc<Shared>, bus: gst::Bus, fatal: UnboundedSender<String>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Error(e) => {
                let source = message
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let _ = fatal.send(format!(
                    "agent pipeline error from {source}: {} ({:?})",
                    e.error(),
                    e.debug()
                ));
                break;
            }
            gst::MessageView::Warning(w) => {
                eprintln!(
                    "webrtc-agent: agent warning: {} ({:?})",
                    w.error(),
                    w.debug()
                );
            }
            gst::MessageView::Element(e) => {
                let Some(structure) = e.structure() else {
                    continue;
                };
                let Some(kind) = structure.name().strip_prefix("interaction/") else {
                    continue;
                };
                if !DECISION_KINDS.contains(&kind) {
                    continue;
                }
                let origin = shared.origin_ns.lock().ok().and_then(|o| *o).unwrap_or(0);
                let time_s = structure
                    .get::<u64>("running-time")
                    .map(|t| t.saturating_sub(origin) as f64 / 1e9)
                    .unwrap_or(0.0);
                let detail = ["reason", "text"]
                    .iter()
                    .filter_map(|field| {
                        let value = structure.value(*field).ok()?;
                        value
                            .get::<String>()
                            .ok()
                            .or_else(|| value.serialize().ok().map(|s| s.to_string()))
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                println!("decision: {time_s:.2} s {kind} {detail}");
                shared.send(Signal::Decision {
                    kind: kind.to_owned(),
                    time_s,
                    detail,
                });
            }
            _ => {}
        }
    }
}
