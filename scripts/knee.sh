#!/usr/bin/env bash
# The knee: steps the open-loop rate up for the auction (a fresh server per step, as
# scripts/bench.sh starts it, driven by `loadgen --rate R --verify`) and for the TLS relay
# baseline (`loadgen baseline --fan-out --rate R`, same shape) in the same run, then reports
# for each the highest rate at which p99 bid round trip <= 5 ms and p99 fan-out <= 10 ms, and
# the ratio auction / relay (`loadgen knee`: text on stdout and in knee.txt, JSON in
# knee.json, beside every step's JSON report), with each rate's server CPU per delivered line
# (auction against relay) and loadgen's per message. With KNEE_ROUNDS above 1 the whole
# ladder runs that many times back to back; `loadgen knee` finds each round's knees and gives
# the medians with the rounds' values. Reports are named KIND-RATE-roundN.json.
#
# Exits non-zero when a run had errors or failed verification, never on a timing threshold:
# shared machines are too noisy for that. Settings (environment):
#   KNEE_RATES="1000 2000 4000 8000"   the rates tried, bids/s in all, lowest first
#   KNEE_SECONDS=5                     measured seconds per step
#   KNEE_ROUNDS=1                      how many times the whole ladder runs, back to back
#   KNEE_BIDDERS=500 KNEE_ITEMS=20     the shape (as scripts/bench.sh)
#   KNEE_OUT=target/knee               where the reports and the summary go
#   SERVER_ARGS=""                     extra auction-server flags
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${KNEE_RATES:-1000 2000 4000 8000}
SECONDS_PER_STEP=${KNEE_SECONDS:-5}
ROUNDS=${KNEE_ROUNDS:-1}
BIDDERS=${KNEE_BIDDERS:-500}
ITEMS=${KNEE_ITEMS:-20}
OUT=${KNEE_OUT:-target/knee}
. scripts/lib/bench.sh

bench_build
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/knee.txt

echo "== machine: $(nproc) cores, $(uname -sr)"
echo "== knee: $BIDDERS bidders, $ITEMS items, ${SECONDS_PER_STEP}s per step, rates: $RATES, $ROUNDS round(s)"
echo "== budgets raised for one host bidding flat out: ${budgets[*]}"
shape=(--bidders "$BIDDERS" --items "$ITEMS" --duration "${SECONDS_PER_STEP}s" --quiet)
failed=0
reports=()
for round in $(seq 1 "$ROUNDS"); do
  for rate in $RATES; do
    run="$work/round$round-rate$rate"
    auction="$OUT/auction-$rate-round$round.json"
    relay="$OUT/relay-$rate-round$round.json"
    start_server "$run"
    echo
    echo "== round $round, $rate bids/s: auction (server $addr)"
    status=0
    "$loadgen_bin" --server "$addr" --ca "$run/certs/ca.pem" "${shape[@]}" --rate "$rate" \
      --round "$round" --verify --metrics-url "$metrics" --json "$auction" || status=$?
    if [ "$status" -ne 0 ]; then
      echo "loadgen exited with $status"
      failed=1
    fi
    stop_server "$run" || failed=1
    [ -f "$auction" ] && reports+=("$auction")

    echo
    echo "== round $round, $rate bids/s: relay baseline (TLS relay, a loadgen child process; same connections and line sizes)"
    status=0
    "$loadgen_bin" baseline --fan-out "${shape[@]}" --rate "$rate" --round "$round" \
      --json "$relay" || status=$?
    if [ "$status" -ne 0 ]; then
      echo "loadgen baseline --fan-out exited with $status"
      failed=1
    fi
    [ -f "$relay" ] && reports+=("$relay")
  done
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
