#!/usr/bin/env bash
# Every figure of README's Performance section, measured again, then written into it:
#   1. ROUNDS=3 scripts/bench.sh                                       -> $PERF_OUT/bench
#      (closed loop: the auction and its TLS echo baseline, back-to-back pairs)
#   2. ROUNDS=3 LOADGEN_ARGS="--items-per-bidder 20" scripts/bench.sh  -> $PERF_OUT/channels
#      (every bidder on every item: 10,000 channels, memory per channel)
#   3. KNEE_ROUNDS=3 scripts/knee.sh                                   -> $PERF_OUT/knee
#      (the open-loop ladder, auction then relay at each rate; CPU per delivered line)
#   4. scripts/perf-readme.sh: the block between README's perf markers, from those reports.
# One set after the other, never two at once: they share the machine's cores. At the defaults
# this takes about half an hour on 2 cores (most of it setting up accounts and waiting for the
# auctions to end for --verify).
#
# Exits non-zero when a set had errors or failed verification, never on a timing threshold;
# the README is written all the same (it says how many reports failed). Settings (environment):
#   PERF_OUT=target/perf   where the three sets go
#   PERF_ROUNDS=3          rounds of each set (ROUNDS, KNEE_ROUNDS)
#   and what the scripts take: DURATION (10s), BIDDERS, ITEMS, KNEE_SECONDS (5), KNEE_RATES,
#   SERVER_ARGS; e.g. a short look: DURATION=2s KNEE_SECONDS=2 KNEE_RATES="500 1000".
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${PERF_OUT:-target/perf}
ROUNDS=${PERF_ROUNDS:-3}
failed=0

echo "=== 1/3 closed loop: $ROUNDS rounds of scripts/bench.sh"
ROUNDS=$ROUNDS LOADGEN_ARGS="" BENCH_OUT="$OUT/bench" bash scripts/bench.sh || failed=1
echo
echo "=== 2/3 channels: $ROUNDS rounds of scripts/bench.sh with --items-per-bidder 20"
ROUNDS=$ROUNDS LOADGEN_ARGS="--items-per-bidder 20" BENCH_OUT="$OUT/channels" bash scripts/bench.sh || failed=1
echo
echo "=== 3/3 knee: $ROUNDS rounds of scripts/knee.sh"
KNEE_ROUNDS=$ROUNDS KNEE_OUT="$OUT/knee" bash scripts/knee.sh || failed=1
echo
echo "=== README"
PERF_OUT="$OUT" bash scripts/perf-readme.sh
exit "$failed"
