#!/usr/bin/env bash
# README's performance figures from the JSON reports of scripts/perf.sh: `loadgen readme`
# computes them (medians, pairs, knees, CPU per delivered line, the targets met or not) and puts
# them between `<!-- perf:begin -->` and `<!-- perf:end -->` in README.md; nothing else in the
# README changes. `scripts/perf-readme.sh --check` only compares, and exits 1 when the README's
# figures are not what the reports give.
#
# Settings (environment):
#   PERF_OUT=target/perf   where the three sets are: bench/, channels/, knee/ (a missing one is
#                          left out; its rows say "not measured")
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${PERF_OUT:-target/perf}
mode=--write
if [ "${1:-}" = "--check" ]; then mode=--check; fi

cargo build --release --quiet -p loadgen
loadgen_bin=${CARGO_TARGET_DIR:-target}/release/loadgen
sets=()
for set in bench channels knee; do
  if [ -d "$OUT/$set" ]; then sets+=("--$set" "$OUT/$set"); fi
done
if [ "${#sets[@]}" -eq 0 ]; then
  echo "no reports in $OUT (bench/, channels/, knee/): run scripts/perf.sh first"
  exit 1
fi
"$loadgen_bin" readme "${sets[@]}" "$mode" README.md
if [ "$mode" = --write ]; then echo "README.md: performance figures from $OUT"; fi
