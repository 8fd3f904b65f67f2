#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for tests and local sweeps.
#
#   bash scripts/slurm_local.sh up      # install/configure/start; idempotent, fast when already up
#   bash scripts/slurm_local.sh down    # stop every daemon it started
#   bash scripts/slurm_local.sh status  # sinfo + squeue
#
# Works as root on a fresh Debian 12 (no systemd): daemons are started directly and detach
# from this shell, so they outlive it. Daemons: munged, slurmctld, slurmd and, for job
# accounting (sacct, which submitit polls to notice failed jobs), MariaDB + slurmdbd.
# Environment knobs:
#   SLURM_LOCAL_CPUS        CPUs advertised by the node (default 2: two one-CPU jobs run together)
#   SLURM_LOCAL_ACCOUNTING  1 (default) runs MariaDB + slurmdbd; 0 runs without accounting
#   SLURM_LOCAL_WAIT_S      seconds to wait for each daemon and for the node (default 60)
set -euo pipefail

CONF=/etc/slurm/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_STATE=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
DBD_CONF=/etc/slurm/slurmdbd.conf
DBD_PID=/run/slurmdbd.pid
# A private MariaDB data dir; the socket is the client library's default, which slurmdbd uses.
DB_DIR=/var/lib/slurm_local/mysql
DB_RUN=/run/mysqld
DB_SOCK=$DB_RUN/mysqld.sock
DB_PID=$DB_RUN/slurm_local.pid
DB_NAME=slurm_acct_db
CLUSTER=acdc-local
PARTITION=debug
CPUS=${SLURM_LOCAL_CPUS:-2}
ACCOUNTING=${SLURM_LOCAL_ACCOUNTING:-1}
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}
LOCK=/tmp/slurm_local.lock
# sbin holds the daemons; a non-login root shell may not have it on PATH
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "slurm_local: $*"; }
die() {
    echo "slurm_local: ERROR: $*" >&2
    exit 1
}
need_root() { [[ $EUID -eq 0 ]] || die "'$1' needs root (run as root or with sudo)"; }
log_tail() { tail -n 3 "$1" 2>/dev/null | tr '\n' ' '; }

# slurmd matches NodeName against the short hostname, so the conf uses it too
node_name() { hostname -s 2>/dev/null || hostname; }

# A modest RealMemory: 3/4 of the machine, capped at 16000 MB, so slurmd never sees "low memory".
real_memory_mb() {
    local total_mb mb
    total_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    mb=$((total_mb * 3 / 4))
    ((mb > 16000)) && mb=16000
    echo "$mb"
}

accounting_lines() {
    if [[ $ACCOUNTING == 1 ]]; then
        printf '%s\n' "AccountingStorageType=accounting_storage/slurmdbd" \
            "AccountingStorageHost=localhost" "AccountingStoragePort=6819"
    else
        echo "AccountingStorageType=accounting_storage/none"
    fi
}

render_conf() {
    local host=$1
    cat <<CONF_END
# Written by scripts/slurm_local.sh for host '$host'; regenerated when the hostname changes.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds (default 120) before it may start again;
# 15 s keeps requeue tests short while leaving step launches ample time under load.
AuthInfo=cred_expire=15
MpiDefault=none
SwitchType=switch/none
# No cgroups in containers: track job processes through /proc and bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Per-core allocation so several one-CPU jobs share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Rescan pending jobs every 5 s (default 60) so a requeued job restarts soon after it is eligible.
SchedulerParameters=bf_interval=5,sched_interval=5
MailProg=/bin/true
# Requeue: 'scontrol requeue <id>' and submitit's preemption handling need both.
JobRequeue=1
ReturnToService=2
# Short grace between SIGTERM and SIGKILL so cancel/requeue tests do not wait 30 s.
KillWait=10
MinJobAge=300
$(accounting_lines)
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Trust the node line below instead of probing hardware (which a container may misreport).
SlurmdParameters=config_overrides
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$host NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF_END
}

render_dbd_conf() {
    cat <<CONF_END
# Written by scripts/slurm_local.sh. MariaDB trusts root over its unix socket: no password.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=$DB_NAME
CONF_END
}

# True when process $1 exists and is not a zombie (a killed daemon lingers as one until the
# container's init reaps it, which may take a while).
proc_running() {
    local state
    state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# True when the pid in file $1 is running and its command is $2.
pid_alive() {
    local pidfile=$1 name=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    proc_running "$pid" && [[ $(<"/proc/$pid/comm") == "$name" ]]
}

ensure_packages() {
    local pkgs=(slurmctld slurmd munge slurm-client)
    local cmds=(munged slurmctld slurmd sinfo srun scontrol)
    if [[ $ACCOUNTING == 1 ]]; then
        # server-core + client-core: the database without the full mariadb-server (perl etc.)
        pkgs+=(slurmdbd mariadb-server-core mariadb-client-core)
        cmds+=(slurmdbd sacctmgr sacct mariadbd mariadb-install-db mariadb)
    fi
    local missing=0 cmd
    for cmd in "${cmds[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    ((missing == 0)) && return 0
    need_root "installing slurm packages"
    log "installing ${pkgs[*]} (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    local apt_log=/tmp/slurm_local_apt.log
    apt-get update >"$apt_log" 2>&1 || die "apt-get update failed (see $apt_log)"
    # Without systemd the postinst scripts cannot start services; fine, we start them below.
    apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$apt_log" 2>&1 ||
        die "apt-get install ${pkgs[*]} failed (see $apt_log)"
    for cmd in "${cmds[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' still missing after apt-get install"
    done
}

# chown/chmod only when different, so a re-run really changes nothing
ensure_owner_mode() {
    local path=$1 owner=$2 mode=$3
    [[ $(stat -c %U:%G "$path") == "$owner" ]] || chown "$owner" "$path"
    [[ $(stat -c %a "$path") == "$mode" ]] || chmod "$mode" "$path"
}

ensure_munge_key() {
    id munge >/dev/null 2>&1 || die "user 'munge' missing (is the munge package installed?)"
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating munge key $MUNGE_KEY"
        mkdir -p "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    # munged refuses keys or dirs that others can read or write
    local d
    for d in /etc/munge /var/lib/munge /var/log/munge; do
        mkdir -p "$d"
        ensure_owner_mode "$d" munge:munge 700
    done
    ensure_owner_mode "$MUNGE_KEY" munge:munge 400
    mkdir -p "$MUNGE_RUN"
    ensure_owner_mode "$MUNGE_RUN" munge:munge 755
}

# Writes file $1 with content $2 and mode $3 when it differs; prints "changed" or "same".
ensure_file() {
    local path=$1 want=$2 mode=$3
    if [[ -r $path ]] && [[ "$(<"$path")" == "$want" ]]; then
        echo same
        return
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$want" >"$path"
    chmod "$mode" "$path"
    echo changed
}

# Stops the daemon whose pid is in $1 (named $2); waits up to $3 s (default 10) for it to exit.
stop_daemon() {
    local pidfile=$1 name=$2 wait_s=${3:-10} pid i
    if ! pid_alive "$pidfile" "$name"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(<"$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        proc_running "$pid" || break
        sleep 0.1
    done
    if proc_running "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
}

# Refuses to start a second copy next to a daemon this script did not start (no pid file).
check_no_stray() {
    local name=$1 pidfile=$2 pid stray=""
    pid_alive "$pidfile" "$name" && return 0
    for pid in $(pgrep -x "$name" 2>/dev/null); do
        proc_running "$pid" && stray+=" $pid"
    done
    [[ -z $stray ]] || die "$name is running (pid$stray) without $pidfile; stop it first"
}

# Polls command "$@" every 0.2 s for WAIT_S seconds; true once it succeeds.
wait_for() {
    local i
    for ((i = 0; i < WAIT_S * 5; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

# Daemons get /dev/null or log files as stdio, and not our lock fd 9: inherited, either would
# outlive this script (a caller capturing our output would hang; the lock would never free).

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munged() {
    if pid_alive "$MUNGE_PID" munged && munge_ok; then
        return 0
    fi
    check_no_stray munged "$MUNGE_PID"
    log "starting munged"
    rm -f "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock" "$MUNGE_PID"
    runuser -u munge -- munged </dev/null >/dev/null 2>&1 9>&- ||
        die "munged failed to start: $(log_tail /var/log/munge/munged.log)"
    wait_for munge_ok || die "munged started but 'munge -n | unmunge' fails: $(log_tail /var/log/munge/munged.log)"
}

db_ok() { mariadb --no-defaults --socket="$DB_SOCK" -e 'SELECT 1' >/dev/null 2>&1; }

start_mariadb() {
    if pid_alive "$DB_PID" mariadbd && db_ok; then
        return 0
    fi
    check_no_stray mariadbd "$DB_PID"
    mkdir -p "$LOG_DIR"
    if [[ ! -d $DB_DIR/mysql ]]; then
        log "initialising the accounting database in $DB_DIR"
        mkdir -p "$DB_DIR"
        mariadb-install-db --no-defaults --user=root --datadir="$DB_DIR" \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG_DIR/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed: $(log_tail "$LOG_DIR/mariadb-install.log")"
    fi
    log "starting mariadbd"
    mkdir -p "$DB_RUN"
    rm -f "$DB_SOCK" "$DB_PID"
    # mariadbd does not daemonize itself: setsid -f detaches it from this script's session
    setsid -f mariadbd --no-defaults --user=root --datadir="$DB_DIR" --socket="$DB_SOCK" \
        --skip-networking --pid-file="$DB_PID" --log-error="$LOG_DIR/mariadb.log" \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 9>&-
    wait_for db_ok || die "mariadbd not answering after ${WAIT_S}s: $(log_tail "$LOG_DIR/mariadb.log")"
}

dbd_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }

start_slurmdbd() {
    if pid_alive "$DBD_PID" slurmdbd && dbd_ok; then
        return 0
    fi
    check_no_stray slurmdbd "$DBD_PID"
    log "starting slurmdbd"
    slurmdbd </dev/null >>"$LOG_DIR/slurmdbd.stdout" 2>&1 9>&- ||
        die "slurmdbd failed to start: $(log_tail "$LOG_DIR/slurmdbd.log")"
    wait_for dbd_ok || die "slurmdbd not answering after ${WAIT_S}s: $(log_tail "$LOG_DIR/slurmdbd.log")"
    # slurmctld only records jobs of a cluster the database knows
    if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || die "'sacctmgr add cluster $CLUSTER' failed"
    fi
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_slurmctld() {
    local clear_state=$1
    if pid_alive "$CTLD_PID" slurmctld; then
        return 0
    fi
    check_no_stray slurmctld "$CTLD_PID"
    # -c drops saved jobs/node state: used after the conf was (re)written, e.g. a new hostname
    local args=()
    [[ $clear_state == yes ]] && args+=(-c)
    log "starting slurmctld ${args[*]:-}"
    slurmctld "${args[@]}" </dev/null >>"$LOG_DIR/slurmctld.stdout" 2>&1 9>&- ||
        die "slurmctld failed to start: $(log_tail "$LOG_DIR/slurmctld.log")"
    wait_for ctld_up || die "slurmctld not answering 'scontrol ping' after ${WAIT_S}s: $(log_tail "$LOG_DIR/slurmctld.log")"
}

start_slurmd() {
    if pid_alive "$SLURMD_PID" slurmd; then
        return 0
    fi
    check_no_stray slurmd "$SLURMD_PID"
    log "starting slurmd"
    slurmd -N "$(node_name)" </dev/null >>"$LOG_DIR/slurmd.stdout" 2>&1 9>&- ||
        die "slurmd failed to start: $(log_tail "$LOG_DIR/slurmd.log")"
}

node_state() { sinfo -h -N -n "$(node_name)" -o %T 2>/dev/null | head -n 1; }

# Waits until the node can take jobs; resumes it once if slurmctld marked it down/drained.
# Prints the state; log lines go to stderr because stdout is captured.
wait_node_ready() {
    local host state i resumed=0 reason
    host=$(node_name)
    for ((i = 0; i < WAIT_S * 2; i++)); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated | completing)
                echo "$state"
                return 0
                ;;
            down | drained | draining | fail | failing)
                if ((resumed == 0)); then
                    log "node $host is $state; resuming it" >&2
                    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 0.5
    done
    reason=$(sinfo -h -N -n "$host" -o '%E' 2>/dev/null | head -n 1)
    die "node $host not ready after ${WAIT_S}s (state '${state:-absent}', reason '${reason:-none}'; see $LOG_DIR/slurmd.log)"
}

check_jobs_run() {
    local state=$1 host out
    host=$(node_name)
    if [[ $state == allocated ]]; then
        # every CPU busy with someone's jobs: a test srun would queue behind them
        log "node $host fully allocated; skipping the srun check"
    else
        out=$(timeout 60 srun -N1 -n1 -p "$PARTITION" hostname 2>&1) ||
            die "'srun -N1 -n1 hostname' failed: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
        out=$(echo "$out" | tail -n 1)
        [[ $out == "$(hostname)" || $out == "$host" ]] ||
            die "'srun hostname' printed '$out', expected '$(hostname)'"
    fi
    if [[ $ACCOUNTING == 1 ]]; then
        out=$(sacct -n -X -o JobID -S now-1hours 2>&1) || die "'sacct' failed: $(echo "$out" | tail -n 1)"
    fi
}

cmd_up() {
    local t0=$SECONDS conf_state=same dbd_state=same state
    ensure_packages
    # Serialize concurrent 'up's (parallel test sessions) on one lock.
    exec 9>"$LOCK"
    flock -w 300 9 || die "another 'slurm_local.sh up' holds $LOCK for > 300 s"

    if [[ $EUID -ne 0 ]]; then
        # Non-root can only confirm a cluster that is already up and current.
        [[ -r $CONF && "$(<"$CONF")" == "$(render_conf "$(node_name)")" ]] || need_root "writing $CONF"
        munge_ok && ctld_up || die "cluster is down and starting it needs root"
    else
        ensure_munge_key
        mkdir -p "$LOG_DIR" "$CTLD_STATE" "$SLURMD_SPOOL"
        conf_state=$(ensure_file "$CONF" "$(render_conf "$(node_name)")" 644)
        [[ $ACCOUNTING == 1 ]] && dbd_state=$(ensure_file "$DBD_CONF" "$(render_dbd_conf)" 600)
        if [[ $conf_state == changed || $dbd_state == changed ]]; then
            log "wrote $CONF for node $(node_name)"
            # Daemons started with an older conf (another hostname) must restart. Controller
            # state and accounting records are dropped together: job ids restart at 1 and
            # must not meet old records of the same id.
            stop_daemon "$SLURMD_PID" slurmd
            stop_daemon "$CTLD_PID" slurmctld
            stop_daemon "$DBD_PID" slurmdbd
            conf_state=changed
        fi
        start_munged
        if [[ $ACCOUNTING == 1 ]]; then
            start_mariadb
            if [[ $conf_state == changed ]]; then
                mariadb --no-defaults --socket="$DB_SOCK" -e "DROP DATABASE IF EXISTS $DB_NAME" ||
                    die "could not reset the accounting database $DB_NAME"
            fi
            start_slurmdbd
        fi
        start_slurmctld "$([[ $conf_state == changed ]] && echo yes || echo no)"
        start_slurmd
    fi
    state=$(wait_node_ready)
    check_jobs_run "$state"
    local acct=""
    [[ $ACCOUNTING == 1 ]] && acct=", accounting on"
    log "cluster up: node $(node_name) $state, partition $PARTITION, $CPUS CPUs$acct ($((SECONDS - t0))s)"
}

cmd_down() {
    need_root down
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
    stop_daemon "$DBD_PID" slurmdbd
    stop_daemon "$DB_PID" mariadbd 60
    stop_daemon "$MUNGE_PID" munged
    log "cluster down"
}

cmd_status() {
    command -v sinfo >/dev/null 2>&1 || die "slurm is not installed (run: bash scripts/slurm_local.sh up)"
    ctld_up || die "slurmctld is not running (run: bash scripts/slurm_local.sh up)"
    sinfo
    echo
    squeue
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: bash scripts/slurm_local.sh {up|down|status}" >&2
        exit 2
        ;;
esac
