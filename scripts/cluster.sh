#!/usr/bin/env bash
# `make cluster` / `make cluster-stop`: a three-node Weir cluster on this machine, started
# from deploy/cluster/node{1,2,3}.yaml (client ports 9092-9094, controller ports
# 19092-19094), data and logs under cluster-data/; node 4 (deploy/cluster/node4.yaml,
# port 9095) is an optional broker-only node.
#
#   scripts/cluster.sh start [N...]  start nodes N (default 1 2 3) that are not running, on
#                                    their existing data; return once each serves clients
#                                    (a node serves once a majority of the voters elected a
#                                    leader)
#   scripts/cluster.sh stop          SIGTERM each running node, SIGKILL after 30 s
#   scripts/cluster.sh status        which nodes run
#
# Processes are tracked by PID files (cluster-data/nodeN.pid) and only those are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."

WEIR_BIN=${WEIR_BIN:-target/release/weir}
DATA=cluster-data
NODES=(1 2 3)
ALL_NODES=(1 2 3 4)
READY_TIMEOUT_S=${READY_TIMEOUT_S:-60}

pid_of() { cat "$DATA/node$1.pid" 2>/dev/null || true; }

running() {
    local pid
    pid=$(pid_of "$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "node$1.yaml"
}

start() {
    (($# == 0)) || NODES=("$@")
    for n in "${NODES[@]}"; do
        [[ -f deploy/cluster/node$n.yaml ]] || { echo "no deploy/cluster/node$n.yaml" >&2; exit 2; }
    done
    [[ -x $WEIR_BIN ]] || { echo "no weir binary at $WEIR_BIN (make release)" >&2; exit 1; }
    mkdir -p "$DATA"
    local started=() offsets=()
    for n in "${NODES[@]}"; do
        if running "$n"; then
            echo "node $n already running (pid $(pid_of "$n"))"
            continue
        fi
        local log="$DATA/node$n.log"
        touch "$log"
        offsets[n]=$(stat -c %s "$log")
        nohup "$WEIR_BIN" --config "deploy/cluster/node$n.yaml" >>"$log" 2>&1 </dev/null &
        echo $! >"$DATA/node$n.pid"
        started+=("$n")
        echo "node $n starting (pid $!, log $log)"
    done
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    for n in "${started[@]}"; do
        local log="$DATA/node$n.log"
        # Ready once this start's log says so ("Weir started" follows registration and the
        # metadata load, after which the node answers Metadata).
        until tail -c +"$((offsets[n] + 1))" "$log" | grep -q "Weir started"; do
            if ! running "$n"; then
                echo "node $n exited before it was ready; the end of $log:" >&2
                tail -n 20 "$log" >&2
                exit 1
            fi
            if ((SECONDS >= deadline)); then
                echo "node $n not ready after ${READY_TIMEOUT_S}s; the end of $log:" >&2
                tail -n 20 "$log" >&2
                exit 1
            fi
            sleep 0.2
        done
        echo "node $n ready on 127.0.0.1:$((9091 + n))"
    done
    echo "cluster up: bootstrap servers $(for n in "${NODES[@]}"; do printf '127.0.0.1:%d,' $((9091 + n)); done | sed 's/,$//')"
}

stop() {
    # The broker-only node first, while the controllers it tells about its shutdown run.
    stop_nodes 4
    stop_nodes 1 2 3
}

stop_nodes() {
    local stopping=()
    for n in "$@"; do
        if running "$n"; then
            kill -TERM "$(pid_of "$n")"
            stopping+=("$n")
        else
            rm -f "$DATA/node$n.pid"
        fi
    done
    local deadline=$((SECONDS + 30))
    for n in "${stopping[@]}"; do
        while running "$n" && ((SECONDS < deadline)); do sleep 0.2; done
        if running "$n"; then
            echo "node $n still running 30 s after SIGTERM; sending SIGKILL" >&2
            kill -KILL "$(pid_of "$n")"
        fi
        rm -f "$DATA/node$n.pid"
        echo "node $n stopped"
    done
}

status() {
    for n in "${ALL_NODES[@]}"; do
        if running "$n"; then echo "node $n running (pid $(pid_of "$n"))"; else echo "node $n stopped"; fi
    done
}

case "${1:-start}" in
    start) shift $(($# > 0 ? 1 : 0)); start "$@" ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
