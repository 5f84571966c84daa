#!/usr/bin/env bash
# A real one-node SLURM cluster, with job accounting (sacct), on this host: for tests/test_slurm.py
# and for trying the slurm profile by hand.
#
#   tests/workflow/slurm/setup.sh STATE_DIR      # install if needed, configure, start, wait until idle
#   source STATE_DIR/env                # SLURM_CONF for sinfo, sbatch, sacct, snakemake ...
#   tests/workflow/slurm/teardown.sh STATE_DIR   # stop exactly what setup started (pids in STATE_DIR/pids)
#
# Needs root and apt-get (Debian 12: slurm-wlm 22.05, munge, slurmdbd, mariadb-server). Everything
# lives under STATE_DIR (configuration, munge key, MariaDB data, spool, logs, pid files) but one
# link: /run/slurm/conf/slurm.conf -> STATE_DIR/slurm.conf, where commands inside a job find the
# configuration (the executor plugin's srun does not see SLURM_CONF). Nothing under /etc is
# written; the daemons listen on 127.0.0.1 on their own ports (SLURM_TEST_PORT_BASE, default
# 16800: +17 slurmctld, +18 slurmd, +19 slurmdbd, +6 MariaDB), so a site's MySQL is left alone,
# a munged already running is shared, and a host with its own SLURM configuration is refused.
# The node offers all its CPUs, 90% of its memory and one GPU (gres with File=/dev/null: a GPU
# with no device, so GPU jobs can be scheduled and run on the CPU). Partitions: `cpu` (default)
# and `gpu`, both this node, as in workflow/profiles/slurm. Every wait is bounded; on failure the
# daemon logs are printed and whatever was started is stopped again. Exit status: 0 ready,
# 1 failed, 2 not root or misused, 3 the host has a SLURM configuration of its own (left alone),
# 4 the packages could not be installed.
set -euo pipefail

STATE=${1:?usage: setup.sh STATE_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${SLURM_TEST_PORT_BASE:-16800}
CTLD_PORT=$((BASE + 17)) SLURMD_PORT=$((BASE + 18)) DBD_PORT=$((BASE + 19)) DB_PORT=$((BASE + 6))
CLUSTER=drstest
NODE=$(hostname -s)
START=${EPOCHREALTIME/[.,]/}

say() {
    local us=$((${EPOCHREALTIME/[.,]/} - START))
    printf '[slurm setup %3d.%ds] %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*"
}
die() {
    echo "slurm setup failed: $*" >&2
    for log in "$STATE"/log/*.log; do
        [ -s "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
    done
    bash "$HERE/teardown.sh" "$STATE" >&2 || true
    exit 1
}
# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$what: not ready after ${limit}s"
        sleep 0.2
    done
}
# start NAME COMMAND...: run a daemon in the foreground of its own session, record its pid
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo "$name $!" >>"$STATE/pids"
}

[ "$(id -u)" -eq 0 ] || { echo "setup.sh needs root" >&2; exit 2; }
[ ! -e "$STATE/pids" ] || { echo "$STATE/pids exists: run teardown.sh $STATE first" >&2; exit 2; }
# Commands inside a job (the executor plugin's srun) do not see SLURM_CONF, so they must find the
# configuration where SLURM looks by default: /etc/slurm/slurm.conf, else /run/slurm/conf/slurm.conf
# (configless mode's copy), where this script links STATE_DIR/slurm.conf. A host with a SLURM
# configuration of its own is left alone (exit status 3).
RUN_CONF=/run/slurm/conf/slurm.conf
if [ -e /etc/slurm/slurm.conf ]; then
    echo "this host has its own SLURM configuration (/etc/slurm/slurm.conf): not replaced" >&2
    exit 3
fi
if [ -e "$RUN_CONF" ] || [ -L "$RUN_CONF" ]; then
    target=$(readlink "$RUN_CONF" || true)
    if [[ $target == */slurm.conf && -f $(dirname "$target")/pids ]]; then
        echo "another test cluster is running ($RUN_CONF -> $target)" >&2
        exit 3
    elif ! grep -qs '^# written by tests/workflow/slurm/setup.sh' "$RUN_CONF" && [ -e "$RUN_CONF" ]; then
        echo "this host has its own SLURM configuration ($RUN_CONF): not replaced" >&2
        exit 3
    fi
    rm -f "$RUN_CONF" # left by a test cluster that is gone
fi

# 1. packages
need=()
for bin in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client \
    munged:munge mariadbd:mariadb-server mariadb:mariadb-client; do
    command -v "${bin%%:*}" >/dev/null || need+=("${bin#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { echo "apt-get missing: cannot install ${need[*]}" >&2; exit 2; }
    apt_install() {
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
            slurm-wlm slurmdbd munge mariadb-server mariadb-client
    }
    apt_install >/tmp/drs-slurm-apt.log 2>&1 ||
        { timeout 300 apt-get update -q >>/tmp/drs-slurm-apt.log 2>&1 && apt_install >>/tmp/drs-slurm-apt.log 2>&1; } ||
        { tail -n 20 /tmp/drs-slurm-apt.log >&2; echo "apt-get could not install ${need[*]}" >&2; exit 4; }
fi
say "packages present ($(slurmctld -V))"

# 2. folders (STATE must be reachable by the munge and mysql users)
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
chmod 0755 "$STATE"
mkdir -p "$STATE"/{log,run,spool/ctld,spool/d,munge,mysql}
chown munge:munge "$STATE/munge"
chmod 0700 "$STATE/munge"
chown mysql:mysql "$STATE/mysql"
: >"$STATE/pids"

# 3. munge. SLURM's clients reach munged at its default socket (AuthInfo=socket= is not honoured
# by every connection in 22.05), so a munged already answering there is used as it is; else ours
# starts there, with a key of its own.
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running: used as it is"
else
    install -d -o munge -g munge -m 0755 /run/munge
    setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile="$STATE/munge/munge.key"
    start munged setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --key-file="$STATE/munge/munge.key" \
        --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
    wait_for 20 munged sh -c "munge -n | unmunge"
    say "munged up"
fi

# 4. MariaDB for slurmdbd
DB_SOCKET="$STATE/mysql/mysqld.sock"
DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
timeout 120 mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 ||
    die "mariadb-install-db"
start mariadbd mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
    --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --pid-file="$STATE/mysql/mariadbd.pid" --log-error="$STATE/log/mariadb.log" \
    --innodb-buffer-pool-size=1024M --innodb-lock-wait-timeout=900
wait_for 60 mariadbd mariadb --no-defaults --socket="$DB_SOCKET" -e "SELECT 1"
mariadb --no-defaults --socket="$DB_SOCKET" <<SQL
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
say "mariadbd up"

# 5. configuration
CPUS=$(nproc --all)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
cat >"$STATE/slurm.conf" <<EOF
# written by tests/workflow/slurm/setup.sh
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CommunicationParameters=NoInAddrAny
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
MailProg=/bin/true
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
echo "NodeName=$NODE Name=gpu File=/dev/null" >"$STATE/gres.conf"
(
    umask 077
    cat >"$STATE/slurmdbd.conf" <<EOF
# written by tests/workflow/slurm/setup.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
echo "export SLURM_CONF=$STATE/slurm.conf" >"$STATE/env"
mkdir -p "$(dirname "$RUN_CONF")"
ln -s "$STATE/slurm.conf" "$RUN_CONF"
echo "$RUN_CONF" >"$STATE/links"
export SLURM_CONF="$STATE/slurm.conf"

# 6. SLURM daemons: the database daemon, the cluster in it, the controller, the node
start slurmdbd slurmdbd -D
wait_for 60 slurmdbd timeout 10 sacctmgr -n list cluster
timeout 20 sacctmgr -i add cluster "$CLUSTER" >/dev/null
say "slurmdbd up"
start slurmctld slurmctld -D -i
wait_for 30 slurmctld timeout 10 scontrol ping
start slurmd slurmd -D
node_idle() { [ "$(timeout 10 sinfo -h -n "$NODE" -o %T | sort -u)" = idle ]; }
deadline=$(($(date +%s) + 60))
until node_idle; do
    state=$(timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null | sort -u | tr '\n' ' ')
    case $state in
        *drain* | *down*) timeout 10 scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || die "node $NODE is '$state', not idle after 60s"
    sleep 0.3
done
wait_for 30 "sacct" timeout 10 sacct -n -X -S now-1hour
say "node $NODE idle ($CPUS CPUs, $MEM_MB MB, gpu:1), partitions cpu and gpu; SLURM_CONF=$SLURM_CONF"
