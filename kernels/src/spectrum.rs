//! Shared pieces of the audio front-ends: the Hann window, one frame's spectrum through a real
//! FFT, and a Slaney mel filterbank stored sparsely.
//!
//! All arithmetic is `f32`. Tables (window, filterbank) are built in `f64` and rounded once,
//! as numpy/librosa build them.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Which spectrum a frame is reduced to before the mel filterbank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpectrumKind {
    /// |X|², as Whisper uses.
    Power,
    /// |X|, as the dMel recipe (ParallelWaveGAN-style log-mel) uses.
    Magnitude,
}

/// Periodic Hann window of `len` samples (`torch.hann_window`, `np.hanning(len + 1)[:-1]`).
pub fn periodic_hann(len: usize) -> Vec<f32> {
    (0..len)
        .map(|n| {
            let phase = 2.0 * std::f64::consts::PI * n as f64 / len as f64;
            (0.5 - 0.5 * phase.cos()) as f32
        })
        .collect()
}

/// One frame in, one spectrum out; owns every buffer it needs, so [`FrameSpectrum::compute`]
/// does not allocate.
pub(crate) struct FrameSpectrum {
    fft: Arc<dyn RealToComplex<f32>>,
    /// Window of `n_fft` taps: the analysis window centred, zeros around it (librosa's rule
    /// when the window is shorter than the FFT).
    window: Vec<f32>,
    /// Offset of the frame inside the FFT input (non-zero only when window < n_fft).
    offset: usize,
    win_len: usize,
    input: Vec<f32>,
    output: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    spectrum: Vec<f32>,
    kind: SpectrumKind,
}

impl FrameSpectrum {
    /// `win_len` ≤ `n_fft`, both ≥ 2 (checked by the callers' configs).
    pub(crate) fn new(win_len: usize, n_fft: usize, kind: SpectrumKind) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n_fft);
        let offset = (n_fft - win_len) / 2;
        let mut window = vec![0.0; n_fft];
        window[offset..offset + win_len].copy_from_slice(&periodic_hann(win_len));
        let input = fft.make_input_vec();
        let output = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        FrameSpectrum {
            spectrum: vec![0.0; output.len()],
            fft,
            window,
            offset,
            win_len,
            input,
            output,
            scratch,
            kind,
        }
    }

    /// Number of frequency bins, `n_fft / 2 + 1`.
    pub(crate) fn bins(&self) -> usize {
        self.spectrum.len()
    }

    /// Windows `frame` (exactly `win_len` samples), transforms it and returns the spectrum.
    pub(crate) fn compute(&mut self, frame: &[f32]) -> &[f32] {
        debug_assert_eq!(frame.len(), self.win_len);
        let window = &self.window[self.offset..self.offset + self.win_len];
        let dst = &mut self.input[self.offset..self.offset + self.win_len];
        for ((d, &x), &w) in dst.iter_mut().zip(frame).zip(window) {
            *d = x * w;
        }
        if self.offset > 0 {
            // The FFT uses its input as scratch: restore the zero margins every time.
            self.input[..self.offset].fill(0.0);
            self.input[self.offset + self.win_len..].fill(0.0);
        }
        // Lengths are fixed at construction, so this cannot fail; keep the old spectrum if it did.
        if self
            .fft
            .process_with_scratch(&mut self.input, &mut self.output, &mut self.scratch)
            .is_err()
        {
            return &self.spectrum;
        }
        match self.kind {
            SpectrumKind::Power => {
                for (s, c) in self.spectrum.iter_mut().zip(&self.output) {
                    *s = c.re * c.re + c.im * c.im;
                }
            }
            SpectrumKind::Magnitude => {
                for (s, c) in self.spectrum.iter_mut().zip(&self.output) {
                    *s = (c.re * c.re + c.im * c.im).sqrt();
                }
            }
        }
        &self.spectrum
    }
}

/// Real floating-point operations of one real FFT of length `n`, by the usual convention
/// `2.5 n log2 n` (half of a complex FFT's `5 n log2 n`). Used to report achieved FLOP rates.
pub fn real_fft_flops(n: usize) -> f64 {
    let n = n as f64;
    2.5 * n * n.log2()
}

/// Hertz to mel on the Slaney scale (librosa's default, `htk=False`).
pub fn hz_to_mel_slaney(hz: f64) -> f64 {
    let min_log_hz = 1000.0;
    let min_log_mel = 15.0;
    let logstep = 27.0 / 6.4f64.ln();
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() * logstep
    } else {
        3.0 * hz / 200.0
    }
}

/// Mel to hertz on the Slaney scale.
pub fn mel_to_hz_slaney(mel: f64) -> f64 {
    let min_log_hz = 1000.0;
    let min_log_mel = 15.0;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// A triangular mel filterbank on the Slaney scale with Slaney area normalisation, the one
/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` returns. Stored sparsely: each filter
/// keeps only its non-zero run of bins.
#[derive(Debug, Clone)]
pub struct MelFilterbank {
    starts: Vec<usize>,
    ends: Vec<usize>,
    /// Weights of filter m for bins `starts[m]..ends[m]`, at `offsets[m]..`.
    offsets: Vec<usize>,
    weights: Vec<f32>,
    bins: usize,
}

impl MelFilterbank {
    /// Builds the filterbank for `bins` = n_fft/2 + 1 frequency bins spanning 0..sr/2.
    pub fn slaney(sample_rate: f64, bins: usize, n_mels: usize, fmin: f64, fmax: f64) -> Self {
        let mel_min = hz_to_mel_slaney(fmin);
        let mel_max = hz_to_mel_slaney(fmax);
        // Same rounding as `np.linspace`: start + i·step, with the last point set exactly.
        let step = (mel_max - mel_min) / (n_mels + 1) as f64;
        let points: Vec<f64> = (0..n_mels + 2)
            .map(|i| {
                let mel = if i == n_mels + 1 {
                    mel_max
                } else {
                    i as f64 * step + mel_min
                };
                mel_to_hz_slaney(mel)
            })
            .collect();
        let nyquist = sample_rate / 2.0;
        let bin_hz = |k: usize| nyquist * k as f64 / (bins - 1) as f64;
        let mut starts = Vec::with_capacity(n_mels);
        let mut ends = Vec::with_capacity(n_mels);
        let mut offsets = Vec::with_capacity(n_mels);
        let mut weights = Vec::new();
        for m in 0..n_mels {
            let (lower, centre, upper) = (points[m], points[m + 1], points[m + 2]);
            let enorm = 2.0 / (upper - lower);
            let row: Vec<f64> = (0..bins)
                .map(|k| {
                    let f = bin_hz(k);
                    let down = (f - lower) / (centre - lower);
                    let up = (upper - f) / (upper - centre);
                    down.min(up).max(0.0) * enorm
                })
                .collect();
            let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = row.iter().rposition(|&w| w > 0.0).map_or(first, |i| i + 1);
            starts.push(first);
            ends.push(last);
            offsets.push(weights.len());
            weights.extend(row[first..last].iter().map(|&w| w as f32));
        }
        MelFilterbank {
            starts,
            ends,
            offsets,
            weights,
            bins,
        }
    }

    /// Number of mel channels.
    pub fn n_mels(&self) -> usize {
        self.starts.len()
    }

    /// Number of frequency bins it expects.
    pub fn bins(&self) -> usize {
        self.bins
    }

    /// Number of non-zero weights (multiply-adds per frame).
    pub fn nonzeros(&self) -> usize {
        self.weights.len()
    }

    /// The dense `[n_mels][bins]` matrix, for inspection and tests.
    pub fn dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.n_mels() * self.bins];
        for m in 0..self.n_mels() {
            let w = &self.weights[self.offsets[m]..self.offsets[m] + self.ends[m] - self.starts[m]];
            out[m * self.bins + self.starts[m]..m * self.bins + self.ends[m]].copy_from_slice(w);
        }
        out
    }

    /// `out[m] = Σ_k W[m][k] · spectrum[k]`.
    pub fn apply(&self, spectrum: &[f32], out: &mut [f32]) {
        for (m, o) in out.iter_mut().enumerate().take(self.starts.len()) {
            let (s, e) = (self.starts[m], self.ends[m]);
            let w = &self.weights[self.offsets[m]..self.offsets[m] + (e - s)];
            *o = w.iter().zip(&spectrum[s..e]).map(|(a, b)| a * b).sum();
        }
    }
}
