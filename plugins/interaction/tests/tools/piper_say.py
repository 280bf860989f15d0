#!/usr/bin/env python3
"""Test speech with the Piper voice (en_US-joe-medium from the model cache): the phonemes come
from the espeak-ng *program* (a separate process, GPL-3, never linked), clause by clause with
the clause punctuation put back, as Piper's own front end does; the ids are Piper's
(`^`, then each phoneme followed by the pad `_`, then `$`). Test tooling only: the product's
synthesizer is the speechsynth element (plugins/speech).

Usage: piper_say.py OUT.wav "text" [PREFIX PAUSE_MS]
Writes 22 050 Hz mono 16-bit, leading and trailing silence trimmed. With PREFIX, a pause of
PAUSE_MS of silence is put inside the sentence after the words of PREFIX (found from the share of
phonemes, refined to the quietest 10 ms within 100 ms), and the cut time in seconds is printed as
`cut=SECONDS` (the sentence keeps its mid-sentence prosody, unlike synthesising PREFIX alone).
"""

import json
import os
import re
import subprocess
import sys
import wave

import numpy as np
import onnxruntime

cache = os.environ.get("GST_INTERACTION_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gst-interaction")
model = os.path.join(cache, "models", "piper", "en_US-joe-medium.onnx")
config = json.load(open(model + ".json", encoding="utf-8"))
ids_of = config["phoneme_id_map"]


def ipa(clause):
    out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", config["espeak"]["voice"], clause],
                         capture_output=True, text=True, check=True).stdout
    return " ".join(line.strip() for line in out.splitlines() if line.strip())


def phonemes(text):
    parts = []
    for clause, mark in re.findall(r"([^.,;:!?]+)([.,;:!?]?)", text):
        if clause.strip():
            parts.append(ipa(clause.strip()) + mark)
    return " ".join(parts)


def ids(text):
    out = ids_of["^"] + ids_of["_"]
    for ch in phonemes(text):
        if ch in ids_of:
            out += ids_of[ch] + ids_of["_"]
    return out + ids_of["$"]


def main():
    path, text = sys.argv[1], sys.argv[2]
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    phoneme_ids = np.array([ids(text)], dtype=np.int64)
    inference = config["inference"]
    # No noise: the same text gives the same audio on every run and machine.
    scales = np.array([0.0, inference["length_scale"], 0.0],
                      dtype=np.float32)
    audio = session.run(None, {"input": phoneme_ids,
                               "input_lengths": np.array([phoneme_ids.shape[1]], dtype=np.int64),
                               "scales": scales})[0].squeeze()
    rate = config["audio"]["sample_rate"]
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    audio = audio[loud[0]:loud[-1] + 1] if len(loud) else audio
    if len(sys.argv) == 5:
        prefix, pause_ms = sys.argv[3], int(sys.argv[4])
        share = len(phonemes(prefix).replace(" ", "")) / len(phonemes(text).replace(" ", ""))
        guess = int(len(audio) * share)
        hop, win, reach = rate // 200, rate // 100, rate // 10
        starts = range(max(0, guess - reach), min(len(audio) - win, guess + reach), hop)
        cut = min(starts, key=lambda i: float(np.mean(audio[i:i + win] ** 2))) + win // 2
        audio = np.concatenate([audio[:cut], np.zeros(rate * pause_ms // 1000, np.float32),
                                audio[cut:]])
        print(f"cut={cut / rate:.6f}")
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


if __name__ == "__main__":
    main()
