#!/usr/bin/env bash
# Negative controls for the simulator's checkers: each Cargo feature bug-* breaks the ZAB
# implementation on purpose (src/quorum/leader.rs, src/quorum/learner.rs; the client-visible
# ones src/server/pipeline.rs: bug-read-skips-queued-write, bug-watch-event-after-reply); the seeded sweep
# (tests/sim_sweep.rs, negative_control_is_caught) must find a violation and print its seed.
# A checker that never fails proves nothing.
#
#   bash tests/sim_negative.sh                 # every control
#   bash tests/sim_negative.sh bug-skip-trunc  # one
#   SIM_SKIP=CommittedOnQuorum,NoProtocolError bash tests/sim_negative.sh
#       # without the early-warning checkers: the headline properties must catch them too
#
# Each control builds the crate once more with its feature; debug builds compile in a fraction
# of the time and still catch every control within seconds (SIM_NEGATIVE_RELEASE=1 for
# release).
set -euo pipefail
cd "$(dirname "$0")/.."

controls=("$@")
if [ ${#controls[@]} -eq 0 ]; then
    controls=(bug-commit-on-first-ack bug-skip-trunc bug-ack-before-fsync
        bug-read-skips-queued-write bug-watch-event-after-reply)
fi

failed=0
for feature in "${controls[@]}"; do
    echo "== negative control: $feature"
    log=$(mktemp)
    profile=()
    if [ "${SIM_NEGATIVE_RELEASE:-0}" != 0 ]; then
        profile=(--release)
    fi
    if cargo test "${profile[@]}" --features "$feature" --test sim_sweep \
        negative_control_is_caught -- --nocapture >"$log" 2>&1; then
        grep -m1 "negative control caught" "$log"
    else
        echo "FAILED: the sweep did not catch $feature"
        tail -40 "$log"
        failed=1
    fi
    rm -f "$log"
done
exit $failed
