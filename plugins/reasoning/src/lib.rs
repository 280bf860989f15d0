//! GStreamer plugin `reasoning`: the `reasoningsidecar` element, the background model of a
//! gst-interaction pipeline (see `README.md` and DESIGN §5).
//!
//! The modules below the element are plain Rust and usable on their own: [`local`] (the GGUF
//! runtime), [`backend`] (one request on a backend), [`chat`] (context package to chat
//! messages), [`sse`] (server-sent events) and [`runtime`] (the plugin-wide async runtime).

use gst::glib;

pub mod backend;
pub mod chat;
pub mod local;
pub mod reasoningsidecar;
pub mod runtime;
pub mod sse;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    reasoningsidecar::register(plugin)
}

gst::plugin_define!(
    reasoning,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
