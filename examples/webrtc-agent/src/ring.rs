//! The hand-over between the peer's decoded audio and the agent's live input.
//!
//! Audio from the network arrives in bursts (packets, jitter buffer, decoder), but the agent's
//! aligner wants a steady live stream: one 20 ms buffer every 20 ms on the clock, whether a
//! peer is connected or not. [`JitterRing`] sits between the two: the peer side appends what
//! it decodes, the agent side takes exactly one chunk per tick. It waits for a small reserve
//! before it starts handing audio out (so ordinary jitter does not cut holes into speech),
//! gives silence while it has no audio, and drops the oldest audio when the reserve grows past
//! its capacity (clock drift between the browser and us, or a stall), so the added delay
//! stays bounded.

use std::collections::VecDeque;

/// What the ring has done so far (for the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Samples handed out that came from the peer.
    pub delivered: u64,
    /// Times the reserve ran dry in the middle of audio (silence filled the rest of a chunk).
    pub underruns: u64,
    /// Samples dropped because the reserve was over capacity.
    pub dropped: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct JitterRing {
    samples: VecDeque<f32>,
    /// Samples needed before audio is handed out again after the ring ran dry.
    reserve: usize,
    /// Most samples kept; older ones are dropped.
    capacity: usize,
    /// Handing audio out (the reserve was reached and has not run dry since).
    flowing: bool,
    stats: RingStats,
}

impl JitterRing {
    /// `reserve` and `capacity` in samples; `capacity` is raised to at least `reserve`.
    pub fn new(reserve: usize, capacity: usize) -> Self {
        JitterRing {
            samples: VecDeque::with_capacity(capacity.max(reserve)),
            reserve,
            capacity: capacity.max(reserve),
            flowing: false,
            stats: RingStats::default(),
        }
    }

    /// Appends decoded peer audio.
    pub fn push(&mut self, samples: &[f32]) {
        self.samples.extend(samples.iter().copied());
        let excess = self.samples.len().saturating_sub(self.capacity);
        if excess > 0 {
            self.samples.drain(..excess);
            self.stats.dropped += excess as u64;
        }
    }

    /// Fills `chunk` with the next audio, or silence where there is none.
    pub fn pop_into(&mut self, chunk: &mut [f32]) {
        if !self.flowing && self.samples.len() >= self.reserve.max(1) {
            self.flowing = true;
        }
        let taken = if self.flowing {
            self.samples.len().min(chunk.len())
        } else {
            0
        };
        for (slot, sample) in chunk.iter_mut().zip(self.samples.drain(..taken)) {
            *slot = sample;
        }
        chunk[taken..].fill(0.0);
        self.stats.delivered += taken as u64;
        if self.flowing && taken < chunk.len() {
            self.flowing = false;
            if taken > 0 {
                self.stats.underruns += 1;
            }
        }
    }

    /// Forgets the audio held (the peer left).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.flowing = false;
    }

    /// Samples held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn stats(&self) -> RingStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(start: usize, count: usize) -> Vec<f32> {
        (start..start + count).map(|i| i as f32).collect()
    }

    #[test]
    fn waits_for_the_reserve_then_hands_out_in_order() {
        let mut ring = JitterRing::new(640, 4800);
        let mut chunk = [7.0f32; 320];
        ring.push(&ramp(1, 400));
        ring.pop_into(&mut chunk);
        assert!(
            chunk.iter().all(|&s| s == 0.0),
            "below the reserve: silence"
        );
        ring.push(&ramp(401, 400));
        ring.pop_into(&mut chunk);
        assert_eq!(chunk.to_vec(), ramp(1, 320));
        ring.pop_into(&mut chunk);
        assert_eq!(chunk.to_vec(), ramp(321, 320));
        assert_eq!(ring.len(), 160);
        assert_eq!(ring.stats().delivered, 640);
    }

    #[test]
    fn an_underrun_pads_with_silence_and_waits_for_the_reserve_again() {
        let mut ring = JitterRing::new(640, 4800);
        let mut chunk = [0.0f32; 320];
        ring.push(&ramp(1, 800));
        ring.pop_into(&mut chunk);
        ring.pop_into(&mut chunk);
        ring.pop_into(&mut chunk);
        assert_eq!(chunk[..160].to_vec(), ramp(641, 160));
        assert!(chunk[160..].iter().all(|&s| s == 0.0));
        assert_eq!(ring.stats().underruns, 1);
        // 400 samples are not the reserve: silence, nothing consumed.
        ring.push(&ramp(801, 400));
        ring.pop_into(&mut chunk);
        assert!(chunk.iter().all(|&s| s == 0.0));
        assert_eq!(ring.len(), 400);
        ring.push(&ramp(1201, 240));
        ring.pop_into(&mut chunk);
        assert_eq!(chunk.to_vec(), ramp(801, 320));
        assert_eq!(ring.stats().delivered, 800 + 320);
    }

    #[test]
    fn over_capacity_drops_the_oldest_audio() {
        let mut ring = JitterRing::new(640, 1000);
        ring.push(&ramp(1, 1500));
        assert_eq!(ring.len(), 1000);
        assert_eq!(ring.stats().dropped, 500);
        let mut chunk = [0.0f32; 320];
        ring.pop_into(&mut chunk);
        assert_eq!(chunk[0], 501.0);
        ring.clear();
        assert!(ring.is_empty());
        ring.pop_into(&mut chunk);
        assert!(chunk.iter().all(|&s| s == 0.0));
    }
}
