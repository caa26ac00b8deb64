#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost for the tests (Debian/Ubuntu, root, no systemd).
#
# Installs Debian's slurm-wlm and munge if missing, writes a one-node slurm.conf (partition
# "debug", NodeAddr=127.0.0.1, CPUs = nproc) into the state directory, starts munged (as user
# munge), slurmctld and slurmd by hand, waits until the node is idle and records the daemons'
# pid files in the state directory, from which scripts/slurm/stop.sh stops them by pid.
# Running it again while the cluster is up does nothing.
#
# State directory: $SLURM_STATE_DIR (default /tmp/pyiron_assyst_slurm). The configuration is
# $SLURM_STATE_DIR/slurm.conf; it is also installed as /etc/slurm/slurm.conf when that file is
# absent (or was written by this script), so plain `sinfo`/`sbatch` work; otherwise export
# SLURM_CONF=$SLURM_STATE_DIR/slurm.conf (also written to $SLURM_STATE_DIR/env).
#
# The node also offers $SLURM_FAKE_GPUS (default 2, max 2; 0 for none) pretend GPUs backed by
# /dev/null and /dev/zero, so that GPU requests are scheduled and a job sees CUDA_VISIBLE_DEVICES.
#
# Exit codes: 0 running, 3 not root, 4 no apt-get (and SLURM not installed),
# 5 package installation failed, 6 a daemon failed to start or the node did not become idle.
set -uo pipefail

STATE="${SLURM_STATE_DIR:-/tmp/pyiron_assyst_slurm}"
CONF="$STATE/slurm.conf"
MARK="# written by pyiron_assyst scripts/slurm/start.sh"
NODE=localhost
TIMEOUT="${SLURM_START_TIMEOUT:-60}"
GPUS="${SLURM_FAKE_GPUS:-2}"

say() { echo "slurm/start.sh: $*" >&2; }
fail() { say "$2"; exit "$1"; }

alive() {  # alive PIDFILE NAME: the pid in PIDFILE is a running NAME process
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

node_state() { SLURM_CONF="$CONF" sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1; }

wait_idle() {
  local state="" i
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    state="$(node_state)"
    case "$state" in
      idle|mix|mixed|alloc|allocated) return 0 ;;
      down*|drain*|drng*) SLURM_CONF="$CONF" scontrol update nodename="$NODE" state=resume \
                            >/dev/null 2>&1 ;;
    esac
    sleep 0.2
  done
  say "node $NODE is '${state:-unknown}' after ${TIMEOUT} s"
  return 1
}

mkdir -p "$STATE" 2>/dev/null
# one start/stop at a time (e.g. two test sessions); unlockable state dirs are not ours anyway
{ exec 9>>"$STATE/lock"; } 2>/dev/null && { flock -w 600 9 || fail 6 "$STATE/lock is held"; }

if alive "$STATE/slurmctld.pid" slurmctld && alive "$STATE/slurmd.pid" slurmd \
   && [ -n "$(node_state)" ]; then
  wait_idle || exit 6
  say "already running (state $STATE, SLURM_CONF=$CONF)"
  exit 0
fi

[ "$(id -u)" = 0 ] || fail 3 "needs root to install and start SLURM (running as $(id -un))"

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v munged >/dev/null && command -v sinfo >/dev/null && return 0
  command -v apt-get >/dev/null || fail 4 "slurm-wlm/munge are missing and there is no apt-get"
  say "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends slurm-wlm munge >"$STATE/apt.log" 2>&1; then
    apt-get update >>"$STATE/apt.log" 2>&1
    apt-get install -y --no-install-recommends slurm-wlm munge >>"$STATE/apt.log" 2>&1 \
      || fail 5 "apt-get install slurm-wlm munge failed, see $STATE/apt.log: $(tail -n 2 \
         "$STATE/apt.log" | tr '\n' ' ')"
  fi
}

write_conf() {
  local cpus mem gres="" devices=(/dev/null /dev/zero) i
  cpus="$(nproc)"
  mem="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  mkdir -p "$STATE/spool/ctld" "$STATE/spool/d"
  case "$GPUS" in 0|1|2) ;; *) fail 6 "SLURM_FAKE_GPUS must be 0, 1 or 2, got '$GPUS'" ;; esac
  : >"$STATE/gres.conf"
  for ((i = 0; i < GPUS; i++)); do
    echo "NodeName=$NODE Name=gpu File=${devices[$i]}" >>"$STATE/gres.conf"
  done
  [ "$GPUS" = 0 ] || gres="Gres=gpu:$GPUS "
  cat >"$CONF" <<EOF
$MARK
ClusterName=pyiron_assyst
${gres:+GresTypes=gpu}
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=60
SlurmctldTimeout=30
SlurmdTimeout=30
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$NODE ${gres}NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  echo "export SLURM_CONF=$CONF" >"$STATE/env"
  if [ ! -e /etc/slurm/slurm.conf ] || grep -qF "$MARK" /etc/slurm/slurm.conf; then
    mkdir -p /etc/slurm && cp "$CONF" /etc/slurm/slurm.conf
  else
    say "/etc/slurm/slurm.conf exists and is not ours: export SLURM_CONF=$CONF"
  fi
}

start_munge() {
  local sock=/run/munge/munge.socket.2 i
  if munge -n -s "$sock" 2>/dev/null | unmunge -s "$sock" >/dev/null 2>&1; then
    return 0  # a munged is already serving: use it, it is not ours to stop
  fi
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null 2>&1 \
    || fail 6 "no /etc/munge/munge.key and mungekey failed"
  mkdir -p /run/munge "$STATE/munge"
  chown munge:munge /run/munge "$STATE/munge"
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --force 9>&- \
    || fail 6 "munged failed: $(tail -n 3 "$STATE/munge/munged.log" 2>/dev/null)"
  for ((i = 0; i < 50; i++)); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail 6 "munged does not answer, see $STATE/munge/munged.log"
}

start_daemon() {  # start_daemon NAME ARGS...: start unless our pid file names a live one
  local name="$1" i
  shift
  alive "$STATE/$name.pid" "$name" && return 0
  rm -f "$STATE/$name.pid"
  "/usr/sbin/$name" "$@" 9>&- || fail 6 "$name failed to start: $(tail -n 5 "$STATE/$name.log")"
  for ((i = 0; i < 100; i++)); do
    alive "$STATE/$name.pid" "$name" && return 0
    sleep 0.1
  done
  fail 6 "$name did not write its pid file, see $STATE/$name.log: $(tail -n 5 "$STATE/$name.log")"
}

if [ ! -d "$STATE" ] || [ ! -w "$STATE" ]; then
  fail 6 "cannot create the state directory $STATE"
fi
install_packages
write_conf
start_munge
start_daemon slurmctld -f "$CONF"
start_daemon slurmd -f "$CONF" -N "$NODE"
if ! wait_idle; then
  fail 6 "slurmctld log: $(tail -n 5 "$STATE/slurmctld.log") slurmd log: $(tail -n 5 \
     "$STATE/slurmd.log")"
fi
say "running: partition debug, node $NODE ($(nproc) CPUs), state $STATE, SLURM_CONF=$CONF"
