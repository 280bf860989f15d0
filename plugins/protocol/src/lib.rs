//! The contracts between gst-interaction elements, defined once.
//!
//! Every plugin depends on this crate and none redefines what is here:
//!
//! - [`packet`]: the micro-turn packet (`application/x-microturn`) that `microturnmux` emits;
//! - [`events`]: the custom events (speak, yield, back-channel, progress) and bus messages.
//!
//! A pipeline author who writes an element that speaks these contracts needs only this crate
//! and its documentation.

pub mod context;
pub mod events;
pub mod packet;
