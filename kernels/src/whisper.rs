//! Whisper log-mel features, as Whisper (tiny.en) and Smart Turn v3.2 expect them.
//!
//! The recipe (OpenAI `whisper/audio.py`, HF `WhisperFeatureExtractor`, pipecat
//! `smart_turn/_whisper_features.py`): 16 kHz mono; centred STFT (reflect padding of 200
//! samples on both sides), periodic Hann window of 400, n_fft 400, hop 160; power spectrum;
//! 80 Slaney mel filters over 0–8000 Hz with Slaney area normalisation; `log10(max(mel, 1e-10))`;
//! the last frame dropped; a floor at (global max − 8); then `(x + 4) / 4`.
//!
//! `n` samples give `n / 160` frames (integer division). A 30 s window is 480 000 samples and
//! 3000 frames.
//!
//! Because of the global max, the finished features are a whole-window computation. The
//! per-frame part (everything before the floor) streams: [`WhisperLogMelStream`] gives raw
//! `log10` mel frames as audio arrives, bit-identical to the offline frames, and
//! [`whisper_normalize`] finishes any window of them.

use crate::batch::{BatchShape, BatchSpectrum, LANES};
use crate::centered::{CenteredFramer, reflect_index};
use crate::error::{KernelError, check_finite};
use crate::framer::Region;
use crate::spectrum::{MelFilterbank, SpectrumKind};

/// Sample rate Whisper and Smart Turn expect.
pub const WHISPER_SAMPLE_RATE: u32 = 16_000;
/// FFT size and window length (25 ms).
pub const WHISPER_N_FFT: usize = 400;
/// Hop between frames (10 ms).
pub const WHISPER_HOP: usize = 160;
/// Number of mel channels.
pub const WHISPER_N_MELS: usize = 80;
/// Frames in a 30 s Whisper window.
pub const WHISPER_WINDOW_FRAMES: usize = 3000;
/// Samples Smart Turn looks at: the last 8 s.
pub const SMART_TURN_SAMPLES: usize = 128_000;
/// Frames of Smart Turn's input (80 × 800).
pub const SMART_TURN_FRAMES: usize = 800;

const PAD: usize = WHISPER_N_FFT / 2;
const NORM_VARIANCE_EPS: f64 = 1e-7;

/// The per-frame core shared by the offline and the streaming forms: frames go through
/// [`BatchSpectrum`] up to [`LANES`] (24) at a time (one frame per SIMD lane); a frame's values
/// do not depend on the batch it was in.
struct FrameCore {
    batch: BatchSpectrum,
    /// The last batch's frames, frame-major.
    frames: Vec<f32>,
}

impl FrameCore {
    fn new() -> Self {
        let mel = MelFilterbank::slaney(
            f64::from(WHISPER_SAMPLE_RATE),
            WHISPER_N_FFT / 2 + 1,
            WHISPER_N_MELS,
            0.0,
            f64::from(WHISPER_SAMPLE_RATE) / 2.0,
        );
        let shape = BatchShape {
            win_len: WHISPER_N_FFT,
            hop: WHISPER_HOP,
            n_fft: WHISPER_N_FFT,
            kind: SpectrumKind::Power,
        };
        FrameCore {
            batch: BatchSpectrum::new(shape, &mel).expect("200 = 8·5·5 has an FFT plan"),
            frames: vec![0.0; LANES * WHISPER_N_MELS],
        }
    }

    /// `count` (≤ [`LANES`], 24) frames of 400 samples, frame `f` at `region[160 f..]`, to 80
    /// values of `log10(max(mel, 1e-10))` each, as they come out of the batch: mel-major.
    #[inline]
    fn rows(&mut self, region: Region<'_>, count: usize) -> MelRows<'_> {
        self.batch.run(region, count);
        MelRows {
            rows: &self.batch.out,
            frames: count,
        }
    }

    /// [`FrameCore::rows`], frame-major: `emit(values)` for each frame, in frame order.
    #[inline]
    fn frames(&mut self, region: Region<'_>, count: usize, emit: &mut dyn FnMut(&[f32])) {
        self.batch.run(region, count);
        self.batch.frames_into(count, &mut self.frames);
        for frame in self.frames.chunks_exact(WHISPER_N_MELS).take(count) {
            emit(frame);
        }
    }
}

/// A block of consecutive raw Whisper frames, mel-major: row `m` holds mel channel `m` of
/// each frame of the block, in frame order ([`MelRows::frames`] values). This is the layout of
/// Whisper's encoder input `[80][frames]`, so a window fills row by row, without a transpose:
/// see [`MelRows::copy_to`] and [`WhisperLogMelStream::push_rows`].
///
/// ```
/// // One second of a tone, streamed in 200 ms micro-turns into a [80][100] window.
/// let audio: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.2).sin() * 0.3).collect();
/// let mut stream = kernels::WhisperLogMelStream::new(16_000)?;
/// let mut window = vec![0.0f32; 80 * 100];
/// let mut column = 0;
/// for turn in audio.chunks(3200) {
///     stream.push_rows(turn, &mut |rows| {
///         rows.copy_to(&mut window, 100, column).expect("fits");
///         column += rows.frames();
///     })?;
/// }
/// stream.finish_rows(&mut |rows| {
///     rows.copy_to(&mut window, 100, column).expect("fits");
///     column += rows.frames();
/// });
/// assert_eq!(column, 100);
/// kernels::whisper_normalize(&mut window);
/// assert_eq!(window, kernels::whisper_log_mel(&audio, 100)?);
/// # Ok::<(), kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct MelRows<'a> {
    rows: &'a [[f32; LANES]],
    frames: usize,
}

impl<'a> MelRows<'a> {
    /// Frames in the block (at most 24).
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Mel channels (rows), 80.
    pub fn n_mels(&self) -> usize {
        self.rows.len()
    }

    /// Mel channel `m` over the block's frames; `None` past the last channel.
    pub fn row(&self, m: usize) -> Option<&'a [f32]> {
        self.rows.get(m).map(|r| &r[..self.frames])
    }

    /// The rows, channel 0 first.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &'a [f32]> + 'a {
        let frames = self.frames;
        self.rows.iter().map(move |r| &r[..frames])
    }

    /// Writes the block into a row-major window `[n_mels][columns]` (`dst.len()` = 80 ·
    /// `columns`) at columns `column..column + frames`. Errors
    /// ([`KernelError::Size`]) where the window has another size or the block does not fit.
    pub fn copy_to(
        &self,
        dst: &mut [f32],
        columns: usize,
        column: usize,
    ) -> Result<(), KernelError> {
        let size = self.n_mels().saturating_mul(columns);
        if dst.len() != size {
            return Err(KernelError::Size {
                what: "mel window (80 × columns)",
                expected: size,
                got: dst.len(),
            });
        }
        let end = column.saturating_add(self.frames);
        if end > columns {
            return Err(KernelError::Size {
                what: "mel window columns for the block",
                expected: end,
                got: columns,
            });
        }
        if columns > 0 {
            for (row, d) in self.rows().zip(dst.chunks_exact_mut(columns)) {
                d[column..column + self.frames].copy_from_slice(row);
            }
        }
        Ok(())
    }
}

/// Floors a raw `log10` mel window at (its max − 8) and maps it to `(x + 4) / 4`, in place.
/// `raw` may be laid out in any order; the max is taken over all of it. This is the last step
/// of Whisper's features; use it on frames from [`WhisperLogMelStream`].
///
/// NaN in `raw` is passed over by the max and becomes the floor. Where the CPU has AVX2 the
/// two passes run 8 lanes wide: a 30 s window (240 000 values) took about 96 µs in the
/// baseline SSE2 build, whose `f32::max` carries a NaN fix-up per value; same results.
pub fn whisper_normalize(raw: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::spectrum::has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { normalize_avx2(raw) };
    }
    normalize_plain(raw);
}

/// [`whisper_normalize`] without vectors of its own.
fn normalize_plain(raw: &mut [f32]) {
    let max = raw.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let floor = max - 8.0;
    for v in raw.iter_mut() {
        *v = (v.max(floor) + 4.0) / 4.0;
    }
}

/// [`whisper_normalize`] on 8 lanes. `_mm256_max_ps(v, m)` gives `m` where `v` is NaN, as
/// `f32::max` does, and `m` (from −∞) is never NaN; a zero's sign, the one other case where
/// the two may pick differently, does not change `max − 8`. `(x + 4) · 0.25` is `(x + 4) / 4`
/// exactly.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn normalize_avx2(raw: &mut [f32]) {
    use std::arch::x86_64::*;
    let (blocks, rest) = raw.as_chunks::<32>();
    let mut m = [_mm256_set1_ps(f32::NEG_INFINITY); 4];
    for block in blocks {
        for (j, m) in m.iter_mut().enumerate() {
            // SAFETY: lanes 8j..8j + 8 of a 32-value block.
            *m = _mm256_max_ps(unsafe { _mm256_loadu_ps(block[8 * j..].as_ptr()) }, *m);
        }
    }
    let m = _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3]));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 values.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    let max = lanes
        .iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let (floor, four, quarter) = (
        _mm256_set1_ps(max - 8.0),
        _mm256_set1_ps(4.0),
        _mm256_set1_ps(0.25),
    );
    let (blocks, rest) = raw.as_chunks_mut::<8>();
    for block in blocks {
        // SAFETY: 8 values.
        unsafe {
            let v = _mm256_max_ps(_mm256_loadu_ps(block.as_ptr()), floor);
            _mm256_storeu_ps(
                block.as_mut_ptr(),
                _mm256_mul_ps(_mm256_add_ps(v, four), quarter),
            );
        }
    }
    for v in rest {
        *v = (v.max(max - 8.0) + 4.0) / 4.0;
    }
}

/// Offline Whisper log-mel with reusable buffers: after the first call with a given frame
/// count, calls do not allocate.
pub struct WhisperLogMel {
    core: FrameCore,
    padded: Vec<f32>,
    normalized: Vec<f32>,
}

impl Default for WhisperLogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl WhisperLogMel {
    /// Builds the window, the FFT plan and the filterbank.
    pub fn new() -> Self {
        WhisperLogMel {
            core: FrameCore::new(),
            padded: Vec::new(),
            normalized: Vec::new(),
        }
    }

    /// Whisper features of `samples` (16 kHz), trimmed or zero-padded at the end to
    /// `n_frames · 160` samples (`whisper.pad_or_trim`), written row-major `[80][n_frames]`
    /// into `out` (length `80 · n_frames`).
    ///
    /// Errors: `n_frames == 0` or a wrong `out` length ([`KernelError::Size`]), a NaN or
    /// infinite sample ([`KernelError::NonFinite`]). Empty `samples` is valid (silence).
    pub fn compute_into(
        &mut self,
        samples: &[f32],
        n_frames: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        if n_frames == 0 {
            return Err(KernelError::Size {
                what: "Whisper frame count",
                expected: 1,
                got: 0,
            });
        }
        if out.len() != WHISPER_N_MELS * n_frames {
            return Err(KernelError::Size {
                what: "Whisper log-mel output",
                expected: WHISPER_N_MELS * n_frames,
                got: out.len(),
            });
        }
        let n = n_frames * WHISPER_HOP;
        let used = &samples[..samples.len().min(n)];
        check_finite(used)?;
        self.raw_into(used, n, n_frames, out);
        whisper_normalize(out);
        Ok(())
    }

    /// `log10` mel of the first `n_frames` centred frames of `signal` zero-extended to `n`.
    ///
    /// The centred frames read the signal reflect-padded by 200 on both sides, as
    /// `np.pad(mode="reflect")`. A batch of frames that lies within `signal` reads it in
    /// place; only the batches that reach into the padding (or the zeros after `signal`) read
    /// a copy of their samples, at most 24 hops and a window. Copying the whole padded signal
    /// first cost a 30 s window about 1.9 MB of writes and reads.
    fn raw_into(&mut self, signal: &[f32], n: usize, n_frames: usize, out: &mut [f32]) {
        let sample = |i: usize| signal.get(i).copied().unwrap_or(0.0);
        for t0 in (0..n_frames).step_by(LANES) {
            let count = (n_frames - t0).min(LANES);
            // The batch's samples in padded coordinates (signal sample `i` at `i + PAD`).
            let (start, end) = (
                t0 * WHISPER_HOP,
                (t0 + count - 1) * WHISPER_HOP + WHISPER_N_FFT,
            );
            let region = if start >= PAD && end - PAD <= signal.len() {
                Region::one(&signal[start - PAD..end - PAD])
            } else {
                // Padded samples `start..end`: the reflected ones (at most `PAD` on each side)
                // one by one, the signal's as a slice, then the zeros to `n`.
                let reflected = |p: usize| sample(reflect_index(p as isize - PAD as isize, n));
                let (left, signal_end, zeros_end) =
                    (end.min(PAD), end.min(PAD + signal.len()), end.min(PAD + n));
                self.padded.clear();
                self.padded.extend((start..left).map(reflected));
                let from = start.max(PAD);
                if from < signal_end {
                    self.padded
                        .extend_from_slice(&signal[from - PAD..signal_end - PAD]);
                }
                let zeros = zeros_end.saturating_sub(from.max(signal_end));
                self.padded.resize(self.padded.len() + zeros, 0.0);
                self.padded
                    .extend((start.max(zeros_end)..end).map(reflected));
                debug_assert_eq!(self.padded.len(), end - start);
                Region::one(&self.padded)
            };
            let rows = self.core.rows(region, count);
            for (row, d) in rows.rows().zip(out.chunks_exact_mut(n_frames)) {
                d[t0..t0 + count].copy_from_slice(row);
            }
        }
    }

    /// Smart Turn v3.2's input from the audio of a turn (16 kHz): the last 8 s, left-padded
    /// with zeros to 128 000 samples, normalised to zero mean and unit variance
    /// (`(x − mean) / sqrt(var + 1e-7)`), then Whisper features with 800 frames, row-major
    /// `[80][800]` into `out`.
    ///
    /// Errors as [`WhisperLogMel::compute_into`]. Empty `samples` gives the features of
    /// 8 s of silence.
    pub fn smart_turn_into(&mut self, samples: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
        if out.len() != WHISPER_N_MELS * SMART_TURN_FRAMES {
            return Err(KernelError::Size {
                what: "Smart Turn features output",
                expected: WHISPER_N_MELS * SMART_TURN_FRAMES,
                got: out.len(),
            });
        }
        let tail = &samples[samples.len().saturating_sub(SMART_TURN_SAMPLES)..];
        check_finite(tail)?;
        self.normalized.resize(SMART_TURN_SAMPLES, 0.0);
        normalize_turn(tail, &mut self.normalized);
        let normalized = std::mem::take(&mut self.normalized);
        self.raw_into(&normalized, SMART_TURN_SAMPLES, SMART_TURN_FRAMES, out);
        self.normalized = normalized;
        whisper_normalize(out);
        Ok(())
    }
}

/// Smart Turn's normalisation: `tail` after zeros to the length of `out`, as
/// `(x − mean) / sqrt(var + 1e-7)` over that whole window, into `out` (mean and variance
/// accumulated in f64). Where the CPU has AVX2 the same code runs 8 lanes wide, with the same
/// bits.
fn normalize_turn(tail: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::spectrum::has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { normalize_turn_avx2(tail, out) };
    }
    normalize_turn_plain(tail, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn normalize_turn_avx2(tail: &[f32], out: &mut [f32]) {
    normalize_turn_plain(tail, out);
}

#[inline(always)]
fn normalize_turn_plain(tail: &[f32], out: &mut [f32]) {
    let zeros = out.len() - tail.len();
    let n = out.len() as f64;
    let mean32 = (sum_f64(tail, f64::from) / n) as f32;
    let m = f64::from(mean32);
    let sq = sum_f64(tail, |v| {
        let d = f64::from(v - mean32);
        d * d
    }) + zeros as f64 * m * m;
    let scale = (sq / n + NORM_VARIANCE_EPS).sqrt() as f32;
    let (pad, rest) = out.split_at_mut(zeros);
    pad.fill((0.0 - mean32) / scale);
    for (o, &v) in rest.iter_mut().zip(tail) {
        *o = (v - mean32) / scale;
    }
}

/// `Σ f(v)` over `x` in f64, as 16 interleaved partial sums (value `i` into sum `i % 16`)
/// added pairwise at the end: independent chains that vectorise, in a fixed order, so every
/// build gives the same bits. One running sum, as before, waited on each addition: two
/// passes over 8 s took about 125 µs of Smart Turn's 320 µs (Intel VM).
#[inline(always)]
fn sum_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0.0f64; 16];
    let (blocks, rest) = x.as_chunks::<16>();
    for block in blocks {
        for (a, &v) in acc.iter_mut().zip(block) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += f(v);
    }
    let mut n = acc.len();
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] += acc[i + n];
        }
    }
    acc[0]
}

/// Whisper features of `samples` (16 kHz) padded or trimmed to `n_frames · 160` samples:
/// a `Vec` of `80 · n_frames` values, row-major `[80][n_frames]`, ready for Whisper's encoder
/// input `mel[1, 80, n_frames]`. For a 30 s window use [`WHISPER_WINDOW_FRAMES`] (3000).
///
/// Allocates its tables on each call; reuse a [`WhisperLogMel`] in a loop.
///
/// ```
/// // 2 s of a 440 Hz tone, as Whisper's 30 s window: 80 × 3000 values.
/// let audio: Vec<f32> = (0..32_000)
///     .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.5)
///     .collect();
/// let mel = kernels::whisper_log_mel(&audio, kernels::WHISPER_WINDOW_FRAMES)?;
/// assert_eq!(mel.len(), 80 * 3000);
/// // Row m holds mel channel m over time; the tone's channel is the loudest in frame 100.
/// let frame = |m: usize| mel[m * 3000 + 100];
/// let loudest = (0..80).max_by(|&a, &b| frame(a).total_cmp(&frame(b))).unwrap();
/// assert!((10..20).contains(&loudest), "channel {loudest}");
/// # Ok::<(), kernels::KernelError>(())
/// ```
pub fn whisper_log_mel(samples: &[f32], n_frames: usize) -> Result<Vec<f32>, KernelError> {
    let mut out = vec![0.0; WHISPER_N_MELS * n_frames];
    WhisperLogMel::new().compute_into(samples, n_frames, &mut out)?;
    Ok(out)
}

/// Smart Turn v3.2's `input_features` (`[80][800]`, row-major) from a turn's audio (16 kHz).
/// See [`WhisperLogMel::smart_turn_into`].
pub fn smart_turn_features(samples: &[f32]) -> Result<Vec<f32>, KernelError> {
    let mut out = vec![0.0; WHISPER_N_MELS * SMART_TURN_FRAMES];
    WhisperLogMel::new().smart_turn_into(samples, &mut out)?;
    Ok(out)
}

/// Streaming raw Whisper frames: `log10(max(mel, 1e-10))`, 80 values per frame, frame `t`
/// centred on sample `160 t` exactly as in the offline STFT.
///
/// Frame `t` is emitted as soon as sample `160 t + 199` has arrived (the first once 201
/// samples are in, because of the reflect padding): the look-ahead is 200 samples (12.5 ms).
/// [`WhisperLogMelStream::finish`] emits the frames that need the end's reflect padding, so that
/// after pushing `n` samples and finishing, exactly `n / 160` frames came out, equal bit for bit
/// to the raw frames of the offline computation on the same `n` samples. Apply
/// [`whisper_normalize`] to a window of them for the model's input.
pub struct WhisperLogMelStream {
    core: FrameCore,
    framer: CenteredFramer,
}

impl WhisperLogMelStream {
    /// A stream at `sample_rate`, which must be 16 000.
    pub fn new(sample_rate: u32) -> Result<Self, KernelError> {
        if sample_rate != WHISPER_SAMPLE_RATE {
            return Err(KernelError::SampleRate {
                got: sample_rate,
                expected: "16000",
            });
        }
        Ok(WhisperLogMelStream {
            core: FrameCore::new(),
            framer: CenteredFramer::new(PAD, WHISPER_N_FFT, WHISPER_HOP),
        })
    }

    /// Values per emitted frame (80).
    pub fn frame_len(&self) -> usize {
        WHISPER_N_MELS
    }

    /// Feeds samples; calls `sink` with each completed frame (80 values). Returns the number of
    /// frames emitted. An empty chunk emits nothing. A chunk with NaN or infinity is rejected
    /// whole and the stream is unchanged.
    pub fn push(
        &mut self,
        chunk: &[f32],
        sink: &mut dyn FnMut(&[f32]),
    ) -> Result<usize, KernelError> {
        check_finite(chunk)?;
        let Self { core, framer } = self;
        Ok(framer.push(chunk, |region, count| core.frames(region, count, sink)))
    }

    /// [`WhisperLogMelStream::push`], mel-major: `sink` gets the completed frames as blocks of
    /// up to 24 consecutive frames, row `m` holding mel channel `m` of each ([`MelRows`]), the
    /// layout of Whisper's input, with no transpose to frame-major in between. The values are
    /// the same bits as `push` gives.
    pub fn push_rows(
        &mut self,
        chunk: &[f32],
        sink: &mut dyn FnMut(MelRows<'_>),
    ) -> Result<usize, KernelError> {
        check_finite(chunk)?;
        let Self { core, framer } = self;
        Ok(framer.push(chunk, |region, count| sink(core.rows(region, count))))
    }

    /// Ends the stream: emits the remaining frames (those that reach into the end's reflect
    /// padding), so that `n / 160` frames have come out in all, then resets for a new stream.
    /// Returns the number of frames emitted by this call.
    pub fn finish(&mut self, sink: &mut dyn FnMut(&[f32])) -> usize {
        let total = self.framer.samples_in() / WHISPER_HOP;
        let Self { core, framer } = self;
        framer.finish(total, |region, count| core.frames(region, count, sink))
    }

    /// [`WhisperLogMelStream::finish`], mel-major, as [`WhisperLogMelStream::push_rows`].
    pub fn finish_rows(&mut self, sink: &mut dyn FnMut(MelRows<'_>)) -> usize {
        let total = self.framer.samples_in() / WHISPER_HOP;
        let Self { core, framer } = self;
        framer.finish(total, |region, count| sink(core.rows(region, count)))
    }

    /// Forgets the stream so far.
    pub fn reset(&mut self) {
        self.framer.reset();
    }
}

/// The audio Smart Turn looks at, kept as it streams: the last 8 s in a ring, and
/// [`SmartTurnWindow::features_into`] gives the model input for "now" without allocating.
/// Equal to [`smart_turn_features`] on everything pushed since the last reset.
pub struct SmartTurnWindow {
    ring: Vec<f32>,
    /// Next write position in `ring`.
    pos: usize,
    /// Samples held (≤ 128 000).
    held: usize,
    linear: Vec<f32>,
    features: WhisperLogMel,
}

impl SmartTurnWindow {
    /// An empty window at `sample_rate`, which must be 16 000.
    pub fn new(sample_rate: u32) -> Result<Self, KernelError> {
        if sample_rate != WHISPER_SAMPLE_RATE {
            return Err(KernelError::SampleRate {
                got: sample_rate,
                expected: "16000",
            });
        }
        Ok(SmartTurnWindow {
            ring: vec![0.0; SMART_TURN_SAMPLES],
            pos: 0,
            held: 0,
            linear: Vec::with_capacity(SMART_TURN_SAMPLES),
            features: WhisperLogMel::new(),
        })
    }

    /// Appends audio, keeping the last 8 s. A chunk with NaN, infinity or a sample beyond ±1e9
    /// is rejected whole and the window is unchanged.
    pub fn push(&mut self, chunk: &[f32]) -> Result<(), KernelError> {
        check_finite(chunk)?;
        let chunk = &chunk[chunk.len().saturating_sub(SMART_TURN_SAMPLES)..];
        let first = (SMART_TURN_SAMPLES - self.pos).min(chunk.len());
        self.ring[self.pos..self.pos + first].copy_from_slice(&chunk[..first]);
        self.ring[..chunk.len() - first].copy_from_slice(&chunk[first..]);
        self.pos = (self.pos + chunk.len()) % SMART_TURN_SAMPLES;
        self.held = (self.held + chunk.len()).min(SMART_TURN_SAMPLES);
        Ok(())
    }

    /// Samples held (at most 128 000).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Smart Turn's `input_features` (`[80][800]`) for the audio held now, into `out`.
    pub fn features_into(&mut self, out: &mut [f32]) -> Result<(), KernelError> {
        self.linear.clear();
        let start = (self.pos + SMART_TURN_SAMPLES - self.held) % SMART_TURN_SAMPLES;
        if start + self.held <= SMART_TURN_SAMPLES {
            self.linear
                .extend_from_slice(&self.ring[start..start + self.held]);
        } else {
            self.linear.extend_from_slice(&self.ring[start..]);
            self.linear.extend_from_slice(&self.ring[..self.pos]);
        }
        self.features.smart_turn_into(&self.linear, out)
    }

    /// Forgets the audio (a new turn).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_equals_the_plain_code_bit_for_bit() {
        // Lengths around the 32- and 8-value blocks; values from an LCG in −12..4 with NaN,
        // ±∞ and ±0 put in, and the maximum in a block or in the remainder.
        let mut state = 7u32;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 16.0 - 12.0
        };
        let specials = [
            f32::NAN,
            -f32::NAN,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 40, 71, 240_000] {
            for special in [None, Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)] {
                let mut raw: Vec<f32> = (0..len).map(|_| next()).collect();
                if let Some(s) = special
                    && len > 0
                {
                    raw[len / 3] = specials[s];
                    raw[len - 1] = specials[s];
                }
                let mut want = raw.clone();
                normalize_plain(&mut want);
                whisper_normalize(&mut raw);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&raw), bits(&want), "len {len}, special {special:?}");
            }
        }
        // All NaN: the max stays −∞, so every value becomes −∞ (the floor), on both.
        let mut raw = vec![f32::NAN; 40];
        whisper_normalize(&mut raw);
        assert!(raw.iter().all(|&v| v == f32::NEG_INFINITY));
    }

    #[test]
    fn smart_turn_normalisation_same_bits_on_every_build_zero_mean_and_the_expected_variance() {
        // A tone with an offset over noise, after zeros (a turn shorter than 8 s), and with
        // lengths that leave remainders of the 16 partial sums.
        let mut state = 99u32;
        for len in [0, 1, 15, 17, 1000, 64_001, 128_000] {
            let tail: Vec<f32> = (0..len)
                .map(|i| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    0.25 + (i as f32 * 0.05).sin() * 0.5 + (state >> 8) as f32 * 1e-8
                })
                .collect();
            let mut got = vec![f32::NAN; SMART_TURN_SAMPLES];
            let mut want = vec![f32::NAN; SMART_TURN_SAMPLES];
            normalize_turn(&tail, &mut got);
            normalize_turn_plain(&tail, &mut want);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "len {len}");
            // The result's own mean and variance, in f64: 0, and v / (v + 1e-7) for the
            // window's variance v (1 unless v is tiny: one sample among zeros).
            let stats = |x: &mut dyn Iterator<Item = f64>| {
                let x: Vec<f64> = x.collect();
                let mean = x.iter().sum::<f64>() / x.len() as f64;
                let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
                (mean, var)
            };
            let zeros = SMART_TURN_SAMPLES - len;
            let (_, v) = stats(
                &mut std::iter::repeat_n(0.0, zeros).chain(tail.iter().map(|&x| f64::from(x))),
            );
            let (mean, var) = stats(&mut got.iter().map(|&x| f64::from(x)));
            let want_var = v / (v + NORM_VARIANCE_EPS);
            assert!(mean.abs() < 1e-5, "len {len}: mean {mean}");
            assert!(
                (var - want_var).abs() < 1e-4 * want_var.max(1e-3),
                "len {len}: variance {var}, want {want_var}"
            );
            if len == 0 {
                assert!(got.iter().all(|&v| v == 0.0), "silence stays 0");
            }
        }
    }

    #[test]
    fn offline_frames_in_place_equal_frames_of_the_padded_copy() {
        // `raw_into` reads batches within the signal in place and copies only those that
        // reach the padding; against every batch read from one whole padded copy (as it was
        // built before): signals shorter than a batch, a window's worth, not a multiple of
        // the hop, zero-extended (n_frames beyond the signal) and trimmed.
        let signal: Vec<f32> = (0..20_000)
            .map(|i| (i as f32 * 0.037).sin() * 0.4 + ((i * 7919 % 997) as f32 / 997.0 - 0.5) * 0.1)
            .collect();
        for (len, n_frames) in [
            (0, 3),
            (1, 1),
            (399, 2),
            (401, 30),
            (3_840, 24),
            (3_850, 25),
            (7_777, 48),
            (7_777, 60),
            (20_000, 100),
            (20_000, 125),
        ] {
            let n = n_frames * WHISPER_HOP;
            let used = &signal[..len.min(n)];
            let mut got = vec![f32::NAN; WHISPER_N_MELS * n_frames];
            let mut offline = WhisperLogMel::new();
            offline.raw_into(used, n, n_frames, &mut got);

            let sample = |i: usize| used.get(i).copied().unwrap_or(0.0);
            let padded: Vec<f32> = (0..n + 2 * PAD)
                .map(|p| sample(reflect_index(p as isize - PAD as isize, n)))
                .collect();
            let mut core = FrameCore::new();
            let mut want = vec![f32::NAN; WHISPER_N_MELS * n_frames];
            for t0 in (0..n_frames).step_by(LANES) {
                let count = (n_frames - t0).min(LANES);
                let rows = core.rows(Region::one(&padded[t0 * WHISPER_HOP..]), count);
                for (row, d) in rows.rows().zip(want.chunks_exact_mut(n_frames)) {
                    d[t0..t0 + count].copy_from_slice(row);
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "len {len}, {n_frames} frames");
        }
    }
}
