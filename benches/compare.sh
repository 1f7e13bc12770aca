#!/usr/bin/env bash
# Side-by-side benchmark: Apache ZooKeeper 3.8 (Debian's package) and zabd on this machine,
# standalone and as 3-server ensembles on 127.0.0.1, the same load against each, the two
# systems alternated (ZooKeeper, zabd, ZooKeeper, zabd, ...) round after round; prints the
# medians and the zabd/ZooKeeper ratio of every figure (README "Performance").
#
#   bash benches/compare.sh            # full: 5 rounds, 1,000,000 znodes (about 35-45 min)
#   bash benches/compare.sh --quick    # 2 rounds, short windows, 100,000 znodes (about 8 min)
#   options: --rounds N  --duration S  --znodes N  --out DIR
#
# Load: `zabd bench` and, for the main throughput figures and the failover gap, a generator
# on ZooKeeper's own Java client (benches/ZkBench.java), to rule out a bias of either one.
# Equal settings: tickTime=2000, initLimit=10, syncLimit=5, maxClientCnxns=0, data and log on
# the same disk, fsync before acknowledging on both (ZooKeeper's forceSync=yes default), the
# JVM heap fixed at 2 GiB. Every server this script starts is killed when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD

ROUNDS=5 DUR=5 WARM=2 ZNODES=1000000 BIG_ROUNDS=3 QUICK=0
OUT="$ROOT_DIR/target/bench-compare/$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ROUNDS=2 DUR=2 WARM=1 ZNODES=100000 BIG_ROUNDS=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DUR=$2; shift ;;
        --znodes) ZNODES=$2; shift ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: $0 [--quick] [--rounds N] [--duration S] [--znodes N] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"
log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }

# ---- what it needs ----
ZK_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
need=()
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper zookeeper-bin)
command -v javac >/dev/null && command -v jcmd >/dev/null || need+=(default-jdk-headless)
command -v cc >/dev/null || need+=(gcc)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${need[*]}"
    log "installing ${need[*]}"
    timeout 900 apt-get -o DPkg::Lock::Timeout=600 update -q >"$OUT/apt.log" 2>&1 || die "apt-get update failed (see $OUT/apt.log)"
    timeout 1800 apt-get -o DPkg::Lock::Timeout=600 install -y -q "${need[@]}" >>"$OUT/apt.log" 2>&1 || die "apt-get install failed (see $OUT/apt.log)"
fi
log "building zabd (release)"
cargo build --release --quiet
ZABD="${CARGO_TARGET_DIR:-$ROOT_DIR/target}/release/zabd"
[ -x "$ZABD" ] || die "no zabd binary at $ZABD"
mkdir -p "$OUT/java"
javac -d "$OUT/java" -cp /usr/share/java/zookeeper.jar benches/ZkBench.java || die "javac failed"
cc -O2 -pthread -o "$OUT/probe" benches/probe.c || die "cc failed"
JB=(java -Xmx512m -cp "$OUT/java:$ZK_CP" -Dorg.slf4j.simpleLogger.defaultLogLevel=warn ZkBench)

# ---- processes ----
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BASE_PORT=$((21000 + ($$ % 400) * 10))
client_port() { echo $((BASE_PORT + $1)); }

four() { # four PORT WORD
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && echo $2 >&3 && cat <&3" 2>/dev/null || true
}
mode_of() { four "$1" srvr | sed -n 's/^Mode: //p'; }

# write_cfg SYS DIR INDEX SERVERS(0 = standalone)
write_cfg() {
    local dir=$1 i=$2 n=$3
    mkdir -p "$dir/data"
    {
        echo "tickTime=2000"; echo "initLimit=10"; echo "syncLimit=5"
        echo "dataDir=$dir/data"; echo "clientPort=$(client_port "$i")"
        echo "clientPortAddress=127.0.0.1"; echo "maxClientCnxns=0"
        echo "4lw.commands.whitelist=*"; echo "admin.enableServer=false"
        if [ "$n" -gt 0 ]; then
            for j in $(seq 1 "$n"); do
                echo "server.$j=127.0.0.1:$((BASE_PORT + 100 + j)):$((BASE_PORT + 200 + j))"
            done
        fi
    } >"$dir/zoo.cfg"
    [ "$n" -gt 0 ] && echo "$i" >"$dir/data/myid"
    return 0
}

# launch SYS DIR: starts one server on DIR/zoo.cfg, sets LAST_PID
launch() {
    local sys=$1 dir=$2
    if [ "$sys" = zookeeper ]; then
        java -Xms2g -Xmx2g -cp "$ZK_CP" -Dzookeeper.4lw.commands.whitelist='*' \
            -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >>"$dir/server.log" 2>&1 &
    else
        RUST_LOG=info "$ZABD" "$dir/zoo.cfg" >>"$dir/server.log" 2>&1 &
    fi
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

wait_serving() { # wait_serving PORT TIMEOUT_S
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        case "$(mode_of "$1")" in standalone | leader | follower) return 0 ;; esac
        sleep 0.05
    done
    return 1
}

# start SYS N: N=0 standalone, else an ensemble of N; sets SRV_PIDS, SRV_DIRS
start() {
    local sys=$1 n=$2 tag="r${ROUND}-$1-$2"
    SRV_PIDS=() SRV_DIRS=()
    local count=$((n == 0 ? 1 : n))
    for i in $(seq 1 "$count"); do
        local dir="$OUT/run/$tag/s$i"
        rm -rf "$dir"; mkdir -p "$dir"
        write_cfg "$dir" "$i" "$n"
        launch "$sys" "$dir"
        SRV_PIDS+=("$LAST_PID"); SRV_DIRS+=("$dir")
    done
    for i in $(seq 1 "$count"); do
        wait_serving "$(client_port "$i")" 60 || die "$sys server $i did not start (see ${SRV_DIRS[$((i - 1))]}/server.log)"
    done
}

stop() {
    for p in "${SRV_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$OUT/run"
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" "$4" >>"$RESULTS"; }

servers_of() { # servers_of N -> host:port list (standalone: 1)
    local n=$1 s=""
    for i in $(seq 1 "$((n == 0 ? 1 : n))"); do s="$s${s:+,}127.0.0.1:$(client_port "$i")"; done
    echo "$s"
}

follower_port() { # a follower of the running ensemble
    for i in 1 2 3; do
        [ "$(mode_of "$(client_port "$i")")" = follower ] && { client_port "$i"; return; }
    done
    client_port 1
}

leader_index() {
    for i in 1 2 3; do [ "$(mode_of "$(client_port "$i")")" = leader ] && { echo "$i"; return; }; done
    echo 0
}

# zb SYS TOPO FIGURE SERVERS ARGS...: one zabd bench run, recording throughput or latency
zb() {
    local sys=$1 topo=$2 fig=$3 servers=$4; shift 4
    local json
    json=$(timeout $((DUR + WARM + 120)) "$ZABD" bench -s "$servers" --json --quiet \
        --warmup "$WARM" -d "$DUR" "$@" 2>>"$OUT/bench.err") || { log "zabd bench failed: $sys $topo $fig"; return 0; }
    printf '%s\t%s\t%s\t%s\n' "$ROUND" "$sys" "$fig" "$json" >>"$OUT/zb.jsonl"
    echo "$json" | python3 -c '
import json, sys
r = json.load(sys.stdin); a = r["latency_us"]["all"]
print("\t".join(str(x) for x in (r["ops_per_s"], a["p50"], a["p99"], a["p999"], r["errors"])))' |
        while IFS=$'\t' read -r ops p50 p99 p999 errors; do
            record "$sys" "$topo" "$fig ops/s" "$ops"
            record "$sys" "$topo" "$fig p50 us" "$p50"
            record "$sys" "$topo" "$fig p99 us" "$p99"
            record "$sys" "$topo" "$fig p99.9 us" "$p999"
            [ "$errors" = 0 ] || log "$sys $topo $fig: $errors errors"
        done
}

# jb SYS TOPO FIGURE SERVERS SESSIONS WINDOW OP SIZE: the Java generator
jb() {
    local sys=$1 topo=$2 fig=$3
    local json
    json=$(timeout $((DUR + WARM + 120)) "${JB[@]}" throughput "$4" "$5" "$6" "$7" "$8" "$WARM" "$DUR" 2>>"$OUT/java.err") ||
        { log "java generator failed: $sys $topo $fig"; return 0; }
    record "$sys" "$topo" "$fig ops/s" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ops_per_s"])' <<<"$json")"
}

standalone_figures() {
    local sys=$1 s
    s=$(servers_of 0)
    zb "$sys" standalone "setData 100B 8x100" "$s" -c 8 -w 100 --mix set=100 -b 100
    zb "$sys" standalone "setData 1KiB 8x100" "$s" -c 8 -w 100 --mix set=100 -b 1024
    zb "$sys" standalone "create 100B 8x100" "$s" -c 8 -w 100 --mix create=100 -b 100
    zb "$sys" standalone "create 1KiB 8x100" "$s" -c 8 -w 100 --mix create=100 -b 1024
    zb "$sys" standalone "getData 100B 8x100" "$s" -c 8 -w 100 --mix get=100 -b 100
    zb "$sys" standalone "90% get 1KiB 8x100" "$s" -c 8 -w 100 --mix get=90,set=10 -b 1024
    zb "$sys" standalone "setData 1x1" "$s" -c 1 -w 1 --mix set=100 -b 100
    zb "$sys" standalone "getData 1x1" "$s" -c 1 -w 1 --mix get=100 -b 100
    zb "$sys" standalone "setData open loop 2000/s" "$s" -c 8 -w 100 --mix set=100 -b 100 --rate 2000
    jb "$sys" standalone "java setData 100B 8x100" "$s" 8 100 set 100
    jb "$sys" standalone "java getData 100B 8x100" "$s" 8 100 get 100
}

ensemble_figures() {
    local sys=$1 s f
    s=$(servers_of 3)
    f="127.0.0.1:$(follower_port)"
    zb "$sys" ensemble "setData 100B 9x100" "$s" -c 9 -w 100 --mix set=100 -b 100
    zb "$sys" ensemble "getData 100B 9x100" "$s" -c 9 -w 100 --mix get=100 -b 100
    zb "$sys" ensemble "90% get 1KiB 9x100" "$s" -c 9 -w 100 --mix get=90,set=10 -b 1024
    zb "$sys" ensemble "setData 1x1 via follower" "$f" -c 1 -w 1 --mix set=100 -b 100
    zb "$sys" ensemble "getData 1x1 via follower" "$f" -c 1 -w 1 --mix get=100 -b 100
    zb "$sys" ensemble "setData open loop 1000/s" "$s" -c 9 -w 100 --mix set=100 -b 100 --rate 1000
    jb "$sys" ensemble "java setData 100B 9x100" "$s" 9 100 set 100
}

# The longest gap between successful writes of one client (through the two followers) when
# the leader is killed with SIGKILL.
failover() {
    local sys=$1 leader followers="" out
    leader=$(leader_index)
    [ "$leader" != 0 ] || { log "$sys: no leader found"; return 0; }
    for i in 1 2 3; do [ "$i" = "$leader" ] || followers="$followers${followers:+,}127.0.0.1:$(client_port "$i")"; done
    out="$OUT/failover-$sys-$ROUND.json"
    timeout 120 "${JB[@]}" failover "$followers" 15 >"$out" 2>>"$OUT/java.err" &
    local client=$!
    sleep 4
    kill -9 "${SRV_PIDS[$((leader - 1))]}" 2>/dev/null || true
    wait "$client" || { log "$sys: failover client failed"; return 0; }
    record "$sys" ensemble "failover: longest write gap ms" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["max_gap_ms"])' <"$out")"
}

# Memory per znode, snapshot time and restart time with ZNODES znodes of 100 B.
big_tree() {
    local sys=$1 port pid dir before after t0
    start "$sys" 0
    port=$(client_port 1); pid=${SRV_PIDS[0]}; dir=${SRV_DIRS[0]}
    before=$(mem_bytes "$sys" "$pid")
    timeout 1800 "$ZABD" bench -s "127.0.0.1:$port" --quiet --json -c 8 -w 100 --mix create=100 -b 100 \
        -n "$ZNODES" --no-cleanup --root /big >"$OUT/big-$sys-$ROUND.json" 2>>"$OUT/bench.err" ||
        log "$sys: loading $ZNODES znodes failed"
    after=$(mem_bytes "$sys" "$pid")
    record "$sys" big "memory per znode (B)" "$(( (after - before) / ZNODES ))"
    record "$sys" big "RSS with the tree (MiB)" "$(( $(rss_bytes "$pid") / 1048576 ))"
    local snap
    snap=$(grep -o 'Snapshot taken.* in [0-9]* ms' "$dir/server.log" | tail -1 | sed 's/.* in \([0-9]*\) ms/\1/' || true)
    [ -n "$snap" ] && record "$sys" big "last snapshot during the load ms" "$snap"
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    t0=$(date +%s%N)
    launch "$sys" "$dir"; SRV_PIDS=("$LAST_PID")
    wait_serving "$port" 600 || die "$sys did not restart"
    local count
    count=$(four "$port" mntr | sed -n 's/^zk_znode_count\s*//p')
    record "$sys" big "restart until serving ms" "$(( ($(date +%s%N) - t0) / 1000000 ))"
    [ "${count:-0}" -ge "$ZNODES" ] || log "$sys restarted with ${count:-?} znodes, expected at least $ZNODES"
    stop
}

rss_bytes() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
mem_bytes() { # zabd: RSS; ZooKeeper: heap in use after a full GC
    if [ "$1" = zookeeper ]; then
        jcmd "$2" GC.run >/dev/null 2>&1; sleep 1
        jcmd "$2" GC.heap_info 2>/dev/null | grep -o 'used [0-9]*K' | head -1 | grep -o '[0-9]*' | awk '{print $1 * 1024}'
    else
        rss_bytes "$2"
    fi
}

# ---- the run ----
log "results in $OUT"
ROUND=0
"$OUT/probe" fsync "$OUT" 2000 >"$OUT/floor.json"
"$OUT/probe" rtt 50000 >>"$OUT/floor.json"
for ROUND in $(seq 1 "$ROUNDS"); do
    for sys in zookeeper zabd; do
        log "round $ROUND/$ROUNDS: $sys standalone"
        start "$sys" 0; standalone_figures "$sys"; stop
        log "round $ROUND/$ROUNDS: $sys 3-server ensemble"
        start "$sys" 3; ensemble_figures "$sys"; failover "$sys"; stop
    done
done
for ROUND in $(seq 1 "$BIG_ROUNDS"); do
    for sys in zookeeper zabd; do
        log "big tree $ROUND/$BIG_ROUNDS: $sys, $ZNODES znodes"
        big_tree "$sys"
    done
done
"$OUT/probe" fsync "$OUT" 2000 >>"$OUT/floor.json"
"$OUT/probe" rtt 50000 >>"$OUT/floor.json"

python3 benches/summarize.py "$RESULTS" "$OUT/floor.json" | tee "$OUT/summary.txt"
log "raw results: $RESULTS; summary: $OUT/summary.txt"
