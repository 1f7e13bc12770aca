#!/usr/bin/env bash
# kill -9 durability rounds against a real zabd process: crash.py runs the rounds (write load
# from several kazoo sessions with every acknowledged write recorded, kill -9 at a random
# moment, `zabd datadir check`, restart, verification) and prints a summary table. See the
# docstring of crash.py for what is checked. Ends with "N passed, N failed"; exit status 0 only
# if all passed.
#
# Environment: ZABD_BIN, COMPAT_VENV, DURABILITY_KEEP=1 (see common.sh); CRASH_PORT (default
# 22192), CRASH_ROUNDS (30), CRASH_MAX_SECONDS (150: no round starts after that), CRASH_SEED.
NAME=crash
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PORT="${CRASH_PORT:-22192}"
ROUNDS="${CRASH_ROUNDS:-30}"
MAX_S="${CRASH_MAX_SECONDS:-150}"

need_kazoo
need_zabd
port_busy "$PORT" && die "port $HOST:$PORT is already in use (stale server?); set CRASH_PORT"

# crash.py kills its zabd on exit; should crash.py itself be killed, the trap kills the zabd it
# left (its pid is in $WORK/zabd.pid).
kill_left_zabd() {
    local pid
    pid=$(cat "$WORK/zabd.pid" 2>/dev/null) || return 0
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q zabd "/proc/$pid/cmdline" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
}
trap 'kill_left_zabd; common_cleanup' EXIT

log "$ROUNDS rounds at most, ${MAX_S}s at most, zabd on $HOST:$PORT, dataDir $WORK/data"
py_step "$((MAX_S + 120))" "$COMMON_HERE/crash.py" "$ZABD_BIN" "$WORK" "$PORT" "$ROUNDS" "$MAX_S"
summary
