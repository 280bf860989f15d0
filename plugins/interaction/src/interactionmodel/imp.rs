// The interactionmodel element. Lock order: `settings`, then `state`, then `latency`; no lock
// is held across a push, a peer query or a bus post. The sink pad's streaming thread does all
// the pushing; the speech pad's upstream events (progress) only update the state.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use interaction_protocol::events::{
    self, Backchannel, Pause, Prepare, Progress, Resume, Speak, Yield, messages,
};
use interaction_protocol::packet::{self as microturn, Packet};

use super::TurnDetectionMode;
use crate::conversation::{Action, Conversation, ConversationConfig, Field};
use crate::device::{self, Device, Provider};
use crate::engine::{Engine, LATE_MARGIN};
use crate::package;
use crate::stats::LatencyStats;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "interactionmodel",
        gst::DebugColorFlags::empty(),
        Some("Interaction model on every micro-turn"),
    )
});

/// Caps of the `reasoning` pad: one context package (JSON) per buffer.
const CONTEXT_CAPS_NAME: &str = interaction_protocol::context::CONTEXT_MEDIA_TYPE;
/// Bus message: which execution provider runs (`provider`, `device`, `kind`, `package`,
/// `vision`, `fallback-reason`).
pub const EXECUTION_PROVIDER: &str = "interaction/execution-provider";

const DEFAULT_DEVICE: &str = "cpu";
const DEFAULT_DEVICE_FALLBACK: bool = false;
const DEFAULT_SILENCE_MS: u32 = 500;
const DEFAULT_PAUSE_MS: u32 = 200;
const DEFAULT_TURN_THRESHOLD: f64 = 0.5;
const DEFAULT_TURN_TIMEOUT_MS: u32 = 2000;
const DEFAULT_VAD_THRESHOLD: f64 = 0.5;
const DEFAULT_BARGE_IN_MS: u32 = 700;
const DEFAULT_HOLD_MS: u32 = 32;
const DEFAULT_BACKCHANNEL: bool = false;
const DEFAULT_BACKCHANNEL_TEXT: &str = "mm-hm";
const DEFAULT_BACKCHANNEL_AFTER_MS: u32 = 4000;
const DEFAULT_FILLER_MS: u32 = 200;
const DEFAULT_FILLER_TEXT: &str = crate::conversation::DEFAULT_FILLERS;
const DEFAULT_RECORD_LIMIT: u32 = 64;
const DEFAULT_SPEAKING_RATE: f64 = 14.0;
const DEFAULT_STATS: bool = false;
const DEFAULT_USER_LABEL: &str = "user";
const DEFAULT_VISION_INTERVAL_MS: u32 = 1000;
const DEFAULT_VISION_TOP_K: u32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub model: Option<String>,
    pub device: String,
    pub device_fallback: bool,
    pub turn_detection: TurnDetectionMode,
    pub silence_ms: u32,
    pub pause_ms: u32,
    pub turn_threshold: f64,
    pub turn_timeout_ms: u32,
    pub vad_threshold: f64,
    pub barge_in_ms: u32,
    pub hold_ms: u32,
    pub backchannel: bool,
    pub backchannel_text: String,
    pub backchannel_after_ms: u32,
    pub filler_ms: u32,
    pub filler_text: String,
    pub record_limit: u32,
    pub speaking_rate: f64,
    pub stats: bool,
    pub user_label: String,
    pub vision_interval_ms: u32,
    pub vision_top_k: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            device: DEFAULT_DEVICE.into(),
            device_fallback: DEFAULT_DEVICE_FALLBACK,
            turn_detection: TurnDetectionMode::SmartTurn,
            silence_ms: DEFAULT_SILENCE_MS,
            pause_ms: DEFAULT_PAUSE_MS,
            turn_threshold: DEFAULT_TURN_THRESHOLD,
            turn_timeout_ms: DEFAULT_TURN_TIMEOUT_MS,
            vad_threshold: DEFAULT_VAD_THRESHOLD,
            barge_in_ms: DEFAULT_BARGE_IN_MS,
            hold_ms: DEFAULT_HOLD_MS,
            backchannel: DEFAULT_BACKCHANNEL,
            backchannel_text: DEFAULT_BACKCHANNEL_TEXT.into(),
            backchannel_after_ms: DEFAULT_BACKCHANNEL_AFTER_MS,
            filler_ms: DEFAULT_FILLER_MS,
            filler_text: DEFAULT_FILLER_TEXT.into(),
            record_limit: DEFAULT_RECORD_LIMIT,
            speaking_rate: DEFAULT_SPEAKING_RATE,
            stats: DEFAULT_STATS,
            user_label: DEFAULT_USER_LABEL.into(),
            vision_interval_ms: DEFAULT_VISION_INTERVAL_MS,
            vision_top_k: DEFAULT_VISION_TOP_K,
        }
    }
}

impl Settings {
    pub fn conversation(&self) -> ConversationConfig {
        ConversationConfig {
            record_limit: self.record_limit as usize,
            filler_after: u64::from(self.filler_ms) * 1_000_000,
            filler_text: self.filler_text.clone(),
            backchannel_text: self.backchannel_text.clone(),
            speaking_rate: self.speaking_rate,
            user_label: self.user_label.clone(),
        }
    }

    /// The visual observations' settings (`None`: `vision-interval-ms` is 0).
    pub fn vision(&self) -> Option<crate::vision::VisionConfig> {
        (self.vision_interval_ms > 0).then(|| crate::vision::VisionConfig {
            interval: u64::from(self.vision_interval_ms) * 1_000_000,
            top_k: self.vision_top_k.max(1) as usize,
        })
    }

    pub fn policy(&self) -> crate::policy::PolicyConfig {
        let ms = |v: u32| u64::from(v) * 1_000_000;
        crate::policy::PolicyConfig {
            detection: match self.turn_detection {
                TurnDetectionMode::SmartTurn => crate::policy::TurnDetection::SmartTurn,
                TurnDetectionMode::Silence => crate::policy::TurnDetection::Silence,
            },
            vad_threshold: self.vad_threshold as f32,
            silence: ms(self.silence_ms),
            pause: ms(self.pause_ms),
            turn_threshold: self.turn_threshold as f32,
            turn_timeout: ms(self.turn_timeout_ms),
            barge_in: ms(self.barge_in_ms),
            hold: ms(self.hold_ms),
            backchannel: self.backchannel,
            backchannel_after: ms(self.backchannel_after_ms),
            ..crate::policy::PolicyConfig::default()
        }
    }
}

struct State {
    engine: Option<Box<dyn Engine>>,
    conversation: Conversation,
    provider: Option<Provider>,
    turn_duration: u64,
    last_now: u64,
    turn_index: u64,
    /// Whether upstream is live (asked once, at the first packet).
    live: Option<bool>,
}

impl Default for State {
    fn default() -> Self {
        State {
            engine: None,
            conversation: Conversation::new(ConversationConfig::default()),
            provider: None,
            turn_duration: 200_000_000,
            last_now: 0,
            turn_index: 0,
            live: None,
        }
    }
}

pub struct InteractionModel {
    sinkpad: gst::Pad,
    speech_pad: gst::Pad,
    transcript_pad: gst::Pad,
    reasoning_pad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    latency: Mutex<LatencyStats>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl InteractionModel {
    fn src_pads(&self) -> [&gst::Pad; 3] {
        [&self.speech_pad, &self.transcript_pad, &self.reasoning_pad]
    }

    /// How long a *pause* may last before the synthesizer resumes by itself: the barge-in
    /// decision, the VAD's hangover and two micro-turns, so a lost resume costs one second.
    fn hold_limit(&self) -> u64 {
        let barge_in = u64::from(lock(&self.settings).barge_in_ms) * 1_000_000;
        let turn = lock(&self.state).turn_duration;
        barge_in + 96_000_000 + 2 * turn + 500_000_000
    }

    /// The phrases this element may say at once: its fillers and its back-channel.
    fn quick_phrases(&self) -> Vec<String> {
        let settings = lock(&self.settings);
        let mut phrases: Vec<String> = Vec::new();
        if settings.filler_ms > 0 {
            phrases.extend(
                settings
                    .filler_text
                    .split('|')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            );
        }
        if settings.backchannel && !settings.backchannel_text.trim().is_empty() {
            phrases.push(settings.backchannel_text.trim().to_owned());
        }
        phrases
    }

    /// Loads the package and its models. Called on READY → PAUSED.
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let device = Device::parse(&settings.device)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
        let provider = device::choose(device, settings.device_fallback)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Init, ["{e}"]))?;
        match &provider.fallback_reason {
            Some(reason) => gst::warning!(
                CAT,
                imp = self,
                "CUDA is not usable ({reason}); device-fallback=true: running on {}",
                provider.name
            ),
            None => gst::info!(CAT, imp = self, "execution provider: {}", provider.name),
        }
        let dir = match &settings.model {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => package::default_package_dir()
                .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ["{e}"]))?,
        };
        let started = Instant::now();
        let package = package::load(&dir)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ["{e}"]))?;
        let options = crate::loader::LoadOptions {
            policy: settings.policy(),
            user_label: settings.user_label.clone(),
            vision: settings.vision(),
        };
        let engine = crate::loader::load(&package, &options, &provider).map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Init,
                ["model package {}: {e}", package.dir.display()]
            )
        })?;
        gst::info!(
            CAT,
            imp = self,
            "loaded {} package {} from {} in {:.0} ms",
            package.kind.as_str(),
            package.name,
            package.dir.display(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let vision = package.kind == package::Kind::Cascade
            && package.files.contains_key("vision")
            && settings.vision().is_some();
        if vision {
            gst::info!(
                CAT,
                imp = self,
                "visual observations: EfficientNet-Lite0 on the newest frame every {} ms or more",
                settings.vision_interval_ms
            );
        } else if package.kind == package::Kind::Cascade && settings.vision().is_some() {
            gst::info!(
                CAT,
                imp = self,
                "package {} has no image classifier (files.vision): video is ignored",
                package.name
            );
        }
        let mut structure = events::message_structure(EXECUTION_PROVIDER, gst::ClockTime::ZERO);
        structure.set("vision", vision);
        structure.set("provider", provider.name);
        structure.set("device", settings.device.as_str());
        structure.set("kind", package.kind.as_str());
        structure.set("package", package.dir.display().to_string());
        if let Some(reason) = &provider.fallback_reason {
            structure.set("fallback-reason", reason.as_str());
        }
        {
            let mut state = lock(&self.state);
            *state = State {
                engine: Some(engine),
                conversation: Conversation::new(settings.conversation()),
                provider: Some(provider),
                ..State::default()
            };
        }
        *lock(&self.latency) = LatencyStats::default();
        let _ = self.obj().post_message(
            gst::message::Element::builder(structure)
                .src(&*self.obj())
                .build(),
        );
        Ok(())
    }

    fn stop(&self) {
        *lock(&self.state) = State::default();
    }

    fn sink_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let packet = {
            let map = buffer.map_readable().map_err(|_| {
                gst::element_imp_error!(self, gst::StreamError::Failed, ["unreadable buffer"]);
                gst::FlowError::Error
            })?;
            Packet::parse(&map).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Decode, ["{e}"]);
                gst::FlowError::Error
            })?
        };
        let settings_stats = lock(&self.settings).stats;
        if lock(&self.state).live.is_none() {
            let mut query = gst::query::Latency::new();
            let live = self.sinkpad.peer_query(&mut query) && query.result().0;
            gst::info!(
                CAT,
                imp = self,
                "upstream is {}: transcripts {}",
                if live { "live" } else { "not live" },
                if live {
                    "follow in a later micro-turn when ready"
                } else {
                    "are waited for at the end of the turn"
                }
            );
            let mut state = lock(&self.state);
            state.live = Some(live);
            if let Some(engine) = state.engine.as_mut() {
                engine.set_live(live);
            }
        }
        let header = packet.header;
        let now = header.start.saturating_add(header.duration);
        let started = Instant::now();
        let mut actions = Vec::new();
        let info = {
            let mut state = lock(&self.state);
            let state = &mut *state;
            let Some(engine) = state.engine.as_mut() else {
                gst::element_imp_error!(self, gst::CoreError::StateChange, ["no model loaded"]);
                return Err(gst::FlowError::Error);
            };
            state.turn_duration = header.duration;
            state.last_now = now;
            state.turn_index = header.turn_index;
            state.conversation.begin(now, &mut actions);
            let info = engine
                .step(&packet, now, &mut state.conversation, &mut actions)
                .map_err(|e| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        ["micro-turn {}: {e}", header.turn_index]
                    );
                    gst::FlowError::Error
                })?;
            if !engine.consumes_text() {
                state.conversation.on_text(&packet.text, now, &mut actions);
            }
            state.conversation.tick(now, info.user_busy, &mut actions);
            info
        };
        let elapsed = started.elapsed();
        let budget = Duration::from_nanos(header.duration);
        if lock(&self.latency).record(elapsed, budget) {
            gst::warning!(
                CAT,
                imp = self,
                "micro-turn {} took {:.1} ms, over its {:.0} ms budget",
                header.turn_index,
                elapsed.as_secs_f64() * 1e3,
                budget.as_secs_f64() * 1e3
            );
        }
        if settings_stats {
            actions.push(Action::Message {
                name: messages::TURN_STATS,
                at: now,
                fields: vec![
                    ("turn-index", Field::U64(header.turn_index)),
                    (
                        "step-latency",
                        Field::U64(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)),
                    ),
                    (
                        "speech-probability",
                        Field::F64(f64::from(info.speech_probability)),
                    ),
                ],
            });
        }
        let mut pushed = [false; 3];
        for action in &actions {
            match action {
                Action::Speak { .. } | Action::SpeakMore { .. } => pushed[0] = true,
                Action::Caption(_) => pushed[1] = true,
                Action::Context { .. } => pushed[2] = true,
                _ => {}
            }
        }
        let result = self.push_actions(actions);
        // Sparse outputs: a GAP for every pad without a buffer this micro-turn, so that
        // downstream sinks preroll and aggregators downstream do not wait for them.
        for (pad, pushed) in self.src_pads().into_iter().zip(pushed) {
            if !pushed {
                pad.push_event(
                    gst::event::Gap::builder(gst::ClockTime::from_nseconds(header.start))
                        .duration(gst::ClockTime::from_nseconds(header.duration))
                        .build(),
                );
            }
        }
        let result = result?;
        self.deliver_late_transcripts(started + budget.saturating_sub(LATE_MARGIN), now)?;
        Ok(result)
    }

    /// Live: waits (until `deadline`, before the next micro-turn is due) for the transcripts of
    /// a turn that ended, without holding the state, and pushes their captions and context
    /// package the moment they are ready instead of at the next micro-turn.
    fn deliver_late_transcripts(
        &self,
        deadline: Instant,
        now: u64,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        loop {
            let pending = {
                let state = lock(&self.state);
                state
                    .engine
                    .as_ref()
                    .and_then(|engine| engine.transcripts_pending())
            };
            let Some((completions, seen)) = pending else {
                return Ok(gst::FlowSuccess::Ok);
            };
            if !completions.wait_past(seen, deadline) {
                return Ok(gst::FlowSuccess::Ok);
            }
            let mut actions = Vec::new();
            {
                let mut state = lock(&self.state);
                let state = &mut *state;
                let Some(engine) = state.engine.as_mut() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                engine
                    .deliver_ready(now, &mut state.conversation, &mut actions)
                    .map_err(|e| {
                        gst::element_imp_error!(self, gst::StreamError::Failed, ["{e}"]);
                        gst::FlowError::Error
                    })?;
            }
            if !actions.is_empty() {
                gst::debug!(CAT, imp = self, "transcripts ready after the step");
                self.push_actions(actions)?;
            }
        }
    }

    fn push_text(
        &self,
        pad: &gst::Pad,
        text: &str,
        pts: u64,
        duration: Option<u64>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut buffer = gst::Buffer::from_mut_slice(text.as_bytes().to_vec());
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
            if let Some(duration) = duration {
                buffer.set_duration(gst::ClockTime::from_nseconds(duration));
            }
        }
        pad.push(buffer)
    }

    fn push_actions(&self, actions: Vec<Action>) -> Result<gst::FlowSuccess, gst::FlowError> {
        // An unlinked pad is not an error: a pipeline may use only some outputs.
        let combine = |result: Result<gst::FlowSuccess, gst::FlowError>| match result {
            Err(gst::FlowError::NotLinked) | Err(gst::FlowError::Eos) => Ok(gst::FlowSuccess::Ok),
            other => other,
        };
        for action in actions {
            match action {
                Action::Speak {
                    utterance_id,
                    text,
                    at,
                } => {
                    gst::debug!(CAT, imp = self, "speak {utterance_id}: {text}");
                    self.speech_pad
                        .push_event(Speak { utterance_id }.to_event());
                    combine(self.push_text(&self.speech_pad, &text, at, None))?;
                }
                Action::SpeakMore { text, at, .. } => {
                    combine(self.push_text(&self.speech_pad, &text, at, None))?;
                }
                Action::Yield { utterance_id, at } => {
                    gst::debug!(CAT, imp = self, "yield {utterance_id:?}");
                    let event = Yield {
                        utterance_id,
                        running_time: Some(gst::ClockTime::from_nseconds(at)),
                    }
                    .to_event();
                    // The sidecar cancels what it is generating: the user took the floor, and
                    // a new context package follows at the end of their turn.
                    self.reasoning_pad.push_event(event.clone());
                    self.speech_pad.push_event(event);
                }
                Action::Pause { utterance_id, .. } => {
                    gst::debug!(CAT, imp = self, "pause {utterance_id}");
                    let event = Pause {
                        utterance_id: Some(utterance_id),
                        max_duration: Some(gst::ClockTime::from_nseconds(self.hold_limit())),
                    };
                    self.speech_pad.push_event(event.to_event());
                }
                Action::Resume { utterance_id, .. } => {
                    gst::debug!(CAT, imp = self, "resume {utterance_id}");
                    let event = Resume {
                        utterance_id: Some(utterance_id),
                    };
                    self.speech_pad.push_event(event.to_event());
                }
                Action::Prepare { text, partial, .. } => {
                    gst::debug!(CAT, imp = self, "prepare {text:?} (partial: {partial})");
                    let event = Prepare {
                        phrases: vec![text],
                        partial,
                    };
                    self.speech_pad.push_event(event.to_event());
                }
                Action::Backchannel { text, .. } => {
                    self.speech_pad.push_event(Backchannel { text }.to_event());
                }
                Action::Caption(caption) => {
                    let mut line = format!("{}: {}", caption.speaker, caption.text);
                    if caption.truncated {
                        line.push_str(" [interrupted]");
                    }
                    gst::debug!(CAT, imp = self, "caption {line}");
                    combine(self.push_text(
                        &self.transcript_pad,
                        &line,
                        caption.start,
                        Some(caption.end.saturating_sub(caption.start)),
                    ))?;
                }
                Action::Context {
                    request_id,
                    json,
                    at,
                } => match self.push_text(&self.reasoning_pad, &json, at, None) {
                    Err(gst::FlowError::NotLinked) => {
                        gst::debug!(
                            CAT,
                            imp = self,
                            "reasoning pad not linked: request {request_id} goes nowhere"
                        );
                        lock(&self.state)
                            .conversation
                            .request_undeliverable(request_id);
                    }
                    other => {
                        combine(other)?;
                    }
                },
                Action::Message { name, at, fields } => {
                    let mut structure =
                        events::message_structure(name, gst::ClockTime::from_nseconds(at));
                    for (key, value) in fields {
                        match value {
                            Field::U64(v) => structure.set(key, v),
                            Field::F64(v) => structure.set(key, v),
                            Field::Str(v) => structure.set(key, v),
                            Field::Bool(v) => structure.set(key, v),
                        }
                    }
                    gst::debug!(CAT, imp = self, "message {structure}");
                    let _ = self.obj().post_message(
                        gst::message::Element::builder(structure)
                            .src(&*self.obj())
                            .build(),
                    );
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn drain(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut actions = Vec::new();
        {
            let mut state = lock(&self.state);
            let state = &mut *state;
            let now = state.last_now;
            if let Some(engine) = state.engine.as_mut()
                && let Err(e) = engine.finish(now, &mut state.conversation, &mut actions)
            {
                gst::element_imp_error!(self, gst::StreamError::Failed, ["at end of stream: {e}"]);
                return Err(gst::FlowError::Error);
            }
            // Utterances without progress reports end at their estimated end.
            state.conversation.begin(u64::MAX, &mut actions);
        }
        self.push_actions(actions)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::StreamStart(start) => {
                let id = start.stream_id().to_owned();
                let group = start.group_id();
                for src in self.src_pads() {
                    let stream_id = format!("{id}/{}", src.name());
                    let mut builder = gst::event::StreamStart::builder(&stream_id);
                    if let Some(group) = group {
                        builder = builder.group_id(group);
                    }
                    src.push_event(builder.build());
                }
                true
            }
            EventView::Caps(caps) => {
                let caps = caps.caps();
                let Some(structure) = caps.structure(0) else {
                    return false;
                };
                let version = structure.get::<i32>(microturn::FIELD_VERSION).unwrap_or(1);
                if structure.name() != microturn::CAPS_NAME
                    || version != i32::from(microturn::FORMAT_VERSION)
                {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["caps {caps} are not micro-turn packets of format version 1"]
                    );
                    return false;
                }
                if let Ok(duration) = structure.get::<u64>(microturn::FIELD_TURN_DURATION) {
                    lock(&self.state).turn_duration = duration;
                }
                let text = gst::Caps::builder("text/x-raw")
                    .field("format", "utf8")
                    .build();
                let context = gst::Caps::builder(CONTEXT_CAPS_NAME).build();
                self.speech_pad.push_event(gst::event::Caps::new(&text));
                self.transcript_pad.push_event(gst::event::Caps::new(&text));
                self.reasoning_pad
                    .push_event(gst::event::Caps::new(&context));
                true
            }
            EventView::Segment(segment) => {
                if segment.segment().format() != gst::Format::Time {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["only TIME segments are accepted"]
                    );
                    return false;
                }
                // Outputs are stamped in running time: one plain TIME segment from 0.
                let ours = gst::FormattedSegment::<gst::ClockTime>::new();
                for src in self.src_pads() {
                    src.push_event(gst::event::Segment::new(&ours));
                }
                // The synthesizer may get the phrases said at once ready now (*prepare*).
                let phrases = self.quick_phrases();
                if !phrases.is_empty() {
                    let event = Prepare {
                        phrases,
                        partial: false,
                    };
                    self.speech_pad.push_event(event.to_event());
                }
                true
            }
            EventView::Eos(_) => {
                if let Err(error) = self.drain() {
                    gst::debug!(CAT, imp = self, "drain at EOS: {error:?}");
                }
                for src in self.src_pads() {
                    src.push_event(gst::event::Eos::new());
                }
                true
            }
            EventView::FlushStart(_) => {
                for src in self.src_pads() {
                    src.push_event(event.clone());
                }
                true
            }
            EventView::FlushStop(_) => {
                {
                    let settings = lock(&self.settings).clone();
                    let mut state = lock(&self.state);
                    if let Some(engine) = state.engine.as_mut() {
                        engine.reset();
                    }
                    state.conversation = Conversation::new(settings.conversation());
                }
                for src in self.src_pads() {
                    src.push_event(event.clone());
                }
                true
            }
            EventView::Gap(_) => true,
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let Some(progress) = Progress::parse(&event) {
            if pad == &self.speech_pad {
                gst::debug!(CAT, imp = self, "progress {progress:?}");
                lock(&self.state).conversation.on_progress(
                    progress.utterance_id,
                    progress.bytes,
                    progress.running_time.nseconds(),
                    progress.reason,
                );
            }
            return true;
        }
        self.sinkpad.push_event(event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Latency(q) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let ours = gst::ClockTime::from_nseconds(lock(&self.state).turn_duration);
                q.set(live, min + ours, max.map(|m| m + ours));
                true
            }
            QueryViewMut::Caps(q) => {
                let mut caps = pad.pad_template_caps();
                if let Some(filter) = q.filter() {
                    caps = filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
                }
                q.set_result(&caps);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Caps(q) => {
                let mut caps = pad.pad_template_caps();
                if let Some(filter) = q.filter() {
                    caps = filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
                }
                q.set_result(&caps);
                true
            }
            QueryViewMut::AcceptCaps(q) => {
                let accepted = q.caps().can_intersect(&pad.pad_template_caps());
                q.set_result(accepted);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn latency_structure(&self) -> gst::Structure {
        let stats = lock(&self.latency);
        gst::Structure::builder("step-latency")
            .field("p50", stats.quantile(0.5))
            .field("p99", stats.quantile(0.99))
            .field("max", stats.max())
            .field("count", stats.count())
            .field("over-budget", stats.over_budget())
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for InteractionModel {
    const NAME: &'static str = "GstInteractionModel";
    type Type = super::InteractionModel;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sink_template = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&sink_template)
            .chain_function(|_pad, parent, buffer| {
                InteractionModel::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                InteractionModel::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                InteractionModel::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_query(pad, query),
                )
            })
            .build();
        let src = |name: &str| {
            let template = klass.pad_template(name).expect("src template");
            gst::Pad::builder_from_template(&template)
                .event_function(|pad, parent, event| {
                    InteractionModel::catch_panic_pad_function(
                        parent,
                        || false,
                        |imp| imp.src_event(pad, event),
                    )
                })
                .query_function(|pad, parent, query| {
                    InteractionModel::catch_panic_pad_function(
                        parent,
                        || false,
                        |imp| imp.src_query(pad, query),
                    )
                })
                .build()
        };
        InteractionModel {
            sinkpad,
            speech_pad: src("speech"),
            transcript_pad: src("transcript"),
            reasoning_pad: src("reasoning"),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            latency: Mutex::new(LatencyStats::default()),
        }
    }
}

impl ObjectImpl for InteractionModel {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model package")
                    .blurb("Directory of the model package (manifest.toml); unset: the default cascade package")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("device")
                    .nick("Device")
                    .blurb("cpu, cuda or cuda:N")
                    .default_value(Some(DEFAULT_DEVICE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("device-fallback")
                    .nick("Device fallback")
                    .blurb("Run on the CPU when the CUDA device cannot be used (otherwise that is an error at start)")
                    .default_value(DEFAULT_DEVICE_FALLBACK)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("execution-provider")
                    .nick("Execution provider")
                    .blurb("The ONNX Runtime execution provider that runs the models (after start)")
                    .read_only()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("turn-detection", TurnDetectionMode::SmartTurn)
                    .nick("Turn detection")
                    .blurb("How the end of the user's turn is detected (cascade)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("silence-ms")
                    .nick("Silence")
                    .blurb("turn-detection=silence: silence that ends the turn, ms")
                    .minimum(32)
                    .maximum(10_000)
                    .default_value(DEFAULT_SILENCE_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("pause-ms")
                    .nick("Pause")
                    .blurb("turn-detection=smart-turn: silence after which Smart Turn judges the turn, ms")
                    .minimum(32)
                    .maximum(5_000)
                    .default_value(DEFAULT_PAUSE_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("turn-threshold")
                    .nick("Turn threshold")
                    .blurb("Smart Turn probability at or above which the turn is complete")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_TURN_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("turn-timeout-ms")
                    .nick("Turn timeout")
                    .blurb("Silence after an 'incomplete' Smart Turn verdict that ends the turn anyway, ms")
                    .minimum(100)
                    .maximum(30_000)
                    .default_value(DEFAULT_TURN_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("vad-threshold")
                    .nick("VAD threshold")
                    .blurb("Silero speech probability at or above which a 32 ms frame is speech")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_VAD_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("barge-in-ms")
                    .nick("Barge-in")
                    .blurb("Sustained user speech over the agent that makes it yield, ms; shorter speech is a back-channel")
                    .minimum(32)
                    .maximum(5_000)
                    .default_value(DEFAULT_BARGE_IN_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("hold-ms")
                    .nick("Hold")
                    .blurb("User speech over the agent that pauses it at once (it resumes if the speech ends before barge-in-ms, a back-channel), ms; 0: never pause, only yield")
                    .maximum(5_000)
                    .default_value(DEFAULT_HOLD_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("backchannel")
                    .nick("Back-channel")
                    .blurb("Back-channel at pauses inside long user turns")
                    .default_value(DEFAULT_BACKCHANNEL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("backchannel-text")
                    .nick("Back-channel text")
                    .default_value(Some(DEFAULT_BACKCHANNEL_TEXT))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("backchannel-after-ms")
                    .nick("Back-channel after")
                    .blurb("Shortest user turn before a back-channel, and the least time between two, ms")
                    .minimum(500)
                    .maximum(60_000)
                    .default_value(DEFAULT_BACKCHANNEL_AFTER_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("filler-ms")
                    .nick("Filler after")
                    .blurb("Say a filler (the next phrase of filler-text) when the user's turn has had no answer for this long after the end-of-turn decision, ms (0: never)")
                    .maximum(60_000)
                    .default_value(DEFAULT_FILLER_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("filler-text")
                    .nick("Filler text")
                    .blurb("Filler phrases separated by |, said in turn")
                    .default_value(Some(DEFAULT_FILLER_TEXT))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("record-limit")
                    .nick("Record limit")
                    .blurb("Most conversation entries kept for context packages; the oldest is dropped first")
                    .minimum(1)
                    .maximum(100_000)
                    .default_value(DEFAULT_RECORD_LIMIT)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("speaking-rate")
                    .nick("Speaking rate")
                    .blurb("Characters per second used to estimate when an utterance ends if the synthesizer sends no progress events")
                    .minimum(1.0)
                    .maximum(100.0)
                    .default_value(DEFAULT_SPEAKING_RATE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("stats")
                    .nick("Statistics")
                    .blurb("Post interaction/turn-stats (step latency, speech probability) every micro-turn")
                    .default_value(DEFAULT_STATS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("user-label")
                    .nick("User label")
                    .blurb("Speaker label of the first audio track in captions and context packages")
                    .default_value(Some(DEFAULT_USER_LABEL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("vision-interval-ms")
                    .nick("Vision interval")
                    .blurb("Least running time between two video frames the image classifier looks at (ms; 0: ignore video). Needs a package with a vision model (the default has one)")
                    .maximum(3_600_000)
                    .default_value(DEFAULT_VISION_INTERVAL_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("vision-top-k")
                    .nick("Vision classes")
                    .blurb("Classes (best first, with probabilities) kept per visual observation")
                    .minimum(1)
                    .maximum(20)
                    .default_value(DEFAULT_VISION_TOP_K)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("step-latency")
                    .nick("Step latency")
                    .blurb("Step latency over the last 4096 micro-turns: p50, p99, max (ns), count, over-budget")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        let string = |value: &glib::Value| value.get::<Option<String>>().ok().flatten();
        match pspec.name() {
            "model" => settings.model = string(value),
            "device" => {
                settings.device = string(value).unwrap_or_else(|| DEFAULT_DEVICE.into());
            }
            "device-fallback" => settings.device_fallback = value.get().unwrap_or_default(),
            "turn-detection" => {
                settings.turn_detection = value.get().unwrap_or_default();
            }
            "silence-ms" => settings.silence_ms = value.get().unwrap_or(DEFAULT_SILENCE_MS),
            "pause-ms" => settings.pause_ms = value.get().unwrap_or(DEFAULT_PAUSE_MS),
            "turn-threshold" => {
                settings.turn_threshold = value.get().unwrap_or(DEFAULT_TURN_THRESHOLD);
            }
            "turn-timeout-ms" => {
                settings.turn_timeout_ms = value.get().unwrap_or(DEFAULT_TURN_TIMEOUT_MS);
            }
            "vad-threshold" => {
                settings.vad_threshold = value.get().unwrap_or(DEFAULT_VAD_THRESHOLD);
            }
            "barge-in-ms" => settings.barge_in_ms = value.get().unwrap_or(DEFAULT_BARGE_IN_MS),
            "hold-ms" => settings.hold_ms = value.get().unwrap_or(DEFAULT_HOLD_MS),
            "backchannel" => settings.backchannel = value.get().unwrap_or_default(),
            "backchannel-text" => {
                settings.backchannel_text =
                    string(value).unwrap_or_else(|| DEFAULT_BACKCHANNEL_TEXT.into());
            }
            "backchannel-after-ms" => {
                settings.backchannel_after_ms = value.get().unwrap_or(DEFAULT_BACKCHANNEL_AFTER_MS);
            }
            "filler-ms" => settings.filler_ms = value.get().unwrap_or(DEFAULT_FILLER_MS),
            "filler-text" => {
                settings.filler_text = string(value).unwrap_or_else(|| DEFAULT_FILLER_TEXT.into());
            }
            "record-limit" => {
                settings.record_limit = value.get().unwrap_or(DEFAULT_RECORD_LIMIT);
            }
            "speaking-rate" => {
                settings.speaking_rate = value.get().unwrap_or(DEFAULT_SPEAKING_RATE);
            }
            "stats" => settings.stats = value.get().unwrap_or_default(),
            "user-label" => {
                settings.user_label = string(value).unwrap_or_else(|| DEFAULT_USER_LABEL.into());
            }
            "vision-interval-ms" => {
                settings.vision_interval_ms = value.get().unwrap_or(DEFAULT_VISION_INTERVAL_MS);
            }
            "vision-top-k" => {
                settings.vision_top_k = value.get().unwrap_or(DEFAULT_VISION_TOP_K);
            }
            other => {
                gst::warning!(CAT, imp = self, "unknown property {other}");
                return;
            }
        }
        // Thresholds apply at once, even while playing.
        let settings = settings.clone();
        let mut state = lock(&self.state);
        state.conversation.set_config(settings.conversation());
        if let Some(engine) = state.engine.as_mut() {
            engine.update(&settings.policy());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "step-latency" {
            return self.latency_structure().to_value();
        }
        if pspec.name() == "execution-provider" {
            return lock(&self.state)
                .provider
                .as_ref()
                .map(Provider::describe)
                .to_value();
        }
        let settings = lock(&self.settings);
        match pspec.name() {
            "model" => settings.model.to_value(),
            "device" => settings.device.to_value(),
            "device-fallback" => settings.device_fallback.to_value(),
            "turn-detection" => settings.turn_detection.to_value(),
            "silence-ms" => settings.silence_ms.to_value(),
            "pause-ms" => settings.pause_ms.to_value(),
            "turn-threshold" => settings.turn_threshold.to_value(),
            "turn-timeout-ms" => settings.turn_timeout_ms.to_value(),
            "vad-threshold" => settings.vad_threshold.to_value(),
            "barge-in-ms" => settings.barge_in_ms.to_value(),
            "hold-ms" => settings.hold_ms.to_value(),
            "backchannel" => settings.backchannel.to_value(),
            "backchannel-text" => settings.backchannel_text.to_value(),
            "backchannel-after-ms" => settings.backchannel_after_ms.to_value(),
            "filler-ms" => settings.filler_ms.to_value(),
            "filler-text" => settings.filler_text.to_value(),
            "record-limit" => settings.record_limit.to_value(),
            "speaking-rate" => settings.speaking_rate.to_value(),
            "stats" => settings.stats.to_value(),
            "user-label" => settings.user_label.to_value(),
            "vision-interval-ms" => settings.vision_interval_ms.to_value(),
            "vision-top-k" => settings.vision_top_k.to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("sink pad");
        for pad in self.src_pads() {
            obj.add_pad(pad).expect("src pad");
        }
    }
}

impl GstObjectImpl for InteractionModel {}

impl ElementImpl for InteractionModel {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Interaction model",
                "Filter/Analyzer/Audio",
                "Runs the interaction model on every micro-turn: decides when to listen, speak, \
                 back-channel, yield and ask for reasoning; emits speech text, captions and \
                 context packages",
                "gst-interaction developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink = gst::Caps::builder(microturn::CAPS_NAME)
                .field(
                    microturn::FIELD_VERSION,
                    i32::from(microturn::FORMAT_VERSION),
                )
                .build();
            let text = gst::Caps::builder("text/x-raw")
                .field("format", "utf8")
                .build();
            let context = gst::Caps::builder(CONTEXT_CAPS_NAME).build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink,
                )
                .expect("sink template"),
                gst::PadTemplate::new(
                    "speech",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &text,
                )
                .expect("speech template"),
                gst::PadTemplate::new(
                    "transcript",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &text,
                )
                .expect("transcript template"),
                gst::PadTemplate::new(
                    "reasoning",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &context,
                )
                .expect("reasoning template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused
            && let Err(error) = self.start()
        {
            gst::error!(CAT, imp = self, "cannot start: {error:?}");
            self.post_error_message(error);
            return Err(gst::StateChangeError);
        }
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            self.stop();
        }
        Ok(result)
    }
}
