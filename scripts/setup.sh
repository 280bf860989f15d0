#!/usr/bin/env bash
# Installs what the project needs, and nothing twice:
#   1. the Debian packages in scripts/debian-packages.txt (through sudo when not root);
#   2. a Python venv in the cache with scripts/requirements.txt (reference checks, conversions);
#   3. the models and the ONNX Runtime library from models/manifest.toml, verified by sha256;
#   4. derived models (converted from the fetched ones by scripts in models/), when present.
# Every step says whether it did anything. A second run installs and downloads nothing.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${GST_INTERACTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst-interaction}
mkdir -p "$cache"

# 1. Debian packages
mapfile -t wanted < <(grep -v '^\s*#' "$repo/scripts/debian-packages.txt" | grep -v '^\s*$')
missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "debian: all ${#wanted[@]} packages present, nothing installed"
else
  echo "debian: installing ${#missing[@]} packages: ${missing[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "error: not root and no sudo; install as root: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  # A new GStreamer install can leave a registry cache that predates it.
  rm -f "$HOME/.cache/gstreamer-1.0/registry."*.bin
fi

# 2. Python tools venv (only for reference checks and model conversion, never at run time)
venv="$cache/venv"
stamp="$venv/.requirements.sha256"
want_stamp=$(sha256sum "$repo/scripts/requirements.txt" | cut -d' ' -f1)
if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want_stamp" ]]; then
  echo "python: venv up to date ($venv), nothing installed"
else
  echo "python: creating venv $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/scripts/requirements.txt"
  echo "$want_stamp" > "$stamp"
fi

# 3. models and the ONNX Runtime library
GST_INTERACTION_CACHE="$cache" "$venv/bin/python" "$repo/scripts/fetch-models.py"

# 4. derived models: each models/*/derive.sh converts fetched files and is itself idempotent
for derive in "$repo"/models/*/derive.sh; do
  [[ -e $derive ]] || continue
  GST_INTERACTION_CACHE="$cache" PYTHON="$venv/bin/python" bash "$derive"
done
