#!/usr/bin/env bash
# `make demo` after the build: the whole agent on the embedded defaults. The user's side of a
# short scripted conversation (duplexbench/demo/demo.txt: a question, a mid-sentence pause, an
# interruption) is rendered with espeak-ng, then played live at real-time pace through
# microturnmux ! interactionmodel ! speechsynth (+ reasoningsidecar looped back), once with the
# default package and once with the 500 ms silence baseline (`duplexbench run`). Outputs go to
# out/demo/: demo.stereo.wav (user left, agent right), demo.captions.srt, demo-timeline.png,
# latency.txt (the table), and everything duplexbench writes.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${DEMO_OUT:-$repo/out/demo}
bin=${DEMO_BIN:-$repo/target/release/duplexbench}
start=$(date +%s.%N)
rm -rf "$out"
mkdir -p "$out/user"

echo "demo: rendering the user's side (duplexbench/demo/demo.txt) with espeak-ng"
"$bin" generate --seed 1 --dialogues "$repo/duplexbench/demo/demo.txt" --out "$out/user"
echo "demo: playing it live through the agent, default package, then the silence-500ms baseline"
"$bin" run --set "$out/user" --out "$out/run" --config both

cp "$out/run/demo.default.stereo.wav" "$out/demo.stereo.wav"
cp "$out/run/demo.silence-500ms.stereo.wav" "$out/demo.baseline.stereo.wav"
cp "$out/run/demo.default.captions.srt" "$out/demo.captions.srt"
cp "$out/run/timeline-default-demo.png" "$out/demo-timeline.png"
cp "$out/run/timeline-silence-500ms-demo.png" "$out/demo-timeline-baseline.png"
cp "$out/run/results.txt" "$out/latency.txt"
echo
echo "captions (default package, times from the start of the user audio):"
sed -n '/-->/{N;s/\n/  /;s/,[0-9]* --> [0-9:]*,[0-9]*//;p}' "$out/demo.captions.srt"
end=$(date +%s.%N)
printf '\ndemo: done in %.1f s; outputs in %s\n' "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$out"
ls "$out"
