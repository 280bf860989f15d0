//! `speechsynth`: streaming, interruptible speech synthesis.
//!
//! Text (`text/x-raw, format=utf8`) comes in on the sink pad, in pieces of any size; audio
//! (`audio/x-raw`, `S16LE` or `F32LE`, mono, at the voice's rate: 22 050 Hz for the default
//! voice) leaves on the source pad.
//!
//! ```text
//! gst-launch-1.0 filesrc location=story.txt ! speechsynth ! wavenc ! filesink location=story.wav
//! ```
//! (`pipelines/speech-file-to-wav.pipeline`, run by `tests/pipeline.rs`.)
//!
//! ## How it works
//!
//! - The text is cut into phrases at sentence and clause boundaries as it arrives (abbreviations
//!   such as "Mr." or "e.g.", initials and numbers such as "3.50" or "1,000" do not cut). A
//!   worker thread synthesises the phrases one by one, so the first phrase plays while the
//!   next ones are synthesised. A source-pad task sends the audio in buffers of
//!   `buffer-duration`.
//! - Events (see `interaction_protocol::events`): *speak* starts an utterance; *yield* drops
//!   all queued text and audio and fades the output out within one buffer; *pause* (live only)
//!   fades out within one buffer too but keeps the utterance and its place, silence follows
//!   until a *resume* fades it back in where it stopped (nothing is dropped), a *yield* drops it
//!   (without a second fade), or the pause's `max-duration` passes; *backchannel* says
//!   a short acknowledgement when nothing else is playing; *prepare* names phrases (fillers,
//!   back-channels) to synthesise ahead while the worker is idle: up to 32 phrases of at most
//!   40 characters are kept per voice and rate, and a kept phrase starts without a synthesis
//!   delay (a repeated short phrase is kept the same way). Upstream, a *progress* event (also
//!   posted on the bus) says how many characters of the utterance were really played and at
//!   which running time: at the end of each phrase (`phrase`), at the end of the utterance
//!   (`completed`), and after a yield or a flush (`interrupted`).
//! - An utterance ends at the next *speak*, at a *yield* (dropped), or at EOS; a GAP event
//!   releases text that waits for a boundary. Text without a *speak* before it starts an
//!   utterance with the id after the previous one (0 for the first).
//! - Timestamps are running times and continuous. In live mode (`is-live=true`) the output
//!   follows the pipeline clock and silence fills the time between utterances; otherwise the
//!   output runs as fast as downstream takes it and starts at running time 0. A text buffer
//!   with a timestamp is not spoken before its running time (silence fills up to it).
//!
//! ## Latency
//!
//! Live: the element is a live source for the audio it outputs. It sends each buffer when its
//! start time comes on the clock and answers the latency query with one `buffer-duration`
//! (10 ms by default) as minimum and maximum. Synthesis time is not latency in GStreamer's
//! sense (audio is stamped when it plays); it is the *time to first audio*, measured by the
//! benchmark. Not live: it answers "not live, 0".
//!
//! ## Properties
//!
//! | property | default | meaning |
//! |---|---|---|
//! | `backend` | `piper` | `piper` (Piper VITS voice through ONNX Runtime) or `espeak` (espeak-ng alone) |
//! | `voice` | (none) | `piper`: path of the voice's `.onnx` (its `.onnx.json` beside it); none = the cached `en_US-joe-medium`. `espeak`: an espeak-ng voice name; none = `en-us` |
//! | `rate` | 1.0 | speaking rate, 1.0 = the voice's pace, 2.0 = twice as fast (0.25 – 4) |
//! | `volume` | 1.0 | linear gain on the output (0 – 10), applied at output (takes effect at once) |
//! | `sentence-silence` | 200 | milliseconds of silence after each sentence |
//! | `buffer-duration` | 10 | milliseconds of audio per output buffer (2 – 20); a yield stops within one |
//! | `fade-duration` | 5 | milliseconds of the fade-out on a yield (1 – 20, at most one buffer) |
//! | `is-live` | false | follow the clock and fill gaps with silence |
//! | `first-phrase-words` | 0 | when > 0, cut the first phrase of an utterance after this many words (sooner first audio, slightly flatter prosody) |
//! | `noise-scale` | -1 | Piper voice variation; -1 = the voice's default |
//! | `noise-w` | -1 | Piper duration variation; -1 = the voice's default |
//! | `threads` | 0 | ONNX Runtime intra-op threads for Piper; 0 = ONNX Runtime decides |
//!
//! `backend`, `voice`, `threads` and `is-live` take effect at the next start (READY →
//! PAUSED); `volume`, `buffer-duration` and `fade-duration` at the next buffer; the others at
//! the next phrase.

use gst::glib;
use gst::prelude::*;

mod imp;

/// Which synthesizer runs.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSpeechSynthBackend")]
pub enum Backend {
    /// A Piper VITS voice through ONNX Runtime, phonemes from espeak-ng.
    #[default]
    #[enum_value(name = "Piper: a VITS voice through ONNX Runtime", nick = "piper")]
    Piper = 0,
    /// espeak-ng alone.
    #[enum_value(name = "espeak-ng alone (robotic, tiny)", nick = "espeak")]
    Espeak = 1,
}

glib::wrapper! {
    /// The `speechsynth` element.
    pub struct SpeechSynth(ObjectSubclass<imp::SpeechSynth>) @extends gst::Element, gst::Object;
}

/// Registers `speechsynth` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Backend::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    // One line, so that scripts/check-plugins.sh finds the element name.
    let (rank, element_type) = (gst::Rank::NONE, SpeechSynth::static_type());
    gst::Element::register(Some(plugin), "speechsynth", rank, element_type)
}
