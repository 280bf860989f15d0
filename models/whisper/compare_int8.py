#!/usr/bin/env python3
"""Word error rate and time of the f32 graphs against their int8 copies (quantize.py).

Speaks 20 sentences in three voices (Piper en_US-joe-medium through
plugins/interaction/tests/tools/piper_say.py, espeak-ng en-us, espeak-ng en-gb at 150 words a
minute) into a temporary folder, transcribes each with transcribe.py's Whisper on one thread,
and prints the WER per voice and the mean time per sentence for both graph sets.

    ~/.cache/gst-interaction/venv/bin/python models/whisper/compare_int8.py

Takes about two minutes on two idle cores. The numbers of 2026-12-04 are in README.md ("Checks");
the times move with the machine's load, the word error rates do not.
"""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
import transcribe as T  # noqa: E402

PIPER_SAY = here.parent.parent / "plugins" / "interaction" / "tests" / "tools" / "piper_say.py"
SENTENCES = [
    "What is the capital of France?",
    "Please book a table for two tomorrow evening.",
    "The weather has been unusually warm this year, so we went to the beach.",
    "Can you tell me how long it takes to drive from Boston to New York?",
    "I would like to order a large pizza with mushrooms and extra cheese.",
    "My brother moved to Denver last spring and he loves the mountains.",
    "Remind me to call the dentist on Monday morning.",
    "How many ounces are there in a pound?",
    "Turn off the lights in the kitchen and lock the front door.",
    "What time does the library close on Saturday?",
    "She sells fresh vegetables at the market every weekend.",
    "Could you send the report to everyone on the team before lunch?",
    "The train was late again because of the snow.",
    "I think we should paint the bedroom a lighter color.",
    "Where did you put the keys to the garage?",
    "Our flight leaves early, so we need to pack tonight.",
    "The children played in the park until it got dark.",
    "Do you know a good place to buy running shoes?",
    "He forgot his umbrella and got completely soaked.",
    "Let's meet at the coffee shop near the station.",
]
VOICES = {
    "piper": lambda text, wav: subprocess.run([sys.executable, str(PIPER_SAY), str(wav), text], check=True, capture_output=True),
    "espeak-ng en-us": lambda text, wav: subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True),
    "espeak-ng en-gb": lambda text, wav: subprocess.run(["espeak-ng", "-v", "en-gb", "-s", "150", "-w", str(wav), text], check=True),
}


def words(text):
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def edits(reference, hypothesis):
    r, h = words(reference), words(hypothesis)
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        diagonal, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (rw != hw))
    return row[len(h)], len(r)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        audio = {}
        for voice, speak in VOICES.items():
            print(f"speaking {len(SENTENCES)} sentences with {voice} ...", flush=True)
            for i, text in enumerate(SENTENCES):
                wav = Path(tmp) / f"{voice.replace(' ', '_')}{i}.wav"
                speak(text, wav)
                audio[voice, i] = T.read_audio(wav)
        for int8 in (False, True):
            whisper = T.Whisper(T.cache_root() / "derived" / "whisper-tiny-en", threads=1, int8=int8)
            whisper.transcribe(audio["piper", 0])  # warm-up
            spent, results = 0.0, []
            for voice in VOICES:
                errors = total = 0
                for i, text in enumerate(SENTENCES):
                    started = time.perf_counter()
                    _, hypothesis = whisper.transcribe(audio[voice, i])
                    spent += time.perf_counter() - started
                    e, n = edits(text, hypothesis)
                    errors, total = errors + e, total + n
                results.append(f"{voice} WER {100 * errors / total:.1f} %")
            label = "int8" if int8 else "f32 "
            print(f"{label}: {'; '.join(results)}; {1000 * spent / len(audio):.0f} ms a sentence", flush=True)


if __name__ == "__main__":
    sys.exit(main())
