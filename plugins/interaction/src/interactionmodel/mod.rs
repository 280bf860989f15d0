//! `interactionmodel`: the interaction model, run on every micro-turn.
//!
//! Takes the micro-turn packets of `microturnmux` and decides, once per micro-turn, when to
//! listen, speak, back-channel, yield and ask for reasoning. Three source pads:
//!
//! - `speech` (`text/x-raw, format=utf8`): text for the synthesizer, each utterance preceded by
//!   a *speak* event; *pause* at the first user speech over the agent, then *resume* (a
//!   back-channel) or *yield* (an interruption, after `barge-in-ms`); *backchannel* events,
//!   and one *prepare* with the filler phrases at the start (see `interaction_protocol::events`).
//!   Upstream *progress* events from the synthesizer keep the conversation record true to what
//!   the user heard.
//! - `transcript` (`text/x-raw, format=utf8`): one caption per buffer, `SPEAKER: text`
//!   (`user`, `agent`, or the aligner pad name of an extra participant such as `audio_1`),
//!   PTS = running time the speech started, duration = how long it lasted; an interrupted agent
//!   caption holds what was heard and ends with ` [interrupted]`.
//! - `reasoning` (`application/x-interaction-context`): one context package (JSON) per request,
//!   with the conversation so far and the latest visual observation; a barge-in sends the same
//!   *yield* event here too, so a `reasoningsidecar` stops generating an answer the user has
//!   just talked over.
//!
//! **Visual observations** (cascade kind, when the package has the `vision` files, as the
//! default package does): when the packets carry video (`microturnmux`'s video pad), the
//! newest frame is classified by EfficientNet-Lite0 (ImageNet-1k) at most once every
//! `vision-interval-ms` of running time (default 1000; 0 ignores video), on a worker thread.
//! The `vision-top-k` best classes (default 3) with their probabilities and the frame's
//! running time are the observation: context packages carry it in `observations` (one entry per
//! class, `source` `camera`), and an `interaction/observation` message announces each one
//! (`frame-time`, `label`, `probability`, `labels`, `inference-time`). A non-live pipeline
//! waits for the classification in the micro-turn of its frame (the same output on every run);
//! a live one never waits. Any frame size works (it is resized to 224 × 224); to keep packets
//! small, ask the aligner for a modest size (`application/x-microturn,video-width=320,
//! video-height=240`).
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
//!
//! With a camera (here a still picture at 5 frames per second,
//! `pipelines/interaction-vision.pipeline`):
//!
//! ```text
//! gst-launch-1.0 filesrc location=question.wav ! wavparse ! audioconvert ! audioresample ! \
//!   mux.audio filesrc location=photo.png ! pngdec ! imagefreeze num-buffers=20 ! \
//!   video/x-raw,framerate=5/1 ! videoconvert ! videoscale ! mux.video \
//!   microturnmux name=mux ! application/x-microturn,video-width=320,video-height=240 ! \
//!   interactionmodel name=im im.speech ! queue ! fakesink im.transcript ! queue ! fakesink \
//!   im.reasoning ! queue ! filesink location=contexts.json
//! ```

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
