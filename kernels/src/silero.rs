//! Silero VAD input framing: fixed frames, each with the tail of the previous one in front.
//!
//! Silero VAD v5/v6 (`silero_vad.onnx`) takes, at 16 kHz, 512 new samples (32 ms) with the
//! previous 64 samples prepended: 576 values per call. At 8 kHz it is 256 + 32. Before the first
//! frame the context is zeros, as in Silero's own `OnnxWrapper`.

use crate::error::{KernelError, check_finite};
use crate::framer::Framer;

/// Streaming framer for Silero VAD. Frame `t` is samples `512 t − 64 .. 512 (t + 1)` of the
/// stream (16 kHz), zeros before the start. A frame is emitted as soon as its last sample is in,
/// so the framer adds no look-ahead; a partial frame waits for more samples, or for
/// [`SileroFramer::flush`].
#[derive(Debug, Clone)]
pub struct SileroFramer {
    framer: Framer,
    frame: usize,
    context: usize,
    partial: usize,
    flush_buf: Vec<f32>,
}

impl SileroFramer {
    /// A framer for `sample_rate` 16 000 (512 + 64) or 8 000 (256 + 32).
    pub fn new(sample_rate: u32) -> Result<Self, KernelError> {
        let (frame, context) = match sample_rate {
            16_000 => (512, 64),
            8_000 => (256, 32),
            got => {
                return Err(KernelError::SampleRate {
                    got,
                    expected: "16000 or 8000",
                });
            }
        };
        let mut framer = SileroFramer {
            framer: Framer::new(frame + context, frame),
            frame,
            context,
            partial: 0,
            flush_buf: Vec::with_capacity(frame + context),
        };
        framer.reset();
        Ok(framer)
    }

    /// New samples per frame (512 at 16 kHz).
    pub fn hop(&self) -> usize {
        self.frame
    }

    /// Context samples in front of each frame (64 at 16 kHz).
    pub fn context(&self) -> usize {
        self.context
    }

    /// Values per emitted frame: context + frame (576 at 16 kHz), the model's `input` width.
    pub fn frame_len(&self) -> usize {
        self.frame + self.context
    }

    /// Feeds samples; calls `sink` with each completed `[context + frame]` input. Returns the
    /// number of frames emitted. An empty chunk emits nothing; a chunk with NaN or infinity is
    /// rejected whole and the framer is unchanged.
    pub fn push(
        &mut self,
        chunk: &[f32],
        sink: &mut dyn FnMut(&[f32]),
    ) -> Result<usize, KernelError> {
        check_finite(chunk)?;
        let emitted = self.framer.push(chunk, |f| sink(f));
        self.partial = (self.partial + chunk.len()) % self.frame;
        Ok(emitted)
    }

    /// Emits the last partial frame zero-padded to full length (as Silero's
    /// `get_speech_timestamps` pads the last chunk), if any samples are waiting, then resets.
    /// Returns the number of frames emitted (0 or 1).
    pub fn flush(&mut self, sink: &mut dyn FnMut(&[f32])) -> usize {
        let emitted = if self.partial > 0 {
            self.flush_buf.clear();
            self.flush_buf.extend_from_slice(self.framer.pending());
            self.flush_buf.resize(self.frame + self.context, 0.0);
            sink(&self.flush_buf);
            1
        } else {
            0
        };
        self.reset();
        emitted
    }

    /// Forgets the stream: the next frame starts with zero context.
    pub fn reset(&mut self) {
        self.framer.reset();
        self.partial = 0;
        let zeros = [0.0f32; 64];
        self.framer.push(&zeros[..self.context], |_| {});
    }
}
