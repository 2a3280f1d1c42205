#!/usr/bin/env bash
# The knee: steps the open-loop rate up for the auction (a fresh server per step, as
# scripts/bench.sh starts it, driven by `loadgen --rate R --verify`) and for the TLS relay
# baseline (`loadgen baseline --fan-out --rate R`, same shape) in the same run, then reports
# for each the highest rate at which p99 bid round trip <= 5 ms and p99 fan-out <= 10 ms, and
# the ratio auction / relay (`loadgen knee`: text on stdout and in knee.txt, JSON in
# knee.json, beside every step's JSON report).
#
# Exits non-zero when a run had errors or failed verification, never on a timing threshold:
# shared machines are too noisy for that. Settings (environment):
#   KNEE_RATES="1000 2000 4000 8000"   the rates tried, bids/s in all, lowest first
#   KNEE_SECONDS=5                     measured seconds per step
#   KNEE_BIDDERS=500 KNEE_ITEMS=20     the shape (as scripts/bench.sh)
#   KNEE_OUT=target/knee               where the reports and the summary go
#   SERVER_ARGS=""                     extra auction-server flags
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${KNEE_RATES:-1000 2000 4000 8000}
SECONDS_PER_STEP=${KNEE_SECONDS:-5}
BIDDERS=${KNEE_BIDDERS:-500}
ITEMS=${KNEE_ITEMS:-20}
OUT=${KNEE_OUT:-target/knee}
. scripts/lib/bench.sh

bench_build
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/knee.txt

echo "== machine: $(nproc) cores, $(uname -sr)"
echo "== knee: $BIDDERS bidders, $ITEMS items, ${SECONDS_PER_STEP}s per step, rates: $RATES"
echo "== budgets raised for one host bidding flat out: ${budgets[*]}"
shape=(--bidders "$BIDDERS" --items "$ITEMS" --duration "${SECONDS_PER_STEP}s" --quiet)
failed=0
reports=()
for rate in $RATES; do
  run="$work/rate$rate"
  start_server "$run"
  echo
  echo "== $rate bids/s: auction (server $addr)"
  status=0
  "$loadgen_bin" --server "$addr" --ca "$run/certs/ca.pem" "${shape[@]}" --rate "$rate" \
    --verify --metrics-url "$metrics" --json "$OUT/auction-$rate.json" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "loadgen exited with $status"
    failed=1
  fi
  stop_server "$run" || failed=1
  [ -f "$OUT/auction-$rate.json" ] && reports+=("$OUT/auction-$rate.json")

  echo
  echo "== $rate bids/s: relay baseline (TLS relay, a loadgen child process; same connections and line sizes)"
  status=0
  "$loadgen_bin" baseline --fan-out "${shape[@]}" --rate "$rate" \
    --json "$OUT/relay-$rate.json" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "loadgen baseline --fan-out exited with $status"
    failed=1
  fi
  [ -f "$OUT/relay-$rate.json" ] && reports+=("$OUT/relay-$rate.json")
done

echo
echo "== knee (reports in $OUT)"
if [ "${#reports[@]}" -eq 0 ]; then
  echo "no report was written"
  exit 1
fi
"$loadgen_bin" knee "${reports[@]}" --json "$OUT/knee.json" | tee "$OUT/knee.txt" || failed=1
echo "summary: $OUT/knee.txt, $OUT/knee.json"
exit "$failed"
