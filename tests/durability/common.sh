# Shared by the durability scripts (sourced, not run): tool installation (Apache ZooKeeper 3.8
# from Debian, kazoo in a virtualenv, the zabd release binary), servers on 127.0.0.1 that the
# script's EXIT trap stops, bounded waits, and PASS/FAIL accounting ending in the line
# "N passed, N failed".
#
# The sourcing script sets NAME (for log lines) before sourcing, and may set:
#   ZABD_BIN      zabd binary (default: cargo build --release, target/release/zabd)
#   COMPAT_VENV   virtualenv with kazoo (default ${XDG_CACHE_HOME:-~/.cache}/zabd-compat/venv)
#   DURABILITY_KEEP=1  keep the work dir (it is kept anyway when something failed)

set -uo pipefail

COMMON_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$COMMON_HERE/../.." && pwd)"
HOST=127.0.0.1
ZK_BIN_DIR=/usr/share/zookeeper/bin
KAZOO_SPEC="${KAZOO_SPEC:-kazoo==2.11.0}"
VENV="${COMPAT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/zabd-compat/venv}"
PY="$VENV/bin/python"
export DEBIAN_FRONTEND=noninteractive

START_TS=$(date +%s)
PASSED=0
FAILED=0
FAILURES=()
PIDS=()
WORK="$(mktemp -d "/tmp/zabd-${NAME:-durability}.XXXXXX")" || { echo "mktemp failed"; echo "0 passed, 1 failed"; exit 1; }

log() { printf '[%s %s] %s\n' "${NAME:-durability}" "$(date +%H:%M:%S)" "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); echo "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); FAILURES+=("$*"); echo "FAIL $*"; }
die() {
    printf '[%s] FATAL: %s\n' "${NAME:-durability}" "$*" >&2
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
}

# summary: the closing line, and the exit status
summary() {
    log "finished in $(( $(date +%s) - START_TS ))s"
    if [ "${#FAILURES[@]}" -gt 0 ]; then
        log "failures:"
        printf '  %s\n' "${FAILURES[@]}" >&2
    fi
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
}

# stop_pid PID [SIGNAL]: signal (TERM by default), wait up to 15 s, then KILL
stop_pid() {
    local pid=$1 sig=${2:-TERM}
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill "-$sig" "$pid" 2>/dev/null
    for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still alive 15 s after SIG$sig: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

common_cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && stop_pid "$pid" TERM
    done
    if [ "${DURABILITY_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap common_cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to apt-get install $* (install them by hand)"
    command -v apt-get >/dev/null || die "apt-get not available to install $*"
    log "apt-get install $*"
    timeout 900 apt-get -o DPkg::Lock::Timeout=600 update -q >"$WORK/apt-update.log" 2>&1 \
        || { tail -20 "$WORK/apt-update.log" >&2; die "apt-get update failed"; }
    timeout 1800 apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@" >"$WORK/apt-install.log" 2>&1 \
        || { tail -30 "$WORK/apt-install.log" >&2; die "apt-get install $* failed"; }
}

need_zookeeper() {
    if [ ! -x "$ZK_BIN_DIR/zkServer.sh" ] || ! command -v java >/dev/null; then
        apt_install zookeeper zookeeper-bin
    fi
    [ -x "$ZK_BIN_DIR/zkServer.sh" ] || die "$ZK_BIN_DIR/zkServer.sh missing after installing zookeeper"
    command -v java >/dev/null || die "java missing after installing zookeeper"
}

need_kazoo() {
    if ! "$PY" -c "import sys, kazoo.version as v; sys.exit(v.__version__ != '${KAZOO_SPEC#kazoo==}')" >/dev/null 2>&1; then
        command -v python3 >/dev/null || apt_install python3 python3-venv
        if ! [ -x "$PY" ]; then
            log "creating virtualenv $VENV"
            mkdir -p "$(dirname "$VENV")"
            if ! python3 -m venv "$VENV" >"$WORK/venv.log" 2>&1; then
                rm -rf "$VENV"
                apt_install python3-venv
                python3 -m venv "$VENV" >"$WORK/venv.log" 2>&1 || { cat "$WORK/venv.log" >&2; die "python3 -m venv failed"; }
            fi
        fi
        log "pip install $KAZOO_SPEC"
        timeout 600 "$PY" -m pip install -q --disable-pip-version-check "$KAZOO_SPEC" >"$WORK/pip.log" 2>&1 \
            || { tail -20 "$WORK/pip.log" >&2; die "pip install $KAZOO_SPEC failed"; }
        "$PY" -c 'import kazoo' || die "$KAZOO_SPEC not importable after pip install"
    fi
}

need_zabd() {
    if [ -z "${ZABD_BIN:-}" ]; then
        command -v cargo >/dev/null || die "cargo not found and ZABD_BIN not set"
        log "cargo build --release (in $REPO)"
        (cd "$REPO" && timeout 3000 cargo build --release) >"$WORK/cargo-build.log" 2>&1 \
            || { tail -40 "$WORK/cargo-build.log" >&2; die "cargo build --release failed"; }
        ZABD_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/zabd"
    fi
    [ -x "$ZABD_BIN" ] || die "zabd binary not executable: $ZABD_BIN"
}

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# four_letter PORT WORD: the server's answer (empty on failure), 5 s at most
four_letter() {
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; printf "%s" "$2" >&3; timeout 3 cat <&3' \
        "$HOST" "$1" "$2" 2>/dev/null
}

# write_cfg FILE DATADIR PORT [extra zoo.cfg lines...]
write_cfg() {
    local file=$1 data=$2 port=$3; shift 3
    mkdir -p "$data"
    {
        echo "tickTime=2000"
        echo "dataDir=$data"
        echo "clientPort=$port"
        echo "clientPortAddress=$HOST"
        echo "4lw.commands.whitelist=*"
        echo "admin.enableServer=false"
        local line
        for line in "$@"; do echo "$line"; done
    } >"$file"
}

# start_zk CFG LOG [-Dprop=value...]: ZooKeeper in the foreground; sets LAST_PID
start_zk() {
    local cfg=$1 out=$2; shift 2
    JMXDISABLE=true ZOO_LOG_DIR="$(dirname "$out")" \
    SERVER_JVMFLAGS="-Dzookeeper.admin.enableServer=false -Xmx512m $*" \
        "$ZK_BIN_DIR/zkServer.sh" start-foreground "$cfg" >>"$out" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# start_zabd CFG LOG: sets LAST_PID
start_zabd() {
    local cfg=$1 out=$2
    RUST_LOG="${RUST_LOG:-info}" "$ZABD_BIN" "$cfg" >>"$out" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_ready PORT PID LOG [SECONDS]: until ruok answers imok; 1 if the server died or timed out
wait_ready() {
    local port=$1 pid=$2 out=$3 deadline=$((SECONDS + ${4:-60}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "server (pid $pid) exited during start-up; last lines of $out:"
            tail -20 "$out" >&2
            return 1
        fi
        [ "$(four_letter "$port" ruok)" = imok ] && return 0
        sleep 0.2
    done
    log "server on port $port not ready after ${4:-60}s; last lines of $out:"
    tail -20 "$out" >&2
    return 1
}

# py_count OUT RC LABEL: adds up the PASS/FAIL lines of a helper's output file (echoing it);
# a non-zero exit status without a FAIL line counts as one failure.
py_count() {
    local out=$1 rc=$2 label=$3 p f line
    grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$out"
    p=$(grep -c '^PASS ' "$out")
    f=$(grep -c '^FAIL ' "$out")
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    while IFS= read -r line; do FAILURES+=("${line#FAIL }"); done < <(grep '^FAIL ' "$out")
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        fail "$label: exited with status $rc (see $out)"
        tail -15 "$out"
    fi
    return "$rc"
}

# py_step TIMEOUT_S ARGS...: runs a Python helper in the foreground and counts its results.
py_step() {
    local tmo=$1; shift
    local out="$WORK/step-$RANDOM$RANDOM.log" rc
    timeout -k 5 "$tmo" "$PY" -u "$@" >"$out" 2>&1
    rc=$?
    py_count "$out" "$rc" "$(basename "$1") ${2:-}"
}

# py_bg OUT TIMEOUT_S ARGS...: runs a Python helper in the background (sets BG_PID); collect
# its results later with py_wait.
py_bg() {
    local out=$1 tmo=$2; shift 2
    timeout -k 5 "$tmo" "$PY" -u "$@" >"$out" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# py_wait PID OUT LABEL
py_wait() {
    local rc
    wait "$1"
    rc=$?
    py_count "$2" "$rc" "$3"
}
