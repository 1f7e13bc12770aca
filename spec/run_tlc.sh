#!/usr/bin/env bash
# Checks the ZAB specification with TLC:
#   1. SANY (parse + level check) of MC_Zab.tla / Zab.tla;
#   2. the smoke model MC_Zab_smoke.cfg, exhaustive, must find no violation;
#   3. reachability probes on the smoke bounds (DIFF, TRUNC, SNAP sent, a
#      commit, two epochs): each must be violated, i.e. reached;
#   4. every negative control MC_Zab_bug_*.cfg: each must report a violation;
#   5. trace validation (Trace.tla, MC_Trace.cfg): every simulator trace in
#      traces/ must be accepted, and traces/corrupt_*.tla must be rejected.
# Skipped (exit 0) when TLA2TOOLS_JAR is not set; exits non-zero on any
# unexpected result.  Nothing is written into the repository: the spec is
# copied to a temporary directory and TLC's files go there.
#
#   TLA2TOOLS_JAR=/opt/tla/tla2tools.jar bash spec/run_tlc.sh
#
# TLC_WORKERS (default 1) and TLC_NICE (default 10) tune the runs.
set -u

if [ -z "${TLA2TOOLS_JAR:-}" ]; then
    echo "TLC skipped: TLA2TOOLS_JAR not set"
    exit 0
fi
if [ ! -f "$TLA2TOOLS_JAR" ]; then
    echo "error: TLA2TOOLS_JAR=$TLA2TOOLS_JAR is not a file" >&2
    exit 1
fi
command -v java >/dev/null || { echo "error: java not found" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/zab-tlc.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$here"/*.tla "$here"/*.cfg "$work"/
mkdir "$work/traces" && cp "$here"/traces/*.tla "$work/traces/"
cd "$work"

workers=${TLC_WORKERS:-1}
niceness=${TLC_NICE:-10}
failures=0

tlc() { # cfg log
    nice -n "$niceness" java -XX:+UseParallelGC -cp "$TLA2TOOLS_JAR" tlc2.TLC \
        -workers "$workers" -deadlock -noGenerateSpecTE -metadir "$work/meta.$1" \
        -config "$1" MC_Zab.tla >"$2" 2>&1
}
figures() { # log
    local states depth t
    states=$(grep -oE '[0-9,]+ distinct states found' "$1" | tail -1 | cut -d' ' -f1)
    depth=$(grep -oE 'depth of the complete state graph search is [0-9]+' "$1" | grep -oE '[0-9]+$')
    t=$(grep -oE 'Finished in [^ ]+( [^ ]+)?' "$1" | sed 's/Finished in //' | sed 's/ at.*//')
    echo "distinct states ${states:-?}, depth ${depth:-?}, time ${t:-?}"
}
expect_ok() { # cfg
    local log="$work/$1.log" rc
    tlc "$1" "$log"; rc=$?
    if [ $rc -eq 0 ] && grep -q "No error has been found" "$log"; then
        echo "ok    $1: no violation; $(figures "$log")"
    else
        echo "FAIL  $1: expected no violation (TLC exit $rc)"; tail -40 "$log"
        failures=$((failures + 1))
    fi
}
expect_violation() { # cfg
    local log="$work/$1.log" rc what len
    tlc "$1" "$log"; rc=$?
    what=$(grep -oE '(Invariant|Action property|Temporal property) [A-Za-z0-9_]+ is violated' "$log" | head -1)
    len=$(grep -oE '^State [0-9]+:' "$log" | tail -1 | grep -oE '[0-9]+')
    if [ $rc -eq 12 ] && [ -n "$what" ]; then
        echo "ok    $1: $what; counterexample of ${len:-?} states; $(figures "$log")"
    else
        echo "FAIL  $1: expected a violation (TLC exit $rc)"; tail -40 "$log"
        failures=$((failures + 1))
    fi
}

echo "== SANY"
if java -cp "$TLA2TOOLS_JAR" tla2sany.SANY MC_Zab.tla >sany.log 2>&1 \
   && ! grep -qiE 'error|could not parse' sany.log; then
    echo "ok    SANY MC_Zab.tla Zab.tla"
else
    echo "FAIL  SANY"; cat sany.log; exit 1
fi

echo "== smoke model"
expect_ok MC_Zab_smoke.cfg

echo "== reachability probes (smoke bounds; each must be reached)"
for probe in NeverDIFF NeverTRUNC NeverSNAP NeverCommitted NeverTwoEpochs NeverTornNEWLEADER; do
    sed -e '/^INVARIANTS/,$d' MC_Zab_smoke.cfg >"probe_$probe.cfg"
    printf 'INVARIANTS\n    %s\nCHECK_DEADLOCK FALSE\n' "$probe" >>"probe_$probe.cfg"
    expect_violation "probe_$probe.cfg"
done

echo "== negative controls (each must be violated)"
for cfg in MC_Zab_bug_*.cfg; do
    expect_violation "$cfg"
done

echo "== trace validation (simulator traces; corrupt_* must be rejected)"
# Trace.tla's invariant TraceAccepted is violated exactly when the whole trace
# was replayed; "No error" means it was not, and the depth says where it stopped.
for trace in traces/*.tla; do
    name=$(basename "$trace" .tla)
    dir="$work/trace.$name"
    mkdir "$dir" && cp Zab.tla Trace.tla MC_Trace.cfg "$dir/" && cp "$trace" "$dir/TraceData.tla"
    events=$(grep -c '^  \[a |->' "$trace")
    log="$dir/tlc.log"
    (cd "$dir" && nice -n "$niceness" java -XX:+UseParallelGC -cp "$TLA2TOOLS_JAR" tlc2.TLC \
        -workers 1 -deadlock -noGenerateSpecTE -metadir "$dir/meta" \
        -config MC_Trace.cfg Trace.tla >"$log" 2>&1)
    what=$(grep -oE '(Invariant|Action property|Temporal property) [A-Za-z0-9_]+ is violated' "$log" | head -1)
    depth=$(grep -oE 'depth of the complete state graph search is [0-9]+' "$log" | grep -oE '[0-9]+$')
    matched=$(( ${depth:-1} - 1 ))
    case "$name" in
    corrupt_*)
        if grep -q "No error has been found" "$log"; then
            echo "ok    $name: rejected; events 1..$matched of $events replay, event $((matched + 1)) does not"
        else
            echo "FAIL  $name: a corrupted trace was not rejected (${what:-no verdict})"; tail -20 "$log"
            failures=$((failures + 1))
        fi ;;
    *)
        if [ "$what" = "Invariant TraceAccepted is violated" ]; then
            echo "ok    $name: accepted, all $events events replay"
        else
            echo "FAIL  $name: ${what:-not accepted: events 1..$matched of $events replay, event $((matched + 1)) does not}"
            tail -20 "$log"
            failures=$((failures + 1))
        fi ;;
    esac
done

if [ $failures -ne 0 ]; then
    echo "TLC: $failures unexpected result(s)"
    exit 1
fi
echo "TLC: all results as expected"
