#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by scripts/slurm/start.sh.
#
# Cancels the jobs still in that cluster, then stops slurmd, slurmctld and (if start.sh started
# it) munged by the pids recorded in the state directory $SLURM_STATE_DIR (default
# /tmp/pyiron_assyst_slurm). A pid is only signalled while it still names the expected daemon,
# and nothing is ever killed by name. Stopping a cluster that is not running does nothing.
set -uo pipefail

STATE="${SLURM_STATE_DIR:-/tmp/pyiron_assyst_slurm}"
CONF="$STATE/slurm.conf"
MARK="# written by pyiron_assyst scripts/slurm/start.sh"

say() { echo "slurm/stop.sh: $*" >&2; }

pid_of() {  # pid_of PIDFILE NAME: print the pid if it is a running NAME process
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ] && echo "$pid"
}

running() {  # running PID: the process exists and is not a zombie
  [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

stop_pids() {  # stop_pids NAME... : SIGTERM the recorded daemons together, SIGKILL after 10 s
  local name file pid i pids=() names=()
  for name in "$@"; do
    file="$STATE/$name.pid"
    [ "$name" = munged ] && file="$STATE/munge/munged.pid"
    if pid="$(pid_of "$file" "$name")"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid") && names+=("$name($pid)")
    fi
    rm -f "$file"
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 100; i++)); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
      say "pid $pid ignored SIGTERM for 10 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  [ "${#names[@]}" -eq 0 ] || say "stopped ${names[*]}"
}

{ exec 9>>"$STATE/lock"; } 2>/dev/null && flock -w 600 9

if [ -f "$CONF" ] && pid_of "$STATE/slurmctld.pid" slurmctld >/dev/null; then
  jobs="$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
  if [ -n "${jobs// /}" ]; then
    # shellcheck disable=SC2086
    SLURM_CONF="$CONF" scancel $jobs 2>/dev/null
    for ((i = 0; i < 50; i++)); do
      [ -z "$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi
stop_pids slurmd slurmctld
stop_pids munged
if [ -f /etc/slurm/slurm.conf ] && grep -qF "$MARK" /etc/slurm/slurm.conf; then
  rm -f /etc/slurm/slurm.conf
fi
exit 0
