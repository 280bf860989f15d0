#!/usr/bin/env python3
"""Reference Whisper tiny.en transcriber over the converted ONNX models (numpy + onnxruntime).

    transcribe.py [--model DIR] [--tokens] [--json] WAV...

Prints one transcript per WAV (with --tokens, the generated token ids as well; with --json, one
JSON object per line). WAVs of any rate or channel count are converted to 16 kHz mono with sox;
16-bit mono 16 kHz WAVs are read directly. The Rust crate `gst-interaction-asr` follows the same
recipe and its tests compare their tokens with this script's.

Recipe (the same as openai/whisper with greedy decoding, no timestamps):
  - audio: 16 kHz mono f32, padded with zeros or cut to 30 s (480 000 samples);
  - log-mel: periodic Hann window of 400, hop 160, centred STFT with reflect padding, power
    spectrum, the last frame dropped (3000 frames), 80 Slaney-scale mel filters with Slaney
    normalisation (librosa's defaults), log10 of max(x, 1e-10), floor at max - 8, (x + 4) / 4;
  - prompt [<|startoftranscript|> 50257, <|notimestamps|> 50362]; greedy argmax over the text
    tokens and <|endoftext|> (ids 0..=50256) after removing config.json's suppress_ids, and at
    the first step also suppress_ids_begin (blank, end of text); stop at <|endoftext|> 50256 or
    after --max-tokens tokens;
  - tokens to text: vocabulary.txt is GPT-2 byte-level BPE; each character maps back to a byte.
"""

import argparse
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import onnxruntime as ort

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
N_SAMPLES = 30 * SAMPLE_RATE
N_FRAMES = N_SAMPLES // HOP
EOT, SOT, NO_TIMESTAMPS = 50256, 50257, 50362
N_LAYERS, N_HEADS, HEAD_DIM = 4, 6, 64
MAX_POSITIONS = 448


def cache_root() -> Path:
    explicit = os.environ.get("GST_INTERACTION_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "gst-interaction"


def read_audio(path: Path) -> np.ndarray:
    """16 kHz mono f32 samples in [-1, 1)."""
    if not path.is_file():
        raise SystemExit(f"whisper: no such file {path}")
    try:
        with wave.open(str(path)) as w:
            if w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1 and w.getsampwidth() == 2:
                return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
    except wave.Error:
        pass  # float WAV or another format: let sox read it
    try:
        raw = subprocess.run(
            ["sox", str(path), "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1", "-e", "floating-point", "-b", "32", "-L", "-"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise SystemExit(f"whisper: could not convert {path} to 16 kHz mono with sox: {error} {detail.decode(errors='replace').strip()}")
    return np.frombuffer(raw, "<f4").copy()


def hz_to_mel(f):
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa htk=False)."""
    f = np.asarray(f, np.float64)
    mel = f / (200.0 / 3)
    log_region = f >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def mel_to_hz(m):
    m = np.asarray(m, np.float64)
    f = m * (200.0 / 3)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), f)


def mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) as float32 [80, 201]."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : N_MELS + 2] - mel_f[:N_MELS]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper's log-mel of the first 30 s (zero-padded) of 16 kHz audio: f32 [80, 3000]."""
    audio = np.asarray(audio, np.float32)[:N_SAMPLES]
    audio = np.pad(audio, (0, N_SAMPLES - len(audio)))
    padded = np.pad(audio, (N_FFT // 2, N_FFT // 2), mode="reflect")
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:N_FRAMES]  # the last frame dropped
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [3000, 201]
    mel = mel_filters() @ power.T.astype(np.float32)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def bytes_decoder() -> dict:
    """GPT-2's byte-to-unicode table, inverted: printable character -> byte value."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class Whisper:
    def __init__(self, model_dir: Path, threads: int = 0, int8: bool = False):
        suffix = "-int8" if int8 else ""
        encoder, decoder = f"encoder{suffix}.onnx", f"decoder{suffix}.onnx"
        for name in (encoder, decoder, "vocabulary.txt", "config.json"):
            if not (model_dir / name).is_file():
                raise SystemExit(f"whisper: {model_dir / name} is missing; run models/whisper/derive.sh (or scripts/setup.sh)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(model_dir / encoder), options, providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(model_dir / decoder), options, providers=["CPUExecutionProvider"])
        self.vocabulary = (model_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        config = json.loads((model_dir / "config.json").read_text())
        self.suppress = np.zeros(EOT + 1, bool)
        self.suppress[[i for i in config["suppress_ids"] if i <= EOT]] = True
        self.suppress_begin = self.suppress.copy()
        self.suppress_begin[[i for i in config["suppress_ids_begin"] if i <= EOT]] = True
        self.byte_of = bytes_decoder()

    def decode_tokens(self, tokens) -> str:
        pieces = bytearray()
        for token in tokens:
            if token < EOT:
                pieces += bytes(self.byte_of[c] for c in self.vocabulary[token])
        return pieces.decode("utf-8", errors="replace").strip()

    def transcribe(self, audio: np.ndarray, max_tokens: int = 224):
        mel = log_mel(audio)[None]
        encoded = dict(zip([o.name for o in self.encoder.get_outputs()], self.encoder.run(None, {"mel": mel})))
        cross = {name: value for name, value in encoded.items() if name.startswith("cross_")}
        past = {f"past_{kind}.{layer}": np.zeros((1, N_HEADS, 0, HEAD_DIM), np.float32) for layer in range(N_LAYERS) for kind in "kv"}
        output_names = [o.name for o in self.decoder.get_outputs()]
        feed = np.array([[SOT, NO_TIMESTAMPS]], np.int64)
        tokens = []
        max_tokens = min(max_tokens, MAX_POSITIONS - feed.shape[1])
        while len(tokens) < max_tokens:
            results = dict(zip(output_names, self.decoder.run(None, {"tokens": feed, **past, **cross})))
            logits = results["logits"][0, -1, : EOT + 1].copy()
            logits[self.suppress_begin if not tokens else self.suppress] = -np.inf
            token = int(np.argmax(logits))
            if token == EOT:
                break
            tokens.append(token)
            past = {f"past_{name[len('present_'):]}": value for name, value in results.items() if name.startswith("present_")}
            feed = np.array([[token]], np.int64)
        return tokens, self.decode_tokens(tokens)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wavs", nargs="+", type=Path)
    parser.add_argument("--model", type=Path, default=cache_root() / "derived" / "whisper-tiny-en")
    parser.add_argument("--tokens", action="store_true", help="also print the token ids")
    parser.add_argument("--json", action="store_true", help="one JSON object per WAV: file, tokens, text")
    parser.add_argument("--max-tokens", type=int, default=224)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)")
    parser.add_argument("--int8", action="store_true", help="the int8 graphs (encoder-int8.onnx, decoder-int8.onnx)")
    args = parser.parse_args()
    whisper = Whisper(args.model, args.threads, args.int8)
    for wav in args.wavs:
        tokens, text = whisper.transcribe(read_audio(wav), args.max_tokens)
        if args.json:
            print(json.dumps({"file": str(wav), "tokens": tokens, "text": text}))
        elif args.tokens:
            print(f"{wav}\t{' '.join(map(str, tokens))}\t{text}")
        else:
            print(text if len(args.wavs) == 1 else f"{wav}\t{text}")


if __name__ == "__main__":
    sys.exit(main())
