//! The event vocabulary between gst-interaction elements, and the names of their bus messages.
//!
//! Seven custom events cross element boundaries. Each is a plain `GstEvent` carrying a
//! `GstStructure` with the name and fields below, so an element written in any language (C,
//! Python, Rust) can send or read them; the Rust types here build and parse them.
//!
//! | event | direction | GStreamer event type | structure name | fields |
//! |---|---|---|---|---|
//! | [`Speak`] | downstream, on a text (speech) pad | `GST_EVENT_CUSTOM_DOWNSTREAM` (serialized) | `interaction/speak` | `utterance-id` (`guint64`) |
//! | [`Yield`] | downstream | `GST_EVENT_CUSTOM_DOWNSTREAM` (serialized; `…_OOB` accepted) | `interaction/yield` | `utterance-id` (`guint64`, optional), `running-time` (`guint64` ns, optional) |
//! | [`Backchannel`] | downstream | `GST_EVENT_CUSTOM_DOWNSTREAM` (serialized) | `interaction/backchannel` | `text` (`gchararray`) |
//! | [`Pause`] | downstream | `GST_EVENT_CUSTOM_DOWNSTREAM` (serialized; `…_OOB` accepted) | `interaction/pause` | `utterance-id` (`guint64`, optional), `max-duration` (`guint64` ns, optional) |
//! | [`Resume`] | downstream | `GST_EVENT_CUSTOM_DOWNSTREAM` (serialized; `…_OOB` accepted) | `interaction/resume` | `utterance-id` (`guint64`, optional) |
//! | [`Prepare`] | downstream | `GST_EVENT_CUSTOM_DOWNSTREAM` (serialized) | `interaction/prepare` | `phrases` (`gchararray`: one phrase per line), `partial` (`gboolean`, optional, default false) |
//! | [`Progress`] | upstream | `GST_EVENT_CUSTOM_UPSTREAM` | `interaction/progress` | `utterance-id` (`guint64`), `characters` (`guint64`), `bytes` (`guint64`), `running-time` (`guint64` ns), `reason` (`gchararray`: `phrase`, `completed` or `interrupted`) |
//!
//! ## What each event means
//!
//! - **speak**: an utterance begins. The text buffers that follow on the same pad, up to the
//!   next *speak* or *yield*, are that utterance. Character offsets in *progress* count from
//!   the first character of the first text buffer after the *speak*. Text that arrives without
//!   a *speak* before it belongs to an implicit utterance (see the receiving element's docs).
//! - **yield**: stop speaking now. The receiver drops all queued text and audio, fades out
//!   within one output buffer, and answers with a *progress* event whose reason is
//!   `interrupted`. `running-time`, when present, is the running time at which the output must
//!   stop; a time already in the past (or no field) means "as soon as possible".
//!   `utterance-id`, when present, names the utterance to stop; a yield naming an utterance
//!   that is no longer playing or queued does nothing.
//! - **pause**: the other party may be interrupting: go silent now (fade out within one
//!   buffer) but keep the utterance, its queued text and audio and its position. A *resume*
//!   continues it from there (the user only said "mm-hm"), a *yield* drops it (the user took
//!   the floor). `max-duration`, when present, bounds the pause: the receiver resumes by itself
//!   after that long, so a lost *resume* never silences it for good. `utterance-id` as for
//!   *yield*. A receiver that is not live may ignore it.
//! - **resume**: end a *pause*; the output fades back in where it stopped.
//! - **backchannel**: a short acknowledgement (`text`, e.g. "mm-hm") to say while the other
//!   party holds the floor. A synthesizer that is already speaking ignores it.
//! - **prepare**: phrases the sender may soon ask for at once (its fillers and back-channels,
//!   or the whole sentences of an answer that arrived while the user was speaking).
//!   A synthesizer may synthesise them ahead, while it is idle, and keep their audio, so that
//!   they start without a synthesis delay when they come. It changes nothing else: the phrases
//!   are spoken only when they arrive as text (or as a *backchannel*). An interaction model
//!   sends its fillers once, after its first segment, and an answer's text while it holds
//!   that answer back for the user. With `partial` true, the text is still arriving: its last
//!   line may stop mid-sentence, so the receiver prepares only the phrases it knows to be
//!   complete (the sender may send the grown text again; phrases already prepared cost
//!   nothing). Without it every line is a whole phrase.
//! - **progress**: how much of an utterance the listener has really heard. `characters` is the
//!   number of Unicode scalar values (Rust `char`s) of the utterance text played so far,
//!   `bytes` the same position as a UTF-8 byte offset (always on a character boundary), and
//!   `running-time` the running time at which that much had been played. `reason` says why
//!   it was sent: `phrase` (a phrase finished playing), `completed` (the whole utterance was
//!   played) or `interrupted` (a yield or a flush cut it; the offsets say what was heard).
//!
//! Send a downstream event with `pad.push_event(Speak { utterance_id: 7 }.to_event())` (or
//! `gst_pad_push_event` in C with `gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM,
//! gst_structure_new ("interaction/speak", "utterance-id", G_TYPE_UINT64, 7, NULL))`), and
//! recognise one in a pad's event function with [`Speak::parse`] and friends.
//!
//! From the command line, `gst-launch-1.0` cannot send custom events; applications send them
//! with `gst_element_send_event` on the element upstream of the synthesizer, or push them from
//! a pad probe.
//!
//! ## Bus messages
//!
//! Elements also post element messages (`GST_MESSAGE_ELEMENT`) for applications and for the
//! benchmark. Their structure names are the constants in [`messages`]; every one carries a
//! `running-time` field (`guint64` ns). A [`Progress`] is also posted on the bus as an
//! element message with the same structure as the event.

use gst::prelude::*;

/// Structure name of the *pause* event.
pub const PAUSE: &str = "interaction/pause";
/// Structure name of the *resume* event.
pub const RESUME: &str = "interaction/resume";
/// Structure name of the *prepare* event.
pub const PREPARE: &str = "interaction/prepare";
/// Structure name of the *speak* event.
pub const SPEAK: &str = "interaction/speak";
/// Structure name of the *yield* event.
pub const YIELD: &str = "interaction/yield";
/// Structure name of the *backchannel* event.
pub const BACKCHANNEL: &str = "interaction/backchannel";
/// Structure name of the *progress* event (and of its bus message).
pub const PROGRESS: &str = "interaction/progress";

const UTTERANCE_ID: &str = "utterance-id";
const RUNNING_TIME: &str = "running-time";
const MAX_DURATION: &str = "max-duration";

/// Structure names of the element messages posted on the bus. Each carries `running-time`
/// (`guint64` nanoseconds) and the fields listed beside it.
pub mod messages {
    /// The interaction model decided the user's turn has ended.
    pub const USER_TURN_ENDED: &str = "interaction/user-turn-ended";
    /// The agent started speaking (`utterance-id`). `speechsynth` posts it when the first
    /// audio sample of an utterance leaves its source pad.
    pub const AGENT_STARTED_SPEAKING: &str = "interaction/agent-started-speaking";
    /// The user started speaking while the agent was speaking.
    pub const BARGE_IN: &str = "interaction/barge-in";
    /// The agent stopped speaking because of a yield (`utterance-id`, `characters`).
    /// `speechsynth` posts it when its faded-out output has ended.
    pub const AGENT_YIELDED: &str = "interaction/agent-yielded";
    /// The agent went silent because the user started speaking over it (`utterance-id`,
    /// `speaker`): a *pause*, which the next decision turns into a yield or a resume.
    pub const AGENT_PAUSED: &str = "interaction/agent-paused";
    /// The agent's paused utterance continues: the user's speech was a back-channel
    /// (`utterance-id`).
    pub const AGENT_RESUMED: &str = "interaction/agent-resumed";
    /// The agent produced a back-channel (`text`).
    pub const BACKCHANNEL: &str = "interaction/backchannel";
    /// The interaction model asked the reasoning sidecar for help (`request-id`).
    pub const REASONING_REQUESTED: &str = "interaction/reasoning-requested";
    /// A reasoning result was woven into the conversation (`request-id`).
    pub const RESULT_USED: &str = "interaction/result-used";
    /// Per-micro-turn statistics (`turn-index`, `step-latency`, `speech-probability`).
    pub const TURN_STATS: &str = "interaction/turn-stats";
}

/// A bus message structure with `name` and its `running-time` field; add the other fields
/// with `structure.set(…)` before posting it with `gst::message::Element::new`.
pub fn message_structure(name: &str, running_time: gst::ClockTime) -> gst::Structure {
    gst::Structure::builder(name)
        .field(RUNNING_TIME, running_time.nseconds())
        .build()
}

/// The structure of `event` if it is named `name`.
fn named<'a>(event: &'a gst::EventRef, name: &str) -> Option<&'a gst::StructureRef> {
    event
        .structure()
        .filter(|structure| structure.name() == name)
}

fn optional_time(structure: &gst::StructureRef, field: &str) -> Option<gst::ClockTime> {
    structure
        .get_optional::<u64>(field)
        .ok()
        .flatten()
        .map(gst::ClockTime::from_nseconds)
}

/// *speak*: an utterance with this id begins; the text that follows belongs to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speak {
    pub utterance_id: u64,
}

impl Speak {
    /// A serialized downstream event.
    pub fn to_event(&self) -> gst::Event {
        gst::event::CustomDownstream::new(
            gst::Structure::builder(SPEAK)
                .field(UTTERANCE_ID, self.utterance_id)
                .build(),
        )
    }

    /// `Some` if `event` is a *speak* event with a valid `utterance-id`.
    pub fn parse(event: &gst::EventRef) -> Option<Self> {
        let structure = named(event, SPEAK)?;
        Some(Self {
            utterance_id: structure.get::<u64>(UTTERANCE_ID).ok()?,
        })
    }
}

/// *yield*: stop speaking, drop everything queued, fade out within one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Yield {
    /// The utterance to stop; `None` stops whatever is playing.
    pub utterance_id: Option<u64>,
    /// The running time at which the output must stop; `None` means as soon as possible.
    pub running_time: Option<gst::ClockTime>,
}

impl Yield {
    /// A serialized downstream event.
    pub fn to_event(&self) -> gst::Event {
        let mut structure = gst::Structure::new_empty(YIELD);
        if let Some(id) = self.utterance_id {
            structure.set(UTTERANCE_ID, id);
        }
        if let Some(time) = self.running_time {
            structure.set(RUNNING_TIME, time.nseconds());
        }
        gst::event::CustomDownstream::new(structure)
    }

    /// `Some` if `event` is a *yield* event (serialized or out-of-band).
    pub fn parse(event: &gst::EventRef) -> Option<Self> {
        let structure = named(event, YIELD)?;
        Some(Self {
            utterance_id: structure.get_optional::<u64>(UTTERANCE_ID).ok().flatten(),
            running_time: optional_time(structure, RUNNING_TIME),
        })
    }
}

/// *pause*: go silent, keep everything, until a *resume* or a *yield* (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pause {
    pub utterance_id: Option<u64>,
    /// Resume by itself after this long.
    pub max_duration: Option<gst::ClockTime>,
}

impl Pause {
    /// A serialized downstream event.
    pub fn to_event(&self) -> gst::Event {
        let mut structure = gst::Structure::new_empty(PAUSE);
        if let Some(id) = self.utterance_id {
            structure.set(UTTERANCE_ID, id);
        }
        if let Some(duration) = self.max_duration {
            structure.set(MAX_DURATION, duration.nseconds());
        }
        gst::event::CustomDownstream::new(structure)
    }

    /// `Some` if `event` is a *pause* event (serialized or out-of-band).
    pub fn parse(event: &gst::EventRef) -> Option<Self> {
        let structure = named(event, PAUSE)?;
        Some(Self {
            utterance_id: structure.get_optional::<u64>(UTTERANCE_ID).ok().flatten(),
            max_duration: optional_time(structure, MAX_DURATION),
        })
    }
}

/// *resume*: continue a paused utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resume {
    pub utterance_id: Option<u64>,
}

impl Resume {
    /// A serialized downstream event.
    pub fn to_event(&self) -> gst::Event {
        let mut structure = gst::Structure::new_empty(RESUME);
        if let Some(id) = self.utterance_id {
            structure.set(UTTERANCE_ID, id);
        }
        gst::event::CustomDownstream::new(structure)
    }

    /// `Some` if `event` is a *resume* event (serialized or out-of-band).
    pub fn parse(event: &gst::EventRef) -> Option<Self> {
        let structure = named(event, RESUME)?;
        Some(Self {
            utterance_id: structure.get_optional::<u64>(UTTERANCE_ID).ok().flatten(),
        })
    }
}

/// *backchannel*: a short acknowledgement to say while the other party speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backchannel {
    pub text: String,
}

impl Backchannel {
    /// A serialized downstream event.
    pub fn to_event(&self) -> gst::Event {
        gst::event::CustomDownstream::new(
            gst::Structure::builder(BACKCHANNEL)
                .field("text", self.text.as_str())
                .build(),
        )
    }

    /// `Some` if `event` is a *backchannel* event with a `text` field.
    pub fn parse(event: &gst::EventRef) -> Option<Self> {
        let structure = named(event, BACKCHANNEL)?;
        Some(Self {
            text: structure.get::<String>("text").ok()?,
        })
    }
}

/// *prepare*: phrases to synthesise ahead (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prepare {
    pub phrases: Vec<String>,
    /// The last phrase may be unfinished: text still arriving (see the module docs).
    pub partial: bool,
}

impl Prepare {
    /// A serialized downstream event; phrases are trimmed, empty ones and line breaks inside a
    /// phrase are dropped.
    pub fn to_event(&self) -> gst::Event {
        let lines: Vec<String> = self
            .phrases
            .iter()
            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|p| !p.is_empty())
            .collect();
        gst::event::CustomDownstream::new(
            gst::Structure::builder(PREPARE)
                .field("phrases", lines.join("\n"))
                .field("partial", self.partial)
                .build(),
        )
    }

    /// `Some` if `event` is a *prepare* event with a `phrases` field.
    pub fn parse(event: &gst::EventRef) -> Option<Self> {
        let structure = named(event, PREPARE)?;
        let text = structure.get::<String>("phrases").ok()?;
        Some(Self {
            phrases: text
                .lines()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            partial: structure.get::<bool>("partial").unwrap_or(false),
        })
    }
}

/// Why a [`Progress`] was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressReason {
    /// A phrase finished playing; more of the utterance may follow.
    Phrase,
    /// The whole utterance was played.
    Completed,
    /// A yield or a flush cut the utterance.
    Interrupted,
}

impl ProgressReason {
    /// The string carried in the `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phrase => "phrase",
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
        }
    }

    fn from_str(text: &str) -> Option<Self> {
        match text {
            "phrase" => Some(Self::Phrase),
            "completed" => Some(Self::Completed),
            "interrupted" => Some(Self::Interrupted),
            _ => None,
        }
    }
}

/// *progress*: how much of an utterance has really been played, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub utterance_id: u64,
    /// Characters (Unicode scalar values) of the utterance text played.
    pub characters: u64,
    /// The same position as a UTF-8 byte offset into the utterance text.
    pub bytes: u64,
    /// The running time at which that much had been played.
    pub running_time: gst::ClockTime,
    pub reason: ProgressReason,
}

impl Progress {
    /// The structure carried by the event and by the bus message.
    pub fn to_structure(&self) -> gst::Structure {
        gst::Structure::builder(PROGRESS)
            .field(UTTERANCE_ID, self.utterance_id)
            .field("characters", self.characters)
            .field("bytes", self.bytes)
            .field(RUNNING_TIME, self.running_time.nseconds())
            .field("reason", self.reason.as_str())
            .build()
    }

    /// An upstream event.
    pub fn to_event(&self) -> gst::Event {
        gst::event::CustomUpstream::new(self.to_structure())
    }

    /// An element message from `source`, for the bus.
    pub fn to_message(&self, source: &impl IsA<gst::Object>) -> gst::Message {
        gst::message::Element::builder(self.to_structure())
            .src(source)
            .build()
    }

    /// `Some` if `structure` is a complete *progress* structure.
    pub fn from_structure(structure: &gst::StructureRef) -> Option<Self> {
        if structure.name() != PROGRESS {
            return None;
        }
        Some(Self {
            utterance_id: structure.get::<u64>(UTTERANCE_ID).ok()?,
            characters: structure.get::<u64>("characters").ok()?,
            bytes: structure.get::<u64>("bytes").ok()?,
            running_time: gst::ClockTime::from_nseconds(structure.get::<u64>(RUNNING_TIME).ok()?),
            reason: ProgressReason::from_str(structure.get::<&str>("reason").ok()?)?,
        })
    }

    /// `Some` if `event` is a complete *progress* event.
    pub fn parse(event: &gst::EventRef) -> Option<Self> {
        Self::from_structure(event.structure()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() {
        gst::init().expect("GStreamer");
    }

    #[test]
    fn speak_round_trip_and_type() {
        init();
        let event = Speak { utterance_id: 42 }.to_event();
        assert_eq!(event.type_(), gst::EventType::CustomDownstream);
        assert!(event.is_serialized());
        assert_eq!(Speak::parse(&event), Some(Speak { utterance_id: 42 }));
        assert_eq!(Yield::parse(&event), None);
    }

    #[test]
    fn pause_and_resume_round_trip() {
        init();
        let pause = Pause {
            utterance_id: Some(4),
            max_duration: Some(gst::ClockTime::from_mseconds(1500)),
        };
        let event = pause.to_event();
        assert!(event.is_serialized());
        assert_eq!(Pause::parse(&event), Some(pause));
        assert_eq!(Resume::parse(&event), None);
        assert_eq!(Yield::parse(&event), None);
        assert_eq!(
            Pause::parse(&Pause::default().to_event()),
            Some(Pause::default())
        );
        let resume = Resume {
            utterance_id: Some(4),
        };
        assert_eq!(Resume::parse(&resume.to_event()), Some(resume));
        let oob =
            gst::event::CustomDownstreamOob::new(resume.to_event().structure().unwrap().to_owned());
        assert_eq!(Resume::parse(&oob), Some(resume));
    }

    #[test]
    fn prepare_round_trip_drops_empty_phrases() {
        init();
        let event = Prepare {
            phrases: vec!["One moment.".into(), "  ".into(), "Let me\nthink.".into()],
            partial: false,
        }
        .to_event();
        assert_eq!(event.type_(), gst::EventType::CustomDownstream);
        assert!(event.is_serialized());
        assert_eq!(
            Prepare::parse(&event).unwrap(),
            Prepare {
                phrases: vec!["One moment.".to_owned(), "Let me think.".to_owned()],
                partial: false,
            }
        );
        let partial = Prepare {
            phrases: vec!["It opens at ten. Dr".into()],
            partial: true,
        };
        assert_eq!(Prepare::parse(&partial.to_event()), Some(partial));
        // A sender that does not know the field: whole phrases.
        let bare = gst::event::CustomDownstream::new(
            gst::Structure::builder(PREPARE)
                .field("phrases", "Hello.")
                .build(),
        );
        assert!(!Prepare::parse(&bare).unwrap().partial);
        assert_eq!(Speak::parse(&event), None);
    }

    #[test]
    fn yield_with_and_without_fields() {
        init();
        let bare = Yield::default();
        assert_eq!(Yield::parse(&bare.to_event()), Some(bare));
        let full = Yield {
            utterance_id: Some(3),
            running_time: Some(gst::ClockTime::from_mseconds(1250)),
        };
        let event = full.to_event();
        assert_eq!(Yield::parse(&event), Some(full));
        // The same structure sent out of band is recognised too.
        let oob = gst::event::CustomDownstreamOob::new(event.structure().unwrap().to_owned());
        assert_eq!(Yield::parse(&oob), Some(full));
    }

    #[test]
    fn backchannel_round_trip() {
        init();
        let event = Backchannel {
            text: "mm-hm".into(),
        }
        .to_event();
        assert_eq!(Backchannel::parse(&event).unwrap().text, "mm-hm");
    }

    #[test]
    fn progress_round_trip_upstream_and_as_message() {
        init();
        let progress = Progress {
            utterance_id: 9,
            characters: 17,
            bytes: 19,
            running_time: gst::ClockTime::from_mseconds(830),
            reason: ProgressReason::Interrupted,
        };
        let event = progress.to_event();
        assert_eq!(event.type_(), gst::EventType::CustomUpstream);
        assert!(event.is_upstream());
        assert_eq!(Progress::parse(&event), Some(progress));
        let structure = progress.to_structure();
        assert_eq!(structure.get::<&str>("reason").unwrap(), "interrupted");
        assert_eq!(Progress::from_structure(&structure), Some(progress));
    }

    #[test]
    fn malformed_events_are_not_recognised() {
        init();
        let wrong_type = gst::event::CustomDownstream::new(
            gst::Structure::builder(SPEAK)
                .field(UTTERANCE_ID, "seven")
                .build(),
        );
        assert_eq!(Speak::parse(&wrong_type), None);
        let missing = gst::event::CustomUpstream::new(
            gst::Structure::builder(PROGRESS)
                .field(UTTERANCE_ID, 1u64)
                .build(),
        );
        assert_eq!(Progress::parse(&missing), None);
        let message = message_structure(messages::BARGE_IN, gst::ClockTime::from_seconds(2));
        assert_eq!(message.get::<u64>("running-time").unwrap(), 2_000_000_000);
    }
}
