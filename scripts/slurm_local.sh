#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the SLURM tests (tests/slurm/) and for trying the
# SLURM launcher on a laptop:
#   scripts/slurm_local.sh start    install slurm-wlm + munge if missing (Debian, as root), start
#                                   munged, slurmctld and slurmd, wait until the node is idle
#   scripts/slurm_local.sh status   the node's state (exit 0 when it takes jobs)
#   scripts/slurm_local.sh stop     cancel its jobs, stop the daemons, remove the state folder
# Everything it writes (slurm.conf, munge key and socket, spool, state, logs) lives in one state
# folder, BONE_SEG_SLURM_DIR (default /tmp/bone_seg_slurm); nothing under /etc is touched, so a
# machine's own SLURM configuration is left alone. Clients find the cluster with
#   export SLURM_CONF=/tmp/bone_seg_slurm/slurm.conf
# Where it cannot start a cluster (not root, not Debian, apt-get failing, BONE_SEG_SLURM=off) it
# prints one line "slurm_local: unavailable: <reason>" (kept in <state folder>/unavailable) and
# exits 3; the SLURM tests are then skipped with it.
set -euo pipefail

DIR=${BONE_SEG_SLURM_DIR:-/tmp/bone_seg_slurm}
CONF=$DIR/slurm.conf
REASON_FILE=$DIR/unavailable
export SLURM_CONF=$CONF

unavailable() {  # the one reason line, also kept for the tests' skip message
    mkdir -p "$DIR"
    echo "$1" > "$REASON_FILE"
    echo "slurm_local: unavailable: $1" >&2
    exit 3
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || unavailable "${missing[*]} not installed and not root (apt-get needs root)"
    command -v apt-get >/dev/null && [[ -f /etc/debian_version ]] \
        || unavailable "${missing[*]} not installed and this is not a Debian machine (no apt-get)"
    echo "slurm_local: installing ${missing[*]} (apt-get)"
    # services of the packages are not started by the install where policy-rc.d forbids it;
    # this script runs its own daemons either way
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$DIR/apt.log" 2>&1 \
        || unavailable "apt-get update failed (see $DIR/apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >>"$DIR/apt.log" 2>&1 \
        || unavailable "apt-get install ${missing[*]} failed (see $DIR/apt.log)"
}

write_conf() {
    local host node
    host=$(hostname -s)
    # the node line as slurmd detects this machine (CPUs, sockets, cores, threads, RealMemory)
    node=$(slurmd -C 2>/dev/null | head -n 1 | sed -e "s/^NodeName=[^ ]*/NodeName=$host/")
    [[ $node == NodeName=* ]] || unavailable "slurmd -C could not detect this machine's CPUs"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat > "$CONF" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster on localhost
ClusterName=bone_seg_local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
JobRequeue=1
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    pid_alive "$DIR/munged.pid" && return 0
    if [[ ! -s $DIR/munge.key ]]; then
        dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none
        chmod 0400 "$DIR/munge.key"
    fi
    munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munged.seed" || unavailable "munged did not start (see $DIR/log/munged.log)"
}

node_state() { sinfo -h -N -o %t 2>/dev/null | head -n 1; }

start() {
    local t0=$SECONDS
    mkdir -p "$DIR"
    rm -f "$REASON_FILE"
    [[ ${BONE_SEG_SLURM:-on} != off ]] || unavailable "switched off (BONE_SEG_SLURM=off)"
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid"; then
        echo "slurm_local: already running (SLURM_CONF=$CONF)"
        return 0
    fi
    install_packages
    write_conf
    start_munge
    pid_alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF" \
        || unavailable "slurmctld did not start (see $DIR/log/slurmctld.log)"
    pid_alive "$DIR/slurmd.pid" || slurmd -f "$CONF" \
        || unavailable "slurmd did not start (see $DIR/log/slurmd.log)"
    for _ in $(seq 1 120); do
        [[ $(node_state) == idle ]] && break
        sleep 0.5
    done
    [[ $(node_state) == idle ]] \
        || unavailable "the node did not become idle in 60 s (sinfo: $(node_state); see $DIR/log)"
    echo "slurm_local: one-node cluster up in $((SECONDS - t0)) s; export SLURM_CONF=$CONF"
}

stop_daemon() {  # pid file: TERM, wait up to 10 s, then KILL
    pid_alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    [[ -d $DIR ]] || { echo "slurm_local: not running"; return 0; }
    if pid_alive "$DIR/slurmctld.pid"; then
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 1 50); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    stop_daemon "$DIR/slurmd.pid"
    stop_daemon "$DIR/slurmctld.pid"
    stop_daemon "$DIR/munged.pid"
    rm -rf "$DIR"
    echo "slurm_local: stopped"
}

status() {
    [[ -s $REASON_FILE ]] && { echo "unavailable: $(cat "$REASON_FILE")"; return 3; }
    pid_alive "$DIR/slurmctld.pid" || { echo "not running"; return 1; }
    echo "node $(node_state); SLURM_CONF=$CONF"
    [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
