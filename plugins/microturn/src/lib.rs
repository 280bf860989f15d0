//! GStreamer plugin `microturn`: the micro-turn aligner `microturnmux`.
//!
//! The packet it emits is defined in `interaction_protocol::packet`; the aligner's logic
//! (sample accounting, video and text windows) is the plain [`aligner`] module.

use gst::glib;

pub mod aligner;
mod microturnmux;

pub use microturnmux::{MicroturnMux, MicroturnPad, VideoPolicy};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    microturnmux::register(plugin)
}

gst::plugin_define!(
    microturn,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
