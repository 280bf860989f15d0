//! Image front-ends: 40×40 patches for the interaction model, and the EfficientNet-Lite0 input.
//!
//! Frames come as 8-bit RGB in a [`RgbFrame`]: packed `RGB` (3 bytes per pixel) or `RGBx` /
//! `RGBA` (4 bytes per pixel, the 4th ignored), rows `stride` bytes apart, as GStreamer video
//! frames are laid out.

use crate::error::KernelError;

/// A borrowed 8-bit RGB frame.
#[derive(Debug, Clone, Copy)]
pub struct RgbFrame<'a> {
    /// Pixel bytes, row after row.
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes from one row to the next (≥ width · bytes_per_pixel).
    pub stride: usize,
    /// 3 (RGB) or 4 (RGBx, RGBA: the 4th byte is ignored).
    pub bytes_per_pixel: usize,
}

impl<'a> RgbFrame<'a> {
    /// A tightly packed RGB frame (stride = 3 · width).
    pub fn packed_rgb(data: &'a [u8], width: usize, height: usize) -> Self {
        RgbFrame {
            data,
            width,
            height,
            stride: width * 3,
            bytes_per_pixel: 3,
        }
    }

    fn validate(&self) -> Result<(), KernelError> {
        if self.bytes_per_pixel != 3 && self.bytes_per_pixel != 4 {
            return Err(KernelError::Config(format!(
                "{} bytes per pixel: only RGB (3) and RGBx/RGBA (4) are supported",
                self.bytes_per_pixel
            )));
        }
        if self.width == 0 || self.height == 0 {
            return Err(KernelError::Size {
                what: "frame width and height",
                expected: 1,
                got: 0,
            });
        }
        let row = self.width * self.bytes_per_pixel;
        if self.stride < row {
            return Err(KernelError::Size {
                what: "frame stride (bytes)",
                expected: row,
                got: self.stride,
            });
        }
        let needed = (self.height - 1) * self.stride + row;
        if self.data.len() < needed {
            return Err(KernelError::Size {
                what: "frame data (bytes)",
                expected: needed,
                got: self.data.len(),
            });
        }
        Ok(())
    }

    fn row(&self, y: usize) -> &'a [u8] {
        &self.data[y * self.stride..y * self.stride + self.width * self.bytes_per_pixel]
    }
}

/// Cuts frames into square patches and normalises them.
///
/// Output: patches in row-major order (left to right, then top to bottom), each patch
/// flattened `[y][x][channel]` (HWC, R G B), values `(v / 255 − mean[c]) / std[c]`. A 640×480
/// frame gives 16 × 12 = 192 patches of 40 · 40 · 3 = 4800 values.
///
/// Sides must be multiples of the patch size: anything else is a
/// [`KernelError::NotMultiple`] error, never implicit padding or cropping (scale or crop the
/// video upstream, e.g. `videoscale ! video/x-raw,width=640,height=480`).
#[derive(Debug, Clone)]
pub struct Patchify {
    patch: usize,
    /// Per channel, the normalised value of each byte value.
    lut: [[f32; 256]; 3],
}

impl Patchify {
    /// Patches of `patch`×`patch` normalised with per-channel `mean` and `std` (on the 0..1
    /// scale). `std` must be non-zero and finite.
    pub fn new(patch: usize, mean: [f32; 3], std: [f32; 3]) -> Result<Self, KernelError> {
        if patch == 0 {
            return Err(KernelError::Config("patch size must be at least 1".into()));
        }
        if !std.iter().chain(&mean).all(|v| v.is_finite()) || std.contains(&0.0) {
            return Err(KernelError::Config(format!(
                "patch normalisation mean {mean:?} std {std:?} must be finite with std != 0"
            )));
        }
        Ok(Self::build(patch, mean, std))
    }

    fn build(patch: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut lut = [[0.0; 256]; 3];
        for c in 0..3 {
            for (v, out) in lut[c].iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        Patchify { patch, lut }
    }

    /// 40×40 patches scaled to [-1, 1] (mean 0.5, std 0.5 per channel).
    pub fn default_40() -> Self {
        Self::build(40, [0.5; 3], [0.5; 3])
    }

    /// Patch side in pixels.
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// `(patches across, patches down, values per patch)` for a frame, or the error for a side
    /// that is not a multiple of the patch size.
    pub fn grid(&self, width: usize, height: usize) -> Result<(usize, usize, usize), KernelError> {
        let p = self.patch;
        if !width.is_multiple_of(p) {
            return Err(KernelError::NotMultiple {
                side: "width",
                got: width,
                patch: p,
            });
        }
        if !height.is_multiple_of(p) {
            return Err(KernelError::NotMultiple {
                side: "height",
                got: height,
                patch: p,
            });
        }
        Ok((width / p, height / p, p * p * 3))
    }

    /// Writes the patches of `frame` into `out` (length patches · patch² · 3).
    pub fn run(&self, frame: &RgbFrame<'_>, out: &mut [f32]) -> Result<(), KernelError> {
        frame.validate()?;
        let (across, down, per_patch) = self.grid(frame.width, frame.height)?;
        if out.len() != across * down * per_patch {
            return Err(KernelError::Size {
                what: "patch output",
                expected: across * down * per_patch,
                got: out.len(),
            });
        }
        let p = self.patch;
        let bpp = frame.bytes_per_pixel;
        let [lr, lg, lb] = &self.lut;
        for y in 0..frame.height {
            let row = frame.row(y);
            let (py, iy) = (y / p, y % p);
            for px in 0..across {
                let base = ((py * across + px) * p + iy) * p * 3;
                let dst = &mut out[base..base + p * 3];
                let src = &row[px * p * bpp..(px + 1) * p * bpp];
                for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(bpp)) {
                    d[0] = lr[usize::from(s[0])];
                    d[1] = lg[usize::from(s[1])];
                    d[2] = lb[usize::from(s[2])];
                }
            }
        }
        Ok(())
    }
}

impl Default for Patchify {
    fn default() -> Self {
        Self::default_40()
    }
}

/// Side of the EfficientNet-Lite0 input.
pub const EFFICIENTNET_SIDE: usize = 224;

/// Separable resampling weights from `src` samples to `dst` samples.
#[derive(Debug, Clone, Default)]
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    /// `max_len` weights per output sample.
    weights: Vec<f32>,
    max_len: usize,
}

impl Taps {
    /// Pillow's BILINEAR resampling (a triangle filter, widened by the scale when shrinking so
    /// that it averages instead of aliasing; plain bilinear with half-pixel centres when
    /// enlarging), computed in f64.
    fn bilinear(src: usize, dst: usize) -> Self {
        let scale = src as f64 / dst as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale; // triangle support 1, widened.
        let max_len = support.ceil() as usize * 2 + 1;
        let mut taps = Taps {
            start: Vec::with_capacity(dst),
            len: Vec::with_capacity(dst),
            weights: vec![0.0; dst * max_len],
            max_len,
        };
        let mut w = vec![0.0f64; max_len];
        for o in 0..dst {
            let centre = (o as f64 + 0.5) * scale;
            // Truncation toward zero as C's (int) cast, then clamped.
            let lo = ((centre - support + 0.5).trunc().max(0.0)) as usize;
            let hi = ((centre + support + 0.5).trunc() as usize).min(src);
            let n = hi.saturating_sub(lo).min(max_len);
            let mut total = 0.0;
            for (k, wk) in w.iter_mut().enumerate().take(n) {
                let x = ((lo + k) as f64 - centre + 0.5) / filter_scale;
                *wk = (1.0 - x.abs()).max(0.0);
                total += *wk;
            }
            let dst = &mut taps.weights[o * max_len..o * max_len + n];
            for (d, &wk) in dst.iter_mut().zip(&w[..n]) {
                *d = if total > 0.0 {
                    (wk / total) as f32
                } else {
                    0.0
                };
            }
            taps.start.push(lo);
            taps.len.push(n);
        }
        taps
    }
}

/// The EfficientNet-Lite0 input from an RGB frame: the whole frame resized to 224×224 (aspect
/// ratio not kept) with Pillow's BILINEAR filter (antialiased when shrinking), then
/// `(v − 127) / 128`, planar `[3][224][224]` (NCHW without the batch axis), as the converted
/// `efficientnet_lite0.onnx` takes `image` f32[batch, 3, 224, 224].
///
/// The resampling tables are built for one frame size and rebuilt (allocating) only when the
/// size changes; in steady state [`EfficientNetInput::run`] does not allocate.
#[derive(Debug, Clone, Default)]
pub struct EfficientNetInput {
    size: (usize, usize),
    xs: Taps,
    ys: Taps,
    /// Horizontal pass: `[src_h][224][3]`.
    rows: Vec<f32>,
}

impl EfficientNetInput {
    /// Values written by [`EfficientNetInput::run`]: 3 · 224 · 224.
    pub const OUTPUT_LEN: usize = 3 * EFFICIENTNET_SIDE * EFFICIENTNET_SIDE;

    /// An empty resizer; tables are built on the first frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the model input for `frame` into `out` ([`EfficientNetInput::OUTPUT_LEN`] values).
    pub fn run(&mut self, frame: &RgbFrame<'_>, out: &mut [f32]) -> Result<(), KernelError> {
        frame.validate()?;
        if out.len() != Self::OUTPUT_LEN {
            return Err(KernelError::Size {
                what: "EfficientNet input output",
                expected: Self::OUTPUT_LEN,
                got: out.len(),
            });
        }
        let side = EFFICIENTNET_SIDE;
        if self.size != (frame.width, frame.height) || self.xs.start.is_empty() {
            self.xs = Taps::bilinear(frame.width, side);
            self.ys = Taps::bilinear(frame.height, side);
            self.rows = vec![0.0; frame.height * side * 3];
            self.size = (frame.width, frame.height);
        }
        let bpp = frame.bytes_per_pixel;
        // Horizontal pass, per source row.
        for y in 0..frame.height {
            let row = frame.row(y);
            let dst = &mut self.rows[y * side * 3..(y + 1) * side * 3];
            for (o, d) in dst.chunks_exact_mut(3).enumerate() {
                let (s, n) = (self.xs.start[o], self.xs.len[o]);
                let w = &self.xs.weights[o * self.xs.max_len..o * self.xs.max_len + n];
                let mut acc = [0.0f32; 3];
                for (k, &wk) in w.iter().enumerate() {
                    let px = &row[(s + k) * bpp..(s + k) * bpp + 3];
                    acc[0] += wk * f32::from(px[0]);
                    acc[1] += wk * f32::from(px[1]);
                    acc[2] += wk * f32::from(px[2]);
                }
                d.copy_from_slice(&acc);
            }
        }
        // Vertical pass, then normalise into planar output.
        let plane = side * side;
        for oy in 0..side {
            let (s, n) = (self.ys.start[oy], self.ys.len[oy]);
            let w = &self.ys.weights[oy * self.ys.max_len..oy * self.ys.max_len + n];
            for ox in 0..side {
                let mut acc = [0.0f32; 3];
                for (k, &wk) in w.iter().enumerate() {
                    let src = &self.rows[((s + k) * side + ox) * 3..((s + k) * side + ox) * 3 + 3];
                    acc[0] += wk * src[0];
                    acc[1] += wk * src[1];
                    acc[2] += wk * src[2];
                }
                for (c, a) in acc.iter().enumerate() {
                    out[c * plane + oy * side + ox] = (a - 127.0) / 128.0;
                }
            }
        }
        Ok(())
    }
}
