#!/usr/bin/env python3
"""Independent numpy reference for the kernels crate (float64 throughout).

Whisper / Smart Turn follow pipecat's `smart_turn/_whisper_features.py` (itself the numpy
form of `transformers.WhisperFeatureExtractor`): batched `np.fft.rfft` over a sliding-window
view, `np.pad(mode="reflect")`, a dense filterbank matmul. dMel follows the crate's documented
recipe with the same numpy building blocks. Nothing here is shared with the Rust code.

Files are raw little-endian float32 (`np.fromfile`); levels are uint8.

    reference.py whisper    IN.f32 N_FRAMES OUT.f32        -> [80][N_FRAMES]
    reference.py smart-turn IN.f32 OUT.f32                 -> [80][800]
    reference.py dmel       IN.f32 HOP OUT_LOGMEL.f32 OUT_LEVELS.u8   -> [frames][80] each
    reference.py bench      -> prints numpy microseconds per 200 ms micro-turn, one line per kernel
"""

import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def hz_to_mel(f):
    f = np.atleast_1d(np.asarray(f, dtype=np.float64))
    mels = 3.0 * f / 200.0
    log_region = f >= 1000.0
    mels[log_region] = 15.0 + np.log(f[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def mel_to_hz(m):
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    f = 200.0 * m / 3.0
    log_region = m >= 15.0
    f[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log_region] - 15.0))
    return f


def mel_filterbank(sr, n_fft, n_mels, fmin, fmax):
    """[n_mels][n_fft//2+1], Slaney scale, Slaney area normalisation (librosa default)."""
    bins = n_fft // 2 + 1
    mel_pts = np.linspace(hz_to_mel(fmin)[0], hz_to_mel(fmax)[0], n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    fft_freqs = np.linspace(0, sr / 2, bins)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights


def hann(n):
    return np.hanning(n + 1)[:-1]


WHISPER_FB = mel_filterbank(16000, 400, 80, 0.0, 8000.0)
WHISPER_WIN = hann(400)


def whisper(audio, n_frames):
    n = n_frames * 160
    x = np.zeros(n, dtype=np.float64)
    m = min(n, audio.size)
    x[:m] = audio[:m]
    padded = np.pad(x, (200, 200), mode="reflect")
    frames = sliding_window_view(padded, 400)[::160]
    power = np.abs(np.fft.rfft(frames * WHISPER_WIN, axis=-1)) ** 2
    mel = WHISPER_FB @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def smart_turn(audio):
    n = 128000
    x = audio[-n:].astype(np.float32)
    if x.size < n:
        x = np.pad(x, (n - x.size, 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    return whisper(x.astype(np.float64), 800)


def dmel(audio, hop, win=800, n_fft=800, lo=-7.0, hi=2.0, levels=16):
    fb = mel_filterbank(16000, n_fft, 80, 80.0, 7600.0)
    window = np.zeros(n_fft)
    off = (n_fft - win) // 2
    window[off:off + win] = hann(win)
    # Causal framing: win - hop zeros of history, frame t ends at sample (t + 1) * hop.
    x = np.concatenate([np.zeros(win - hop), audio.astype(np.float64)])
    n_frames = (x.size - win) // hop + 1 if x.size >= win else 0
    frames = sliding_window_view(x, win)[::hop][:n_frames]
    buf = np.zeros((n_frames, n_fft))
    buf[:, off:off + win] = frames
    mag = np.abs(np.fft.rfft(buf * window, axis=-1))
    logmel = np.clip(np.log10(np.maximum(mag @ fb.T, 1e-10)), lo, hi)
    step = (hi - lo) / (levels - 1)
    lv = np.rint((logmel - lo) / step).astype(np.uint8)
    return logmel.astype(np.float32), lv


def patchify(img, patch=40):
    """img [H][W][3] uint8 -> [patches][patch*patch*3], row-major patches, HWC inside."""
    h, w, _ = img.shape
    p = img.reshape(h // patch, patch, w // patch, patch, 3).transpose(0, 2, 1, 3, 4)
    return ((p.reshape(-1, patch * patch * 3).astype(np.float64) / 255.0 - 0.5) / 0.5)


def pillow_bilinear_weights(src, dst):
    """Dense [dst][src] matrix of Pillow's BILINEAR resampling (triangle filter widened by the
    scale when shrinking), written from Pillow's documented algorithm."""
    scale = src / dst
    fscale = max(scale, 1.0)
    support = fscale
    m = np.zeros((dst, src))
    for o in range(dst):
        centre = (o + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), src)
        x = (np.arange(lo, hi) - centre + 0.5) / fscale
        wts = np.maximum(0.0, 1.0 - np.abs(x))
        if wts.sum() > 0:
            m[o, lo:hi] = wts / wts.sum()
    return m


def efficientnet(img):
    """img [H][W][3] uint8 -> [3][224][224] float: Pillow-BILINEAR resize, (x - 127) / 128."""
    h, w, _ = img.shape
    wy = pillow_bilinear_weights(h, 224)
    wx = pillow_bilinear_weights(w, 224)
    x = img.astype(np.float64)
    rows = (wy @ x.reshape(h, w * 3)).reshape(224, w, 3)  # vertical pass
    out = rows.transpose(2, 0, 1) @ wx.T  # horizontal pass -> [3][224][224]
    return (out - 127.0) / 128.0


def bench():
    rng = np.random.default_rng(0)
    turn = rng.standard_normal(3200) * 0.1
    reps = 300

    # Whisper frames of one micro-turn: the per-frame pipeline on 3200 new samples
    # (20 frames), numpy's best case: one batched rfft and one matmul.
    def whisper_turn():
        padded = np.pad(turn, (200, 200), mode="reflect")
        frames = sliding_window_view(padded, 400)[::160][:20]
        power = np.abs(np.fft.rfft(frames * WHISPER_WIN, axis=-1)) ** 2
        return np.log10(np.maximum(WHISPER_FB @ power.T, 1e-10))

    hist = np.zeros(600)

    def dmel_turn():
        x = np.concatenate([hist, turn])
        frames = sliding_window_view(x, 800)[::200][:16]
        mag = np.abs(np.fft.rfft(frames * hann(800), axis=-1))
        logmel = np.clip(np.log10(np.maximum(mag @ DMEL_FB.T, 1e-10)), -7.0, 2.0)
        return np.rint((logmel + 7.0) / 0.6).astype(np.uint8)

    st_audio = rng.standard_normal(128000) * 0.1

    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)

    def patchify():
        p = frame.reshape(12, 40, 16, 40, 3).transpose(0, 2, 1, 3, 4).reshape(192, 4800)
        return (p.astype(np.float32) - 127.5) / 127.5

    for name, fn, r in [
        ("whisper_turn", whisper_turn, reps),
        ("dmel_turn", dmel_turn, reps),
        ("smart_turn", lambda: smart_turn(st_audio), 10),
        ("patchify_640x480", patchify, reps),
    ]:
        fn()
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(r):
                fn()
            best = min(best, (time.perf_counter() - t0) / r)
        print(f"{name} {best * 1e6:.3f}")


DMEL_FB = mel_filterbank(16000, 800, 80, 80.0, 7600.0)


def main(argv):
    cmd = argv[1]
    if cmd == "whisper":
        audio = np.fromfile(argv[2], dtype="<f4").astype(np.float64)
        whisper(audio, int(argv[3])).astype("<f4").tofile(argv[4])
    elif cmd == "smart-turn":
        audio = np.fromfile(argv[2], dtype="<f4")
        smart_turn(audio).astype("<f4").tofile(argv[3])
    elif cmd == "dmel":
        audio = np.fromfile(argv[2], dtype="<f4")
        logmel, lv = dmel(audio, int(argv[3]))
        logmel.astype("<f4").tofile(argv[4])
        lv.tofile(argv[5])
    elif cmd == "filterbank":
        # filterbank SR N_FFT N_MELS FMIN FMAX OUT.f32 -> [n_mels][bins]
        fb = mel_filterbank(float(argv[2]), int(argv[3]), int(argv[4]), float(argv[5]), float(argv[6]))
        fb.astype("<f4").tofile(argv[7])
    elif cmd in ("patchify", "efficientnet"):
        # patchify|efficientnet IN.u8 WIDTH HEIGHT OUT.f32 (IN: packed RGB)
        w, h = int(argv[3]), int(argv[4])
        img = np.fromfile(argv[2], dtype=np.uint8).reshape(h, w, 3)
        out = patchify(img) if cmd == "patchify" else efficientnet(img)
        out.astype("<f4").tofile(argv[5])
    elif cmd == "bench":
        bench()
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
