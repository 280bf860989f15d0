//! Cuts a sample stream into overlapping frames of `win` samples every `hop` samples, across
//! chunk boundaries, without allocating after construction.

/// A streaming framer: frame `t` covers stream positions `t·hop .. t·hop + win`, where the
/// stream is whatever was [`Framer::push`]ed (including any history pushed at the start).
#[derive(Debug, Clone)]
pub(crate) struct Framer {
    win: usize,
    hop: usize,
    /// Samples from the start of the next frame on. Capacity `win + hop` is reserved once.
    pending: Vec<f32>,
    /// Samples still to drop before the next frame starts (only when hop > win).
    skip: usize,
}

impl Framer {
    /// `win` ≥ 1 and `hop` ≥ 1 (checked by the callers' configs).
    pub(crate) fn new(win: usize, hop: usize) -> Self {
        Framer {
            win,
            hop,
            pending: Vec::with_capacity(win + hop.max(win)),
            skip: 0,
        }
    }

    /// Pushes samples and calls `on_frame` with each frame that became complete, in order.
    /// Returns the number of frames emitted.
    pub(crate) fn push(&mut self, mut chunk: &[f32], mut on_frame: impl FnMut(&[f32])) -> usize {
        let mut frames = 0;
        let cap = self.pending.capacity();
        while !chunk.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(chunk.len());
                self.skip -= n;
                chunk = &chunk[n..];
                continue;
            }
            let take = (cap - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            let mut start = 0;
            while self.pending.len() - start >= self.win {
                on_frame(&self.pending[start..start + self.win]);
                frames += 1;
                start += self.hop;
                if start >= self.pending.len() {
                    break;
                }
            }
            self.consume(start);
        }
        frames
    }

    /// A framer whose buffer holds `batch` consecutive frames, for [`Framer::push_batched`].
    pub(crate) fn with_batch(win: usize, hop: usize, batch: usize) -> Self {
        Framer {
            win,
            hop,
            pending: Vec::with_capacity((win + hop.max(win)).max(win + hop * (batch - 1))),
            skip: 0,
        }
    }

    /// As [`Framer::push`], but hands over up to `batch` complete frames at once:
    /// `on_batch(region, count)` with frame `i` at `region[i·hop..i·hop + win]`. Frames come
    /// in order; the batches are as full as the chunk allows (none is held back for the next
    /// chunk). Needs a framer made by [`Framer::with_batch`] with at least this `batch`.
    pub(crate) fn push_batched(
        &mut self,
        mut chunk: &[f32],
        batch: usize,
        mut on_batch: impl FnMut(&[f32], usize),
    ) -> usize {
        let mut frames = 0;
        let cap = self.pending.capacity();
        debug_assert!(cap >= self.win + self.hop * (batch - 1));
        loop {
            if self.skip > 0 && !chunk.is_empty() {
                let n = self.skip.min(chunk.len());
                self.skip -= n;
                chunk = &chunk[n..];
                continue;
            }
            let take = (cap - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            let len = self.pending.len();
            let ready = if len >= self.win {
                ((len - self.win) / self.hop + 1).min(batch)
            } else {
                0
            };
            if ready > 0 && (ready == batch || chunk.is_empty()) {
                on_batch(&self.pending, ready);
                frames += ready;
                self.consume(ready * self.hop);
                continue;
            }
            if chunk.is_empty() {
                return frames;
            }
        }
    }

    /// Drops `n` samples from the front (more than are pending becomes a skip).
    fn consume(&mut self, n: usize) {
        let len = self.pending.len();
        if n >= len {
            self.skip += n - len;
            self.pending.clear();
        } else if n > 0 {
            self.pending.copy_within(n.., 0);
            self.pending.truncate(len - n);
        }
    }

    /// Samples waiting for the next frame.
    pub(crate) fn pending(&self) -> &[f32] {
        &self.pending
    }

    /// Forgets everything.
    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.skip = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(win: usize, hop: usize, signal: &[f32], chunk: usize) -> Vec<Vec<f32>> {
        let mut framer = Framer::new(win, hop);
        let mut out = Vec::new();
        for c in signal.chunks(chunk) {
            framer.push(c, |f| out.push(f.to_vec()));
        }
        out
    }

    fn batched_frames_of(win: usize, hop: usize, signal: &[f32], chunk: usize) -> Vec<Vec<f32>> {
        let mut framer = Framer::with_batch(win, hop, 8);
        let mut out = Vec::new();
        for c in signal.chunks(chunk) {
            framer.push_batched(c, 8, |region, count| {
                assert!((1..=8).contains(&count));
                for i in 0..count {
                    out.push(region[i * hop..i * hop + win].to_vec());
                }
            });
        }
        out
    }

    #[test]
    fn frames_match_direct_slicing_for_any_chunking() {
        let signal: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        for &(win, hop) in &[(400, 160), (576, 512), (800, 200), (10, 25), (7, 7)] {
            let want: Vec<Vec<f32>> = (0..)
                .map(|t| t * hop)
                .take_while(|s| s + win <= signal.len())
                .map(|s| signal[s..s + win].to_vec())
                .collect();
            for chunk in [1, 7, 160, 3200] {
                assert_eq!(
                    frames_of(win, hop, &signal, chunk),
                    want,
                    "win {win} hop {hop} chunk {chunk}"
                );
                assert_eq!(
                    batched_frames_of(win, hop, &signal, chunk),
                    want,
                    "batched: win {win} hop {hop} chunk {chunk}"
                );
            }
        }
    }
}
