#!/usr/bin/env bash
# External-client compatibility tests for zabd.
#
# Starts an Apache ZooKeeper 3.8 reference server and zabd (or, with
# COMPAT_SELFTEST=1, a second ZooKeeper in place of zabd), then runs:
#   1. zkcli_scenario.py  - a zkCli.sh session against both, normalised and diffed
#   2. differential.py    - a kazoo raw-API scenario against both, compared step by step
#   3. kazoo_recipes.py   - kazoo recipes against zabd (and against ZooKeeper as reference)
#   4. ../durability/migration.sh - dataDir moves ZooKeeper -> zabd and zabd -> ZooKeeper
#   5. ../durability/crash.sh     - kill -9 rounds: every acknowledged write survives
# and prints a closing "N passed, N failed" line. Exit status 0 only if all passed.
#
# Environment:
#   ZABD_BIN          zabd binary (default: cargo build --release, target/release/zabd)
#   COMPAT_SELFTEST=1 run ZooKeeper in place of zabd (validates the harness itself)
#   ZK_PORT / ZABD_PORT   client ports (default 22181 / 22182), on 127.0.0.1 only
#   COMPAT_VENV       virtualenv dir (default ${XDG_CACHE_HOME:-~/.cache}/zabd-compat/venv)
#   COMPAT_KEEP=1     keep the work dir (logs, zkCli outputs) after the run
#   COMPAT_SUITES     space-separated subset of: zkcli differential recipes migration crash
#                     (migration and crash start their own servers on ports 22191/22192;
#                     they are skipped with COMPAT_SELFTEST=1)
#   COMPAT_RECIPES_REFERENCE=0  don't run the recipes against ZooKeeper too
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ZK_PORT="${ZK_PORT:-22181}"
ZABD_PORT="${ZABD_PORT:-22182}"
HOST=127.0.0.1
ZK_BIN_DIR=/usr/share/zookeeper/bin
ZKCLI="$ZK_BIN_DIR/zkCli.sh"
SELFTEST="${COMPAT_SELFTEST:-0}"
SUITES="${COMPAT_SUITES:-zkcli differential recipes migration crash}"
KAZOO_SPEC="${KAZOO_SPEC:-kazoo==2.11.0}"
VENV="${COMPAT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/zabd-compat/venv}"
export DEBIAN_FRONTEND=noninteractive

START_TS=$(date +%s)
log() { printf '[compat %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '[compat] FATAL: %s\n' "$*" >&2
    echo "${TOTAL_PASS:-0} passed, $(( ${TOTAL_FAIL:-0} + 1 )) failed"
    exit 1
}

TOTAL_PASS=0
TOTAL_FAIL=0
FAILED_SUITES=()
WORK="$(mktemp -d /tmp/zabd-compat.XXXXXX)" || die "mktemp failed"
PIDS=()

cleanup() {
    local rc=$?
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if [ "${COMPAT_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------
apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to apt-get install $* (install them by hand)"
    command -v apt-get >/dev/null || die "apt-get not available to install $*"
    log "apt-get install $*"
    timeout 900 apt-get -o DPkg::Lock::Timeout=600 update -q >"$WORK/apt-update.log" 2>&1 \
        || { tail -20 "$WORK/apt-update.log" >&2; die "apt-get update failed"; }
    timeout 1800 apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@" >"$WORK/apt-install.log" 2>&1 \
        || { tail -30 "$WORK/apt-install.log" >&2; die "apt-get install $* failed"; }
}

if [ ! -x "$ZKCLI" ] || [ ! -x "$ZK_BIN_DIR/zkServer.sh" ] || ! command -v java >/dev/null; then
    apt_install zookeeper zookeeper-bin
fi
[ -x "$ZKCLI" ] || die "$ZKCLI missing after installing zookeeper"
command -v java >/dev/null || die "java missing after installing zookeeper"

PY="$VENV/bin/python"
# the scripts use a few kazoo internals: insist on the pinned version
kazoo_ok() {
    case "$KAZOO_SPEC" in
    kazoo==*) "$PY" -c "import sys, kazoo.version as v; sys.exit(v.__version__ != '${KAZOO_SPEC#kazoo==}')" ;;
    *) "$PY" -c 'import kazoo' ;;
    esac
}
if ! kazoo_ok >/dev/null 2>&1; then
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
    kazoo_ok || die "$KAZOO_SPEC not importable after pip install"
fi
log "kazoo $("$PY" -c 'import kazoo.version as v; print(v.__version__)'), $(java -version 2>&1 | head -1)"

# --------------------------------------------------------------------------
# zabd binary
# --------------------------------------------------------------------------
if [ "$SELFTEST" != 1 ]; then
    if [ -z "${ZABD_BIN:-}" ]; then
        command -v cargo >/dev/null || die "cargo not found and ZABD_BIN not set"
        log "cargo build --release (in $REPO)"
        (cd "$REPO" && timeout 3000 cargo build --release) >"$WORK/cargo-build.log" 2>&1 \
            || { tail -40 "$WORK/cargo-build.log" >&2; die "cargo build --release failed"; }
        ZABD_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/zabd"
    fi
    [ -x "$ZABD_BIN" ] || die "zabd binary not executable: $ZABD_BIN"
fi

# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# four_letter PORT WORD: print the server's answer (empty on failure)
four_letter() {
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; printf "%s" "$2" >&3; timeout 3 cat <&3' \
        "$HOST" "$1" "$2" 2>/dev/null
}

write_cfg() { # DIR PORT
    mkdir -p "$1/data"
    cat >"$1/zoo.cfg" <<EOF
tickTime=2000
dataDir=$1/data
clientPort=$2
clientPortAddress=$HOST
4lw.commands.whitelist=*
admin.enableServer=false
extendedTypesEnabled=true
EOF
}

start_zk() { # NAME PORT
    local dir="$WORK/$1"
    write_cfg "$dir" "$2"
    log "starting ZooKeeper '$1' on $HOST:$2"
    JMXDISABLE=true \
    SERVER_JVMFLAGS="-Dzookeeper.extendedTypesEnabled=true -Dzookeeper.admin.enableServer=false -Xmx512m" \
        "$ZK_BIN_DIR/zkServer.sh" start-foreground "$dir/zoo.cfg" >"$dir/server.log" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

start_zabd() { # NAME PORT
    local dir="$WORK/$1"
    write_cfg "$dir" "$2"
    log "starting zabd '$1' ($ZABD_BIN) on $HOST:$2"
    "$ZABD_BIN" "$dir/zoo.cfg" >"$dir/server.log" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_ready NAME PORT PID STRICT: wait (60s at most) until the server answers
# ruok -> imok (or srvr).  A server that accepts connections but answers no
# four-letter word is fatal if STRICT=1, else a counted failure (the client
# suites still run, to tell as much as possible about it).
wait_ready() {
    local name=$1 port=$2 pid=$3 strict=$4 ans deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -40 "$WORK/$name/server.log" >&2
            die "server '$name' exited during startup (log: $WORK/$name/server.log)"
        fi
        ans="$(four_letter "$port" ruok)"
        if [ "$ans" = imok ]; then log "'$name' ready (ruok -> imok)"; return 0; fi
        ans="$(four_letter "$port" srvr)"
        if [[ "$ans" == *Mode:* ]]; then log "'$name' ready (srvr answered)"; return 0; fi
        sleep 0.5
    done
    tail -40 "$WORK/$name/server.log" >&2
    if [ "$strict" != 1 ] && port_busy "$port"; then
        echo "FAIL server '$name' accepts connections on $HOST:$port but answered neither ruok nor srvr in 60s"
        TOTAL_FAIL=$((TOTAL_FAIL + 1))
        FAILED_SUITES+=("startup:$name-4lw")
        return 0
    fi
    die "server '$name' not ready on $HOST:$port after 60s"
}

for p in "$ZK_PORT" "$ZABD_PORT"; do
    port_busy "$p" && die "port $HOST:$p is already in use (stale server?); set ZK_PORT/ZABD_PORT"
done

start_zk zookeeper "$ZK_PORT"; ZK_PID=$LAST_PID
if [ "$SELFTEST" = 1 ]; then
    log "COMPAT_SELFTEST=1: a second ZooKeeper stands in for zabd"
    start_zk zabd "$ZABD_PORT"
else
    start_zabd zabd "$ZABD_PORT"
fi
ZABD_PID=$LAST_PID
wait_ready zookeeper "$ZK_PORT" "$ZK_PID" 1
wait_ready zabd "$ZABD_PORT" "$ZABD_PID" 0

# --------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------
# run_suite LABEL TIMEOUT CMD...: run, tee output, add its "N passed, N failed" line
run_suite() {
    local label=$1 tmo=$2; shift 2
    local out="$WORK/suite-$label.log" rc line p f
    log "=== $label ==="
    timeout -k 10 "$tmo" "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)"
    if [ -n "$line" ]; then
        p=$(sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
        f=$(sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
    else
        p=0; f=0
    fi
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        f=1   # crashed / timed out without reporting a failure
        echo "FAIL $label: exited with status $rc${line:+ }${line:-, no summary line}" | tee -a "$out"
    fi
    TOTAL_PASS=$((TOTAL_PASS + p))
    TOTAL_FAIL=$((TOTAL_FAIL + f))
    [ "$f" != 0 ] && FAILED_SUITES+=("$label")
    # a server that died during a suite is a failure of its own
    for pair in "zookeeper:$ZK_PID" "zabd:$ZABD_PID"; do
        if ! kill -0 "${pair#*:}" 2>/dev/null; then
            echo "FAIL server '${pair%%:*}' died during $label (log: $WORK/${pair%%:*}/server.log)"
            tail -20 "$WORK/${pair%%:*}/server.log"
            die "cannot continue without server '${pair%%:*}'"
        fi
    done
}

ZK_HP="$HOST:$ZK_PORT"
ZABD_HP="$HOST:$ZABD_PORT"
for s in $SUITES; do
    case "$s" in
    zkcli)
        run_suite zkcli 300 "$PY" -u "$HERE/zkcli_scenario.py" --zkcli "$ZKCLI" \
            --outdir "$WORK/zkcli" "$ZK_HP" "$ZABD_HP" ;;
    differential)
        run_suite differential 300 "$PY" -u "$HERE/differential.py" "$ZK_HP" "$ZABD_HP" ;;
    recipes)
        if [ "${COMPAT_RECIPES_REFERENCE:-1}" = 1 ]; then
            run_suite recipes-zookeeper 300 "$PY" -u "$HERE/kazoo_recipes.py" --label zookeeper "$ZK_HP"
        fi
        run_suite recipes-zabd 300 "$PY" -u "$HERE/kazoo_recipes.py" --label zabd "$ZABD_HP" ;;
    migration | crash)
        if [ "$SELFTEST" = 1 ]; then
            log "COMPAT_SELFTEST=1: skipping $s (it needs zabd)"
            continue
        fi
        run_suite "$s" 420 env ZABD_BIN="$ZABD_BIN" COMPAT_VENV="$VENV" KAZOO_SPEC="$KAZOO_SPEC" \
            DURABILITY_KEEP="${COMPAT_KEEP:-0}" bash "$REPO/tests/durability/$s.sh" ;;
    *) die "unknown suite '$s' in COMPAT_SUITES" ;;
    esac
done

log "finished in $(( $(date +%s) - START_TS ))s${FAILED_SUITES[*]:+; failing suites: ${FAILED_SUITES[*]}}"
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
[ "$TOTAL_FAIL" = 0 ] && [ "$TOTAL_PASS" -gt 0 ]
