//! What both kinds share once a model has decided: the agent's speaking state, the bounded
//! conversation record, reasoning requests and results, the filler, and the list of
//! [`Action`]s (pad output and bus messages) for each micro-turn. Plain Rust, no GStreamer;
//! times are running times in nanoseconds.
//!
//! The agent's speaking state comes from the speak events the element sends and the
//! *progress* events `speechsynth` sends back: an utterance is playing from its speak until a
//! progress with reason `completed` or `interrupted`. When no progress ever arrives for an
//! utterance (no synthesizer that speaks the protocol downstream), the element estimates its end
//! from its length at `speaking-rate` characters per second. The record keeps what the user
//! actually heard: the progress offsets cut the agent's text where it was interrupted.

use std::collections::VecDeque;

use interaction_protocol::events::{ProgressReason, messages};
use interaction_protocol::packet::{TextItem, text_flags};

const MS: u64 = 1_000_000;

/// A bus message field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    U64(u64),
    F64(f64),
    Str(String),
    Bool(bool),
}

/// Output of one micro-turn, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A *speak* event for a new utterance, then its first text, on `speech`.
    Speak {
        utterance_id: u64,
        text: String,
        at: u64,
    },
    /// More text of the utterance being spoken, on `speech`.
    SpeakMore {
        utterance_id: u64,
        text: String,
        at: u64,
    },
    /// A *yield* event on `speech`.
    Yield { utterance_id: Option<u64>, at: u64 },
    /// A *pause* event on `speech` (the user may be interrupting).
    Pause { utterance_id: u64, at: u64 },
    /// A *resume* event on `speech` (it was a back-channel).
    Resume { utterance_id: u64, at: u64 },
    /// A *backchannel* event on `speech`.
    Backchannel { text: String, at: u64 },
    /// A *prepare* event on `speech`: text the synthesizer may synthesise ahead, because it
    /// will probably be said soon (an answer that arrived while the user is speaking).
    /// `partial`: more of it is still to come, so its end may be mid-sentence.
    Prepare {
        text: String,
        partial: bool,
        at: u64,
    },
    /// A caption on `transcript`.
    Caption(Caption),
    /// A context package on `reasoning`.
    Context {
        request_id: u64,
        json: String,
        at: u64,
    },
    /// An element message on the bus.
    Message {
        name: &'static str,
        at: u64,
        fields: Vec<(&'static str, Field)>,
    },
}

/// One caption line: who said what, when (running time, ns).
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub speaker: String,
    pub text: String,
    pub start: u64,
    pub end: u64,
    /// The agent was interrupted: the text is what was heard of a longer utterance.
    pub truncated: bool,
}

/// One entry of the conversation record.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub speaker: String,
    /// "speech" (heard or said aloud) or "text" (a text item, e.g. chat).
    pub kind: &'static str,
    pub text: String,
    pub start: u64,
    pub end: u64,
    /// For the agent: the text it planned to say, when it was cut.
    pub planned: Option<String>,
    pub truncated: bool,
}

/// The default filler phrases (the `filler-text` property): short acknowledgements that take
/// the turn while the reasoning model works.
pub const DEFAULT_FILLERS: &str = "Okay, let me think.|One moment.|Let me see.|Hmm, okay.";

/// Settings of the shared decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationConfig {
    /// Most entries kept; the oldest is dropped first.
    pub record_limit: usize,
    /// A filler is said once the user's turn has ended and the user has been silent this long
    /// without an answer (0: never), ns. It counts from the end of the user's speech, not from
    /// the reasoning request (which waits for the transcript): with a value below the
    /// end-of-turn delay the filler is said in the micro-turn of the decision.
    pub filler_after: u64,
    /// Filler phrases separated by `|`, said in turn.
    pub filler_text: String,
    pub backchannel_text: String,
    /// Characters per second used to estimate when an utterance ends without progress events.
    pub speaking_rate: f64,
    /// Speaker label of the first audio track.
    pub user_label: String,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        ConversationConfig {
            record_limit: 64,
            filler_after: 200 * MS,
            filler_text: DEFAULT_FILLERS.into(),
            backchannel_text: "mm-hm".into(),
            speaking_rate: 14.0,
            user_label: "user".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Utterance {
    id: u64,
    text: String,
    started: u64,
    progress_seen: bool,
    heard_bytes: usize,
    /// Progress points (running time, bytes heard by then), in arrival order; a few per
    /// utterance (one per phrase), dropped with the utterance.
    points: Vec<(u64, usize)>,
    /// Running time the synthesizer said the utterance ended (completed or interrupted).
    ends_at: Option<u64>,
    estimated_end: u64,
    yielded_at: Option<u64>,
    request_id: Option<u64>,
}

#[derive(Debug, Clone)]
struct Request {
    id: u64,
    answered: bool,
    /// The user barged in on its answer: the rest of it is not said (the sidecar was told to
    /// stop, but results already on their way still arrive).
    interrupted: bool,
    /// Text of this request's results so far (to tell cumulative finals from deltas).
    received: String,
    /// Its final result has arrived.
    complete: bool,
}

/// The conversation state. One per element; replaced on flush.
#[derive(Debug, Clone)]
pub struct Conversation {
    config: ConversationConfig,
    record: VecDeque<Entry>,
    dropped: u64,
    current: Option<Utterance>,
    next_utterance: u64,
    next_request: u64,
    request: Option<Request>,
    /// Result text waiting for the user to stop speaking: (request id, text).
    pending: VecDeque<(Option<u64>, String)>,
    /// The queued text that went out in the last *prepare*, and whether it was the whole answer.
    prepared: String,
    prepared_whole: bool,
    /// Actions produced outside a step (progress events), emitted at the next step.
    deferred: Vec<Action>,
    /// The latest visual observation (one entry per class), for the context packages.
    observations: Vec<interaction_protocol::context::Observation>,
    /// The user's turn (or text request) that has no answer yet: the filler counts from it.
    awaiting: Option<Awaiting>,
    /// The reasoning pad is not linked: no answer will come, so no filler either.
    reasoning_unlinked: bool,
    /// Fillers said so far (picks the next phrase).
    fillers_said: usize,
    /// The utterance paused by user speech over it (until a resume or a yield).
    paused: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Awaiting {
    since: u64,
    filler_done: bool,
}

impl Conversation {
    pub fn new(config: ConversationConfig) -> Self {
        Conversation {
            config,
            record: VecDeque::new(),
            dropped: 0,
            current: None,
            next_utterance: 1,
            next_request: 1,
            request: None,
            pending: VecDeque::new(),
            prepared: String::new(),
            prepared_whole: false,
            deferred: Vec::new(),
            observations: Vec::new(),
            awaiting: None,
            reasoning_unlinked: false,
            fillers_said: 0,
            paused: None,
        }
    }

    /// Replaces the latest observation (`crate::vision`); the next context packages carry it.
    pub fn set_observations(
        &mut self,
        observations: Vec<interaction_protocol::context::Observation>,
    ) {
        self.observations = observations;
    }

    /// The latest observation.
    pub fn observations(&self) -> &[interaction_protocol::context::Observation] {
        &self.observations
    }

    pub fn config(&self) -> &ConversationConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: ConversationConfig) {
        self.config = config;
        self.trim();
    }

    /// The record, oldest first.
    pub fn record(&self) -> impl Iterator<Item = &Entry> {
        self.record.iter()
    }

    pub fn record_len(&self) -> usize {
        self.record.len()
    }

    /// Entries dropped because of `record_limit`.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether an utterance of the agent is playing at `now`.
    pub fn agent_speaking(&self, now: u64) -> bool {
        match &self.current {
            None => false,
            Some(u) if u.yielded_at.is_some() => false,
            Some(u) => match u.ends_at {
                Some(end) => now < end,
                None if u.progress_seen => true,
                None => now < u.estimated_end,
            },
        }
    }

    /// The utterance being spoken, if any.
    pub fn current_utterance(&self) -> Option<u64> {
        self.current.as_ref().map(|u| u.id)
    }

    fn push_entry(&mut self, entry: Entry) {
        self.record.push_back(entry);
        self.trim();
    }

    fn trim(&mut self) {
        let limit = self.config.record_limit.max(1);
        while self.record.len() > limit {
            self.record.pop_front();
            self.dropped += 1;
        }
    }

    /// Start of a micro-turn that ends at `now`: finishes utterances whose estimated end has
    /// passed and hands over actions deferred from progress events.
    pub fn begin(&mut self, now: u64, out: &mut Vec<Action>) {
        out.append(&mut self.deferred);
        let Some(u) = &self.current else { return };
        if let Some(end) = u.ends_at {
            // The synthesizer's end (in non-live pipelines it runs ahead of the micro-turns).
            if now >= end {
                let heard = u.heard_bytes;
                self.finish_utterance(heard, end, out);
            }
        } else if !u.progress_seen && u.yielded_at.is_none() && now >= u.estimated_end {
            let end = u.estimated_end;
            let heard = u.text.len();
            self.finish_utterance(heard, end, out);
        }
    }

    /// A *progress* event from the synthesizer.
    pub fn on_progress(
        &mut self,
        utterance_id: u64,
        bytes: u64,
        running_time: u64,
        reason: ProgressReason,
    ) {
        let Some(u) = self.current.as_mut().filter(|u| u.id == utterance_id) else {
            return;
        };
        u.progress_seen = true;
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(u.text.len());
        u.heard_bytes = u.heard_bytes.max(bytes);
        if u.points.len() < 256 {
            u.points.push((running_time, bytes));
        }
        match reason {
            ProgressReason::Completed => u.ends_at = Some(running_time),
            ProgressReason::Interrupted => {
                // The answer to our yield: what was heard is known now.
                let heard = u.heard_bytes;
                let mut out = std::mem::take(&mut self.deferred);
                self.finish_utterance(heard, running_time, &mut out);
                self.deferred = out;
            }
            // speechsynth completes an utterance only when the next one starts (or at EOS):
            // a phrase that makes the whole text heard means all of it has played. Without
            // this, a live agent whose first phrase report came before the estimated end kept
            // the utterance open forever and never spoke again.
            ProgressReason::Phrase => {
                if u.heard_bytes >= u.text.len() {
                    u.ends_at = Some(running_time);
                }
            }
        }
    }

    fn finish_utterance(&mut self, heard_bytes: usize, end: u64, out: &mut Vec<Action>) {
        let Some(u) = self.current.take() else { return };
        let mut cut = heard_bytes.min(u.text.len());
        while !u.text.is_char_boundary(cut) {
            cut -= 1;
        }
        let heard = u.text[..cut].trim().to_owned();
        let truncated = cut < u.text.len();
        let end = end.max(u.started);
        out.push(Action::Caption(Caption {
            speaker: "agent".into(),
            text: heard.clone(),
            start: u.started,
            end,
            truncated,
        }));
        self.push_entry(Entry {
            speaker: "agent".into(),
            kind: "speech",
            text: heard,
            start: u.started,
            end,
            planned: truncated.then(|| u.text.trim().to_owned()),
            truncated,
        });
    }

    fn estimate(&self, text: &str) -> u64 {
        let chars = text.chars().count() as f64;
        let rate = self.config.speaking_rate.max(1.0);
        (chars / rate * 1e9) as u64 + 300 * MS
    }

    /// Starts an utterance: a speak event and its text.
    fn speak(&mut self, text: String, request_id: Option<u64>, now: u64, out: &mut Vec<Action>) {
        let id = self.next_utterance;
        self.next_utterance += 1;
        self.current = Some(Utterance {
            id,
            estimated_end: now + self.estimate(&text),
            text: text.clone(),
            started: now,
            progress_seen: false,
            heard_bytes: 0,
            points: Vec::new(),
            ends_at: None,
            yielded_at: None,
            request_id,
        });
        out.push(Action::Speak {
            utterance_id: id,
            text,
            at: now,
        });
    }

    /// The user barged in at `now`: yield the agent's utterance.
    pub fn barge_in(&mut self, speech_start: u64, track: &str, now: u64, out: &mut Vec<Action>) {
        out.push(Action::Message {
            name: messages::BARGE_IN,
            at: now,
            fields: vec![
                ("speech-start", Field::U64(speech_start)),
                ("speaker", Field::Str(track.to_owned())),
            ],
        });
        // Queued text of the answer being interrupted is stale now, and so is the rest of it
        // that is still on its way: the user's new turn gets an answer of its own.
        self.pending.clear();
        self.prepared.clear();
        self.prepared_whole = false;
        if let Some(r) = self.request.as_mut() {
            r.interrupted = true;
            r.answered = true;
        }
        self.awaiting = None;
        self.paused = None;
        let Some(u) = self.current.as_mut() else {
            return;
        };
        let id = u.id;
        u.yielded_at = Some(now);
        out.push(Action::Yield {
            utterance_id: Some(id),
            at: now,
        });
        if u.ends_at.is_some() {
            // The synthesizer already finished the utterance ahead of time (non-live): what
            // was heard by now is the last progress point at or before now.
            let bytes = u
                .points
                .iter()
                .filter(|(at, _)| *at <= now)
                .map(|(_, b)| *b)
                .max()
                .unwrap_or(0);
            self.finish_utterance(bytes, now, out);
        } else if !u.progress_seen {
            // No synthesizer reports progress: estimate what was heard from the time spoken.
            let elapsed = now.saturating_sub(u.started) as f64 / 1e9;
            let chars = (elapsed * self.config.speaking_rate) as usize;
            let bytes = u
                .text
                .char_indices()
                .nth(chars)
                .map_or(u.text.len(), |(i, _)| i);
            self.finish_utterance(bytes, now, out);
        }
    }

    /// The user started speaking over the agent at `speech_start`: pause the utterance.
    pub fn hold(&mut self, speech_start: u64, track: &str, now: u64, out: &mut Vec<Action>) {
        let Some(u) = self.current.as_ref() else {
            return;
        };
        if self.paused == Some(u.id) || u.yielded_at.is_some() {
            return;
        }
        self.paused = Some(u.id);
        out.push(Action::Pause {
            utterance_id: u.id,
            at: now,
        });
        out.push(Action::Message {
            name: messages::AGENT_PAUSED,
            at: now,
            fields: vec![
                ("utterance-id", Field::U64(u.id)),
                ("speech-start", Field::U64(speech_start)),
                ("speaker", Field::Str(track.to_owned())),
            ],
        });
    }

    /// The speech that paused the agent was a back-channel: resume the utterance.
    pub fn release(&mut self, now: u64, out: &mut Vec<Action>) {
        let Some(id) = self.paused.take() else {
            return;
        };
        if self
            .current
            .as_ref()
            .is_none_or(|u| u.id != id || u.yielded_at.is_some())
        {
            return;
        }
        out.push(Action::Resume {
            utterance_id: id,
            at: now,
        });
        out.push(Action::Message {
            name: messages::AGENT_RESUMED,
            at: now,
            fields: vec![("utterance-id", Field::U64(id))],
        });
    }

    /// A back-channel now.
    pub fn backchannel(&mut self, now: u64, out: &mut Vec<Action>) {
        let text = self.config.backchannel_text.clone();
        out.push(Action::Backchannel {
            text: text.clone(),
            at: now,
        });
        out.push(Action::Message {
            name: messages::BACKCHANNEL,
            at: now,
            fields: vec![("text", Field::Str(text))],
        });
    }

    /// The user's turn ended: record what was said, ask for reasoning.
    pub fn user_turn_ended(
        &mut self,
        utterances: Vec<Caption>,
        reason: &str,
        speech_end: u64,
        probability: Option<f32>,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        self.turn_ended(reason, speech_end, probability, now, out);
        self.transcribed(utterances, now, out);
    }

    /// The decision that the user's turn ended (`interaction/user-turn-ended`).
    pub fn turn_ended(
        &mut self,
        reason: &str,
        speech_end: u64,
        probability: Option<f32>,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        let mut fields = vec![
            ("reason", Field::Str(reason.to_owned())),
            ("speech-end", Field::U64(speech_end)),
        ];
        if let Some(p) = probability {
            fields.push(("probability", Field::F64(f64::from(p))));
        }
        self.awaiting = Some(Awaiting {
            since: speech_end.min(now),
            filler_done: false,
        });
        out.push(Action::Message {
            name: messages::USER_TURN_ENDED,
            at: now,
            fields,
        });
    }

    /// The transcripts of the ended turn are ready: captions, record, reasoning request.
    pub fn transcribed(&mut self, utterances: Vec<Caption>, now: u64, out: &mut Vec<Action>) {
        for caption in &utterances {
            out.push(Action::Caption(caption.clone()));
        }
        for caption in utterances {
            self.push_entry(Entry {
                speaker: caption.speaker,
                kind: "speech",
                text: caption.text,
                start: caption.start,
                end: caption.end,
                planned: None,
                truncated: false,
            });
        }
        self.request_reasoning("user-turn-ended", now, out);
    }

    /// Records a chat (non-result) text item and asks for reasoning about it.
    fn user_text(&mut self, item: &TextItem, now: u64, out: &mut Vec<Action>) {
        self.record_text(item, now, out);
        self.request_reasoning("text", now, out);
    }

    /// Records a chat text item (caption and record entry) without asking for reasoning.
    pub fn record_text(&mut self, item: &TextItem, now: u64, out: &mut Vec<Action>) {
        let at = now.saturating_add_signed(item.offset).min(now);
        out.push(Action::Caption(Caption {
            speaker: item.pad.clone(),
            text: item.text.clone(),
            start: at,
            end: at,
            truncated: false,
        }));
        self.push_entry(Entry {
            speaker: item.pad.clone(),
            kind: "text",
            text: item.text.clone(),
            start: at,
            end: at,
            planned: None,
            truncated: false,
        });
    }

    /// Whether the latest reasoning request has no result yet.
    pub fn awaiting_result(&self) -> bool {
        self.request.as_ref().is_some_and(|r| !r.answered)
    }

    /// Says `text` now (a model decided to speak it): continues the utterance of the same
    /// request, or starts one when the agent is silent.
    pub fn say(&mut self, text: String, request_id: Option<u64>, now: u64, out: &mut Vec<Action>) {
        if let Some(r) = self
            .request
            .as_mut()
            .filter(|r| request_id.is_none_or(|id| id == r.id))
        {
            r.answered = true;
            self.awaiting = None;
        }
        self.pending.push_back((request_id, text));
        self.tick(now, false, out);
    }

    /// Pushes a context package with the record so far.
    pub fn request_reasoning(&mut self, trigger: &str, now: u64, out: &mut Vec<Action>) {
        let id = self.next_request;
        self.next_request += 1;
        self.reasoning_unlinked = false;
        if self.awaiting.is_none() {
            self.awaiting = Some(Awaiting {
                since: now,
                filler_done: false,
            });
        }
        self.request = Some(Request {
            id,
            answered: false,
            interrupted: false,
            received: String::new(),
            complete: false,
        });
        let json = self.context_json(id, trigger, now);
        out.push(Action::Context {
            request_id: id,
            json,
            at: now,
        });
        out.push(Action::Message {
            name: messages::REASONING_REQUESTED,
            at: now,
            fields: vec![
                ("request-id", Field::U64(id)),
                ("trigger", Field::Str(trigger.to_owned())),
            ],
        });
    }

    /// The reasoning pad is not linked: no answer will come, so no filler either.
    pub fn request_undeliverable(&mut self, request_id: u64) {
        if self.request.as_ref().is_some_and(|r| r.id == request_id) {
            self.reasoning_unlinked = true;
        }
    }

    /// The context package (`interaction_protocol::context`, JSON) for request `id`.
    pub fn context_json(&self, id: u64, trigger: &str, now: u64) -> String {
        use interaction_protocol::context::{
            ContextPackage, Role, Trigger, TriggerReason, Truncation, Turn,
        };
        let reason = match trigger {
            "user-turn-ended" => TriggerReason::UserTurnEnded,
            "text" => TriggerReason::UserRequest,
            _ => TriggerReason::Other,
        };
        let mut package = ContextPackage::new(
            id,
            Trigger {
                reason,
                running_time_ns: now,
                detail: (reason == TriggerReason::Other).then(|| trigger.to_owned()),
            },
        );
        package.conversation =
            self.record
                .iter()
                .map(|e| Turn {
                    speaker: e.speaker.clone(),
                    role: if e.speaker == "agent" {
                        Role::Agent
                    } else {
                        Role::User
                    },
                    start_ns: e.start,
                    end_ns: Some(e.end),
                    text: e.text.clone(),
                    truncation: e.planned.as_ref().filter(|_| e.truncated).map(|planned| {
                        Truncation {
                            planned: planned.clone(),
                            heard_chars: e.text.chars().count(),
                        }
                    }),
                })
                .collect();
        package.observations = self.observations.clone();
        String::from_utf8(package.to_bytes()).unwrap_or_default()
    }

    /// Text items of a micro-turn: reasoning results are queued for speech, other text is a
    /// user message.
    pub fn on_text(&mut self, items: &[TextItem], now: u64, out: &mut Vec<Action>) {
        for item in items {
            let request_id = item
                .fields
                .iter()
                .find(|(k, _)| k == "request_id" || k == "request-id")
                .map(|(_, v)| v.as_str());
            let is_result = request_id.is_some() || item.flags & text_flags::LOOPBACK != 0;
            if !is_result {
                if !item.text.trim().is_empty() {
                    self.user_text(item, now, out);
                }
                continue;
            }
            let request_id = request_id.and_then(|r| r.trim().parse::<u64>().ok());
            let is_final = item
                .fields
                .iter()
                .any(|(k, v)| k == "final" && (v == "true" || v == "1"));
            // A result for an older request than the latest is stale, and so is the rest of an
            // interrupted answer.
            if let Some(r) = &self.request
                && (request_id.is_some_and(|id| id != r.id) || r.interrupted)
            {
                continue;
            }
            let field = |key: &str| {
                item.fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            // A structured result (`interaction_protocol::context::ReasoningResult`) carries
            // the whole answer so far in `text` and the new part in `delta`; an error result
            // carries a sentence to say in `error.message`.
            let error_message = field("error")
                .filter(|e| *e != "null" && !e.is_empty())
                .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
                .and_then(|e| e.get("message").and_then(|m| m.as_str()).map(str::to_owned));
            let mut text = match (field("delta"), error_message) {
                (_, Some(message)) => message,
                (Some(delta), None) => delta.to_owned(),
                (None, None) => item.text.clone(),
            };
            if let Some(r) = self.request.as_mut() {
                r.answered = true;
                self.awaiting = None;
                // A final item may repeat the whole answer: speak only what is new.
                if is_final && !r.received.is_empty() && text.starts_with(&r.received) {
                    text = text[r.received.len()..].to_owned();
                }
                r.received.push_str(&text);
                r.complete |= is_final;
            }
            if !text.trim().is_empty() {
                self.pending.push_back((request_id, text));
            }
        }
    }

    /// The user is speaking and an answer waits (it arrived during their turn): its text so far
    /// goes out in a *prepare*, so that its sentences start at once when the turn ends instead
    /// of after a synthesis. Only a new utterance is prepared, and only when its text grew or
    /// became whole; the synthesizer picks the phrases that are complete (`partial`).
    fn prepare_pending(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.current.is_some() {
            return;
        }
        let Some(&(first, _)) = self.pending.front() else {
            return;
        };
        let mut text = String::new();
        for (_, piece) in self.pending.iter().take_while(|(id, _)| *id == first) {
            text.push_str(piece);
        }
        let whole = self
            .request
            .as_ref()
            .is_some_and(|r| Some(r.id) == first && r.complete);
        if text == self.prepared && whole == self.prepared_whole {
            return;
        }
        out.push(Action::Prepare {
            text: text.clone(),
            partial: !whole,
            at: now,
        });
        self.prepared = text;
        self.prepared_whole = whole;
    }

    /// End of a micro-turn: speak queued results or a filler when the user lets us.
    pub fn tick(&mut self, now: u64, user_busy: bool, out: &mut Vec<Action>) {
        if user_busy {
            self.prepare_pending(now, out);
            return;
        }
        self.prepared.clear();
        self.prepared_whole = false;
        while let Some((request_id, text)) = self.pending.pop_front() {
            let continues = self
                .current
                .as_ref()
                .is_some_and(|u| u.yielded_at.is_none() && u.request_id == request_id);
            if continues {
                let Some(u) = self.current.as_mut() else {
                    break;
                };
                let extra = self.config.speaking_rate.max(1.0);
                u.estimated_end += (text.chars().count() as f64 / extra * 1e9) as u64;
                u.text.push_str(&text);
                // More to say: an end taken from a phrase report no longer holds.
                u.ends_at = None;
                out.push(Action::SpeakMore {
                    utterance_id: u.id,
                    text,
                    at: now,
                });
            } else {
                if self.current.is_some() {
                    // Another utterance still plays; keep the text for later.
                    self.pending.push_front((request_id, text));
                    break;
                }
                self.speak(text, request_id, now, out);
                if let Some(id) = request_id {
                    out.push(Action::Message {
                        name: messages::RESULT_USED,
                        at: now,
                        fields: vec![("request-id", Field::U64(id))],
                    });
                }
            }
        }
        let filler_due = self.config.filler_after > 0
            && self.current.is_none()
            && !self.reasoning_unlinked
            && self.awaiting.is_some_and(|a| {
                !a.filler_done && now.saturating_sub(a.since) >= self.config.filler_after
            });
        if filler_due {
            if let Some(a) = self.awaiting.as_mut() {
                a.filler_done = true;
            }
            let phrases: Vec<&str> = self
                .config
                .filler_text
                .split('|')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            if phrases.is_empty() {
                return;
            }
            let text = phrases[self.fillers_said % phrases.len()].to_owned();
            self.fillers_said += 1;
            let request = self.request.as_ref().map(|r| r.id);
            self.speak(text.clone(), None, now, out);
            out.push(Action::Message {
                name: FILLER,
                at: now,
                fields: vec![
                    ("text", Field::Str(text)),
                    ("request-id", Field::U64(request.unwrap_or(0))),
                ],
            });
        }
    }
}

/// Bus message: the agent said a filler because reasoning was slow (`text`, `request-id`).
pub const FILLER: &str = "interaction/filler";

#[cfg(test)]
mod tests {
    use super::*;

    fn result(text: &str, request: u64, last: bool) -> TextItem {
        TextItem {
            pad: "text_0".into(),
            flags: text_flags::LOOPBACK,
            offset: 0,
            text: text.into(),
            fields: vec![
                ("request_id".into(), request.to_string()),
                ("final".into(), last.to_string()),
            ],
        }
    }

    fn caption(text: &str, start: u64, end: u64) -> Caption {
        Caption {
            speaker: "user".into(),
            text: text.into(),
            start,
            end,
            truncated: false,
        }
    }

    #[test]
    fn turn_end_requests_reasoning_with_the_record() {
        let mut c = Conversation::new(ConversationConfig::default());
        let mut out = Vec::new();
        c.user_turn_ended(
            vec![caption("what time is it", 0, 900 * MS)],
            "smart-turn",
            900 * MS,
            Some(0.9),
            1200 * MS,
            &mut out,
        );
        let json = out
            .iter()
            .find_map(|a| match a {
                Action::Context {
                    request_id, json, ..
                } => Some((*request_id, json.clone())),
                _ => None,
            })
            .expect("context package");
        assert_eq!(json.0, 1);
        let package =
            interaction_protocol::context::ContextPackage::parse(json.1.as_bytes()).unwrap();
        assert_eq!(package.conversation[0].text, "what time is it");
        assert_eq!(package.conversation[0].end_ns, Some(900_000_000));
        assert_eq!(
            package.trigger.reason,
            interaction_protocol::context::TriggerReason::UserTurnEnded
        );
        assert_eq!(package.trigger.running_time_ns, 1_200_000_000);
    }

    /// A conversation where the user said "hi" (turn ended at 1 ms) and waits for the answer.
    fn asked_hi() -> Conversation {
        let mut c = Conversation::new(ConversationConfig::default());
        c.user_turn_ended(
            vec![caption("hi", 0, MS)],
            "silence",
            MS,
            None,
            MS,
            &mut Vec::new(),
        );
        c
    }

    #[test]
    fn results_wait_for_the_user_and_progress_truncates_the_record() {
        let mut c = asked_hi();
        let mut out = Vec::new();
        c.on_text(&[result("Hello there. ", 1, false)], 2 * MS, &mut out);
        c.tick(2 * MS, true, &mut out);
        assert_eq!(
            out,
            [Action::Prepare {
                text: "Hello there. ".into(),
                partial: true,
                at: 2 * MS
            }],
            "the user is speaking: nothing is said, the answer so far is prepared"
        );
        out.clear();
        c.tick(2 * MS, true, &mut out);
        assert!(out.is_empty(), "the same text is prepared once");
        c.tick(3 * MS, false, &mut out);
        assert!(
            matches!(&out[0], Action::Speak { utterance_id: 1, text, .. } if text == "Hello there. ")
        );
        assert!(c.agent_speaking(3 * MS));
        out.clear();
        c.on_text(&[result("How are you?", 1, true)], 4 * MS, &mut out);
        c.tick(4 * MS, false, &mut out);
        assert!(matches!(
            &out[0],
            Action::SpeakMore {
                utterance_id: 1,
                ..
            }
        ));
        // The synthesizer played 6 bytes ("Hello ") and was interrupted.
        c.on_progress(1, 6, 500 * MS, ProgressReason::Interrupted);
        assert!(!c.agent_speaking(600 * MS));
        let last = c.record().last().unwrap().clone();
        assert_eq!(last.text, "Hello");
        assert!(last.truncated);
        assert_eq!(last.planned.as_deref(), Some("Hello there. How are you?"));
        let mut next = Vec::new();
        c.begin(700 * MS, &mut next);
        assert!(matches!(&next[0], Action::Caption(cap) if cap.text == "Hello" && cap.truncated));
    }

    #[test]
    fn a_synthesizer_running_ahead_is_cut_at_its_progress_points() {
        // Non-live: the synthesizer has already played everything (in its running time) when
        // the micro-turns reach the barge-in; what was heard is its last point before it.
        let mut c = Conversation::new(ConversationConfig::default());
        let mut out = Vec::new();
        c.request_reasoning("test", 0, &mut out);
        c.on_text(
            &[result("One two. Three four. Five six.", 1, true)],
            0,
            &mut out,
        );
        c.tick(1000 * MS, false, &mut out);
        c.on_progress(1, 9, 1800 * MS, ProgressReason::Phrase);
        c.on_progress(1, 21, 2600 * MS, ProgressReason::Phrase);
        c.on_progress(1, 30, 3400 * MS, ProgressReason::Completed);
        assert!(
            c.agent_speaking(3000 * MS),
            "speaking until its end running time"
        );
        assert!(!c.agent_speaking(3400 * MS));
        out.clear();
        c.barge_in(2500 * MS, "user", 2700 * MS, &mut out);
        assert!(out.iter().any(|a| matches!(a, Action::Yield { .. })));
        let last = c.record().last().unwrap();
        assert_eq!(last.text, "One two. Three four.");
        assert!(last.truncated);
        // Completed without interruption: the whole text, ended at the synthesizer's time.
        c.request_reasoning("test", 4000 * MS, &mut out);
        c.on_text(&[result("Seven eight.", 2, true)], 4000 * MS, &mut out);
        c.tick(4000 * MS, false, &mut out);
        c.on_progress(2, 12, 5000 * MS, ProgressReason::Completed);
        out.clear();
        c.begin(4800 * MS, &mut out);
        assert!(out.is_empty());
        c.begin(5200 * MS, &mut out);
        assert!(matches!(&out[0], Action::Caption(cap)
            if cap.text == "Seven eight." && cap.end == 5000 * MS && !cap.truncated));
    }

    #[test]
    fn a_live_utterance_ends_when_its_whole_text_was_reported_played() {
        // Live: speechsynth reports each phrase as it plays, but "completed" only when the next
        // utterance starts. The filler's one phrase covers its whole text: it has ended, and
        // the answer that came meanwhile is spoken at the next tick.
        let mut c = Conversation::new(ConversationConfig {
            filler_after: 1000 * MS,
            ..ConversationConfig::default()
        });
        let mut out = Vec::new();
        c.request_reasoning("test", 0, &mut out);
        c.tick(1000 * MS, false, &mut out);
        let filler = out
            .iter()
            .find_map(|a| match a {
                Action::Speak {
                    utterance_id, text, ..
                } => Some((*utterance_id, text.clone())),
                _ => None,
            })
            .expect("a filler");
        c.on_progress(
            filler.0,
            filler.1.len() as u64,
            1700 * MS,
            ProgressReason::Phrase,
        );
        c.on_text(&[result("Paris.", 1, true)], 1800 * MS, &mut out);
        assert!(!c.agent_speaking(1800 * MS));
        out.clear();
        c.begin(1800 * MS, &mut out);
        c.tick(1800 * MS, false, &mut out);
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::Speak { text, .. } if text == "Paris.")),
            "{out:?}"
        );
        // A phrase that leaves text unheard does not end the utterance.
        let answer = c.current_utterance().expect("the answer plays");
        c.on_progress(answer, 3, 2500 * MS, ProgressReason::Phrase);
        assert!(c.agent_speaking(2600 * MS));
    }

    #[test]
    fn barge_in_yields_and_estimates_without_progress() {
        let mut c = Conversation::new(ConversationConfig {
            speaking_rate: 10.0,
            ..ConversationConfig::default()
        });
        let mut out = Vec::new();
        c.request_reasoning("test", 0, &mut out);
        c.on_text(
            &[result("abcdefghijklmnopqrstuvwxyz", 1, true)],
            0,
            &mut out,
        );
        c.tick(0, false, &mut out);
        out.clear();
        c.barge_in(900 * MS, "user", 1000 * MS, &mut out);
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Yield {
                utterance_id: Some(1),
                ..
            }
        )));
        let last = c.record().last().unwrap();
        assert_eq!(last.text, "abcdefghij", "10 chars/s for 1 s");
        assert!(!c.agent_speaking(1000 * MS));
    }

    #[test]
    fn a_growing_answer_is_prepared_partial_then_whole() {
        let mut c = asked_hi();
        let mut out = Vec::new();
        // The user speaks again while the answer streams in.
        c.on_text(&[result("Ask Dr", 1, false)], 2 * MS, &mut out);
        c.tick(2 * MS, true, &mut out);
        c.on_text(&[result(". Smith.", 1, false)], 3 * MS, &mut out);
        c.tick(3 * MS, true, &mut out);
        c.on_text(&[result("Ask Dr. Smith.", 1, true)], 4 * MS, &mut out);
        c.tick(4 * MS, true, &mut out);
        c.tick(5 * MS, true, &mut out);
        let prepared: Vec<(&str, bool)> = out
            .iter()
            .map(|action| match action {
                Action::Prepare { text, partial, .. } => (text.as_str(), *partial),
                other => panic!("only prepares while the user speaks: {other:?}"),
            })
            .collect();
        assert_eq!(
            prepared,
            [
                ("Ask Dr", true),
                ("Ask Dr. Smith.", true),
                // The final result adds no text but makes it whole: its last sentence too.
                ("Ask Dr. Smith.", false)
            ]
        );
    }

    #[test]
    fn the_rest_of_an_interrupted_answer_is_not_said() {
        let mut c = Conversation::new(ConversationConfig {
            filler_after: 200 * MS,
            filler_text: "One moment.".into(),
            ..ConversationConfig::default()
        });
        let mut out = Vec::new();
        c.request_reasoning("test", 0, &mut out);
        c.on_text(&[result("The museum opens ", 1, false)], 0, &mut out);
        c.tick(0, false, &mut out);
        c.barge_in(900 * MS, "user", 1000 * MS, &mut out);
        // The rest of answer 1 was on its way when the user took the floor.
        c.on_text(
            &[result("at ten on Sundays.", 1, true)],
            1200 * MS,
            &mut out,
        );
        out.clear();
        c.tick(1200 * MS, true, &mut out);
        c.turn_ended("smart-turn", 2000 * MS, Some(0.9), 2300 * MS, &mut out);
        c.tick(2300 * MS, false, &mut out);
        let said: Vec<&str> = out
            .iter()
            .filter_map(|a| match a {
                Action::Speak { text, .. } | Action::SpeakMore { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            said,
            ["One moment."],
            "the filler, not the stale rest of answer 1"
        );
        // The new turn's own answer is said.
        c.transcribed(
            vec![caption("is there a cafe", 1000 * MS, 2000 * MS)],
            2400 * MS,
            &mut out,
        );
        c.on_progress(2, 11, 2900 * MS, ProgressReason::Completed);
        out.clear();
        c.begin(3000 * MS, &mut out);
        c.on_text(&[result("Yes, there is.", 2, true)], 3000 * MS, &mut out);
        c.tick(3000 * MS, false, &mut out);
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::Speak { text, .. } if text == "Yes, there is.")),
            "{out:?}"
        );
    }

    #[test]
    fn filler_when_reasoning_is_slow_and_record_is_bounded() {
        let mut c = Conversation::new(ConversationConfig {
            record_limit: 3,
            filler_after: 1000 * MS,
            ..ConversationConfig::default()
        });
        let mut out = Vec::new();
        for i in 0..5u64 {
            c.user_turn_ended(
                vec![caption(&format!("turn {i}"), i, i + 1)],
                "silence",
                i,
                None,
                i,
                &mut out,
            );
        }
        assert_eq!(c.record_len(), 3);
        assert_eq!(c.dropped(), 2);
        assert_eq!(c.record().next().unwrap().text, "turn 2");
        out.clear();
        c.tick(500 * MS, false, &mut out);
        assert!(out.is_empty());
        c.tick(1100 * MS, false, &mut out);
        assert!(matches!(&out[0], Action::Speak { text, .. } if text == "Okay, let me think."));
        out.clear();
        c.tick(5000 * MS, false, &mut out);
        assert!(
            out.iter().all(|a| !matches!(a, Action::Speak { .. })),
            "one filler only"
        );
    }

    #[test]
    fn the_filler_counts_from_the_end_of_turn_and_takes_the_phrases_in_turn() {
        let mut c = Conversation::new(ConversationConfig {
            filler_after: 200 * MS,
            filler_text: "A.| B. |".into(),
            ..ConversationConfig::default()
        });
        let mut out = Vec::new();
        let mut spoken = Vec::new();
        for turn in 0..3u64 {
            let end = turn * 10_000 * MS;
            // The decision; the transcript (and the request) are still being made.
            // Speech ended at `end`; the decision 100 ms later is too early for the filler,
            // which is due 200 ms after the speech.
            c.turn_ended("smart-turn", end, Some(0.9), end + 100 * MS, &mut out);
            c.tick(end + 100 * MS, false, &mut out);
            assert!(!out.iter().any(|a| matches!(a, Action::Speak { .. })));
            c.tick(end + 200 * MS, false, &mut out);
            for action in out.drain(..) {
                if let Action::Speak { text, .. } = action {
                    spoken.push(text);
                }
            }
            // The agent has finished the filler when the next turn comes.
            c.current = None;
        }
        assert_eq!(spoken, ["A.", "B.", "A."]);
        // An answer before the deadline: no filler.
        c.turn_ended("smart-turn", 40_000 * MS, None, 40_000 * MS, &mut out);
        c.request_reasoning("user-turn-ended", 40_100 * MS, &mut out);
        c.say("Paris.".into(), None, 40_150 * MS, &mut out);
        out.clear();
        c.current = None;
        c.tick(41_000 * MS, false, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn structured_results_speak_their_deltas_and_errors() {
        let mut c = Conversation::new(ConversationConfig::default());
        let mut out = Vec::new();
        c.request_reasoning("user-turn-ended", 0, &mut out);
        out.clear();
        let item = |request: u64, text: &str, delta: &str, last: bool, error: &str| TextItem {
            pad: "text_0".into(),
            flags: text_flags::LOOPBACK,
            offset: 0,
            text: text.into(),
            fields: vec![
                ("request_id".into(), request.to_string()),
                ("seq".into(), "0".into()),
                ("final".into(), last.to_string()),
                ("delta".into(), delta.into()),
                ("error".into(), error.into()),
            ],
        };
        c.on_text(
            &[
                item(1, "Paris", "Paris", false, "null"),
                item(1, "Paris is big.", " is big.", true, "null"),
            ],
            0,
            &mut out,
        );
        c.tick(0, false, &mut out);
        let spoken: Vec<&str> = out
            .iter()
            .filter_map(|a| match a {
                Action::Speak { text, .. } | Action::SpeakMore { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(spoken, vec!["Paris", " is big."]);
        out.clear();
        c.request_reasoning("user-turn-ended", 0, &mut out);
        out.clear();
        c.on_text(
            &[item(
                2,
                "",
                "",
                true,
                r#"{"kind":"unreachable","message":"I cannot reach my reasoning right now."}"#,
            )],
            0,
            &mut out,
        );
        c.begin(u64::MAX / 2, &mut out);
        out.clear();
        c.tick(u64::MAX / 2, false, &mut out);
        assert!(
            matches!(&out[0], Action::Speak { text, .. } if text == "I cannot reach my reasoning right now.")
        );
    }

    #[test]
    fn stale_results_are_dropped_and_finals_are_not_repeated() {
        let mut c = Conversation::new(ConversationConfig::default());
        let mut out = Vec::new();
        c.request_reasoning("a", 0, &mut out);
        c.request_reasoning("b", 0, &mut out);
        out.clear();
        c.on_text(&[result("old", 1, true)], 0, &mut out);
        c.on_text(
            &[result("It is ", 2, false), result("It is noon.", 2, true)],
            0,
            &mut out,
        );
        c.tick(0, false, &mut out);
        let spoken: Vec<&str> = out
            .iter()
            .filter_map(|a| match a {
                Action::Speak { text, .. } | Action::SpeakMore { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(spoken, vec!["It is ", "noon."]);
    }
}
