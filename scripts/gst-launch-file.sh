#!/usr/bin/env bash
# Runs a pipeline file from pipelines/ with gst-launch-1.0.
#   scripts/gst-launch-file.sh pipelines/NAME.pipeline [NAME=value ...]
# Placeholders `${NAME}` take the values given here, else the file's `# default NAME=value`.
# Plugins are found through GST_PLUGIN_PATH (the Makefile and README show how to set it).
set -euo pipefail
file=${1:?usage: gst-launch-file.sh FILE.pipeline [NAME=value ...]}
shift
declare -A values=()
while IFS= read -r line; do
  if [[ $line =~ ^#[[:space:]]*default[[:space:]]+([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
    values[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
  fi
done < "$file"
for assignment in "$@"; do values[${assignment%%=*}]=${assignment#*=}; done
description=$(grep -v '^[[:space:]]*#' "$file" | sed 's/\\$//' | tr '\n' ' ')
for name in "${!values[@]}"; do description=${description//\$\{$name\}/${values[$name]}}; done
if [[ $description == *'${'* ]]; then
  echo "error: unset placeholder in $file: $(grep -o '\${[A-Za-z_0-9]*}' <<<"$description" | head -1)" >&2
  exit 2
fi
# Word splitting is what gst-launch-1.0 expects here, as on a command line.
# shellcheck disable=SC2086
exec gst-launch-1.0 -e $description
