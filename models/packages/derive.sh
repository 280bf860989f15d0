#!/usr/bin/env bash
# Installs the model packages (each models/packages/<name>/ with its manifest.toml) into
# $cache/packages/<name>/, where interactionmodel finds the default package without any
# property. Idempotent: files already identical are not copied.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GST_INTERACTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst-interaction}
changed=0
for dir in "$here"/*/; do
  name=$(basename "$dir")
  [[ -f $dir/manifest.toml ]] || continue
  mkdir -p "$cache/packages/$name"
  for file in "$dir"*; do
    target=$cache/packages/$name/$(basename "$file")
    if ! cmp -s "$file" "$target"; then
      cp "$file" "$target"
      changed=1
    fi
  done
done
if ((changed)); then
  echo "packages: installed model packages into $cache/packages"
else
  echo "packages: model packages up to date in $cache/packages, nothing done"
fi
