#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `cluster` tests (make test-cluster) and for trying gsm's
# SLURM launcher by hand (docs/cluster.md, "A SLURM cluster on your machine").
#
#   scripts/slurm_local.sh start    install slurm-wlm and munge with apt-get where missing, write the config,
#                                   start munged, slurmctld and slurmd, wait until the node is idle
#   scripts/slurm_local.sh stop     cancel every job, stop slurmd, slurmctld and the munged this script started
#   scripts/slurm_local.sh status   the partition and the queue; exit 0 when the cluster answers, 1 when not
#
# As root, on Debian or Ubuntu (apt-get). The node is this machine (`slurmd -C`: its cores and memory), one
# partition named "$GSM_SLURM_PARTITION" (default: debug), no accounting (sacct fails, as on a cluster without
# slurmdbd). The config is /etc/slurm/slurm.conf; one that this script did not write is never overwritten.
# State and logs: $GSM_SLURM_DIR (default /tmp/gsm-slurm), wiped at each start (no job survives a restart).
set -euo pipefail

DIR=${GSM_SLURM_DIR:-/tmp/gsm-slurm}
PARTITION=${GSM_SLURM_PARTITION:-debug}
CONF=/etc/slurm/slurm.conf
MARK="# written by gsm scripts/slurm_local.sh"

die() { echo "slurm_local.sh: error: $*" >&2; exit 2; }
say() { echo "slurm_local.sh: $*"; }

# Why this machine cannot run the local cluster (empty when it can): one line, read by the tests' skip message.
why_not() {
  [ "$(uname -s)" = Linux ] || { echo "not Linux ($(uname -s)): SLURM's daemons need Linux"; return; }
  [ "$(id -u)" = 0 ] || { echo "not root: installing and starting SLURM's daemons needs root"; return; }
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || { echo "SLURM is not installed and there is no apt-get to install it"; return; }
  fi
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "$CONF exists and was not written by this script (a real cluster's?): not overwritten"; return
  fi
}

install() {
  local need=""
  command -v slurmctld >/dev/null || need="$need slurmctld"
  command -v slurmd >/dev/null || need="$need slurmd"
  command -v sbatch >/dev/null || need="$need slurm-client"
  command -v munged >/dev/null || need="$need munge"
  [ -z "$need" ] && return
  say "installing$need (apt-get; about a minute)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
}

write_conf() {
  local node host
  host=$(hostname -s)
  node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=… Boards=… … RealMemory=…
  [[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
  mkdir -p /etc/slurm "$DIR"/state "$DIR"/spool "$DIR"/log
  cat > "$CONF" <<CONF
$MARK (a one-node cluster for tests; scripts/slurm_local.sh stop ends it)
ClusterName=gsmlocal
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=30
MinJobAge=600
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

running() { pgrep -x "$1" >/dev/null; }

start() {
  local why; why=$(why_not)
  [ -z "$why" ] || die "$why"
  install
  if running slurmctld || running slurmd; then
    if sinfo -h >/dev/null 2>&1; then say "already running"; sinfo; return; fi
    stop
  fi
  rm -rf "$DIR"
  write_conf
  if ! running munged; then
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey -c 2>/dev/null || /usr/sbin/create-munge-key -f; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    su -s /bin/sh munge -c /usr/sbin/munged
    touch "$DIR/munged.ours"
  fi
  /usr/sbin/slurmctld -c
  /usr/sbin/slurmd
  for _ in $(seq 60); do
    if sinfo -h -p "$PARTITION" -o %t 2>/dev/null | grep -qx idle; then sinfo; return; fi
    sleep 1
  done
  tail -5 "$DIR"/log/*.log >&2 || true
  die "the node did not become idle within 60 s (logs: $DIR/log/)"
}

stop() {
  if running slurmctld; then scancel --quiet --user="$(id -un)" 2>/dev/null || true; fi
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 30); do running slurmctld || running slurmd || break; sleep 1; done
  for d in slurmd slurmctld; do
    if [ -f "$DIR/$d.pid" ] && running "$d"; then kill "$(cat "$DIR/$d.pid")" 2>/dev/null || true; fi
  done
  if [ -f "$DIR/munged.ours" ] && [ -f /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
  rm -f "$DIR/munged.ours"
  say "stopped"
}

status() {
  if sinfo -h >/dev/null 2>&1; then sinfo; squeue; return 0; fi
  echo "slurm_local.sh: not running"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  why-not) why_not ;;
  *) echo "usage: scripts/slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
