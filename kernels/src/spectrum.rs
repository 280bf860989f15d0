//! Shared pieces of the audio front-ends: the Hann window, one frame's spectrum through a real
//! FFT, and a Slaney mel filterbank stored sparsely.
//!
//! All arithmetic is `f32`. Tables (window, filterbank) are built in `f64` and rounded once,
//! as numpy/librosa build them.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::error::KernelError;

/// Which spectrum a frame is reduced to before the mel filterbank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpectrumKind {
    /// |X|², as Whisper uses.
    Power,
    /// |X| = sqrt(max(|X|², 1e-10)), as apple/dmel's `PowerSpectrum` computes it.
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

/// One frame in, one spectrum out; owns every buffer it needs, so [`FrameSpectrum::compute_checked`]
/// does not allocate.
///
/// The real FFT of even length N is one complex FFT of N/2 (rustfft) on the samples packed as
/// (even, odd) pairs, then a split step done here on separate real/imaginary arrays so that it
/// vectorises, giving `|X[k]|²` (or `|X[k]|`) for k = 0..=N/2 directly.
pub struct FrameSpectrum {
    fft: Arc<dyn Fft<f32>>,
    /// Window of `n_fft` taps: the analysis window centred, zeros around it (librosa's rule
    /// when the window is shorter than the FFT).
    window: Vec<f32>,
    /// Offset of the frame inside the FFT input (non-zero only when window < n_fft).
    offset: usize,
    win_len: usize,
    /// Windowed frame, `n_fft` real values.
    input: Vec<f32>,
    packed: Vec<Complex<f32>>,
    half: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    /// Z[k] and conj(Z[M − k]) for k = 0..=M, split into real and imaginary parts.
    zr: Vec<f32>,
    zi: Vec<f32>,
    br: Vec<f32>,
    bi: Vec<f32>,
    /// Twiddles e^{−2πik/N} = wr + i·wi, k = 0..=M.
    wr: Vec<f32>,
    wi: Vec<f32>,
    /// `bins` values, then zeros up to whole accumulator lanes.
    spectrum: Vec<f32>,
    bins: usize,
    kind: SpectrumKind,
}

impl FrameSpectrum {
    /// A periodic Hann window of `win_len` samples centred in an FFT of `n_fft`.
    /// Needs 2 ≤ `win_len` ≤ `n_fft` ≤ 65 536 and `n_fft` even.
    pub fn new(win_len: usize, n_fft: usize, kind: SpectrumKind) -> Result<Self, KernelError> {
        if !(2..=n_fft).contains(&win_len) || n_fft > 1 << 16 || !n_fft.is_multiple_of(2) {
            return Err(KernelError::Config(format!(
                "window {win_len} and FFT size {n_fft} must satisfy 2 <= window <= n_fft <= 65536 \
                 with n_fft even"
            )));
        }
        Ok(Self::build(win_len, n_fft, kind))
    }

    /// As [`FrameSpectrum::new`], for arguments already checked.
    pub(crate) fn build(win_len: usize, n_fft: usize, kind: SpectrumKind) -> Self {
        let half_len = n_fft / 2;
        let fft = FftPlanner::<f32>::new().plan_fft_forward(half_len);
        let offset = (n_fft - win_len) / 2;
        let mut window = vec![0.0; n_fft];
        window[offset..offset + win_len].copy_from_slice(&periodic_hann(win_len));
        let twiddle = |k: usize| {
            let theta = 2.0 * std::f64::consts::PI * k as f64 / n_fft as f64;
            (theta.cos() as f32, -(theta.sin() as f32))
        };
        let (mut wr, mut wi): (Vec<f32>, Vec<f32>) = (0..=half_len).map(twiddle).unzip();
        // Exact at k = 0 and k = M (sin π is not exactly 0 in floating point).
        (wr[0], wi[0], wr[half_len], wi[half_len]) = (1.0, 0.0, -1.0, 0.0);
        let bins = half_len + 1;
        FrameSpectrum {
            scratch: vec![Complex::default(); fft.get_outofplace_scratch_len()],
            fft,
            window,
            offset,
            win_len,
            input: vec![0.0; n_fft],
            packed: vec![Complex::default(); half_len],
            half: vec![Complex::default(); half_len],
            zr: vec![0.0; bins],
            zi: vec![0.0; bins],
            br: vec![0.0; bins],
            bi: vec![0.0; bins],
            wr,
            wi,
            spectrum: vec![0.0; padded_bins(bins)],
            bins,
            kind,
        }
    }

    /// Number of frequency bins, `n_fft / 2 + 1`.
    pub fn bins(&self) -> usize {
        self.bins
    }

    /// Windows `frame`, transforms it and returns the spectrum: `bins` values, then zero
    /// padding up to a multiple of 8. A frame of the wrong length is a [`KernelError::Size`].
    pub fn compute_checked(&mut self, frame: &[f32]) -> Result<&[f32], KernelError> {
        if frame.len() != self.win_len {
            return Err(KernelError::Size {
                what: "spectrum frame",
                expected: self.win_len,
                got: frame.len(),
            });
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU was just detected to have AVX2 and FMA.
            return Ok(unsafe { self.compute_avx2(frame) });
        }
        Ok(self.compute(frame))
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn compute_avx2(&mut self, frame: &[f32]) -> &[f32] {
        self.compute(frame)
    }

    /// [`FrameSpectrum::compute_checked`] for a frame known to be `win_len` long. Inlined, so
    /// that the per-frame code around it can be compiled for AVX2 (see [`has_avx2`]).
    #[inline(always)]
    pub(crate) fn compute(&mut self, frame: &[f32]) -> &[f32] {
        debug_assert_eq!(frame.len(), self.win_len);
        let window = &self.window[self.offset..self.offset + self.win_len];
        let dst = &mut self.input[self.offset..self.offset + self.win_len];
        for ((d, &x), &w) in dst.iter_mut().zip(frame).zip(window) {
            *d = x * w;
        }
        for (p, pair) in self.packed.iter_mut().zip(self.input.chunks_exact(2)) {
            *p = Complex::new(pair[0], pair[1]);
        }
        self.fft.process_outofplace_with_scratch(
            &mut self.packed,
            &mut self.half,
            &mut self.scratch,
        );
        let m = self.half.len();
        for ((r, i), z) in self.zr.iter_mut().zip(self.zi.iter_mut()).zip(&self.half) {
            *r = z.re;
            *i = z.im;
        }
        (self.zr[m], self.zi[m]) = (self.zr[0], self.zi[0]);
        // B[k] = conj(Z[M − k]): Z reversed.
        let reversed = self.zr.iter().rev().zip(self.zi.iter().rev());
        for ((r, i), (&zr, &zi)) in self.br.iter_mut().zip(self.bi.iter_mut()).zip(reversed) {
            *r = zr;
            *i = -zi;
        }
        let parts = self
            .zr
            .iter()
            .zip(&self.zi)
            .zip(self.br.iter().zip(&self.bi))
            .zip(self.wr.iter().zip(&self.wi));
        let out = &mut self.spectrum[..self.bins];
        // X[k] = E + (−i·w)·D with E = (A + B)/2, D = (A − B)/2, A = Z[k], B = conj(Z[M − k]).
        for (s, (((&ar, &ai), (&br, &bi)), (&wr, &wi))) in out.iter_mut().zip(parts) {
            let (er, ei) = (0.5 * (ar + br), 0.5 * (ai + bi));
            let (dr, di) = (0.5 * (ar - br), 0.5 * (ai - bi));
            let xr = er + wi * dr + wr * di;
            let xi = ei + wi * di - wr * dr;
            *s = xr * xr + xi * xi;
        }
        if self.kind == SpectrumKind::Magnitude {
            // apple/dmel: sqrt(max(|X|², 1e-10)).
            for s in out.iter_mut() {
                *s = s.max(1e-10).sqrt();
            }
        }
        &self.spectrum
    }
}

/// Whether this CPU runs AVX2 with FMA. The per-frame audio code (windowing, the FFT's split
/// step, mel sums, log10) is compiled twice, plain and with AVX2 enabled, and picks at run
/// time. Both give bit-identical results: the same IEEE operations in the same order (Rust never
/// fuses a multiply and an add on its own), only wider.
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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
/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` returns.
///
/// Stored for speed: each filter keeps a run of weights over its non-zero bins, rounded up to a
/// multiple of 8 (zeros around them), so that `MelFilterbank::apply` is a short dot product
/// in whole 8-lane steps that the compiler vectorises.
#[derive(Debug, Clone)]
pub struct MelFilterbank {
    /// First bin of each filter's run.
    starts: Vec<usize>,
    /// Where each filter's weights begin in `weights`; filter m has
    /// `offsets[m + 1] − offsets[m]` weights (a multiple of [`LANES`]).
    offsets: Vec<usize>,
    weights: Vec<f32>,
    bins: usize,
    nonzeros: usize,
}

/// Accumulator lanes of the mel dot products.
const LANES: usize = 8;

/// Spectrum buffer length for `bins` bins: rounded up to whole accumulator lanes.
pub(crate) fn padded_bins(bins: usize) -> usize {
    bins.div_ceil(LANES) * LANES
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
        let padded = padded_bins(bins);
        let mut starts = Vec::with_capacity(n_mels);
        let mut offsets = Vec::with_capacity(n_mels + 1);
        let mut weights = Vec::new();
        let mut nonzeros = 0;
        for m in 0..n_mels {
            let (lower, centre, upper) = (points[m], points[m + 1], points[m + 2]);
            let enorm = 2.0 / (upper - lower);
            let row: Vec<f32> = (0..bins)
                .map(|k| {
                    let f = bin_hz(k);
                    let down = (f - lower) / (centre - lower);
                    let up = (upper - f) / (upper - centre);
                    (down.min(up).max(0.0) * enorm) as f32
                })
                .collect();
            let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = row.iter().rposition(|&w| w > 0.0).map_or(first, |i| i + 1);
            nonzeros += last - first;
            let run = ((last - first).div_ceil(LANES).max(1) * LANES).min(padded);
            // Shift the run left where it would pass the padded end of the spectrum.
            let start = first.min(padded - run);
            offsets.push(weights.len());
            starts.push(start);
            weights.extend((start..start + run).map(|k| row.get(k).copied().unwrap_or(0.0)));
        }
        offsets.push(weights.len());
        MelFilterbank {
            starts,
            offsets,
            weights,
            bins,
            nonzeros,
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

    /// Number of non-zero weights.
    pub fn nonzeros(&self) -> usize {
        self.nonzeros
    }

    /// Multiply-adds per frame as `MelFilterbank::apply` does them (zero padding included).
    pub fn stored_weights(&self) -> usize {
        self.weights.len()
    }

    /// The dense `[n_mels][bins]` matrix, for inspection and tests.
    pub fn dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.n_mels() * self.bins];
        for (m, &start) in self.starts.iter().enumerate() {
            let w = &self.weights[self.offsets[m]..self.offsets[m + 1]];
            let end = (start + w.len()).min(self.bins);
            out[m * self.bins + start..m * self.bins + end].copy_from_slice(&w[..end - start]);
        }
        out
    }

    /// `out[m] = Σ_k W[m][k] · spectrum[k]` for the first `n_mels` values of `out`. `spectrum`
    /// holds `bins` values and is read up to `bins` rounded up to a multiple of 8 (padding
    /// bins have zero weight).
    #[inline(always)]
    pub(crate) fn apply(&self, spectrum: &[f32], out: &mut [f32]) {
        for ((o, &start), bounds) in out
            .iter_mut()
            .zip(&self.starts)
            .zip(self.offsets.windows(2))
        {
            let w = &self.weights[bounds[0]..bounds[1]];
            let s = &spectrum[start..start + w.len()];
            let mut acc = [0.0f32; LANES];
            for (wc, sc) in w.chunks_exact(LANES).zip(s.chunks_exact(LANES)) {
                for j in 0..LANES {
                    acc[j] += wc[j] * sc[j];
                }
            }
            // Pairwise, in a fixed order: the result depends only on the inputs.
            let a = [
                acc[0] + acc[4],
                acc[1] + acc[5],
                acc[2] + acc[6],
                acc[3] + acc[7],
            ];
            *o = (a[0] + a[2]) + (a[1] + a[3]);
        }
    }
}

/// log10 2 split into a part whose products with an exponent are exact (7 significant bits)
/// and the rest (as Cephes `log10f`).
pub(crate) const LG2_HI: f32 = 0.300_781_25;
pub(crate) const LG2_LO: f32 = 2.487_456_7e-4;
/// ln(1 + r) = r + r²·(−1/2 + r·(C[0] + C[1]·r)): the Taylor terms to r⁴, |r| < 0.04.
pub(crate) const LOG1P_C: [f32; 2] = [1.0 / 3.0, -0.25];
/// The table of [`log_split`]: for each sixteenth `j` of the mantissa range [√½, √2) (in bit
/// steps), `1/c` rounded to `f32` (with `c` the interval's geometric middle, and 1 for the
/// interval holding 1), and `log10 c = −log10(1/c)` of that rounded value.
pub(crate) const LOG_INV_C: [f32; 16] = [
    1.383_962_8,
    1.326_577,
    1.273_761_6,
    1.224_991_4,
    1.179_818_9,
    1.137_859_8,
    1.098_783_3,
    1.062_301_8,
    1.028_165_3,
    1.0,
    0.934_573_1,
    0.882_976_95,
    0.836_781_6,
    0.795_181_04,
    0.757_522,
    0.723_269_6,
];
pub(crate) const LOG10_C: [f32; 16] = [
    -0.141_124_4,
    -0.122_732_446,
    -0.105_088_16,
    -0.088_133_05,
    -0.071_815_334,
    -0.056_088_764,
    -0.040_912_032,
    -0.026_247_898,
    -0.012_062_959,
    0.0,
    0.029_386_718,
    0.054_050_636,
    0.077_387_87,
    0.099_533_98,
    0.120_604_76,
    0.140_699_8,
];

/// The bits of √½ (rounded down), where [`log_split`] moves to the next power of two.
pub(crate) const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
/// The mantissa field of an `f32`.
pub(crate) const MANTISSA: i32 = 0x007f_ffff;

/// `(e, m, 1/c, log10 c)` with `x = m · 2^e`, m in [√½, √2), and `c` of the table entry for
/// m's sixteenth of that range ([`LOG_INV_C`], [`LOG10_C`]), for a positive normal `x`:
/// subtracting the bits of √½ carries into the exponent field exactly when the mantissa is
/// below √½'s; the top 4 bits left in the mantissa field pick the entry. Only integer steps
/// and lookups, so every vector build gives the same bits.
#[inline(always)]
pub(crate) fn log_split(x: f32) -> (f32, f32, f32, f32) {
    let i = (x.to_bits() as i32).wrapping_sub(SQRT_HALF_BITS);
    let m = f32::from_bits(((i & MANTISSA) + SQRT_HALF_BITS) as u32);
    let j = ((i & MANTISSA) >> 19) as usize;
    ((i >> 23) as f32, m, LOG_INV_C[j], LOG10_C[j])
}

/// `log10(max(v, floor))` over a slice, in place, for a positive normal `floor`.
///
/// A branch-free form: x = m · 2^e with m in [√½, √2), m = c·(1 + r) with `c` from a
/// 16-entry table (|r| < 0.04, `r = m·(1/c) − 1` in one fused multiply-add), ln(1 + r) by its
/// Taylor terms to r⁴, then log10 x = e·log10 2 + log10 c + log10(e)·ln(1 + r), the large
/// term last and exact but for the final rounding. Eight multiplies or fused multiply-adds per
/// value (the Cephes `logf` polynomial this replaced took fifteen). The difference from
/// `f64::log10` stays below 1.2e-7 · max(1, |log10 x|) (measured 6.8e-8, tested from 1e-10
/// to 3e38), far inside the reference tolerances, and powers of ten come out exact; the result
/// depends only on the value, so streaming and offline stay bit-identical. NaN maps to
/// `log10(floor)`.
#[inline(always)]
pub fn log10_floor_in_place(values: &mut [f32], floor: f32) {
    const LOG10_E: f32 = std::f32::consts::LOG10_E;
    const C: [f32; 2] = LOG1P_C;
    for v in values.iter_mut() {
        // `max` also maps NaN to the floor.
        let (e, m, inv_c, lg_c) = log_split(v.max(floor));
        let r = m.mul_add(inv_c, -1.0);
        let z = r * r;
        let y = C[1].mul_add(r, C[0]).mul_add(r, -0.5) * z;
        let small = LOG10_E.mul_add(r + y, lg_c);
        *v = e.mul_add(LG2_HI, e.mul_add(LG2_LO, small));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is what its doc says: entry `j` covers the mantissas whose bits are the
    /// `j`-th sixteenth above √½'s, `1/c` keeps |r| below 0.04 there (1 exactly for the entry
    /// holding 1), and `log10 c` is that of the rounded `1/c`.
    #[test]
    fn log_table_matches_its_definition() {
        for j in 0..16 {
            let lo = f32::from_bits((SQRT_HALF_BITS + (j << 19)) as u32);
            let hi = f32::from_bits((SQRT_HALF_BITS + ((j + 1) << 19) - 1) as u32);
            let inv_c = LOG_INV_C[j as usize];
            if (lo..=hi).contains(&1.0) {
                assert_eq!(inv_c, 1.0, "entry {j}");
            }
            for m in [lo, hi] {
                assert_eq!(log_split(m).2, inv_c, "entry {j} holds {m}");
                let r = f64::from(m) * f64::from(inv_c) - 1.0;
                assert!(r.abs() < 0.04, "entry {j}: r = {r} at {m}");
            }
            let want = -f64::from(inv_c).log10();
            assert_eq!(LOG10_C[j as usize], want as f32, "entry {j}");
        }
    }

    #[test]
    fn fast_log10_is_accurate_over_the_range() {
        let mut values = Vec::new();
        let mut x = 1e-10f32;
        while x < 1e10 {
            values.push(x);
            x *= 1.000_37;
        }
        use std::f32::consts::{FRAC_1_SQRT_2, SQRT_2};
        values.extend([1.0, 10.0, 0.5, 2.0, FRAC_1_SQRT_2, SQRT_2, 3.0e38]);
        let mut got = values.clone();
        log10_floor_in_place(&mut got, 1e-10);
        let mut worst = 0.0f64;
        for (&x, &g) in values.iter().zip(&got) {
            // Relative to the result's size (an f32 ulp is ~1.2e-7 of it), absolute near zero.
            let want = f64::from(x).log10();
            worst = worst.max((f64::from(g) - want).abs() / want.abs().max(1.0));
        }
        assert!(worst < 1.2e-7, "worst error {worst}");
        // Below the floor, and NaN, map to log10(floor).
        let mut v = [0.0, -1.0, f32::NAN, 1e-12];
        log10_floor_in_place(&mut v, 1e-10);
        for g in v {
            assert!((f64::from(g) + 10.0).abs() < 1e-6, "{g}");
        }
        let mut powers = [1.0f32, 10.0, 100.0];
        log10_floor_in_place(&mut powers, 1e-10);
        assert_eq!(powers[0], 0.0);
        assert!((powers[1] - 1.0).abs() < 2e-7 && (powers[2] - 2.0).abs() < 2e-7);
    }

    #[test]
    fn mel_apply_equals_dense_product() {
        for (bins, n_mels, fmin, fmax) in [(201, 80, 0.0, 8000.0), (401, 80, 80.0, 7600.0)] {
            let fb = MelFilterbank::slaney(16_000.0, bins, n_mels, fmin, fmax);
            let dense = fb.dense();
            let spectrum: Vec<f32> = (0..padded_bins(bins))
                .map(|k| {
                    if k < bins {
                        1.0 + (k as f32 * 0.37).sin()
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut out = vec![0.0; n_mels];
            fb.apply(&spectrum, &mut out);
            for m in 0..n_mels {
                let want: f64 = (0..bins)
                    .map(|k| f64::from(dense[m * bins + k]) * f64::from(spectrum[k]))
                    .sum();
                assert!(
                    (f64::from(out[m]) - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "mel {m}"
                );
                assert!(want > 0.0, "every filter has weight");
            }
        }
    }
}
