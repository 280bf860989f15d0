#!/usr/bin/env bash
# Converts the fetched CTranslate2 Whisper tiny.en weights to ONNX (models/whisper/convert.py).
# Idempotent: does nothing when the outputs exist and were made by this same script from the
# same inputs (a stamp of their sha256 sums). Uses $PYTHON (the venv python from scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GST_INTERACTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst-interaction}
python=${PYTHON:-$cache/venv/bin/python}
source_dir=$cache/models/whisper-ct2
out=$cache/derived/whisper-tiny-en
stamp=$out/.stamp

for f in model.bin config.json vocabulary.txt METADATA; do
  [[ -f $source_dir/$f ]] || { echo "whisper: $source_dir/$f is missing; fetch the models first (scripts/setup.sh)" >&2; exit 1; }
done
want=$(cd "$here" && sha256sum convert.py quantize.py derive.sh "$source_dir"/{model.bin,config.json,vocabulary.txt,METADATA} | cut -d' ' -f1 | sha256sum | cut -d' ' -f1)
complete=1
for f in encoder.onnx decoder.onnx encoder-int8.onnx decoder-int8.onnx vocabulary.txt config.json METADATA manifest.json; do
  [[ -f $out/$f ]] || complete=0
done
if ((complete)) && [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "whisper: converted models up to date, nothing done"
  exit 0
fi
echo "whisper: converting $source_dir to ONNX in $out ..."
GST_INTERACTION_CACHE=$cache "$python" "$here/convert.py" --source "$source_dir" --out "$out"
echo "$want" > "$stamp"
