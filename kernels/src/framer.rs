//! Cuts a sample stream into overlapping frames of `win` samples every `hop` samples, across
//! chunk boundaries, without allocating after construction.

/// A stretch of the stream as two slices, one after the other: the samples a framer held back
/// from earlier chunks, then the new chunk, read in place (so that a chunk is not copied before
/// its frames are computed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region<'a> {
    head: &'a [f32],
    tail: &'a [f32],
}

impl<'a> Region<'a> {
    /// One slice.
    pub(crate) fn one(samples: &'a [f32]) -> Self {
        Region {
            head: samples,
            tail: &[],
        }
    }

    /// Two slices, one after the other.
    #[cfg(test)]
    pub(crate) fn two(head: &'a [f32], tail: &'a [f32]) -> Self {
        Region { head, tail }
    }

    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Sample `i`, 0 past the end.
    pub(crate) fn get(&self, i: usize) -> f32 {
        match i.checked_sub(self.head.len()) {
            None => self.head[i],
            Some(j) => self.tail.get(j).copied().unwrap_or(0.0),
        }
    }

    /// Samples `start..start + n` as one slice, where they lie within one of the two (`None`
    /// where they straddle them or reach past the end).
    #[inline(always)]
    pub(crate) fn contiguous(&self, start: usize, n: usize) -> Option<&'a [f32]> {
        match start.checked_sub(self.head.len()) {
            None => self.head.get(start..start + n),
            Some(j) => self.tail.get(j..j + n),
        }
    }

    /// Samples `start..start + dst.len()` into `dst`, zeros past the end.
    pub(crate) fn copy_to(&self, start: usize, dst: &mut [f32]) {
        let (head, tail) = (self.head.len(), self.tail.len());
        // The part of `dst` from `head`, the part from `tail`, then zeros.
        let from_head = head.saturating_sub(start).min(dst.len());
        let (a, rest) = dst.split_at_mut(from_head);
        a.copy_from_slice(&self.head[start.min(head)..start.min(head) + from_head]);
        let t0 = (start + from_head).saturating_sub(head).min(tail);
        let from_tail = (tail - t0).min(rest.len());
        let (b, zeros) = rest.split_at_mut(from_tail);
        b.copy_from_slice(&self.tail[t0..t0 + from_tail]);
        zeros.fill(0.0);
    }
}

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

    /// As [`Framer::push`], but hands over up to `batch` complete frames at once:
    /// `on_batch(region, count)` with frame `i` at samples `i·hop..i·hop + win` of `region`:
    /// the samples held from earlier chunks, then `chunk` itself, not copied. Frames come in
    /// order; the batches are as full as the chunk allows (none is held back for the next
    /// chunk). Afterwards fewer than `win` samples are held.
    pub(crate) fn push_batched(
        &mut self,
        mut chunk: &[f32],
        batch: usize,
        mut on_batch: impl FnMut(Region<'_>, usize),
    ) -> usize {
        let mut frames = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(chunk.len());
                self.skip -= n;
                chunk = &chunk[n..];
                if self.skip > 0 {
                    return frames;
                }
            }
            let held = self.pending.len();
            let len = held + chunk.len();
            if len < self.win {
                // Fits: fewer than `win` were held, and the capacity is at least `win`.
                self.pending.extend_from_slice(chunk);
                return frames;
            }
            let ready = ((len - self.win) / self.hop + 1).min(batch);
            on_batch(
                Region {
                    head: &self.pending,
                    tail: chunk,
                },
                ready,
            );
            frames += ready;
            let used = ready * self.hop;
            if used < held {
                self.consume(used);
            } else {
                self.pending.clear();
                let from_chunk = used - held;
                self.skip = from_chunk.saturating_sub(chunk.len());
                chunk = &chunk[from_chunk.min(chunk.len())..];
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
        let mut framer = Framer::new(win, hop);
        let mut out = Vec::new();
        for c in signal.chunks(chunk) {
            framer.push_batched(c, 8, |region, count| {
                assert!((1..=8).contains(&count));
                assert!(region.len() >= (count - 1) * hop + win);
                for i in 0..count {
                    let mut frame = vec![0.0; win];
                    region.copy_to(i * hop, &mut frame);
                    out.push(frame);
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
