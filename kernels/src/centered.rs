//! Streaming framing of a centred STFT (`torch.stft(center=True)`, `np.pad(mode="reflect")`):
//! the signal is reflect-padded by `pad` samples at both ends and cut into frames of `win` every
//! `hop`. Frame `t` covers original samples `t·hop − pad .. t·hop − pad + win`.
//!
//! The start's padding needs samples 1..=pad, so the first frame comes once `pad + 1` samples
//! are in; the end's padding is only known at [`CenteredFramer::finish`].

use crate::batch::LANES;
use crate::framer::{Framer, Region};

/// numpy's `np.pad(..., mode="reflect")` index rule, for any pad width.
pub(crate) fn reflect_index(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let j = i.rem_euclid(period);
    if j >= n as isize {
        (period - j) as usize
    } else {
        j as usize
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CenteredFramer {
    pad: usize,
    win: usize,
    hop: usize,
    framer: Framer,
    /// The first `pad + 1` samples, held until the start's padding can be built.
    head: Vec<f32>,
    started: bool,
    samples_in: usize,
    frames_out: usize,
    finish_buf: Vec<f32>,
}

impl CenteredFramer {
    /// Needs `hop + pad < win` (so that the samples the end's padding reflects are still
    /// pending at the end) and `pad ≥ 1`; callers check.
    pub(crate) fn new(pad: usize, win: usize, hop: usize) -> Self {
        debug_assert!(pad >= 1 && hop + pad < win);
        CenteredFramer {
            pad,
            win,
            hop,
            framer: Framer::new(win, hop),
            head: Vec::with_capacity(pad + 1),
            started: false,
            samples_in: 0,
            frames_out: 0,
            finish_buf: Vec::with_capacity(2 * win + 2 * pad),
        }
    }

    /// Pushes samples; calls `on_batch(region, count)` with the frames that became complete,
    /// up to [`LANES`] at a time, frame `i` at samples `i·hop..i·hop + win` of `region`. Returns
    /// the number of frames emitted.
    pub(crate) fn push(
        &mut self,
        chunk: &[f32],
        mut on_batch: impl FnMut(Region<'_>, usize),
    ) -> usize {
        self.samples_in += chunk.len();
        let mut rest = chunk;
        let mut emitted = 0;
        if !self.started {
            let take = (self.pad + 1 - self.head.len()).min(rest.len());
            self.head.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.head.len() == self.pad + 1 {
                self.started = true;
                // Reflection of x[1..=pad] (x[pad], …, x[1]), then x[0..=pad].
                for i in (1..=self.pad).rev() {
                    emitted += self
                        .framer
                        .push_batched(&self.head[i..=i], LANES, &mut on_batch);
                }
                emitted += self.framer.push_batched(&self.head, LANES, &mut on_batch);
            }
        }
        if self.started && !rest.is_empty() {
            emitted += self.framer.push_batched(rest, LANES, &mut on_batch);
        }
        self.frames_out += emitted;
        emitted
    }

    /// Samples pushed since the last reset.
    pub(crate) fn samples_in(&self) -> usize {
        self.samples_in
    }

    /// Ends the stream: emits frames, reaching into the end's reflect padding, until `total`
    /// frames have come out in all (at most as many as fit in the padded signal), then resets.
    /// Returns the number of frames emitted by this call. Frames are handed over as in
    /// [`CenteredFramer::push`].
    pub(crate) fn finish(
        &mut self,
        total: usize,
        mut on_batch: impl FnMut(Region<'_>, usize),
    ) -> usize {
        let n = self.samples_in;
        let pad = self.pad;
        let mut emitted = 0;
        if self.frames_out < total && n > 0 {
            self.finish_buf.clear();
            // Padded-stream position of finish_buf[0].
            let first_pos = if self.started {
                let pending = self.framer.pending();
                let len = pending.len();
                self.finish_buf.extend_from_slice(pending);
                // pending ends with x[n-1]; x[n-1-k] is pending[len-1-k] (len ≥ win − hop > pad).
                for k in 1..=pad {
                    let v = self.finish_buf[len - 1 - k];
                    self.finish_buf.push(v);
                }
                n + pad - len
            } else {
                for p in 0..n + 2 * pad {
                    let v = self.head[reflect_index(p as isize - pad as isize, n)];
                    self.finish_buf.push(v);
                }
                0
            };
            while self.frames_out < total {
                let Some(start) = (self.frames_out * self.hop).checked_sub(first_pos) else {
                    break;
                };
                if start + self.win > self.finish_buf.len() {
                    break;
                }
                let fit = (self.finish_buf.len() - start - self.win) / self.hop + 1;
                let count = fit.min(total - self.frames_out).min(LANES);
                on_batch(Region::one(&self.finish_buf[start..]), count);
                self.frames_out += count;
                emitted += count;
            }
        }
        self.reset();
        emitted
    }

    /// Forgets the stream so far.
    pub(crate) fn reset(&mut self) {
        self.framer.reset();
        self.head.clear();
        self.started = false;
        self.samples_in = 0;
        self.frames_out = 0;
    }
}
