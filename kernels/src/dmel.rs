//! dMel: discretised log-mel, after apple/dmel ("dMel: Speech Tokenization made Simple").
//!
//! Recipe: 16 kHz; periodic Hann window of 50 ms (800 samples), FFT of 800; magnitude spectrum
//! |X|; 80 Slaney mel filters over 80–7600 Hz with Slaney area normalisation (librosa's
//! `filters.mel`, the ParallelWaveGAN log-mel that dMel builds on); `log10(max(mel, 1e-10))`
//! clipped to [-7, 2]; quantised to 16 levels whose centres are `-7 + k · 9/15`, k = 0..15
//! (nearest centre, ties to even). The step is configurable; the default 12.5 ms (200 samples)
//! puts exactly 16 frames in a 200 ms micro-turn.
//!
//! Framing is causal, for streaming: frame `t` covers samples `(t+1)·hop − window ..
//! (t+1)·hop`, zeros before the stream start. So a frame is ready the moment its last hop of
//! samples has arrived (no look-ahead), and every `hop` samples give one frame: a micro-turn of
//! 3200 samples gives 16 frames, whatever the chunking.

use crate::error::{KernelError, check_finite};
use crate::framer::Framer;
use crate::spectrum::{FrameSpectrum, MelFilterbank, SpectrumKind};

/// The dMel parameters. [`DmelConfig::default`] is the apple/dmel recipe with a 12.5 ms step.
#[derive(Debug, Clone, PartialEq)]
pub struct DmelConfig {
    /// Input sample rate; the recipe is defined at 16 000 Hz only.
    pub sample_rate: u32,
    /// Analysis window in samples (800 = 50 ms).
    pub window: usize,
    /// FFT size, ≥ `window` (the window is centred in it, zeros around, as librosa does).
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
}

impl Default for DmelConfig {
    fn default() -> Self {
        DmelConfig {
            sample_rate: 16_000,
            window: 800,
            n_fft: 800,
            hop: 200,
            n_mels: 80,
            fmin: 80.0,
            fmax: 7600.0,
            log_min: -7.0,
            log_max: 2.0,
            levels: 16,
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
        if self.window < 2 || self.window > self.n_fft || self.n_fft > 1 << 16 {
            return bad(format!(
                "dMel window {} and n_fft {} must satisfy 2 <= window <= n_fft <= 65536",
                self.window, self.n_fft
            ));
        }
        if self.hop == 0 || self.hop > self.window {
            return bad(format!(
                "dMel hop {} must be between 1 and the window {}",
                self.hop, self.window
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
    spectrum: FrameSpectrum,
    mel: MelFilterbank,
    framer: Framer,
    logmel: Vec<f32>,
    levels: Vec<u8>,
    inv_step: f32,
}

impl DmelStream {
    /// A stream with `config` (see [`DmelConfig::validate`] for what is refused).
    pub fn new(config: DmelConfig) -> Result<Self, KernelError> {
        config.validate()?;
        let spectrum = FrameSpectrum::new(config.window, config.n_fft, SpectrumKind::Magnitude);
        let mel = MelFilterbank::slaney(
            f64::from(config.sample_rate),
            spectrum.bins(),
            config.n_mels,
            config.fmin,
            config.fmax,
        );
        let mut stream = DmelStream {
            spectrum,
            mel,
            framer: Framer::new(config.window, config.hop),
            logmel: vec![0.0; config.n_mels],
            levels: vec![0; config.n_mels],
            inv_step: 1.0 / config.level_step(),
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
            config,
            spectrum,
            mel,
            framer,
            logmel,
            levels,
            inv_step,
        } = self;
        let (lo, hi, top) = (config.log_min, config.log_max, (config.levels - 1) as f32);
        let inv_step = *inv_step;
        Ok(framer.push(chunk, |frame| {
            let magnitude = spectrum.compute(frame);
            mel.apply(magnitude, logmel);
            for (l, q) in logmel.iter_mut().zip(levels.iter_mut()) {
                *l = l.max(1e-10).log10().clamp(lo, hi);
                *q = ((*l - lo) * inv_step).round_ties_even().clamp(0.0, top) as u8;
            }
            sink(levels, logmel);
        }))
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

    /// Forgets the stream: the next frame again sees zeros before the start.
    pub fn reset(&mut self) {
        self.framer.reset();
        let history = self.config.window - self.config.hop;
        let zeros = [0.0f32; 256];
        let mut left = history;
        while left > 0 {
            let n = left.min(zeros.len());
            self.framer.push(&zeros[..n], |_| {});
            left -= n;
        }
    }
}

/// dMel levels of a whole signal with the default recipe: `frames × 80` values, frame-major.
/// The same as pushing the signal into a [`DmelStream`] in any chunks.
pub fn dmel(samples: &[f32]) -> Result<Vec<u8>, KernelError> {
    let mut stream = DmelStream::new(DmelConfig::default())?;
    let mut out = Vec::with_capacity(samples.len() / 200 * 80);
    stream.push(samples, &mut |f| out.extend_from_slice(f))?;
    Ok(out)
}
