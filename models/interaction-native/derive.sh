#!/usr/bin/env bash
# Builds the native-kind contract model (build.py) into $cache/derived/interaction-native/.
# Idempotent: does nothing when the output exists and was made by this same script.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GST_INTERACTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst-interaction}
python=${PYTHON:-$cache/venv/bin/python}
out=$cache/derived/interaction-native
stamp=$out/.stamp
want=$(cd "$here" && sha256sum build.py derive.sh | cut -d' ' -f1 | sha256sum | cut -d' ' -f1)
if [[ -f $out/contract.onnx && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "interaction-native: contract model up to date, nothing done"
  exit 0
fi
mkdir -p "$out"
"$python" "$here/build.py" "$out/contract.onnx.partial"
mv "$out/contract.onnx.partial" "$out/contract.onnx"
echo "$want" > "$stamp"
echo "interaction-native: built $out/contract.onnx ($(sha256sum "$out/contract.onnx" | cut -c1-16)…)"
