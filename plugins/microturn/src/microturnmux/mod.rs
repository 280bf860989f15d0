//! `microturnmux`: the micro-turn aligner.
//!
//! Cuts every input on the pipeline clock into time-aligned micro-turns and pushes exactly one
//! `application/x-microturn` packet per turn (see [`interaction_protocol::packet`]). Turn *k*
//! covers running time `[k·d, (k+1)·d)` with `d = turn-duration`.
//!
//! ```text
//! gst-launch-1.0 audiotestsrc is-live=true ! audioconvert ! audioresample \
//!     ! microturnmux name=mux ! fakesink
//! ```
//! (the same line is `pipelines/microturn-live.pipeline`, which a test runs).
//!
//! Pads: `audio` (always), `audio_%u`, `video`, `text_%u` (request). A text pad with
//! `loopback=true` (a pad property) never holds back the end of stream; in a live pipeline no
//! text pad does once every audio and video input has ended.
//!
//! Latency: one turn duration plus the inherited `latency` property, on top of the upstream
//! latency. See the crate README for every property and the packet layout.

use gst::glib;
use gst::prelude::*;

mod imp;
mod pad;

glib::wrapper! {
    /// The aligner element.
    pub struct MicroturnMux(ObjectSubclass<imp::MicroturnMux>)
        @extends gst_base::Aggregator, gst::Element, gst::Object,
        @implements gst::ChildProxy;
}

glib::wrapper! {
    /// A sink pad of the aligner, with the `loopback` property.
    pub struct MicroturnPad(ObjectSubclass<pad::MicroturnPad>)
        @extends gst_base::AggregatorPad, gst::Pad, gst::Object;
}

/// Which frames of a turn's window go into the packet (`video-policy`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstMicroturnVideoPolicy")]
pub enum VideoPolicy {
    /// Only the newest frame whose timestamp falls in the window.
    #[default]
    #[enum_value(name = "Latest: the newest frame of the window", nick = "latest")]
    Latest = 0,
    /// Every frame whose timestamp falls in the window.
    #[enum_value(name = "All: every frame of the window", nick = "all")]
    All = 1,
}

/// Registers `microturnmux`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    MicroturnPad::static_type();
    let element_type = MicroturnMux::static_type();
    gst::Element::register(Some(plugin), "microturnmux", gst::Rank::NONE, element_type)
}
