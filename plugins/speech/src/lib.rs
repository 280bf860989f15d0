//! The `speech` plugin: `speechsynth`, streaming and interruptible speech synthesis.
//!
//! The element's documentation is in [`speechsynth`]; the plain logic it is made of (phrase
//! splitting, phonemes, the voices) lives in [`text`], [`phonemes`] and [`voice`] and is tested
//! without a pipeline.

use gst::glib;

pub mod phonemes;
pub mod speechsynth;
pub mod text;
pub mod voice;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    speechsynth::register(plugin)
}

gst::plugin_define!(
    speech,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
