//! `interactionmodel`: the interaction model, run on every micro-turn.
//!
//! Takes the micro-turn packets of `microturnmux` and decides, once per micro-turn, when to
//! listen, speak, back-channel, yield and ask for reasoning. Three source pads:
//!
//! - `speech` (`text/x-raw, format=utf8`): text for the synthesizer, each utterance preceded by
//!   a *speak* event; *yield* and *backchannel* events (see `interaction_protocol::events`).
//!   Upstream *progress* events from the synthesizer keep the conversation record true to what
//!   the user heard.
//! - `transcript` (`text/x-raw, format=utf8`): one caption per buffer, `SPEAKER: text`
//!   (`user`, `agent`, or the aligner pad name of an extra participant such as `audio_1`),
//!   PTS = running time the speech started, duration = how long it lasted; an interrupted agent
//!   caption holds what was heard and ends with ` [interrupted]`.
//! - `reasoning` (`application/x-interaction-context`): one context package (JSON) per request;
//!   a barge-in sends the same *yield* event here too, so a `reasoningsidecar` stops generating
//!   an answer the user has just talked over.
//!
//! Every decision is also an element message on the bus (`interaction/…`, with
//! `running-time`), and `stats=true` adds one `interaction/turn-stats` message per micro-turn.
//!
//! Latency: a micro-turn is decided when its packet has been processed; outputs are stamped with
//! the window end, and the element reports one turn duration of latency (its processing budget).
//!
//! ```text
//! gst-launch-1.0 filesrc location=speech.wav ! wavparse ! audioconvert ! audioresample ! \
//!   microturnmux name=mux ! interactionmodel name=im \
//!   im.speech ! queue ! fakesink im.reasoning ! queue ! fakesink \
//!   im.transcript ! queue ! filesink location=captions.txt
//! ```
//! (`pipelines/interaction-transcribe.pipeline`)

use gst::glib;
use gst::prelude::*;

mod imp;

pub use imp::EXECUTION_PROVIDER;

glib::wrapper! {
    pub struct InteractionModel(ObjectSubclass<imp::InteractionModel>)
        @extends gst::Element, gst::Object;
}

/// The `turn-detection` property.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstInteractionTurnDetection")]
pub enum TurnDetectionMode {
    /// Smart Turn v3.2 judges each pause.
    #[default]
    #[enum_value(name = "Smart Turn v3.2 judges each pause", nick = "smart-turn")]
    SmartTurn = 0,
    /// A fixed silence ends the turn (the OpenAI server VAD / LiveKit baseline).
    #[enum_value(name = "A fixed silence (silence-ms) ends the turn", nick = "silence")]
    Silence = 1,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "interactionmodel",
        gst::Rank::NONE,
        InteractionModel::static_type(),
    )
}
