//! Signal and vision front-ends shared by every model in gst-interaction.
//!
//! This crate has no GStreamer, ONNX Runtime or async dependency. Every stateful kernel shares
//! one streaming shape (feed a chunk, take what is ready, reset) and is tested to give the
//! same output streamed as offline.
