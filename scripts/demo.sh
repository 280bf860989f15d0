#!/usr/bin/env bash
# `make demo` after the build: makes the user's side of a short scripted exchange with
# espeak-ng (a separate program), then runs the demo program on it. Outputs go to out/demo/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${DEMO_OUT:-$repo/out/demo}
mkdir -p "$out"
bin=${DEMO_BIN:-$repo/target/release/demo}

echo "demo: synthesising the user's side with espeak-ng into $out/user.wav"
parts=()
i=0
while IFS='|' read -r pause text; do
  [[ -z $text ]] && continue
  i=$((i + 1))
  espeak-ng -v en-us -s 160 -w "$out/part$i.wav" "$text"
  sox "$out/part$i.wav" -r 16000 -c 1 "$out/part$i.16k.wav" pad "$pause" 0
  parts+=("$out/part$i.16k.wav")
  echo "  +${pause}s silence, then: \"$text\""
done <<'SCRIPT'
0.5|Hello, can you hear me?
1.5|I would like to book a table for two people tonight.
0.9|Somewhere quiet, if possible.
SCRIPT
sox "${parts[@]}" "$out/user.wav" pad 0 1.0
rm -f "${parts[@]}" "$out"/part*.wav
"$bin" "$out/user.wav"
