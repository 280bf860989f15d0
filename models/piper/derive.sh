#!/usr/bin/env bash
# Splits the fetched Piper voice into encoder + decoder graphs for streaming synthesis
# (models/piper/split.py). Idempotent: does nothing when the outputs exist and were made by this
# same script from the same voice (a stamp of their sha256 sums). Uses $PYTHON (the venv python
# from scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GST_INTERACTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst-interaction}
python=${PYTHON:-$cache/venv/bin/python}
voice=$cache/models/piper/en_US-joe-medium.onnx
out=$cache/derived/piper
stamp=$out/.stamp

[[ -f $voice ]] || { echo "piper: $voice is missing; fetch the models first (scripts/setup.sh)" >&2; exit 1; }
want=$(cd "$here" && sha256sum split.py derive.sh "$voice" | cut -d' ' -f1 | sha256sum | cut -d' ' -f1)
if [[ -f $out/en_US-joe-medium.encoder.onnx && -f $out/en_US-joe-medium.decoder.onnx \
      && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "piper: split voice up to date, nothing done"
  exit 0
fi
echo "piper: splitting $voice into encoder and decoder in $out ..."
"$python" "$here/split.py" "$voice" "$out"
echo "$want" > "$stamp"
