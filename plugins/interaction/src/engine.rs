//! The model behind the element: one trait, two kinds (cascade and native). The element calls
//! [`Engine::step`] once per micro-turn; the engine reads the packet, runs its models, and
//! turns what they decide into [`Action`]s through the shared [`Conversation`].

use std::time::Duration;

use interaction_protocol::packet::Packet;

use crate::conversation::{Action, Conversation};

/// A live step waits for a finished turn's transcripts (after pushing its own output) until
/// this long before the next micro-turn is due. 10 ms leaves the streaming thread time to
/// return for the next packet; the transcript of a turn decided in the same micro-turn that
/// its speaker stopped is often ready 160-190 ms after the step began.
pub const LATE_MARGIN: Duration = Duration::from_millis(10);

/// What a step measured, for the per-micro-turn statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepInfo {
    /// Highest speech probability of the micro-turn (any participant; the native kind reports
    /// its `speak`-independent user-activity score, or 0).
    pub speech_probability: f32,
    /// Whether the user is speaking or has an open turn (results wait while this holds).
    pub user_busy: bool,
}

/// One kind of interaction model.
pub trait Engine: Send {
    /// Processes one micro-turn. `now` is the window end (running time, ns).
    fn step(
        &mut self,
        packet: &Packet,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<StepInfo, String>;

    /// End of stream: decide what is pending (an open turn ends, its transcript is made).
    fn finish(
        &mut self,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<(), String>;

    /// Flush: forget the stream (model state, buffers); keep the loaded models.
    fn reset(&mut self);

    /// "cascade" or "native".
    fn kind(&self) -> &'static str;

    /// Whether the engine reads the packet's text items itself (the native kind feeds them to
    /// its model); otherwise the element hands them to the [`Conversation`].
    fn consumes_text(&self) -> bool {
        false
    }

    /// Whether the pipeline is live: a live engine never waits for slow work in its step
    /// (transcripts follow when ready); a non-live one waits, so its output does not depend on
    /// thread timing.
    fn set_live(&mut self, _live: bool) {}

    /// Live: an ended turn's transcripts are still being made. Gives a handle to wait for the
    /// transcriber with and the count of finished jobs to wait past; the element waits without
    /// holding its state, after pushing the step's output, then calls
    /// [`Engine::deliver_ready`], so captions and the context package leave as soon as the
    /// transcript exists instead of at the next micro-turn.
    fn transcripts_pending(&self) -> Option<(crate::transcriber::Completions, u64)> {
        None
    }

    /// Hands over the transcripts that are ready now (see [`Engine::transcripts_pending`]).
    fn deliver_ready(
        &mut self,
        _now: u64,
        _conversation: &mut Conversation,
        _out: &mut Vec<Action>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// New thresholds (a property changed while running).
    fn update(&mut self, _policy: &crate::policy::PolicyConfig) {}
}

/// A fixed-capacity audio history of one participant, addressed by running time. Memory stays
/// flat however long the session is.
#[derive(Debug, Clone)]
pub struct AudioRing {
    data: Vec<f32>,
    /// Total samples ever written.
    written: u64,
    /// Running time of sample 0 of the stream.
    origin: u64,
    rate: u64,
}

impl AudioRing {
    pub fn new(capacity: usize, rate: u32) -> Self {
        AudioRing {
            data: vec![0.0; capacity.max(1)],
            written: 0,
            origin: 0,
            rate: u64::from(rate),
        }
    }

    /// Forgets everything; the next sample is at running time `origin`.
    pub fn restart(&mut self, origin: u64) {
        self.written = 0;
        self.origin = origin;
    }

    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Samples ever written (the position of the next one).
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn push(&mut self, samples: &[f32]) {
        let capacity = self.data.len();
        for &sample in samples {
            let at = (self.written % capacity as u64) as usize;
            self.data[at] = sample;
            self.written += 1;
        }
    }

    /// Running time at sample position `position`.
    pub fn time_of(&self, position: u64) -> u64 {
        self.origin + position * 1_000_000_000 / self.rate
    }

    fn position_of(&self, time: u64) -> u64 {
        time.saturating_sub(self.origin) * self.rate / 1_000_000_000
    }

    /// The samples between two running times, clipped to what the ring still holds.
    pub fn slice(&self, start: u64, end: u64, out: &mut Vec<f32>) {
        out.clear();
        let capacity = self.data.len() as u64;
        let first_kept = self.written.saturating_sub(capacity);
        let from = self.position_of(start).max(first_kept);
        let to = self.position_of(end).min(self.written);
        out.reserve(to.saturating_sub(from) as usize);
        for position in from..to {
            out.push(self.data[(position % capacity) as usize]);
        }
    }

    /// The last `count` samples (fewer at the start of a stream).
    pub fn last(&self, count: usize, out: &mut Vec<f32>) {
        let end = self.time_of(self.written);
        let start = self.time_of(self.written.saturating_sub(count as u64));
        self.slice(start, end, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_slices_by_running_time_and_forgets_the_oldest() {
        let mut ring = AudioRing::new(1000, 1000); // 1 s at 1 kHz
        ring.restart(5_000_000_000);
        let samples: Vec<f32> = (0..1500).map(|i| i as f32).collect();
        ring.push(&samples);
        let mut out = Vec::new();
        // 5.6 s .. 5.7 s = samples 600..700
        ring.slice(5_600_000_000, 5_700_000_000, &mut out);
        assert_eq!(out.len(), 100);
        assert_eq!(out[0], 600.0);
        // Before what is kept (sample 500): clipped.
        ring.slice(5_000_000_000, 5_600_000_000, &mut out);
        assert_eq!(out.first(), Some(&500.0));
        assert_eq!(out.len(), 100);
        ring.last(10, &mut out);
        assert_eq!(out, (1490..1500).map(|i| i as f32).collect::<Vec<_>>());
    }
}
