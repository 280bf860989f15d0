//! gst-interaction: the `interactionmodel` element, the interaction model run on every
//! micro-turn (see `README.md` of this crate for properties, pads, formats and latency).
//!
//! The logic is in plain structs, tested without a pipeline:
//! - [`package`]: model packages (manifest, checksums, what a kind needs);
//! - [`policy`]: the cascade's turn-taking state machine;
//! - [`conversation`]: the shared decisions, the bounded record and the context package;
//! - [`cascade`] and [`native`]: the two kinds behind the [`engine::Engine`] trait;
//! - [`models`], [`transcriber`], [`vision`], [`device`]: the models on ONNX Runtime.

use gst::glib;

pub mod cascade;
pub mod conversation;
pub mod device;
pub mod engine;
pub mod interactionmodel;
pub mod loader;
pub mod models;
pub mod native;
pub mod package;
pub mod policy;
pub mod stats;
pub mod transcriber;
pub mod vision;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    interactionmodel::register(plugin)
}

gst::plugin_define!(
    interaction,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
