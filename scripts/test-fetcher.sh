#!/usr/bin/env bash
# Tests the model fetcher on a scratch cache: an intact cache fetches nothing; a corrupted
# file is re-fetched and verified; a checksum that can never match fails with a message that
# names the file; a package that cannot be had fails with a message that says what to do.
# Uses the small silero-vad package (11 MB; pip's own cache makes repeats cheap).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${GST_INTERACTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst-interaction}
python=${PYTHON:-$cache/venv/bin/python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "test-fetcher: FAILED: $*" >&2; exit 1; }

# A manifest with the silero-vad package alone.
"$python" - "$repo/models/manifest.toml" "$scratch/manifest.toml" <<'PY'
import sys, tomllib
packages = [p for p in tomllib.loads(open(sys.argv[1]).read())["package"] if p["name"] == "silero-vad"]
with open(sys.argv[2], "w") as out:
    for p in packages:
        out.write(f'[[package]]\nname = "{p["name"]}"\nversion = "{p["version"]}"\nregistry = "pypi"\nlicense = "{p["license"]}"\npurpose = "test"\n')
        for f in p["file"]:
            out.write(f'[[package.file]]\npath = "{f["path"]}"\ndest = "{f["dest"]}"\nsha256 = "{f["sha256"]}"\nrole = "{f["role"]}"\n')
PY
mkdir -p "$scratch/cache/models/silero-vad"
cp "$cache/models/silero-vad/"{silero_vad.onnx,LICENSE} "$scratch/cache/models/silero-vad/"
fetch() { "$python" "$repo/scripts/fetch-models.py" --manifest "$1" --cache "$scratch/cache" >"$scratch/log" 2>&1; }

fetch "$scratch/manifest.toml" || fail "intact cache: $(cat "$scratch/log")"
grep -q "nothing fetched" "$scratch/log" || fail "intact cache fetched something: $(cat "$scratch/log")"
echo "test-fetcher: intact cache: nothing fetched"

printf 'corrupt' | dd of="$scratch/cache/models/silero-vad/silero_vad.onnx" bs=1 seek=1000 conv=notrunc status=none
"$python" "$repo/scripts/fetch-models.py" --manifest "$scratch/manifest.toml" --cache "$scratch/cache" --verify-only >"$scratch/log" 2>&1 \
  && fail "--verify-only accepted a corrupt file"
grep -q "silero-vad/silero_vad.onnx" "$scratch/log" || fail "verify-only did not name the file: $(cat "$scratch/log")"
fetch "$scratch/manifest.toml" || fail "re-fetch after corruption failed: $(cat "$scratch/log")"
grep -q "fetched and verified" "$scratch/log" || fail "corrupt file was not re-fetched: $(cat "$scratch/log")"
cmp -s "$scratch/cache/models/silero-vad/silero_vad.onnx" "$cache/models/silero-vad/silero_vad.onnx" \
  || fail "re-fetched file differs from the verified one"
echo "test-fetcher: corrupted file re-fetched and verified"

sed 's/^sha256 = "1a153a22[0-9a-f]*"/sha256 = "0000000000000000000000000000000000000000000000000000000000000000"/' \
  "$scratch/manifest.toml" > "$scratch/wrong-sha.toml"
fetch "$scratch/wrong-sha.toml" && fail "a checksum that cannot match was accepted"
grep -q "checksum mismatch for silero-vad/silero_vad.onnx" "$scratch/log" || fail "mismatch message: $(cat "$scratch/log")"
echo "test-fetcher: impossible checksum fails and names the file"

sed 's/^version = "6.2.3"/version = "0.0.0.999"/' "$scratch/manifest.toml" > "$scratch/no-package.toml"
rm -f "$scratch/cache/models/silero-vad/silero_vad.onnx"
fetch "$scratch/no-package.toml" && fail "a package that does not exist was accepted"
grep -q "could not download silero-vad==0.0.0.999" "$scratch/log" || fail "unreachable message: $(cat "$scratch/log")"
echo "test-fetcher: unreachable package fails with a clear message"
echo "test-fetcher: 4 passed, 0 failed"
