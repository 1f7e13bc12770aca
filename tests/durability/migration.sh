#!/usr/bin/env bash
# Data-directory migration between Apache ZooKeeper 3.8 (Debian) and zabd, both directions.
#
#  (a) ZooKeeper writes a tree with kazoo (ztree.py build: persistent, sequential, digest ACLs,
#      data of 0 B..1 MB and null, setData'd and setACL'd nodes, nested nodes, a multi, a
#      container, a TTL node) and two sessions own ephemerals: holder A is killed (kill -9, no
#      closeSession), holder B stays alive. The tree is dumped, ZooKeeper is stopped (SIGTERM),
#      `zabd datadir check` must call the directory clean, and zabd starts on the same dataDir
#      and port. Then: every znode's data, ACL and stat (czxid, mzxid, pzxid, ctime, mtime,
#      version, cversion, aversion, ephemeralOwner, numChildren, dataLength) must equal what
#      ZooKeeper reported; B must reconnect with its own session; A's ephemerals must last
#      about the session timeout and then vanish; writes must continue the history (sequence
#      numbers, versions); the container and the TTL node must still be cleaned up as such.
#  (b) The same with the roles swapped: zabd writes, ZooKeeper reads.
#
# Both servers run with snapCount=20, so each reads the other's snapshots (fuzzy, taken under
# load) as well as its logs. Dumps are normalized JSON (data as length + sha256); a failing
# comparison prints a unified diff. Ends with "N passed, N failed"; exit status 0 only if all
# passed.
#
# Environment: ZABD_BIN, COMPAT_VENV, DURABILITY_KEEP=1 (see common.sh), MIGRATION_PORT
# (default 22191).
NAME=migration
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HERE="$COMMON_HERE"
PORT="${MIGRATION_PORT:-22191}"
HP="$HOST:$PORT"
SESSION_MS=8000
TICK_S=2

need_zookeeper
need_kazoo
need_zabd
port_busy "$PORT" && die "port $HP is already in use (stale server?); set MIGRATION_PORT"

ZK_FLAGS=(-Dzookeeper.extendedTypesEnabled=true -Dznode.container.checkIntervalMs=1000 -Dzookeeper.snapCount=20)
CFG_EXTRA=(extendedTypesEnabled=true znode.container.checkIntervalMs=1000 snapCount=20)

# start_server KIND DIR: starts ZooKeeper or zabd on DIR/data at $PORT; sets SERVER_PID
start_server() {
    local kind=$1 dir=$2
    write_cfg "$dir/zoo-$kind.cfg" "$dir/data" "$PORT" "${CFG_EXTRA[@]}"
    log "starting $kind on $HP with dataDir $dir/data"
    if [ "$kind" = zookeeper ]; then
        start_zk "$dir/zoo-$kind.cfg" "$dir/$kind.log" "${ZK_FLAGS[@]}"
    else
        start_zabd "$dir/zoo-$kind.cfg" "$dir/$kind.log"
    fi
    SERVER_PID=$LAST_PID
    wait_ready "$PORT" "$SERVER_PID" "$dir/$kind.log" 90
}

# holder DIR NAME: a background session owning /mig/eph-NAME; waits (20 s) for it to be ready
holder() {
    local dir=$1 name=$2 status="$1/holder-$2.jsonl"
    # No `timeout` wrapper: kill -9 must hit the Python process itself (it exits by itself
    # after 220 s anyway).
    "$PY" -u "$HERE/ztree.py" hold "$HP" "$name" "$status" "$SESSION_MS" 220 \
        >"$dir/holder-$name.log" 2>&1 &
    HOLDER_PID=$!
    PIDS+=("$HOLDER_PID")
    for _ in $(seq 1 100); do
        grep -q '"READY"' "$status" 2>/dev/null && return 0
        kill -0 "$HOLDER_PID" 2>/dev/null || break
        sleep 0.2
    done
    cat "$dir/holder-$name.log" >&2
    return 1
}

# migrate FROM TO: one direction, in its own directory
migrate() {
    local from=$1 to=$2
    local dir="$WORK/$from-to-$to"
    mkdir -p "$dir"
    log "=== $from -> $to ==="
    if ! start_server "$from" "$dir"; then fail "$from starts on a fresh dataDir"; return; fi
    pass "$from starts on a fresh dataDir"

    py_step 120 "$HERE/ztree.py" build "$HP" || { stop_pid "$SERVER_PID"; return; }
    local a_pid b_pid
    if ! holder "$dir" A; then fail "holder A ready on $from"; stop_pid "$SERVER_PID"; return; fi
    a_pid=$HOLDER_PID
    if ! holder "$dir" B; then fail "holder B ready on $from"; stop_pid "$SERVER_PID"; return; fi
    b_pid=$HOLDER_PID
    # A dies without closing its session: its ephemerals live on until the session expires.
    kill -KILL "$a_pid"; wait "$a_pid" 2>/dev/null
    py_step 60 "$HERE/ztree.py" dump "$HP" "$dir/before.json"
    local dumped=$?
    stop_pid "$SERVER_PID" TERM
    [ "$dumped" = 0 ] || { fail "dump from $from"; stop_pid "$b_pid"; return; }
    pass "$from stopped with SIGTERM"

    # The tools read the other server's files.
    local out rc
    out="$("$ZABD_BIN" datadir check "$dir/data" 2>&1)"; rc=$?
    echo "$out" | sed 's/^/  | /'
    if [ "$rc" = 0 ]; then pass "zabd datadir check: $from's dataDir is clean"; else fail "zabd datadir check on $from's dataDir exits $rc"; fi
    local f bad=0 n=0
    for f in "$dir"/data/version-2/snapshot.*; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        "$ZABD_BIN" snapdump --json "$f" >"$dir/$(basename "$f").json" 2>"$dir/snapdump.err" || { bad=$((bad + 1)); cat "$dir/snapdump.err"; }
    done
    for f in "$dir"/data/version-2/log.*; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        "$ZABD_BIN" logdump "$f" >"$dir/$(basename "$f").txt" 2>&1 || { bad=$((bad + 1)); tail -3 "$dir/$(basename "$f").txt"; }
    done
    if [ "$bad" = 0 ] && [ "$n" -ge 3 ]; then
        pass "zabd snapdump/logdump read all $n files $from wrote"
    else
        fail "zabd snapdump/logdump: $bad of $n files $from wrote failed"
    fi

    # A copy for the reference run of the old server at the end.
    mkdir -p "$dir/ref"
    cp -a --sparse=always "$dir/data" "$dir/ref/data" || fail "copy of the dataDir"

    local started_at
    started_at=$(date +%s.%N)
    if ! start_server "$to" "$dir"; then
        fail "$to starts on $from's dataDir"
        stop_pid "$b_pid"
        return
    fi
    pass "$to starts on $from's dataDir"
    # A's ephemerals must last about its session timeout (the expiry clock restarts at the
    # load), then vanish: watched in the background from now on.
    local vanish_pid
    py_bg "$dir/vanish.log" 90 "$HERE/ztree.py" vanish "$HP" /mig/eph-A \
        "$(awk -v t="$SESSION_MS" 'BEGIN { print t / 1000 - 2 }')" \
        "$(awk -v t="$SESSION_MS" -v k="$TICK_S" 'BEGIN { print t / 1000 + 2 * k + 10 }')" \
        "$started_at"
    vanish_pid=$BG_PID
    py_step 60 "$HERE/ztree.py" dump "$HP" "$dir/after.json"
    py_step 60 "$HERE/ztree.py" compare "$dir/before.json" "$dir/after.json" "$from->$to"
    # Both sessions are known: the 4lw dump lists their ephemerals.
    local sa sb four
    sa=$(grep -o '"session": "0x[0-9a-f]*"' "$dir/holder-A.jsonl" | tail -1 | grep -o '0x[0-9a-f]*')
    sb=$(grep -o '"session": "0x[0-9a-f]*"' "$dir/holder-B.jsonl" | tail -1 | grep -o '0x[0-9a-f]*')
    four="$(four_letter "$PORT" dump)"
    if grep -q "^$sa" <<<"$four" && grep -q "/mig/eph-A" <<<"$four"; then
        pass "$to knows session A ($sa) and its ephemerals (4lw dump)"
    else
        fail "$to's 4lw dump lacks session A ($sa): $(tr '\n' ' ' <<<"$four" | head -c 400)"
    fi
    py_step 60 "$HERE/ztree.py" session "$HP" "$dir/holder-B.jsonl" B 20
    py_step 60 "$HERE/ztree.py" probe "$HP" "$dir/probe-$to.json"
    py_wait "$vanish_pid" "$dir/vanish.log" "vanish of A's ephemerals on $to"
    py_step 10 - <<EOF
import sys; sys.path.insert(0, "$HERE")
import ztree
c = ztree.connect("$HP")
ztree.check(c.exists("/mig/eph-B") is not None, "B's ephemeral outlives A's session")
left = [p for p in c.get_children("/mig") if p.startswith("ephseq-A")]
ztree.check(not left, "A's ephemeral sequential node is gone too", str(left))
c.stop(); c.close(); ztree.finish()
EOF
    py_step 120 "$HERE/ztree.py" after "$HP" "$dir/before.json"
    # B closes its session: its ephemerals go at once.
    touch "$dir/holder-B.jsonl.stop"
    for _ in $(seq 1 50); do kill -0 "$b_pid" 2>/dev/null || break; sleep 0.2; done
    stop_pid "$b_pid"
    if grep -q '"CLOSED"' "$dir/holder-B.jsonl"; then pass "holder B closed its session on $to"; else fail "holder B did not close its session"; fi
    py_step 10 - <<EOF
import sys; sys.path.insert(0, "$HERE")
import ztree
c = ztree.connect("$HP")
ztree.check(c.exists("/mig/eph-B") is None, "a closed session's ephemeral is deleted")
c.stop(); c.close(); ztree.finish()
EOF
    if grep -E 'ERROR|Exception' "$dir/$to.log" | grep -v -E 'Unable to read additional data from client|EndOfStreamException|Connection reset|CancelledKeyException|Close of session' | head -5 | grep -q .; then
        fail "$to logged errors (see $dir/$to.log): $(grep -E 'ERROR|Exception' "$dir/$to.log" | head -3 | tr '\n' ' ')"
    else
        pass "$to logged no error while loading $from's data"
    fi
    stop_pid "$SERVER_PID" TERM

    # Reference: the old server restarted on the copy must show the same tree and give the same
    # answers to the probe (this also checks that the comparison itself is fair).
    log "reference run: $from on a copy of its own dataDir"
    if ! start_server "$from" "$dir/ref"; then fail "$from restarts on its own dataDir"; return; fi
    py_step 60 "$HERE/ztree.py" dump "$HP" "$dir/ref.json"
    py_step 60 "$HERE/ztree.py" compare "$dir/before.json" "$dir/ref.json" "$from restarted:"
    py_step 60 "$HERE/ztree.py" probe "$HP" "$dir/probe-$from.json"
    py_step 10 "$HERE/ztree.py" probecmp "$dir/probe-$from.json" "$dir/probe-$to.json" "$from->$to"
    stop_pid "$SERVER_PID" TERM
}

migrate zookeeper zabd
migrate zabd zookeeper
summary
