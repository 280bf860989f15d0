//! Signal and vision front-ends shared by every model in gst-interaction.
//!
//! This crate has no GStreamer, ONNX Runtime or async dependency. Every stateful kernel shares
//! one streaming shape, [`StreamingKernel`]: feed a chunk, receive the frames that became ready
//! through a sink, reset. Each is tested to give the same output streamed as offline.
//!
//! | Kernel | Input | Output |
//! |---|---|---|
//! | [`whisper_log_mel`], [`WhisperLogMel`] | 16 kHz mono | Whisper features `[80][frames]` |
//! | [`smart_turn_features`] | a turn's audio, 16 kHz | Smart Turn v3.2 input `[80][800]` |
//! | [`SmartTurnWindow`] | 16 kHz stream | the same, for the last 8 s, on demand |
//! | [`WhisperLogMelStream`] | 16 kHz stream | raw log10 mel frames (80 each), or [`MelRows`] |
//! | [`DmelStream`], [`dmel()`] | 16 kHz stream | dMel levels (80 per 12.5 ms frame) |
//! | [`SileroFramer`] | 16 kHz stream | Silero VAD inputs (64 context + 512) |
//! | [`Patchify`] | RGB frame, sides multiples of 40 | 40×40 patches, row-major, normalised |
//! | [`EfficientNetInput`] | RGB frame, any size | EfficientNet-Lite0 input `[3][224][224]` |
//!
//! Bad input never panics: NaN or infinite samples, samples beyond ±[`MAX_SAMPLE_MAGNITUDE`]
//! (1e9), a wrong sample rate, an output buffer or a frame of the wrong size give a
//! [`KernelError`] and leave the kernel as it was; an empty chunk is valid and emits nothing.

mod batch;
mod centered;
pub mod dmel;
mod error;
mod framer;
pub mod silero;
pub mod spectrum;
pub mod vision;
pub mod whisper;

pub use dmel::{DmelConfig, DmelFraming, DmelStream, dmel};
pub use error::{KernelError, MAX_SAMPLE_MAGNITUDE};
pub use silero::SileroFramer;
pub use spectrum::{
    FrameSpectrum, MelFilterbank, SpectrumKind, has_avx2, log10_floor_in_place, periodic_hann,
    real_fft_flops,
};
pub use vision::{EFFICIENTNET_SIDE, EfficientNetInput, Patchify, RgbFrame};
pub use whisper::{
    MelRows, SMART_TURN_FRAMES, SMART_TURN_SAMPLES, SmartTurnWindow, WHISPER_HOP, WHISPER_N_FFT,
    WHISPER_N_MELS, WHISPER_SAMPLE_RATE, WHISPER_WINDOW_FRAMES, WhisperLogMel, WhisperLogMelStream,
    smart_turn_features, whisper_log_mel, whisper_normalize,
};

/// The streaming shape every stateful kernel shares (after moshi's `StreamingModule`).
///
/// `push` takes any number of samples (zero included) and calls `sink` once per output frame
/// that became complete, in order, with `frame_len()` values. It returns how many frames it
/// emitted. Splitting the same samples into different chunks gives the same frames. After
/// construction no call allocates.
pub trait StreamingKernel {
    /// One output value (`f32` features, `u8` dMel levels).
    type Item: Copy;

    /// Values per emitted frame.
    fn frame_len(&self) -> usize;

    /// Feeds a chunk. A chunk holding NaN or infinity is rejected whole with
    /// [`KernelError::NonFinite`] and leaves the kernel unchanged.
    fn push(
        &mut self,
        chunk: &[f32],
        sink: &mut dyn FnMut(&[Self::Item]),
    ) -> Result<usize, KernelError>;

    /// Forgets the stream so far.
    fn reset(&mut self);

    /// [`StreamingKernel::push`], appending the frames to `out` (no allocation once `out` has
    /// the capacity).
    fn push_into(
        &mut self,
        chunk: &[f32],
        out: &mut Vec<Self::Item>,
    ) -> Result<usize, KernelError> {
        self.push(chunk, &mut |f| out.extend_from_slice(f))
    }
}

impl StreamingKernel for WhisperLogMelStream {
    type Item = f32;
    fn frame_len(&self) -> usize {
        WhisperLogMelStream::frame_len(self)
    }
    fn push(&mut self, chunk: &[f32], sink: &mut dyn FnMut(&[f32])) -> Result<usize, KernelError> {
        WhisperLogMelStream::push(self, chunk, sink)
    }
    fn reset(&mut self) {
        WhisperLogMelStream::reset(self)
    }
}

impl StreamingKernel for SileroFramer {
    type Item = f32;
    fn frame_len(&self) -> usize {
        SileroFramer::frame_len(self)
    }
    fn push(&mut self, chunk: &[f32], sink: &mut dyn FnMut(&[f32])) -> Result<usize, KernelError> {
        SileroFramer::push(self, chunk, sink)
    }
    fn reset(&mut self) {
        SileroFramer::reset(self)
    }
}

impl StreamingKernel for DmelStream {
    type Item = u8;
    fn frame_len(&self) -> usize {
        DmelStream::frame_len(self)
    }
    fn push(&mut self, chunk: &[f32], sink: &mut dyn FnMut(&[u8])) -> Result<usize, KernelError> {
        DmelStream::push(self, chunk, sink)
    }
    fn reset(&mut self) {
        DmelStream::reset(self)
    }
}
