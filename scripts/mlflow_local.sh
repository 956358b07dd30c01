#!/usr/bin/env bash
# An MLflow tracking server on a throwaway PostgreSQL cluster (scripts/postgres_local.sh), with a
# file artifact store, for the server tests (`make test` starts it through scripts/with_services.sh)
# and for trying a lab's set-up on one machine:
#   scripts/mlflow_local.sh start    PostgreSQL + `mlflow server` on 127.0.0.1:<free port>; waits
#                                    until /health answers; the URL is kept in <folder>/url
#   scripts/mlflow_local.sh status   exit 0 when the server answers; prints its URL
#   scripts/mlflow_local.sh stop     stop the server and the cluster, remove the folder
# Everything lives in BONE_SEG_MLFLOW_DIR (default /tmp/bone_seg_mlflow): the cluster (pg/), the
# artifacts (artifacts/), the log (server.log). MLFLOW=<path> picks the mlflow executable (default:
# .venv/bin/mlflow of this checkout, else the one on PATH). Where it cannot start (no PostgreSQL,
# no psycopg2, BONE_SEG_MLFLOW_SERVER=off) it prints one line "mlflow_local: unavailable: <reason>"
# (kept in <folder>/unavailable; the server tests are skipped with it) and exits 3.
# A lab's own server is the same one command on a machine everyone reaches (README, "MLflow").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DIR=${BONE_SEG_MLFLOW_DIR:-/tmp/bone_seg_mlflow}
REASON_FILE=$DIR/unavailable
export BONE_SEG_PG_DIR=$DIR/pg

unavailable() {
    mkdir -p "$DIR"
    echo "$1" > "$REASON_FILE"
    echo "mlflow_local: unavailable: $1" >&2
    exit 3
}

mlflow_bin() {
    if [[ -n ${MLFLOW:-} ]]; then echo "$MLFLOW"
    elif [[ -x $here/../.venv/bin/mlflow ]]; then echo "$here/../.venv/bin/mlflow"
    else command -v mlflow; fi
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

healthy() {
    [[ -s $DIR/url ]] && pid_alive "$DIR/server.pid" \
        && python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/health', timeout=2)" \
            "$(cat "$DIR/url")" 2>/dev/null
}

start() {
    local t0=$SECONDS port mlflow py
    [[ ${BONE_SEG_MLFLOW_SERVER:-on} != off ]] || unavailable "switched off (BONE_SEG_MLFLOW_SERVER=off)"
    if healthy; then echo "mlflow_local: already running: $(cat "$DIR/url")"; return 0; fi
    rm -rf "$DIR"
    mkdir -p "$DIR/artifacts"
    mlflow=$(mlflow_bin) || unavailable "no mlflow executable (install the project: make install)"
    py=$(dirname "$mlflow")/python
    [[ -x $py ]] || py=python3
    "$py" -c "import psycopg2" 2>/dev/null \
        || unavailable "psycopg2 is not installed beside $mlflow (pip install -e '.[dev]')"
    "$here/postgres_local.sh" start >"$DIR/postgres_start.log" 2>&1 \
        || unavailable "PostgreSQL: $(tail -n 1 "$DIR/postgres_start.log")"
    port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # setsid: the server (and its workers) is its own process group, stopped as one
    setsid "$mlflow" server --host 127.0.0.1 --port "$port" --workers 2 \
        --backend-store-uri "$(sed 's|^postgresql://|postgresql+psycopg2://|' "$BONE_SEG_PG_DIR/uri")" \
        --artifacts-destination "file://$DIR/artifacts" --serve-artifacts \
        >"$DIR/server.log" 2>&1 < /dev/null &
    echo $! > "$DIR/server.pid"
    echo "http://127.0.0.1:$port" > "$DIR/url"
    for _ in $(seq 1 240); do
        healthy && break
        pid_alive "$DIR/server.pid" || break
        sleep 0.5
    done
    healthy || { stop_server; unavailable "mlflow server did not answer in 120 s (see $DIR/server.log)"; }
    echo "mlflow_local: up in $((SECONDS - t0)) s: export MLFLOW_TRACKING_URI=$(cat "$DIR/url")"
}

stop_server() {
    pid_alive "$DIR/server.pid" || return 0
    local pid
    pid=$(cat "$DIR/server.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

stop() {
    [[ -d $DIR ]] || { echo "mlflow_local: not running"; return 0; }
    stop_server
    "$here/postgres_local.sh" stop >/dev/null || true
    rm -rf "$DIR"
    echo "mlflow_local: stopped"
}

status() {
    [[ -s $REASON_FILE ]] && { echo "unavailable: $(cat "$REASON_FILE")"; return 3; }
    healthy || { echo "not running"; return 1; }
    cat "$DIR/url"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
