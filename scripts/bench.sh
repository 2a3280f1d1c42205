#!/usr/bin/env bash
# Benchmark: release binaries; for each round, a fresh server (free loopback ports, a new
# temporary database, metrics on) driven by `loadgen --verify`, then the TLS echo baseline with
# the same shape; finally the medians and the auction / baseline ratio (`loadgen summarize`), with
# every run's latency curves, answers per second and figures on one HTML page (bench.html) and
# the latency curves alone as bench-latency.svg.
#
# Exits non-zero when a run had errors or failed verification, never on a timing threshold:
# shared machines are too noisy for that. Settings (environment):
#   BIDDERS=500 ITEMS=20 DURATION=10s ROUNDS=1   the shape and how many rounds
#   LOADGEN_ARGS="--rate 20000"                  extra loadgen flags (open loop, --items-per-bidder 20, ...)
#   BENCH_OUT=target/bench                       where the JSON reports, .hgrm files and plots go
#   SERVER_ARGS=""                               extra auction-server flags (e.g. --no-group-commit)
set -euo pipefail
cd "$(dirname "$0")/.."

BIDDERS=${BIDDERS:-500}
ITEMS=${ITEMS:-20}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-1}
OUT=${BENCH_OUT:-target/bench}
read -r -a extra <<<"${LOADGEN_ARGS:-}"
. scripts/lib/bench.sh

bench_build
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.hgrm "$OUT"/*.html "$OUT"/*.svg

echo "== machine: $(nproc) cores, $(uname -sr)"
echo "== shape: $BIDDERS bidders, $ITEMS items, $DURATION per run, $ROUNDS round(s) ${LOADGEN_ARGS:+(loadgen $LOADGEN_ARGS)}"
echo "== budgets raised for one host bidding flat out: ${budgets[*]}"
failed=0
reports=()
for round in $(seq 1 "$ROUNDS"); do
  run="$work/round$round"
  start_server "$run"

  echo
  echo "== round $round: auction (server $addr, $metrics)"
  status=0
  "$loadgen_bin" --server "$addr" --ca "$run/certs/ca.pem" \
    --bidders "$BIDDERS" --items "$ITEMS" --duration "$DURATION" --verify --quiet --round "$round" \
    --metrics-url "$metrics" --json "$OUT/auction-$round.json" --hgrm "$OUT/auction-$round.hgrm" \
    "${extra[@]}" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "loadgen exited with $status"
    failed=1
  fi
  stop_server "$run" || failed=1
  [ -f "$OUT/auction-$round.json" ] && reports+=("$OUT/auction-$round.json")

  echo
  echo "== round $round: baseline (TLS echo server, a loadgen child process; same connections and line sizes)"
  status=0
  baseline_args=(--bidders "$BIDDERS" --items "$ITEMS" --duration "$DURATION" --quiet
    --round "$round" --json "$OUT/baseline-$round.json")
  # The baseline takes the connection layout flag too.
  for ((i = 0; i < ${#extra[@]}; i++)); do
    if [ "${extra[$i]}" = "--items-per-bidder" ]; then
      baseline_args+=(--items-per-bidder "${extra[$((i + 1))]}")
    fi
  done
  "$loadgen_bin" baseline "${baseline_args[@]}" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "loadgen baseline exited with $status"
    failed=1
  fi
  [ -f "$OUT/baseline-$round.json" ] && reports+=("$OUT/baseline-$round.json")
done

echo
echo "== summary (reports in $OUT)"
"$loadgen_bin" summarize "${reports[@]}" --html "$OUT/bench.html" --svg "$OUT/bench-latency.svg" || failed=1
echo "plots: $OUT/bench.html, $OUT/bench-latency.svg"
exit "$failed"
