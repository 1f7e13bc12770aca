#!/usr/bin/env bash
# Negative control for the process-level fault-injection harness (tests/nemesis): zabd built
# with the Cargo feature bug-commit-on-first-ack (the leader commits on the first ACK, its own)
# runs under the isolate-leader nemesis; the isolated leader keeps acknowledging writes no
# follower has, so the checkers must report anomalies (non-linearizable register, duplicated
# ids, lost enqueues). The test failing with "nemesis found" is the expected outcome here.
# A checker that never fails proves nothing.
#
#   bash tests/nemesis_negative.sh
#   NEMESIS_SEED=42 bash tests/nemesis_negative.sh   # a chosen schedule
set -euo pipefail
cd "$(dirname "$0")/.."

feature=bug-commit-on-first-ack
echo "== nemesis negative control: $feature"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if NEMESIS_SERVERS=3 NEMESIS_SECS="${NEMESIS_SECS:-12}" NEMESIS_FAULTS=isolate-leader \
    cargo test --release --features "$feature" --test nemesis nemesis_3_servers \
    -- --nocapture >"$log" 2>&1; then
    echo "FAILED: the nemesis harness did not catch $feature"
    grep -A12 "nemesis summary" "$log" || tail -40 "$log"
    exit 1
fi
if grep -q "nemesis found" "$log"; then
    grep -m1 "NEMESIS_SEED=" "$log"
    grep -A8 "nemesis summary" "$log"
    echo "negative control caught: $feature"
else
    echo "FAILED: the nemesis test failed for another reason than an anomaly"
    tail -60 "$log"
    exit 1
fi
