#!/usr/bin/env bash
# Converts the fetched EfficientNet-Lite0 weights (a legacy torch .pth) to ONNX
# (models/efficientnet/convert.py, numpy + onnx, no torch).
# Idempotent: does nothing when the outputs exist and were made by this same script from the
# same inputs (a stamp of their sha256 sums). Uses $PYTHON (the venv python from scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GST_INTERACTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst-interaction}
python=${PYTHON:-$cache/venv/bin/python}
source_dir=$cache/models/efficientnet-lite0
out=$cache/derived/efficientnet-lite0
stamp=$out/.stamp

for f in efficientnet-lite0-57934424.pth LICENSE; do
  [[ -f $source_dir/$f ]] || { echo "efficientnet: $source_dir/$f is missing; fetch the models first (scripts/setup.sh)" >&2; exit 1; }
done
want=$(cd "$here" && sha256sum convert.py derive.sh imagenet_labels.txt "$source_dir"/{efficientnet-lite0-57934424.pth,LICENSE} | cut -d' ' -f1 | sha256sum | cut -d' ' -f1)
complete=1
for f in efficientnet_lite0.onnx imagenet_labels.txt LICENSE manifest.json; do
  [[ -f $out/$f ]] || complete=0
done
if ((complete)) && [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "efficientnet: converted model up to date, nothing done"
  exit 0
fi
echo "efficientnet: converting $source_dir to ONNX in $out ..."
GST_INTERACTION_CACHE=$cache "$python" "$here/convert.py" --source "$source_dir" --out "$out"
echo "$want" > "$stamp"
