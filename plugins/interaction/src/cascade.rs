//! The cascade kind: Silero VAD on every 32 ms frame of every participant, Smart Turn v3.2 at
//! pauses, Whisper for the transcript, and the [`TurnPolicy`] in between; optionally
//! EfficientNet-Lite0 on the newest video frame ([`Vision`]) for the visual observations.

use std::time::Duration;

use interaction_protocol::packet::{Packet, packet_flags};

use crate::conversation::{Action, Caption, Conversation};
use crate::engine::{AudioRing, Engine, StepInfo};
use crate::models::{SileroVad, SmartTurn, VadState};
use crate::policy::{PolicyConfig, PolicyEvent, TurnDetection, TurnPolicy};
use crate::transcriber::{Completions, TranscriberWorker};
use crate::vision::Vision;

const MS: u64 = 1_000_000;
/// Audio kept before the first voiced frame for the transcript (consonant onsets).
const PRE_ROLL: u64 = 160 * MS;
/// Most silence after the last voiced frame that Smart Turn sees (it was trained on turns cut
/// by a VAD that stops 200 ms after speech).
const MAX_TURN_TRAIL: u64 = 300 * MS;
/// Audio kept after the last voiced frame (equal to the policy's hangover, so the audio is
/// already there when the participant is known to have stopped).
const POST_ROLL: u64 = 96 * MS;
/// Silence at the end of a micro-turn after which the participant's transcription starts,
/// before the hangover has passed: one VAD frame. A micro-turn later the end of the turn may
/// already be decided (the pause is 200 ms), and Whisper then has that micro-turn's head
/// start. If the participant goes on speaking, the newer job supersedes the guess.
const EARLY_SILENCE: u64 = 32 * MS;

/// Settings of the cascade.
#[derive(Debug, Clone)]
pub struct CascadeConfig {
    pub policy: PolicyConfig,
    /// Longest wait for a transcript at the end of a turn.
    pub asr_timeout: Duration,
    /// Seconds of audio Smart Turn sees.
    pub turn_window_seconds: f64,
    /// Longest audio per transcription, seconds.
    pub asr_window_seconds: f64,
    /// Label of the first track's speaker.
    pub user_label: String,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        CascadeConfig {
            policy: PolicyConfig::default(),
            asr_timeout: Duration::from_secs(20),
            turn_window_seconds: 8.0,
            asr_window_seconds: 30.0,
            user_label: "user".into(),
        }
    }
}

struct Track {
    name: String,
    framer: kernels::SileroFramer,
    vad: VadState,
    ring: AudioRing,
    /// VAD frames emitted since the ring's origin.
    frames: u64,
    /// The transcription submitted for this participant: its audio span and job id.
    job: Option<((u64, u64), u64)>,
}

/// Timings of the last turn's transcript, for the benchmark and the bus message.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TranscriptTiming {
    /// Wall time the step that delivered the transcript waited for it.
    pub waited: Duration,
    /// Wall time from the end-of-turn decision to the transcript.
    pub since_decision: Duration,
    /// Backend time of the transcription used.
    pub asr_time: Duration,
    /// Audio seconds transcribed.
    pub audio_seconds: f64,
}

/// The cascade engine.
pub struct Cascade {
    config: CascadeConfig,
    vad: SileroVad,
    turn_model: Option<SmartTurn>,
    asr: Option<TranscriberWorker>,
    policy: TurnPolicy,
    tracks: Vec<Track>,
    frame_buffer: Vec<f32>,
    audio_buffer: Vec<f32>,
    last_timing: Option<TranscriptTiming>,
    pending: std::collections::VecDeque<PendingTurn>,
    /// Jobs the transcriber had finished when [`Cascade::deliver`] last looked.
    completions_seen: u64,
    /// Live pipelines do not wait for transcripts in the step (they follow as soon as they
    /// are ready, see [`Engine::transcripts_pending`]).
    live: bool,
    /// The visual observations, when the package has the image classifier and they are on.
    vision: Option<Vision>,
}

impl std::fmt::Debug for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cascade")
            .field("tracks", &self.tracks.len())
            .finish_non_exhaustive()
    }
}

impl Cascade {
    /// `turn_model` may be `None` only with `TurnDetection::Silence`; `asr` `None` gives empty
    /// transcripts (used by tests of the policy with real VAD only).
    pub fn new(
        config: CascadeConfig,
        vad: SileroVad,
        turn_model: Option<SmartTurn>,
        asr: Option<TranscriberWorker>,
    ) -> Self {
        Cascade {
            policy: TurnPolicy::new(config.policy.clone()),
            config,
            vad,
            turn_model,
            asr,
            tracks: Vec::new(),
            frame_buffer: Vec::with_capacity(576 * 8),
            audio_buffer: Vec::new(),
            last_timing: None,
            pending: std::collections::VecDeque::new(),
            completions_seen: 0,
            live: false,
            vision: None,
        }
    }

    /// Turns the visual observations on (`Some`) or off.
    pub fn set_vision(&mut self, vision: Option<Vision>) {
        self.vision = vision;
    }

    /// Whether video frames are classified.
    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    /// Changes the thresholds (a property changed) without touching the stream state.
    pub fn set_config(&mut self, config: CascadeConfig) {
        self.policy.set_config(config.policy.clone());
        self.config = config;
    }

    pub fn last_transcript_timing(&self) -> Option<TranscriptTiming> {
        self.last_timing
    }

    /// Transcriptions run and skipped (superseded before they started) so far.
    pub fn transcription_counts(&self) -> Option<(u64, u64)> {
        self.asr.as_ref().map(TranscriberWorker::counts)
    }

    fn label(&self, track: usize) -> String {
        match self.tracks.get(track) {
            Some(t) if t.name != "audio" && !t.name.is_empty() => t.name.clone(),
            _ => self.config.user_label.clone(),
        }
    }

    fn track_index(&mut self, name: &str, start: u64, rate: u32) -> Result<usize, String> {
        if let Some(i) = self.tracks.iter().position(|t| t.name == name) {
            return Ok(i);
        }
        let capacity = (self
            .config
            .asr_window_seconds
            .max(self.config.turn_window_seconds)
            * f64::from(rate)) as usize
            + rate as usize;
        let mut ring = AudioRing::new(capacity, rate);
        ring.restart(start);
        self.tracks.push(Track {
            name: name.to_owned(),
            framer: kernels::SileroFramer::new(rate).map_err(|e| e.to_string())?,
            vad: VadState::new()?,
            ring,
            frames: 0,
            job: None,
        });
        Ok(self.tracks.len() - 1)
    }

    fn span_audio(&mut self, track: usize, span: (u64, u64)) -> Vec<f32> {
        let start = span.0.saturating_sub(PRE_ROLL);
        let end = span.1 + POST_ROLL;
        let window = (self.config.asr_window_seconds * 1e9) as u64;
        let start = start.max(end.saturating_sub(window));
        let mut audio = Vec::new();
        self.tracks[track].ring.slice(start, end, &mut audio);
        audio
    }

    fn submit(&mut self, track: usize, span: (u64, u64)) -> Result<(), String> {
        if self.asr.is_none() || self.tracks[track].job.is_some_and(|(s, _)| s == span) {
            return Ok(());
        }
        let audio = self.span_audio(track, span);
        if let Some(asr) = self.asr.as_mut() {
            let id = asr.submit(track, audio)?;
            self.tracks[track].job = Some((span, id));
        }
        Ok(())
    }

    /// The turn ended: its participants' transcriptions are (or were already) submitted; the
    /// captions and the context package follow when they are ready.
    fn turn_ended(&mut self, now: u64) -> Result<(), String> {
        let mut parts = Vec::new();
        for track in self.policy.turn_tracks() {
            let Some(span) = self.policy.turn_span(track) else {
                continue;
            };
            self.submit(track, span)?;
            let job = self.tracks[track].job.take().map(|(_, id)| id);
            if let (Some(id), Some(asr)) = (job, self.asr.as_ref()) {
                asr.pin(id);
            }
            parts.push(Part {
                label: self.label(track),
                span,
                job,
                text: None,
            });
        }
        parts.sort_by_key(|p| p.span.0);
        self.policy.clear_spans();
        self.pending.push_back(PendingTurn {
            decided_at: now,
            decided_wall: std::time::Instant::now(),
            parts,
        });
        Ok(())
    }

    /// Hands over the transcripts that are ready, oldest turn first. `block` waits for them
    /// (non-live pipelines and end of stream, so the output does not depend on thread timing).
    fn deliver(
        &mut self,
        block: bool,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        // Counted before looking: a job that finishes after this is seen by the next wait.
        if let Some(asr) = self.asr.as_ref() {
            self.completions_seen = asr.completions().count();
        }
        while let Some(turn) = self.pending.front_mut() {
            let waited_from = std::time::Instant::now();
            let mut timing = TranscriptTiming::default();
            for part in &mut turn.parts {
                if part.text.is_some() {
                    continue;
                }
                let Some(id) = part.job else {
                    part.text = Some(String::new());
                    continue;
                };
                let Some(asr) = self.asr.as_mut() else {
                    part.text = Some(String::new());
                    continue;
                };
                let result = if block {
                    Some(asr.wait(id, self.config.asr_timeout))
                } else {
                    asr.poll(id)
                };
                match result {
                    Some(Ok(transcription)) => {
                        timing.asr_time += transcription.elapsed;
                        timing.audio_seconds += transcription.audio_seconds;
                        part.text = Some(transcription.text.trim().to_owned());
                    }
                    Some(Err(error)) => return Err(format!("transcription: {error}")),
                    None => {}
                }
            }
            if turn.parts.iter().any(|p| p.text.is_none()) {
                break;
            }
            let Some(turn) = self.pending.pop_front() else {
                break;
            };
            timing.waited = waited_from.elapsed();
            timing.since_decision = turn.decided_wall.elapsed();
            self.last_timing = Some(timing);
            let captions: Vec<Caption> = turn
                .parts
                .into_iter()
                .map(|p| Caption {
                    speaker: p.label,
                    text: p.text.unwrap_or_default(),
                    start: p.span.0,
                    end: p.span.1,
                    truncated: false,
                })
                .collect();
            out.push(Action::Message {
                name: TRANSCRIPT_READY,
                at: now,
                fields: vec![
                    (
                        "decided-at",
                        crate::conversation::Field::U64(turn.decided_at),
                    ),
                    (
                        "latency",
                        crate::conversation::Field::U64(
                            u64::try_from(timing.since_decision.as_nanos()).unwrap_or(u64::MAX),
                        ),
                    ),
                    (
                        "text",
                        crate::conversation::Field::Str(
                            captions
                                .iter()
                                .map(|c| c.text.as_str())
                                .collect::<Vec<_>>()
                                .join(" "),
                        ),
                    ),
                ],
            });
            conversation.transcribed(captions, now, out);
        }
        if let Some(asr) = self.asr.as_mut() {
            let mut keep: Vec<u64> = self
                .pending
                .iter()
                .flat_map(|t| t.parts.iter().filter_map(|p| p.job))
                .collect();
            keep.extend(self.tracks.iter().filter_map(|t| t.job.map(|(_, id)| id)));
            asr.forget_except(&keep);
        }
        Ok(())
    }

    fn handle(
        &mut self,
        events: Vec<PolicyEvent>,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let mut queue = std::collections::VecDeque::from(events);
        while let Some(event) = queue.pop_front() {
            match event {
                PolicyEvent::SpeechStarted { .. } => {}
                PolicyEvent::SpeechStopped { track, .. } => {
                    // Start transcribing now: the turn may be over.
                    if let Some(span) = self.policy.turn_span(track) {
                        self.submit(track, span)?;
                    }
                }
                PolicyEvent::AskTurnModel { track } => {
                    let probability = match self.turn_model.as_mut() {
                        Some(model) => {
                            // The window ends a fixed `pause` after the last voiced frame, not
                            // at the micro-turn boundary: Smart Turn's verdict depends on how
                            // much silence trails the speech (a mid-sentence pause measured
                            // 0.04 with 200 ms of it and 0.88 with 400 ms), and the boundary
                            // falls anywhere in a 200 ms range after the pause.
                            let end = self.policy.last_voiced_end(track)
                                + self.config.policy.pause.min(MAX_TURN_TRAIL);
                            let span = (self.config.turn_window_seconds * 1e9) as u64;
                            let ring = &self.tracks[track].ring;
                            let end = end.min(ring.time_of(ring.written()));
                            ring.slice(end.saturating_sub(span), end, &mut self.audio_buffer);
                            model.probability(&self.audio_buffer)?
                        }
                        // Without the model (never with the default package) a pause ends it.
                        None => 1.0,
                    };
                    out.push(Action::Message {
                        name: TURN_VERDICT,
                        at: now,
                        fields: vec![
                            (
                                "probability",
                                crate::conversation::Field::F64(f64::from(probability)),
                            ),
                            (
                                "speaker",
                                crate::conversation::Field::Str(self.label(track)),
                            ),
                        ],
                    });
                    queue.extend(self.policy.verdict(probability, now));
                }
                PolicyEvent::BargeIn {
                    track,
                    speech_start,
                } => {
                    let label = self.label(track);
                    conversation.barge_in(speech_start, &label, now, out);
                }
                PolicyEvent::Hold {
                    track,
                    speech_start,
                } => {
                    let label = self.label(track);
                    conversation.hold(speech_start, &label, now, out);
                }
                PolicyEvent::Release { .. } => conversation.release(now, out),
                PolicyEvent::Backchannel => conversation.backchannel(now, out),
                PolicyEvent::TurnEnded {
                    reason,
                    speech_end,
                    probability,
                } => {
                    conversation.turn_ended(reason.as_str(), speech_end, probability, now, out);
                    self.turn_ended(now)?;
                }
            }
        }
        Ok(())
    }
}

/// Bus message: the transcripts of an ended turn are ready (`decided-at`: running time of the
/// end-of-turn decision; `latency`: wall time since that decision, ns; `text`).
pub const TRANSCRIPT_READY: &str = "interaction/transcript-ready";

struct Part {
    label: String,
    span: (u64, u64),
    job: Option<u64>,
    text: Option<String>,
}

struct PendingTurn {
    decided_at: u64,
    decided_wall: std::time::Instant,
    parts: Vec<Part>,
}

/// Bus message: Smart Turn's verdict at a pause (`probability`, `speaker`).
pub const TURN_VERDICT: &str = "interaction/turn-verdict";

impl Engine for Cascade {
    fn step(
        &mut self,
        packet: &Packet,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<StepInfo, String> {
        let header = &packet.header;
        if header.audio_rate != 16_000 {
            return Err(format!(
                "the micro-turn audio is at {} Hz; the cascade needs 16000 Hz (set the \
                 aligner's audio-rate)",
                header.audio_rate
            ));
        }
        let agent_speaking = conversation.agent_speaking(header.start);
        let mut max_probability = 0.0f32;
        let frame_ns = 32 * MS;
        for audio in &packet.audio {
            let track = self.track_index(&audio.name, header.start, header.audio_rate)?;
            let t = &mut self.tracks[track];
            if header.flags & packet_flags::DISCONT != 0 && t.ring.written() > 0 {
                t.framer.reset();
                t.ring.restart(header.start);
                t.frames = 0;
            }
            t.ring.push(&audio.samples);
            self.frame_buffer.clear();
            let buffer = &mut self.frame_buffer;
            t.framer
                .push(&audio.samples, &mut |frame| buffer.extend_from_slice(frame))
                .map_err(|e| format!("audio track {}: {e}", audio.name))?;
            let frame_len = t.framer.frame_len();
            for frame in self.frame_buffer.chunks_exact(frame_len) {
                let t = &mut self.tracks[track];
                let probability = self.vad.probability(frame, &mut t.vad)?;
                t.frames += 1;
                let end = t.ring.origin() + t.frames * frame_ns;
                max_probability = max_probability.max(probability);
                self.policy
                    .frame(track, probability, end, frame_ns, agent_speaking);
            }
        }
        // A participant silent for EARLY_SILENCE at the end of the micro-turn may have ended
        // the turn: transcribe what there is now (the audio decides, not the thread timing,
        // so a non-live run still gives the same output every time).
        for track in 0..self.tracks.len() {
            let t = &self.tracks[track];
            let heard_up_to = t.ring.origin() + t.frames * frame_ns;
            if self.policy.in_speech(track)
                && let Some(span) = self.policy.turn_span(track)
                && heard_up_to.saturating_sub(span.1) >= EARLY_SILENCE
            {
                self.submit(track, span)?;
            }
        }
        // Before the turn decisions, so that a context package of this micro-turn carries the
        // observation it made.
        if let Some(vision) = self.vision.as_mut() {
            vision.step(&packet.video, !self.live, now, conversation, out)?;
        }
        let events = self.policy.check(now);
        self.handle(events, now, conversation, out)?;
        self.deliver(!self.live, now, conversation, out)?;
        Ok(StepInfo {
            speech_probability: max_probability,
            user_busy: self.policy.user_speaking() || self.policy.in_turn(),
        })
    }

    fn finish(
        &mut self,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let events = self.policy.finish();
        self.handle(events, now, conversation, out)?;
        self.deliver(true, now, conversation, out)
    }

    fn set_live(&mut self, live: bool) {
        self.live = live;
    }

    fn transcripts_pending(&self) -> Option<(Completions, u64)> {
        let asr = self.asr.as_ref()?;
        (self.live && !self.pending.is_empty()).then(|| (asr.completions(), self.completions_seen))
    }

    fn deliver_ready(
        &mut self,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        self.deliver(false, now, conversation, out)
    }

    fn update(&mut self, policy: &PolicyConfig) {
        self.policy.set_config(policy.clone());
        self.config.policy = policy.clone();
    }

    fn reset(&mut self) {
        self.policy.reset();
        self.tracks.clear();
        self.pending.clear();
        if let Some(asr) = self.asr.as_mut() {
            asr.forget_except(&[]);
        }
        if let Some(vision) = self.vision.as_mut() {
            vision.reset();
        }
    }

    fn kind(&self) -> &'static str {
        "cascade"
    }
}

/// The detection mode's name for messages and logs.
pub fn detection_name(detection: TurnDetection) -> &'static str {
    match detection {
        TurnDetection::SmartTurn => "smart-turn",
        TurnDetection::Silence => "silence",
    }
}
