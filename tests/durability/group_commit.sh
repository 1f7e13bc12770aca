#!/usr/bin/env bash
# Group commit, made visible: zabd bench runs setData load with 1..N sessions against a zabd
# on a temporary dataDir, and mntr (read inside the measured window, so the bench's own setup
# and cleanup are left out) gives the transactions and fdatasync batches the sync thread did:
# transactions per fsync = delta zk_sum_sync_processor_batch_size / delta zk_cnt_fsynctime.
# With strace available (GROUP_COMMIT_STRACE=1 installs it with apt-get if missing), one run
# is also counted from the outside: fdatasync calls of the zabd process (a sync that covers a
# rolled file as well as the current one makes two calls; the log rolls at each snapshot).
#
#   bash tests/durability/group_commit.sh
#   GROUP_COMMIT_RUNS="1x1 64x10 256x10" GROUP_COMMIT_SECONDS=5 bash tests/durability/group_commit.sh
#
# Environment: ZABD_BIN (see common.sh), GROUP_COMMIT_PORT (22193), GROUP_COMMIT_SECONDS (4),
# GROUP_COMMIT_RUNS (SESSIONSxWINDOW list), GROUP_COMMIT_STRACE (0/1), GROUP_COMMIT_VALUE (100).
# Ends with "N passed, N failed" (sanity checks: every bench ran without errors, fsyncs
# happened, and with many sessions several transactions share an fsync).
NAME=group-commit
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PORT="${GROUP_COMMIT_PORT:-22193}"
SECS="${GROUP_COMMIT_SECONDS:-4}"
RUNS="${GROUP_COMMIT_RUNS:-1x1 8x1 64x1 256x1 8x100 64x10 256x10}"
VALUE="${GROUP_COMMIT_VALUE:-100}"

need_zabd
port_busy "$PORT" && die "port $HOST:$PORT is already in use; set GROUP_COMMIT_PORT"
if [ "${GROUP_COMMIT_STRACE:-0}" = 1 ] && ! command -v strace >/dev/null; then
    apt_install strace
fi

write_cfg "$WORK/zoo.cfg" "$WORK/data" "$PORT" maxClientCnxns=0 globalOutstandingLimit=100000
start_zabd "$WORK/zoo.cfg" "$WORK/zabd.log"
ZPID=$LAST_PID
wait_ready "$PORT" "$ZPID" "$WORK/zabd.log" 30 || die "zabd did not start"
log "zabd pid $ZPID on $HOST:$PORT, dataDir $WORK/data ($(df -T "$WORK" | awk 'NR==2 {print $2" on "$1}'))"

mntr_value() { # TEXT KEY
    awk -v k="$2" -F'\t' '$1 == k { print $2 }' <<<"$1"
}

ROWS=()
for run in $RUNS; do
    sessions=${run%x*}
    window=${run#*x}
    out="$WORK/bench-$run.log"
    strace_out=""
    "$ZABD_BIN" bench -s "$HOST:$PORT" -c "$sessions" -w "$window" --mix set=100 \
        -b "$VALUE" -k 1000 --warmup 1 -d "$SECS" --quiet --connect-timeout 30 >"$out" 2>&1 &
    bpid=$!
    PIDS+=("$bpid")
    # Inside the measured window: from 1.5 s to SECS + 0.5 s after the start (setup takes well
    # under 0.5 s; the warm-up is 1 s).
    sleep 1.5
    m1="$(four_letter "$PORT" mntr)"
    t1=$(date +%s.%N)
    if [ "${GROUP_COMMIT_STRACE:-0}" = 1 ] && command -v strace >/dev/null; then
        strace_out="$WORK/strace-$run.txt"
        timeout -s INT "$(awk -v s="$SECS" 'BEGIN { print s - 1 }')" \
            strace -c -f -e trace=fdatasync,fsync -p "$ZPID" -o "$strace_out" 2>/dev/null
    else
        sleep "$(awk -v s="$SECS" 'BEGIN { print s - 1 }')"
    fi
    m2="$(four_letter "$PORT" mntr)"
    t2=$(date +%s.%N)
    timeout 120 tail --pid="$bpid" -f /dev/null
    wait "$bpid"
    brc=$?
    result="$(grep '^result:' "$out")"
    if [ "$brc" = 0 ] && [[ "$result" == *" errors=0 "* ]]; then
        pass "bench ${sessions} sessions x ${window} outstanding: $(grep -o 'ops_per_s=[0-9.]*' <<<"$result")"
    else
        fail "bench $run exited $brc: $(tail -3 "$out" | tr '\n' ' ')"
        continue
    fi
    txns=$(( $(mntr_value "$m2" zk_sum_sync_processor_batch_size) - $(mntr_value "$m1" zk_sum_sync_processor_batch_size) ))
    syncs=$(( $(mntr_value "$m2" zk_cnt_fsynctime) - $(mntr_value "$m1" zk_cnt_fsynctime) ))
    fs_ms=$(awk -v a="$(mntr_value "$m1" zk_sum_fsynctime)" -v b="$(mntr_value "$m2" zk_sum_fsynctime)" 'BEGIN { print b - a }')
    if [ "$syncs" -gt 0 ]; then pass "$run: $syncs fsyncs in the window"; else fail "$run: no fsync counted by mntr"; continue; fi
    per=$(awk -v t="$txns" -v s="$syncs" 'BEGIN { printf "%.1f", t / s }')
    tps=$(awk -v t="$txns" -v a="$t1" -v b="$t2" 'BEGIN { printf "%.0f", t / (b - a) }')
    avg_fs=$(awk -v f="$fs_ms" -v s="$syncs" 'BEGIN { printf "%.3f", f / s }')
    st="-"
    if [ -n "$strace_out" ] && [ -s "$strace_out" ]; then
        st=$(awk '$NF == "fdatasync" { print $4 }' "$strace_out")
        st="${st:-0}"
    fi
    p50=$(grep -o 'p50_us=[0-9.]*' <<<"$result" | cut -d= -f2)
    p99=$(grep -o 'p99_us=[0-9.]*' <<<"$result" | cut -d= -f2)
    ROWS+=("$(printf '%8s %7s %10s %9s %9s %9s %12s %10s %10s %16s' "$sessions" "$window" "$tps" "$txns" "$syncs" "$per" "$avg_fs" "$p50" "$p99" "$st")")
    if [ "$((sessions * window))" -ge 64 ]; then
        if awk -v p="$per" 'BEGIN { exit !(p > 1.5) }'; then
            pass "$run: group commit visible ($per transactions per fsync)"
        else
            fail "$run: only $per transactions per fsync with $((sessions * window)) writes outstanding"
        fi
    fi
done

echo
echo "setData, ${VALUE}-byte values, mntr deltas over ~$((SECS - 1)) s inside each measured window"
printf '%8s %7s %10s %9s %9s %9s %12s %10s %10s %16s\n' sessions window "txn/s" txns fsyncs "txn/fsync" "avg fsync ms" "p50 us" "p99 us" "strace fdatasync"
printf '%s\n' "${ROWS[@]}"
stop_pid "$ZPID" TERM
summary
