#!/usr/bin/env bash
# After the build: gst-inspect-1.0, with the environment the README documents, must find every
# element the project has. The list is every `gst::Element::register(…, "name", …)` in plugins/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plugin_dir=${1:-$repo/target/debug}
export GST_PLUGIN_PATH=$plugin_dir
export GST_REGISTRY=${GST_REGISTRY:-$repo/target/gst-registry.bin}
# -z: rustfmt may break the call over several lines.
mapfile -t elements < <(grep -rhzoP 'Element::register\(\s*Some\(plugin\),\s*"\K[a-z0-9]+' "$repo/plugins" | tr '\0' '\n' | sort -u)
missing=0
for element in "${elements[@]}"; do
  if gst-inspect-1.0 "$element" >/dev/null 2>&1; then
    echo "gst-inspect: $element found"
  else
    echo "gst-inspect: $element NOT found with GST_PLUGIN_PATH=$plugin_dir" >&2
    missing=1
  fi
done
echo "gst-inspect: ${#elements[@]} elements checked"
exit $missing
