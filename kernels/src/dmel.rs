//! dMel: discretised log-mel, after apple/dmel ("dMel: Speech Tokenization made Simple",
//! package `dmel`: `LogMelFbank` + `DiscretizedLogMelFbank`).
//!
//! Recipe (apple/dmel's defaults and example): 16 kHz; periodic Hann window of 50 ms
//! (800 samples) centred in an FFT of 1024; magnitude `sqrt(max(|X|², 1e-10))`; 80 Slaney mel
//! filters over 80–7600 Hz with Slaney area normalisation (`librosa.filters.mel`);
//! `log10(max(mel, 1e-10))` clipped to [-7, 2]; 16 levels (4 bits) with centres
//! `-7 + k · 0.6`, k = 0..15, each value taking the nearest centre (the lower one on an exact
//! tie, as `argmin` does). The step is configurable; the default 12.5 ms (200 samples) puts
//! exactly 16 frames in a 200 ms micro-turn.
//!
//! One deliberate difference, for streaming: **framing is causal**. apple/dmel frames with
//! `torch.stft(center=True)`, so its frame t is centred on sample `t·hop` and needs 400 samples
//! of look-ahead. Here frame `t` covers samples `(t+1)·hop − 800 .. (t+1)·hop` (centred on
//! `(t−1)·hop`, zeros before the stream start): it is ready the moment its last hop of samples
//! has arrived, and every `hop` samples give one frame, so a micro-turn of 3200 samples gives 16
//! frames whatever the chunking. Away from the stream start our frame `t + 1` is apple's frame
//! `t`, computed from the same samples with the same window (the reference test checks this).
//! [`DmelFraming::Centered`] gives apple's framing exactly, at the cost of 25 ms of look-ahead.

use crate::batch::{BatchShape, BatchSpectrum, LANES};
use crate::centered::CenteredFramer;
use crate::error::{KernelError, check_finite};
use crate::framer::{Framer, Region};
use crate::spectrum::{FrameSpectrum, MelFilterbank, SpectrumKind, has_avx2, log10_floor_in_place};

/// The dMel parameters. [`DmelConfig::default`] is the apple/dmel recipe with a 12.5 ms step.
#[derive(Debug, Clone, PartialEq)]
pub struct DmelConfig {
    /// Input sample rate; the recipe is defined at 16 000 Hz only.
    pub sample_rate: u32,
    /// Analysis window in samples (800 = 50 ms).
    pub window: usize,
    /// FFT size, even and ≥ `window` (the window is centred in it, zeros around, as
    /// `torch.stft` does); apple/dmel uses 1024.
    pub n_fft: usize,
    /// Step between frames in samples (200 = 12.5 ms); 1 ≤ hop ≤ window.
    pub hop: usize,
    /// Mel channels.
    pub n_mels: usize,
    /// Lowest filter edge, Hz.
    pub fmin: f64,
    /// Highest filter edge, Hz (≤ sample_rate / 2).
    pub fmax: f64,
    /// Lower clip of log10 mel (also the centre of level 0).
    pub log_min: f32,
    /// Upper clip of log10 mel (also the centre of the top level).
    pub log_max: f32,
    /// Number of levels, 2..=256.
    pub levels: usize,
    /// Where frames sit in time: [`DmelFraming::Causal`] (default, no look-ahead) or
    /// [`DmelFraming::Centered`] (apple/dmel's own `torch.stft(center=True)` framing).
    pub framing: DmelFraming,
}

/// How dMel frames are placed on the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmelFraming {
    /// Frame `t` covers samples `(t+1)·hop − window .. (t+1)·hop`, zeros before the start: ready
    /// as soon as its last hop is in (no look-ahead); `hop` samples give one frame.
    #[default]
    Causal,
    /// apple/dmel's framing exactly: frame `t` is centred on sample `t·hop`, reflect padding at
    /// both ends, `1 + n / hop` frames for `n` samples. Needs `window / 2` samples of
    /// look-ahead (25 ms), and [`DmelStream::finish`] for the last frames. `hop` must be less
    /// than `window / 2`.
    Centered,
}

impl Default for DmelConfig {
    fn default() -> Self {
        DmelConfig {
            sample_rate: 16_000,
            window: 800,
            n_fft: 1024,
            hop: 200,
            n_mels: 80,
            fmin: 80.0,
            fmax: 7600.0,
            log_min: -7.0,
            log_max: 2.0,
            levels: 16,
            framing: DmelFraming::Causal,
        }
    }
}

impl DmelConfig {
    /// Checks every field; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), KernelError> {
        if self.sample_rate != 16_000 {
            return Err(KernelError::SampleRate {
                got: self.sample_rate,
                expected: "16000 (resample upstream)",
            });
        }
        let bad = |msg: String| Err(KernelError::Config(msg));
        if self.window < 2
            || self.window > self.n_fft
            || self.n_fft > 1 << 16
            || !self.n_fft.is_multiple_of(2)
        {
            return bad(format!(
                "dMel window {} and n_fft {} must satisfy 2 <= window <= n_fft <= 65536, n_fft even",
                self.window, self.n_fft
            ));
        }
        if self.hop == 0 || self.hop > self.window {
            return bad(format!(
                "dMel hop {} must be between 1 and the window {}",
                self.hop, self.window
            ));
        }
        if self.framing == DmelFraming::Centered && 2 * self.hop >= self.window {
            return bad(format!(
                "dMel centred framing needs hop {} < window / 2 = {}",
                self.hop,
                self.window / 2
            ));
        }
        if self.n_mels == 0 || self.n_mels > self.n_fft / 2 {
            return bad(format!(
                "dMel n_mels {} must be between 1 and n_fft / 2 = {}",
                self.n_mels,
                self.n_fft / 2
            ));
        }
        let nyquist = f64::from(self.sample_rate) / 2.0;
        if !(self.fmin >= 0.0 && self.fmin < self.fmax && self.fmax <= nyquist) {
            return bad(format!(
                "dMel band {}..{} Hz must satisfy 0 <= fmin < fmax <= {nyquist}",
                self.fmin, self.fmax
            ));
        }
        if !(self.log_min.is_finite() && self.log_max.is_finite() && self.log_min < self.log_max) {
            return bad(format!(
                "dMel clip range [{}, {}] must be finite and increasing",
                self.log_min, self.log_max
            ));
        }
        if !(2..=256).contains(&self.levels) {
            return bad(format!("dMel levels {} must be in 2..=256", self.levels));
        }
        Ok(())
    }

    /// Distance between level centres in log10 units.
    pub fn level_step(&self) -> f32 {
        (self.log_max - self.log_min) / (self.levels - 1) as f32
    }

    /// The log10 mel value a level stands for (its centre), for decoders.
    pub fn dequantize(&self, level: u8) -> f32 {
        self.log_min + f32::from(level) * self.level_step()
    }

    /// Frames in `samples` of audio at this step (`samples / hop`).
    pub fn frames_in(&self, samples: usize) -> usize {
        samples / self.hop
    }
}

/// Streaming dMel. Emits, per frame, `n_mels` levels (and on request the clipped log10 mel).
pub struct DmelStream {
    config: DmelConfig,
    framer: Framing,
    frame_core: DmelFrame,
}

enum Framing {
    Causal(Framer),
    Centered(CenteredFramer),
}

/// The per-frame part: window → |X| → mel → log10 → clip → levels. Frames go through
/// [`BatchSpectrum`] up to [`LANES`] (24) at a time (one per SIMD lane) where `n_fft / 2` has
/// no prime factor above 5 (the default 512 = 8·8·8), else one by one through
/// [`FrameSpectrum`].
struct DmelFrame {
    batch: Option<BatchSpectrum>,
    hop: usize,
    win: usize,
    spectrum: FrameSpectrum,
    mel: MelFilterbank,
    logmel: Vec<f32>,
    /// A frame of the per-frame path that straddles the two slices of its region.
    frame_buf: Vec<f32>,
    /// The last batch's frames, frame-major.
    frames: Vec<f32>,
    levels: Vec<u8>,
    /// The last batch's levels, frame-major.
    batch_levels: Vec<u8>,
    log_min: f32,
    log_max: f32,
    top: f32,
    inv_step: f32,
    avx2: bool,
}

impl DmelFrame {
    /// `count` frames, frame `f` at samples `f·hop..f·hop + window` of `region`;
    /// `emit(levels, logmel)` for each in order.
    fn frames(&mut self, region: Region<'_>, count: usize, emit: impl FnMut(&[u8], &[f32])) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is set only where the CPU was detected to have AVX2 and FMA.
            unsafe { self.frames_avx2(region, count, emit) };
            return;
        }
        self.frames_body(region, count, emit);
    }

    /// The quantisation's `ceil` is one instruction with SSE4.1, a libm call without.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn frames_avx2(&mut self, region: Region<'_>, count: usize, emit: impl FnMut(&[u8], &[f32])) {
        self.frames_body(region, count, emit);
    }

    #[inline(always)]
    fn frames_body(
        &mut self,
        region: Region<'_>,
        count: usize,
        mut emit: impl FnMut(&[u8], &[f32]),
    ) {
        let Some(mut batch) = self.batch.take() else {
            for f in 0..count {
                let start = f * self.hop;
                match region.contiguous(start, self.win) {
                    Some(frame) => self.frame(frame),
                    None => {
                        let mut frame = std::mem::take(&mut self.frame_buf);
                        region.copy_to(start, &mut frame);
                        self.frame(&frame);
                        self.frame_buf = frame;
                    }
                }
                emit(&self.levels, &self.logmel);
            }
            return;
        };
        batch.run(region, count);
        let n_mels = self.logmel.len();
        let values = &mut self.frames[..count * n_mels];
        batch.frames_into(count, values);
        let levels = &mut self.batch_levels[..count * n_mels];
        quantise(
            self.log_min,
            self.log_max,
            self.top,
            self.inv_step,
            values,
            levels,
        );
        for (l, v) in levels.chunks_exact(n_mels).zip(values.chunks_exact(n_mels)) {
            emit(l, v);
        }
        self.batch = Some(batch);
    }

    fn frame(&mut self, frame: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is set only where the CPU was detected to have AVX2 and FMA.
            unsafe { self.frame_avx2(frame) };
            return;
        }
        self.frame_body(frame);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn frame_avx2(&mut self, frame: &[f32]) {
        self.frame_body(frame);
    }

    #[inline(always)]
    fn frame_body(&mut self, frame: &[f32]) {
        let magnitude = self.spectrum.compute(frame);
        self.mel.apply(magnitude, &mut self.logmel);
        log10_floor_in_place(&mut self.logmel, 1e-10);
        self.quantise();
    }

    /// Clips `logmel` and quantises it into `levels`.
    #[inline(always)]
    fn quantise(&mut self) {
        quantise(
            self.log_min,
            self.log_max,
            self.top,
            self.inv_step,
            &mut self.logmel,
            &mut self.levels,
        );
    }
}

/// Clips `values` to `[lo, hi]` in place and writes the nearest level of each to `levels`.
/// Branch-free, so that it vectorises.
#[inline(always)]
fn quantise(lo: f32, hi: f32, top: f32, inv_step: f32, values: &mut [f32], levels: &mut [u8]) {
    for (l, q) in values.iter_mut().zip(levels.iter_mut()) {
        // `max` then `min` (not `clamp`): a NaN becomes `lo` instead of staying NaN.
        *l = l.max(lo).min(hi);
        // Nearest centre, the lower one on an exact tie: ceil(t − ½), in [0, top] (top < 256).
        let t = ((*l - lo) * inv_step - 0.5).ceil().max(0.0).min(top);
        // SAFETY: `t` is finite and in [0, 255] (the line above), so the conversion is exact.
        *q = unsafe { t.to_int_unchecked::<i32>() } as u8;
    }
}

impl DmelStream {
    /// A stream with `config` (see [`DmelConfig::validate`] for what is refused).
    pub fn new(config: DmelConfig) -> Result<Self, KernelError> {
        config.validate()?;
        let spectrum = FrameSpectrum::build(config.window, config.n_fft, SpectrumKind::Magnitude);
        let mel = MelFilterbank::slaney(
            f64::from(config.sample_rate),
            spectrum.bins(),
            config.n_mels,
            config.fmin,
            config.fmax,
        );
        let mut stream = DmelStream {
            framer: match config.framing {
                DmelFraming::Causal => Framing::Causal(Framer::new(config.window, config.hop)),
                DmelFraming::Centered => Framing::Centered(CenteredFramer::new(
                    config.window / 2,
                    config.window,
                    config.hop,
                )),
            },
            frame_core: DmelFrame {
                batch: BatchSpectrum::new(
                    BatchShape {
                        win_len: config.window,
                        hop: config.hop,
                        n_fft: config.n_fft,
                        kind: SpectrumKind::Magnitude,
                    },
                    &mel,
                ),
                hop: config.hop,
                win: config.window,
                spectrum,
                mel,
                logmel: vec![0.0; config.n_mels],
                frame_buf: vec![0.0; config.window],
                frames: vec![0.0; LANES * config.n_mels],
                levels: vec![0; config.n_mels],
                batch_levels: vec![0; LANES * config.n_mels],
                log_min: config.log_min,
                log_max: config.log_max,
                top: (config.levels - 1) as f32,
                inv_step: 1.0 / config.level_step(),
                avx2: has_avx2(),
            },
            config,
        };
        stream.reset();
        Ok(stream)
    }

    /// The configuration.
    pub fn config(&self) -> &DmelConfig {
        &self.config
    }

    /// Levels per frame (`n_mels`).
    pub fn frame_len(&self) -> usize {
        self.config.n_mels
    }

    /// Feeds samples; for each completed frame calls `sink(levels, log10_mel)` with `n_mels`
    /// levels and the clipped log10 mel they were quantised from. Returns the frame count.
    /// An empty chunk emits nothing; a chunk with NaN, infinity or a sample beyond ±1e9 is
    /// rejected whole and the stream is unchanged.
    pub fn push_with_logmel(
        &mut self,
        chunk: &[f32],
        sink: &mut dyn FnMut(&[u8], &[f32]),
    ) -> Result<usize, KernelError> {
        check_finite(chunk)?;
        let DmelStream {
            framer, frame_core, ..
        } = self;
        let on_batch =
            |region: Region<'_>, count: usize| frame_core.frames(region, count, &mut *sink);
        Ok(match framer {
            Framing::Causal(f) => f.push_batched(chunk, LANES, on_batch),
            Framing::Centered(f) => f.push(chunk, on_batch),
        })
    }

    /// Ends the stream and resets it. With [`DmelFraming::Centered`], emits the frames that
    /// reach into the end's reflect padding, so that `1 + n / hop` frames have come out for `n`
    /// samples (as `torch.stft(center=True)`); with [`DmelFraming::Causal`] every frame is
    /// already out and this emits nothing. Returns the number of frames emitted.
    pub fn finish_with_logmel(&mut self, sink: &mut dyn FnMut(&[u8], &[f32])) -> usize {
        let hop = self.config.hop;
        let DmelStream {
            framer, frame_core, ..
        } = self;
        let emitted = match framer {
            Framing::Causal(_) => 0,
            Framing::Centered(f) => {
                let n = f.samples_in();
                let total = if n == 0 { 0 } else { 1 + n / hop };
                f.finish(total, |region, count| {
                    frame_core.frames(region, count, &mut *sink)
                })
            }
        };
        self.reset();
        emitted
    }

    /// [`DmelStream::finish_with_logmel`], levels only.
    pub fn finish(&mut self, sink: &mut dyn FnMut(&[u8])) -> usize {
        self.finish_with_logmel(&mut |levels, _| sink(levels))
    }

    /// Feeds samples; calls `sink` with each completed frame's levels. See
    /// [`DmelStream::push_with_logmel`].
    pub fn push(
        &mut self,
        chunk: &[f32],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, KernelError> {
        self.push_with_logmel(chunk, &mut |levels, _| sink(levels))
    }

    /// Forgets the stream: the next frame again starts from the stream's start (zeros before it
    /// with causal framing, reflect padding with centred framing).
    pub fn reset(&mut self) {
        match &mut self.framer {
            Framing::Causal(framer) => {
                framer.reset();
                let history = self.config.window - self.config.hop;
                let zeros = [0.0f32; 256];
                let mut left = history;
                while left > 0 {
                    let n = left.min(zeros.len());
                    framer.push(&zeros[..n], |_| {});
                    left -= n;
                }
            }
            Framing::Centered(framer) => framer.reset(),
        }
    }
}

/// dMel levels of a whole signal with the default recipe (causal framing): `frames × 80`
/// values, frame-major. The same as pushing the signal into a [`DmelStream`] in any chunks.
pub fn dmel(samples: &[f32]) -> Result<Vec<u8>, KernelError> {
    let mut stream = DmelStream::new(DmelConfig::default())?;
    let mut out = Vec::with_capacity(samples.len() / 200 * 80);
    stream.push(samples, &mut |f| out.extend_from_slice(f))?;
    Ok(out)
}
