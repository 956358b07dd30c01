#!/usr/bin/env bash
# A throwaway PostgreSQL cluster in a temporary folder, for the MLflow tracking server of the tests
# (scripts/mlflow_local.sh) and for trying a lab's server set-up on a laptop:
#   scripts/postgres_local.sh start    initdb (trust auth, user bone_seg, database mlflow), start
#                                      the server on 127.0.0.1:<free port>, wait until it answers
#   scripts/postgres_local.sh status   exit 0 when it answers; prints its URI
#   scripts/postgres_local.sh stop     stop the server and remove the folder
# Everything (data, socket, log, the URI in <folder>/uri) lives in BONE_SEG_PG_DIR (default
# /tmp/bone_seg_pg). PostgreSQL refuses to run as root: as root the cluster belongs to the user
# `nobody` (runuser). The binaries are Debian's (postgresql-15 or newer under /usr/lib/postgresql;
# PG_BIN=<dir> picks others). Where it cannot start (no binaries, BONE_SEG_PG=off) it prints one
# line "postgres_local: unavailable: <reason>" (kept in <folder>/unavailable) and exits 3.
set -euo pipefail

DIR=${BONE_SEG_PG_DIR:-/tmp/bone_seg_pg}
DATA=$DIR/data
REASON_FILE=$DIR/unavailable
DB_USER=bone_seg
DB_NAME=mlflow

unavailable() {
    mkdir -p "$DIR"
    echo "$1" > "$REASON_FILE"
    echo "postgres_local: unavailable: $1" >&2
    exit 3
}

pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $d ]] && echo "$d" && return
    command -v pg_ctl >/dev/null && dirname "$(command -v pg_ctl)"
}

as_owner() {  # run a PostgreSQL binary as the cluster's owner (never root)
    if [[ $(id -u) -eq 0 ]]; then runuser -u nobody -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

answers() { [[ -s $DIR/port ]] && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$(cat "$DIR/port")"; }

start() {
    local t0=$SECONDS port
    [[ ${BONE_SEG_PG:-on} != off ]] || unavailable "switched off (BONE_SEG_PG=off)"
    BIN=$(pg_bin) || true
    [[ -n ${BIN:-} && -x $BIN/initdb && -x $BIN/pg_ctl ]] \
        || unavailable "no PostgreSQL binaries (install postgresql, e.g. apt-get install postgresql-15)"
    if answers; then echo "postgres_local: already running: $(cat "$DIR/uri")"; return 0; fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chmod 0755 "$DIR"
    if [[ $(id -u) -eq 0 ]]; then chown nobody "$DIR"; fi
    as_owner "$BIN/initdb" -D "$DATA" -U "$DB_USER" --auth=trust -E UTF8 --no-locale \
        >"$DIR/initdb.log" 2>&1 || unavailable "initdb failed (see $DIR/initdb.log)"
    port=$(free_port)
    echo "$port" > "$DIR/port"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c max_connections=200 -c fsync=off" \
        start >/dev/null || unavailable "the server did not start (see $DIR/postgres.log)"
    "$BIN/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME" \
        || unavailable "createdb $DB_NAME failed (see $DIR/postgres.log)"
    echo "postgresql://$DB_USER@127.0.0.1:$port/$DB_NAME" > "$DIR/uri"
    echo "postgres_local: up in $((SECONDS - t0)) s: $(cat "$DIR/uri")"
}

stop() {
    BIN=$(pg_bin) || true
    [[ -d $DIR ]] || { echo "postgres_local: not running"; return 0; }
    if [[ -n ${BIN:-} && -f $DATA/postmaster.pid ]]; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    echo "postgres_local: stopped"
}

status() {
    [[ -s $REASON_FILE ]] && { echo "unavailable: $(cat "$REASON_FILE")"; return 3; }
    BIN=$(pg_bin) || { echo "no PostgreSQL binaries"; return 1; }
    answers || { echo "not running"; return 1; }
    cat "$DIR/uri"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
