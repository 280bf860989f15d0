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
    reference.py dmel-apple IN.f32 HOP OUT_LOGMEL.f32 OUT_LEVELS.u8 -> apple/dmel's centred frames
    reference.py filterbank SR N_FFT N_MELS FMIN FMAX OUT.f32
    reference.py bench      -> "name microseconds" lines: numpy's best time per call
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


def dmel(audio, hop, win=800, n_fft=1024, lo=-7.0, hi=2.0, levels=16):
    """apple/dmel's recipe with the crate's causal framing; returns (clipped log10 mel, levels)."""
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
    spec = np.fft.rfft(buf * window, axis=-1)
    mag = np.sqrt(np.maximum(spec.real ** 2 + spec.imag ** 2, 1e-10))
    logmel = np.clip(np.log10(np.maximum(mag @ fb.T, 1e-10)), lo, hi)
    # Nearest centre by argmin over the centres (the first, i.e. lower, on a tie), as apple/dmel.
    centres = lo + np.arange(levels) * np.round((hi - lo) / (levels - 1), 4)
    lv = np.abs(logmel[..., None] - centres).argmin(-1).astype(np.uint8)
    return logmel.astype(np.float32), lv


def dmel_apple_centred(audio, hop, win=800, n_fft=1024):
    """apple/dmel's own framing (torch.stft center=True, reflect padding of n_fft // 2):
    clipped log10 mel, [frames][80]."""
    fb = mel_filterbank(16000, n_fft, 80, 80.0, 7600.0)
    window = np.zeros(n_fft)
    off = (n_fft - win) // 2
    window[off:off + win] = hann(win)
    x = np.pad(audio.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    frames = sliding_window_view(x, n_fft)[::hop]
    spec = np.fft.rfft(frames * window, axis=-1)
    mag = np.sqrt(np.maximum(spec.real ** 2 + spec.imag ** 2, 1e-10))
    return np.clip(np.log10(np.maximum(mag @ fb.T, 1e-10)), -7.0, 2.0).astype(np.float32)


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


def efficientnet(img, wy=None, wx=None):
    """img [H][W][3] uint8 -> [3][224][224] float: Pillow-BILINEAR resize, (x - 127) / 128."""
    h, w, _ = img.shape
    wy = pillow_bilinear_weights(h, 224) if wy is None else wy
    wx = pillow_bilinear_weights(w, 224) if wx is None else wx
    x = img.astype(np.float64)
    rows = (wy @ x.reshape(h, w * 3)).reshape(224, w, 3)  # vertical pass
    out = rows.transpose(2, 0, 1) @ wx.T  # horizontal pass -> [3][224][224]
    return (out - 127.0) / 128.0


def bench():
    rng = np.random.default_rng(0)
    turn = rng.standard_normal(3200) * 0.1

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
        buf = np.zeros((16, 1024))
        buf[:, 112:912] = frames * DMEL_WIN
        spec = np.fft.rfft(buf, axis=-1)
        mag = np.sqrt(np.maximum(spec.real ** 2 + spec.imag ** 2, 1e-10))
        logmel = np.clip(np.log10(np.maximum(mag @ DMEL_FB.T, 1e-10)), -7.0, 2.0)
        return np.abs(logmel[..., None] - DMEL_CENTRES).argmin(-1).astype(np.uint8)

    st_audio = rng.standard_normal(128000) * 0.1

    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    global EN_WY, EN_WX
    EN_WY, EN_WX = pillow_bilinear_weights(480, 224), pillow_bilinear_weights(640, 224)

    def patchify():
        p = frame.reshape(12, 40, 16, 40, 3).transpose(0, 2, 1, 3, 4).reshape(192, 4800)
        return (p.astype(np.float32) - 127.5) / 127.5

    # Fastest of many short rounds (~2 ms, for ~1 s), as the Rust report does, so that rounds
    # disturbed by other processes drop out.
    for name, fn in [
        ("whisper_turn", whisper_turn),
        ("dmel_turn", dmel_turn),
        ("smart_turn", lambda: smart_turn(st_audio)),
        ("whisper_30s", lambda: whisper(st_audio, 3000)),
        ("patchify_640x480", patchify),
        ("efficientnet_640x480", lambda: efficientnet(frame, EN_WY, EN_WX)),
    ]:
        fn()
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        reps = max(1, int(2e-3 / max(once, 1e-9)))
        best = float("inf")
        start = time.perf_counter()
        rounds = 0
        while rounds < 5 or (time.perf_counter() - start < 1.0 and rounds < 1000):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, (time.perf_counter() - t0) / reps)
            rounds += 1
        print(f"{name} {best * 1e6:.3f}")


DMEL_FB = mel_filterbank(16000, 1024, 80, 80.0, 7600.0)
DMEL_WIN = hann(800)
DMEL_CENTRES = -7.0 + np.arange(16) * 0.6


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
    elif cmd == "dmel-apple":
        # dmel-apple IN.f32 HOP OUT_LOGMEL.f32 OUT_LEVELS.u8: apple/dmel's centred framing
        audio = np.fromfile(argv[2], dtype="<f4")
        logmel = dmel_apple_centred(audio, int(argv[3]))
        logmel.astype("<f4").tofile(argv[4])
        centres = -7.0 + np.arange(16) * 0.6
        lv = np.abs(logmel.astype(np.float64)[..., None] - centres).argmin(-1).astype(np.uint8)
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
